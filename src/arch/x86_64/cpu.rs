//! Thin wrappers over single privileged instructions (MSRs, port I/O, control registers).

use core::arch::asm;

/// IA32_EFER.
pub const MSR_EFER: u32 = 0xC000_0080;
/// IA32_GS_BASE.
pub const MSR_GS_BASE: u32 = 0xC000_0101;
/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_FEATURE_CONTROL (Intel SDM vol.3 §24.7).
pub const MSR_FEATURE_CONTROL: u32 = 0x3A;
/// AMD VM_CR (AMD APM vol.2 §15.30.1).
pub const MSR_VM_CR: u32 = 0xC001_0114;

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP) and reading it must have no side effect the caller
/// has not accounted for.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists and may be read.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist, `value` must be valid for it, and the write must not break an invariant of
/// the hypervisor (paging, interrupt state, ...).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid and intended.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// The port must belong to a device the hypervisor owns and reading it must be harmless.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller guarantees the port is ours to read.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device the hypervisor owns and the write must be intended.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the port is ours to write.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; CR4.TSD is never set by Bulkhead.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good: interrupts off, then HLT forever (an NMI only resumes the loop).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting touches no memory.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Waits for the next interrupt with interrupts enabled.
pub fn wait_for_interrupt() {
    // SAFETY: STI;HLT only waits; the IDT is loaded before any CPU calls this.
    unsafe { asm!("sti; hlt; cli", options(nomem, nostack)) };
}

/// Hint to the CPU inside a spin loop.
pub fn relax() {
    core::hint::spin_loop();
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effect.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR4.
///
/// # Safety
/// The new value must keep paging and every feature the hypervisor relies on consistent.
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: the caller guarantees the value is consistent.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Writes CR0.
///
/// # Safety
/// The new value must keep paging and protection consistent.
pub unsafe fn write_cr0(v: u64) {
    // SAFETY: the caller guarantees the value is consistent.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Writes CR3 (switches page tables and flushes non-global TLB entries).
///
/// # Safety
/// `v` must point to page tables that map the running code, its stack and its data identically.
pub unsafe fn write_cr3(v: u64) {
    // SAFETY: the caller guarantees the new tables map everything in use.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Reads CR2 (the faulting linear address of the last #PF).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Masks host interrupts (CLI).
pub fn disable_interrupts() {
    // SAFETY: CLI only masks maskable interrupts on this CPU.
    unsafe { asm!("cli", options(nomem, nostack)) };
}
