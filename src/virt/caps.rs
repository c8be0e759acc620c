//! Finding out, on each CPU, which virtualization extension it offers and with which features.

use core::fmt;

use raw_cpuid::CpuId;

use crate::arch::x86_64::cpu::{rdmsr, MSR_FEATURE_CONTROL, MSR_VM_CR};

// Intel SDM vol.3 appendix A: VMX capability MSRs.
const MSR_VMX_BASIC: u32 = 0x480;
const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48B;
const MSR_VMX_EPT_VPID_CAP: u32 = 0x48C;
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const VMX_BASIC_TRUE_CTLS: u64 = 1 << 55;
const PROCBASED_ACTIVATE_SECONDARY: u64 = 1 << 31;
const PROCBASED2_EPT: u64 = 1 << 1;
const PROCBASED2_VPID: u64 = 1 << 5;
const PROCBASED2_UNRESTRICTED: u64 = 1 << 7;
const EPT_CAP_WALK_4: u64 = 1 << 6;
const EPT_CAP_WB: u64 = 1 << 14;
const EPT_CAP_2M: u64 = 1 << 16;
const EPT_CAP_1G: u64 = 1 << 17;
const EPT_CAP_INVEPT: u64 = 1 << 20;
const EPT_CAP_INVVPID: u64 = 1 << 32;
// AMD APM vol.2 §15.30.1: VM_CR.SVMDIS.
const VM_CR_SVMDIS: u64 = 1 << 4;

/// AMD SVM features (CPUID 0x8000000A, AMD APM vol.2 §15.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCaps {
    pub revision: u8,
    pub asids: u32,
    pub npt: bool,
    pub nrip: bool,
    pub decode_assists: bool,
    pub vmcb_clean: bool,
    pub flush_by_asid: bool,
    pub avic: bool,
    pub huge_pages: bool,
}

/// Intel VMX features (capability MSRs, Intel SDM vol.3 appendix A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxCaps {
    pub vmcs_revision: u32,
    pub feature_control: u64,
    pub true_controls: bool,
    pub ept: bool,
    pub ept_wb: bool,
    pub ept_2m: bool,
    pub ept_1g: bool,
    pub invept: bool,
    pub vpid: bool,
    pub invvpid: bool,
    pub unrestricted_guest: bool,
}

/// What this CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caps {
    /// AMD-V.
    Svm(SvmCaps),
    /// Intel VT-x.
    Vmx(VmxCaps),
}

/// Why Bulkhead cannot run guests on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtError {
    /// CPUID shows neither SVM nor VMX.
    NotSupported,
    /// SVM exists but firmware disabled it (VM_CR.SVMDIS).
    SvmDisabledByFirmware,
    /// VMX exists but IA32_FEATURE_CONTROL is locked with VMX off.
    VmxLockedOff,
    /// No nested paging (NPT/EPT), which Bulkhead requires for isolation.
    NoNestedPaging,
    /// VMX without unrestricted guest: guests could not start in real or unpaged protected mode.
    NoUnrestrictedGuest,
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotSupported => "virt: this CPU offers neither AMD-V (SVM) nor Intel VT-x (VMX); Bulkhead cannot run guests",
            Self::SvmDisabledByFirmware => "virt: AMD-V is present but disabled by the firmware (VM_CR.SVMDIS set); enable SVM in the firmware setup",
            Self::VmxLockedOff => "virt: Intel VT-x is present but locked off by the firmware (IA32_FEATURE_CONTROL locked without VMX); enable VT-x in the firmware setup",
            Self::NoNestedPaging => "virt: the CPU lacks nested paging (NPT/EPT), which Bulkhead needs to isolate guests",
            Self::NoUnrestrictedGuest => "virt: Intel VT-x lacks unrestricted guest, which Bulkhead needs to start guests",
        })
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Svm(s) => write!(
                f,
                "AMD-V (SVM) rev {}: NPT {}, nRIP {}, decode assists {}, ASIDs {}, VMCB clean bits {}, flush by ASID {}, AVIC {}, 1G pages {}",
                s.revision,
                yes(s.npt),
                yes(s.nrip),
                yes(s.decode_assists),
                s.asids,
                yes(s.vmcb_clean),
                yes(s.flush_by_asid),
                yes(s.avic),
                yes(s.huge_pages)
            ),
            Self::Vmx(v) => write!(
                f,
                "Intel VT-x (VMX) VMCS rev {:#x}: EPT {} (2M {}, 1G {}, WB {}, INVEPT {}), VPID {} (INVVPID {}), unrestricted guest {}, true controls {}, feature control {:#x}",
                v.vmcs_revision,
                yes(v.ept),
                yes(v.ept_2m),
                yes(v.ept_1g),
                yes(v.ept_wb),
                yes(v.invept),
                yes(v.vpid),
                yes(v.invvpid),
                yes(v.unrestricted_guest),
                yes(v.true_controls),
                v.feature_control
            ),
        }
    }
}

