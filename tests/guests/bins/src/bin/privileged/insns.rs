//! The SVM and VMX instructions, run with junk operands: each must raise #UD in a guest.

use core::arch::asm;

use guest_rt::fault::{catch, expect_fault};
use guest_rt::idt::{GP, UD};
use guest_rt::{println, Checks};

use crate::Mode;

/// Operand values for the instructions under test: misaligned, non-canonical, meaningless.
const JUNK_RAX: u64 = 0xDEAD_BEEF_0BAD_F00D;
const JUNK_OTHER: u64 = 0x0123_4567_89AB_CDEF;

/// Runs one instruction given as bytes with junk in the argument registers and a junk memory
/// operand at [rax] for those that take one (VMXON, VMCLEAR, VMPTRLD, INVEPT, INVVPID).
macro_rules! junk_insn {
    ($($byte:literal),+) => {
        || {
            let mut junk_region = [JUNK_OTHER; 2];
            // SAFETY: the instruction is expected to fault (the closure runs under `catch`); if
            // a hypervisor lets it complete, it can only change the registers declared clobbered
            // or the junk region, and every caller reports that as a failure.
            unsafe {
                asm!(
                    concat!(".byte ", $(stringify!($byte), ", ",)+ "0x90"),
                    inout("rax") junk_region.as_mut_ptr() as u64 => _,
                    inout("rcx") JUNK_OTHER => _,
                    inout("rdx") JUNK_RAX => _,
                    out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                    out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
            core::hint::black_box(&junk_region);
        }
    };
}

/// Like `junk_insn!` but with a junk value (not a pointer) in RAX.
macro_rules! junk_rax_insn {
    ($($byte:literal),+) => {
        || {
            // SAFETY: as in junk_insn!; no memory operand is involved.
            unsafe {
                asm!(
                    concat!(".byte ", $(stringify!($byte), ", ",)+ "0x90"),
                    inout("rax") JUNK_RAX => _,
                    inout("rcx") JUNK_OTHER => _,
                    inout("rdx") JUNK_OTHER => _,
                    out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                    out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
        }
    };
}

/// A page of the guest's own RAM, so that VMRUN/VMLOAD/VMSAVE pass their operand check (a
/// page-aligned physical address, AMD APM vol.3) and only the intercept can stop them.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static OPERAND_PAGE: Page = Page([0; 4096]);

/// Like `junk_rax_insn!` but with RAX pointing at [`OPERAND_PAGE`] (identity-mapped).
macro_rules! page_rax_insn {
    ($($byte:literal),+) => {
        || {
            // SAFETY: as in junk_insn!; the instruction must be intercepted, and if it is not it
            // reads or writes only the operand page.
            unsafe {
                asm!(
                    concat!(".byte ", $(stringify!($byte), ", ",)+ "0x90"),
                    inout("rax") &OPERAND_PAGE as *const Page as u64 => _,
                    inout("rcx") JUNK_OTHER => _,
                    inout("rdx") JUNK_OTHER => _,
                    out("rsi") _, out("rdi") _, out("r8") _, out("r9") _,
                    out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
        }
    };
}

/// With a junk RAX the hardware's operand check (#GP) comes before the intercept (AMD APM
/// vol.2 §15.9 gives exceptions from operand checks priority), so either fault is correct.
fn expect_ud_or_gp(checks: &mut Checks, name: &str, insn: impl FnOnce()) {
    match catch(insn) {
        Err(fault) if fault.vector == UD || fault.vector == GP => checks.pass(name),
        Err(fault) => checks.fail(name, format_args!("expected #UD or #GP, got {fault}")),
        Ok(()) => checks.fail(name, format_args!("completed instead of faulting")),
    }
}

fn expect_ud(checks: &mut Checks, name: &str, insn: impl FnOnce()) {
    checks.check(name, expect_fault(UD, insn).map(|_| ()));
}

/// A hypercall with junk arguments may be refused (#UD) or answered; either way the guest
/// goes on. Any other exception is a failure.
fn expect_ud_or_return(checks: &mut Checks, name: &str, insn: impl FnOnce()) {
    match catch(insn) {
        Ok(()) => {
            println!("privileged: {name} returned");
            checks.pass(name);
        }
        Err(fault) if fault.vector == UD => checks.pass(name),
        Err(fault) => checks.fail(name, format_args!("expected #UD or a return, got {fault}")),
    }
}

pub(crate) fn check_instructions(checks: &mut Checks, mode: Mode) {
    // SVM (AMD APM vol.3, opcodes 0F 01 D8..DF). A guest's EFER.SVME is set in hardware while it
    // runs, so only intercepts stand between these and the real thing.
    expect_ud(checks, "vmrun-ud", page_rax_insn!(0x0f, 0x01, 0xd8));
    expect_ud(checks, "vmload-ud", page_rax_insn!(0x0f, 0x01, 0xda));
    expect_ud(checks, "vmsave-ud", page_rax_insn!(0x0f, 0x01, 0xdb));
    expect_ud_or_gp(checks, "vmrun-junk", junk_rax_insn!(0x0f, 0x01, 0xd8));
    expect_ud_or_gp(checks, "vmload-junk", junk_rax_insn!(0x0f, 0x01, 0xda));
    expect_ud_or_gp(checks, "vmsave-junk", junk_rax_insn!(0x0f, 0x01, 0xdb));
    expect_ud(checks, "clgi-ud", junk_rax_insn!(0x0f, 0x01, 0xdd));
    expect_ud(checks, "invlpga-ud", junk_rax_insn!(0x0f, 0x01, 0xdf));
    if mode == Mode::Bulkhead {
        // Without SVM these are #UD only when CPUID lacks SKINIT, so bare mode leaves them out.
        expect_ud(checks, "stgi-ud", junk_rax_insn!(0x0f, 0x01, 0xdc));
        expect_ud(checks, "skinit-ud", junk_rax_insn!(0x0f, 0x01, 0xde));
    }
    expect_ud_or_return(checks, "vmmcall", junk_rax_insn!(0x0f, 0x01, 0xd9));
    // VMX (Intel SDM vol.3 §25.1.3: every VMX instruction exits in VMX non-root operation).
    expect_ud(checks, "vmxon-ud", junk_insn!(0xf3, 0x0f, 0xc7, 0x30));
    expect_ud(checks, "vmclear-ud", junk_insn!(0x66, 0x0f, 0xc7, 0x30));
    expect_ud(checks, "vmptrld-ud", junk_insn!(0x0f, 0xc7, 0x30));
    expect_ud(checks, "vmread-ud", junk_insn!(0x0f, 0x78, 0xc8));
    expect_ud(checks, "vmwrite-ud", junk_insn!(0x0f, 0x79, 0xc8));
    expect_ud(checks, "vmlaunch-ud", junk_insn!(0x0f, 0x01, 0xc2));
    expect_ud(checks, "vmresume-ud", junk_insn!(0x0f, 0x01, 0xc3));
    expect_ud(checks, "vmxoff-ud", junk_insn!(0x0f, 0x01, 0xc4));
    expect_ud(
        checks,
        "invept-ud",
        junk_insn!(0x66, 0x0f, 0x38, 0x80, 0x08),
    );
    expect_ud(
        checks,
        "invvpid-ud",
        junk_insn!(0x66, 0x0f, 0x38, 0x81, 0x08),
    );
    expect_ud_or_return(checks, "vmcall", junk_rax_insn!(0x0f, 0x01, 0xc1));
}
