//! Virtualization MSRs and EFER.SVME: a guest may not read or set them (or, for the
//! feature-control registers, may only see virtualization locked off).

use guest_rt::cpu::{rdmsr, wrmsr};
use guest_rt::fault::{catch, Fault};
use guest_rt::idt::GP;
use guest_rt::{println, Checks};

use crate::Mode;

const MSR_FEATURE_CONTROL: u32 = 0x3A;
const MSR_VMX_BASIC: u32 = 0x480;
const MSR_EFER: u32 = 0xC000_0080;
const MSR_VM_CR: u32 = 0xC001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// EFER.SVME (AMD APM vol.2 §3.1.7).
const EFER_SVME: u64 = 1 << 12;
/// IA32_FEATURE_CONTROL: lock, VMX inside SMX, VMX outside SMX (Intel SDM vol.3 §24.7).
const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX: u64 = (1 << 1) | (1 << 2);
/// VM_CR.SVMDIS (AMD APM vol.2 §15.30.1).
const VM_CR_SVMDIS: u64 = 1 << 4;

pub(crate) fn try_rdmsr(msr: u32) -> Result<u64, Fault> {
    // SAFETY: a missing MSR raises #GP, which `catch` turns into an Err.
    catch(|| unsafe { rdmsr(msr) })
}

fn try_wrmsr(msr: u32, value: u64) -> Result<(), Fault> {
    // SAFETY: the MSRs written here are virtualization controls a guest must not own; if the
    // write is accepted the caller reports it. A #GP becomes an Err.
    catch(|| unsafe { wrmsr(msr, value) })
}

/// The outcome of an access: a value read, a write accepted, or an exception.
pub(crate) struct Outcome(Result<Option<u64>, Fault>);

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(Some(value)) => write!(f, "returned {value:#x}"),
            Ok(None) => write!(f, "was accepted"),
            Err(fault) => write!(f, "raised {fault}"),
        }
    }
}

pub(crate) fn describe(read: Result<u64, Fault>) -> Outcome {
    Outcome(read.map(Some))
}

fn describe_write(write: Result<(), Fault>) -> Outcome {
    Outcome(write.map(|()| None))
}

fn expect_gp(checks: &mut Checks, mode: Mode, name: &str, outcome: Outcome) {
    match mode {
        Mode::Bulkhead => match outcome.0 {
            Err(fault) if fault.vector == GP => checks.pass(name),
            _ => checks.fail(name, format_args!("expected #GP, {outcome}")),
        },
        Mode::Bare => println!("privileged: {name}: {outcome}"),
    }
}

pub(crate) fn check_msrs(checks: &mut Checks, mode: Mode) {
    let guarded = [
        (
            "msr-vm-hsave-pa-read",
            "msr-vm-hsave-pa-write",
            MSR_VM_HSAVE_PA,
        ),
        ("msr-vmx-basic-read", "msr-vmx-basic-write", MSR_VMX_BASIC),
    ];
    for (read_name, write_name, msr) in guarded {
        expect_gp(checks, mode, read_name, describe(try_rdmsr(msr)));
        expect_gp(
            checks,
            mode,
            write_name,
            describe_write(try_wrmsr(msr, 0x1000)),
        );
    }
    expect_gp(
        checks,
        mode,
        "msr-vm-cr-write",
        describe_write(try_wrmsr(MSR_VM_CR, 0)),
    );

    // Reading these may be allowed if the answer says "virtualization is off and locked".
    let feature_control = try_rdmsr(MSR_FEATURE_CONTROL);
    let vm_cr = try_rdmsr(MSR_VM_CR);
    match mode {
        Mode::Bulkhead => {
            let ok = match feature_control {
                Err(fault) => fault.vector == GP,
                Ok(v) => v & FEATURE_CONTROL_LOCK != 0 && v & FEATURE_CONTROL_VMX == 0,
            };
            checks.expect(
                "msr-feature-control-read",
                ok,
                format_args!(
                    "expected #GP or locked with VMX off, {}",
                    describe(feature_control)
                ),
            );
            let ok = match vm_cr {
                Err(fault) => fault.vector == GP,
                Ok(v) => v & VM_CR_SVMDIS != 0,
            };
            checks.expect(
                "msr-vm-cr-read",
                ok,
                format_args!("expected #GP or SVMDIS set, {}", describe(vm_cr)),
            );
        }
        Mode::Bare => {
            println!(
                "privileged: msr-feature-control-read: {}",
                describe(feature_control)
            );
            println!("privileged: msr-vm-cr-read: {}", describe(vm_cr));
        }
    }
    let write = try_wrmsr(
        MSR_FEATURE_CONTROL,
        FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX,
    );
    let after = try_rdmsr(MSR_FEATURE_CONTROL);
    match (mode, write) {
        (Mode::Bulkhead, Err(fault)) if fault.vector == GP => {
            checks.pass("msr-feature-control-write")
        }
        (Mode::Bulkhead, other) => checks.fail(
            "msr-feature-control-write",
            format_args!(
                "expected #GP, {} (now reads {})",
                describe_write(other),
                describe(after)
            ),
        ),
        (Mode::Bare, other) => println!(
            "privileged: msr-feature-control-write: {} (now reads {})",
            describe_write(other),
            describe(after)
        ),
    }
}

pub(crate) fn check_efer(checks: &mut Checks, mode: Mode) {
    // SAFETY: EFER exists on every long-mode CPU.
    let efer = unsafe { rdmsr(MSR_EFER) };
    let write = try_wrmsr(MSR_EFER, efer | EFER_SVME);
    // SAFETY: as above.
    let after = unsafe { rdmsr(MSR_EFER) };
    if after != efer {
        // SAFETY: puts back the value this guest has been running with.
        unsafe { wrmsr(MSR_EFER, efer) };
    }
    let stuck = after & EFER_SVME != 0;
    match (mode, write) {
        (Mode::Bulkhead, Err(fault)) if fault.vector == GP && !stuck => checks.pass("efer-svme"),
        (Mode::Bulkhead, Ok(())) if !stuck => {
            println!("privileged: efer-svme: write accepted but SVME reads back clear");
            checks.pass("efer-svme")
        }
        (Mode::Bulkhead, other) => checks.fail(
            "efer-svme",
            format_args!(
                "expected #GP, {}; EFER now {after:#x}",
                describe_write(other)
            ),
        ),
        (Mode::Bare, other) => println!(
            "privileged: efer-svme: {}; EFER read back {after:#x} (restored)",
            describe_write(other)
        ),
    }
}
