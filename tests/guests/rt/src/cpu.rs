//! Thin wrappers over CPU instructions the guests need: CPUID, RDMSR/WRMSR, port I/O, RDTSC,
//! STI/CLI/HLT, and reading the control registers.

use core::arch::asm;

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID leaf 1 ECX bit 5: VMX (Intel SDM vol.2A, CPUID, table "Feature Information").
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
/// CPUID leaf 1 ECX bit 21: x2APIC.
pub const LEAF1_ECX_X2APIC: u32 = 1 << 21;
/// CPUID leaf 1 ECX bit 31: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID 0x8000_0001 ECX bit 2: SVM (AMD APM vol.3, appendix E.4.2).
pub const EXT1_ECX_SVM: u32 = 1 << 2;
/// CPUID 0x8000_0001 EDX bit 26: 1 GiB pages.
pub const EXT1_EDX_PAGE1GB: u32 = 1 << 26;

/// First hypervisor CPUID leaf (vendor signature, max hypervisor leaf in EAX).
pub const HV_LEAF_BASE: u32 = 0x4000_0000;
/// Hypervisor leaf with the TSC frequency in kHz in EAX (the VMware/KVM convention).
pub const HV_LEAF_TIMING: u32 = 0x4000_0010;

/// Executes CPUID with the given leaf and subleaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    Cpuid {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

fn regs_to_bytes(regs: [u32; 3]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for (chunk, reg) in out.chunks_exact_mut(4).zip(regs) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    out
}

/// The CPU vendor string from leaf 0 (EBX, EDX, ECX order), e.g. `AuthenticAMD`.
pub fn vendor() -> [u8; 12] {
    let r = cpuid(0, 0);
    regs_to_bytes([r.ebx, r.edx, r.ecx])
}

/// Which vendor's virtualization instructions the CPU natively knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Amd,
    Intel,
    Other,
}

/// Classifies [`vendor`].
pub fn vendor_kind() -> Vendor {
    match &vendor() {
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
        b"GenuineIntel" => Vendor::Intel,
        _ => Vendor::Other,
    }
}

/// The hypervisor leaf 0x4000_0000: its maximum hypervisor leaf (EAX) and the 12-byte
/// signature in EBX, ECX, EDX order. `None` when CPUID leaf 1 does not set the hypervisor bit.
pub fn hypervisor_leaf() -> Option<(u32, [u8; 12])> {
    if cpuid(1, 0).ecx & LEAF1_ECX_HYPERVISOR == 0 {
        return None;
    }
    let r = cpuid(HV_LEAF_BASE, 0);
    Some((r.eax, regs_to_bytes([r.ebx, r.ecx, r.edx])))
}

/// Signature Bulkhead puts in leaf 0x4000_0000 (EBX, ECX, EDX).
pub const BULKHEAD_SIGNATURE: [u8; 12] = *b"Bulkhead\0\0\0\0";

/// True when the hypervisor leaf says "Bulkhead".
pub fn is_bulkhead() -> bool {
    matches!(hypervisor_leaf(), Some((_, sig)) if sig == BULKHEAD_SIGNATURE)
}

/// Highest extended leaf (0x8000_0000 EAX).
pub fn max_extended_leaf() -> u32 {
    cpuid(0x8000_0000, 0).eax
}

/// True when 1 GiB pages are supported.
pub fn has_1g_pages() -> bool {
    max_extended_leaf() >= 0x8000_0001 && cpuid(0x8000_0001, 0).edx & EXT1_EDX_PAGE1GB != 0
}

/// Where a TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscSource {
    /// Leaf 0x15: crystal clock times the TSC/crystal ratio.
    Leaf15,
    /// Leaf 0x16: processor base frequency in MHz.
    Leaf16,
    /// Hypervisor leaf 0x4000_0010 EAX, in kHz.
    Hypervisor,
}

/// The TSC frequency in Hz and where it came from, if any CPUID leaf tells it.
pub fn tsc_hz() -> Option<(u64, TscSource)> {
    let max_basic = cpuid(0, 0).eax;
    if max_basic >= 0x15 {
        let r = cpuid(0x15, 0);
        // Intel SDM vol.2A CPUID leaf 15H: TSC = ECX * EBX / EAX; zero fields mean "unknown".
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return Some((
                u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax),
                TscSource::Leaf15,
            ));
        }
    }
    if max_basic >= 0x16 {
        let mhz = cpuid(0x16, 0).eax & 0xFFFF;
        if mhz != 0 {
            return Some((u64::from(mhz) * 1_000_000, TscSource::Leaf16));
        }
    }
    if let Some((max_hv, _)) = hypervisor_leaf() {
        if max_hv >= HV_LEAF_TIMING {
            let khz = cpuid(HV_LEAF_TIMING, 0).eax;
            if khz != 0 {
                return Some((u64::from(khz) * 1000, TscSource::Hypervisor));
            }
        }
    }
    None
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is never set by this runtime.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The APIC ID of this CPU from CPUID leaf 1 EBX[31:24].
pub fn initial_apic_id() -> u32 {
    cpuid(1, 0).ebx >> 24
}

