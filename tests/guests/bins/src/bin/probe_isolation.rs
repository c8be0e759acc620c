//! `probe-isolation`: touches guest-physical addresses outside its RAM and checks they behave
//! like unpopulated hardware: every read returns all-ones, every write is dropped (reads back
//! all-ones), and no access faults.
//!
//! Checks: `ram-edge` (the last RAM word is RAM, the first undescribed word past RAM is not),
//! `sweep` (every 16 MiB, at three offsets, from RAM's end to `top`, outside the PCI hole) and
//! `pci-hole` (every 1 MiB, at three offsets, over 0xC000_0000..4 GiB). Memory-map ranges and
//! emulated device windows (virtio-mmio, I/O APIC, local APIC) are skipped.
//!
//! Command line: `expect=bulkhead|bare` (default: bulkhead when the hypervisor leaf says so);
//! bare also skips QEMU's own platform devices and firmware. `top=ADDR` (default 64 GiB),
//! `skip=START-END` (repeatable, END exclusive) for more windows to leave alone.

#![no_std]
#![no_main]

use guest_rt::cmdline::parse_u64;
use guest_rt::fault::{catch, Fault};
use guest_rt::paging::{make_uncached, map_high_uncached, HighMapping};
use guest_rt::{boot, cpu, exit, println, Checks, StartInfo};

guest_rt::guest!("probe-isolation", main);

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DEFAULT_TOP: u64 = 64 * GIB;
const SWEEP_STRIDE: u64 = 16 * MIB;
const SWEEP_OFFSETS: [u64; 3] = [0, 0x1238, SWEEP_STRIDE - 8];
const HOLE_START: u64 = boot::MMIO_HOLE_START;
const HOLE_END: u64 = 4 * GIB;
const HOLE_STRIDE: u64 = MIB;
const HOLE_OFFSETS: [u64; 3] = [0, 0x7F8, HOLE_STRIDE - 8];
const ALL_ONES: u64 = u64::MAX;
/// A value no unbacked address returns, so a write that sticks is visible.
const WRITE_PATTERN: u64 = 0x5AA5_0FF0_C33C_9669;
const MAX_REPORTED: usize = 8;
const MAX_EXTRA_SKIPS: usize = 8;
/// Scratch RAM for 2 MiB-page tables when the CPU lacks 1 GiB pages: one 4 KiB table per GiB.
const SCRATCH_BYTES: u64 = 512 * 4096;

/// A half-open physical range left alone.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
    name: &'static str,
}

/// Device windows a Bulkhead guest has emulated (see the hypervisor's guest address map).
const EMULATED: [Window; 3] = [
    Window {
        start: 0xD000_0000,
        end: 0xD001_0000,
        name: "virtio-mmio",
    },
    Window {
        start: 0xFEC0_0000,
        end: 0xFEC0_1000,
        name: "I/O APIC",
    },
    Window {
        start: 0xFEE0_0000,
        end: 0xFEE0_1000,
        name: "local APIC",
    },
];

/// What plain QEMU (`pc` machine) puts in the PCI hole besides the above: PCI BARs that the
/// firmware assigns top-down from just below the I/O APIC (VGA's 16 MiB framebuffer lands at
/// 0xFD00_0000), the HPET, and the firmware flash below 4 GiB.
const QEMU_PLATFORM: [Window; 3] = [
    Window {
        start: 0xFD00_0000,
        end: 0xFEC0_0000,
        name: "QEMU PCI BARs",
    },
    Window {
        start: 0xFED0_0000,
        end: 0xFED0_1000,
        name: "QEMU HPET",
    },
    Window {
        start: 0xFF00_0000,
        end: HOLE_END,
        name: "QEMU firmware",
    },
];

struct Skips {
    extra: [Option<Window>; MAX_EXTRA_SKIPS],
    is_bare: bool,
}

impl Skips {
    fn unbacked(&self) -> Unbacked {
        if self.is_bare {
            Unbacked::OnesOrZeros
        } else {
            Unbacked::Ones
        }
    }

    fn windows(&self) -> impl Iterator<Item = &Window> {
        let bare: &[Window] = if self.is_bare { &QEMU_PLATFORM } else { &[] };
        EMULATED
            .iter()
            .chain(bare)
            .chain(self.extra.iter().flatten())
    }

    fn covers(&self, info: &StartInfo, addr: u64) -> bool {
        info.is_described(addr)
            || info.is_described(addr + 7)
            || self.windows().any(|w| addr + 8 > w.start && addr < w.end)
    }
}

/// An address that did not behave like unpopulated hardware.
#[derive(Clone, Copy)]
enum Offence {
    Read { bits: u32, value: u64 },
    WriteStuck { bits: u32, value: u64 },
    Faulted(Fault),
}

struct Tally {
    unbacked: Unbacked,
    probes: u64,
    offenders: u64,
    first: [Option<(u64, Offence)>; MAX_REPORTED],
}

