//! A vCPU on Intel VT-x: its VMCS set-up and the helpers the run loop ([`super::seam`]) and
//! the emulation of VMX-only exits ([`super::emulate`]) share.

use super::controls::*;
use super::cr::{self, EFER_LMA};
use super::entry_check::*;
use super::fields::*;
use super::finding::InsnFailure;
use super::guest_check::ACCESS_UNUSABLE;
use super::host_state::{self, HostTables, MSR_PAT};
use super::vmcs::{ActiveVmcs, Vmcs, Vmxon};
use super::{diagnose, run, Platform};
use crate::addr::{HostPhysAddr, PAGE_SIZE};
use crate::arch::x86_64::memory;
use crate::paging::EptEntry;
use crate::virt::{GuestRegs, Segment, Vcpu, VcpuError, VmExit};

pub(super) const RFLAGS_IF: u64 = 1 << 9;
pub(super) const BLOCK_STI_MOV_SS: u64 = 0b11;
pub(super) const ACCESS_L: u64 = 1 << 13;
pub(super) const ACCESS_DB: u64 = 1 << 14;
/// Power-on PAT (SDM vol.3 §13.12.4).
pub(super) const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
/// DR7 at reset (SDM vol.3 §18.2.4).
pub(super) const DR7_RESET: u64 = 0x400;
pub(super) const VECTOR_NMI: u8 = 2;
pub(super) const VECTOR_GP: u8 = 13;
pub(super) const FIRST_INTERRUPT_VECTOR: u8 = 32;
const INVALIDATE_SINGLE: u64 = 1;
const INVALIDATE_ALL: u64 = 2;
pub(super) const MSR_STAR: u32 = 0xC000_0081;
pub(super) const MSR_LSTAR: u32 = 0xC000_0082;
pub(super) const MSR_CSTAR: u32 = 0xC000_0083;
pub(super) const MSR_SFMASK: u32 = 0xC000_0084;
pub(super) const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;
pub(super) const MSR_TSC_AUX: u32 = 0xC000_0103;

/// MSRs the guest reads and writes directly. The VMCS switches SYSENTER_*, PAT (save/load
/// IA32_PAT) and FS/GS base (segment bases). VMX does not switch STAR, LSTAR, CSTAR, SFMASK,
/// KERNEL_GS_BASE or TSC_AUX: they stay in the CPU, which is dedicated to this guest, and the
/// hypervisor never uses them (no SYSCALL, SWAPGS or RDTSCP/RDPID in the host); `reset` clears
/// them. Everything else, EFER included, exits to the VMM's MSR policy.
const PASSTHROUGH_MSRS: [u32; 11] = [
    0x174,
    0x175,
    0x176,
    MSR_PAT,
    MSR_STAR,
    MSR_LSTAR,
    MSR_CSTAR,
    MSR_SFMASK,
    0xC000_0100,
    0xC000_0101,
    MSR_KERNEL_GS_BASE,
];

/// Clears the read and write exit bits of `msr` in a 4 KiB MSR bitmap (SDM vol.3 §25.6.9:
/// read-low, read-high, write-low, write-high, 1 KiB each).
fn allow_msr(bitmap: &mut [u8], msr: u32) {
    let (high, index) = match msr {
        0..=0x1FFF => (0, msr as usize),
        0xC000_0000..=0xC000_1FFF => (1, (msr - 0xC000_0000) as usize),
        _ => return,
    };
    for base in [high * 1024, 2048 + high * 1024] {
        bitmap[base + index / 8] &= !(1 << (index % 8));
    }
}

/// A vCPU on Intel VT-x, bound to the CPU (and the VMX operation) that created it.
pub struct VmxVcpu<'a> {
    pub(super) vmcs: ActiveVmcs<'a>,
    pub(super) regs: GuestRegs,
    pub(super) caps: CapMsrs,
    pub(super) platform: Platform,
    pub(super) controls: Controls,
    pub(super) proc: u32,
    pub(super) cr0_mask: u64,
    pub(super) cr4_mask: u64,
    pub(super) eptp: u64,
    pub(super) vpid: u16,
    pub(super) host: HostTables,
    pub(super) msr_bitmap: HostPhysAddr,
    pub(super) virtual_apic: HostPhysAddr,
    /// Length of the instruction that caused the last exit, for instruction exits.
    pub(super) exit_len: Option<u8>,
    /// When the host wants this CPU back (a TSC value), enforced by the VMX-preemption timer.
    pub(super) host_deadline: Option<u64>,
}

