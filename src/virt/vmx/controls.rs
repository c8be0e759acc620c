//! The VMX capability MSRs and the VM-execution, VM-exit and VM-entry control words computed
//! from them (SDM vol.3 appendix A; SDM numbering of the 2023 editions throughout this module).
//!
//! Each control word is `(wanted | allowed-0) & allowed-1`: the bits the CPU forces on are set,
//! the bits it cannot do are refused with an error that names them. Nothing is hard-coded to
//! values that merely happen to work on one CPU.

#![forbid(unsafe_code)]

use core::fmt;

/// IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist (SDM vol.3 §A.1).
pub const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
/// IA32_VMX_BASIC bit 48: VMX structures must lie below 4 GiB.
pub const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;

/// Raw values of the VMX capability MSRs of one CPU. The four control MSRs hold the TRUE_*
/// variants when IA32_VMX_BASIC bit 55 says they exist, else the plain ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapMsrs {
    pub basic: u64,
    pub pin: u64,
    pub proc: u64,
    pub proc2: u64,
    pub exit: u64,
    pub entry: u64,
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    pub ept_vpid: u64,
}

impl CapMsrs {
    /// The VMCS revision identifier (bits 30:0 of IA32_VMX_BASIC).
    pub fn revision(&self) -> u32 {
        (self.basic & 0x7FFF_FFFF) as u32
    }

    /// Bytes the CPU needs for a VMXON region or VMCS (bits 44:32, at most 4096).
    pub fn region_bytes(&self) -> u64 {
        (self.basic >> 32) & 0x1FFF
    }

    /// Whether the CPU's EPT supports a control of `bit` in IA32_VMX_EPT_VPID_CAP.
    pub fn ept_vpid_has(&self, bit: u32) -> bool {
        self.ept_vpid & (1 << bit) != 0
    }

    /// The VMX-preemption timer counts down once every 2^this TSC cycles (IA32_VMX_MISC bits
    /// 4:0, SDM vol.3 §26.5.1).
    pub fn preemption_timer_shift(&self) -> u32 {
        (self.misc & 0x1F) as u32
    }

    /// The most CR3-target values the CPU supports (IA32_VMX_MISC bits 24:16).
    pub fn cr3_targets(&self) -> u64 {
        (self.misc >> 16) & 0x1FF
    }

    /// CR0 bits a guest must keep set: FIXED0 without PE and PG, which unrestricted guest frees
    /// (SDM vol.3 §27.3.1.1).
    pub fn guest_cr0_fixed0(&self) -> u64 {
        self.cr0_fixed0 & !(CR0_PE | CR0_PG)
    }
}

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_PG: u64 = 1 << 31;

// EPT/VPID capability bits (IA32_VMX_EPT_VPID_CAP, SDM vol.3 §A.10).
pub const EPT_CAP_UC: u32 = 8;
pub const EPT_CAP_WB: u32 = 14;
pub const EPT_CAP_AD: u32 = 21;
pub const EPT_CAP_INVEPT: u32 = 20;
pub const EPT_CAP_INVEPT_SINGLE: u32 = 25;
pub const EPT_CAP_INVEPT_ALL: u32 = 26;
pub const EPT_CAP_WALK4: u32 = 6;
pub const VPID_CAP_INVVPID: u32 = 32;
pub const VPID_CAP_SINGLE: u32 = 41;
pub const VPID_CAP_ALL: u32 = 42;

/// Which of the five control words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    Pin,
    Proc,
    Proc2,
    Exit,
    Entry,
}

impl Word {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pin => "pin-based VM-execution controls",
            Self::Proc => "primary processor-based VM-execution controls",
            Self::Proc2 => "secondary processor-based VM-execution controls",
            Self::Exit => "VM-exit controls",
            Self::Entry => "VM-entry controls",
        }
    }

    /// The capability MSR value that governs this word.
    pub fn cap(self, caps: &CapMsrs) -> u64 {
        match self {
            Self::Pin => caps.pin,
            Self::Proc => caps.proc,
            Self::Proc2 => caps.proc2,
            Self::Exit => caps.exit,
            Self::Entry => caps.entry,
        }
    }
}

/// One named control bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub word: Word,
    pub bit: u32,
    pub name: &'static str,
}

impl Control {
    /// The bit as a mask.
    pub const fn mask(self) -> u32 {
        1 << self.bit
    }
}

macro_rules! controls {
    ($($name:ident = $word:ident, $bit:expr, $text:expr;)*) => {
        $(pub const $name: Control = Control { word: Word::$word, bit: $bit, name: $text };)*
        /// Every control this module knows by name, for reports.
        pub const KNOWN: &[Control] = &[$($name),*];
    };
}

