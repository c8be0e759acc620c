//! A bump allocator of zeroed, page-aligned guest RAM for device rings and buffers.
//!
//! Guests are identity-mapped, so an address is both the CPU's pointer and the device's
//! physical address. Memory is never freed: guests are short-lived and allocate a bounded set
//! of rings and buffers up front.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::boot::image_range;
use crate::start_info::StartInfo;

pub const PAGE_BYTES: u64 = 4096;
/// The boot stub identity-maps only the first 4 GiB.
const MAPPED_LIMIT: u64 = 1 << 32;

static NEXT: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);

/// Why the allocator could not start or serve a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// No RAM range of the memory map lies above the image and below 4 GiB.
    NoRam,
    /// The request does not fit in what is left.
    Exhausted { wanted_bytes: u64, left_bytes: u64 },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => f.write_str("no RAM above the guest image and below 4 GiB for DMA"),
            Self::Exhausted {
                wanted_bytes,
                left_bytes,
            } => write!(
                f,
                "DMA pool exhausted: wanted {wanted_bytes:#x} bytes, {left_bytes:#x} left"
            ),
        }
    }
}

/// Takes the largest RAM range above the image (and below 4 GiB) as the pool; returns it as
/// `[start, end)`. Calling it again starts over (for guests that run phases).
pub fn init(info: &StartInfo) -> Result<(u64, u64), DmaError> {
    let (_, image_end) = image_range();
    let (start, end) = info
        .ram()
        .map(|r| {
            let start = r.base.max(image_end).next_multiple_of(PAGE_BYTES);
            let end = r.end().min(MAPPED_LIMIT) / PAGE_BYTES * PAGE_BYTES;
            (start, end.max(start))
        })
        .max_by_key(|&(start, end)| end - start)
        .filter(|&(start, end)| end > start)
        .ok_or(DmaError::NoRam)?;
    END.store(end, Ordering::SeqCst);
    NEXT.store(start, Ordering::SeqCst);
    Ok((start, end))
}

/// Bytes left in the pool.
pub fn left_bytes() -> u64 {
    END.load(Ordering::SeqCst)
        .saturating_sub(NEXT.load(Ordering::SeqCst))
}

/// Allocates `bytes` (rounded up to whole pages), zeroed; returns the address.
pub fn alloc(bytes: u64) -> Result<u64, DmaError> {
    let size = bytes.max(1).next_multiple_of(PAGE_BYTES);
    let end = END.load(Ordering::SeqCst);
    let mut start = NEXT.load(Ordering::SeqCst);
    loop {
        let new_next =
            start
                .checked_add(size)
                .filter(|&n| n <= end)
                .ok_or(DmaError::Exhausted {
                    wanted_bytes: size,
                    left_bytes: end.saturating_sub(start),
                })?;
        match NEXT.compare_exchange(start, new_next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(now) => start = now,
        }
    }
    // SAFETY: [start, start + size) is RAM from the memory map above the image and below
    // 4 GiB (identity-mapped), handed out once by the bump above and used by nothing else.
    unsafe { core::ptr::write_bytes(start as *mut u8, 0, size as usize) };
    Ok(start)
}

/// Allocates `pages` zeroed pages.
pub fn alloc_pages(pages: u64) -> Result<u64, DmaError> {
    alloc(pages.saturating_mul(PAGE_BYTES))
}
