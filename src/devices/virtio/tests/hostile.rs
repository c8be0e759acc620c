//! A hostile driver: every broken rule must end in DEVICE_NEEDS_RESET with a reason, or in a
//! clean refusal, and never in a panic.

use super::*;
use crate::addr::GuestPhysAddr;
use crate::devices::virtio::mmio::{VirtioTransport, INT_CONFIG_CHANGE};
use crate::devices::virtio::queue::{GuestRange, QueueError};
use crate::devices::virtio::testing::{reg, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use crate::devices::virtio::{status, DeviceError};
use crate::guest_mem::{range_within, GuestMemError, GuestMemory, VecGuestMemory};

/// Asserts the device is in NEEDS_RESET because of a queue error matching `expected`, and
/// that its message names the queue.
fn assert_fault(t: &BlkTransport, expected: fn(&QueueError) -> bool) {
    assert_ne!(
        t.status() & status::DEVICE_NEEDS_RESET,
        0,
        "device not in NEEDS_RESET"
    );
    match t.last_fault() {
        Some(DeviceError::Queue(e)) => {
            assert!(expected(&e), "unexpected fault {e:?}");
            assert!(e.to_string().starts_with("queue 0 "), "message: {e}");
        }
        other => panic!("unexpected fault {other:?}"),
    }
}

/// Publishes `head`, notifies, and checks the config-change interrupt of a fault.
fn kick(t: &mut BlkTransport, drv: &mut MockDriver, head: u16) {
    drv.publish(0, head);
    assert!(drv.notify(t, 0).interrupt);
    assert_ne!(
        drv.read_reg(t, reg::INTERRUPT_STATUS) & INT_CONFIG_CHANGE,
        0
    );
}

fn ready() -> (BlkTransport, MockDriver) {
    blk_ready(false, RING_FEATURES, 8)
}

#[test]
fn descriptor_outside_ram() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, RAM_BYTES as u64 - 8, 16, 0, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| matches!(e, QueueError::BufferOutsideRam { .. }));
    assert!(drv.pop_used(0).is_none());
}

#[test]
fn descriptor_of_4_gib() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, u32::MAX, 0, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::BufferOutsideRam { len: u32::MAX, .. })
    });
    let msg = t.last_fault().unwrap().to_string();
    assert_eq!(
        msg,
        "queue 0 descriptor 0 buffer GPA:0x2000 length 0xffffffff is outside guest RAM"
    );
}

#[test]
fn descriptor_into_the_device_window() {
    let window = GuestRange {
        base: GuestPhysAddr::new(0x30000),
        len: 0x1000,
    };
    let mut t = blk(false).with_forbidden_range(Some(window));
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.init(&mut t, RING_FEATURES, &[8]).unwrap();
    drv.write_desc(0, 0, 0x2fff0, 0x20, 0, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| matches!(e, QueueError::BufferOutsideRam { .. }));
}

#[test]
fn chain_that_loops() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, 16, DESC_F_NEXT, 1);
    drv.write_desc(0, 1, 0x2000, 16, DESC_F_NEXT, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::ChainTooLong { limit: 8, .. })
    });
}

#[test]
fn next_and_head_beyond_the_table() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, 16, DESC_F_NEXT, 8);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::NextOutOfRange { next: 8, .. })
    });
    let (mut t, mut drv) = ready();
    kick(&mut t, &mut drv, 200);
    assert_fault(&t, |e| {
        matches!(e, QueueError::HeadOutOfRange { head: 200, .. })
    });
}

#[test]
fn indirect_table_inside_indirect_table() {
    let (mut t, mut drv) = ready();
    let table = drv.alloc(32, 16);
    drv.write_desc_at(table, 0, 0x2000, 16, DESC_F_NEXT, 1);
    drv.write_desc_at(table, 1, table.as_u64(), 32, DESC_F_INDIRECT, 0);
    drv.write_desc(0, 0, table.as_u64(), 32, DESC_F_INDIRECT, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| matches!(e, QueueError::NestedIndirect { .. }));
    assert!(t
        .last_fault()
        .unwrap()
        .to_string()
        .contains("indirect descriptor 1"));
}

#[test]
fn indirect_table_of_bad_length() {
    for len in [0, 24, 17, 16 * 2000] {
        let (mut t, mut drv) = ready();
        drv.write_desc(0, 0, 0x2000, len, DESC_F_INDIRECT, 0);
        kick(&mut t, &mut drv, 0);
        assert_fault(&t, |e| matches!(e, QueueError::IndirectBadLength { .. }));
    }
}

#[test]
fn indirect_table_with_next_or_not_negotiated_or_looping() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, 32, DESC_F_INDIRECT | DESC_F_NEXT, 1);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| matches!(e, QueueError::IndirectWithNext { .. }));

    let (mut t, mut drv) = blk_ready(false, F_RING_EVENT_IDX, 8);
    drv.write_desc(0, 0, 0x2000, 32, DESC_F_INDIRECT, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::IndirectNotNegotiated { .. })
    });

    let (mut t, mut drv) = ready();
    let table = drv.alloc(32, 16);
    drv.write_desc_at(table, 0, 0x2000, 16, DESC_F_NEXT, 1);
    drv.write_desc_at(table, 1, 0x2000, 16, DESC_F_NEXT, 0);
    drv.write_desc(0, 0, table.as_u64(), 32, DESC_F_INDIRECT, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::ChainTooLong { limit: 2, .. })
    });
}