// SDM vol.3 §25.6.1, §25.6.2, §25.7.1, §25.8.1.
controls! {
    PIN_EXTERNAL_INTERRUPT = Pin, 0, "external-interrupt exiting";
    PIN_NMI = Pin, 3, "NMI exiting";
    PIN_VIRTUAL_NMIS = Pin, 5, "virtual NMIs";
    PIN_PREEMPTION_TIMER = Pin, 6, "activate VMX-preemption timer";
    PROC_INTERRUPT_WINDOW = Proc, 2, "interrupt-window exiting";
    PROC_TSC_OFFSETTING = Proc, 3, "use TSC offsetting";
    PROC_HLT = Proc, 7, "HLT exiting";
    PROC_INVLPG = Proc, 9, "INVLPG exiting";
    PROC_MWAIT = Proc, 10, "MWAIT exiting";
    PROC_RDPMC = Proc, 11, "RDPMC exiting";
    PROC_RDTSC = Proc, 12, "RDTSC exiting";
    PROC_CR3_LOAD = Proc, 15, "CR3-load exiting";
    PROC_CR3_STORE = Proc, 16, "CR3-store exiting";
    PROC_CR8_LOAD = Proc, 19, "CR8-load exiting";
    PROC_CR8_STORE = Proc, 20, "CR8-store exiting";
    PROC_TPR_SHADOW = Proc, 21, "use TPR shadow";
    PROC_NMI_WINDOW = Proc, 22, "NMI-window exiting";
    PROC_MOV_DR = Proc, 23, "MOV-DR exiting";
    PROC_UNCONDITIONAL_IO = Proc, 24, "unconditional I/O exiting";
    PROC_IO_BITMAPS = Proc, 25, "use I/O bitmaps";
    PROC_MONITOR_TRAP = Proc, 27, "monitor trap flag";
    PROC_MSR_BITMAPS = Proc, 28, "use MSR bitmaps";
    PROC_MONITOR = Proc, 29, "MONITOR exiting";
    PROC_PAUSE = Proc, 30, "PAUSE exiting";
    PROC_SECONDARY = Proc, 31, "activate secondary controls";
    PROC2_VIRTUAL_APIC = Proc2, 0, "virtualize APIC accesses";
    PROC2_EPT = Proc2, 1, "enable EPT";
    PROC2_DESCRIPTOR_TABLE = Proc2, 2, "descriptor-table exiting";
    PROC2_RDTSCP = Proc2, 3, "enable RDTSCP";
    PROC2_X2APIC = Proc2, 4, "virtualize x2APIC mode";
    PROC2_VPID = Proc2, 5, "enable VPID";
    PROC2_WBINVD = Proc2, 6, "WBINVD exiting";
    PROC2_UNRESTRICTED = Proc2, 7, "unrestricted guest";
    PROC2_VIRTUAL_INTR_DELIVERY = Proc2, 9, "virtual-interrupt delivery";
    PROC2_INVPCID = Proc2, 12, "enable INVPCID";
    PROC2_VMFUNC = Proc2, 13, "enable VM functions";
    PROC2_VMCS_SHADOWING = Proc2, 14, "VMCS shadowing";
    PROC2_XSAVES = Proc2, 20, "enable XSAVES/XRSTORS";
    EXIT_SAVE_DEBUG = Exit, 2, "save debug controls";
    EXIT_HOST_64BIT = Exit, 9, "host address-space size";
    EXIT_LOAD_PERF_GLOBAL = Exit, 12, "load IA32_PERF_GLOBAL_CTRL";
    EXIT_ACK_INTERRUPT = Exit, 15, "acknowledge interrupt on exit";
    EXIT_SAVE_PAT = Exit, 18, "save IA32_PAT";
    EXIT_LOAD_PAT = Exit, 19, "load IA32_PAT";
    EXIT_SAVE_EFER = Exit, 20, "save IA32_EFER";
    EXIT_LOAD_EFER = Exit, 21, "load IA32_EFER";
    EXIT_SAVE_PREEMPTION = Exit, 22, "save VMX-preemption timer value";
    ENTRY_LOAD_DEBUG = Entry, 2, "load debug controls";
    ENTRY_IA32E_GUEST = Entry, 9, "IA-32e mode guest";
    ENTRY_SMM = Entry, 10, "entry to SMM";
    ENTRY_DUAL_MONITOR = Entry, 11, "deactivate dual-monitor treatment";
    ENTRY_LOAD_PERF_GLOBAL = Entry, 13, "load IA32_PERF_GLOBAL_CTRL";
    ENTRY_LOAD_PAT = Entry, 14, "load IA32_PAT";
    ENTRY_LOAD_EFER = Entry, 15, "load IA32_EFER";
}

