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

static MEASURED: spin::Once<Option<(u64, &'static str)>> = spin::Once::new();
/// How long a measurement runs, and how many are taken.
const CALIBRATION_MS: u64 = 50;
const CALIBRATION_RUNS: u32 = 3;
/// QEMU (TCG and KVM) clock the local APIC timer at 1 GHz without saying so in CPUID.
pub const QEMU_APIC_TIMER_HZ: u64 = 1_000_000_000;
/// [`tsc_rate`]'s source name when the rate was measured against the APIC timer.
pub const SOURCE_APIC_TIMER: &str = "measured against the APIC timer";

/// The TSC rate in Hz and where it came from: a CPUID leaf when one tells it, else a
/// measurement against the PIT, else against the local APIC timer (at the rate CPUID gives,
/// or QEMU's 1 GHz). A measurement is taken once, then remembered. `None` when nothing works.
pub fn tsc_rate() -> Option<(u64, &'static str)> {
    if let Some((hz, source)) = tsc_hz() {
        let name = match source {
            TscSource::Leaf15 => "cpuid 0x15",
            TscSource::Leaf16 => "cpuid 0x16",
            TscSource::Hypervisor => "cpuid 0x40000010",
        };
        return Some((hz, name));
    }
    *MEASURED.call_once(|| {
        // A measurement can only come out high (the end is noticed late when the emulator is
        // descheduled), so the lowest of a few is the best.
        let pit = (0..CALIBRATION_RUNS)
            .filter_map(|_| crate::pit::calibrate_tsc_hz(CALIBRATION_MS))
            .min();
        if let Some(hz) = pit {
            return Some((hz, "measured against the PIT"));
        }
        let timer_hz = crate::apic::timer_hz().unwrap_or(QEMU_APIC_TIMER_HZ);
        (0..CALIBRATION_RUNS)
            .filter_map(|_| crate::apic::calibrate_tsc_hz(timer_hz, CALIBRATION_MS))
            .min()
            .map(|hz| (hz, SOURCE_APIC_TIMER))
    })
}

/// Converts TSC ticks to microseconds at `hz`.
pub fn ticks_to_us(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(hz.max(1))) as u64
}

/// Converts microseconds to TSC ticks at `hz`.
pub fn us_to_ticks(us: u64, hz: u64) -> u64 {
    (u128::from(us) * u128::from(hz) / 1_000_000) as u64
}

/// Spins until `done()` holds or about `timeout_us` passed by the TSC (at [`tsc_rate`], or an
/// assumed 3 GHz when unknown); returns whether `done()` held. Interrupts stay as they are.
pub fn wait_until(timeout_us: u64, done: impl Fn() -> bool) -> bool {
    let hz = tsc_rate().map_or(FALLBACK_TSC_HZ, |(hz, _)| hz);
    let limit = us_to_ticks(timeout_us, hz);
    let start = rdtsc();
    loop {
        if done() {
            return true;
        }
        if rdtsc().wrapping_sub(start) > limit {
            return done();
        }
        core::hint::spin_loop();
    }
}
