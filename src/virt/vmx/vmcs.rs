//! VMX operation and the VMCS, as types: [`Vmxon`] is VMX root operation on this CPU, a
//! [`Vmcs`] is a control structure in memory, and [`ActiveVmcs`] is the one VMCS current on this
//! CPU. `vmread`/`vmwrite` exist only on an `ActiveVmcs`; it borrows the `Vmxon` mutably, so a
//! CPU has at most one, and neither can leave the CPU that made it (`!Send`).

use core::cell::Cell;
use core::marker::PhantomData;

use super::controls::{CapMsrs, BASIC_32BIT_ADDRESSES};
use super::fields::{self, Field};
use super::finding::InsnFailure;
use crate::addr::{HostPhysAddr, PAGE_SIZE};
use crate::arch::x86_64::cpu::{self, rdmsr, wrmsr, MSR_FEATURE_CONTROL};
use crate::arch::x86_64::memory;
use crate::virt::VcpuError;

const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const CR4_VMXE: u64 = 1 << 13;
const FOUR_GIB: u64 = 1 << 32;

/// Turns a VMX instruction's flags into a result (SDM vol.3 §31.2): CF = VMfailInvalid,
/// ZF = VMfailValid with the error number in the VM-instruction error field.
fn outcome(cf: u8, zf: u8) -> Result<(), InsnFailure> {
    if cf != 0 {
        Err(InsnFailure::Invalid)
    } else if zf != 0 {
        // SAFETY: VMfailValid means a VMCS is current, so the read-only error field exists.
        Err(InsnFailure::Valid(
            unsafe { raw_read(fields::VM_INSN_ERROR) }.unwrap_or(0),
        ))
    } else {
        Ok(())
    }
}

/// VMREAD without the typestate, for error paths.
///
/// # Safety
/// The CPU must be in VMX root operation.
unsafe fn raw_read(field: Field) -> Result<u64, ()> {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: the caller guarantees VMX operation; VMREAD touches only the current VMCS.
    unsafe {
        core::arch::asm!(
            "vmread {v}, {f}", "setc {cf}", "setz {zf}",
            v = out(reg) value, f = in(reg) u64::from(field.0),
            cf = out(reg_byte) cf, zf = out(reg_byte) zf,
            options(nostack)
        )
    };
    if cf | zf != 0 {
        Err(())
    } else {
        Ok(value)
    }
}

/// Executes one VMX instruction whose operand is a 64-bit physical address in memory.
macro_rules! vmx_pa_insn {
    ($insn:literal, $pa:expr) => {{
        let pa: u64 = $pa;
        let (cf, zf): (u8, u8);
        core::arch::asm!(
            concat!($insn, " qword ptr [{p}]"), "setc {cf}", "setz {zf}",
            p = in(reg) &pa as *const u64,
            cf = out(reg_byte) cf, zf = out(reg_byte) zf,
            options(nostack)
        );
        outcome(cf, zf)
    }};
}

/// Allocates one zeroed 4 KiB control structure, below 4 GiB if the CPU demands it.
fn alloc_region(caps: &CapMsrs) -> Result<HostPhysAddr, VcpuError> {
    let limit = if caps.basic & BASIC_32BIT_ADDRESSES != 0 {
        FOUR_GIB
    } else {
        u64::MAX
    };
    memory::alloc_zeroed_below(PAGE_SIZE, PAGE_SIZE, limit).map_err(|_| VcpuError::OutOfMemory)
}

fn write_revision(region: HostPhysAddr, caps: &CapMsrs) {
    // SAFETY: the region was just allocated for this structure alone and is identity-mapped;
    // bits 30:0 of the first word take the revision identifier, bit 31 stays clear
    // (SDM vol.3 §25.2, §25.11.5).
    unsafe { (region.as_u64() as *mut u32).write_volatile(caps.revision()) };
}