impl<'a> VmxVcpu<'a> {
    /// Creates a vCPU in VMX operation `vmxon` for a guest whose EPT is rooted at `ept_root`,
    /// tagged with `vpid` (≥ 1) where the CPU offers VPIDs.
    pub fn new(
        vmxon: &'a mut Vmxon,
        platform: Platform,
        ept_root: HostPhysAddr,
        vpid: u32,
    ) -> Result<Self, VcpuError> {
        let caps = *vmxon.caps();
        let controls = Controls::compute(&caps).map_err(|e| {
            log::error!(target: "vmx", "{e}");
            VcpuError::EnableFailed("the CPU lacks a VMX control Bulkhead needs (see the log)")
        })?;
        if !caps.ept_vpid_has(EPT_CAP_WB) || !caps.ept_vpid_has(EPT_CAP_WALK4) {
            return Err(VcpuError::EnableFailed(
                "EPT lacks write-back paging structures or 4-level walks",
            ));
        }
        let msr_bitmap =
            memory::alloc_zeroed(PAGE_SIZE, PAGE_SIZE).map_err(|_| VcpuError::OutOfMemory)?;
        let virtual_apic =
            memory::alloc_zeroed(PAGE_SIZE, PAGE_SIZE).map_err(|_| VcpuError::OutOfMemory)?;
        // SAFETY: the page was just allocated for this vCPU alone and is identity-mapped.
        let bitmap = unsafe {
            core::slice::from_raw_parts_mut(msr_bitmap.as_u64() as *mut u8, PAGE_SIZE as usize)
        };
        bitmap.fill(0xFF);
        for msr in PASSTHROUGH_MSRS {
            allow_msr(bitmap, msr);
        }
        if controls.has(PROC2_RDTSCP) {
            allow_msr(bitmap, MSR_TSC_AUX);
        }
        let vmcs = Vmcs::new(vmxon)?;
        let mut vmcs = vmcs.load(vmxon).map_err(|e| {
            log::error!(target: "vmx", "VMPTRLD failed: {e}");
            VcpuError::EnableFailed("VMPTRLD of a new VMCS failed")
        })?;
        let vpid = if controls.has(PROC2_VPID) {
            u16::try_from(vpid).unwrap_or(1).max(1)
        } else {
            0
        };
        let host = host_state::write(&mut vmcs, run::exit_landing_pad());
        let mut vcpu = Self {
            vmcs,
            regs: GuestRegs::default(),
            caps,
            platform,
            controls,
            proc: controls.proc,
            cr0_mask: cr::cr0_mask(&caps),
            cr4_mask: cr::cr4_mask(&caps),
            eptp: EptEntry::eptp(ept_root),
            vpid,
            host,
            msr_bitmap,
            virtual_apic,
            exit_len: None,
            host_deadline: None,
        };
        vcpu.write_controls();
        if let Some((field, e)) = vcpu.vmcs.take_error() {
            log::error!(target: "vmx", "setting up the VMCS: {} ({:#x}): {e}", field.name(), field.0);
            return Err(VcpuError::EnableFailed(
                "a VMWRITE failed while setting up the VMCS",
            ));
        }
        Ok(vcpu)
    }

    /// The execution, exit and entry controls and everything they point to.
    fn write_controls(&mut self) {
        let c = self.controls;
        let v = &mut self.vmcs;
        v.write(PIN_CONTROLS, u64::from(c.pin));
        v.write(PROC_CONTROLS, u64::from(c.proc));
        v.write(PROC_CONTROLS2, u64::from(c.proc2));
        v.write(EXIT_CONTROLS, u64::from(c.exit));
        v.write(ENTRY_CONTROLS, u64::from(c.entry));
        v.write(EXCEPTION_BITMAP, 0);
        v.write(PF_ERROR_CODE_MASK, 0);
        v.write(PF_ERROR_CODE_MATCH, 0);
        v.write(CR3_TARGET_COUNT, 0);
        v.write(EXIT_MSR_STORE_COUNT, 0);
        v.write(EXIT_MSR_LOAD_COUNT, 0);
        v.write(ENTRY_MSR_LOAD_COUNT, 0);
        v.write(ENTRY_INTR_INFO, 0);
        v.write(MSR_BITMAP, self.msr_bitmap.as_u64());
        v.write(VIRTUAL_APIC_ADDR, self.virtual_apic.as_u64());
        v.write(TPR_THRESHOLD, 0);
        v.write(EPT_POINTER, self.eptp);
        if self.vpid != 0 {
            v.write(VPID, u64::from(self.vpid));
        }
        if c.has(PROC2_XSAVES) {
            // No XSAVES/XRSTORS exits: IA32_XSS itself is guarded by the MSR bitmap.
            v.write(XSS_EXITING_BITMAP, 0);
        }
        v.write(CR0_GUEST_HOST_MASK, self.cr0_mask);
        v.write(CR4_GUEST_HOST_MASK, self.cr4_mask);
        v.write(VMCS_LINK_POINTER, u64::MAX);
    }

    /// The guest-visible value of a control register whose `mask` bits the hypervisor owns.
    pub(super) fn visible(&self, hw: Field, shadow: Field, mask: u64) -> u64 {
        (self.vmcs.read(hw) & !mask) | (self.vmcs.read(shadow) & mask)
    }

    pub(super) fn visible_cr0(&self) -> u64 {
        self.visible(GUEST_CR0, CR0_READ_SHADOW, self.cr0_mask)
    }

    pub(super) fn visible_cr4(&self) -> u64 {
        self.visible(GUEST_CR4, CR4_READ_SHADOW, self.cr4_mask)
    }

