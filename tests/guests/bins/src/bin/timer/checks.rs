//! The checks of one APIC mode, and the final look for interrupts nobody asked for.

use guest_rt::apic::{self, reg, ApicError, Destination, Mode};
use guest_rt::cpu::{cli, initial_apic_id, rdtsc, sti, sti_hlt};
use guest_rt::fault::catch;
use guest_rt::{irq, println, Checks};

use crate::{
    ipi_fires, reset_fires, tick_tsc, timer_fires, wait_until, Setup, IPI_VECTOR, TIMER_VECTOR,
};

/// Check names per mode (`timer/<mode>-<check>`).
struct Names {
    enable: &'static str,
    periodic: &'static str,
    oneshot: &'static str,
    tsc_deadline: &'static str,
    hlt_wake: &'static str,
    self_ipi: &'static str,
}

const XAPIC: Names = Names {
    enable: "xapic-enable",
    periodic: "xapic-periodic",
    oneshot: "xapic-oneshot",
    tsc_deadline: "xapic-tsc-deadline",
    hlt_wake: "xapic-hlt-wake",
    self_ipi: "xapic-self-ipi",
};

const X2APIC: Names = Names {
    enable: "x2apic-enable",
    periodic: "x2apic-periodic",
    oneshot: "x2apic-oneshot",
    tsc_deadline: "x2apic-tsc-deadline",
    hlt_wake: "x2apic-hlt-wake",
    self_ipi: "x2apic-self-ipi",
};

/// How long a leftover timer interrupt may take to be delivered.
const DRAIN_TIMEOUT_US: u64 = 50_000;
/// How long an IPI may take to arrive.
const IPI_TIMEOUT_US: u64 = 10_000;
/// A stopped timer is watched this many periods for late ticks.
const WATCH_PERIODS: u64 = 4;
/// Extra time allowed for the first interrupt of a check (a slow emulator's start-up).
const START_SLACK_US: u64 = 200_000;
/// How late an interrupt may arrive beyond its programmed time: only "not early" and "exactly
/// once" are the point; lateness is the host's scheduling (nested emulators are slow).
fn late_allowance_us(period_us: u64) -> u64 {
    2 * period_us + 20_000
}
/// IA32_APIC_BASE bit 10: x2APIC mode.
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Lets an interrupt that is still pending from a finished check (a tick that raced the stop)
/// arrive before the next check counts, so one check's leftovers cannot pass or fail another.
/// Reading the IRR and ISR is also an exit under a hypervisor, where it can inject.
fn drain_timer(setup: &Setup) {
    sti();
    wait_until(setup, DRAIN_TIMEOUT_US, || {
        !apic::bank_bit(reg::IRR0, TIMER_VECTOR) && !apic::bank_bit(reg::ISR0, TIMER_VECTOR)
    });
    cli();
}

/// Runs every check in `mode`.
pub(crate) fn run_mode(checks: &mut Checks, setup: &Setup, mode: Mode) {
    let names = match mode {
        Mode::XApic => &XAPIC,
        Mode::X2Apic => &X2APIC,
    };
    if mode == Mode::X2Apic && !apic::has_x2apic() {
        if setup.is_bulkhead {
            checks.fail(names.enable, ApicError::NoX2Apic);
        } else {
            println!("timer: {mode}: not offered by CPUID, its checks are skipped");
        }
        return;
    }
    if !check_enable(checks, names, mode) {
        return;
    }
    check_periodic(checks, setup, names.periodic, mode);
    drain_timer(setup);
    check_oneshot(checks, setup, names.oneshot, mode);
    drain_timer(setup);
    check_tsc_deadline(checks, setup, names.tsc_deadline, mode);
    drain_timer(setup);
    // HLT could sleep forever if the timer never fires: try it only once a timer interrupt has
    // arrived at all (if late), by the count that no check resets.
    check_hlt_wake(checks, setup, names.hlt_wake, irq::count(TIMER_VECTOR) > 0);
    drain_timer(setup);
    check_self_ipi(checks, names.self_ipi, setup, mode);
}

fn check_enable(checks: &mut Checks, names: &Names, mode: Mode) -> bool {
    match catch(|| apic::enable(mode)) {
        Err(fault) => checks.fail(names.enable, format_args!("enabling raised {fault}")),
        Ok(Err(err)) => checks.fail(names.enable, err),
        Ok(Ok(())) => {
            let (id, cpuid_id, base) = (apic::id(), initial_apic_id(), apic::base_msr());
            println!("timer: {mode}: IA32_APIC_BASE {base:#x}, APIC ID {id}");
            let is_x2apic = base & APIC_BASE_X2APIC != 0;
            return checks.expect(
                names.enable,
                id == cpuid_id && is_x2apic == (mode == Mode::X2Apic),
                format_args!(
                    "APIC ID {id} (CPUID says {cpuid_id}), IA32_APIC_BASE {base:#x} \
                     (x2APIC bit {})",
                    u8::from(is_x2apic)
                ),
            );
        }
    }
    false
}

