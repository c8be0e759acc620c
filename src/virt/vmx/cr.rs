//! The control-register writes a VMX vCPU emulates itself.
//!
//! VMX makes the guest keep some CR0/CR4 bits set (CR0.NE, CR4.VMXE: IA32_VMX_CR0/CR4_FIXED0).
//! Those bits are owned by the hypervisor through the guest/host masks; the guest reads its own
//! values from the read shadows, and a write that would change an owned bit exits (SDM vol.3
//! §26.3, §25.6.6). Here such writes get the architectural checks of MOV to CR0/CR4 (SDM vol.2
//! "MOV—Move to/from Control Registers", vol.3 §2.5) and the value the hardware must hold.
//! XSETBV always exits and is checked here too (SDM vol.2 "XSETBV", vol.1 §13.3).

#![forbid(unsafe_code)]

use super::controls::{CapMsrs, CR0_PE, CR0_PG};

const CR0_TS: u64 = 1 << 3;
const CR0_WP: u64 = 1 << 16;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
/// LMSW writes only PE, MP, EM and TS.
const CR0_LMSW_BITS: u64 = 0xF;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_VMXE: u64 = 1 << 13;
const CR4_SMXE: u64 = 1 << 14;
const CR4_PCIDE: u64 = 1 << 17;
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4 bits whose change flushes TLBs: PSE, PAE, PGE, PCIDE, SMEP, SMAP, PKE, LA57.
const CR4_PAGING_BITS: u64 =
    (1 << 4) | CR4_PAE | (1 << 7) | CR4_PCIDE | (1 << 20) | (1 << 21) | (1 << 22) | (1 << 12);
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// The guest/host mask for CR0: FIXED0 bits the guest need not keep set (PE and PG are free
/// with unrestricted guest) plus the bits FIXED1 forbids.
pub fn cr0_mask(caps: &CapMsrs) -> u64 {
    caps.guest_cr0_fixed0() | !caps.cr0_fixed1
}

/// The guest/host mask for CR4: VMXE and whatever else FIXED0 demands, plus forbidden bits
/// and SMXE (GETSEC is refused to guests).
pub fn cr4_mask(caps: &CapMsrs) -> u64 {
    caps.cr4_fixed0 | !caps.cr4_fixed1 | CR4_SMXE
}

/// What the hardware must hold for a guest-visible CR0.
pub fn cr0_hardware(caps: &CapMsrs, visible: u64) -> u64 {
    (visible | caps.guest_cr0_fixed0()) & caps.cr0_fixed1
}

/// What the hardware must hold for a guest-visible CR4.
pub fn cr4_hardware(caps: &CapMsrs, visible: u64) -> u64 {
    (visible | caps.cr4_fixed0) & caps.cr4_fixed1
}

/// The result of an emulated control-register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// The write faults: inject #GP(0).
    Fault,
    /// The write takes effect.
    Done {
        /// The guest-visible value (read shadow).
        visible: u64,
        /// The value the hardware holds.
        hardware: u64,
        /// The new guest EFER when paging was switched on or off in long mode.
        efer: u64,
        /// The paging mode or TLB-relevant bits changed: flush the guest's TLB.
        flush: bool,
    },
}

/// MOV to CR0 of `v` (also CLTS and LMSW, as values built by [`clts`] and [`lmsw`]).
/// `old` is the guest-visible CR0, `cr4` the guest-visible CR4, `cs_long` whether CS.L is set.
pub fn write_cr0(caps: &CapMsrs, old: u64, v: u64, cr4: u64, efer: u64, cs_long: bool) -> CrWrite {
    if v >> 32 != 0 || (v & CR0_PG != 0 && v & CR0_PE == 0) || (v & CR0_NW != 0 && v & CR0_CD == 0)
    {
        return CrWrite::Fault;
    }
    let mut efer_new = efer;
    let (was_paging, paging) = (old & CR0_PG != 0, v & CR0_PG != 0);
    if !was_paging && paging && efer & EFER_LME != 0 {
        // Entering IA-32e mode needs PAE and a CS that is not already 64-bit.
        if cr4 & CR4_PAE == 0 || cs_long {
            return CrWrite::Fault;
        }
        efer_new |= EFER_LMA;
    }
    if was_paging && !paging && efer & EFER_LMA != 0 {
        if cs_long {
            return CrWrite::Fault;
        }
        efer_new &= !EFER_LMA;
    }
    let flush = (old ^ v) & (CR0_PG | CR0_PE | CR0_WP | CR0_CD) != 0;
    CrWrite::Done {
        visible: v,
        hardware: cr0_hardware(caps, v),
        efer: efer_new,
        flush,
    }
}

/// MOV to CR4 of `v`. `old` is the guest-visible CR4, `cr3` the guest's CR3.
pub fn write_cr4(caps: &CapMsrs, old: u64, v: u64, cr3: u64, efer: u64) -> CrWrite {
    let allowed = caps.cr4_fixed1 & !(CR4_VMXE | CR4_SMXE);
    let long = efer & EFER_LMA != 0;
    if v & !allowed != 0 || (long && v & CR4_PAE == 0) {
        return CrWrite::Fault;
    }
    if old & CR4_PCIDE == 0 && v & CR4_PCIDE != 0 && (!long || cr3 & 0xFFF != 0) {
        return CrWrite::Fault;
    }
    CrWrite::Done {
        visible: v,
        hardware: cr4_hardware(caps, v),
        efer,
        flush: (old ^ v) & CR4_PAGING_BITS != 0,
    }
}

/// The CR0 value CLTS writes.
pub fn clts(old: u64) -> u64 {
    old & !CR0_TS
}

