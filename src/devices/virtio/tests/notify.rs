//! Notification and interrupt suppression: EVENT_IDX (used_event / avail_event) and
//! VIRTQ_AVAIL_F_NO_INTERRUPT, and notifications that arrive before DRIVER_OK.

use super::*;
use crate::devices::virtio::mmio::VirtioTransport;
use crate::devices::virtio::testing::reg;

fn flush(drv: &mut MockDriver) {
    let _ = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
}

#[test]
fn used_event_suppresses_interrupts_until_passed() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 8);
    // Interrupt only once the used index moves past 2, i.e. at the third completion.
    drv.set_used_event(0, 2);
    flush(&mut drv);
    assert!(!drv.notify(&mut t, 0).interrupt);
    flush(&mut drv);
    assert!(!drv.notify(&mut t, 0).interrupt);
    flush(&mut drv);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_eq!(t.stats().interrupts, 1);
    // A batch that crosses used_event in the middle interrupts once.
    drv.set_used_event(0, 4);
    for _ in 0..3 {
        flush(&mut drv);
    }
    assert!(drv.notify(&mut t, 0).interrupt);
    for _ in 0..6 {
        assert!(drv.pop_used(0).is_some());
    }
}

#[test]
fn avail_event_tells_the_driver_where_to_notify() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 8);
    for _ in 0..3 {
        flush(&mut drv);
    }
    let _ = drv.notify(&mut t, 0);
    assert_eq!(drv.avail_event(0), 3);
    flush(&mut drv);
    let _ = drv.notify(&mut t, 0);
    assert_eq!(drv.avail_event(0), 4);
}

#[test]
fn without_event_idx_the_no_interrupt_flag_rules() {
    let (mut t, mut drv) = blk_ready(false, 0, 8);
    drv.set_avail_flags(0, 1);
    flush(&mut drv);
    assert!(!drv.notify(&mut t, 0).interrupt);
    assert!(drv.pop_used(0).is_some());
    // avail_event is not written without EVENT_IDX.
    assert_eq!(drv.avail_event(0), 0);
    drv.set_avail_flags(0, 0);
    flush(&mut drv);
    assert!(drv.notify(&mut t, 0).interrupt);
}

#[test]
fn a_notify_with_nothing_new_raises_nothing() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 8);
    assert!(!drv.notify(&mut t, 0).interrupt);
    flush(&mut drv);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert!(!drv.notify(&mut t, 0).interrupt);
}

#[test]
fn requests_made_before_driver_ok_are_served_at_driver_ok() {
    let mut t = blk(false);
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.negotiate(&mut t, RING_FEATURES).unwrap();
    drv.setup_queue(&mut t, 0, 8).unwrap();
    flush(&mut drv);
    // §3.1.1: the device does not consume buffers before DRIVER_OK.
    assert!(!drv.notify(&mut t, 0).interrupt);
    assert!(drv.pop_used(0).is_none());
    assert!(drv.driver_ok(&mut t).interrupt);
    assert!(drv.pop_used(0).is_some());
    assert_eq!(drv.read_reg(&mut t, reg::INTERRUPT_STATUS), 1);
}

#[test]
fn poll_without_pending_work_is_quiet() {
    let (mut t, drv) = blk_ready(false, RING_FEATURES, 8);
    assert!(!t.poll(&drv.mem).interrupt);
}

#[test]
fn ring_indices_wrap_around_u16() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 8);
    let header = drv.alloc(16, 8);
    drv.write_bytes(header, &blk_header(4, 0));
    let status = drv.alloc(1, 1);
    let bufs = [
        crate::devices::virtio::testing::Buf {
            gpa: header,
            len: 16,
            is_writable: false,
        },
        crate::devices::virtio::testing::Buf {
            gpa: status,
            len: 1,
            is_writable: true,
        },
    ];
    let mut completed = 0u32;
    // 70 000 requests in batches of 4 carry every index past 65 535.
    for batch in 0..17_500u32 {
        drv.set_used_event(0, (batch * 4 + 3) as u16);
        for _ in 0..4 {
            drv.add_chain(0, &bufs);
        }
        assert!(drv.notify(&mut t, 0).interrupt, "batch {batch}");
        while drv.pop_used(0).is_some() {
            completed += 1;
        }
    }
    assert_eq!(completed, 70_000);
    assert_eq!(drv.avail_event(0), 70_000u32 as u16);
    assert_eq!(t.stats().device.requests, 70_000);
}
