//! `privileged`: tries what a guest must not be able to do and checks the hypervisor refuses it
//! the way hardware without virtualization extensions would: no SVM/VMX in CPUID, #UD for the
//! SVM and VMX instructions, #GP for virtualization MSRs and for EFER.SVME, all-ones from PCI
//! configuration space, and reset ports, INIT and SIPI that change nothing.
//!
//! Command line: `expect=bulkhead|bare` (default: bulkhead when leaf 0x4000_0000 says so).
//! Bare mode (plain QEMU or hardware) keeps the checks that hold everywhere and prints the rest
//! as `privileged: ...` information. `resets=on|off` (default: on under bulkhead, off bare,
//! where QEMU would really reset).

#![no_std]
#![no_main]

mod insns;
mod msrs;
mod platform;

use guest_rt::cpu::{self, cpuid};
use guest_rt::{exit, println, Checks, StartInfo};

guest_rt::guest!("privileged", main);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Bulkhead,
    Bare,
}

fn check_cpuid(checks: &mut Checks, mode: Mode) {
    let leaf1 = cpuid(1, 0);
    let ext1 = if cpu::max_extended_leaf() >= 0x8000_0001 {
        cpuid(0x8000_0001, 0)
    } else {
        cpu::Cpuid {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        }
    };
    let is_hv = leaf1.ecx & cpu::LEAF1_ECX_HYPERVISOR != 0;
    let has_vmx = leaf1.ecx & cpu::LEAF1_ECX_VMX != 0;
    let has_svm = ext1.ecx & cpu::EXT1_ECX_SVM != 0;
    let hv = cpu::hypervisor_leaf();
    let signature = hv.map(|(_, sig)| sig).unwrap_or([0; 12]);
    let printable = core::str::from_utf8(&signature)
        .unwrap_or("?")
        .trim_end_matches('\0');
    println!(
        "privileged: cpuid hypervisor={is_hv} vmx={has_vmx} svm={has_svm} signature={printable:?} max-hv-leaf={:#x}",
        hv.map_or(0, |(max, _)| max)
    );
    match mode {
        Mode::Bulkhead => {
            checks.expect("cpuid-hypervisor-bit", is_hv, "leaf 1 ECX bit 31 is clear");
            checks.expect("cpuid-no-vmx", !has_vmx, "leaf 1 ECX bit 5 (VMX) is set");
            checks.expect(
                "cpuid-no-svm",
                !has_svm,
                "leaf 0x80000001 ECX bit 2 (SVM) is set",
            );
            checks.expect(
                "cpuid-signature",
                signature == cpu::BULKHEAD_SIGNATURE
                    && hv.is_some_and(|(max, _)| max >= cpu::HV_LEAF_BASE),
                format_args!(
                    "leaf 0x40000000 says {printable:?}, expected \"Bulkhead\" (NUL-padded)"
                ),
            );
        }
        Mode::Bare => {
            checks.expect(
                "cpuid-signature",
                signature != cpu::BULKHEAD_SIGNATURE,
                "expect=bare but leaf 0x40000000 says Bulkhead",
            );
        }
    }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let (mode, how) = match args.get("expect") {
        Some("bulkhead") => (Mode::Bulkhead, "from the command line"),
        Some("bare") => (Mode::Bare, "from the command line"),
        None if cpu::is_bulkhead() => (Mode::Bulkhead, "detected from CPUID"),
        None => (Mode::Bare, "detected from CPUID"),
        Some(other) => {
            println!("FAIL privileged: command line expect={other:?}: expected bulkhead or bare");
            exit(1)
        }
    };
    let resets = match args.get("resets") {
        Some("on") => true,
        Some("off") => false,
        None => mode == Mode::Bulkhead,
        Some(other) => {
            println!("FAIL privileged: command line resets={other:?}: expected on or off");
            exit(1)
        }
    };
    let vendor = cpu::vendor();
    println!(
        "privileged: mode {} ({how}), vendor {}, resets {}",
        if mode == Mode::Bulkhead {
            "bulkhead"
        } else {
            "bare"
        },
        core::str::from_utf8(&vendor).unwrap_or("?"),
        if resets { "on" } else { "off" },
    );
    let mut checks = Checks::new("privileged");
    check_cpuid(&mut checks, mode);
    insns::check_instructions(&mut checks, mode);
    msrs::check_msrs(&mut checks, mode);
    msrs::check_efer(&mut checks, mode);
    platform::check_pci(&mut checks, mode);
    platform::check_init_sipi(&mut checks);
    if resets {
        platform::check_resets(&mut checks);
    } else {
        println!("privileged: reset ports skipped (resets=off)");
    }
    checks.finish()
}
