use super::Extend;
use super::*;
use alloc::string::ToString;

const M64: CpuMode = CpuMode::Bits64;

fn mmio(bytes: &[u8], mode: CpuMode) -> (u8, MmioAccess) {
    let insn = decode_mmio(bytes, mode).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
    (insn.len, insn.access)
}

fn read(reg: Gpr, part: RegPart, extend: Extend) -> MmioOp {
    MmioOp::Read {
        dest: RegRef { reg, part },
        extend,
    }
}

fn write_reg(reg: Gpr, part: RegPart) -> MmioOp {
    MmioOp::Write {
        src: Operand::Reg(RegRef { reg, part }),
    }
}

fn write_imm(v: u64) -> MmioOp {
    MmioOp::Write {
        src: Operand::Imm(v),
    }
}

fn access(size: u8, op: MmioOp) -> MmioAccess {
    MmioAccess { size, op }
}

#[test]
fn mov_forms_in_long_mode() {
    use Extend::None as Same;
    use Gpr::*;
    use RegPart::*;
    let cases: &[(&[u8], u8, MmioAccess)] = &[
        (&[0x8b, 0x07], 2, access(4, read(Rax, Dword, Same))),
        (&[0x89, 0x07], 2, access(4, write_reg(Rax, Dword))),
        (&[0x88, 0x27], 2, access(1, write_reg(Rax, High8))),
        (&[0x8a, 0x3f], 2, access(1, read(Rbx, High8, Same))),
        (&[0x66, 0x89, 0x07], 3, access(2, write_reg(Rax, Word))),
        (&[0x48, 0x89, 0x07], 3, access(8, write_reg(Rax, Qword))),
        (
            &[0x48, 0x8b, 0x4f, 0x08],
            4,
            access(8, read(Rcx, Qword, Same)),
        ),
        (
            &[0x44, 0x8b, 0x47, 0x10],
            4,
            access(4, read(R8, Dword, Same)),
        ),
        (&[0x40, 0x88, 0x37], 3, access(1, write_reg(Rsi, Low8))),
        (&[0x41, 0x88, 0x07], 3, access(1, write_reg(Rax, Low8))),
        (&[0x44, 0x88, 0x3f], 3, access(1, write_reg(R15, Low8))),
        (
            &[0x45, 0x89, 0x3c, 0x24],
            4,
            access(4, write_reg(R15, Dword)),
        ),
        (
            &[0x0f, 0xb6, 0x07],
            3,
            access(1, read(Rax, Dword, Extend::Zero)),
        ),
        (
            &[0x0f, 0xb7, 0x17],
            3,
            access(2, read(Rdx, Dword, Extend::Zero)),
        ),
        (
            &[0x48, 0x0f, 0xbf, 0x07],
            4,
            access(2, read(Rax, Qword, Extend::Sign)),
        ),
        (
            &[0x66, 0x0f, 0xbe, 0x07],
            4,
            access(1, read(Rax, Word, Extend::Sign)),
        ),
        (
            &[0x48, 0x63, 0x07],
            3,
            access(4, read(Rax, Qword, Extend::Sign)),
        ),
        (&[0x0f, 0xc3, 0x07], 3, access(4, write_reg(Rax, Dword))),
        (
            &[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12],
            6,
            access(4, write_imm(0x1234_5678)),
        ),
        (&[0xc6, 0x47, 0x04, 0xab], 4, access(1, write_imm(0xab))),
        (
            &[0x66, 0xc7, 0x07, 0x34, 0x12],
            5,
            access(2, write_imm(0x1234)),
        ),
        // imm32 sign-extended to 64 bits.
        (
            &[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff],
            7,
            access(8, write_imm(u64::MAX)),
        ),
        // moffs forms: A1/A3 with a 64-bit address.
        (
            &[0xa1, 0, 0, 0xe0, 0xfe, 0, 0, 0, 0],
            9,
            access(4, read(Rax, Dword, Same)),
        ),
        (
            &[0x48, 0xa3, 0, 0, 0, 0xd0, 0, 0, 0, 0],
            10,
            access(8, write_reg(Rax, Qword)),
        ),
        (
            &[0xa2, 0, 0, 0, 0xd0, 0, 0, 0, 0],
            9,
            access(1, write_reg(Rax, Low8)),
        ),
        // RIP-relative and with a segment prefix.
        (
            &[0x8b, 0x05, 0x10, 0, 0, 0],
            6,
            access(4, read(Rax, Dword, Same)),
        ),
        (
            &[0x65, 0x89, 0x0c, 0x25, 0, 0x10, 0, 0],
            8,
            access(4, write_reg(Rcx, Dword)),
        ),
    ];
    for (bytes, len, want) in cases {
        assert_eq!(mmio(bytes, M64), (*len, *want), "{bytes:02x?}");
        assert_eq!(decode(bytes, M64).unwrap().kind, InsnKind::Move);
    }
}

