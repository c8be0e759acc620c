//! The VMCS host-state area, taken from the CPU that runs the vCPU (SDM vol.3 §25.5, §28.5).
//!
//! A VM exit loads these values, so they must be exactly this CPU's: its GDT, IDT, TSS and
//! per-CPU GS base (Bulkhead finds its per-CPU data through IA32_GS_BASE). A VM exit sets the
//! GDTR and IDTR limits to 0xFFFF (§28.5.2); [`HostTables::restore`] puts the real ones back.

use x86_64::instructions::tables::{lgdt, lidt, sgdt, sidt};
use x86_64::structures::DescriptorTablePointer;

use super::fields::*;
use super::vmcs::ActiveVmcs;
use crate::arch::x86_64::cpu::{self, rdmsr, MSR_EFER, MSR_GS_BASE};
use crate::arch::x86_64::tables::{KERNEL_CS, KERNEL_TSS};

const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;
pub const MSR_PAT: u32 = 0x277;

/// This CPU's descriptor-table registers, to restore after each exit.
pub struct HostTables {
    gdtr: DescriptorTablePointer,
    idtr: DescriptorTablePointer,
}

impl HostTables {
    /// Reloads GDTR and IDTR with their real limits.
    pub fn restore(&self) {
        // SAFETY: these are the tables this CPU had loaded when the vCPU was created; a VM exit
        // reloaded the same bases, only the limits differ.
        unsafe {
            lgdt(&self.gdtr);
            lidt(&self.idtr);
        }
    }
}

macro_rules! read_selector {
    ($reg:literal) => {{
        let v: u16;
        // SAFETY: reading a segment register has no side effect.
        unsafe {
            core::arch::asm!(concat!("mov {0:x}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags))
        };
        u64::from(v)
    }};
}

/// The base of the TSS whose selector is `tr`, from its 16-byte GDT descriptor
/// (SDM vol.3 §8.2.3).
fn tss_base(gdt_base: u64, tr: u64) -> u64 {
    let at = (gdt_base + (tr & !7)) as *const u64;
    // SAFETY: TR names a descriptor in the loaded GDT (it was loaded from there); the GDT is
    // the hypervisor's own, identity-mapped memory.
    let (low, high) = unsafe { (at.read_volatile(), at.add(1).read_volatile()) };
    ((low >> 16) & 0xFF_FFFF) | (((low >> 56) & 0xFF) << 24) | ((high & 0xFFFF_FFFF) << 32)
}

/// Writes the host-state area for this CPU, with HOST_RIP = `exit_rip`. HOST_RSP is written
/// at each entry.
pub fn write(vmcs: &mut ActiveVmcs, exit_rip: u64) -> HostTables {
    let gdtr = sgdt();
    let idtr = sidt();
    vmcs.write(HOST_CR0, cpu::read_cr0());
    vmcs.write(HOST_CR3, cpu::read_cr3());
    vmcs.write(HOST_CR4, cpu::read_cr4());
    let tr = read_tr();
    vmcs.write(HOST_CS_SELECTOR, u64::from(KERNEL_CS.0));
    vmcs.write(HOST_SS_SELECTOR, read_selector!("ss"));
    vmcs.write(HOST_DS_SELECTOR, read_selector!("ds"));
    vmcs.write(HOST_ES_SELECTOR, read_selector!("es"));
    vmcs.write(HOST_FS_SELECTOR, read_selector!("fs"));
    vmcs.write(HOST_GS_SELECTOR, read_selector!("gs"));
    vmcs.write(HOST_TR_SELECTOR, tr);
    if tr != u64::from(KERNEL_TSS.0) {
        log::warn!(target: "vmx", "TR is {tr:#x}, not the kernel TSS selector {:#x}", KERNEL_TSS.0);
    }
    vmcs.write(HOST_TR_BASE, tss_base(gdtr.base.as_u64(), tr));
    vmcs.write(HOST_GDTR_BASE, gdtr.base.as_u64());
    vmcs.write(HOST_IDTR_BASE, idtr.base.as_u64());
    // SAFETY: these MSRs exist on every CPU with VMX and long mode; reading has no side effect.
    unsafe {
        vmcs.write(HOST_FS_BASE, rdmsr(MSR_FS_BASE));
        vmcs.write(HOST_GS_BASE, rdmsr(MSR_GS_BASE));
        vmcs.write(HOST_SYSENTER_CS, rdmsr(MSR_SYSENTER_CS));
        vmcs.write(HOST_SYSENTER_ESP, rdmsr(MSR_SYSENTER_ESP));
        vmcs.write(HOST_SYSENTER_EIP, rdmsr(MSR_SYSENTER_EIP));
        vmcs.write(HOST_PAT, rdmsr(MSR_PAT));
        vmcs.write(HOST_EFER, rdmsr(MSR_EFER));
    }
    vmcs.write(HOST_RIP, exit_rip);
    HostTables { gdtr, idtr }
}

fn read_tr() -> u64 {
    let v: u16;
    // SAFETY: STR only reads the task register.
    unsafe { core::arch::asm!("str {0:x}", out(reg) v, options(nomem, nostack, preserves_flags)) };
    u64::from(v)
}
