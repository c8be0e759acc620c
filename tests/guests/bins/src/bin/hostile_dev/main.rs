//! `hostile-dev`: a seeded register storm over every emulated device this guest can reach:
//! the virtio-mmio windows (its own and the empty slots, every offset, odd sizes), the local
//! APIC as xAPIC page and as x2APIC MSRs, the I/O APIC (every index, redirection entries aimed
//! at vectors and destinations it does not own), the CMOS clock, COM1, and ports with nothing
//! behind them. Afterwards it resets what it broke and checks its own devices still work:
//! printing, a virtio device re-initialised and serving a read that matches one from before
//! the storm, the local APIC, the I/O APIC and the clock. Neighbours check that they saw
//! nothing.
//!
//! Ends with `HOSTILE SUMMARY hostile-dev cases=N iterations=M refused=R` and the verdict.
//!
//! Command line: `virtio=ADDR` (its blk or net window), `seed=N`, `iterations=N` (per device,
//! default 2000), `only=virtio,xapic,...` (storms to run).

#![no_std]
#![no_main]

#[path = "../virtio_hostile/dev.rs"]
#[allow(dead_code)] // the recovery check uses only the valid-request path
mod dev;
mod regs;

use guest_rt::apic::{self, Mode};
use guest_rt::cpu::{inb, outb, rdtsc};
use guest_rt::ioapic::{IoApic, Polarity, Route, Trigger};
use guest_rt::setup::{alloc, fail_setup, number};
use guest_rt::{dma, println, time, Checks, StartInfo};
use guest_virtio::rng::Rng;
use guest_virtio::window::Window;

use crate::dev::{read8, Dev, Mem, SECTOR_BYTES};
use crate::regs::Tally;

guest_rt::guest!("hostile-dev", main);

const PAGE: u64 = 4096;
const DEFAULT_SEED: u64 = 0x0DEF_ACED_5EED;
const DEFAULT_ITERATIONS: u64 = 2000;
const QUEUE_SIZE: u16 = 8;
const REQUEST_MS: u64 = 2000;
/// The vector and pin used to check the I/O APIC after the storm.
const CHECK_VECTOR: u8 = 0x60;
const CHECK_PIN: u32 = 9;
/// CMOS register B: 24-hour, BCD (the reset value); seconds register.
const RTC_REG_B: u8 = 0x0B;
const RTC_B_DEFAULT: u8 = 0x02;
const RTC_SECONDS: u8 = 0x00;

type Storm = fn(&mut Rng, &Setup, u64) -> Tally;

/// What the storms need to know about this guest.
struct Setup {
    /// Bases of the virtio windows with a device behind them (at most one per slot).
    own_windows: [u64; regs::VIRTIO_SLOTS as usize],
    own_count: usize,
    scratch: u64,
}

const STORMS: [(&str, Storm); 7] = [
    ("virtio", |rng, s, n| {
        regs::virtio(rng, &s.own_windows[..s.own_count], n)
    }),
    ("xapic", |rng, _, n| regs::xapic(rng, n)),
    ("x2apic", |rng, _, n| regs::x2apic(rng, n)),
    ("ioapic", |rng, _, n| regs::ioapic(rng, n)),
    ("rtc", |rng, _, n| regs::rtc(rng, n)),
    ("uart", |rng, _, n| regs::uart(rng, n)),
    ("ports", |rng, s, n| regs::ports(rng, n, s.scratch)),
];

fn check_rtc() -> Result<(), &'static str> {
    // SAFETY: the guest's own CMOS clock: back to 24-hour BCD, then one read of the seconds.
    let seconds = unsafe {
        outb(regs::RTC_INDEX, RTC_REG_B);
        outb(regs::RTC_DATA, RTC_B_DEFAULT);
        outb(regs::RTC_INDEX, RTC_SECONDS);
        inb(regs::RTC_DATA)
    };
    let is_bcd_second = seconds >> 4 <= 5 && seconds & 0xF <= 9;
    is_bcd_second
        .then_some(())
        .ok_or("CMOS seconds do not read as a BCD second after register B was reset")
}

