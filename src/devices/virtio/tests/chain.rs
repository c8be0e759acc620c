//! The chain cursors devices read requests and write answers with.

use crate::addr::GuestPhysAddr;
use crate::devices::virtio::chain::{ChainIoError, DescChain, Segment};
use crate::devices::virtio::queue::{DescLoc, GuestRange, QueueError, Ring};
use crate::guest_mem::{GuestMemory, VecGuestMemory};

fn seg(gpa: u64, len: u32, is_writable: bool) -> Segment {
    Segment {
        gpa: GuestPhysAddr::new(gpa),
        len,
        is_writable,
    }
}

/// Readable 3 + 5 bytes at 0x100 and 0x200, writable 2 + 4 bytes at 0x300 and 0x400.
fn chain() -> DescChain {
    DescChain {
        queue: 0,
        head: 3,
        segs: vec![
            seg(0x100, 3, false),
            seg(0x200, 5, false),
            seg(0x300, 2, true),
            seg(0x400, 4, true),
        ],
        first_writable: 2,
        readable_len: 8,
        writable_len: 6,
    }
}

#[test]
fn reader_crosses_segments_and_refuses_to_overrun() {
    let mem = VecGuestMemory::new(GuestPhysAddr::ZERO, 0x1000);
    mem.write(GuestPhysAddr::new(0x100), b"abc").unwrap();
    mem.write(GuestPhysAddr::new(0x200), b"defgh").unwrap();
    let c = chain();
    let mut r = c.reader(&mem);
    let mut two = [0; 2];
    r.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"ab");
    r.skip(2).unwrap();
    let mut rest = [0; 8];
    assert_eq!(r.read(&mut rest), Ok(4));
    assert_eq!(&rest[..4], b"efgh");
    assert_eq!(r.remaining(), 0);
    assert_eq!(
        r.read_exact(&mut two),
        Err(ChainIoError::Short {
            wanted: 2,
            available: 0
        })
    );
    assert!(r.skip(1).is_err());
}

#[test]
fn writer_keeps_a_reserved_tail() {
    let mem = VecGuestMemory::new(GuestPhysAddr::ZERO, 0x1000);
    let c = chain();
    assert_eq!(c.last_writable_byte(), Some(GuestPhysAddr::new(0x403)));
    let mut w = c.writer(&mem);
    w.reserve_tail(1).unwrap();
    assert_eq!(w.remaining(), 5);
    assert!(w.write_all(b"123456").is_err());
    assert_eq!(w.write(b"1234567"), Ok(5));
    assert_eq!(w.written(), 5);
    assert_eq!(mem.snapshot()[0x300..0x302], *b"12");
    assert_eq!(mem.snapshot()[0x400..0x404], *b"345\0");
    assert!(w.reserve_tail(1).is_err());
}

#[test]
fn a_chain_without_writable_part_has_no_status_byte() {
    let c = DescChain {
        queue: 0,
        head: 0,
        segs: vec![seg(0x100, 3, false)],
        first_writable: 1,
        readable_len: 3,
        writable_len: 0,
    };
    assert_eq!(c.last_writable_byte(), None);
    let mem = VecGuestMemory::new(GuestPhysAddr::ZERO, 0x1000);
    assert_eq!(c.writer(&mem).write(b"x"), Ok(0));
}

#[test]
fn ranges_overlap_without_overflow() {
    let w = GuestRange {
        base: GuestPhysAddr::new(0xC000_0000),
        len: 0x4000_0000,
    };
    assert!(w.overlaps(GuestPhysAddr::new(0xBFFF_FFFF), 2));
    assert!(!w.overlaps(GuestPhysAddr::new(0xBFFF_FFFF), 1));
    assert!(!w.overlaps(GuestPhysAddr::new(0x1_0000_0000), 16));
    assert!(w.overlaps(GuestPhysAddr::new(0xFFFF_FFFF), 1));
    assert!(!w.overlaps(GuestPhysAddr::new(u64::MAX), u64::MAX));
    assert!(!w.overlaps(GuestPhysAddr::new(0xC000_0000), 0));
}

#[test]
fn errors_say_what_and_where() {
    let desc = DescLoc {
        index: 7,
        is_indirect: false,
    };
    let e = QueueError::BufferOutsideRam {
        queue: 0,
        desc,
        gpa: GuestPhysAddr::new(0x1000),
        len: 0x100,
    };
    assert_eq!(
        e.to_string(),
        "queue 0 descriptor 7 buffer GPA:0x1000 length 0x100 is outside guest RAM"
    );
    let e = QueueError::NestedIndirect {
        queue: 1,
        desc: DescLoc {
            index: 2,
            is_indirect: true,
        },
    };
    assert_eq!(
        e.to_string(),
        "queue 1 indirect descriptor 2 is an indirect table inside an indirect table"
    );
    let e = QueueError::RingMisaligned {
        queue: 2,
        ring: Ring::Used,
        gpa: GuestPhysAddr::new(0x1002),
    };
    assert_eq!(
        e.to_string(),
        "queue 2 used ring at GPA:0x1002 is misaligned"
    );
    let e = QueueError::AvailIndexJump {
        queue: 0,
        last: 3,
        now: 300,
        size: 256,
    };
    assert_eq!(
        e.to_string(),
        "queue 0 available index jumped from 3 to 300 (queue size 256)"
    );
}
