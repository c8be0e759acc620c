//! The virtio-mmio register file: identification, feature negotiation, the status state
//! machine, reset, queue set-up registers and accesses of the wrong width.

use super::*;
use crate::devices::virtio::blk::{F_FLUSH, F_RO};
use crate::devices::virtio::mmio::{VirtioTransport, INT_USED_BUFFER, MAGIC, VENDOR_ID};
use crate::devices::virtio::status;
use crate::devices::virtio::testing::{reg, MockError};
use crate::devices::virtio::{DEVICE_ID_BLK, F_VERSION_1};

#[test]
fn identifies_as_a_modern_virtio_mmio_block_device() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    assert_eq!(drv.read_reg(&mut t, reg::MAGIC), MAGIC);
    assert_eq!(drv.read_reg(&mut t, reg::MAGIC), 0x7472_6976);
    assert_eq!(drv.read_reg(&mut t, reg::VERSION), 2);
    assert_eq!(drv.read_reg(&mut t, reg::DEVICE_ID), DEVICE_ID_BLK);
    assert_eq!(drv.read_reg(&mut t, reg::VENDOR_ID), VENDOR_ID);
    assert_eq!(drv.read_reg(&mut t, reg::STATUS), 0);
    // No shared memory regions: their length reads as -1.
    assert_eq!(drv.read_reg(&mut t, reg::SHM_LEN_LOW), 0xFFFF_FFFF);
    assert_eq!(drv.read_reg(&mut t, reg::CONFIG_GENERATION), 0);
}

#[test]
fn offers_transport_and_device_features() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    let offered = drv.device_features(&mut t);
    assert_eq!(
        offered & (F_VERSION_1 | RING_FEATURES),
        F_VERSION_1 | RING_FEATURES
    );
    assert_ne!(offered & F_FLUSH, 0);
    assert_eq!(offered & F_RO, 0);
    let _ = drv.write_reg(&mut t, reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(drv.read_reg(&mut t, reg::DEVICE_FEATURES), 0);
    let mut ro = super::blk(true);
    assert_ne!(drv.device_features(&mut ro) & F_RO, 0);
}

#[test]
fn features_ok_needs_version_1_and_a_subset_of_the_offer() {
    let mut t = blk(false);
    let mut drv = MockDriver::new(RAM_BYTES);
    assert_eq!(
        drv.negotiate_exact(&mut t, F_RING_EVENT_IDX),
        Err(MockError::FeaturesRefused)
    );
    assert_eq!(
        drv.negotiate_exact(&mut t, F_VERSION_1 | 1 << 40),
        Err(MockError::FeaturesRefused)
    );
    assert_eq!(
        drv.negotiate_exact(&mut t, F_VERSION_1 | F_RING_EVENT_IDX),
        Ok(())
    );
    // A bit in a feature word beyond the first 64 was never offered either.
    let _ = drv.write_reg(&mut t, reg::STATUS, 0);
    let _ = drv.write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES, 1);
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 2);
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES, 1);
    let _ = drv.write_reg(&mut t, reg::STATUS, 0xb);
    assert_eq!(drv.read_reg(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
}

#[test]
fn features_are_frozen_once_accepted() {
    let mut t = blk(false);
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.negotiate_exact(&mut t, F_VERSION_1).unwrap();
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES_SEL, 0);
    let _ = drv.write_reg(&mut t, reg::DRIVER_FEATURES, F_RING_EVENT_IDX as u32);
    assert_eq!(t.driver_features(), F_VERSION_1);
}

#[test]
fn driver_ok_needs_features_ok_and_bits_cannot_be_cleared() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    let _ = drv.write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let _ = drv.write_reg(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
    );
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER);
    let _ = drv.write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER);
    // The driver cannot claim NEEDS_RESET for the device.
    let _ = drv.write_reg(&mut t, reg::STATUS, 0x43);
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn reset_clears_queues_status_and_interrupts() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 8);
    let _ = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_eq!(drv.read_reg(&mut t, reg::INTERRUPT_STATUS), INT_USED_BUFFER);
    let _ = drv.write_reg(&mut t, reg::STATUS, 0);
    assert_eq!(t.status(), 0);
    assert!(!t.interrupt_pending());
    let _ = drv.write_reg(&mut t, reg::QUEUE_SEL, 0);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
    // The driver's own reset at the start of negotiation counts too.
    assert_eq!(t.stats().resets, 2);
    // A fresh driver starts again from index 0.
    drv.init(&mut t, RING_FEATURES, &[8]).unwrap();
    let req = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_eq!(drv.pop_used(0).map(|u| u.id), Some(u32::from(req.head)));
}

