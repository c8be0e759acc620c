//! Guest instruction decoding: length of the instruction at RIP, and what an instruction that
//! faulted on emulated MMIO does.
//!
//! QEMU's TCG SVM offers neither next-RIP nor decode assists, so the hypervisor fetches the
//! bytes at the guest's RIP itself ([`walk::fetch_insn`]) and decodes them here with
//! `iced-x86`. Nothing of `iced-x86` shows in this module's interface.

#![forbid(unsafe_code)]

pub mod fuzzing;
mod mmio;
pub mod walk;

#[cfg(test)]
mod tests;

pub use mmio::{
    merge, read_part, widen, Extend, Gpr, MmioAccess, MmioOp, Operand, RegPart, RegRef,
};

use core::fmt;

use iced_x86::{Code, Decoder, DecoderError, DecoderOptions};

/// The architectural limit on instruction length (Intel SDM vol.2 §2.3.11, AMD APM vol.3 §1.1).
pub const MAX_INSN_LEN: usize = 15;

/// Default operand and address size of the code being decoded (the CS.D / CS.L bits).
/// Real mode and 16-bit protected mode decode alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuMode {
    Bits16,
    Bits32,
    Bits64,
}

impl CpuMode {
    /// The mode for a code segment of `bits` (16, 32 or 64).
    pub fn from_code_bits(bits: u8) -> Option<Self> {
        match bits {
            16 => Some(Self::Bits16),
            32 => Some(Self::Bits32),
            64 => Some(Self::Bits64),
            _ => None,
        }
    }

    fn bitness(self) -> u32 {
        match self {
            Self::Bits16 => 16,
            Self::Bits32 => 32,
            Self::Bits64 => 64,
        }
    }
}

/// The instructions whose exits the hypervisor handles, so it can check that the bytes at RIP
/// are what the exit said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsnKind {
    Cpuid,
    Hlt,
    Rdmsr,
    Wrmsr,
    /// AMD's hypercall.
    Vmmcall,
    /// Intel's hypercall.
    Vmcall,
    /// IN from an immediate port or DX.
    In,
    /// OUT to an immediate port or DX.
    Out,
    /// INS (string input).
    Ins,
    /// OUTS (string output).
    Outs,
    /// One of the moves [`Insn::mmio`] describes.
    Move,
    /// Anything else.
    Other,
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Length in bytes (1 to 15): how far RIP advances.
    pub len: u8,
    pub kind: InsnKind,
    /// The memory access, for the moves that MMIO emulation supports.
    pub mmio: Option<MmioAccess>,
    code: Code,
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({} bytes)", self.code, self.len)
    }
}

/// An instruction that accesses emulated MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    /// Length in bytes: how far RIP advances once the access is emulated.
    pub len: u8,
    pub access: MmioAccess,
}

/// Instruction bytes (and, once decoded, the instruction's name) for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InsnBytes {
    bytes: [u8; MAX_INSN_LEN],
    len: u8,
    code: Option<Code>,
}

impl InsnBytes {
    fn new(from: &[u8], len: usize, code: Option<Code>) -> Self {
        let len = len.min(from.len()).min(MAX_INSN_LEN);
        let mut bytes = [0; MAX_INSN_LEN];
        bytes[..len].copy_from_slice(&from[..len]);
        Self {
            bytes,
            len: len as u8,
            code,
        }
    }

    /// The bytes (at most 15).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.code {
            write!(f, "{code:?} ")?;
        }
        f.write_str("\"")?;
        for (i, b) in self.as_slice().iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{b:02x}")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why bytes could not be decoded (or not as an MMIO access).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does (or there are none).
    Truncated(InsnBytes),
    /// Not a valid instruction in this mode, or longer than 15 bytes.
    Invalid(InsnBytes),
    /// A valid instruction, but not one of the supported MMIO moves.
    UnsupportedMmio(InsnBytes),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(b) => write!(
                f,
                "decode: instruction truncated after {} bytes: {b}",
                b.as_slice().len()
            ),
            Self::Invalid(b) => write!(f, "decode: invalid instruction {b}"),
            Self::UnsupportedMmio(b) => write!(
                f,
                "decode: unsupported MMIO instruction {b} at length {}",
                b.as_slice().len()
            ),
        }
    }
}

/// Decodes the instruction at the start of `bytes` (further bytes are ignored).
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<Insn, DecodeError> {
    let mut decoder = Decoder::new(mode.bitness(), bytes, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        let shown = InsnBytes::new(bytes, MAX_INSN_LEN, None);
        return Err(match decoder.last_error() {
            DecoderError::NoMoreBytes => DecodeError::Truncated(shown),
            _ => DecodeError::Invalid(shown),
        });
    }
    let mmio = mmio::access(&insn);
    let kind = match insn.code() {
        Code::Cpuid => InsnKind::Cpuid,
        Code::Hlt => InsnKind::Hlt,
        Code::Rdmsr => InsnKind::Rdmsr,
        Code::Wrmsr => InsnKind::Wrmsr,
        Code::Vmmcall => InsnKind::Vmmcall,
        Code::Vmcall => InsnKind::Vmcall,
        Code::In_AL_imm8
        | Code::In_AX_imm8
        | Code::In_EAX_imm8
        | Code::In_AL_DX
        | Code::In_AX_DX
        | Code::In_EAX_DX => InsnKind::In,
        Code::Out_imm8_AL
        | Code::Out_imm8_AX
        | Code::Out_imm8_EAX
        | Code::Out_DX_AL
        | Code::Out_DX_AX
        | Code::Out_DX_EAX => InsnKind::Out,
        Code::Insb_m8_DX | Code::Insw_m16_DX | Code::Insd_m32_DX => InsnKind::Ins,
        Code::Outsb_DX_m8 | Code::Outsw_DX_m16 | Code::Outsd_DX_m32 => InsnKind::Outs,
        _ if mmio.is_some() => InsnKind::Move,
        _ => InsnKind::Other,
    };
    Ok(Insn {
        // The decoder never produces more than 15 bytes.
        len: insn.len() as u8,
        kind,
        mmio,
        code: insn.code(),
    })
}

/// Decodes the instruction that faulted on emulated MMIO; anything but a supported move with a
/// memory operand is an error naming the instruction.
pub fn decode_mmio(bytes: &[u8], mode: CpuMode) -> Result<MmioInsn, DecodeError> {
    let insn = decode(bytes, mode)?;
    match insn.mmio {
        Some(access) => Ok(MmioInsn {
            len: insn.len,
            access,
        }),
        None => Err(DecodeError::UnsupportedMmio(InsnBytes::new(
            bytes,
            usize::from(insn.len),
            Some(insn.code),
        ))),
    }
}