#[test]
fn mov_forms_in_16_and_32_bit_modes() {
    use Gpr::*;
    use RegPart::*;
    let same = Extend::None;
    assert_eq!(
        mmio(&[0x89, 0x07], CpuMode::Bits16),
        (2, access(2, write_reg(Rax, Word)))
    );
    assert_eq!(
        mmio(&[0x66, 0x89, 0x07], CpuMode::Bits16),
        (3, access(4, write_reg(Rax, Dword)))
    );
    assert_eq!(
        mmio(&[0x8b, 0x1e, 0x00, 0x10], CpuMode::Bits16),
        (4, access(2, read(Rbx, Word, same)))
    );
    // C7 with a 16-bit immediate in 16-bit mode.
    assert_eq!(
        mmio(&[0xc7, 0x07, 0x34, 0x12], CpuMode::Bits16),
        (4, access(2, write_imm(0x1234)))
    );
    assert_eq!(
        mmio(&[0x8b, 0x07], CpuMode::Bits32),
        (2, access(4, read(Rax, Dword, same)))
    );
    // A1 with a 32-bit address in 32-bit mode.
    assert_eq!(
        mmio(&[0xa1, 0x20, 0, 0xc0, 0xfe], CpuMode::Bits32),
        (5, access(4, read(Rax, Dword, same)))
    );
    // In 32-bit mode 0x40 is INC EAX, not REX.
    assert_eq!(decode(&[0x40, 0x88, 0x37], CpuMode::Bits32).unwrap().len, 1);
}

#[test]
fn other_instructions_are_refused_by_name() {
    let err = decode_mmio(&[0x83, 0x00, 0x01], M64).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedMmio(_)));
    assert_eq!(
        err.to_string(),
        "decode: unsupported MMIO instruction Add_rm32_imm8 \"83 00 01\" at length 3"
    );
    // Register-to-register moves, XCHG and string moves have no single MMIO operand to emulate.
    for bytes in [
        &[0x89, 0xc7][..],
        &[0x87, 0x07],
        &[0xa5],
        &[0xf3, 0xa4],
        &[0x0f, 0xa2],
    ] {
        let r = decode_mmio(bytes, M64);
        assert!(
            matches!(r, Err(DecodeError::UnsupportedMmio(_))),
            "{bytes:02x?}: {r:?}"
        );
    }
    assert_eq!(decode(&[0x89, 0xc7], M64).unwrap().mmio, None);
}

#[test]
fn lengths_of_exiting_instructions() {
    let cases: &[(&[u8], u8, InsnKind)] = &[
        (&[0x0f, 0xa2], 2, InsnKind::Cpuid),
        (&[0xe4, 0x71], 2, InsnKind::In),
        (&[0xe6, 0xf4], 2, InsnKind::Out),
        (&[0xec], 1, InsnKind::In),
        (&[0xee], 1, InsnKind::Out),
        (&[0xef], 1, InsnKind::Out),
        (&[0x66, 0xef], 2, InsnKind::Out),
        (&[0xf3, 0x6e], 2, InsnKind::Outs),
        (&[0x6d], 1, InsnKind::Ins),
        (&[0x0f, 0x32], 2, InsnKind::Rdmsr),
        (&[0x0f, 0x30], 2, InsnKind::Wrmsr),
        (&[0xf4, 0x90, 0x90], 1, InsnKind::Hlt),
        (&[0x0f, 0x01, 0xd9], 3, InsnKind::Vmmcall),
        (&[0x0f, 0x01, 0xc1], 3, InsnKind::Vmcall),
        (&[0x90], 1, InsnKind::Other),
    ];
    for mode in [CpuMode::Bits16, CpuMode::Bits32, M64] {
        for (bytes, len, kind) in cases {
            let insn = decode(bytes, mode).unwrap_or_else(|e| panic!("{bytes:02x?} {mode:?}: {e}"));
            assert_eq!(
                (insn.len, insn.kind),
                (*len, *kind),
                "{bytes:02x?} {mode:?}"
            );
        }
    }
    assert_eq!(
        decode(&[0x0f, 0xa2], M64).unwrap().to_string(),
        "Cpuid (2 bytes)"
    );
}