/// What Bulkhead needs of each control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Must be on.
    Required,
    /// On if the CPU allows it.
    Optional,
    /// Must be off (an exit Bulkhead does not handle).
    Forbidden,
    /// Off now, switched at run time: the CPU must allow both settings.
    Toggled,
}

/// The controls Bulkhead asks for, and how badly.
pub const WANTED: &[(Control, Need)] = &[
    (PIN_EXTERNAL_INTERRUPT, Need::Required),
    (PIN_NMI, Need::Required),
    (PIN_PREEMPTION_TIMER, Need::Optional),
    (PROC_INTERRUPT_WINDOW, Need::Toggled),
    (PROC_HLT, Need::Required),
    (PROC_MWAIT, Need::Required),
    (PROC_MONITOR, Need::Required),
    // Guest CR3 accesses run natively under EPT; Bulkhead has no CR3 emulation.
    (PROC_CR3_LOAD, Need::Forbidden),
    (PROC_CR3_STORE, Need::Forbidden),
    // MOV CR8 must reach a virtual TPR, never the host's (the TPR shadow does that).
    (PROC_TPR_SHADOW, Need::Required),
    (PROC_CR8_LOAD, Need::Forbidden),
    (PROC_CR8_STORE, Need::Forbidden),
    (PROC_UNCONDITIONAL_IO, Need::Required),
    (PROC_MSR_BITMAPS, Need::Required),
    (PROC_SECONDARY, Need::Required),
    (PROC_MOV_DR, Need::Forbidden),
    (PROC_INVLPG, Need::Forbidden),
    (PROC2_EPT, Need::Required),
    (PROC2_UNRESTRICTED, Need::Required),
    (PROC2_VPID, Need::Optional),
    (PROC2_RDTSCP, Need::Optional),
    (PROC2_INVPCID, Need::Optional),
    (PROC2_XSAVES, Need::Optional),
    (EXIT_SAVE_DEBUG, Need::Optional),
    (EXIT_HOST_64BIT, Need::Required),
    (EXIT_ACK_INTERRUPT, Need::Required),
    (EXIT_SAVE_PAT, Need::Required),
    (EXIT_LOAD_PAT, Need::Required),
    (EXIT_SAVE_EFER, Need::Required),
    (EXIT_LOAD_EFER, Need::Required),
    (ENTRY_LOAD_DEBUG, Need::Optional),
    (ENTRY_IA32E_GUEST, Need::Toggled),
    (ENTRY_LOAD_PAT, Need::Required),
    (ENTRY_LOAD_EFER, Need::Required),
];

/// Why the control words cannot be built on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// A control Bulkhead needs is not offered (its allowed-1 bit is clear).
    NotOffered(Control),
    /// A control Bulkhead cannot handle is forced on (its allowed-0 bit is set).
    ForcedOn(Control),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOffered(c) => write!(
                f,
                "vmx: this CPU does not offer \"{}\" (bit {} of the {}), which Bulkhead needs",
                c.name,
                c.bit,
                c.word.name()
            ),
            Self::ForcedOn(c) => write!(
                f,
                "vmx: this CPU forces \"{}\" on (bit {} of the {}), which Bulkhead cannot handle",
                c.name,
                c.bit,
                c.word.name()
            ),
        }
    }
}

/// The five control words as Bulkhead runs them (dynamic bits off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    pub pin: u32,
    pub proc: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
}

impl Controls {
    /// Computes the words from `caps`.
    pub fn compute(caps: &CapMsrs) -> Result<Self, ControlError> {
        let mut out = Self::default();
        for word in [Word::Pin, Word::Proc, Word::Proc2, Word::Exit, Word::Entry] {
            let cap = word.cap(caps);
            let (allowed0, allowed1) = (cap as u32, (cap >> 32) as u32);
            let mut value = allowed0;
            for &(c, need) in WANTED.iter().filter(|(c, _)| c.word == word) {
                let offered = allowed1 & c.mask() != 0;
                let forced = allowed0 & c.mask() != 0;
                match need {
                    Need::Required if !offered => return Err(ControlError::NotOffered(c)),
                    Need::Required => value |= c.mask(),
                    Need::Optional if offered => value |= c.mask(),
                    Need::Optional => {}
                    Need::Forbidden | Need::Toggled if forced => {
                        return Err(ControlError::ForcedOn(c))
                    }
                    Need::Toggled if !offered => return Err(ControlError::NotOffered(c)),
                    Need::Forbidden | Need::Toggled => {}
                }
            }
            *out.word_mut(word) = value & allowed1;
        }
        Ok(out)
    }

    /// The value of `word`.
    pub fn word(&self, word: Word) -> u32 {
        match word {
            Word::Pin => self.pin,
            Word::Proc => self.proc,
            Word::Proc2 => self.proc2,
            Word::Exit => self.exit,
            Word::Entry => self.entry,
        }
    }

