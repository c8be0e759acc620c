//! Device register access through one explicit MOV per access, as an OS does (Linux's
//! readl/writel).
//!
//! Plain volatile pointer accesses leave the instruction choice to LLVM, which may fuse a
//! volatile load, an OR and a volatile store into one read-modify-write instruction (`or [mem],
//! reg`). A hypervisor's MMIO decoder sees one exit for what the driver meant as two accesses,
//! and Bulkhead's decoder refuses such instructions. Every helper here is exactly one `mov`.

use core::arch::asm;

/// Reads a byte of device memory.
///
/// # Safety
/// `addr` must be identity-mapped (uncacheable for device memory) and reading it must have no
/// effect the caller does not intend.
pub unsafe fn read8(addr: u64) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the address and the effect of the read.
    unsafe {
        asm!("mov {0}, byte ptr [{1}]", out(reg_byte) value, in(reg) addr, options(nostack, preserves_flags))
    };
    value
}

/// Reads a 16-bit word of device memory; `addr` should be 2-aligned.
///
/// # Safety
/// As for [`read8`].
pub unsafe fn read16(addr: u64) -> u16 {
    let value: u16;
    // SAFETY: the caller vouches for the address and the effect of the read.
    unsafe {
        asm!("mov {0:x}, word ptr [{1}]", out(reg) value, in(reg) addr, options(nostack, preserves_flags))
    };
    value
}

/// Reads a 32-bit word of device memory; `addr` should be 4-aligned.
///
/// # Safety
/// As for [`read8`].
pub unsafe fn read32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the address and the effect of the read.
    unsafe {
        asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) addr, options(nostack, preserves_flags))
    };
    value
}

/// Reads a 64-bit word of device memory; `addr` should be 8-aligned.
///
/// # Safety
/// As for [`read8`].
pub unsafe fn read64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: the caller vouches for the address and the effect of the read.
    unsafe {
        asm!("mov {0}, qword ptr [{1}]", out(reg) value, in(reg) addr, options(nostack, preserves_flags))
    };
    value
}

/// Writes a byte of device memory.
///
/// # Safety
/// `addr` must be identity-mapped (uncacheable for device memory) and the write must have only
/// the effect the caller intends.
pub unsafe fn write8(addr: u64, value: u8) {
    // SAFETY: the caller vouches for the address and the effect of the write.
    unsafe {
        asm!("mov byte ptr [{0}], {1}", in(reg) addr, in(reg_byte) value, options(nostack, preserves_flags))
    };
}

/// Writes a 16-bit word of device memory; `addr` should be 2-aligned.
///
/// # Safety
/// As for [`write8`].
pub unsafe fn write16(addr: u64, value: u16) {
    // SAFETY: the caller vouches for the address and the effect of the write.
    unsafe {
        asm!("mov word ptr [{0}], {1:x}", in(reg) addr, in(reg) value, options(nostack, preserves_flags))
    };
}

/// Writes a 32-bit word of device memory; `addr` should be 4-aligned.
///
/// # Safety
/// As for [`write8`].
pub unsafe fn write32(addr: u64, value: u32) {
    // SAFETY: the caller vouches for the address and the effect of the write.
    unsafe {
        asm!("mov dword ptr [{0}], {1:e}", in(reg) addr, in(reg) value, options(nostack, preserves_flags))
    };
}

/// Writes a 64-bit word of device memory; `addr` should be 8-aligned.
///
/// # Safety
/// As for [`write8`].
pub unsafe fn write64(addr: u64, value: u64) {
    // SAFETY: the caller vouches for the address and the effect of the write.
    unsafe {
        asm!("mov qword ptr [{0}], {1}", in(reg) addr, in(reg) value, options(nostack, preserves_flags))
    };
}