    pub(super) fn in_64bit_mode(&self) -> bool {
        self.vmcs.read(GUEST_EFER) & EFER_LMA != 0
            && self.vmcs.read(GUEST_CS_ACCESS) & ACCESS_L != 0
    }

    /// Keeps the "IA-32e mode guest" entry control equal to the guest's EFER.LMA, which the
    /// CPU changes when the guest turns paging on or off (SDM vol.3 §27.3.1.1, §28.2).
    pub(super) fn sync_ia32e(&mut self) {
        let lma = self.vmcs.read(GUEST_EFER) & EFER_LMA != 0;
        let entry = self.vmcs.read(ENTRY_CONTROLS);
        let want = if lma {
            entry | u64::from(ENTRY_IA32E_GUEST.mask())
        } else {
            entry & !u64::from(ENTRY_IA32E_GUEST.mask())
        };
        if want != entry {
            self.vmcs.write(ENTRY_CONTROLS, want);
        }
    }

    /// Drops this guest's cached linear and combined translations (VPID-tagged).
    pub(super) fn flush_guest_tlb(&mut self) {
        if self.vpid == 0 {
            return; // Without VPIDs every VM entry and exit flushes them (SDM vol.3 §29.4.3.3).
        }
        let single = self.caps.ept_vpid_has(VPID_CAP_SINGLE);
        let (kind, vpid) = if single {
            (INVALIDATE_SINGLE, self.vpid)
        } else {
            (INVALIDATE_ALL, 0)
        };
        if self.caps.ept_vpid_has(VPID_CAP_INVVPID) {
            if let Err(e) = self.vmcs.vmxon().invvpid(kind, vpid) {
                log::error!(target: "vmx", "INVVPID failed: {e}");
            }
        }
    }

    /// Drops the CPU's cached EPT translations of this guest.
    pub(super) fn flush_ept(&mut self) {
        if !self.caps.ept_vpid_has(EPT_CAP_INVEPT) {
            return;
        }
        let kind = if self.caps.ept_vpid_has(EPT_CAP_INVEPT_SINGLE) {
            INVALIDATE_SINGLE
        } else {
            INVALIDATE_ALL
        };
        let eptp = self.eptp;
        if let Err(e) = self.vmcs.vmxon().invept(kind, eptp) {
            log::error!(target: "vmx", "INVEPT failed: {e}");
        }
    }

    /// An event whose delivery the exit interrupted is delivered again (SDM vol.3 §28.2.4).
    pub(super) fn reinject_idt_vectoring(&mut self) {
        let info = self.vmcs.read(IDT_VECTORING_INFO);
        if info & INTR_INFO_VALID == 0 {
            return;
        }
        // Bit 12 is undefined in the IDT-vectoring field and reserved in the entry field.
        self.vmcs.write(ENTRY_INTR_INFO, info & !0x7FFF_F000);
        if info & INTR_INFO_HAS_ERROR != 0 {
            let code = self.vmcs.read(IDT_VECTORING_ERROR_CODE);
            self.vmcs.write(ENTRY_EXCEPTION_ERROR_CODE, code);
        }
        let kind = (info >> INTR_TYPE_SHIFT) & 7;
        if matches!(
            kind,
            INTR_TYPE_SW_INTERRUPT | INTR_TYPE_PRIV_SW_EXCEPTION | INTR_TYPE_SW_EXCEPTION
        ) {
            let len = self.vmcs.read(EXIT_INSN_LEN);
            self.vmcs.write(ENTRY_INSN_LEN, len);
        }
    }

    /// Skips the instruction that caused the current exit.
    pub(super) fn skip_instruction(&mut self) {
        let len = self.vmcs.read(EXIT_INSN_LEN);
        let rip = self.vmcs.read(GUEST_RIP).wrapping_add(len);
        self.set_rip(rip);
    }

    /// VMLAUNCH/VMRESUME refused to run: say why in words.
    pub(super) fn vm_insn_failed(&mut self, rflags: u64) -> VmExit {
        let failure = if rflags & 1 != 0 {
            InsnFailure::Invalid
        } else {
            InsnFailure::Valid(self.vmcs.read(VM_INSN_ERROR))
        };
        log::error!(target: "vmx", "VMLAUNCH/VMRESUME failed: {failure}");
        diagnose::insn_failure(&self.vmcs, &self.platform, failure)
    }
}

impl VmxVcpu<'_> {
    pub(super) fn write_segment(&mut self, f: &SegmentFields, s: &Segment) {
        let mut access = u64::from(s.access);
        if access == 0 {
            access = ACCESS_UNUSABLE;
        }
        self.vmcs.write(f.selector, u64::from(s.selector));
        self.vmcs.write(f.base, s.base);
        self.vmcs.write(f.limit, u64::from(s.limit));
        self.vmcs.write(f.access, access);
    }
}

impl Drop for VmxVcpu<'_> {
    fn drop(&mut self) {
        memory::free(self.msr_bitmap, PAGE_SIZE);
        memory::free(self.virtual_apic, PAGE_SIZE);
    }
}
