//! `hostile-mem`: a guest that reaches for memory it does not own, through the edges of its RAM,
//! all of guest-physical space up to the CPU's physical-address width, the device window, and
//! its own page tables bent to point at absent or absurd addresses. The `probe-isolation` guest
//! sweeps below 64 GiB with the boot map; this one remaps a window of its own page tables so it
//! can reach any address, and bends table entries at every level.
//!
//! What is right, per region (the design's "unpopulated hardware" rule):
//! - RAM: the first and last word of every RAM range hold what is written (`ram-edges`);
//! - anything else below the physical-address width and outside the emulated devices reads
//!   all-ones and drops writes, and never faults (`ram-first-out`, `sweep-width`,
//!   `device-window`);
//! - a leaf at or above the width is a reserved-bit #PF, or reads all-ones (`pte-beyond-width`);
//! - a page-table entry pointing at absent memory (`table-absent-pd/-pdpt/-pml4`) or at a
//!   device (`table-in-apic`, `table-in-ioapic`): the walk finds all-ones entries (#PF) or the
//!   access reads all-ones; the guest goes on either way.
//!
//! Prints `PASS hostile-mem/<case>` / `FAIL hostile-mem/<case>: why`, then
//! `HOSTILE SUMMARY hostile-mem cases=N iterations=M failed=F ms=T` and the verdict.
//! Command line: `slots=N` (width sweep stride = max(1 GiB, 2^width / N), default 1024).

#![no_std]
#![no_main]

mod window;

use guest_rt::cpu::{cpuid, rdtsc, tsc_hz};
use guest_rt::fault::{catch, Fault};
use guest_rt::idt::PF;
use guest_rt::setup::number;
use guest_rt::{println, Checks, StartInfo};

use window::Level;

guest_rt::guest!("hostile-mem", main);

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ALL_ONES: u64 = u64::MAX;
const PATTERN: u64 = 0x5AA5_0FF0_C33C_9669;
const DEFAULT_SLOTS: u64 = 1024;
/// Offsets probed in each sweep slot (each below 1 GiB, the smallest stride).
const SLOT_OFFSETS: [u64; 4] = [0, 0xFF8, 2 * MIB + 0x18, 512 * MIB + 0x7F8];
/// #PF error code bit 3: a reserved bit was set in a paging-structure entry.
const PF_RSVD: u64 = 1 << 3;
/// Emulated device pages (virtio slots, I/O APIC, local APIC) and where they lie; the device
/// window is 3 GiB..4 GiB.
const WINDOW_START: u64 = 0xC000_0000;
const WINDOW_END: u64 = 0x1_0000_0000;
const EMULATED: [(u64, u64); 3] = [
    (0xD000_0000, 0xD001_0000),
    (0xFEC0_0000, 0xFEC0_1000),
    (0xFEE0_0000, 0xFEE0_1000),
];
const IOAPIC: u64 = guest_rt::ioapic::DEFAULT_BASE;
const LAPIC: u64 = guest_rt::apic::DEFAULT_XAPIC_BASE;
/// Addresses in the device window where real machines have something: PCIe ECAM, HPET, the
/// page after each emulated device, the firmware flash below 4 GiB.
const DEVICE_SPOTS: [u64; 9] = [
    0xE000_0000,
    0xFD00_0000,
    0xFEB0_0000,
    0xFED0_0000,
    0xFEC0_1000,
    0xFEE0_1000,
    0xD001_0000,
    0xFFFF_0000,
    0xFFFF_FFF8,
];
const DEVICE_STRIDE: u64 = 64 * MIB;

fn read64(va: u64) -> u64 {
    // SAFETY: `va` is mapped by the boot map or the window; what it reaches is the point.
    unsafe { core::ptr::read_volatile(va as *const u64) }
}

fn write64(va: u64, value: u64) {
    // SAFETY: as for read64; callers only write where RAM may not be (or restore RAM).
    unsafe { core::ptr::write_volatile(va as *mut u64, value) }
}

/// What a read, a write of [`PATTERN`] and a second read gave: the two values read, or the
/// fault.
type Touch = Result<(u64, u64), Fault>;

/// Read, write a pattern, read again, all under `catch`.
fn touch(va: u64) -> Touch {
    catch(|| {
        let before = read64(va);
        write64(va, PATTERN);
        (before, read64(va))
    })
}