/// Reads a model-specific register.
///
/// # Safety
/// Reading an MSR the CPU does not implement raises #GP; callers either know the MSR exists or
/// run this inside [`crate::fault::catch`].
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches for the MSR (see above); RDMSR touches only EAX/EDX.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The write may change how the CPU behaves (EFER, APIC base ...); the caller must know the
/// value keeps the guest's execution environment intact, or catch the #GP it may raise.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    let lo = value as u32;
    let hi = (value >> 32) as u32;
    // SAFETY: the caller vouches for the effect of the write.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi, options(nostack)) };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// Port writes drive devices (and may reset the machine); the caller must mean that effect.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the effect of the write.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Port reads can have side effects on devices (e.g. clearing status); the caller must mean it.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the effect of the read.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

/// Writes a double word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the effect of the write.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack)) };
}

/// Reads a double word from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the effect of the read.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack)) };
    value
}

/// Reads CR2 (the faulting linear address of the last #PF).
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects at CPL 0.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reloads CR3 with its own value, flushing non-global TLB entries.
pub fn flush_tlb() {
    // SAFETY: writing CR3 back unchanged keeps the same address space.
    unsafe {
        asm!("mov {tmp}, cr3", "mov cr3, {tmp}", tmp = out(reg) _, options(nostack));
    }
}

/// RFLAGS.IF: maskable interrupts enabled (Intel SDM vol.1 §3.4.3.3).
const RFLAGS_IF: u64 = 1 << 9;

/// Enables maskable interrupts (STI). Also a compiler barrier: memory accesses are not moved
/// across it, so data a handler reads is written before interrupts can arrive.
pub fn sti() {
    // SAFETY: every vector has a gate (idt::init runs before main), so any interrupt that
    // arrives is dispatched to crate::irq.
    unsafe { asm!("sti", options(nostack, preserves_flags)) };
}

/// Disables maskable interrupts (CLI); a compiler barrier like [`sti`].
pub fn cli() {
    // SAFETY: masking interrupts only delays them.
    unsafe { asm!("cli", options(nostack, preserves_flags)) };
}

/// Halts until the next interrupt (or NMI). With interrupts disabled, only an NMI, SMI or INIT
/// ends it: use [`sti_hlt`] to wait for an interrupt.
pub fn hlt() {
    // SAFETY: HLT stops this CPU until an event; nothing else depends on it running.
    unsafe { asm!("hlt", options(nostack, preserves_flags)) };
}

/// Enables interrupts and halts in one step: STI delays recognition of interrupts until after
/// the next instruction (SDM vol.2B, STI), so an interrupt that is already pending wakes the HLT
/// instead of being taken just before it and leaving the CPU asleep. Returns with interrupts
/// enabled, after the handler of the interrupt that woke it has run.
pub fn sti_hlt() {
    // SAFETY: as for sti and hlt.
    unsafe { asm!("sti", "hlt", options(nostack, preserves_flags)) };
}

/// Whether RFLAGS.IF is set.
pub fn interrupts_enabled() -> bool {
    let rflags: u64;
    // SAFETY: PUSHFQ/POP only read RFLAGS through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) rflags, options(preserves_flags)) };
    rflags & RFLAGS_IF != 0
}

/// Runs `f` with interrupts disabled, then restores the previous state.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was_enabled = interrupts_enabled();
    cli();
    let result = f();
    if was_enabled {
        sti();
    }
    result
}

/// Halts until the next interrupt (forever, as interrupts stay disabled).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI+HLT only stops this CPU; nothing else depends on it running.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// CPUID leaf 1 EDX bit 12: MTRRs.
const LEAF1_EDX_MTRR: u32 = 1 << 12;
/// IA32_MTRR_DEF_TYPE (Intel SDM vol.3 §12.11.2.1): default type in bits 7:0, enable bit 11.
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2FF;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRITE_BACK: u64 = 6;

/// Makes write-back the default memory type when the MTRRs are off. A PVH loader without
/// firmware (QEMU's microvm) leaves them off, so all memory is uncacheable under KVM and RAM
/// runs at device speed. Device windows stay uncacheable through the page tables (PCD|PWT).
/// Returns the previous IA32_MTRR_DEF_TYPE when it changed it.
pub fn enable_write_back_default() -> Option<u64> {
    if cpuid(1, 0).edx & LEAF1_EDX_MTRR == 0 {
        return None;
    }
    crate::fault::catch(|| {
        // SAFETY: the MSR exists (CPUID above); a #GP is caught.
        let old = unsafe { rdmsr(MSR_MTRR_DEF_TYPE) };
        if old & MTRR_ENABLE != 0 {
            return None;
        }
        // SAFETY: write-back by default is what firmware sets up for RAM; MMIO is mapped
        // uncacheable by the page tables, whose PCD|PWT wins over a write-back MTRR.
        unsafe { wrmsr(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRITE_BACK) };
        flush_tlb();
        Some(old)
    })
    .ok()
    .flatten()
}