/// Probes this CPU.
pub fn probe() -> Result<Caps, VirtError> {
    let cpuid = CpuId::new();
    let has_svm = cpuid
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|e| e.has_svm());
    let has_vmx = cpuid.get_feature_info().is_some_and(|f| f.has_vmx());
    let huge_pages = cpuid
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|e| e.has_1gib_pages());
    if has_svm {
        // SAFETY: VM_CR exists on every CPU that reports SVM (AMD APM vol.2 §15.30.1).
        let vm_cr = unsafe { rdmsr(MSR_VM_CR) };
        if vm_cr & VM_CR_SVMDIS != 0 {
            return Err(VirtError::SvmDisabledByFirmware);
        }
        let s = cpuid.get_svm_info().ok_or(VirtError::NotSupported)?;
        let caps = SvmCaps {
            revision: s.revision(),
            asids: s.supported_asids(),
            npt: s.has_nested_paging(),
            nrip: s.has_nrip(),
            decode_assists: s.has_decode_assists(),
            vmcb_clean: s.has_vmcb_clean_bits(),
            flush_by_asid: s.has_flush_by_asid(),
            avic: s.has_avic(),
            huge_pages,
        };
        if !caps.npt {
            return Err(VirtError::NoNestedPaging);
        }
        return Ok(Caps::Svm(caps));
    }
    if has_vmx {
        // SAFETY: CPUID.1:ECX.VMX implies IA32_FEATURE_CONTROL and the VMX capability MSRs exist
        // (Intel SDM vol.3 §24.6, appendix A); reading them has no side effect.
        let (fc, basic, proc1, ept_vpid) = unsafe {
            (
                rdmsr(MSR_FEATURE_CONTROL),
                rdmsr(MSR_VMX_BASIC),
                rdmsr(MSR_VMX_PROCBASED_CTLS),
                rdmsr(MSR_VMX_EPT_VPID_CAP),
            )
        };
        if fc & FEATURE_CONTROL_LOCKED != 0 && fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            return Err(VirtError::VmxLockedOff);
        }
        let secondary = (proc1 >> 32) & PROCBASED_ACTIVATE_SECONDARY != 0;
        let proc2 = if secondary {
            // SAFETY: the secondary controls MSR exists when primary controls allow activating them.
            unsafe { rdmsr(MSR_VMX_PROCBASED_CTLS2) >> 32 }
        } else {
            0
        };
        let ept = proc2 & PROCBASED2_EPT != 0 && ept_vpid & EPT_CAP_WALK_4 != 0;
        let caps = VmxCaps {
            vmcs_revision: (basic & 0x7FFF_FFFF) as u32,
            feature_control: fc,
            true_controls: basic & VMX_BASIC_TRUE_CTLS != 0,
            ept,
            ept_wb: ept_vpid & EPT_CAP_WB != 0,
            ept_2m: ept_vpid & EPT_CAP_2M != 0,
            ept_1g: ept_vpid & EPT_CAP_1G != 0,
            invept: ept_vpid & EPT_CAP_INVEPT != 0,
            vpid: proc2 & PROCBASED2_VPID != 0,
            invvpid: ept_vpid & EPT_CAP_INVVPID != 0,
            unrestricted_guest: proc2 & PROCBASED2_UNRESTRICTED != 0,
        };
        if !caps.ept {
            return Err(VirtError::NoNestedPaging);
        }
        if !caps.unrestricted_guest {
            return Err(VirtError::NoUnrestrictedGuest);
        }
        return Ok(Caps::Vmx(caps));
    }
    Err(VirtError::NotSupported)
}
