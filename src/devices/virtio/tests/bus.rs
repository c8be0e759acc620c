//! The per-guest virtio bus: routing by slot and interrupt lines by GSI.

use alloc::boxed::Box;

use super::*;
use crate::addr::GuestPhysAddr;
use crate::devices::virtio::bus::{BusError, VirtioBus};
use crate::devices::virtio::mmio::MAGIC;
use crate::devices::virtio::testing::reg;
use crate::devices::virtio::DEVICE_ID_BLK;
use crate::layout::{virtio_slot_base, VIRTIO_GSI_BASE, VIRTIO_MMIO_SLOTS};

#[test]
fn routes_accesses_and_names_the_gsi() {
    let mut bus = VirtioBus::new();
    bus.attach(2, Box::new(blk(false))).unwrap();
    assert_eq!(
        bus.attach(2, Box::new(blk(false))),
        Err(BusError::SlotTaken(2))
    );
    assert_eq!(
        bus.attach(VIRTIO_MMIO_SLOTS, Box::new(blk(false))),
        Err(BusError::NoSuchSlot(VIRTIO_MMIO_SLOTS))
    );
    let base = virtio_slot_base(2);
    assert_eq!(bus.read(base + reg::MAGIC, 4), Some(u64::from(MAGIC)));
    assert_eq!(bus.read(virtio_slot_base(1) + reg::MAGIC, 4), Some(0));
    assert_eq!(bus.read(GuestPhysAddr::new(0x1000), 4), None);
    assert_eq!(bus.read(virtio_slot_base(VIRTIO_MMIO_SLOTS), 4), None);
    let info: Vec<_> = bus.devices().collect();
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].slot, info[0].gsi, info[0].device_id),
        (2, VIRTIO_GSI_BASE + 2, DEVICE_ID_BLK)
    );

    // Drive the device through the bus: a flush raises GSI base + 2.
    let mut drv = MockDriver::new(RAM_BYTES);
    let mut direct = blk(false);
    drv.init(&mut direct, RING_FEATURES, &[8]).unwrap();
    let mut bus = VirtioBus::new();
    bus.attach(2, Box::new(direct)).unwrap();
    let _ = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    let mut raised = Vec::new();
    assert!(
        bus.write(base + reg::QUEUE_NOTIFY, 4, 0, &drv.mem, |gsi| raised
            .push(gsi))
    );
    assert_eq!(raised, [VIRTIO_GSI_BASE + 2]);
    assert!(bus.line_level(VIRTIO_GSI_BASE + 2));
    assert!(!bus.line_level(VIRTIO_GSI_BASE + 1));
    assert!(!bus.line_level(0));
    assert!(!bus.write(GuestPhysAddr::new(0), 4, 0, &drv.mem, |_| unreachable!()));
    bus.poll(&drv.mem, |_| unreachable!());
    assert_eq!(bus.stats(2).map(|s| s.device.requests), Some(1));
}