#[test]
fn avail_index_jumping_past_the_queue_size() {
    let (mut t, mut drv) = ready();
    drv.set_avail_idx(0, 9);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_fault(&t, |e| {
        matches!(
            e,
            QueueError::AvailIndexJump {
                now: 9,
                size: 8,
                ..
            }
        )
    });
}

#[test]
fn readable_after_writable() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, 16, DESC_F_WRITE | DESC_F_NEXT, 1);
    drv.write_desc(0, 1, 0x2100, 16, 0, 0);
    kick(&mut t, &mut drv, 0);
    assert_fault(&t, |e| {
        matches!(e, QueueError::ReadableAfterWritable { .. })
    });
}

#[test]
fn bad_queue_sizes_and_rings() {
    let base = GuestPhysAddr::new(0x4000);
    type Case = (u16, u64, fn(&QueueError) -> bool);
    let cases: [Case; 5] = [
        (6, 0, |e| matches!(e, QueueError::BadSize { size: 6, .. })),
        (512, 0, |e| {
            matches!(e, QueueError::BadSize { max: 256, .. })
        }),
        (0, 0, |e| matches!(e, QueueError::BadSize { size: 0, .. })),
        (8, 2, |e| matches!(e, QueueError::RingMisaligned { .. })),
        (8, RAM_BYTES as u64, |e| {
            matches!(e, QueueError::RingOutsideRam { .. })
        }),
    ];
    for (size, used_offset, expected) in cases {
        let mut t = blk(false);
        let mut drv = MockDriver::new(RAM_BYTES);
        drv.negotiate(&mut t, RING_FEATURES).unwrap();
        drv.program_queue(
            &mut t,
            0,
            size,
            base,
            base + 0x1000,
            base + 0x2000 + used_offset,
        );
        let _ = drv.write_reg(&mut t, reg::QUEUE_READY, 1);
        assert_eq!(drv.read_reg(&mut t, reg::QUEUE_READY), 0);
        assert_fault(&t, expected);
    }
}

#[test]
fn notifying_a_queue_never_enabled_is_refused() {
    let mut t = blk(false);
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.negotiate(&mut t, RING_FEATURES).unwrap();
    let _ = drv.driver_ok(&mut t);
    for q in [0, 1, 0xFFFF, 0x1_0000, u32::MAX] {
        assert!(!drv.write_reg(&mut t, reg::QUEUE_NOTIFY, q).interrupt);
    }
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(t.stats().notifies, 0);
}

#[test]
fn a_broken_device_ignores_the_guest_until_reset() {
    let (mut t, mut drv) = ready();
    drv.write_desc(0, 0, 0x2000, 16, DESC_F_NEXT, 0);
    kick(&mut t, &mut drv, 0);
    let _ = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    assert!(!drv.notify(&mut t, 0).interrupt);
    assert!(drv.pop_used(0).is_none());
    assert_eq!(t.stats().faults, 1);
    drv.init(&mut t, RING_FEATURES, &[8]).unwrap();
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    let req = drv.add_request(0, &[&blk_header(4, 0)], &[1], false);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_eq!(drv.pop_used(0).map(|u| u.id), Some(u32::from(req.head)));
}

/// RAM that claims 16 GiB but keeps only its first part; the rest reads as zero.
struct HugeMemory(VecGuestMemory);

const HUGE_BYTES: u64 = 16 << 30;

impl GuestMemory for HugeMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        if !self.contains(gpa, buf.len() as u64) {
            return Err(GuestMemError {
                gpa,
                len: buf.len() as u64,
            });
        }
        if self.0.read(gpa, buf).is_err() {
            buf.fill(0);
        }
        Ok(())
    }

    fn write(&self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        if !self.contains(gpa, data.len() as u64) {
            return Err(GuestMemError {
                gpa,
                len: data.len() as u64,
            });
        }
        let _ = self.0.write(gpa, data);
        Ok(())
    }

    fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        range_within(GuestPhysAddr::ZERO, HUGE_BYTES, gpa, len)
    }
}

#[test]
fn chains_of_more_than_4_gib_in_total() {
    let (mut t, drv) = ready();
    let q = drv.queue(0);
    let mem = HugeMemory(drv.mem);
    // Two readable buffers just under 4 GiB above the device window: each fits in RAM, but
    // together they exceed what a used length can say.
    let high = 0x1_0000_0000u64;
    write_desc(&mem, q.desc, 0, high, 0xFFFF_FFF0, DESC_F_NEXT, 1);
    write_desc(&mem, q.desc, 1, high, 0xFFFF_FFF0, 0, 0);
    mem.write_u16(q.avail + 4, 0).unwrap();
    mem.write_u16(q.avail + 2, 1).unwrap();
    assert!(t.write(reg::QUEUE_NOTIFY, 4, 0, &mem).interrupt);
    assert_fault(&t, |e| matches!(e, QueueError::ChainTooBig { .. }));
}

fn write_desc(
    mem: &HugeMemory,
    table: GuestPhysAddr,
    idx: u64,
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
) {
    let d = table + 16 * idx;
    mem.write_u64(d, addr).unwrap();
    mem.write_u32(d + 8, len).unwrap();
    mem.write_u16(d + 12, flags).unwrap();
    mem.write_u16(d + 14, next).unwrap();
}
