//! An emulated I/O APIC (82093AA) at `layout::IOAPIC_BASE`: routes the guest's device interrupt
//! lines (GSIs 0..`IOAPIC_PINS`) to its local APICs.
//!
//! Devices report line levels with [`IoApic::set_line`]; the answer is the message to deliver,
//! which the VMM routes with `Lapic::is_target` and `Lapic::accept`. Level-triggered lines
//! stay blocked by remote IRR until the local APIC's EOI comes back through [`IoApic::eoi`].
//! Line levels are logical (true = asserted): the polarity bit is kept for the guest to read
//! but the devices behind the pins are Bulkhead's own and assert the way the guest expects.

#![forbid(unsafe_code)]

use alloc::vec::Vec;

use crate::devices::lapic::{DeliveryMode, Destination};
use crate::layout::IOAPIC_PINS;

/// Size of the register window at `layout::IOAPIC_BASE`.
pub const MMIO_SIZE: u64 = 0x1000;

const PINS: usize = IOAPIC_PINS as usize;

// Memory-mapped registers (82093AA datasheet §3.0; the EOI register is version 0x20's).
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const IOEOI: u64 = 0x40;

// Indirect registers (datasheet §3.2).
const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION: u8 = 0x10;

const VERSION: u32 = 0x20;
const MAX_ENTRY_SHIFT: u32 = 16;
const ID_SHIFT: u32 = 24;
/// The ID is 4 bits (27:24).
const ID_BITS: u32 = 0xF;

// Redirection table entry bits (datasheet §3.2.4).
const RTE_MODE_SHIFT: u32 = 8;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_TRIGGER_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 56;
/// Vector, delivery mode, destination mode, polarity, trigger mode and mask; delivery status
/// (12) and remote IRR (14) are read-only.
const RTE_WRITABLE_LOW: u64 = 0x1_AFFF;
/// Destination field, bits 63:56.
const RTE_WRITABLE_HIGH: u64 = 0xFF << RTE_DEST_SHIFT;
/// Physical destination 0xFF addresses every local APIC.
const PHYSICAL_BROADCAST: u32 = 0xFF;

/// An interrupt message for the local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Physical APIC id or logical destination address, per the entry's destination mode.
    pub dest: Destination,
    /// What to deliver (the vector is inside `Fixed`/`LowestPriority`).
    pub mode: DeliveryMode,
    /// Level-triggered: the target sets its TMR bit and its EOI must reach [`IoApic::eoi`].
    pub level_triggered: bool,
}

/// One guest's I/O APIC.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u8,
    select: u8,
    redirection: [u64; PINS],
    asserted: [bool; PINS],
}

impl IoApic {
    /// An I/O APIC after reset: every entry masked, all lines low. `id` is what the guest's
    /// MADT says (4 bits).
    pub fn new(id: u8) -> Self {
        Self {
            id: id & ID_BITS as u8,
            select: 0,
            redirection: [RTE_MASKED; PINS],
            asserted: [false; PINS],
        }
    }

    /// The message that entry `pin` sends, if its delivery mode is a valid one.
    fn message(&self, pin: usize) -> Option<Delivery> {
        let rte = self.redirection[pin];
        let dest_field = (rte >> RTE_DEST_SHIFT) as u32;
        let dest = if rte & RTE_DEST_LOGICAL != 0 {
            Destination::Logical(dest_field)
        } else if dest_field == PHYSICAL_BROADCAST {
            Destination::AllIncludingSelf
        } else {
            Destination::Physical(dest_field)
        };
        // Start-up is reserved here, like 011b.
        let mode = DeliveryMode::decode((rte >> RTE_MODE_SHIFT) as u32, rte as u8)
            .filter(|m| !matches!(m, DeliveryMode::Startup(_)))?;
        Some(Delivery {
            dest,
            mode,
            level_triggered: rte & RTE_TRIGGER_LEVEL != 0,
        })
    }

