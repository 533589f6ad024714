//! Before DRIVER_OK a queue is only its registers: a `Negotiated` device
//! hands out no chains.
use hypervisor::virtio::Negotiated;
use hypervisor::virtio::net::TX_QUEUE;

fn transmit_early(device: &mut Negotiated) {
    let setup = device.queue_mut(u32::from(TX_QUEUE)).unwrap();
    let _ = setup.pop();
}

fn main() {}