    fn word_mut(&mut self, word: Word) -> &mut u32 {
        match word {
            Word::Pin => &mut self.pin,
            Word::Proc => &mut self.proc,
            Word::Proc2 => &mut self.proc2,
            Word::Exit => &mut self.exit,
            Word::Entry => &mut self.entry,
        }
    }

    /// Whether `c` is on.
    pub fn has(&self, c: Control) -> bool {
        self.word(c.word) & c.mask() != 0
    }
}

/// The name of bit `bit` of `word`, if this module knows it.
pub fn control_name(word: Word, bit: u32) -> &'static str {
    KNOWN
        .iter()
        .find(|c| c.word == word && c.bit == bit)
        .map_or("reserved bit", |c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capabilities of a CPU that allows everything and forces only the architectural
    /// default-1 bits of the plain MSRs.
    fn generous() -> CapMsrs {
        CapMsrs {
            basic: BASIC_TRUE_CONTROLS | (4096 << 32) | 0x12,
            pin: 0xFFFF_FFFF_0000_0016,
            proc: 0xFFFF_FFFF_0400_6172,
            proc2: 0xFFFF_FFFF_0000_0000,
            exit: 0xFFFF_FFFF_0003_6DFB,
            entry: 0xFFFF_FFFF_0000_11FB,
            ..CapMsrs::default()
        }
    }

    #[test]
    fn wanted_bits_are_set_and_forced_bits_kept() {
        let c = Controls::compute(&generous()).unwrap();
        for bit in [
            PIN_EXTERNAL_INTERRUPT,
            PIN_NMI,
            PROC_HLT,
            PROC_TPR_SHADOW,
            PROC_UNCONDITIONAL_IO,
            PROC_MSR_BITMAPS,
            PROC_SECONDARY,
            PROC2_EPT,
            PROC2_UNRESTRICTED,
            PROC2_VPID,
            EXIT_HOST_64BIT,
            EXIT_ACK_INTERRUPT,
            EXIT_LOAD_EFER,
            ENTRY_LOAD_EFER,
            ENTRY_LOAD_PAT,
        ] {
            assert!(c.has(bit), "{}", bit.name);
        }
        assert!(!c.has(PROC_INTERRUPT_WINDOW));
        assert!(!c.has(ENTRY_IA32E_GUEST));
        assert!(!c.has(PROC_CR3_LOAD));
        // Forced default-1 bits the CPU demands stay on: pin bits 1, 2, 4.
        assert_eq!(c.pin & 0x16, 0x16);
    }

    #[test]
    fn a_missing_required_control_is_named() {
        let mut caps = generous();
        caps.proc2 &= !(u64::from(PROC2_UNRESTRICTED.mask()) << 32);
        let err = Controls::compute(&caps).unwrap_err();
        assert_eq!(err, ControlError::NotOffered(PROC2_UNRESTRICTED));
        let text = alloc::format!("{err}");
        assert!(text.contains("unrestricted guest"), "{text}");
        assert!(text.contains("secondary processor-based"), "{text}");
    }

    #[test]
    fn a_forced_cr3_exit_is_refused() {
        let mut caps = generous();
        caps.proc |= u64::from(PROC_CR3_LOAD.mask());
        assert_eq!(
            Controls::compute(&caps),
            Err(ControlError::ForcedOn(PROC_CR3_LOAD))
        );
    }

    #[test]
    fn optional_controls_are_dropped_when_not_offered() {
        let mut caps = generous();
        caps.proc2 &= !(u64::from(PROC2_VPID.mask() | PROC2_XSAVES.mask()) << 32);
        let c = Controls::compute(&caps).unwrap();
        assert!(!c.has(PROC2_VPID));
        assert!(!c.has(PROC2_XSAVES));
        assert!(c.has(PROC2_EPT));
    }

    #[test]
    fn no_word_has_a_bit_the_cpu_cannot_do() {
        let mut caps = generous();
        caps.exit &= !(1u64 << (32 + 30));
        caps.pin &= !(1u64 << (32 + 7));
        let c = Controls::compute(&caps).unwrap();
        for word in [Word::Pin, Word::Proc, Word::Proc2, Word::Exit, Word::Entry] {
            let cap = word.cap(&caps);
            assert_eq!(c.word(word) & !((cap >> 32) as u32), 0, "{}", word.name());
            assert_eq!(c.word(word) & cap as u32, cap as u32, "{}", word.name());
        }
    }

    #[test]
    fn unknown_bits_have_a_name() {
        assert_eq!(control_name(Word::Proc, 7), "HLT exiting");
        assert_eq!(control_name(Word::Pin, 31), "reserved bit");
    }
}