impl Tally {
    fn new(unbacked: Unbacked) -> Self {
        Self {
            unbacked,
            probes: 0,
            offenders: 0,
            first: [None; MAX_REPORTED],
        }
    }

    fn probe(&mut self, addr: u64) {
        self.probes += 1;
        let offence = match catch(|| probe_unbacked(addr, self.unbacked)) {
            Ok(Ok(())) => return,
            Ok(Err(offence)) => offence,
            Err(fault) => Offence::Faulted(fault),
        };
        if let Some(slot) = self.first.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some((addr, offence));
        }
        self.offenders += 1;
    }

    /// Passes or fails `check`, listing the first offenders.
    fn report(&self, checks: &mut Checks, check: &str) {
        println!(
            "probe-isolation: {check}: {} probes, {} offenders",
            self.probes, self.offenders
        );
        for (addr, offence) in self.first.iter().flatten() {
            match offence {
                Offence::Read { bits, value } => println!(
                    "probe-isolation: {check}: GPA:{addr:#x} read{bits} returned {value:#x}"
                ),
                Offence::WriteStuck { bits, value } => println!(
                    "probe-isolation: {check}: GPA:{addr:#x} write{bits} stuck, read back {value:#x}"
                ),
                Offence::Faulted(fault) => {
                    println!("probe-isolation: {check}: GPA:{addr:#x} access raised {fault}")
                }
            }
        }
        if self.offenders == 0 {
            checks.pass(check);
        } else {
            let (addr, _) = self.first[0].unwrap_or((0, Offence::Read { bits: 0, value: 0 }));
            checks.fail(
                check,
                format_args!(
                    "{} of {} probes misbehaved, first at GPA:{addr:#x}",
                    self.offenders, self.probes
                ),
            );
        }
    }
}

fn read64(addr: u64) -> u64 {
    // SAFETY: `addr` is identity-mapped uncacheable and holds no RAM of ours: the read
    // reaches whatever (if anything) backs the address, which is the point of the probe.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn read32(addr: u64) -> u64 {
    // SAFETY: as for read64.
    u64::from(unsafe { core::ptr::read_volatile(addr as *const u32) })
}

fn read8(addr: u64) -> u64 {
    // SAFETY: as for read64.
    u64::from(unsafe { core::ptr::read_volatile(addr as *const u8) })
}

fn write64(addr: u64, value: u64) {
    // SAFETY: as for read64; the address is outside this guest's RAM, image and tables.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
}

fn write8(addr: u64, value: u8) {
    // SAFETY: as for write64.
    unsafe { core::ptr::write_volatile(addr as *mut u8, value) };
}

/// One read width of a probe: bits, the reader, and the all-ones value at that width.
type ReadWidth = (u32, fn(u64) -> u64, u64);

/// What reads of unbacked addresses may return.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unbacked {
    /// All-ones only: what Bulkhead promises, like a PCI master abort on hardware.
    Ones,
    /// All-ones or all-zeros: plain QEMU (7.x) reads unassigned memory as zeros.
    OnesOrZeros,
}

impl Unbacked {
    fn allows(self, value: u64, mask: u64) -> bool {
        value == mask || (self == Unbacked::OnesOrZeros && value == 0)
    }
}

/// Reads at three widths, then writes at two and reads back: unpopulated means the reads give
/// the "floating" value and the writes change nothing.
fn probe_unbacked(addr: u64, unbacked: Unbacked) -> Result<(), Offence> {
    let reads: [ReadWidth; 3] = [
        (64, read64, ALL_ONES),
        (32, read32, 0xFFFF_FFFF),
        (8, read8, 0xFF),
    ];
    for (bits, read, mask) in reads {
        let value = read(addr);
        if !unbacked.allows(value, mask) {
            return Err(Offence::Read { bits, value });
        }
    }
    let before = read64(addr);
    write64(addr, WRITE_PATTERN);
    let value = read64(addr);
    if value != before {
        return Err(Offence::WriteStuck { bits: 64, value });
    }
    let before = read8(addr + 1);
    write8(addr + 1, !(before as u8));
    let value = read8(addr + 1);
    if value != before {
        return Err(Offence::WriteStuck { bits: 8, value });
    }
    Ok(())
}

/// The first address at or above `addr` that no memory-map range describes.
fn first_undescribed(info: &StartInfo, mut addr: u64) -> u64 {
    while let Some(range) = info.memmap().iter().find(|r| r.contains(addr)) {
        addr = range.end();
    }
    addr
}

