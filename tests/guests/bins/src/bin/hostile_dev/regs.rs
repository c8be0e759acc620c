//! The register storms: seeded random reads and writes into every emulated device a guest can
//! reach. Each storm is one "case"; every access is one "iteration".
//!
//! A few values are defused so this guest survives its own storm and can report: interrupt
//! messages it could send itself with a delivery mode that ends or stops it (NMI, SMI, INIT,
//! SIPI, ExtINT) are sent to "all but self" (ICR) or masked (LVTs, I/O APIC entries), the
//! exit port 0xF4 and the ACPI sleep/reset ports are left out, and raw I/O APIC writes skip
//! IOWIN (which goes through the defused path). Everything else is written as drawn.

use guest_rt::apic::{self, Mode};
use guest_rt::cpu::{inb, inl, outb, outl, rdmsr, wrmsr};
use guest_rt::ioapic::IoApic;
use guest_rt::{fault, mmio};
use guest_virtio::rng::Rng;

/// Bulkhead's emulated windows (`src/layout.rs`).
pub(crate) const VIRTIO_BASE: u64 = 0xD000_0000;
pub(crate) const VIRTIO_SLOT_BYTES: u64 = 0x1000;
pub(crate) const VIRTIO_SLOTS: u64 = 16;
pub(crate) const IOAPIC_BASE: u64 = guest_rt::ioapic::DEFAULT_BASE;
const IOAPIC_IOWIN: u64 = 0x10;
/// The first redirection-table register index (82093AA datasheet §3.2.4).
const IOAPIC_FIRST_REDIR: u32 = 0x10;
/// The redirection table of a 32-pin I/O APIC ends at 0x10 + 2 * 32; 0x50 reaches past it.
const IOAPIC_INDEX_SPAN: u64 = 0x50;
/// Register offsets in the xAPIC page that hold an LVT entry (SDM vol.3 table 11-1).
const XAPIC_LVT_CMCI: u32 = 0x2F0;
const XAPIC_LVT_FIRST: u32 = 0x320;
const XAPIC_LVT_LAST: u32 = 0x370;
const XAPIC_ICR_LOW: u32 = 0x300;
/// x2APIC MSRs: 0x800 + offset / 16 (SDM vol.3 §11.12.1.2).
const X2APIC_FIRST_MSR: u32 = 0x800;
const X2APIC_MSRS: u64 = 0x100;
const X2APIC_ICR_MSR: u32 = 0x830;
/// Delivery mode field, bits 10:8, and the modes that would stop or end this guest if aimed
/// at itself (SDM vol.3 §11.6.1): SMI, NMI, INIT, start-up, ExtINT.
const DELIVERY_SHIFT: u32 = 8;
const DANGEROUS_MODES: [u32; 5] = [0b010, 0b100, 0b101, 0b110, 0b111];
const MASKED: u32 = 1 << 16;
const SHORTHAND_ALL_BUT_SELF: u32 = 0b11 << 18;
const SHORTHAND_MASK: u32 = 0b11 << 18;
/// Ports: CMOS, COM1, and what this guest must not write (its own exit and power ports).
pub(crate) const RTC_INDEX: u16 = 0x70;
pub(crate) const RTC_DATA: u16 = 0x71;
pub(crate) const COM1: u16 = 0x3F8;
const EXIT_PORTS: core::ops::RangeInclusive<u16> = 0xF4..=0xF7;
const ACPI_PM_PORTS: core::ops::RangeInclusive<u16> = 0x600..=0x60F;

/// What one storm did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub accesses: u64,
    /// Accesses the CPU or device refused (#GP on an MSR, say).
    pub refused: u64,
}

fn is_dangerous(value: u32) -> bool {
    DANGEROUS_MODES.contains(&((value >> DELIVERY_SHIFT) & 0b111))
}

/// An ICR value that cannot reach this CPU with a mode that stops it.
fn defuse_icr(low: u32) -> u32 {
    if is_dangerous(low) {
        (low & !SHORTHAND_MASK) | SHORTHAND_ALL_BUT_SELF
    } else {
        low
    }
}