    /// Delivers an asserted, unmasked level-triggered line unless remote IRR still blocks it.
    fn deliver_level(&mut self, pin: usize) -> Option<Delivery> {
        let rte = self.redirection[pin];
        if !self.asserted[pin] || rte & (RTE_MASKED | RTE_REMOTE_IRR) != 0 {
            return None;
        }
        let delivery = self.message(pin)?;
        self.redirection[pin] |= RTE_REMOTE_IRR;
        Some(delivery)
    }

    /// A device drives line `gsi` to `level`. Edge-triggered entries deliver on the rising
    /// edge; level-triggered ones while asserted and not blocked by remote IRR. Masked entries
    /// deliver nothing (a level line still asserted is delivered once unmasked). Out-of-range
    /// lines are ignored.
    pub fn set_line(&mut self, gsi: u32, level: bool) -> Option<Delivery> {
        let pin = usize::try_from(gsi).ok().filter(|&p| p < PINS)?;
        let was_asserted = core::mem::replace(&mut self.asserted[pin], level);
        let rte = self.redirection[pin];
        if rte & RTE_TRIGGER_LEVEL != 0 {
            self.deliver_level(pin)
        } else if level && !was_asserted && rte & RTE_MASKED == 0 {
            self.message(pin)
        } else {
            None
        }
    }

    /// A local APIC ended level-triggered `vector`: clear remote IRR of the entries using it and
    /// deliver again those whose line is still asserted.
    pub fn eoi(&mut self, vector: u8) -> Vec<Delivery> {
        let mut again = Vec::new();
        for pin in 0..PINS {
            let rte = self.redirection[pin];
            if rte as u8 == vector && rte & RTE_REMOTE_IRR != 0 {
                self.redirection[pin] &= !RTE_REMOTE_IRR;
                again.extend(self.deliver_level(pin));
            }
        }
        again
    }

    /// Redirection entry and half (false = low dword) that indirect register `index` selects.
    fn entry_of(index: u8) -> Option<(usize, bool)> {
        let n = usize::from(index.checked_sub(REG_REDIRECTION)?);
        (n / 2 < PINS).then_some((n / 2, n % 2 == 1))
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARBITRATION => u32::from(self.id) << ID_SHIFT,
            REG_VERSION => VERSION | ((IOAPIC_PINS - 1) << MAX_ENTRY_SHIFT),
            _ => match Self::entry_of(index) {
                Some((pin, true)) => (self.redirection[pin] >> 32) as u32,
                Some((pin, false)) => self.redirection[pin] as u32,
                None => 0,
            },
        }
    }

    fn write_register(&mut self, index: u8, value: u32) -> Option<Delivery> {
        if index == REG_ID {
            self.id = ((value >> ID_SHIFT) & ID_BITS) as u8;
            return None;
        }
        let (pin, is_high) = Self::entry_of(index)?;
        let old = self.redirection[pin];
        if is_high {
            self.redirection[pin] =
                (old & !RTE_WRITABLE_HIGH) | ((u64::from(value) << 32) & RTE_WRITABLE_HIGH);
            return None;
        }
        let mut rte = (old & !RTE_WRITABLE_LOW) | (u64::from(value) & RTE_WRITABLE_LOW);
        if rte & RTE_TRIGGER_LEVEL == 0 {
            // Remote IRR only means something for level-triggered entries.
            rte &= !RTE_REMOTE_IRR;
        }
        self.redirection[pin] = rte;
        if rte & RTE_TRIGGER_LEVEL != 0 {
            self.deliver_level(pin)
        } else {
            None
        }
    }

    /// Guest read at byte `offset` of the window (32-bit access); other offsets read 0.
    pub fn mmio_read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.read_register(self.select),
            _ => 0,
        }
    }

    /// Guest write at byte `offset` of the window (32-bit access); returns the interrupts the
    /// write releases (unmasking an asserted level line, an EOI). Other offsets are ignored.
    pub fn mmio_write(&mut self, offset: u64, value: u32) -> Vec<Delivery> {
        match offset {
            IOREGSEL => self.select = value as u8,
            IOWIN => {
                return self
                    .write_register(self.select, value)
                    .into_iter()
                    .collect()
            }
            IOEOI => return self.eoi(value as u8),
            _ => {}
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
