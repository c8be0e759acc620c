//! The guest's view of model-specific registers: an explicit policy for every MSR a guest may
//! touch. MSRs that the VMCB/VMCS switches are passed through by the vendor code and never reach
//! this table; everything else is emulated here or refused with #GP, as hardware refuses an MSR
//! it does not have.

use alloc::collections::BTreeMap;

/// What to do with a guest RDMSR/WRMSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrOutcome {
    /// RDMSR returns this value / WRMSR is accepted.
    Value(u64),
    /// WRMSR accepted (stored or ignored).
    Done,
    /// EFER write: the caller validates and applies it through the vCPU.
    Efer(u64),
    /// Raise #GP(0).
    Fault,
}

pub const MSR_TSC: u32 = 0x10;
pub const MSR_APIC_BASE: u32 = 0x1B;
pub const MSR_FEATURE_CONTROL: u32 = 0x3A;
pub const MSR_EFER: u32 = 0xC000_0080;
const MSR_SPEC_CTRL: u32 = 0x48;
const MSR_PRED_CMD: u32 = 0x49;
const MSR_BIOS_UPDT_TRIG: u32 = 0x79;
const MSR_BIOS_SIGN_ID: u32 = 0x8B;
const MSR_MTRRCAP: u32 = 0xFE;
const MSR_MCG_CAP: u32 = 0x179;
const MSR_MCG_STATUS: u32 = 0x17A;
const MSR_MISC_ENABLE: u32 = 0x1A0;
const MSR_DEBUGCTL: u32 = 0x1D9;
const MSR_MTRR_DEF_TYPE: u32 = 0x2FF;
const MSR_TSC_ADJUST: u32 = 0x3B;
const MSR_VM_CR: u32 = 0xC001_0114;
const MSR_VM_IGNNE: u32 = 0xC001_0115;
const MSR_SVM_KEY: u32 = 0xC001_0118;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// APIC base address offered to guests.
pub const APIC_BASE_ADDR: u64 = 0xFEE0_0000;
const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE global enable.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE x2APIC mode.
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
const FEATURE_CONTROL_LOCKED: u64 = 1;
/// EFER bits a guest may set: SCE, LME, LMA (ignored), NXE, FFXSR.
const EFER_ALLOWED: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 14);

/// Emulated MSR state of one vCPU.
#[derive(Clone, Debug, Default)]
pub struct MsrState {
    apic_base: u64,
    /// MTRRs and other harmless registers the guest may write and read back.
    stored: BTreeMap<u32, u64>,
    /// Guest accesses refused with #GP (for statistics).
    pub refused: u64,
}

fn is_mtrr(msr: u32) -> bool {
    matches!(msr, 0x200..=0x21F | 0x250 | 0x258 | 0x259 | 0x268..=0x26F | MSR_MTRR_DEF_TYPE)
}

/// AMD model-specific ranges Linux reads and writes during boot (HWCR, DE_CFG, NB_CFG, legacy
/// performance counters, …): reads give 0, writes are ignored.
fn is_amd_benign(msr: u32) -> bool {
    matches!(msr, 0xC001_0000..=0xC001_0113 | 0xC001_0119..=0xC001_1FFF)
}

impl MsrState {
    /// State at reset for vCPU `vcpu_index` (vCPU 0 is the bootstrap processor).
    pub fn new(vcpu_index: u32) -> Self {
        let bsp = if vcpu_index == 0 { APIC_BASE_BSP } else { 0 };
        Self {
            apic_base: APIC_BASE_ADDR | APIC_BASE_ENABLE | bsp,
            stored: BTreeMap::new(),
            refused: 0,
        }
    }

    /// The guest's IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// RDMSR `msr`. `efer` is the guest's current EFER, `tsc` the current TSC.
    pub fn read(&mut self, msr: u32, efer: u64, tsc: u64) -> MsrOutcome {
        let v = match msr {
            MSR_TSC => tsc,
            MSR_APIC_BASE => self.apic_base,
            MSR_EFER => efer,
            // Locked with VMX off: what a guest of a hypervisor without nested VMX sees.
            MSR_FEATURE_CONTROL => FEATURE_CONTROL_LOCKED,
            MSR_SPEC_CTRL | MSR_BIOS_SIGN_ID | MSR_MTRRCAP | MSR_MCG_CAP | MSR_MCG_STATUS
            | MSR_DEBUGCTL | MSR_TSC_ADJUST => 0,
            // Fast strings enabled.
            MSR_MISC_ENABLE => 1,
            m if is_mtrr(m) => self.stored.get(&m).copied().unwrap_or(0),
            m if is_amd_benign(m) => 0,
            _ => return self.refuse(),
        };
        MsrOutcome::Value(v)
    }

