//! `timer`: the local APIC with interrupts on. In xAPIC mode, then in x2APIC mode (switched
//! through IA32_APIC_BASE), it checks that a periodic timer ticks at the programmed period, a
//! one-shot fires exactly once, the TSC-deadline timer fires once and not before its deadline,
//! HLT wakes up on the timer, and fixed self-IPIs arrive; then that no other vector fired.
//!
//! Time is the TSC, at the rate CPUID gives (measured against the PIT when it does not); the
//! timer's input clock is CPUID 0x4000_0010 EBX, else QEMU's and KVM's 1 GHz.
//!
//! Command line: `expect=bulkhead|bare`, `modes=xapic,x2apic`, `ticks=N` (default 10),
//! `period_us=N` (default 10000), `tolerance_pct=N` (default 25).

#![no_std]
#![no_main]

mod checks;

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::apic::{self, Mode};
use guest_rt::cpu::{initial_apic_id, is_bulkhead, rdtsc};
use guest_rt::idt::ExceptionFrame;
use guest_rt::setup::{fail_setup, number};
use guest_rt::{irq, println, time, Checks, StartInfo};

guest_rt::guest!("timer", main);

/// Vectors the guest programs: timer and IPI, above the exceptions and below the spurious one.
pub(crate) const TIMER_VECTOR: u8 = 0x40;
pub(crate) const IPI_VECTOR: u8 = 0x41;
/// Timestamps kept for the periodic check.
pub(crate) const MAX_TICKS: usize = 64;

static TIMER_FIRES: AtomicU64 = AtomicU64::new(0);
static TICK_TSC: [AtomicU64; MAX_TICKS] = [const { AtomicU64::new(0) }; MAX_TICKS];
static IPI_FIRES: AtomicU64 = AtomicU64::new(0);

fn on_timer(_frame: &mut ExceptionFrame) {
    let now = rdtsc();
    let n = TIMER_FIRES.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(slot) = TICK_TSC.get(n) {
        slot.store(now, Ordering::SeqCst);
    }
    apic::eoi();
}

fn on_ipi(_frame: &mut ExceptionFrame) {
    IPI_FIRES.fetch_add(1, Ordering::SeqCst);
    apic::eoi();
}

/// Timer interrupts since the last [`reset_fires`].
pub(crate) fn timer_fires() -> u64 {
    TIMER_FIRES.load(Ordering::SeqCst)
}

/// TSC at timer interrupt `n` (0-based) since the last reset.
pub(crate) fn tick_tsc(n: usize) -> u64 {
    TICK_TSC.get(n).map_or(0, |t| t.load(Ordering::SeqCst))
}

pub(crate) fn ipi_fires() -> u64 {
    IPI_FIRES.load(Ordering::SeqCst)
}

pub(crate) fn reset_fires() {
    TIMER_FIRES.store(0, Ordering::SeqCst);
    IPI_FIRES.store(0, Ordering::SeqCst);
    for t in &TICK_TSC {
        t.store(0, Ordering::SeqCst);
    }
}

/// Rates and limits every check uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    pub tsc_hz: u64,
    pub timer_hz: u64,
    pub ticks: u64,
    pub period_us: u64,
    pub tolerance_pct: u64,
    pub is_bulkhead: bool,
}

impl Setup {
    pub fn us_to_tsc(&self, us: u64) -> u64 {
        time::us_to_ticks(us, self.tsc_hz)
    }

    pub fn tsc_to_us(&self, ticks: u64) -> u64 {
        time::ticks_to_us(ticks, self.tsc_hz)
    }

    /// Timer input ticks in `us` microseconds (divide by 1), clamped to the 32-bit counter.
    pub fn us_to_count(&self, us: u64) -> u32 {
        let count = u128::from(us) * u128::from(self.timer_hz) / 1_000_000;
        u32::try_from(count).unwrap_or(u32::MAX).max(1)
    }

    /// Whether `measured_us` is within the tolerance of `expected_us`.
    pub fn is_close(&self, measured_us: u64, expected_us: u64) -> bool {
        let slack = expected_us * self.tolerance_pct / 100;
        measured_us + slack >= expected_us && measured_us <= expected_us + slack
    }
}

/// Spins until `done()` or `timeout_us` passed (by the TSC); returns whether `done()` held.
pub(crate) fn wait_until(setup: &Setup, timeout_us: u64, done: impl Fn() -> bool) -> bool {
    let start = rdtsc();
    let limit = setup.us_to_tsc(timeout_us);
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

fn parse_setup(info: &StartInfo) -> Setup {
    let args = info.args();
    let is_bulkhead = match args.get("expect") {
        Some("bulkhead") => true,
        Some("bare") => false,
        Some(other) => fail_setup(format_args!(
            "command line expect={other:?}: expected bulkhead or bare"
        )),
        None => is_bulkhead(),
    };
    let Some((tsc_hz, tsc_source)) = time::tsc_rate() else {
        fail_setup("cannot tell the TSC rate: no CPUID leaf gives it and no PIT counts")
    };
    if tsc_source == time::SOURCE_APIC_TIMER {
        fail_setup(
            "the TSC rate is known only from the APIC timer, which this guest checks (no PIT \
             here? use -M q35 or pc)",
        );
    }
    let (timer_hz, timer_source) = match apic::timer_hz() {
        Some(hz) => (hz, "cpuid 0x40000010"),
        None => (time::QEMU_APIC_TIMER_HZ, "assumed, as QEMU/KVM"),
    };
    println!(
        "timer: TSC {} kHz ({tsc_source}), APIC timer {} kHz ({timer_source}), APIC ID {}",
        tsc_hz / 1000,
        timer_hz / 1000,
        initial_apic_id()
    );
    Setup {
        tsc_hz,
        timer_hz,
        ticks: number(&args, "ticks", 10).clamp(2, MAX_TICKS as u64),
        period_us: number(&args, "period_us", 10_000).clamp(100, 1_000_000),
        tolerance_pct: number(&args, "tolerance_pct", 25).clamp(1, 99),
        is_bulkhead,
    }
}

fn main(info: &'static StartInfo) -> ! {
    let setup = parse_setup(info);
    let modes_arg = info.args().get("modes").unwrap_or("xapic,x2apic");
    let mut modes = [None, None];
    for (slot, word) in modes.iter_mut().zip(modes_arg.split(',')) {
        *slot = match word {
            "xapic" => Some(Mode::XApic),
            "x2apic" => Some(Mode::X2Apic),
            other => fail_setup(format_args!(
                "command line modes: {other:?} is not xapic or x2apic"
            )),
        };
    }
    for (vector, handler) in [
        (TIMER_VECTOR, on_timer as irq::Handler),
        (IPI_VECTOR, on_ipi as irq::Handler),
    ] {
        if let Err(err) = irq::set_handler(vector, handler) {
            fail_setup(err);
        }
    }
    let mut checks = Checks::new("timer");
    if setup.is_bulkhead {
        checks.expect(
            "cpuid-frequencies",
            guest_rt::cpu::tsc_hz().is_some() && apic::timer_hz().is_some(),
            "Bulkhead must give the TSC rate (leaf 0x15 or 0x40000010 EAX) and the APIC timer \
             rate (leaf 0x40000010 EBX)",
        );
    }
    for mode in modes.into_iter().flatten() {
        checks::run_mode(&mut checks, &setup, mode);
    }
    checks::check_no_strays(&mut checks);
    apic::timer_stop();
    guest_rt::cpu::cli();
    checks.finish()
}