/// An LVT or redirection entry that cannot deliver a mode that stops this CPU.
fn defuse_entry(low: u32) -> u32 {
    if is_dangerous(low) {
        low | MASKED
    } else {
        low
    }
}

/// `value` for I/O APIC register `index`, defused when it is a redirection entry's low word.
fn defuse_if_redir_low(index: u32, value: u32) -> u32 {
    if index >= IOAPIC_FIRST_REDIR && index.is_multiple_of(2) {
        defuse_entry(value)
    } else {
        value
    }
}

fn is_xapic_lvt(offset: u32) -> bool {
    offset == XAPIC_LVT_CMCI
        || ((XAPIC_LVT_FIRST..=XAPIC_LVT_LAST).contains(&offset) && offset.is_multiple_of(16))
}

/// One MMIO write of `size` bytes at `addr`.
fn sized_write(addr: u64, size: u8, value: u64) {
    // SAFETY: as for `mmio_access`: an emulated device window in the MMIO hole.
    unsafe {
        match size {
            1 => mmio::write8(addr, value as u8),
            2 => mmio::write16(addr, value as u16),
            4 => mmio::write32(addr, value as u32),
            _ => mmio::write64(addr, value),
        }
    }
}

/// One MMIO access of a random size at `addr` (written or read).
fn mmio_access(rng: &mut Rng, addr: u64, value: u64, is_write: bool) {
    let size = rng.pick(&[1u8, 2, 4, 4, 8]);
    // SAFETY: every address passed here is an emulated device window (or unbacked space) in
    // the boot stub's uncacheable MMIO hole; the storm means the device effects, and the values
    // that could stop this CPU are defused by the callers.
    unsafe {
        match (size, is_write) {
            (1, true) => mmio::write8(addr, value as u8),
            (2, true) => mmio::write16(addr, value as u16),
            (4, true) => mmio::write32(addr, value as u32),
            (_, true) => mmio::write64(addr, value),
            (1, false) => {
                let _ = mmio::read8(addr);
            }
            (2, false) => {
                let _ = mmio::read16(addr);
            }
            (4, false) => {
                let _ = mmio::read32(addr);
            }
            (_, false) => {
                let _ = mmio::read64(addr);
            }
        }
    }
}

/// Every offset of the virtio-mmio windows (registers, config space, the unused rest of the
/// page, odd offsets and sizes), mostly the guest's own windows `own` (blk, net, console —
/// whatever it has), sometimes any slot.
pub(crate) fn virtio(rng: &mut Rng, own: &[u64], iterations: u64) -> Tally {
    // First every offset of the register and configuration area once, at every size, so none
    // is left to chance.
    let mut swept = 0;
    for &base in own {
        for offset in 0..0x200 {
            for size in [1u8, 2, 4, 8] {
                let value = rng.value();
                sized_write(base + offset, size, value);
                swept += 1;
            }
        }
    }
    for _ in 0..iterations {
        let base = if rng.chance(3, 4) && !own.is_empty() {
            rng.pick(own)
        } else {
            VIRTIO_BASE + rng.below(VIRTIO_SLOTS) * VIRTIO_SLOT_BYTES
        };
        let offset = if rng.chance(7, 8) {
            rng.below(0x200)
        } else {
            rng.below(VIRTIO_SLOT_BYTES)
        };
        let (value, is_write) = (rng.value(), rng.chance(3, 4));
        mmio_access(rng, base + offset, value, is_write);
    }
    Tally {
        accesses: iterations + swept,
        refused: 0,
    }
}

