//! A virtio device's interrupt, end to end: its GSI routed through the I/O APIC (level-
//! triggered, active high, to this CPU) to a vector whose handler acknowledges the device
//! (InterruptStatus → InterruptACK, which lowers the line) before the local APIC's EOI (which
//! clears the I/O APIC's remote IRR). Delivery counts come from [`guest_rt::irq::count`].

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_rt::idt::ExceptionFrame;
use guest_rt::ioapic::{IoApic, NoSuchPin, Polarity, Route, Trigger, DEFAULT_BASE};
use guest_rt::{apic, irq};

use crate::window::{reg, Window};

/// Devices whose interrupts can be routed at once.
const MAX_DEVICES: usize = 4;

/// Window base per routed device (0 = free slot), its vector, and the InterruptStatus bits seen.
static BASES: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
static VECTORS: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];
static STATUS_SEEN: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];

/// Why a device interrupt could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The window's GSI is unknown (give `virtio=ADDR@GSI`).
    NoGsi {
        base: u64,
    },
    Pin(NoSuchPin),
    /// Too many devices routed.
    Full,
    Vector(irq::ExceptionVector),
    /// The local APIC was not enabled (`apic::enable`) first.
    NoApic,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoGsi { base } => write!(
                f,
                "interrupt line of virtio window {base:#x} unknown: give virtio=ADDR@GSI"
            ),
            Self::Pin(e) => e.fmt(f),
            Self::Full => write!(f, "more than {MAX_DEVICES} device interrupts routed"),
            Self::Vector(e) => e.fmt(f),
            Self::NoApic => f.write_str("the local APIC must be enabled before routing"),
        }
    }
}

/// A routed device interrupt.
#[derive(Clone, Copy, Debug)]
pub struct DeviceIrq {
    pub vector: u8,
    pub gsi: u32,
    slot: usize,
}

impl DeviceIrq {
    /// Interrupts delivered so far.
    pub fn count(&self) -> u64 {
        irq::count(self.vector)
    }

    /// InterruptStatus bits the handler has acknowledged, ORed together.
    pub fn status_seen(&self) -> u32 {
        STATUS_SEEN[self.slot].load(Ordering::SeqCst)
    }
}

fn on_device_interrupt(frame: &mut ExceptionFrame) {
    let vector = frame.vector as u32;
    for slot in 0..MAX_DEVICES {
        let base = BASES[slot].load(Ordering::SeqCst);
        if base == 0 || VECTORS[slot].load(Ordering::SeqCst) != vector {
            continue;
        }
        // SAFETY: `route` only records windows made by `Window::new`, whose contract covers
        // these register accesses.
        let window = unsafe { Window::new(base, None) };
        let status = window.read(reg::INTERRUPT_STATUS);
        window.write(reg::INTERRUPT_ACK, status);
        STATUS_SEEN[slot].fetch_or(status, Ordering::SeqCst);
    }
    apic::eoi();
}

/// Routes `window`'s GSI to `vector` on this CPU through the first I/O APIC.
pub fn route(window: &Window, vector: u8) -> Result<DeviceIrq, RouteError> {
    let gsi = window.gsi().ok_or(RouteError::NoGsi {
        base: window.base(),
    })?;
    if apic::mode().is_none() {
        return Err(RouteError::NoApic);
    }
    let slot = (0..MAX_DEVICES)
        .find(|&i| {
            BASES[i]
                .compare_exchange(0, window.base(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
        .ok_or(RouteError::Full)?;
    VECTORS[slot].store(u32::from(vector), Ordering::SeqCst);
    irq::set_handler(vector, on_device_interrupt).map_err(RouteError::Vector)?;
    // SAFETY: the first I/O APIC's window is in the MMIO hole, and only this module programs
    // it in the guests.
    let ioapic = unsafe { IoApic::new(DEFAULT_BASE) };
    let route = Route {
        vector,
        trigger: Trigger::Level,
        polarity: Polarity::ActiveHigh,
        dest_apic_id: apic::id() as u8,
        is_masked: false,
    };
    ioapic.set_route(gsi, route).map_err(RouteError::Pin)?;
    Ok(DeviceIrq { vector, gsi, slot })
}
