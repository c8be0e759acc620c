//! The local APIC timer against a fake clock (TSC and timer input both 1 MHz unless said).

use super::*;

const KHZ: u64 = 1000;
const VECTOR: u32 = 0x40;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 2 << 17;
const DIVIDE_1: u32 = 0b1011;

fn apic_with(tsc_khz: u64, timer_khz: u32, lvt: u32, dcr: u32) -> Lapic {
    let mut a = Lapic::new(0, tsc_khz, timer_khz);
    a.mmio_write(u64::from(REG_SVR), SVR_SOFTWARE_ENABLE | 0xFF, 0);
    a.mmio_write(u64::from(REG_TIMER_DIVIDE), dcr, 0);
    a.mmio_write(u64::from(REG_LVT_TIMER), lvt, 0);
    a
}

fn apic(lvt: u32) -> Lapic {
    apic_with(KHZ, KHZ as u32, lvt, DIVIDE_1)
}

fn start(a: &mut Lapic, count: u32, now: u64) {
    a.mmio_write(u64::from(REG_TIMER_INITIAL), count, now);
}

fn current(a: &Lapic, now: u64) -> u32 {
    a.mmio_read(u64::from(REG_TIMER_CURRENT), now)
}

/// Injects and EOIs whatever is pending, returning it.
fn take(a: &mut Lapic) -> Option<u8> {
    let v = a.pending()?;
    a.ack(v);
    a.mmio_write(u64::from(REG_EOI), 0, 0);
    Some(v)
}

#[test]
fn one_shot_fires_once_at_the_right_tick() {
    let mut a = apic(VECTOR);
    assert_eq!(a.next_deadline_tsc(), None);
    start(&mut a, 1000, 0);
    assert_eq!(a.next_deadline_tsc(), Some(1000));
    assert_eq!(current(&a, 0), 1000);
    assert_eq!(current(&a, 250), 750);
    assert!(!a.poll(999));
    assert_eq!(a.pending(), None);
    assert!(a.poll(1000));
    assert_eq!(take(&mut a), Some(0x40));
    assert_eq!(a.next_deadline_tsc(), None);
    assert_eq!(current(&a, 1500), 0);
    assert!(!a.poll(10_000), "one-shot stops");
    assert_eq!(a.mmio_read(u64::from(REG_TIMER_INITIAL), 0), 1000);
}

#[test]
fn periodic_keeps_firing() {
    let mut a = apic(VECTOR | PERIODIC);
    start(&mut a, 100, 10);
    assert!(a.poll(110));
    assert_eq!(take(&mut a), Some(0x40));
    assert_eq!(a.next_deadline_tsc(), Some(210));
    assert!(a.poll(215));
    assert_eq!(take(&mut a), Some(0x40));
    // Late by several periods: one interrupt, phase kept.
    assert!(a.poll(650));
    assert_eq!(take(&mut a), Some(0x40));
    assert_eq!(a.next_deadline_tsc(), Some(710));
    assert_eq!(current(&a, 660), 50);
    assert_eq!(
        current(&a, 920),
        90,
        "current count wraps even before a poll"
    );
    start(&mut a, 0, 700);
    assert_eq!(a.next_deadline_tsc(), None, "initial count 0 stops it");
    assert!(!a.poll(10_000));
}

#[test]
fn divide_values() {
    for (dcr, divide) in [
        (0b0000, 2),
        (0b0001, 4),
        (0b0010, 8),
        (0b0011, 16),
        (0b1000, 32),
        (0b1001, 64),
        (0b1010, 128),
        (0b1011, 1),
    ] {
        let mut a = apic_with(KHZ, KHZ as u32, VECTOR, dcr);
        start(&mut a, 100, 0);
        assert_eq!(a.next_deadline_tsc(), Some(100 * divide), "DCR {dcr:#b}");
        assert_eq!(current(&a, 10 * divide), 90, "DCR {dcr:#b}");
    }
}