fn check_periodic(checks: &mut Checks, setup: &Setup, name: &str, mode: Mode) {
    let (period_us, ticks) = (setup.period_us, setup.ticks);
    reset_fires();
    sti();
    let start = rdtsc();
    apic::timer_periodic(TIMER_VECTOR, setup.us_to_count(period_us));
    let timeout_us = period_us * ticks * 4 + START_SLACK_US;
    let is_complete = wait_until(setup, timeout_us, || timer_fires() >= ticks);
    apic::timer_stop();
    let at_stop = timer_fires();
    wait_until(setup, period_us * WATCH_PERIODS, || false);
    cli();
    let after_stop = timer_fires() - at_stop;
    if !is_complete {
        checks.fail(
            name,
            format_args!("{at_stop} of {ticks} ticks within {timeout_us} us"),
        );
        return;
    }
    let (mut min_us, mut max_us, mut previous) = (u64::MAX, 0, start);
    for n in 0..ticks as usize {
        let interval_us = setup.tsc_to_us(tick_tsc(n).wrapping_sub(previous));
        min_us = min_us.min(interval_us);
        max_us = max_us.max(interval_us);
        previous = tick_tsc(n);
    }
    let mean_us = setup.tsc_to_us(previous.wrapping_sub(start)) / ticks;
    println!(
        "timer: {mode} periodic: {ticks} ticks, mean {mean_us} us, min {min_us} us, max {max_us} \
         us (period {period_us} us), {after_stop} after stopping"
    );
    // One tick may already be pending when the timer stops; more means it did not stop.
    checks.expect(
        name,
        setup.is_close(mean_us, period_us) && max_us <= 3 * period_us && after_stop <= 1,
        format_args!(
            "mean interval {mean_us} us, longest {max_us} us, for a {period_us} us period \
             (tolerance {}%); {after_stop} ticks after stopping",
            setup.tolerance_pct
        ),
    );
}

fn check_oneshot(checks: &mut Checks, setup: &Setup, name: &str, mode: Mode) {
    let period_us = setup.period_us;
    reset_fires();
    sti();
    let start = rdtsc();
    apic::timer_oneshot(TIMER_VECTOR, setup.us_to_count(period_us));
    wait_until(setup, period_us * 20 + START_SLACK_US, || {
        timer_fires() >= 1
    });
    wait_until(setup, period_us * WATCH_PERIODS, || false);
    cli();
    let (fires, current) = (timer_fires(), apic::timer_current_count());
    apic::timer_stop();
    if fires == 0 {
        checks.fail(
            name,
            format_args!(
                "never fired within {} us of a {period_us} us count (current count {current})",
                period_us * (20 + WATCH_PERIODS) + START_SLACK_US
            ),
        );
        return;
    }
    let delay_us = setup.tsc_to_us(tick_tsc(0).wrapping_sub(start));
    println!("timer: {mode} one-shot: fired after {delay_us} us (programmed {period_us} us)");
    let earliest_us = period_us - period_us * setup.tolerance_pct / 100;
    checks.expect(
        name,
        fires == 1
            && delay_us >= earliest_us
            && delay_us <= period_us + late_allowance_us(period_us)
            && current == 0,
        format_args!(
            "fired {fires} times (expected once), first after {delay_us} us for {period_us} us, \
             current count {current} afterwards"
        ),
    );
}

fn check_tsc_deadline(checks: &mut Checks, setup: &Setup, name: &str, mode: Mode) {
    if !apic::has_tsc_deadline() {
        if setup.is_bulkhead {
            checks.fail(name, ApicError::NoTscDeadline);
        } else {
            println!("timer: {mode}: TSC-deadline mode not offered by CPUID, skipped");
        }
        return;
    }
    let period_us = setup.period_us;
    reset_fires();
    sti();
    let deadline = rdtsc() + setup.us_to_tsc(period_us);
    if let Err(err) = apic::timer_tsc_deadline(TIMER_VECTOR, deadline) {
        cli();
        checks.fail(name, err);
        return;
    }
    wait_until(setup, period_us * 20 + START_SLACK_US, || {
        timer_fires() >= 1
    });
    wait_until(setup, period_us * WATCH_PERIODS, || false);
    cli();
    let (fires, msr) = (timer_fires(), apic::tsc_deadline());
    apic::timer_stop();
    let msr = msr.unwrap_or(u64::MAX);
    if fires == 0 {
        checks.fail(
            name,
            format_args!(
                "never fired within {} us of a deadline {period_us} us ahead \
                 (IA32_TSC_DEADLINE reads {msr:#x})",
                period_us * (20 + WATCH_PERIODS) + START_SLACK_US
            ),
        );
        return;
    }
    let fired_at = tick_tsc(0);
    let late_us = setup.tsc_to_us(fired_at.saturating_sub(deadline));
    let early_us = setup.tsc_to_us(deadline.saturating_sub(fired_at));
    println!(
        "timer: {mode} TSC-deadline: fired {late_us} us after the deadline ({early_us} us before)"
    );
    checks.expect(
        name,
        fires == 1 && fired_at >= deadline && late_us <= late_allowance_us(period_us) && msr == 0,
        format_args!(
            "fired {fires} times (expected once), {early_us} us early or {late_us} us late; \
             IA32_TSC_DEADLINE reads {msr:#x} afterwards (expected 0)"
        ),
    );
}