    /// WRMSR `msr` with `value`.
    pub fn write(&mut self, msr: u32, value: u64, x2apic_offered: bool) -> MsrOutcome {
        match msr {
            MSR_EFER => {
                if value & !EFER_ALLOWED != 0 {
                    return self.refuse();
                }
                MsrOutcome::Efer(value)
            }
            MSR_APIC_BASE => {
                let x2 = value & APIC_BASE_X2APIC != 0;
                if (x2 && !x2apic_offered)
                    || value & 0xFFF & !(APIC_BASE_BSP | APIC_BASE_ENABLE | APIC_BASE_X2APIC) != 0
                {
                    return self.refuse();
                }
                // The base address is fixed; keep BSP as the hardware does.
                self.apic_base = APIC_BASE_ADDR
                    | (self.apic_base & APIC_BASE_BSP)
                    | (value & (APIC_BASE_ENABLE | APIC_BASE_X2APIC));
                MsrOutcome::Done
            }
            MSR_FEATURE_CONTROL | MSR_VM_CR | MSR_VM_IGNNE | MSR_VM_HSAVE_PA | MSR_SVM_KEY => {
                self.refuse()
            }
            MSR_TSC | MSR_TSC_ADJUST | MSR_SPEC_CTRL | MSR_PRED_CMD | MSR_BIOS_UPDT_TRIG
            | MSR_BIOS_SIGN_ID | MSR_MISC_ENABLE | MSR_DEBUGCTL => MsrOutcome::Done,
            MSR_MCG_STATUS if value == 0 => MsrOutcome::Done,
            m if is_mtrr(m) => {
                self.stored.insert(m, value);
                MsrOutcome::Done
            }
            m if is_amd_benign(m) => MsrOutcome::Done,
            _ => self.refuse(),
        }
    }

    fn refuse(&mut self) -> MsrOutcome {
        self.refused += 1;
        MsrOutcome::Fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_msrs_are_refused() {
        let mut s = MsrState::new(0);
        for msr in [0x480, 0x48B, MSR_VM_HSAVE_PA, MSR_VM_CR, 0x4b56_4d00] {
            assert_eq!(s.read(msr, 0, 0), MsrOutcome::Fault, "read {msr:#x}");
            assert_eq!(s.write(msr, 0, false), MsrOutcome::Fault, "write {msr:#x}");
        }
        assert_eq!(
            s.read(MSR_FEATURE_CONTROL, 0, 0),
            MsrOutcome::Value(FEATURE_CONTROL_LOCKED)
        );
        assert_eq!(s.write(MSR_FEATURE_CONTROL, 5, false), MsrOutcome::Fault);
        assert_eq!(s.refused, 11);
    }

    #[test]
    fn efer_svme_and_reserved_bits_fault() {
        let mut s = MsrState::new(0);
        assert_eq!(s.write(MSR_EFER, 1 << 12, false), MsrOutcome::Fault);
        assert_eq!(s.write(MSR_EFER, 1 << 20, false), MsrOutcome::Fault);
        assert_eq!(s.write(MSR_EFER, 0xD01, false), MsrOutcome::Efer(0xD01));
    }

    #[test]
    fn apic_base_and_mtrrs() {
        let mut s = MsrState::new(1);
        assert_eq!(
            s.read(MSR_APIC_BASE, 0, 0),
            MsrOutcome::Value(APIC_BASE_ADDR | APIC_BASE_ENABLE)
        );
        assert_eq!(
            s.write(
                MSR_APIC_BASE,
                APIC_BASE_ADDR | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
                false
            ),
            MsrOutcome::Fault
        );
        assert_eq!(
            s.write(
                MSR_APIC_BASE,
                0x1234_5000 | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
                true
            ),
            MsrOutcome::Done
        );
        assert_eq!(
            s.apic_base(),
            APIC_BASE_ADDR | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
            "base is fixed"
        );
        assert_eq!(s.write(0x200, 0x6, false), MsrOutcome::Done);
        assert_eq!(s.read(0x200, 0, 0), MsrOutcome::Value(0x6));
        assert_eq!(s.read(MSR_TSC, 0, 42), MsrOutcome::Value(42));
    }
}
