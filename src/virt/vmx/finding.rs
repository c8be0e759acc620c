//! What the entry-failure diagnostics report, and the VM-instruction error numbers in words.

#![forbid(unsafe_code)]

use core::fmt;

use super::controls::{control_name, Word};
use super::fields::Field;

/// One failed check: the rule (naming the field and the SDM section) and the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule that failed, naming the field it is about.
    pub rule: &'static str,
    /// The field's value (or, for control words, the offending bits).
    pub value: u64,
    /// For control words: which word `value`'s bits belong to, so they can be named.
    pub bits_of: Option<Word>,
}

impl Finding {
    pub(super) fn new(rule: &'static str, value: u64) -> Self {
        Self {
            rule,
            value,
            bits_of: None,
        }
    }

    pub(super) fn bits(rule: &'static str, word: Word, bits: u32) -> Self {
        Self {
            rule,
            value: u64::from(bits),
            bits_of: Some(word),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (value {:#x}", self.rule, self.value)?;
        if let Some(word) = self.bits_of {
            let mut bits = self.value as u32;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                write!(f, "; bit {bit} \"{}\"", control_name(word, bit))?;
                bits &= bits - 1;
            }
        }
        f.write_str(")")
    }
}

/// Reads one VMCS field (the loaded VMCS on bare metal, a table in tests).
pub type Reader<'a> = &'a dyn Fn(Field) -> u64;

/// Whether `v` is canonical for 48-bit linear addresses.
pub fn is_canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

/// Whether `v` fits in the CPU's physical-address width.
pub fn fits_phys(v: u64, phys_bits: u8) -> bool {
    phys_bits >= 64 || v >> phys_bits == 0
}

/// Whether every byte of `pat` is a valid memory type (0, 1, 4, 5, 6, 7).
pub fn is_valid_pat(pat: u64) -> bool {
    pat.to_le_bytes()
        .iter()
        .all(|&b| matches!(b, 0 | 1 | 4 | 5 | 6 | 7))
}

/// The VM-instruction error numbers (SDM vol.3 §31.4) in words.
pub fn insn_error_text(number: u64) -> &'static str {
    match number {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with an invalid physical address",
        3 => "VMCLEAR with the VMXON pointer",
        4 => "VMLAUNCH with a non-clear VMCS",
        5 => "VMRESUME with a non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control fields",
        8 => "VM entry with invalid host-state fields",
        9 => "VMPTRLD with an invalid physical address",
        10 => "VMPTRLD with the VMXON pointer",
        11 => "VMPTRLD with an incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE of an unsupported VMCS field",
        13 => "VMWRITE to a read-only VMCS field",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with an invalid executive-VMCS pointer",
        17 => "VM entry with a non-launched executive VMCS",
        18 => "VM entry with an executive-VMCS pointer that is not the VMXON pointer",
        19 => "VMCALL with a non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with an incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in the executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error number",
    }
}

/// How a VMX instruction failed (SDM vol.3 §31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnFailure {
    /// CF=1: no current VMCS, or the operand itself was unusable.
    Invalid,
    /// ZF=1: the error number is in the VM-instruction error field.
    Valid(u64),
}

impl fmt::Display for InsnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => f.write_str("VMfailInvalid (no current VMCS, or an unusable operand)"),
            Self::Valid(n) => write!(f, "VMfailValid, error {n}: {}", insn_error_text(*n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::vmx::controls::PROC_HLT;

    #[test]
    fn control_bits_are_named_in_the_report() {
        let f = Finding::bits("test rule", Word::Proc, PROC_HLT.mask() | (1 << 14));
        let text = alloc::format!("{f}");
        assert!(text.contains("bit 7 \"HLT exiting\""), "{text}");
        assert!(text.contains("bit 14 \"reserved bit\""), "{text}");
    }

    #[test]
    fn error_numbers_have_words() {
        assert_eq!(insn_error_text(7), "VM entry with invalid control fields");
        let text = alloc::format!("{}", InsnFailure::Valid(8));
        assert!(text.contains("invalid host-state fields"), "{text}");
    }

    #[test]
    fn address_helpers() {
        assert!(is_canonical(0xFFFF_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(fits_phys(0xF_FFFF_F000, 36));
        assert!(!fits_phys(0x10_0000_0000, 36));
        assert!(is_valid_pat(0x0007_0406_0007_0406));
        assert!(!is_valid_pat(0x0007_0406_0007_0402));
    }
}