/// The xAPIC page: every register at 32 bits, and any offset at any size.
pub(crate) fn xapic(rng: &mut Rng, iterations: u64) -> Tally {
    if apic::enable(Mode::XApic).is_err() {
        return Tally::default();
    }
    let base = apic::DEFAULT_XAPIC_BASE;
    // Every register once, defused like the rest.
    for offset in (0..0x400u32).step_by(16) {
        let value = if offset == XAPIC_ICR_LOW {
            defuse_icr(rng.next_u32())
        } else if is_xapic_lvt(offset) {
            defuse_entry(rng.next_u32())
        } else {
            rng.next_u32()
        };
        // SAFETY: the local APIC page; dangerous values defused above.
        unsafe { mmio::write32(base + u64::from(offset), value) };
    }
    for _ in 0..iterations {
        let is_write = rng.chance(3, 4);
        if rng.chance(3, 4) {
            let offset = rng.below(0x40) as u32 * 16;
            let mut value = rng.next_u32();
            if offset == XAPIC_ICR_LOW {
                value = defuse_icr(value);
            } else if is_xapic_lvt(offset) {
                value = defuse_entry(value);
            }
            // SAFETY: the local APIC page; dangerous values defused above.
            unsafe {
                if is_write {
                    mmio::write32(base + u64::from(offset), value);
                } else {
                    {
                        let _ = mmio::read32(base + u64::from(offset));
                    };
                }
            }
        } else {
            // Misaligned or partial: dropped by the APIC; ICR and LVTs only take aligned
            // 32-bit writes, so random values here cannot send anything.
            let offset = rng.below(0x1000) | 1;
            let value = rng.value();
            mmio_access(rng, base + offset, value, is_write);
        }
    }
    Tally {
        accesses: iterations + 0x40,
        refused: 0,
    }
}

/// The x2APIC MSRs 0x800..0x8FF, read and written with random values; #GP counts as refused.
pub(crate) fn x2apic(rng: &mut Rng, iterations: u64) -> Tally {
    let mut tally = Tally::default();
    if apic::enable(Mode::X2Apic).is_err() {
        return tally;
    }
    for _ in 0..iterations {
        let msr = X2APIC_FIRST_MSR + rng.below(X2APIC_MSRS) as u32;
        let mut value = rng.value();
        if msr == X2APIC_ICR_MSR {
            value = (value & !0xFFFF_FFFF) | u64::from(defuse_icr(value as u32));
        } else if msr == X2APIC_FIRST_MSR + XAPIC_LVT_CMCI / 16
            || (X2APIC_FIRST_MSR + XAPIC_LVT_FIRST / 16..=X2APIC_FIRST_MSR + XAPIC_LVT_LAST / 16)
                .contains(&msr)
        {
            value = (value & !0xFFFF_FFFF) | u64::from(defuse_entry(value as u32));
        }
        let is_write = rng.chance(3, 4);
        // SAFETY: x2APIC registers of this CPU; dangerous values defused, #GP caught.
        let done = fault::catch(|| unsafe {
            if is_write {
                wrmsr(msr, value);
            } else {
                {
                    let _ = rdmsr(msr);
                };
            }
        });
        tally.accesses += 1;
        tally.refused += u64::from(done.is_err());
    }
    // Back through "disabled" to xAPIC, which resets every register.
    let _ = apic::enable(Mode::XApic);
    tally
}

/// The I/O APIC: IOREGSEL/IOWIN over every index (all redirection entries, with random
/// vectors and destinations this guest does not own), the EOI register, and raw accesses
/// anywhere else in its page.
pub(crate) fn ioapic(rng: &mut Rng, iterations: u64) -> Tally {
    // SAFETY: the guest's own I/O APIC at Bulkhead's address, programmed by nothing else
    // while the storm runs; every redirection entry written is defused first.
    let io = unsafe { IoApic::new(IOAPIC_BASE) };
    // Every register index once (all redirection entries and beyond), defused like the rest.
    for index in 0..0x100u32 {
        io.write(index, defuse_if_redir_low(index, rng.next_u32()));
    }
    for _ in 0..iterations {
        if rng.chance(3, 4) {
            let index = if rng.chance(7, 8) {
                rng.below(IOAPIC_INDEX_SPAN)
            } else {
                rng.below(0x100)
            } as u32;
            let value = defuse_if_redir_low(index, rng.next_u32());
            if rng.chance(3, 4) {
                io.write(index, value);
            } else {
                let _ = io.read(index);
            }
        } else {
            let mut offset = rng.below(0x1000);
            if (IOAPIC_IOWIN..IOAPIC_IOWIN + 4).contains(&offset) {
                offset += 0x10;
            }
            let (value, is_write) = (rng.value(), rng.chance(1, 2));
            mmio_access(rng, IOAPIC_BASE + offset, value, is_write);
        }
    }
    Tally {
        accesses: iterations + 0x100,
        refused: 0,
    }
}

