//! Safe virtio-mmio.
