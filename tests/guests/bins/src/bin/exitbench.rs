//! `exitbench`: the round-trip cost of an exit. Times `n` CPUIDs (each exits to the hypervisor)
//! against `n` iterations of the same loop around LFENCE, which orders like CPUID does but never
//! exits, and prints both with the exit rate:
//! `exitbench: cpuid N in T ticks, lfence loop N in B ticks, TSC H Hz` (`cargo xtask bench`
//! reads that line: the ratio T/B is the cost of an exit in units of a non-exiting iteration).
//!
//! As a noisy neighbour (`hammer_ms=MS`) it instead spends MS milliseconds exiting as fast as it
//! can, alternating CPUID with a read of an unassigned port (an I/O exit), and with `quiet`
//! spends them in the LFENCE loop (busy, no exits): the control for the noisy-neighbour bench.
//!
//! Command line: `n=ITERATIONS` (default 20000), `hammer_ms=MS`, `quiet`.

#![no_std]
#![no_main]

use core::arch::asm;

use guest_rt::cpu::{cpuid, inb, rdtsc, tsc_hz};
use guest_rt::{println, Checks, StartInfo};

guest_rt::guest!("exitbench", main);

/// A port no emulator or hypervisor device claims: reads exit and return all-ones.
const UNASSIGNED_PORT: u16 = 0x2E0;
/// Iterations between looks at the clock while hammering.
const HAMMER_BATCH: u64 = 256;

/// One iteration of the non-exiting loop: LFENCE waits for earlier instructions like CPUID's
/// serialisation does, without an intercept (neither SVM nor VMX can intercept it).
fn lfence() {
    // SAFETY: LFENCE only orders loads; it touches no memory or registers.
    unsafe { asm!("lfence", options(nostack, preserves_flags)) };
}

/// An I/O exit.
fn port_read() -> u8 {
    // SAFETY: the port is unassigned: the read has no side effect anywhere.
    unsafe { inb(UNASSIGNED_PORT) }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let hz = tsc_hz().map_or(1_000_000_000, |(hz, _)| hz);
    if let Ok(Some(ms)) = args.get_u64("hammer_ms") {
        hammer(ms, hz, args.has("quiet"));
    }
    let n = args.get_u64("n").ok().flatten().unwrap_or(20_000).max(1);
    let mut sink = 0u32;
    let t0 = rdtsc();
    for i in 0..n {
        sink = sink.wrapping_add(cpuid(0, i as u32).eax);
    }
    let t1 = rdtsc();
    for i in 0..n {
        lfence();
        sink = sink.wrapping_add(core::hint::black_box(i as u32));
    }
    let t2 = rdtsc();
    let exit_ticks = (t1 - t0).max(1);
    let base_ticks = (t2 - t1).max(1);
    let per_exit_ns = (exit_ticks - base_ticks.min(exit_ticks)) as u128 * 1_000_000_000
        / (u128::from(hz) * u128::from(n));
    let rate = u128::from(n) * u128::from(hz) / u128::from(exit_ticks);
    println!(
        "exitbench: cpuid {n} in {exit_ticks} ticks, lfence loop {n} in {base_ticks} ticks, TSC {hz} Hz"
    );
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

/// Keeps this CPU busy for `ms` milliseconds, exiting as often as it can unless `is_quiet`.
fn hammer(ms: u64, hz: u64, is_quiet: bool) -> ! {
    let ticks = hz / 1000 * ms;
    let start = rdtsc();
    let mut iterations = 0u64;
    let mut sink = 0u32;
    while rdtsc().wrapping_sub(start) < ticks {
        for i in 0..HAMMER_BATCH {
            if is_quiet {
                lfence();
            } else if i % 2 == 0 {
                sink = sink.wrapping_add(cpuid(0, i as u32).eax);
            } else {
                sink = sink.wrapping_add(u32::from(port_read()));
            }
        }
        iterations += HAMMER_BATCH;
    }
    let what = if is_quiet { "lfence" } else { "exit" };
    println!("exitbench: hammer {what} {iterations} iterations in {ms} ms (sink {sink})");
    Checks::new("exitbench").finish()
}