fn check_hlt_wake(checks: &mut Checks, setup: &Setup, name: &str, is_timer_alive: bool) {
    if !is_timer_alive {
        checks.fail(
            name,
            "not attempted: no timer interrupt ever arrived, so HLT would never wake",
        );
        return;
    }
    let period_us = setup.period_us;
    reset_fires();
    let start = rdtsc();
    apic::timer_oneshot(TIMER_VECTOR, setup.us_to_count(period_us));
    // Interrupts are off until sti_hlt, whose STI shadow covers the HLT: a timer that expires
    // before it is pending and wakes the HLT at once, so this cannot sleep through the tick.
    let mut halts = 0;
    while timer_fires() == 0 && halts < 3 {
        sti_hlt();
        halts += 1;
    }
    cli();
    let woke_us = setup.tsc_to_us(rdtsc().wrapping_sub(start));
    let earliest_us = period_us - period_us * setup.tolerance_pct / 100;
    checks.expect(
        name,
        timer_fires() == 1 && woke_us >= earliest_us,
        format_args!(
            "after {halts} HLTs: {} timer interrupts, {woke_us} us for a {period_us} us timer",
            timer_fires()
        ),
    );
}

fn check_self_ipi(checks: &mut Checks, name: &str, setup: &Setup, mode: Mode) {
    reset_fires();
    let own_id = apic::id();
    // With IF clear the IPI must wait in the IRR; STI then delivers it.
    if let Err(err) = apic::send_fixed_ipi(IPI_VECTOR, Destination::SelfOnly) {
        checks.fail(name, err);
        return;
    }
    wait_until(setup, IPI_TIMEOUT_US, || false);
    let while_masked = ipi_fires();
    sti();
    let is_released = wait_until(setup, IPI_TIMEOUT_US, || ipi_fires() >= 1);
    let mut sent = 1;
    let mut outcome: Result<(), ApicError> = Ok(());
    for dest in [Destination::Physical(own_id), Destination::SelfOnly] {
        outcome = outcome.and(apic::send_fixed_ipi(IPI_VECTOR, dest));
        sent += 1;
        wait_until(setup, IPI_TIMEOUT_US, || ipi_fires() >= sent);
    }
    if mode == Mode::X2Apic {
        outcome = outcome.and(apic::self_ipi(IPI_VECTOR));
        sent += 1;
        wait_until(setup, IPI_TIMEOUT_US, || ipi_fires() >= sent);
    }
    cli();
    let got = ipi_fires();
    if let Err(err) = outcome {
        checks.fail(name, err);
        return;
    }
    println!(
        "timer: {mode} self-IPI: {got} of {sent} arrived (shorthand, physical ID {own_id}{})",
        if mode == Mode::X2Apic {
            ", SELF IPI register"
        } else {
            ""
        }
    );
    checks.expect(
        name,
        while_masked == 0 && is_released && got == sent,
        format_args!(
            "{while_masked} delivered while IF=0 (expected 0), {got} of {sent} arrived in all"
        ),
    );
}

/// Every vector other than the two the guest uses must have stayed silent.
pub(crate) fn check_no_strays(checks: &mut Checks) {
    let mut strays = 0;
    let mut first = None;
    for vector in irq::FIRST_VECTOR..=u8::MAX {
        if matches!(vector, TIMER_VECTOR | IPI_VECTOR | apic::SPURIOUS_VECTOR) {
            continue;
        }
        let n = irq::count(vector);
        if n > 0 {
            strays += n;
            first.get_or_insert(vector);
        }
    }
    let spurious = irq::count(apic::SPURIOUS_VECTOR);
    if spurious > 0 {
        println!(
            "timer: {spurious} spurious interrupts (vector {:#x})",
            apic::SPURIOUS_VECTOR
        );
    }
    checks.expect(
        "no-stray-interrupts",
        strays == 0,
        format_args!("{strays} interrupts on unused vectors, first on {first:#x?}"),
    );
}
