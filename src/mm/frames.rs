//! A range-based physical frame allocator.
//!
//! Free memory is a sorted list of disjoint, page-aligned ranges. Guests need large contiguous,
//! aligned blocks (their RAM) as well as single frames (page tables, stacks), so allocation is
//! first-fit with alignment and frees coalesce with their neighbours. The free-frame count is
//! exact, which the restart tests use to prove nothing leaks.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{HostPhysAddr, PAGE_SIZE};

/// A half-open range of host-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
}

/// Free host-physical memory.
#[derive(Clone, Debug, Default)]
pub struct FrameAllocator {
    free: Vec<Range>,
}

/// An allocation request that cannot be met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfFrames {
    /// Bytes asked for.
    pub size: u64,
    /// Alignment asked for.
    pub align: u64,
    /// Bytes free in all.
    pub free: u64,
    /// Largest free contiguous block.
    pub largest: u64,
}

impl fmt::Display for OutOfFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames: no free block of {:#x} bytes aligned to {:#x} ({:#x} bytes free, largest block {:#x})",
            self.size, self.align, self.free, self.largest
        )
    }
}

impl FrameAllocator {
    /// An allocator with no free memory.
    pub const fn new() -> Self {
        Self { free: Vec::new() }
    }

    /// Adds `[start, end)` (shrunk to whole pages) to the free memory.
    pub fn add_free(&mut self, start: HostPhysAddr, end: HostPhysAddr) {
        let s = start
            .checked_align_up(PAGE_SIZE)
            .map_or(u64::MAX, |a| a.as_u64());
        let e = end.align_down(PAGE_SIZE).as_u64();
        if s < e {
            self.insert(Range { start: s, end: e });
        }
    }

    /// Removes `[start, end)` (grown to whole pages) from the free memory.
    pub fn reserve(&mut self, start: HostPhysAddr, end: HostPhysAddr) {
        let s = start.align_down(PAGE_SIZE).as_u64();
        let e = end
            .checked_align_up(PAGE_SIZE)
            .map_or(u64::MAX, |a| a.as_u64());
        if s >= e {
            return;
        }
        let mut out = Vec::with_capacity(self.free.len() + 1);
        for r in self.free.drain(..) {
            if r.end <= s || r.start >= e {
                out.push(r);
                continue;
            }
            if r.start < s {
                out.push(Range {
                    start: r.start,
                    end: s,
                });
            }
            if r.end > e {
                out.push(Range {
                    start: e,
                    end: r.end,
                });
            }
        }
        self.free = out;
    }

    fn insert(&mut self, new: Range) {
        // Merge with every overlapping or touching range.
        let mut merged = new;
        self.free.retain(|r| {
            if r.end < merged.start || r.start > merged.end {
                true
            } else {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
                false
            }
        });
        let pos = self.free.partition_point(|r| r.start < merged.start);
        self.free.insert(pos, merged);
    }

    /// Allocates `size` bytes (rounded up to pages) aligned to `align` (a power of two ≥ 4 KiB),
    /// below `limit` (exclusive).
    pub fn alloc_below(
        &mut self,
        size: u64,
        align: u64,
        limit: u64,
    ) -> Result<HostPhysAddr, OutOfFrames> {
        let valid_align = align.is_power_of_two();
        let align = align.max(PAGE_SIZE);
        let size = size
            .checked_add(PAGE_SIZE - 1)
            .map(|s| s & !(PAGE_SIZE - 1));
        let found = size.filter(|&s| s > 0 && valid_align).and_then(|size| {
            self.free.iter().enumerate().find_map(|(i, r)| {
                let start = r.start.checked_add(align - 1)? & !(align - 1);
                let end = start.checked_add(size)?;
                (end <= r.end && end <= limit).then_some((i, start, end))
            })
        });
        let Some((i, start, end)) = found else {
            return Err(OutOfFrames {
                size: size.unwrap_or(u64::MAX),
                align,
                free: self.free_bytes(),
                largest: self.largest_free(),
            });
        };
        let r = self.free.remove(i);
        if end < r.end {
            self.free.insert(
                i,
                Range {
                    start: end,
                    end: r.end,
                },
            );
        }
        if r.start < start {
            self.free.insert(
                i,
                Range {
                    start: r.start,
                    end: start,
                },
            );
        }
        Ok(HostPhysAddr::new(start))
    }

