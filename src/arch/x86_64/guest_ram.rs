//! A guest's RAM as the hypervisor reaches it: one contiguous block of host memory, identity-
//! mapped for the hypervisor, seen by the guest through its nested page table at GPA 0 (and,
//! beyond the device window, at 4 GiB).

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::guest_mem::{range_within, GuestMemError, GuestMemory};
use crate::loader::GuestRamLayout;

/// One guest's RAM.
#[derive(Debug)]
pub struct GuestRam {
    host_base: HostPhysAddr,
    size: u64,
}

/// Where part of guest RAM sits in host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    pub gpa: GuestPhysAddr,
    pub hpa: HostPhysAddr,
    pub len: u64,
}

impl GuestRam {
    /// Wraps `size` bytes of host memory at `host_base`.
    ///
    /// # Safety
    /// The range must be RAM owned by this guest alone for as long as the `GuestRam` lives, and
    /// identity-mapped writable for the hypervisor.
    pub unsafe fn new(host_base: HostPhysAddr, size: u64) -> Self {
        Self { host_base, size }
    }

    /// Host address of the block.
    pub fn host_base(&self) -> HostPhysAddr {
        self.host_base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the RAM sits in guest-physical space.
    pub fn layout(&self) -> GuestRamLayout {
        GuestRamLayout::new(self.size)
    }

    /// The (at most two) guest-physical regions of this RAM, with their host addresses (the
    /// block is laid out in the order of the layout's ranges).
    pub fn regions(&self) -> impl Iterator<Item = RamRegion> {
        let mut host = self.host_base;
        self.layout().ranges().map(move |r| {
            let region = RamRegion {
                gpa: r.start,
                hpa: host,
                len: r.len,
            };
            host = host + r.len;
            region
        })
    }

    /// Host address of `[gpa, gpa + len)` if it lies inside one region.
    fn translate(&self, gpa: GuestPhysAddr, len: u64) -> Option<u64> {
        self.regions()
            .find(|r| range_within(r.gpa, r.len, gpa, len))
            .map(|r| r.hpa.as_u64() + (gpa - r.gpa))
    }

    /// Zeroes the whole RAM (before first use and before a restart).
    pub fn zero(&self) {
        // SAFETY: the block is this guest's RAM (constructor contract) and the guest is not
        // running while it is cleared.
        unsafe {
            core::ptr::write_bytes(self.host_base.as_u64() as *mut u8, 0, self.size as usize)
        };
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let Some(src) = self.translate(gpa, buf.len() as u64) else {
            return Err(GuestMemError {
                gpa,
                len: buf.len() as u64,
            });
        };
        // SAFETY: `translate` checked the range lies in this guest's RAM, which is mapped.
        unsafe { copy_in(src, buf) };
        Ok(())
    }

    fn write(&self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let Some(dst) = self.translate(gpa, data.len() as u64) else {
            return Err(GuestMemError {
                gpa,
                len: data.len() as u64,
            });
        };
        // SAFETY: `translate` checked the range lies in this guest's RAM, which is mapped.
        unsafe { copy_out(data, dst) };
        Ok(())
    }

    fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        self.translate(gpa, len).is_some()
    }
}

/// Copies guest memory at host address `src` into `buf` with volatile loads (the guest may be
/// writing it concurrently), a word at a time where aligned.
///
/// # Safety
/// `[src, src + buf.len())` must be mapped, readable memory.
unsafe fn copy_in(src: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    let n = buf.len();
    while i < n && !(src + i as u64).is_multiple_of(8) {
        // SAFETY: in range per the caller.
        buf[i] = unsafe { core::ptr::read_volatile((src + i as u64) as *const u8) };
        i += 1;
    }
    while i + 8 <= n {
        // SAFETY: in range per the caller, and 8-byte aligned by the loop above.
        let w = unsafe { core::ptr::read_volatile((src + i as u64) as *const u64) };
        buf[i..i + 8].copy_from_slice(&w.to_le_bytes());
        i += 8;
    }
    while i < n {
        // SAFETY: in range per the caller.
        buf[i] = unsafe { core::ptr::read_volatile((src + i as u64) as *const u8) };
        i += 1;
    }
}

/// Copies `data` to guest memory at host address `dst` with volatile stores.
///
/// # Safety
/// `[dst, dst + data.len())` must be mapped, writable memory that no Rust reference points into.
unsafe fn copy_out(data: &[u8], dst: u64) {
    let mut i = 0usize;
    let n = data.len();
    while i < n && !(dst + i as u64).is_multiple_of(8) {
        // SAFETY: in range per the caller.
        unsafe { core::ptr::write_volatile((dst + i as u64) as *mut u8, data[i]) };
        i += 1;
    }
    while i + 8 <= n {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[i..i + 8]);
        // SAFETY: in range per the caller, and 8-byte aligned by the loop above.
        unsafe { core::ptr::write_volatile((dst + i as u64) as *mut u64, u64::from_le_bytes(w)) };
        i += 8;
    }
    while i < n {
        // SAFETY: in range per the caller.
        unsafe { core::ptr::write_volatile((dst + i as u64) as *mut u8, data[i]) };
        i += 1;
    }
}