#[test]
fn truncated_invalid_and_too_long() {
    for bytes in [
        &[][..],
        &[0x0f],
        &[0x0f, 0x01],
        &[0xc7, 0x07, 0x78, 0x56],
        &[0x48],
    ] {
        let r = decode(bytes, M64);
        assert!(
            matches!(r, Err(DecodeError::Truncated(_))),
            "{bytes:02x?}: {r:?}"
        );
    }
    assert_eq!(
        decode(&[0xc7, 0x07, 0x78], M64).unwrap_err().to_string(),
        "decode: instruction truncated after 3 bytes: \"c7 07 78\""
    );
    // PUSH ES does not exist in 64-bit mode (given alone, the decoder calls it truncated).
    let r = decode(&[0x06, 0x90, 0x90], M64);
    assert!(matches!(r, Err(DecodeError::Invalid(_))), "{r:?}");
    assert_eq!(decode(&[0x06], CpuMode::Bits32).unwrap().len, 1);
    // 14 prefixes + NOP is 15 bytes, the limit; one more prefix makes it invalid.
    let mut long = [0x66u8; 16];
    long[14] = 0x90;
    assert_eq!(decode(&long[..15], M64).unwrap().len, 15);
    long[14] = 0x66;
    long[15] = 0x90;
    let err = decode(&long, M64).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    assert_eq!(
        match err {
            DecodeError::Invalid(b) => b.as_slice().len(),
            _ => 0,
        },
        MAX_INSN_LEN
    );
}

#[test]
fn register_merging_follows_x86_rules() {
    let old = 0x1111_2222_3333_4444;
    assert_eq!(merge(old, RegPart::Low8, 0xabcd), 0x1111_2222_3333_44cd);
    assert_eq!(merge(old, RegPart::High8, 0xabcd), 0x1111_2222_3333_cd44);
    assert_eq!(merge(old, RegPart::Word, 0xabcd), 0x1111_2222_3333_abcd);
    assert_eq!(merge(old, RegPart::Dword, 0xffff_ffff_abcd), 0xffff_abcd);
    assert_eq!(merge(old, RegPart::Qword, 7), 7);
    assert_eq!(read_part(old, RegPart::High8), 0x44);
    assert_eq!(widen(0x80, 1, Extend::Sign), 0xffff_ffff_ffff_ff80);
    assert_eq!(widen(0x1_8000, 2, Extend::Sign), 0xffff_ffff_ffff_8000);
    assert_eq!(widen(0x1_8000, 2, Extend::Zero), 0x8000);
    assert_eq!(widen(u64::MAX, 8, Extend::Sign), u64::MAX);
    assert_eq!(Gpr::from_index(15), Some(Gpr::R15));
    assert_eq!(Gpr::from_index(16), None);
    assert_eq!(Gpr::Rdi.index(), 7);
}

#[test]
fn completing_reads_and_sourcing_writes() {
    let mut gprs = [0x1111_2222_3333_4444u64; 16];
    // movsx ax, byte [rdi]: sign-extends to 16 bits, keeps bits 63:16.
    let (_, a) = mmio(&[0x66, 0x0f, 0xbe, 0x07], M64);
    a.complete_read(&mut gprs, 0x80);
    assert_eq!(gprs[0], 0x1111_2222_3333_ff80);
    // mov ecx, [rdi]: zeroes bits 63:32; device bits above the access size are dropped.
    let (_, a) = mmio(&[0x8b, 0x0f], M64);
    a.complete_read(&mut gprs, 0xdead_beef_8765_4321);
    assert_eq!(gprs[1], 0x8765_4321);
    // movzx r8, word [rdi] (REX.W + REX.R).
    let (_, a) = mmio(&[0x4c, 0x0f, 0xb7, 0x07], M64);
    a.complete_read(&mut gprs, 0xffff_abcd);
    assert_eq!(gprs[8], 0xabcd);
    // mov [rdi], ah writes bits 15:8 of RAX.
    gprs[0] = 0x1234;
    assert_eq!(mmio(&[0x88, 0x27], M64).1.write_data(&gprs), Some(0x12));
    assert_eq!(
        mmio(&[0x48, 0x89, 0x07], M64).1.write_data(&gprs),
        Some(0x1234)
    );
    // A read leaves the registers alone when asked for write data, and vice versa.
    let before = gprs;
    let (_, w) = mmio(&[0x89, 0x07], M64);
    w.complete_read(&mut gprs, 5);
    assert_eq!(gprs, before);
    assert_eq!(a.write_data(&gprs), None);
}