fn check_ram_edge(info: &StartInfo, ram_end: u64, skips: &Skips, checks: &mut Checks) {
    let last = (ram_end - 8) & !7;
    // SAFETY: `last` is the final aligned word of a RAM range in the memory map; the value is
    // put back at once and nothing else of ours lives there concurrently.
    let saved = unsafe { core::ptr::read_volatile(last as *const u64) };
    write64(last, WRITE_PATTERN);
    let back = read64(last);
    write64(last, saved);
    checks.expect(
        "ram-edge-ram",
        back == WRITE_PATTERN,
        format_args!(
            "last RAM word GPA:{last:#x} read back {back:#x} after writing {WRITE_PATTERN:#x}"
        ),
    );
    let beyond = first_undescribed(info, ram_end);
    println!("probe-isolation: RAM ends at GPA:{ram_end:#x}; first undescribed GPA:{beyond:#x}");
    let mut tally = Tally::new(skips.unbacked());
    if !skips.covers(info, beyond) {
        tally.probe(beyond);
    }
    tally.report(checks, "ram-edge-beyond");
}

fn parse_skips(info: &StartInfo, is_bare: bool) -> Skips {
    let mut skips = Skips {
        extra: [None; MAX_EXTRA_SKIPS],
        is_bare,
    };
    for (n, value) in info.args().values("skip").enumerate() {
        let window = value.split_once('-').and_then(|(start, end)| {
            Some(Window {
                start: parse_u64(start)?,
                end: parse_u64(end)?,
                name: "skip=",
            })
        });
        match (window, skips.extra.get_mut(n)) {
            (Some(window), Some(slot)) => *slot = Some(window),
            (None, _) => {
                println!("FAIL probe-isolation: command line skip={value:?}: expected START-END");
                exit(1)
            }
            (_, None) => {
                println!("FAIL probe-isolation: more than {MAX_EXTRA_SKIPS} skip= windows");
                exit(1)
            }
        }
    }
    skips
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let is_bare = match args.get("expect") {
        Some("bare") => true,
        Some("bulkhead") => false,
        None => !cpu::is_bulkhead(),
        Some(other) => {
            println!(
                "FAIL probe-isolation: command line expect={other:?}: expected bulkhead or bare"
            );
            exit(1)
        }
    };
    let top = match args.get_u64("top") {
        Ok(top) => top.unwrap_or(DEFAULT_TOP),
        Err(err) => {
            println!("FAIL probe-isolation: {err}");
            exit(1)
        }
    };
    let Some(ram_end) = info.ram_end() else {
        println!("FAIL probe-isolation: start info has no memory map, so RAM size is unknown");
        exit(1)
    };
    let skips = parse_skips(info, is_bare);
    println!(
        "probe-isolation: mode {}, {} KiB RAM, probing up to GPA:{top:#x}, unbacked reads must be {}",
        if is_bare { "bare" } else { "bulkhead" },
        info.ram_bytes() / 1024,
        if is_bare { "all-ones or zeros" } else { "all-ones" },
    );
    for window in skips.windows() {
        println!(
            "probe-isolation: skipping {:#x}-{:#x} ({})",
            window.start, window.end, window.name
        );
    }

    // Page tables for the probe: unbacked space below 4 GiB becomes uncacheable, and the map
    // grows to `top`. 2 MiB-page tables, if needed, go in RAM just above the image.
    let low_ram_end = info
        .ram()
        .filter(|r| r.base < HOLE_START)
        .map(|r| r.end())
        .max();
    make_uncached(low_ram_end.unwrap_or(0), HOLE_START);
    let (_, image_end) = boot::image_range();
    let scratch = image_end.div_ceil(4096) * 4096;
    let scratch_bytes = if info.is_ram(scratch) && info.is_ram(scratch + SCRATCH_BYTES - 1) {
        SCRATCH_BYTES
    } else {
        0
    };
    // SAFETY: the scratch range is RAM above the image that this guest uses for nothing else.
    match unsafe { map_high_uncached(top, scratch, scratch_bytes) } {
        Ok(HighMapping::Huge1G) => println!("probe-isolation: mapped high space with 1 GiB pages"),
        Ok(HighMapping::Large2M { tables }) => {
            println!("probe-isolation: mapped high space with 2 MiB pages ({tables} tables)")
        }
        Err(err) => {
            println!("FAIL probe-isolation: {err}");
            exit(1)
        }
    }

    let mut checks = Checks::new("probe-isolation");
    check_ram_edge(info, ram_end, &skips, &mut checks);

    let mut sweep = Tally::new(skips.unbacked());
    // From 16 MiB up (legacy space below is not probed); RAM is skipped as described.
    let mut stride = SWEEP_STRIDE;
    while stride < top {
        if !(HOLE_START..HOLE_END).contains(&stride) {
            for offset in SWEEP_OFFSETS {
                let addr = stride + offset;
                if addr < top && !skips.covers(info, addr) {
                    sweep.probe(addr);
                }
            }
        }
        stride += SWEEP_STRIDE;
    }
    sweep.report(&mut checks, "sweep");

    let mut hole = Tally::new(skips.unbacked());
    for stride in (HOLE_START..HOLE_END).step_by(HOLE_STRIDE as usize) {
        for offset in HOLE_OFFSETS {
            let addr = stride + offset;
            if !skips.covers(info, addr) {
                hole.probe(addr);
            }
        }
    }
    hole.report(&mut checks, "pci-hole");
    checks.finish()
}
