//! Walking one descriptor chain (§2.7.5, §2.7.5.3), checking every descriptor the guest wrote:
//! indices against their table, buffers against guest RAM and the device window, indirect
//! tables against nesting and size, and the readable-before-writable order.

#![forbid(unsafe_code)]

use super::{DescLoc, Queue, QueueError, Ring, DESC_SIZE, MAX_INDIRECT_DESCRIPTORS};
use crate::addr::GuestPhysAddr;
use crate::devices::virtio::chain::{DescChain, Segment};
use crate::guest_mem::GuestMemory;

/// The buffer continues in the descriptor named by `next` (§2.7.5).
const DESC_F_NEXT: u16 = 1;
/// The buffer is device-writable.
const DESC_F_WRITE: u16 = 2;
/// The buffer is a table of further descriptors (§2.7.5.3).
const DESC_F_INDIRECT: u16 = 4;

/// One raw descriptor (§2.7.5), copied out of guest memory.
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl Queue {
    fn read_desc(&self, mem: &dyn GuestMemory, gpa: GuestPhysAddr) -> Result<Desc, QueueError> {
        let mut raw = [0u8; DESC_SIZE as usize];
        mem.read(gpa, &mut raw)
            .map_err(|_| QueueError::RingAccess {
                queue: self.index,
                ring: Ring::Descriptors,
                gpa,
            })?;
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = raw;
        Ok(Desc {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        })
    }

    /// Follows the chain starting at `head` and checks every descriptor (§2.7.5, §2.7.5.3).
    pub(super) fn walk(
        &mut self,
        mem: &dyn GuestMemory,
        head: u16,
    ) -> Result<DescChain, QueueError> {
        let queue = self.index;
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange {
                queue,
                head,
                size: self.size,
            });
        }
        let mut segs = core::mem::take(&mut self.spare);
        segs.clear();
        let mut table = self.desc;
        let mut table_len = u32::from(self.size);
        let mut loc = DescLoc {
            index: u32::from(head),
            is_indirect: false,
        };
        let mut visited = 0u32;
        let mut first_writable = None;
        let (mut readable_len, mut writable_len) = (0u64, 0u64);
        loop {
            visited += 1;
            if visited > table_len {
                return Err(QueueError::ChainTooLong {
                    queue,
                    head,
                    limit: table_len,
                });
            }
            let d = self.read_desc(mem, table + DESC_SIZE * u64::from(loc.index))?;
            let gpa = GuestPhysAddr::new(d.addr);
            if d.flags & DESC_F_INDIRECT != 0 {
                if loc.is_indirect {
                    return Err(QueueError::NestedIndirect { queue, desc: loc });
                }
                if !self.has_indirect {
                    return Err(QueueError::IndirectNotNegotiated { queue, desc: loc });
                }
                if d.flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext { queue, desc: loc });
                }
                let entries = d.len / DESC_SIZE as u32;
                if d.len == 0
                    || !d.len.is_multiple_of(DESC_SIZE as u32)
                    || entries > MAX_INDIRECT_DESCRIPTORS
                {
                    return Err(QueueError::IndirectBadLength {
                        queue,
                        desc: loc,
                        len: d.len,
                    });
                }
                if !self.is_buffer_ok(mem, gpa, u64::from(d.len)) {
                    return Err(QueueError::BufferOutsideRam {
                        queue,
                        desc: loc,
                        gpa,
                        len: d.len,
                    });
                }
                table = gpa;
                table_len = entries;
                loc = DescLoc {
                    index: 0,
                    is_indirect: true,
                };
                visited = 0;
                continue;
            }
            if !self.is_buffer_ok(mem, gpa, u64::from(d.len)) {
                return Err(QueueError::BufferOutsideRam {
                    queue,
                    desc: loc,
                    gpa,
                    len: d.len,
                });
            }
            let is_writable = d.flags & DESC_F_WRITE != 0;
            if is_writable {
                first_writable.get_or_insert(segs.len());
                writable_len += u64::from(d.len);
            } else if first_writable.is_some() {
                return Err(QueueError::ReadableAfterWritable { queue, desc: loc });
            } else {
                readable_len += u64::from(d.len);
            }
            if readable_len + writable_len > u64::from(u32::MAX) {
                return Err(QueueError::ChainTooBig { queue, head });
            }
            if d.len > 0 {
                segs.push(Segment {
                    gpa,
                    len: d.len,
                    is_writable,
                });
            }
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            if u32::from(d.next) >= table_len {
                return Err(QueueError::NextOutOfRange {
                    queue,
                    desc: loc,
                    next: d.next,
                    table_len,
                });
            }
            loc.index = u32::from(d.next);
        }
        let first_writable = first_writable.unwrap_or(segs.len());
        Ok(DescChain {
            queue,
            head,
            segs,
            first_writable,
            readable_len,
            writable_len,
        })
    }
}
