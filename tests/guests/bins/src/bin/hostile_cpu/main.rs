//! `hostile-cpu`: a guest that tries every CPU-level way out of its partition and checks that
//! each is refused the way hardware without virtualization extensions refuses it, without the
//! hypervisor (or the heartbeat guest beside it) noticing:
//! - `cpuid-*`: every leaf of the basic, hypervisor and extended ranges (subleaves 0..3),
//!   asked twice; SVM, VMX and SMX hidden, Bulkhead's signature, nothing past its leaves;
//! - `insn-*`: virtualization and security instructions the `privileged` guest does not
//!   already try (VMFUNC, GETSEC, ENCLS/ENCLU/ENCLV, SNP's RMP instructions, INVLPGB,
//!   MONITOR/MWAIT, …) plus CR4.VMXE/SMXE and XSETBV with junk;
//! - `msr-sweep-*`: every MSR index of the architectural ranges read, and written back with
//!   what it read (or 0 when it faulted); only #GP may come back, and a value written back
//!   must read back unchanged;
//! - `msr-hostile-*`: EFER.SVME and reserved bits, VM_HSAVE_PA at hypervisor-looking
//!   addresses, VM_CR, FEATURE_CONTROL, APIC_BASE moved over the guest's own RAM and far
//!   beyond it, all-ones into the AMD model-specific range, non-canonical bases;
//! - `ipi-*`: INIT, SIPI, NMI, SMI, fixed and lowest-priority IPIs at APIC IDs this guest does
//!   not own, by physical and logical destination and broadcast, through the xAPIC page and the
//!   x2APIC ICR; nothing may come back to this guest;
//! - `storm-*`: a fixed number of CPUID and port-I/O exits in a tight loop.
//!
//! Prints `PASS hostile-cpu/<case>` / `FAIL hostile-cpu/<case>: why`, then
//! `HOSTILE SUMMARY hostile-cpu cases=N iterations=M failed=F ms=T` and the verdict.
//!
//! Command line: `storm=N` (exits per storm loop, default 20000), `skip=msr` to leave the MSR
//! sweep out (for quick runs).

#![no_std]
#![no_main]

mod cpuid;
mod insns;
mod ipis;
mod msrs;
mod storm;

use guest_rt::cpu::{self, rdtsc};
use guest_rt::setup::{fail_setup, number};
use guest_rt::{println, Checks, StartInfo};

guest_rt::guest!("hostile-cpu", main);

const DEFAULT_STORM: u64 = 20_000;

/// Milliseconds since `start` by the TSC (0 when its rate is unknown).
pub(crate) fn ms_since(start: u64) -> u64 {
    cpu::tsc_hz().map_or(0, |(hz, _)| {
        rdtsc().wrapping_sub(start) / (hz / 1000).max(1)
    })
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    if !cpu::is_bulkhead() {
        // Every check here states what Bulkhead does; on other hypervisors it means nothing.
        fail_setup("not running under Bulkhead (CPUID 0x40000000)");
    }
    let storm = number(&args, "storm", DEFAULT_STORM);
    let skip_msr = args.values("skip").any(|v| v == "msr");
    let start = rdtsc();
    let mut checks = Checks::new("hostile-cpu");
    let mut iterations = 0u64;
    iterations += cpuid::check(&mut checks);
    iterations += insns::check(&mut checks);
    if skip_msr {
        println!("hostile-cpu: MSR sweep skipped (skip=msr)");
    } else {
        iterations += msrs::sweep(&mut checks);
    }
    iterations += msrs::hostile(&mut checks);
    iterations += ipis::check(&mut checks);
    iterations += storm::check(&mut checks, storm);
    checks.hostile_summary(iterations, ms_since(start));
    checks.finish()
}
