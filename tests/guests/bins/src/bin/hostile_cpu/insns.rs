//! Virtualization, enclave and platform-security instructions the `privileged` guest does not
//! already try (it covers VMRUN…SKINIT, VMXON…INVVPID, VMCALL, VMMCALL), and control-register
//! bits that would turn on VMX or SMX. Each runs with junk operands under `fault::catch`.

use core::arch::asm;

use guest_rt::cpu::{self, Vendor};
use guest_rt::fault::catch;
use guest_rt::idt::{GP, UD};
use guest_rt::{println, Checks};

const JUNK: u64 = 0xDEAD_BEEF_0BAD_F00D;
/// CR4.VMXE and CR4.SMXE (Intel SDM vol.3 §2.5): reserved without VMX/SMX in CPUID.
const CR4_VMXE: u64 = 1 << 13;
const CR4_SMXE: u64 = 1 << 14;

/// Which outcomes are correct for one instruction.
#[derive(Clone, Copy)]
enum Want {
    Ud,
    UdOrGp,
    /// Refused, or executed harmlessly (cache maintenance, an unknown hypercall).
    AnyOfUdGpOrReturn,
}

/// Runs the bytes with RAX pointing at a junk buffer and junk in RCX/RDX (enough for every
/// form here: memory operands use [rax]).
macro_rules! insn {
    ($($byte:literal),+) => {
        || {
            let mut buffer = [JUNK; 8];
            // SAFETY: the instruction is expected to fault (under `catch`); if it completes it
            // can only change the declared registers or the junk buffer.
            unsafe {
                asm!(
                    concat!(".byte ", $(stringify!($byte), ", ",)+ "0x90"),
                    inout("rax") buffer.as_mut_ptr() as u64 => _,
                    inout("rcx") JUNK => _,
                    inout("rdx") JUNK => _,
                    out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                    out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
            core::hint::black_box(&buffer);
        }
    };
}

/// Like `insn!` with ECX = EDX = 0: valid extensions and hints, so only the missing feature
/// (or the intercept) can refuse the instruction.
macro_rules! clean_insn {
    ($($byte:literal),+) => {
        || {
            let mut buffer = [0u64; 8];
            // SAFETY: as in `insn!`.
            unsafe {
                asm!(
                    concat!(".byte ", $(stringify!($byte), ", ",)+ "0x90"),
                    inout("rax") buffer.as_mut_ptr() as u64 => _,
                    inout("rcx") 0u64 => _,
                    inout("rdx") 0u64 => _,
                    out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                    out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
            core::hint::black_box(&buffer);
        }
    };
}

/// MWAITX with valid operands and its timer on (ECX bit 1, EBX = TSC ticks; AMD APM vol.3),
/// so that if a hypervisor let it run it would still come back.
fn mwaitx_with_timer() {
    // SAFETY: as in `insn!`; RBX is reserved by the compiler, so it is saved around its use.
    unsafe {
        asm!(
            "push rbx",
            "mov ebx, {ticks}",
            ".byte 0x0f, 0x01, 0xfb",
            "pop rbx",
            ticks = const MWAITX_TICKS,
            inout("eax") 0u32 => _,
            inout("ecx") MWAITX_TIMER => _,
        );
    }
}

const MWAITX_TIMER: u32 = 1 << 1;
const MWAITX_TICKS: u32 = 100_000;

fn judge(checks: &mut Checks, name: &str, want: Want, insn: impl FnOnce()) {
    match (want, catch(insn)) {
        (Want::Ud, Err(f)) if f.vector == UD => checks.pass(name),
        (Want::UdOrGp | Want::AnyOfUdGpOrReturn, Err(f)) if f.vector == UD || f.vector == GP => {
            checks.pass(name)
        }
        (Want::AnyOfUdGpOrReturn, Ok(())) => {
            println!("hostile-cpu: {name} returned");
            checks.pass(name)
        }
        (_, Ok(())) => checks.fail(name, "completed instead of faulting"),
        (_, Err(f)) => checks.fail(name, format_args!("raised {f}")),
    }
}

fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Sets `bit` in CR4: must raise #GP (a reserved bit for this guest's CPUID), and CR4 must
/// read as before either way.
fn cr4_bit(checks: &mut Checks, name: &str, bit: u64) {
    let before = read_cr4();
    let write = catch(|| {
        // SAFETY: the bit is one this guest must not be able to set; if the write is accepted
        // the check fails and CR4 is put back below.
        unsafe { asm!("mov cr4, {}", in(reg) before | bit, options(nostack)) };
    });
    let after = read_cr4();
    if after != before {
        // SAFETY: the value the guest has been running with.
        unsafe { asm!("mov cr4, {}", in(reg) before, options(nostack)) };
    }
    match write {
        Err(f) if f.vector == GP && after == before => checks.pass(name),
        Err(f) => checks.fail(
            name,
            format_args!("raised {f}, CR4 {before:#x} -> {after:#x}"),
        ),
        Ok(()) => checks.fail(
            name,
            format_args!("accepted; CR4 {before:#x} -> {after:#x} (restored)"),
        ),
    }
}

/// Runs every instruction case; returns how many attempts were made.
pub(crate) fn check(checks: &mut Checks) -> u64 {
    let cases: [(&str, Want, fn()); 26] = [
        // Intel SDM vol.2: VMFUNC 0F 01 D4, GETSEC 0F 37, ENCLS 0F 01 CF, ENCLU 0F 01 D7,
        // ENCLV 0F 01 C0; none is offered, so #UD.
        ("insn-vmfunc-ud", Want::Ud, insn!(0x0f, 0x01, 0xd4)),
        ("insn-getsec-ud", Want::Ud, insn!(0x0f, 0x37)),
        ("insn-encls-ud", Want::Ud, insn!(0x0f, 0x01, 0xcf)),
        ("insn-enclu-ud", Want::Ud, insn!(0x0f, 0x01, 0xd7)),
        ("insn-enclv-ud", Want::Ud, insn!(0x0f, 0x01, 0xc0)),
        // AMD APM vol.3: SEV-SNP's PVALIDATE F2 0F 01 FF, RMPADJUST F3 0F 01 FE, RMPUPDATE
        // F2 0F 01 FE, PSMASH F3 0F 01 FF; INVLPGB 0F 01 FE, TLBSYNC 0F 01 FF.
        ("insn-pvalidate-ud", Want::Ud, insn!(0xf2, 0x0f, 0x01, 0xff)),
        ("insn-rmpadjust-ud", Want::Ud, insn!(0xf3, 0x0f, 0x01, 0xfe)),
        ("insn-rmpupdate-ud", Want::Ud, insn!(0xf2, 0x0f, 0x01, 0xfe)),
        ("insn-psmash-ud", Want::Ud, insn!(0xf3, 0x0f, 0x01, 0xff)),
        ("insn-invlpgb", Want::UdOrGp, insn!(0x0f, 0x01, 0xfe)),
        ("insn-tlbsync", Want::UdOrGp, insn!(0x0f, 0x01, 0xff)),
        // VMGEXIT (F3 0F 01 D9) is VMMCALL outside SEV-ES: refused or an unknown hypercall.
        (
            "insn-vmgexit",
            Want::AnyOfUdGpOrReturn,
            insn!(0xf3, 0x0f, 0x01, 0xd9),
        ),
        // MONITOR/MWAIT (0F 01 C8/C9) and MONITORX/MWAITX (0F 01 FA/FB) are hidden in CPUID.
        // With junk in ECX the operand check (#GP) may come before the intercept.
        ("insn-monitor-junk", Want::UdOrGp, insn!(0x0f, 0x01, 0xc8)),
        ("insn-mwait-junk", Want::UdOrGp, insn!(0x0f, 0x01, 0xc9)),
        ("insn-monitor-ud", Want::Ud, clean_insn!(0x0f, 0x01, 0xc8)),
        ("insn-mwait-ud", Want::Ud, clean_insn!(0x0f, 0x01, 0xc9)),
        ("insn-monitorx-junk", Want::UdOrGp, insn!(0x0f, 0x01, 0xfa)),
        ("insn-mwaitx-junk", Want::UdOrGp, insn!(0x0f, 0x01, 0xfb)),
        ("insn-monitorx-ud", Want::Ud, clean_insn!(0x0f, 0x01, 0xfa)),
        ("insn-mwaitx-ud", Want::Ud, mwaitx_with_timer),
        // RSM (0F AA) outside SMM, PCONFIG (0F 01 C5), SEAMCALL (66 0F 01 CF), TDCALL
        // (66 0F 01 CC): #UD.
        ("insn-rsm-ud", Want::Ud, insn!(0x0f, 0xaa)),
        ("insn-pconfig-ud", Want::Ud, insn!(0x0f, 0x01, 0xc5)),
        ("insn-seamcall-ud", Want::Ud, insn!(0x66, 0x0f, 0x01, 0xcf)),
        ("insn-tdcall-ud", Want::Ud, insn!(0x66, 0x0f, 0x01, 0xcc)),
        // XSETBV (0F 01 D1) of junk into a junk XCR; INVD (0F 08) may be emulated as WBINVD.
        ("insn-xsetbv-junk", Want::UdOrGp, insn!(0x0f, 0x01, 0xd1)),
        ("insn-invd", Want::AnyOfUdGpOrReturn, insn!(0x0f, 0x08)),
    ];
    let n = cases.len() as u64;
    for (name, want, f) in cases {
        judge(checks, name, want, f);
    }
    if cpu::vendor_kind() == Vendor::Intel {
        cr4_bit(checks, "cr4-vmxe", CR4_VMXE);
        cr4_bit(checks, "cr4-smxe", CR4_SMXE);
        n + 2
    } else {
        // AMD hardware raises #GP for these reserved bits without an exit, but QEMU's SVM
        // model (7.2, TCG) ends the guest with VMEXIT_INVALID instead, which stops it: only
        // VMX, where Bulkhead owns CR4 through its guest/host mask, is tried.
        println!("hostile-cpu: cr4-vmxe, cr4-smxe: VMX only");
        n
    }
}