#[test]
fn clock_rates_convert() {
    // 2 GHz TSC, 1 GHz timer, divide by 16: 1000 counts = 16 µs = 32 000 TSC ticks.
    let mut a = apic_with(2_000_000, DEFAULT_TIMER_KHZ, VECTOR, 0b0011);
    start(&mut a, 1000, 5);
    assert_eq!(a.next_deadline_tsc(), Some(32_005));
    assert_eq!(current(&a, 16_005), 500);
}

#[test]
fn divide_change_keeps_the_count() {
    let mut a = apic(VECTOR);
    start(&mut a, 1000, 0);
    a.mmio_write(u64::from(REG_TIMER_DIVIDE), 0b0000, 400);
    assert_eq!(current(&a, 400), 600);
    assert_eq!(a.next_deadline_tsc(), Some(400 + 600 * 2));
}

#[test]
fn tsc_deadline_mode() {
    let mut a = apic(VECTOR | TSC_DEADLINE);
    start(&mut a, 1000, 0);
    assert_eq!(
        a.mmio_read(u64::from(REG_TIMER_INITIAL), 0),
        0,
        "initial count ignored"
    );
    assert_eq!(a.next_deadline_tsc(), None);
    assert_eq!(a.msr_write(MSR_TSC_DEADLINE, 5000, 100), Ok(None));
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 100), Ok(5000));
    assert_eq!(a.next_deadline_tsc(), Some(5000));
    assert_eq!(current(&a, 200), 0);
    assert!(!a.poll(4999));
    assert!(a.poll(5000));
    assert_eq!(take(&mut a), Some(0x40));
    assert_eq!(
        a.msr_read(MSR_TSC_DEADLINE, 5000),
        Ok(0),
        "disarmed after firing"
    );
    // A deadline in the past fires at the next poll; 0 disarms.
    a.msr_write(MSR_TSC_DEADLINE, 10, 6000).unwrap();
    assert!(a.poll(6000));
    a.msr_write(MSR_TSC_DEADLINE, 9000, 6000).unwrap();
    a.msr_write(MSR_TSC_DEADLINE, 0, 6000).unwrap();
    assert_eq!(a.next_deadline_tsc(), None);
    // Leaving the mode disarms; outside it the MSR ignores writes.
    a.msr_write(MSR_TSC_DEADLINE, 9000, 6000).unwrap();
    a.mmio_write(u64::from(REG_LVT_TIMER), VECTOR, 6000);
    assert_eq!(a.next_deadline_tsc(), None);
    a.msr_write(MSR_TSC_DEADLINE, 9500, 6000).unwrap();
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 6000), Ok(0));
    a.mmio_write(u64::from(REG_LVT_TIMER), VECTOR | TSC_DEADLINE, 6000);
    assert_eq!(
        a.next_deadline_tsc(),
        None,
        "not re-armed by switching back"
    );
}

#[test]
fn masked_timer_counts_without_delivering() {
    let mut a = apic(VECTOR | LVT_MASKED);
    start(&mut a, 100, 0);
    assert_eq!(a.next_deadline_tsc(), None, "nothing to wake for");
    assert_eq!(current(&a, 40), 60);
    assert!(!a.poll(100));
    assert_eq!(a.pending(), None);
    // A periodic timer that ran masked does not fire at once when unmasked.
    let mut p = apic(VECTOR | PERIODIC | LVT_MASKED);
    start(&mut p, 100, 0);
    p.mmio_write(u64::from(REG_LVT_TIMER), VECTOR | PERIODIC, 250);
    assert_eq!(p.pending(), None);
    assert_eq!(p.next_deadline_tsc(), Some(300));
    assert!(p.poll(300));
}

#[test]
fn illegal_timer_vector_is_an_error() {
    let mut a = apic(0x05);
    start(&mut a, 10, 0);
    assert!(!a.poll(10));
    assert_eq!(a.pending(), None);
    a.mmio_write(u64::from(REG_ESR), 0, 0);
    assert_eq!(
        a.mmio_read(u64::from(REG_ESR), 0),
        ESR_RECEIVE_ILLEGAL_VECTOR
    );
}
