//! Busy-wait delays on the TSC, calibrated from CPUID when it tells the frequency, and the TSC
//! rate for guests that measure time (CPUID, else the PIT).

use crate::cpu::{rdtsc, tsc_hz, TscSource};

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

static PIT_MEASURED_HZ: spin::Once<Option<u64>> = spin::Once::new();
/// How long the PIT measurement runs.
const PIT_CALIBRATION_MS: u64 = 50;

/// The TSC rate in Hz and where it came from: a CPUID leaf when one tells it, else a
/// measurement against the PIT (taken once, then remembered); `None` when neither works.
pub fn tsc_rate() -> Option<(u64, &'static str)> {
    if let Some((hz, source)) = tsc_hz() {
        let name = match source {
            TscSource::Leaf15 => "cpuid 0x15",
            TscSource::Leaf16 => "cpuid 0x16",
            TscSource::Hypervisor => "cpuid 0x40000010",
        };
        return Some((hz, name));
    }
    let hz = *PIT_MEASURED_HZ.call_once(|| crate::pit::calibrate_tsc_hz(PIT_CALIBRATION_MS));
    hz.map(|hz| (hz, "measured against the PIT"))
}

/// Converts TSC ticks to microseconds at `hz`.
pub fn ticks_to_us(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(hz.max(1))) as u64
}

/// Converts microseconds to TSC ticks at `hz`.
pub fn us_to_ticks(us: u64, hz: u64) -> u64 {
    (u128::from(us) * u128::from(hz) / 1_000_000) as u64
}
