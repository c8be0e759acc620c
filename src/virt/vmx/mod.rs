//! Intel VT-x: entering VMX operation on a CPU and running one vCPU with a VMCS and EPT
//! (Intel SDM vol.3 chapters 24–31; section numbers follow the 2023 editions).
//!
//! The pure parts (field encodings, control words, exit decoding, control-register rules and
//! the entry-failure checks) build on the host and have host tests; the parts that execute VMX
//! instructions exist only in the bare-metal build.
//!
//! Typestate: [`vmcs::Vmxon`] (VMX operation on this CPU) → [`vmcs::Vmcs`] (a VMCS in memory)
//! → [`vmcs::ActiveVmcs`] (the current VMCS; the only type with `read`/`write`). [`with_vcpu`]
//! ties their lifetimes to one call so the run loop cannot outlive VMX operation.

pub mod controls;
pub mod cr;
pub mod entry_check;
pub mod exit;
pub mod fields;
pub mod finding;
pub mod guest_check;
mod segment_check;

#[cfg(test)]
mod fixtures;

#[cfg(target_os = "none")]
mod diagnose;
#[cfg(target_os = "none")]
mod emulate;
#[cfg(target_os = "none")]
mod host_state;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod seam;
#[cfg(target_os = "none")]
mod vcpu;
#[cfg(target_os = "none")]
pub mod vmcs;

#[cfg(target_os = "none")]
pub use target::*;

#[cfg(target_os = "none")]
mod target {
    use raw_cpuid::native_cpuid::cpuid_count;

    use super::controls::{CapMsrs, BASIC_TRUE_CONTROLS};
    pub use super::vcpu::VmxVcpu;
    use super::vmcs::Vmxon;
    use crate::addr::HostPhysAddr;
    use crate::arch::x86_64::cpu::rdmsr;
    use crate::virt::VcpuError;

    // VMX capability MSRs (SDM vol.3 appendix A).
    const MSR_VMX_BASIC: u32 = 0x480;
    const MSR_VMX_PINBASED: u32 = 0x481;
    const MSR_VMX_PROCBASED: u32 = 0x482;
    const MSR_VMX_EXIT: u32 = 0x483;
    const MSR_VMX_ENTRY: u32 = 0x484;
    const MSR_VMX_MISC: u32 = 0x485;
    const MSR_VMX_CR0_FIXED0: u32 = 0x486;
    const MSR_VMX_CR0_FIXED1: u32 = 0x487;
    const MSR_VMX_CR4_FIXED0: u32 = 0x488;
    const MSR_VMX_CR4_FIXED1: u32 = 0x489;
    const MSR_VMX_PROCBASED2: u32 = 0x48B;
    const MSR_VMX_EPT_VPID_CAP: u32 = 0x48C;
    const MSR_VMX_TRUE_PINBASED: u32 = 0x48D;
    const MSR_VMX_TRUE_PROCBASED: u32 = 0x48E;
    const MSR_VMX_TRUE_EXIT: u32 = 0x48F;
    const MSR_VMX_TRUE_ENTRY: u32 = 0x490;
    /// Primary processor-based controls, allowed-1 bit 31: secondary controls exist.
    const PROC_ALLOWS_SECONDARY: u64 = 1 << 63;
    /// Secondary controls allowed-1 bits 1 (EPT) and 5 (VPID): IA32_VMX_EPT_VPID_CAP exists.
    const PROC2_ALLOWS_EPT_OR_VPID: u64 = (1 << 33) | (1 << 37);
    /// CPUID leaves for the physical-address width and the XCR0 bits.
    const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;
    const LEAF_XSAVE: u32 = 0xD;
    const LEAF_FEATURES: u32 = 1;
    const FEATURES_ECX_XSAVE: u32 = 1 << 26;

    /// Facts about this CPU that the VMCS does not hold.
    #[derive(Clone, Copy, Debug)]
    pub struct Platform {
        /// Physical-address width (CPUID 0x80000008 EAX[7:0]).
        pub phys_bits: u8,
        /// XCR0 bits the CPU supports (CPUID.(EAX=0DH,ECX=0):EDX:EAX), 0 without XSAVE.
        pub xcr0_supported: u64,
    }