fn ms_since(start: u64) -> u64 {
    tsc_hz().map_or(0, |(hz, _)| {
        rdtsc().wrapping_sub(start) / (hz / 1000).max(1)
    })
}

fn is_emulated(gpa: u64) -> bool {
    EMULATED.iter().any(|&(s, e)| (s..e).contains(&gpa))
}

/// Tally of one sweep: probes made and the first offence.
struct Sweep {
    probes: u64,
    offence: Option<(u64, Touch)>,
}

impl Sweep {
    fn new() -> Self {
        Self {
            probes: 0,
            offence: None,
        }
    }

    /// Probes `gpa` through the window: must read all-ones twice, no fault.
    fn unbacked(&mut self, gpa: u64) {
        self.probes += 1;
        let got = touch(window::map(gpa));
        if got != Ok((ALL_ONES, ALL_ONES)) && self.offence.is_none() {
            self.offence = Some((gpa, got));
        }
    }

    fn report(&self, checks: &mut Checks, name: &str) -> u64 {
        match self.offence {
            None => checks.pass(name),
            Some((gpa, Ok((a, b)))) => checks.fail(
                name,
                format_args!("GPA:{gpa:#x} read {a:#x}, after a write {b:#x}; expected all-ones"),
            ),
            Some((gpa, Err(f))) => checks.fail(name, format_args!("GPA:{gpa:#x} raised {f}")),
        }
        println!("hostile-mem: {name}: {} addresses", self.probes);
        self.probes * 3
    }
}

fn ram_edges(info: &StartInfo, checks: &mut Checks) -> u64 {
    let mut n = 0;
    let mut bad = None;
    for range in info.ram() {
        for gpa in [range.base, range.end() - 8] {
            n += 1;
            let va = window::map(gpa);
            let result = catch(|| {
                let saved = read64(va);
                write64(va, PATTERN);
                let back = read64(va);
                write64(va, saved);
                back
            });
            if result != Ok(PATTERN) {
                bad.get_or_insert((gpa, result));
            }
        }
    }
    match bad {
        None => checks.pass("ram-edges"),
        Some((gpa, r)) => checks.fail(
            "ram-edges",
            format_args!("RAM word GPA:{gpa:#x} did not keep a write: {r:x?}"),
        ),
    }
    let mut s = Sweep::new();
    for range in info.ram() {
        let past = range.end();
        if !info.is_described(past) && !is_emulated(past) {
            s.unbacked(past);
            s.unbacked(past + 0xFF8);
        }
    }
    n * 3 + s.report(checks, "ram-first-out")
}

fn sweep_width(info: &StartInfo, checks: &mut Checks, bits: u32, slots: u64) -> u64 {
    let top = 1u64 << bits;
    let stride = (top / slots.max(1)).max(GIB);
    let mut s = Sweep::new();
    let mut slot = WINDOW_END;
    while slot < top {
        for off in SLOT_OFFSETS {
            let gpa = slot + off;
            if gpa < top && !info.is_ram(gpa) {
                s.unbacked(gpa);
            }
        }
        slot += stride;
    }
    s.unbacked(top - 8);
    println!("hostile-mem: sweep-width: 4 GiB..2^{bits} every {stride:#x}");
    s.report(checks, "sweep-width")
}

fn device_window(info: &StartInfo, checks: &mut Checks) -> u64 {
    let mut s = Sweep::new();
    let strided = (WINDOW_START..WINDOW_END)
        .step_by(DEVICE_STRIDE as usize)
        .map(|a| a + 0x40);
    for gpa in strided.chain(DEVICE_SPOTS) {
        if !is_emulated(gpa) && !info.is_ram(gpa) {
            s.unbacked(gpa);
        }
    }
    s.report(checks, "device-window")
}

/// A #PF, or all-ones from the access; anything else (another fault, a value) fails.
fn pf_or_ones(checks: &mut Checks, name: &str, got: Touch, need_rsvd: bool) {
    match got {
        Ok((ALL_ONES, ALL_ONES)) => checks.pass(name),
        Err(f) if f.vector == PF && (!need_rsvd || f.error_code & PF_RSVD != 0) => {
            println!("hostile-mem: {name}: {f}");
            checks.pass(name)
        }
        Ok((a, b)) => checks.fail(name, format_args!("read {a:#x}, after a write {b:#x}")),
        Err(f) => checks.fail(name, format_args!("raised {f}")),
    }
}

