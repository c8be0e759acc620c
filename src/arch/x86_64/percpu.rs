//! Per-CPU data, found through the GS base of each CPU.
//!
//! CPU numbers are Bulkhead's own: cpu0 is the boot CPU, the others follow in ACPI MADT order.
//! They are what log lines and the manifest use.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::cpu::{self, MSR_GS_BASE};

/// Most CPUs Bulkhead manages.
pub const MAX_CPUS: usize = 64;

/// The block that GS points at on each CPU. `self_index` must stay the first field: `index()`
/// reads it with one `mov` from `gs:[0]`.
#[repr(C)]
pub struct PerCpu {
    self_index: u32,
    apic_id: AtomicU32,
    /// Name of the guest this CPU runs, as a pointer to a leaked `&'static str`'s bytes (or null).
    guest_name: AtomicPtr<&'static str>,
}

impl PerCpu {
    const fn new(index: u32) -> Self {
        Self {
            self_index: index,
            apic_id: AtomicU32::new(0),
            guest_name: AtomicPtr::new(core::ptr::null_mut()),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut arr = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        arr[i] = PerCpu::new(i as u32);
        i += 1;
    }
    arr
};

/// Points this CPU's GS base at its per-CPU block.
///
/// # Safety
/// Must be called once per CPU, before anything reads per-CPU data on it, with a `index` no
/// other CPU uses.
pub unsafe fn init(index: usize, apic_id: u32) {
    let block = &CPUS[index];
    block.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: GS base is reserved for per-CPU data in Bulkhead; the block is static.
    unsafe { cpu::wrmsr(MSR_GS_BASE, block as *const PerCpu as u64) };
}

/// This CPU's number.
pub fn index() -> usize {
    let base: u64;
    // SAFETY: reading GS base via RDMSR has no side effect (IA32_GS_BASE always exists in long mode).
    unsafe { base = cpu::rdmsr(MSR_GS_BASE) };
    if base == 0 {
        return 0; // before `init` on the boot CPU
    }
    let v: u32;
    // SAFETY: GS points at a `PerCpu` whose first field is the index (checked above that GS is set).
    unsafe {
        core::arch::asm!("mov {0:e}, gs:[0]", out(reg) v, options(nostack, readonly, preserves_flags))
    };
    v as usize
}

/// The per-CPU block of CPU `index`.
pub fn get(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

/// The local APIC id of CPU `index`.
pub fn apic_id(index: usize) -> u32 {
    CPUS[index].apic_id.load(Ordering::Relaxed)
}

/// Records that this CPU now runs guest `name` (or nothing), for log prefixes.
pub fn set_guest_name(name: Option<&'static &'static str>) {
    let ptr = name.map_or(core::ptr::null_mut(), |n| {
        n as *const &'static str as *mut &'static str
    });
    CPUS[index()].guest_name.store(ptr, Ordering::Relaxed);
}

/// The guest this CPU runs, if any.
pub fn guest_name() -> Option<&'static str> {
    let ptr = CPUS[index()].guest_name.load(Ordering::Relaxed);
    // SAFETY: the pointer is null or comes from a `&'static &'static str` in `set_guest_name`.
    unsafe { ptr.as_ref().copied() }
}
