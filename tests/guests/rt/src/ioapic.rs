//! An I/O APIC (82093AA and its successors): reading its identity and programming redirection
//! entries, so a device line (GSI) reaches a local APIC as a vector.
//!
//! Registers are indirect: write the index to IOREGSEL (offset 0x00), then read or write IOWIN
//! (offset 0x10) (82093AA datasheet §3.1). Every access is one explicit MOV ([`crate::mmio`]).

use core::fmt;

use crate::mmio;

/// Where PCs, QEMU and Bulkhead put the first I/O APIC.
pub const DEFAULT_BASE: u64 = 0xFEC0_0000;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Indirect registers (datasheet §3.2).
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
/// Version register: maximum redirection entry in bits 23:16.
const VERSION_MAX_ENTRY_SHIFT: u32 = 16;

/// Redirection entry bits (datasheet §3.2.4).
const RTE_POLARITY_LOW: u32 = 1 << 13;
const RTE_REMOTE_IRR: u32 = 1 << 14;
const RTE_TRIGGER_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;
const RTE_DEST_SHIFT: u32 = 24;

/// How a line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    /// Level-triggered lines stay blocked (remote IRR) until the local APIC's EOI.
    Level,
}

/// Which level or edge is "asserted".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    ActiveHigh,
    ActiveLow,
}

/// A redirection entry in fixed delivery mode, physical destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub vector: u8,
    pub trigger: Trigger,
    pub polarity: Polarity,
    /// Physical APIC ID of the CPU that gets the interrupt.
    pub dest_apic_id: u8,
    pub is_masked: bool,
}

/// A GSI the I/O APIC has no entry for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSuchPin {
    pub pin: u32,
    pub pins: u32,
}

impl fmt::Display for NoSuchPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "I/O APIC pin {} does not exist (it has {} pins)",
            self.pin, self.pins
        )
    }
}

/// One I/O APIC's register window.
#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    base: u64,
}

impl IoApic {
    /// A handle on the I/O APIC at `base`.
    ///
    /// # Safety
    /// `base` must be the identity-mapped, uncacheable register window of an I/O APIC (or
    /// unbacked space, which reads all-ones or zeros and drops writes), and nothing else may
    /// program it concurrently (IOREGSEL is shared state).
    pub unsafe fn new(base: u64) -> Self {
        Self { base }
    }

    /// The window's address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Reads indirect register `index`.
    pub fn read(&self, index: u32) -> u32 {
        // SAFETY: `new`'s contract: this is an I/O APIC window we alone program.
        unsafe {
            mmio::write32(self.base + IOREGSEL, index);
            mmio::read32(self.base + IOWIN)
        }
    }

    /// Writes indirect register `index`.
    pub fn write(&self, index: u32, value: u32) {
        // SAFETY: as for `read`.
        unsafe {
            mmio::write32(self.base + IOREGSEL, index);
            mmio::write32(self.base + IOWIN, value);
        }
    }

    /// The ID register's 4-bit ID.
    pub fn id(&self) -> u8 {
        ((self.read(REG_ID) >> 24) & 0xF) as u8
    }

    /// The version register (version in bits 7:0, maximum entry in 23:16).
    pub fn version(&self) -> u32 {
        self.read(REG_VERSION)
    }

    /// Number of redirection entries (pins).
    pub fn pins(&self) -> u32 {
        ((self.version() >> VERSION_MAX_ENTRY_SHIFT) & 0xFF) + 1
    }

    fn check_pin(&self, pin: u32) -> Result<(), NoSuchPin> {
        let pins = self.pins();
        if pin < pins {
            Ok(())
        } else {
            Err(NoSuchPin { pin, pins })
        }
    }

    /// The raw 64-bit redirection entry of `pin`.
    pub fn entry(&self, pin: u32) -> Result<u64, NoSuchPin> {
        self.check_pin(pin)?;
        let low = self.read(REG_REDIRECTION + 2 * pin);
        let high = self.read(REG_REDIRECTION + 2 * pin + 1);
        Ok((u64::from(high) << 32) | u64::from(low))
    }

    /// Programs `pin` with `route`. The entry is masked while its halves are written, so no
    /// half-written entry can deliver.
    pub fn set_route(&self, pin: u32, route: Route) -> Result<(), NoSuchPin> {
        self.check_pin(pin)?;
        let mut low = u32::from(route.vector);
        if route.trigger == Trigger::Level {
            low |= RTE_TRIGGER_LEVEL;
        }
        if route.polarity == Polarity::ActiveLow {
            low |= RTE_POLARITY_LOW;
        }
        self.write(REG_REDIRECTION + 2 * pin, low | RTE_MASKED);
        self.write(
            REG_REDIRECTION + 2 * pin + 1,
            u32::from(route.dest_apic_id) << RTE_DEST_SHIFT,
        );
        if !route.is_masked {
            self.write(REG_REDIRECTION + 2 * pin, low);
        }
        Ok(())
    }

    /// Sets or clears the mask bit of `pin`, keeping the rest of its entry.
    pub fn set_masked(&self, pin: u32, is_masked: bool) -> Result<(), NoSuchPin> {
        self.check_pin(pin)?;
        let low = self.read(REG_REDIRECTION + 2 * pin);
        let low = if is_masked {
            low | RTE_MASKED
        } else {
            low & !RTE_MASKED
        };
        self.write(REG_REDIRECTION + 2 * pin, low);
        Ok(())
    }

    /// Whether `pin`'s remote IRR is set (a level interrupt delivered and not yet EOIed).
    pub fn is_remote_irr(&self, pin: u32) -> Result<bool, NoSuchPin> {
        Ok(self.entry(pin)? as u32 & RTE_REMOTE_IRR != 0)
    }
}