fn bent_tables(info: &StartInfo, checks: &mut Checks, bits: u32) -> u64 {
    let mut n = 0;
    if bits < 52 {
        let got = touch(window::map(1u64 << bits));
        pf_or_ones(checks, "pte-beyond-width", got, true);
        n += 1;
    }
    let absent = [0xE000_0000u64, 16 * GIB];
    let levels = [
        (Level::Pd, "table-absent-pd"),
        (Level::Pdpt, "table-absent-pdpt"),
        (Level::Pml4, "table-absent-pml4"),
    ];
    for (level, name) in levels {
        let mut worst = None;
        for gpa in absent {
            if info.is_described(gpa) {
                continue;
            }
            let got = touch(window::bend(level, gpa) + 0x238);
            window::straighten();
            n += 1;
            let ok =
                matches!(got, Ok((ALL_ONES, ALL_ONES))) || matches!(got, Err(f) if f.vector == PF);
            if !ok {
                worst.get_or_insert(got);
            }
        }
        pf_or_ones(
            checks,
            name,
            worst.unwrap_or(Ok((ALL_ONES, ALL_ONES))),
            false,
        );
    }
    // A page table inside a device. Hardware would read the device's registers as entries;
    // a hypervisor that emulates the instruction must not send the instruction's access to
    // the register under the *entry* (a write through such a table would program the device
    // with whatever the guest stored): the access reads all-ones, or the walk faults.
    for (gpa, name) in [(LAPIC, "table-in-apic"), (IOAPIC, "table-in-ioapic")] {
        let va = window::bend(Level::Pd, gpa);
        // PT index 0x1A: entry offset 0xD0, the APIC's LDR; index 0 is the I/O APIC's IOREGSEL.
        let got = catch(|| read64(va + 0x1A * 0x1000 + 0x20));
        window::straighten();
        n += 1;
        match got {
            Ok(ALL_ONES) => checks.pass(name),
            Ok(v) => checks.fail(
                name,
                format_args!("read {v:#x} (a device register under the walk?), expected all-ones"),
            ),
            Err(f) if f.vector == PF => {
                println!("hostile-mem: {name}: {f}");
                checks.pass(name)
            }
            Err(f) => checks.fail(name, format_args!("raised {f}")),
        }
    }
    n += table_in_ioapic_write(checks);
    n
}

/// A 32-bit write through a page table that lies on the I/O APIC's IOREGSEL must not reach
/// IOREGSEL.
fn table_in_ioapic_write(checks: &mut Checks) -> u64 {
    const NAME: &str = "table-in-ioapic-write";
    const MARK: u32 = 0x2A;
    // SAFETY: the I/O APIC page is identity-mapped uncacheable by the boot stub; IOREGSEL only
    // selects the register the next data access reaches.
    let before = unsafe { guest_rt::mmio::read32(IOAPIC) };
    let va = window::bend(Level::Pd, IOAPIC);
    // SAFETY: the store goes through the bent table; where it lands is what is checked.
    let got = catch(|| unsafe { guest_rt::mmio::write32(va + 0x10, MARK) });
    window::straighten();
    // SAFETY: as above.
    let after = unsafe { guest_rt::mmio::read32(IOAPIC) };
    // SAFETY: as above: put the selector back.
    unsafe { guest_rt::mmio::write32(IOAPIC, before) };
    match got {
        Ok(()) | Err(Fault { vector: PF, .. }) if after == before => checks.pass(NAME),
        Ok(()) => checks.fail(
            NAME,
            format_args!(
                "IOREGSEL {before:#x} -> {after:#x}: the store reached the device under the walk"
            ),
        ),
        Err(f) => checks.fail(
            NAME,
            format_args!("raised {f}; IOREGSEL {before:#x} -> {after:#x}"),
        ),
    }
    2
}

fn main(info: &'static StartInfo) -> ! {
    let slots = number(&info.args(), "slots", DEFAULT_SLOTS);
    let bits = (cpuid(0x8000_0008, 0).eax & 0xFF).clamp(32, 52);
    println!("hostile-mem: {bits} physical address bits");
    let start = rdtsc();
    window::init();
    let mut checks = Checks::new("hostile-mem");
    let mut iterations = ram_edges(info, &mut checks);
    iterations += sweep_width(info, &mut checks, bits, slots);
    iterations += device_window(info, &mut checks);
    iterations += bent_tables(info, &mut checks, bits);
    checks.hostile_summary(iterations, ms_since(start));
    checks.finish()
}
