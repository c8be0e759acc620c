//! Canary pages: RAM only this guest writes, filled with a pattern derived from each byte's
//! address, so a device that writes outside the buffers it was given shows up as a changed
//! byte. Optionally also a snapshot of the page at GPA 0, which a buffer whose length wraps
//! past 2^64 reaches.

use crate::dma::PAGE_BYTES;
use crate::mmio;

const PAGE: usize = PAGE_BYTES as usize;

/// The byte a canary page holds at `addr`: varies with the address, never zero (zeroed memory
/// and a device's zero-fill both stand out).
fn canary_byte(addr: u64) -> u8 {
    (addr.wrapping_mul(0x9E37_79B9) >> 11) as u8 | 0x80
}

fn read_low(addr: u64) -> u8 {
    // SAFETY: GPA 0..4 KiB is RAM in the boot stub's identity map (`new`'s contract); read with
    // an explicit MOV because address 0 is not a valid Rust pointer.
    unsafe { mmio::read8(addr) }
}

/// `N` planted pages and, when asked for, the snapshot of the page at GPA 0.
pub struct Canaries<const N: usize> {
    pages: [u64; N],
    low: Option<[u8; PAGE]>,
}

impl<const N: usize> Canaries<N> {
    /// Plants `pages` and, when `is_low_watched`, snapshots the page at GPA 0.
    ///
    /// # Safety
    /// Each of `pages` must be a page-aligned page of identity-mapped RAM that this guest owns
    /// and nothing else in it uses (typically a DMA-pool page after a device's buffer); with
    /// `is_low_watched`, GPA 0..4 KiB must be identity-mapped RAM.
    pub unsafe fn new(pages: [u64; N], is_low_watched: bool) -> Self {
        let mut canaries = Self {
            pages,
            low: is_low_watched.then_some([0; PAGE]),
        };
        canaries.plant();
        canaries
    }

    fn plant(&mut self) {
        for page in self.pages {
            for addr in page..page + PAGE_BYTES {
                // SAFETY: `new`'s contract: the page is this guest's and unused; volatile
                // because a device may write it behind the compiler's back.
                unsafe { core::ptr::write_volatile(addr as *mut u8, canary_byte(addr)) };
            }
        }
        if let Some(low) = &mut self.low {
            for (i, b) in low.iter_mut().enumerate() {
                *b = read_low(i as u64);
            }
        }
    }

    /// The first changed address, if any (and then plants again, so the next check sees only
    /// new damage).
    pub fn check(&mut self) -> Option<u64> {
        let is_intact = |addr: u64| {
            // SAFETY: as in `plant`.
            unsafe { core::ptr::read_volatile(addr as *const u8) == canary_byte(addr) }
        };
        let changed = self
            .pages
            .iter()
            .find_map(|&p| (p..p + PAGE_BYTES).find(|&a| !is_intact(a)))
            .or_else(|| {
                let low = self.low.as_ref()?;
                (0..PAGE_BYTES).find(|&a| read_low(a) != low[a as usize])
            });
        if changed.is_some() {
            self.plant();
        }
        changed
    }
}