/// The CMOS clock: every index (with and without the NMI-disable bit), random data.
pub(crate) fn rtc(rng: &mut Rng, iterations: u64) -> Tally {
    // Every index once, with and without the NMI-disable bit.
    for index in 0..=0xFFu8 {
        let value = rng.next_u32() as u8;
        // SAFETY: the guest's emulated CMOS.
        unsafe {
            outb(RTC_INDEX, index);
            outb(RTC_DATA, value);
        }
    }
    for _ in 0..iterations {
        let index = rng.next_u32() as u8;
        let value = rng.next_u32() as u8;
        // SAFETY: the guest's emulated CMOS; no value written there stops the CPU.
        unsafe {
            outb(RTC_INDEX, index);
            if rng.chance(1, 2) {
                outb(RTC_DATA, value);
            } else {
                {
                    let _ = inb(RTC_DATA);
                };
            }
        }
    }
    Tally {
        accesses: iterations + 0x100,
        refused: 0,
    }
}

/// COM1: every register, DLAB on and off, loopback, random bytes into the transmitter
/// (bounded so the log stays readable).
pub(crate) fn uart(rng: &mut Rng, iterations: u64) -> Tally {
    for _ in 0..iterations {
        let offset = rng.below(8) as u16;
        let value = rng.next_u32() as u8;
        // SAFETY: the guest's emulated 16550; the caller restores it before printing again.
        unsafe {
            if rng.chance(3, 4) {
                outb(COM1 + offset, value);
            } else {
                {
                    let _ = inb(COM1 + offset);
                };
            }
        }
    }
    Tally {
        accesses: iterations,
        refused: 0,
    }
}

/// Ports with nothing behind them (all but COM1, the CMOS, the exit and power ports), 8 and 32
/// bits, and a few string (INS/OUTS) accesses.
pub(crate) fn ports(rng: &mut Rng, iterations: u64, scratch: u64) -> Tally {
    for i in 0..iterations {
        let port = rng.next_u32() as u16;
        if EXIT_PORTS.contains(&port)
            || ACPI_PM_PORTS.contains(&port)
            || (COM1..COM1 + 8).contains(&port)
            || port == RTC_INDEX
            || port == RTC_DATA
        {
            continue;
        }
        let value = rng.next_u32();
        // SAFETY: ports with no device of this guest behind them (or ones Bulkhead ignores);
        // string accesses read from and write to this guest's own scratch page, 16 bytes.
        unsafe {
            match i % 16 {
                0 => core::arch::asm!("rep outsb", inout("rcx") 16u64 => _,
                    inout("rsi") scratch => _, in("dx") port, options(nostack)),
                1 => core::arch::asm!("rep insb", inout("rcx") 16u64 => _,
                    inout("rdi") scratch => _, in("dx") port, options(nostack)),
                2..=7 => outb(port, value as u8),
                8..=11 => outl(port, value),
                12..=13 => {
                    let _ = inb(port);
                }
                _ => {
                    let _ = inl(port);
                }
            }
        }
    }
    Tally {
        accesses: iterations,
        refused: 0,
    }
}

/// Puts COM1 back to 8N1, no interrupts, FIFO on, loopback off, so printing works again.
pub(crate) fn restore_uart() {
    // SAFETY: programming the guest's own emulated UART to its usual state.
    unsafe {
        outb(COM1 + 3, 0x03);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 2, 0x07);
        outb(COM1 + 4, 0x03);
        // End whatever partial line the storm left, so the next marker starts a line.
        outb(COM1, b'\n');
    }
}