fn check_ioapic(gsi: u32) -> Result<(), &'static str> {
    // SAFETY: the guest's own I/O APIC at Bulkhead's (and the MADT's) address.
    let io = unsafe { IoApic::new(regs::IOAPIC_BASE) };
    let route = Route {
        vector: CHECK_VECTOR,
        trigger: Trigger::Level,
        polarity: Polarity::ActiveHigh,
        dest_apic_id: apic::id() as u8,
        is_masked: true,
    };
    for pin in [CHECK_PIN, gsi] {
        io.set_route(pin, route).map_err(|_| "pin missing")?;
        let entry = io.entry(pin).map_err(|_| "pin missing")?;
        if entry as u8 != CHECK_VECTOR || entry & (1 << 16) == 0 {
            return Err("a redirection entry did not read back what was written");
        }
    }
    Ok(())
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    dma::init(info).unwrap_or_else(|err| fail_setup(err));
    let seed = number(&args, "seed", DEFAULT_SEED);
    let iterations = number(&args, "iterations", DEFAULT_ITERATIONS);
    let w = dev::find_window(&args).unwrap_or_else(|err| fail_setup(err));
    let mem = Mem::alloc(PAGE, PAGE);
    let mut setup = Setup {
        own_windows: [0; regs::VIRTIO_SLOTS as usize],
        own_count: 0,
        scratch: alloc(PAGE),
    };
    for slot in 0..regs::VIRTIO_SLOTS {
        let base = regs::VIRTIO_BASE + slot * regs::VIRTIO_SLOT_BYTES;
        // SAFETY: Bulkhead's virtio slots lie in the uncacheable MMIO hole; probing reads the
        // magic and device ID only.
        if unsafe { Window::new(base, None) }.is_present() {
            setup.own_windows[setup.own_count] = base;
            setup.own_count += 1;
        }
    }
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let mut dev = Dev::new(w, mem, tsc_hz);
    let mut checks = Checks::new("hostile-dev");
    let mut baseline = [0u8; SECTOR_BYTES as usize];
    if let Err(err) = dev
        .init(QUEUE_SIZE)
        .and_then(|()| dev.valid_request(&[], REQUEST_MS))
    {
        checks.fail("baseline", err);
        checks.finish();
    }
    for (i, b) in baseline.iter_mut().enumerate() {
        *b = read8(mem.data + i as u64);
    }
    checks.pass("baseline");
    println!(
        "hostile-dev: seed {seed:#x}, {iterations} accesses per device, own {} window {:#x}, \
         {} virtio windows in all",
        if dev.is_blk { "blk" } else { "net" },
        w.base(),
        setup.own_count
    );
    let mut rng = Rng::new(seed);
    let only = args.get("only");
    let (mut cases, mut total, mut refused) = (0u64, 0u64, 0u64);
    for (name, storm) in STORMS {
        if only.is_some_and(|list| !list.split(',').any(|n| n == name)) {
            continue;
        }
        let start = rdtsc();
        let tally = storm(&mut rng, &setup, iterations);
        regs::restore_uart();
        let ms = rdtsc().wrapping_sub(start) / (tsc_hz / 1000).max(1);
        println!(
            "hostile-dev: storm {name}: {} accesses, {} refused, {ms} ms",
            tally.accesses, tally.refused
        );
        cases += 1;
        total += tally.accesses;
        refused += tally.refused;
    }
    // Everything back to a known state, then use each device again.
    regs::restore_uart();
    checks.pass("uart-after");
    checks.check("apic-after", apic::enable(Mode::XApic));
    let recovered = dev
        .reset()
        .and_then(|()| dev.init(QUEUE_SIZE))
        .and_then(|()| dev.valid_request(&baseline, REQUEST_MS));
    checks.check("virtio-after", recovered);
    checks.check("ioapic-after", check_ioapic(w.gsi().unwrap_or(16)));
    checks.check("rtc-after", check_rtc());
    dev.reset().ok();
    println!(
        "HOSTILE SUMMARY hostile-dev cases={cases} iterations={total} refused={refused} \
         seed={seed:#x}"
    );
    checks.finish()
}