    /// Allocates `size` bytes aligned to `align` anywhere.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<HostPhysAddr, OutOfFrames> {
        self.alloc_below(size, align, u64::MAX)
    }

    /// Returns `[start, start + size)` (whole pages) to the free memory.
    pub fn free(&mut self, start: HostPhysAddr, size: u64) {
        let end = start.as_u64().saturating_add(size);
        self.add_free(
            start,
            HostPhysAddr::new(end)
                .checked_align_up(PAGE_SIZE)
                .unwrap_or(HostPhysAddr::new(!(PAGE_SIZE - 1))),
        );
    }

    /// Free bytes in all.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    /// Free 4 KiB frames in all.
    pub fn free_frames(&self) -> u64 {
        self.free_bytes() / PAGE_SIZE
    }

    /// The largest free contiguous block in bytes.
    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).max().unwrap_or(0)
    }

    /// Whether any byte of `[start, start + len)` is free (used by self-checks).
    pub fn overlaps_free(&self, start: HostPhysAddr, len: u64) -> bool {
        let (s, e) = (start.as_u64(), start.as_u64().saturating_add(len));
        self.free.iter().any(|r| r.start < e && s < r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(v: u64) -> HostPhysAddr {
        HostPhysAddr::new(v)
    }

    #[test]
    fn add_reserve_and_merge() {
        let mut a = FrameAllocator::new();
        a.add_free(hpa(0x1000), hpa(0x9f800)); // end rounds down
        a.add_free(hpa(0x100000), hpa(0x800000));
        a.add_free(hpa(0x800000), hpa(0x900000)); // touches: merges
        assert_eq!(a.free.len(), 2);
        a.reserve(hpa(0x200123), hpa(0x300001)); // grows to pages
        assert_eq!(
            a.free_bytes(),
            (0x9f000 - 0x1000) + (0x200000 - 0x100000) + (0x900000 - 0x301000)
        );
        assert!(!a.overlaps_free(hpa(0x200000), 0x101000));
        assert!(a.overlaps_free(hpa(0x300000), 0x2000));
    }

    #[test]
    fn aligned_allocation_and_exact_free_count() {
        let mut a = FrameAllocator::new();
        a.add_free(hpa(0x101000), hpa(0x10000000));
        let before = a.free_frames();
        let big = a.alloc(64 << 20, 2 << 20).unwrap();
        assert!(big.is_aligned(2 << 20));
        let small = a.alloc(1, PAGE_SIZE).unwrap();
        assert_eq!(small, hpa(0x101000), "first fit uses the unaligned head");
        let low = a.alloc_below(0x3000, PAGE_SIZE, 0x200000).unwrap();
        assert!(low.as_u64() + 0x3000 <= 0x200000);
        a.free(big, 64 << 20);
        a.free(small, 1);
        a.free(low, 0x3000);
        assert_eq!(a.free_frames(), before);
        assert_eq!(a.free.len(), 1, "everything coalesced back");
    }

    #[test]
    fn failures_say_what_is_free() {
        let mut a = FrameAllocator::new();
        a.add_free(hpa(0x100000), hpa(0x300000));
        let e = a.alloc(4 << 20, PAGE_SIZE).unwrap_err();
        assert_eq!((e.free, e.largest), (0x200000, 0x200000));
        assert!(a.alloc(0, PAGE_SIZE).is_err());
        assert!(a.alloc(u64::MAX, PAGE_SIZE).is_err());
        assert!(a.alloc(0x1000, 3).is_err());
        assert!(e.to_string().contains("largest block 0x200000"));
    }
}
