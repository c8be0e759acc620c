//! What an instruction that touched emulated MMIO does: size, direction, register or
//! immediate, and how a read result lands in the destination register.

use iced_x86::{Code, Instruction, OpKind, Register};

/// A general-purpose register, numbered as in the x86 encoding (and as `GuestRegs::gprs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

const GPRS: [Gpr; 16] = [
    Gpr::Rax,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::Rsi,
    Gpr::Rdi,
    Gpr::R8,
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

impl Gpr {
    /// Encoding number, 0 (RAX) to 15 (R15): the index into a register file.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The register with encoding number `n`.
    pub fn from_index(n: usize) -> Option<Self> {
        GPRS.get(n).copied()
    }
}

/// Which part of a 64-bit register an operand names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegPart {
    /// Bits 7:0 (AL, SIL with REX, R8L …).
    Low8,
    /// Bits 15:8 (AH, CH, DH, BH; only without REX).
    High8,
    /// Bits 15:0.
    Word,
    /// Bits 31:0; writing it zeroes bits 63:32.
    Dword,
    /// All 64 bits.
    Qword,
}

impl RegPart {
    /// Operand size in bytes.
    pub const fn bytes(self) -> u8 {
        match self {
            Self::Low8 | Self::High8 => 1,
            Self::Word => 2,
            Self::Dword => 4,
            Self::Qword => 8,
        }
    }
}

/// A register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegRef {
    pub reg: Gpr,
    pub part: RegPart,
}

impl RegRef {
    /// The operand's value within the full register value `full`.
    pub fn read(self, full: u64) -> u64 {
        read_part(full, self.part)
    }
}

/// How a read narrower than its destination register is widened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extend {
    /// Same size as the destination (MOV).
    None,
    /// MOVZX.
    Zero,
    /// MOVSX, MOVSXD.
    Sign,
}

/// The source of an MMIO write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Reg(RegRef),
    /// Already truncated to the access size.
    Imm(u64),
}

/// Direction and register of an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmioOp {
    /// The device's value goes into `dest`, widened by `extend`.
    Read { dest: RegRef, extend: Extend },
    /// `src` goes to the device.
    Write { src: Operand },
}

/// One guest access to emulated MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    pub op: MmioOp,
}

impl MmioAccess {
    /// For a write, the `size` bytes the guest stores, taken from its registers `gprs`
    /// (x86 encoding order); `None` for a read.
    pub fn write_data(&self, gprs: &[u64; 16]) -> Option<u64> {
        match self.op {
            MmioOp::Write {
                src: Operand::Imm(v),
            } => Some(v),
            MmioOp::Write {
                src: Operand::Reg(r),
            } => Some(truncate(r.read(gprs[r.reg.index()]), self.size)),
            MmioOp::Read { .. } => None,
        }
    }

    /// For a read, puts the device's `data` (only the low `size` bytes count) into the
    /// destination register with x86 semantics; a write changes nothing.
    pub fn complete_read(&self, gprs: &mut [u64; 16], data: u64) {
        if let MmioOp::Read { dest, extend } = self.op {
            let slot = &mut gprs[dest.reg.index()];
            *slot = merge(*slot, dest.part, widen(data, self.size, extend));
        }
    }
}

/// `full` with the operand `part` replaced by `value`, as an x86 register write leaves it:
/// 8- and 16-bit writes keep the other bits, a 32-bit write zeroes bits 63:32
/// (Intel SDM vol.1 §3.4.1.1).
pub fn merge(full: u64, part: RegPart, value: u64) -> u64 {
    match part {
        RegPart::Low8 => (full & !0xff) | (value & 0xff),
        RegPart::High8 => (full & !0xff00) | ((value & 0xff) << 8),
        RegPart::Word => (full & !0xffff) | (value & 0xffff),
        RegPart::Dword => value & 0xffff_ffff,
        RegPart::Qword => value,
    }
}

/// The value of operand `part` within the full register value `full`.
pub fn read_part(full: u64, part: RegPart) -> u64 {
    match part {
        RegPart::Low8 => full & 0xff,
        RegPart::High8 => (full >> 8) & 0xff,
        RegPart::Word => full & 0xffff,
        RegPart::Dword => full & 0xffff_ffff,
        RegPart::Qword => full,
    }
}

/// The low `size` bytes of `value`, zero- or sign-extended to 64 bits (`merge` then keeps as
/// much as the destination holds).
pub fn widen(value: u64, size: u8, extend: Extend) -> u64 {
    let v = truncate(value, size);
    let bits = u32::from(size) * 8;
    match extend {
        Extend::Sign if bits < 64 => {
            let shift = 64 - bits;
            (((v << shift) as i64) >> shift) as u64
        }
        _ => v,
    }
}

fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

/// Which way data moves, and between which operands.
enum Form {
    /// Operand 0 is the destination register, operand 1 memory.
    Load(Extend),
    /// Operand 0 is memory, operand 1 the source register.
    Store,
    /// Operand 0 is memory, operand 1 an immediate.
    StoreImm,
}

/// The MMIO-capable forms: the moves compilers emit for volatile accesses and Linux emits in
/// `readl`/`writel` and friends. Anything else touching MMIO is refused.
fn form(code: Code) -> Option<(Form, u8)> {
    use Code::*;
    Some(match code {
        Mov_r8_rm8 | Mov_AL_moffs8 => (Form::Load(Extend::None), 1),
        Mov_r16_rm16 | Mov_AX_moffs16 => (Form::Load(Extend::None), 2),
        Mov_r32_rm32 | Mov_EAX_moffs32 => (Form::Load(Extend::None), 4),
        Mov_r64_rm64 | Mov_RAX_moffs64 => (Form::Load(Extend::None), 8),
        Movzx_r16_rm8 | Movzx_r32_rm8 | Movzx_r64_rm8 => (Form::Load(Extend::Zero), 1),
        Movzx_r16_rm16 | Movzx_r32_rm16 | Movzx_r64_rm16 => (Form::Load(Extend::Zero), 2),
        Movsx_r16_rm8 | Movsx_r32_rm8 | Movsx_r64_rm8 => (Form::Load(Extend::Sign), 1),
        Movsx_r16_rm16 | Movsx_r32_rm16 | Movsx_r64_rm16 => (Form::Load(Extend::Sign), 2),
        Movsxd_r64_rm32 => (Form::Load(Extend::Sign), 4),
        Mov_rm8_r8 | Mov_moffs8_AL => (Form::Store, 1),
        Mov_rm16_r16 | Mov_moffs16_AX => (Form::Store, 2),
        Mov_rm32_r32 | Mov_moffs32_EAX | Movnti_m32_r32 => (Form::Store, 4),
        Mov_rm64_r64 | Mov_moffs64_RAX | Movnti_m64_r64 => (Form::Store, 8),
        Mov_rm8_imm8 => (Form::StoreImm, 1),
        Mov_rm16_imm16 => (Form::StoreImm, 2),
        Mov_rm32_imm32 => (Form::StoreImm, 4),
        Mov_rm64_imm32 => (Form::StoreImm, 8),
        _ => return None,
    })
}

/// The MMIO access `insn` makes, if it is one of the supported forms with a memory operand.
pub(super) fn access(insn: &Instruction) -> Option<MmioAccess> {
    let (form, size) = form(insn.code())?;
    let (mem_op, other) = match form {
        Form::Load(_) => (1, 0),
        Form::Store | Form::StoreImm => (0, 1),
    };
    if insn.try_op_kind(mem_op).ok()? != OpKind::Memory {
        return None;
    }
    let op = match form {
        Form::Load(extend) => MmioOp::Read {
            dest: reg_ref(insn.op_register(other))?,
            extend,
        },
        Form::Store => MmioOp::Write {
            src: Operand::Reg(reg_ref(insn.op_register(other))?),
        },
        Form::StoreImm => MmioOp::Write {
            src: Operand::Imm(truncate(insn.try_immediate(other).ok()?, size)),
        },
    };
    Some(MmioAccess { size, op })
}

/// Maps a decoder register to register number and part; `None` for anything but a GPR.
fn reg_ref(r: Register) -> Option<RegRef> {
    let n = r as usize;
    let (index, part) = match n {
        _ if (Register::AH as usize..=Register::BH as usize).contains(&n) => {
            (n - Register::AH as usize, RegPart::High8)
        }
        _ if (Register::AL as usize..=Register::BL as usize).contains(&n) => {
            (n - Register::AL as usize, RegPart::Low8)
        }
        // SPL..R15L follow BH and continue at encoding number 4.
        _ if (Register::SPL as usize..=Register::R15L as usize).contains(&n) => {
            (n - Register::SPL as usize + 4, RegPart::Low8)
        }
        _ if (Register::AX as usize..=Register::R15W as usize).contains(&n) => {
            (n - Register::AX as usize, RegPart::Word)
        }
        _ if (Register::EAX as usize..=Register::R15D as usize).contains(&n) => {
            (n - Register::EAX as usize, RegPart::Dword)
        }
        _ if (Register::RAX as usize..=Register::R15 as usize).contains(&n) => {
            (n - Register::RAX as usize, RegPart::Qword)
        }
        _ => return None,
    };
    Some(RegRef {
        reg: Gpr::from_index(index)?,
        part,
    })
}
