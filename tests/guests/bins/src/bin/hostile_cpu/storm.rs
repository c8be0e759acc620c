//! An exit storm: a fixed number of CPUIDs, then of port reads and writes, in tight loops. The
//! hypervisor must serve them all (and the heartbeat beside must keep its pace).

use guest_rt::cpu::{cpuid, inb, outb, rdtsc};
use guest_rt::{println, Checks};

use crate::ms_since;

/// An unassigned port (POST diagnostics): reads all-ones, writes dropped under Bulkhead.
const PORT_POST: u16 = 0x80;

/// Runs both storms of `count` exits each; returns the exits caused.
pub(crate) fn check(checks: &mut Checks, count: u64) -> u64 {
    let start = rdtsc();
    let mut bad = 0u64;
    let first = cpuid(0, 0);
    for _ in 0..count {
        if cpuid(0, 0) != first {
            bad += 1;
        }
    }
    let cpuid_ms = ms_since(start);
    println!("hostile-cpu: storm-cpuid: {count} exits in {cpuid_ms} ms");
    checks.expect(
        "storm-cpuid",
        bad == 0,
        format_args!("{bad} of {count} CPUID(0) answers differed from the first"),
    );
    let start = rdtsc();
    let mut not_ones = 0u64;
    for i in 0..count {
        // SAFETY: port 0x80 is unassigned under Bulkhead: writes go nowhere.
        let value = unsafe {
            outb(PORT_POST, i as u8);
            inb(PORT_POST)
        };
        if value != 0xFF {
            not_ones += 1;
        }
    }
    let io_ms = ms_since(start);
    println!("hostile-cpu: storm-io: {} exits in {io_ms} ms", 2 * count);
    checks.expect(
        "storm-io",
        not_ones == 0,
        format_args!("{not_ones} of {count} reads of port 0x80 were not all-ones"),
    );
    3 * count
}