/// The CR0 value LMSW writes: the low four bits, except that LMSW cannot clear PE.
pub fn lmsw(old: u64, source: u16) -> u64 {
    (old & !CR0_LMSW_BITS) | (u64::from(source) & CR0_LMSW_BITS) | (old & CR0_PE)
}

/// Whether a guest may load `value` into XCR0 given the XCR0 bits the CPU supports
/// (CPUID.(EAX=0DH,ECX=0):EDX:EAX) (SDM vol.1 §13.3).
pub fn xcr0_valid(value: u64, supported: u64) -> bool {
    const X87: u64 = 1;
    const SSE: u64 = 2;
    const AVX: u64 = 4;
    const MPX: u64 = 0x18;
    const AVX512: u64 = 0xE0;
    const AMX: u64 = 0x6_0000;
    let all_or_none = |bits: u64| value & bits == 0 || value & bits == bits;
    value & X87 != 0
        && value & !supported == 0
        && (value & AVX == 0 || value & SSE != 0)
        && all_or_none(MPX)
        && all_or_none(AVX512)
        && (value & AVX512 == 0 || value & AVX != 0)
        && all_or_none(AMX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed bits as on current Intel CPUs: CR0 PE, NE, PG; CR4 VMXE; FIXED1 allows up to
    /// bit 23 in CR4.
    fn caps() -> CapMsrs {
        CapMsrs {
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xFFFF_FFFF,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x00FF_FFFF,
            ..CapMsrs::default()
        }
    }

    #[test]
    fn masks_own_ne_and_vmxe_but_not_pe_pg() {
        let c = caps();
        assert_eq!(cr0_mask(&c) & 0xFFFF_FFFF, 0x20);
        assert_ne!(cr0_mask(&c) >> 32, 0);
        assert_eq!(cr4_mask(&c) & CR4_VMXE, CR4_VMXE);
        assert_eq!(cr0_hardware(&c, 0x11), 0x31);
        assert_eq!(cr4_hardware(&c, 0x20), 0x2020);
    }

    #[test]
    fn enabling_paging_with_lme_sets_lma() {
        let c = caps();
        let w = write_cr0(&c, 0x11, 0x8000_0031, CR4_PAE, EFER_LME, false);
        assert_eq!(
            w,
            CrWrite::Done {
                visible: 0x8000_0031,
                hardware: 0x8000_0031,
                efer: EFER_LME | EFER_LMA,
                flush: true
            }
        );
        // Without PAE it faults.
        assert_eq!(
            write_cr0(&c, 0x11, 0x8000_0031, 0, EFER_LME, false),
            CrWrite::Fault
        );
    }

    #[test]
    fn leaving_paging_from_compatibility_mode_clears_lma() {
        let c = caps();
        let efer = EFER_LME | EFER_LMA;
        let Some(new) = (match write_cr0(&c, 0x8000_0031, 0x31, CR4_PAE, efer, false) {
            CrWrite::Done { efer, .. } => Some(efer),
            CrWrite::Fault => None,
        }) else {
            panic!("must not fault")
        };
        assert_eq!(new, EFER_LME);
        // From 64-bit code it faults.
        assert_eq!(
            write_cr0(&c, 0x8000_0031, 0x31, CR4_PAE, efer, true),
            CrWrite::Fault
        );
    }

    #[test]
    fn invalid_cr0_values_fault() {
        let c = caps();
        assert_eq!(
            write_cr0(&c, 0x11, 0x8000_0000, 0, 0, false),
            CrWrite::Fault
        );
        assert_eq!(
            write_cr0(&c, 0x11, 0x2000_0011, 0, 0, false),
            CrWrite::Fault
        );
        assert_eq!(write_cr0(&c, 0x11, 1 << 32, 0, 0, false), CrWrite::Fault);
    }

    #[test]
    fn cr4_rules() {
        let c = caps();
        assert_eq!(write_cr4(&c, 0, CR4_VMXE, 0, 0), CrWrite::Fault);
        assert_eq!(write_cr4(&c, 0, 1 << 30, 0, 0), CrWrite::Fault);
        assert_eq!(write_cr4(&c, CR4_PAE, 0, 0, EFER_LMA), CrWrite::Fault);
        assert_eq!(write_cr4(&c, 0, CR4_PCIDE, 0, 0), CrWrite::Fault);
        let lma = EFER_LME | EFER_LMA;
        assert_eq!(
            write_cr4(&c, CR4_PAE, CR4_PAE | CR4_PCIDE, 0x1001, lma),
            CrWrite::Fault
        );
        assert_eq!(
            write_cr4(&c, CR4_PAE, CR4_PAE | CR4_OSXSAVE, 0, lma),
            CrWrite::Done {
                visible: CR4_PAE | CR4_OSXSAVE,
                hardware: CR4_PAE | CR4_OSXSAVE | CR4_VMXE,
                efer: lma,
                flush: false
            }
        );
    }

    #[test]
    fn lmsw_and_clts() {
        assert_eq!(lmsw(0x8000_0033, 0x0), 0x8000_0031);
        assert_eq!(lmsw(0x10, 0xF), 0x1F);
        assert_eq!(clts(0x8000_003B), 0x8000_0033);
    }

    #[test]
    fn xcr0_rules() {
        let sup = 0xE7;
        assert!(xcr0_valid(1, sup));
        assert!(xcr0_valid(7, sup));
        assert!(xcr0_valid(0xE7, sup));
        assert!(!xcr0_valid(0, sup));
        assert!(!xcr0_valid(5, sup), "AVX without SSE");
        assert!(!xcr0_valid(0x27, sup), "part of AVX-512");
        assert!(!xcr0_valid(0x1F, sup), "MPX not supported");
    }
}