/// VMX root operation on this CPU: VMXOFF when dropped.
pub struct Vmxon {
    region: HostPhysAddr,
    caps: CapMsrs,
    set_vmxe: bool,
    _on_this_cpu: PhantomData<*const ()>,
}

impl Vmxon {
    /// Enters VMX root operation on this CPU (SDM vol.3 §24.7, §24.8): IA32_FEATURE_CONTROL,
    /// the CR0/CR4 fixed bits, CR4.VMXE and a VMXON region.
    pub fn enable(caps: CapMsrs) -> Result<Self, VcpuError> {
        if caps.region_bytes() > PAGE_SIZE {
            return Err(VcpuError::EnableFailed(
                "IA32_VMX_BASIC asks for a VMXON region larger than 4 KiB",
            ));
        }
        // SAFETY: the caller found VMX in CPUID, so IA32_FEATURE_CONTROL exists (SDM vol.3 §24.7).
        let fc = unsafe { rdmsr(MSR_FEATURE_CONTROL) };
        if fc & FEATURE_CONTROL_LOCKED == 0 {
            // SAFETY: unlocked, so the MSR may be written once; enabling VMX outside SMX and
            // locking is what firmware normally does.
            unsafe {
                wrmsr(
                    MSR_FEATURE_CONTROL,
                    fc | FEATURE_CONTROL_LOCKED | FEATURE_CONTROL_VMX_OUTSIDE_SMX,
                )
            };
        } else if fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            return Err(VcpuError::EnableFailed(
                "IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled (firmware setting)",
            ));
        }
        let cr0 = cpu::read_cr0();
        if cr0 & !caps.cr0_fixed1 != 0 {
            return Err(VcpuError::EnableFailed(
                "CR0 has a bit set that IA32_VMX_CR0_FIXED1 forbids in VMX operation",
            ));
        }
        if cr0 & caps.cr0_fixed0 != caps.cr0_fixed0 {
            log::info!(target: "vmx", "setting CR0 bits {:#x} that VMX operation requires", caps.cr0_fixed0 & !cr0);
            // SAFETY: only bits IA32_VMX_CR0_FIXED0 requires (PE, PG, NE) are added; the host
            // already runs with PE and PG, and NE only changes x87 error reporting, unused here.
            unsafe { cpu::write_cr0(cr0 | caps.cr0_fixed0) };
        }
        let cr4 = cpu::read_cr4();
        let want = cr4 | CR4_VMXE | caps.cr4_fixed0;
        if want & !caps.cr4_fixed1 != 0 {
            return Err(VcpuError::EnableFailed(
                "CR4 has a bit set that IA32_VMX_CR4_FIXED1 forbids in VMX operation",
            ));
        }
        // SAFETY: VMXE (and any other FIXED0 bit) only enables VMX instructions.
        unsafe { cpu::write_cr4(want) };
        let set_vmxe = cr4 & CR4_VMXE == 0;
        let region = match alloc_region(&caps) {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: restoring the CR4 this function found.
                unsafe { cpu::write_cr4(cr4) };
                return Err(e);
            }
        };
        write_revision(region, &caps);
        // SAFETY: CR4.VMXE is set, feature control allows VMX, CR0/CR4 honour the fixed bits and
        // the region is a 4 KiB-aligned, zeroed page with the revision identifier (§31.3 VMXON).
        let result = unsafe { vmx_pa_insn!("vmxon", region.as_u64()) };
        if let Err(e) = result {
            log::error!(target: "vmx", "VMXON failed: {e}");
            memory::free(region, PAGE_SIZE);
            // SAFETY: restoring the CR4 this function found.
            unsafe { cpu::write_cr4(cr4) };
            return Err(VcpuError::EnableFailed(match e {
                InsnFailure::Valid(15) => "VMXON: this CPU is already in VMX operation",
                _ => "VMXON failed (the VMXON region or the CR0/CR4/feature-control state was refused)",
            }));
        }
        Ok(Self {
            region,
            caps,
            set_vmxe,
            _on_this_cpu: PhantomData,
        })
    }

    /// The capability MSRs of this CPU.
    pub fn caps(&self) -> &CapMsrs {
        &self.caps
    }

    /// INVEPT (SDM vol.3 §31.3): `kind` 1 = single context (`eptp`), 2 = all contexts.
    pub fn invept(&mut self, kind: u64, eptp: u64) -> Result<(), InsnFailure> {
        let desc: [u64; 2] = [eptp, 0];
        let (cf, zf): (u8, u8);
        // SAFETY: in VMX root operation; the descriptor is a valid 128-bit operand and INVEPT
        // only drops cached translations.
        unsafe {
            core::arch::asm!(
                "invept {k}, xmmword ptr [{d}]", "setc {cf}", "setz {zf}",
                k = in(reg) kind, d = in(reg) desc.as_ptr(),
                cf = out(reg_byte) cf, zf = out(reg_byte) zf,
                options(nostack)
            )
        };
        outcome(cf, zf)
    }

    /// INVVPID (SDM vol.3 §31.3): `kind` 1 = single context (`vpid`), 2 = all contexts.
    pub fn invvpid(&mut self, kind: u64, vpid: u16) -> Result<(), InsnFailure> {
        let desc: [u64; 2] = [u64::from(vpid), 0];
        let (cf, zf): (u8, u8);
        // SAFETY: in VMX root operation; the descriptor is a valid 128-bit operand and INVVPID
        // only drops cached translations.
        unsafe {
            core::arch::asm!(
                "invvpid {k}, xmmword ptr [{d}]", "setc {cf}", "setz {zf}",
                k = in(reg) kind, d = in(reg) desc.as_ptr(),
                cf = out(reg_byte) cf, zf = out(reg_byte) zf,
                options(nostack)
            )
        };
        outcome(cf, zf)
    }
}

