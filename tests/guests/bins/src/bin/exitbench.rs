//! `exitbench`: the round-trip cost of an exit. Times `n` CPUIDs (each exits to the hypervisor)
//! against `n` iterations of the same loop around an instruction that does not exit, and prints
//! both with the exit rate: `exitbench: cpuid N in T ticks ... = E exits/s`.
//!
//! Command line: `n=ITERATIONS` (default 20000).

#![no_std]
#![no_main]

use guest_rt::cpu::{cpuid, rdtsc, tsc_hz};
use guest_rt::{println, Checks, StartInfo};

guest_rt::guest!("exitbench", main);

fn main(info: &'static StartInfo) -> ! {
    let n = info
        .args()
        .get_u64("n")
        .ok()
        .flatten()
        .unwrap_or(20_000)
        .max(1);
    let hz = tsc_hz().map_or(1_000_000_000, |(hz, _)| hz);
    let mut sink = 0u32;
    let t0 = rdtsc();
    for i in 0..n {
        sink = sink.wrapping_add(cpuid(0, i as u32).eax);
    }
    let t1 = rdtsc();
    for i in 0..n {
        // A serialising-free stand-in of similar shape that never exits.
        sink = sink.wrapping_add(core::hint::black_box(i as u32));
    }
    let t2 = rdtsc();
    let exit_ticks = (t1 - t0).max(1);
    let base_ticks = (t2 - t1).max(1);
    let per_exit_ns = (exit_ticks - base_ticks.min(exit_ticks)) as u128 * 1_000_000_000
        / (u128::from(hz) * u128::from(n));
    let rate = u128::from(n) * u128::from(hz) / u128::from(exit_ticks);
    println!("exitbench: cpuid {n} in {exit_ticks} ticks, plain loop {n} in {base_ticks} ticks, TSC {hz} Hz");
    println!("exitbench: {rate} exits/s, {per_exit_ns} ns per exit round trip (sink {sink})");
    let mut checks = Checks::new("exitbench");
    checks.check(
        "measured",
        if exit_ticks > base_ticks {
            Ok(())
        } else {
            Err("CPUID was not slower than a plain loop")
        },
    );
    checks.finish()
}
