//! How the parts of a split queue are named in errors, and the errors themselves.

#![forbid(unsafe_code)]

use core::fmt;

use super::{DESC_SIZE, MAX_INDIRECT_DESCRIPTORS, USED_ELEM_SIZE};
use crate::addr::GuestPhysAddr;

/// One of the three areas of a split queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// The descriptor table (QueueDesc).
    Descriptors,
    /// The available ring (QueueDriver).
    Available,
    /// The used ring (QueueDevice).
    Used,
}

impl Ring {
    /// Alignment the spec requires (§2.7, table "Virtqueue Part Alignment").
    pub(super) const fn align(self) -> u64 {
        match self {
            Self::Descriptors => 16,
            Self::Available => 2,
            Self::Used => 4,
        }
    }

    /// Bytes the area occupies for a queue of `size` entries, event fields included.
    pub(super) const fn bytes(self, size: u16) -> u64 {
        let n = size as u64;
        match self {
            Self::Descriptors => DESC_SIZE * n,
            Self::Available => 6 + 2 * n,
            Self::Used => 6 + USED_ELEM_SIZE * n,
        }
    }
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Descriptors => "descriptor table",
            Self::Available => "available ring",
            Self::Used => "used ring",
        })
    }
}

/// Where a descriptor sits: in the queue's table or in an indirect table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescLoc {
    /// Index in its table.
    pub index: u32,
    /// Whether the table is an indirect one.
    pub is_indirect: bool,
}

impl fmt::Display for DescLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_indirect {
            write!(f, "indirect descriptor {}", self.index)
        } else {
            write!(f, "descriptor {}", self.index)
        }
    }
}

/// A guest-physical range the device must never be pointed at (the MMIO window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    /// First byte.
    pub base: GuestPhysAddr,
    /// Length in bytes.
    pub len: u64,
}

impl GuestRange {
    /// Whether `[gpa, gpa + len)` shares a byte with this range.
    pub fn overlaps(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        let (a0, a1) = (
            u128::from(gpa.as_u64()),
            u128::from(gpa.as_u64()) + u128::from(len),
        );
        let b0 = u128::from(self.base.as_u64());
        let b1 = b0 + u128::from(self.len);
        len > 0 && self.len > 0 && a0 < b1 && b0 < a1
    }
}

/// A broken rule of the virtqueue protocol, with what and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// QueueNum is zero, not a power of two, or above QueueNumMax.
    BadSize { queue: u16, size: u16, max: u16 },
    /// A ring address is not aligned as §2.7 requires.
    RingMisaligned {
        queue: u16,
        ring: Ring,
        gpa: GuestPhysAddr,
    },
    /// A ring does not lie in guest RAM.
    RingOutsideRam {
        queue: u16,
        ring: Ring,
        gpa: GuestPhysAddr,
        len: u64,
    },
    /// A ring field could not be read or written.
    RingAccess {
        queue: u16,
        ring: Ring,
        gpa: GuestPhysAddr,
    },
    /// The available index moved by more than the queue size.
    AvailIndexJump {
        queue: u16,
        last: u16,
        now: u16,
        size: u16,
    },
    /// The available ring names a head beyond the descriptor table.
    HeadOutOfRange { queue: u16, head: u16, size: u16 },
    /// A `next` field beyond its table.
    NextOutOfRange {
        queue: u16,
        desc: DescLoc,
        next: u16,
        table_len: u32,
    },
    /// More descriptors than the table has: the chain loops or is too long.
    ChainTooLong { queue: u16, head: u16, limit: u32 },
    /// A buffer outside guest RAM or inside the device window.
    BufferOutsideRam {
        queue: u16,
        desc: DescLoc,
        gpa: GuestPhysAddr,
        len: u32,
    },
    /// An indirect descriptor inside an indirect table.
    NestedIndirect { queue: u16, desc: DescLoc },
    /// An indirect descriptor although VIRTIO_RING_F_INDIRECT_DESC was not negotiated.
    IndirectNotNegotiated { queue: u16, desc: DescLoc },
    /// An indirect descriptor with VIRTQ_DESC_F_NEXT also set.
    IndirectWithNext { queue: u16, desc: DescLoc },
    /// An indirect table length that is zero, not a multiple of 16 or too large.
    IndirectBadLength { queue: u16, desc: DescLoc, len: u32 },
    /// A device-readable buffer after a device-writable one.
    ReadableAfterWritable { queue: u16, desc: DescLoc },
    /// The chain's buffers add up to more than 4 GiB.
    ChainTooBig { queue: u16, head: u16 },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadSize { queue, size, max } => write!(
                f,
                "queue {queue} size {size} is not a power of two in 1..={max}"
            ),
            Self::RingMisaligned { queue, ring, gpa } => {
                write!(f, "queue {queue} {ring} at {gpa} is misaligned")
            }
            Self::RingOutsideRam {
                queue,
                ring,
                gpa,
                len,
            } => write!(
                f,
                "queue {queue} {ring} at {gpa} length {len:#x} is outside guest RAM"
            ),
            Self::RingAccess { queue, ring, gpa } => {
                write!(f, "queue {queue} {ring} at {gpa} is not accessible")
            }
            Self::AvailIndexJump {
                queue,
                last,
                now,
                size,
            } => write!(
                f,
                "queue {queue} available index jumped from {last} to {now} (queue size {size})"
            ),
            Self::HeadOutOfRange { queue, head, size } => write!(
                f,
                "queue {queue} available ring names descriptor {head} beyond queue size {size}"
            ),
            Self::NextOutOfRange {
                queue,
                desc,
                next,
                table_len,
            } => write!(
                f,
                "queue {queue} {desc} next {next} is beyond its table of {table_len}"
            ),
            Self::ChainTooLong { queue, head, limit } => write!(
                f,
                "queue {queue} chain at descriptor {head} is longer than {limit} (a loop?)"
            ),
            Self::BufferOutsideRam {
                queue,
                desc,
                gpa,
                len,
            } => write!(
                f,
                "queue {queue} {desc} buffer {gpa} length {len:#x} is outside guest RAM"
            ),
            Self::NestedIndirect { queue, desc } => {
                write!(
                    f,
                    "queue {queue} {desc} is an indirect table inside an indirect table"
                )
            }
            Self::IndirectNotNegotiated { queue, desc } => write!(
                f,
                "queue {queue} {desc} is indirect but INDIRECT_DESC was not negotiated"
            ),
            Self::IndirectWithNext { queue, desc } => {
                write!(f, "queue {queue} {desc} is indirect and has NEXT set")
            }
            Self::IndirectBadLength { queue, desc, len } => write!(
                f,
                "queue {queue} {desc} indirect table length {len:#x} is not a non-zero multiple \
                 of 16 up to {MAX_INDIRECT_DESCRIPTORS} entries"
            ),
            Self::ReadableAfterWritable { queue, desc } => write!(
                f,
                "queue {queue} {desc} is device-readable after a device-writable one"
            ),
            Self::ChainTooBig { queue, head } => {
                write!(f, "queue {queue} chain at descriptor {head} exceeds 4 GiB")
            }
        }
    }
}