impl Drop for Vmxon {
    fn drop(&mut self) {
        // SAFETY: this CPU is in VMX root operation (constructor) and no VMCS is current (an
        // `ActiveVmcs` borrows this value, so it is gone); VMXOFF leaves VMX operation.
        unsafe { core::arch::asm!("vmxoff", options(nostack)) };
        if self.set_vmxe {
            // SAFETY: outside VMX operation CR4.VMXE may be cleared again.
            unsafe { cpu::write_cr4(cpu::read_cr4() & !CR4_VMXE) };
        }
        memory::free(self.region, PAGE_SIZE);
    }
}

/// A VMCS region in memory, current on no CPU.
pub struct Vmcs {
    region: HostPhysAddr,
}

impl Vmcs {
    /// A fresh VMCS (revision identifier set, VMCLEARed so its launch state is clear).
    pub fn new(vmxon: &mut Vmxon) -> Result<Self, VcpuError> {
        let region = alloc_region(&vmxon.caps)?;
        write_revision(region, &vmxon.caps);
        // SAFETY: in VMX operation (`vmxon`); the region is a VMCS of the right revision.
        if let Err(e) = unsafe { vmx_pa_insn!("vmclear", region.as_u64()) } {
            log::error!(target: "vmx", "VMCLEAR of a new VMCS failed: {e}");
            memory::free(region, PAGE_SIZE);
            return Err(VcpuError::EnableFailed("VMCLEAR of a new VMCS failed"));
        }
        Ok(Self { region })
    }

    /// Makes this VMCS current on this CPU (VMPTRLD).
    pub fn load(self, vmxon: &mut Vmxon) -> Result<ActiveVmcs<'_>, InsnFailure> {
        // SAFETY: in VMX operation; the region is a VMCLEARed VMCS of this CPU's revision.
        unsafe { vmx_pa_insn!("vmptrld", self.region.as_u64()) }?;
        Ok(ActiveVmcs {
            region: self.region,
            vmxon,
            launched: false,
            error: Cell::new(None),
            _on_this_cpu: PhantomData,
        })
    }
}

