//! virtio-mmio (version 2) register offsets and constants (virtio 1.2, 4.2.2).
