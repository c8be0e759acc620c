//! Busy-wait delays on the TSC, calibrated from CPUID when it tells the frequency.

use crate::cpu::{rdtsc, tsc_hz};

/// TSC rate assumed for short delays when no CPUID leaf gives one. Short delays only need to
/// be "long enough", and real or emulated TSCs run at a few GHz.
const FALLBACK_TSC_HZ: u64 = 3_000_000_000;
/// Upper bound on spin iterations per millisecond, so a TSC that does not advance (a broken
/// or frozen virtual TSC) cannot hang the guest: one PAUSE takes far more than 1 ns.
const MAX_SPINS_PER_MS: u64 = 1_000_000;

/// Spins for about `ms` milliseconds (by the TSC; assumes 3 GHz when its rate is unknown).
pub fn spin_ms(ms: u64) {
    let hz = tsc_hz().map_or(FALLBACK_TSC_HZ, |(hz, _)| hz);
    let ticks = hz / 1000 * ms;
    let start = rdtsc();
    let mut spins: u64 = 0;
    let max_spins = ms.saturating_mul(MAX_SPINS_PER_MS);
    while rdtsc().wrapping_sub(start) < ticks && spins < max_spins {
        core::hint::spin_loop();
        spins += 1;
    }
}
