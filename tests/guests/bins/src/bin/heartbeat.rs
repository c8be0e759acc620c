//! `heartbeat`: a long-running guest that proves it keeps running and that nobody writes its RAM.
//!
//! It prints `heartbeat N` every period (TSC-timed when CPUID tells the TSC rate, otherwise every
//! fixed number of spin iterations) and before each beat re-checks canary patterns: a 64 KiB
//! block inside its image and one word in every 4 KiB page of the RAM above its image. A changed
//! canary prints `FAIL heartbeat: canary ...` and exits 1. With `beats=N` it stops after N beats
//! with `PASS heartbeat`; without, it runs forever.
//!
//! After the last beat it prints its achieved rate (beats and spin iterations per TSC time).
//!
//! Command line: `beats=N` (default: forever), `period_ms=N` (default 100).

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::cpu::{rdtsc, tsc_hz, TscSource};
use guest_rt::{boot, exit, println, Checks, StartInfo};

guest_rt::guest!("heartbeat", main);

const DEFAULT_PERIOD_MS: u64 = 100;
/// Spin iterations per millisecond of period when the TSC rate is unknown: a PAUSE loop
/// iteration takes roughly 10-150 ns on hardware and under QEMU TCG, so this is a rough pace.
const FALLBACK_SPINS_PER_MS: u64 = 10_000;
/// Words in the canary block inside the image (64 KiB).
const IMAGE_CANARY_WORDS: usize = 8192;
const PAGE_BYTES: u64 = 4096;
/// RAM canaries stay below 4 GiB, the part of RAM the boot stub maps.
const MAPPED_LIMIT: u64 = 1 << 32;
/// Cap on RAM canary words, so a beat's check stays short on large guests (4 GiB of pages).
const MAX_RAM_CANARY_WORDS: u64 = 1 << 20;

static IMAGE_CANARY: [AtomicU64; IMAGE_CANARY_WORDS] =
    [const { AtomicU64::new(0) }; IMAGE_CANARY_WORDS];

/// The pattern expected at `addr`: distinct per address, so a copy from elsewhere is noticed.
fn pattern(addr: u64) -> u64 {
    addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB01D_FACE_CAFE_F00D
}

/// The RAM page words that carry canaries: one per page above the image, at an offset that
/// moves from page to page.
fn ram_canary_words(info: &StartInfo) -> impl Iterator<Item = u64> + '_ {
    let (_, image_end) = boot::image_range();
    let first_page = image_end.div_ceil(PAGE_BYTES) * PAGE_BYTES;
    info.ram()
        .flat_map(move |range| {
            let start = range.base.max(first_page).div_ceil(PAGE_BYTES) * PAGE_BYTES;
            let end = range.end().min(MAPPED_LIMIT) / PAGE_BYTES * PAGE_BYTES;
            (start..end.max(start)).step_by(PAGE_BYTES as usize)
        })
        .map(|page| page + ((page / PAGE_BYTES) * 0x238) % PAGE_BYTES / 8 * 8)
        .take(MAX_RAM_CANARY_WORDS as usize)
}

fn write_ram_word(addr: u64, value: u64) {
    // SAFETY: `addr` is an 8-aligned word in a RAM range of the memory map, above the guest
    // image and below 4 GiB (identity-mapped); this guest uses that RAM for nothing else.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
}

fn read_ram_word(addr: u64) -> u64 {
    // SAFETY: as for write_ram_word.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn plant(info: &StartInfo) -> u64 {
    for word in &IMAGE_CANARY {
        word.store(pattern(word.as_ptr() as u64), Ordering::Relaxed);
    }
    let mut planted = 0;
    for addr in ram_canary_words(info) {
        write_ram_word(addr, pattern(addr));
        planted += 1;
    }
    planted
}

/// Checks every canary; on the first change reports it and exits 1.
fn verify(info: &StartInfo, beat: u64) {
    let report = |addr: u64, expected: u64, found: u64| -> ! {
        println!(
            "FAIL heartbeat: canary at GPA:{addr:#x} changed: expected {expected:#018x}, found {found:#018x} (beat {beat})"
        );
        exit(1)
    };
    for word in &IMAGE_CANARY {
        let addr = word.as_ptr() as u64;
        let expected = pattern(addr);
        let found = word.load(Ordering::Relaxed);
        if found != expected {
            report(addr, expected, found);
        }
    }
    for addr in ram_canary_words(info) {
        let found = read_ram_word(addr);
        if found != pattern(addr) {
            report(addr, pattern(addr), found);
        }
    }
}

/// How the guest paces its beats.
enum Pace {
    Tsc { ticks_per_beat: u64 },
    Spins(u64),
}

impl Pace {
    /// Waits one period; returns the spin iterations it managed meanwhile (with a TSC pace,
    /// how much CPU this guest got: a neighbour that slows the CPU down lowers it).
    fn wait(&self) -> u64 {
        match *self {
            Pace::Tsc { ticks_per_beat } => {
                let start = rdtsc();
                let mut spins = 0u64;
                while rdtsc().wrapping_sub(start) < ticks_per_beat {
                    core::hint::spin_loop();
                    spins += 1;
                }
                spins
            }
            Pace::Spins(spins) => {
                for _ in 0..spins {
                    core::hint::spin_loop();
                }
                spins
            }
        }
    }
}

/// `heartbeat: rate B beats in T ticks, S spins, TSC H Hz` (`cargo xtask bench` reads it):
/// beats per second of TSC time, and spins per tick as the CPU this guest got.
fn report_rate(beats: u64, spins: u64, ticks: u64) {
    let hz = tsc_hz().map_or(0, |(hz, _)| hz);
    println!("heartbeat: rate {beats} beats in {ticks} ticks, {spins} spins, TSC {hz} Hz");
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let (beats, period_ms) = match (args.get_u64("beats"), args.get_u64("period_ms")) {
        (Ok(beats), Ok(period)) => (beats, period.unwrap_or(DEFAULT_PERIOD_MS)),
        (Err(err), _) | (_, Err(err)) => {
            println!("FAIL heartbeat: {err}");
            exit(1)
        }
    };
    let pace = match tsc_hz() {
        Some((hz, source)) => {
            let source = match source {
                TscSource::Leaf15 => "cpuid 0x15",
                TscSource::Leaf16 => "cpuid 0x16",
                TscSource::Hypervisor => "cpuid 0x40000010",
            };
            println!(
                "heartbeat: beating every {period_ms} ms, TSC at {} kHz ({source})",
                hz / 1000
            );
            Pace::Tsc {
                ticks_per_beat: hz / 1000 * period_ms,
            }
        }
        None => {
            let spins = period_ms.saturating_mul(FALLBACK_SPINS_PER_MS);
            println!("heartbeat: TSC rate unknown, beating every {spins} spin iterations");
            Pace::Spins(spins)
        }
    };
    let planted = plant(info);
    println!("heartbeat: canaries in {IMAGE_CANARY_WORDS} image words and {planted} RAM pages");
    let mut beat: u64 = 0;
    let mut spins: u64 = 0;
    let start = rdtsc();
    loop {
        spins += pace.wait();
        verify(info, beat);
        beat += 1;
        println!("heartbeat {beat}");
        if beats.is_some_and(|limit| beat >= limit) {
            report_rate(beat, spins, rdtsc().wrapping_sub(start));
            Checks::new("heartbeat").finish()
        }
    }
}