    impl Platform {
        fn probe() -> Self {
            let max_ext = cpuid_count(0x8000_0000, 0).eax;
            let phys_bits = if max_ext >= LEAF_ADDRESS_SIZES {
                (cpuid_count(LEAF_ADDRESS_SIZES, 0).eax & 0xFF) as u8
            } else {
                36
            };
            let xsave = cpuid_count(LEAF_FEATURES, 0).ecx & FEATURES_ECX_XSAVE != 0;
            let xcr0_supported = if xsave {
                let r = cpuid_count(LEAF_XSAVE, 0);
                (u64::from(r.edx) << 32) | u64::from(r.eax)
            } else {
                0
            };
            Self {
                phys_bits,
                xcr0_supported,
            }
        }
    }

    /// Reads this CPU's VMX capability MSRs, the TRUE_* control MSRs where they exist.
    pub fn read_caps() -> CapMsrs {
        // SAFETY: the CPU reports VMX (the caller probed it), so the basic, control, MISC and
        // fixed-bit MSRs exist (SDM vol.3 appendix A); the others are read only when the MSRs
        // above say they exist. Reading them has no side effect.
        unsafe {
            let basic = rdmsr(MSR_VMX_BASIC);
            let true_ctls = basic & BASIC_TRUE_CONTROLS != 0;
            let pick = |plain, tru| if true_ctls { rdmsr(tru) } else { rdmsr(plain) };
            let proc = pick(MSR_VMX_PROCBASED, MSR_VMX_TRUE_PROCBASED);
            let proc2 = if proc & PROC_ALLOWS_SECONDARY != 0 {
                rdmsr(MSR_VMX_PROCBASED2)
            } else {
                0
            };
            let ept_vpid = if proc2 & PROC2_ALLOWS_EPT_OR_VPID != 0 {
                rdmsr(MSR_VMX_EPT_VPID_CAP)
            } else {
                0
            };
            CapMsrs {
                basic,
                pin: pick(MSR_VMX_PINBASED, MSR_VMX_TRUE_PINBASED),
                proc,
                proc2,
                exit: pick(MSR_VMX_EXIT, MSR_VMX_TRUE_EXIT),
                entry: pick(MSR_VMX_ENTRY, MSR_VMX_TRUE_ENTRY),
                misc: rdmsr(MSR_VMX_MISC),
                cr0_fixed0: rdmsr(MSR_VMX_CR0_FIXED0),
                cr0_fixed1: rdmsr(MSR_VMX_CR0_FIXED1),
                cr4_fixed0: rdmsr(MSR_VMX_CR4_FIXED0),
                cr4_fixed1: rdmsr(MSR_VMX_CR4_FIXED1),
                ept_vpid,
            }
        }
    }

    /// Enters VMX operation on this CPU, creates a vCPU for the guest whose EPT is rooted at
    /// `ept_root` (tagged `vpid`, ≥ 1), and hands it to `f`. VMX operation ends when `f`
    /// returns. Must run on the CPU that will run the guest, which must have VMX.
    pub fn with_vcpu<R>(
        ept_root: HostPhysAddr,
        vpid: u32,
        f: impl FnOnce(VmxVcpu<'_>) -> R,
    ) -> Result<R, VcpuError> {
        let caps = read_caps();
        let mut vmxon = Vmxon::enable(caps)?;
        let vcpu = VmxVcpu::new(&mut vmxon, Platform::probe(), ept_root, vpid)?;
        Ok(f(vcpu))
    }

    /// XSETBV of XCR0.
    ///
    /// # Safety
    /// CR4.OSXSAVE must be set and `value` must be a valid XCR0 for this CPU.
    pub(super) unsafe fn xsetbv(value: u64) {
        // SAFETY: the caller guarantees OSXSAVE and a valid value.
        unsafe {
            core::arch::asm!(
                "xsetbv",
                in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32,
                options(nomem, nostack, preserves_flags)
            )
        };
    }
}