#[test]
fn interrupt_ack_lowers_the_line() {
    let (mut t, mut drv) = blk_ready(false, 0, 8);
    let _ = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    let _ = drv.notify(&mut t, 0);
    assert!(t.interrupt_pending());
    let _ = drv.write_reg(&mut t, reg::INTERRUPT_ACK, INT_USED_BUFFER);
    assert!(!t.interrupt_pending());
}

#[test]
fn wrong_width_and_unknown_registers_are_ignored() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    assert_eq!(t.read(reg::MAGIC, 2), 0);
    assert_eq!(t.read(reg::MAGIC, 8), 0);
    assert_eq!(t.read(reg::MAGIC + 1, 4), 0);
    assert_eq!(t.read(0x0c4, 4), 0);
    assert_eq!(t.read(reg::QUEUE_NOTIFY, 4), 0);
    let _ = t.write(reg::STATUS, 1, 1, &drv.mem);
    let _ = t.write(reg::STATUS, 8, 1, &drv.mem);
    let _ = t.write(reg::STATUS + 2, 4, 1, &drv.mem);
    let _ = t.write(0x0f0, 4, 1, &drv.mem);
    let _ = t.write(reg::MAGIC, 4, 0, &drv.mem);
    assert_eq!(t.status(), 0);
    assert_eq!(t.stats().ignored_accesses, 10);
}

#[test]
fn config_space_reads_at_any_allowed_width() {
    let mut t = blk(false);
    assert_eq!(t.read(reg::CONFIG, 8), DISK_SECTORS);
    assert_eq!(t.read(reg::CONFIG, 4), DISK_SECTORS);
    assert_eq!(t.read(reg::CONFIG + 4, 4), 0);
    assert_eq!(t.read(reg::CONFIG, 1), DISK_SECTORS);
    // blk_size at offset 20.
    assert_eq!(t.read(reg::CONFIG + 20, 4), SECTOR_SIZE);
    assert_eq!(t.read(reg::CONFIG + 20, 2), SECTOR_SIZE);
    assert_eq!(t.read(reg::CONFIG, 3), 0);
    assert_eq!(t.read(reg::CONFIG + 0xE00, 4), 0);
    assert_eq!(t.read(u64::MAX - 3, 4), 0);
    let drv = MockDriver::new(RAM_BYTES);
    let _ = t.write(reg::CONFIG, 4, 7, &drv.mem);
    assert_eq!(t.read(reg::CONFIG, 8), DISK_SECTORS);
}

#[test]
fn queue_registers_follow_the_selected_queue() {
    let mut t = blk(false);
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.negotiate(&mut t, 0).unwrap();
    let _ = drv.write_reg(&mut t, reg::QUEUE_SEL, 0);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_NUM_MAX), 256);
    let _ = drv.write_reg(&mut t, reg::QUEUE_SEL, 1);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_NUM_MAX), 0);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
    let _ = drv.write_reg(&mut t, reg::QUEUE_READY, 1);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
    assert_eq!(
        drv.setup_queue(&mut t, 1, 8),
        Err(MockError::NoSuchQueue(1))
    );
    drv.setup_queue(&mut t, 0, 8).unwrap();
    // Writes to a live queue's layout are refused; disabling it works.
    let _ = drv.write_reg(&mut t, reg::QUEUE_SEL, 0);
    let before = t.stats().ignored_accesses;
    let _ = drv.write_reg(&mut t, reg::QUEUE_NUM, 4);
    let _ = drv.write_reg(&mut t, reg::QUEUE_DESC_LOW, 0x8000);
    assert_eq!(t.stats().ignored_accesses, before + 2);
    let _ = drv.write_reg(&mut t, reg::QUEUE_READY, 0);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
}

#[test]
fn queue_ready_before_features_ok_is_refused() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    let _ = drv.write_reg(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let base = crate::addr::GuestPhysAddr::new(0x1000);
    drv.program_queue(&mut t, 0, 8, base, base + 0x100, base + 0x200);
    let _ = drv.write_reg(&mut t, reg::QUEUE_READY, 1);
    assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn status_keeps_only_its_eight_bits() {
    let mut t = blk(false);
    let drv = MockDriver::new(RAM_BYTES);
    let _ = drv.write_reg(&mut t, reg::STATUS, 0xFFFF_FF01);
    assert_eq!(
        drv.read_reg(&mut t, reg::STATUS),
        0x01,
        "bits above 7 are not status"
    );
}