/// The VMCS current on this CPU. Dropping it VMCLEARs and frees it.
pub struct ActiveVmcs<'a> {
    region: HostPhysAddr,
    vmxon: &'a mut Vmxon,
    launched: bool,
    /// The first VMREAD/VMWRITE that failed since the last [`ActiveVmcs::take_error`].
    error: Cell<Option<(Field, InsnFailure)>>,
    _on_this_cpu: PhantomData<*const ()>,
}

impl ActiveVmcs<'_> {
    /// VMREAD. A failure (an unsupported field) reads as 0 and is kept for `take_error`.
    pub fn read(&self, field: Field) -> u64 {
        let (value, cf, zf): (u64, u8, u8);
        // SAFETY: this VMCS is current (typestate); VMREAD only reads it.
        unsafe {
            core::arch::asm!(
                "vmread {v}, {f}", "setc {cf}", "setz {zf}",
                v = out(reg) value, f = in(reg) u64::from(field.0),
                cf = out(reg_byte) cf, zf = out(reg_byte) zf,
                options(nostack)
            )
        };
        match outcome(cf, zf) {
            Ok(()) => value,
            Err(e) => {
                self.note(field, e);
                0
            }
        }
    }

    /// VMWRITE. A failure is kept for `take_error`, which is checked before every entry.
    pub fn write(&mut self, field: Field, value: u64) {
        let (cf, zf): (u8, u8);
        // SAFETY: this VMCS is current (typestate); which values are valid is checked by the
        // CPU at VM entry, not by VMWRITE.
        unsafe {
            core::arch::asm!(
                "vmwrite {f}, {v}", "setc {cf}", "setz {zf}",
                f = in(reg) u64::from(field.0), v = in(reg) value,
                cf = out(reg_byte) cf, zf = out(reg_byte) zf,
                options(nostack)
            )
        };
        if let Err(e) = outcome(cf, zf) {
            self.note(field, e);
        }
    }

    fn note(&self, field: Field, e: InsnFailure) {
        if self.error.get().is_none() {
            self.error.set(Some((field, e)));
        }
    }

    /// The first failed VMREAD/VMWRITE since the last call.
    pub fn take_error(&self) -> Option<(Field, InsnFailure)> {
        self.error.take()
    }

    /// Whether VMRESUME (rather than VMLAUNCH) must enter next.
    pub fn is_launched(&self) -> bool {
        self.launched
    }

    /// Records that a VM entry succeeded (a VM exit followed).
    pub fn set_launched(&mut self) {
        self.launched = true;
    }

    /// VMCLEAR then VMPTRLD: the launch state becomes clear, so the next entry is a VMLAUNCH
    /// whatever happened before (a restart after a failed entry).
    pub fn relaunch(&mut self) -> Result<(), InsnFailure> {
        // SAFETY: in VMX operation (the borrowed `Vmxon`); the region is this current VMCS.
        unsafe { vmx_pa_insn!("vmclear", self.region.as_u64()) }?;
        self.launched = false;
        // SAFETY: as above; the VMCS was just cleared.
        unsafe { vmx_pa_insn!("vmptrld", self.region.as_u64()) }
    }

    /// The CPU's VMX operation (for INVEPT/INVVPID and the capability MSRs).
    pub fn vmxon(&mut self) -> &mut Vmxon {
        self.vmxon
    }

    /// The capability MSRs of this CPU.
    pub fn caps(&self) -> &CapMsrs {
        &self.vmxon.caps
    }
}

impl Drop for ActiveVmcs<'_> {
    fn drop(&mut self) {
        // SAFETY: in VMX operation; VMCLEAR writes the VMCS back and makes it not current, so
        // its memory can be freed.
        if let Err(e) = unsafe { vmx_pa_insn!("vmclear", self.region.as_u64()) } {
            // The CPU may still cache it: leaking the page is the only safe choice.
            log::error!(target: "vmx", "VMCLEAR on release failed: {e}; keeping its page");
            return;
        }
        memory::free(self.region, PAGE_SIZE);
    }
}
