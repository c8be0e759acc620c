//! virtio-mmio register windows (virtio 1.2 §4.2.2): finding one for a device type, from
//! `virtio=ADDR[@GSI][:NAME][,...]` on the command line (Bulkhead appends such a list, e.g.
//! `virtio=0xd0000000@16:virtio-blk`; the name is informational) or by scanning where Bulkhead
//! and QEMU's `microvm` put them, and reading or writing its registers.

use core::fmt;
use core::ptr::NonNull;

use guest_rt::cmdline::{parse_u64, Cmdline};
use guest_rt::mmio;
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, VirtIOHeader};

/// "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;
/// Device IDs (virtio 1.2 §5).
pub const DEVICE_NET: u32 = 1;
pub const DEVICE_BLK: u32 = 2;
/// Registers plus the configuration space that drivers use.
pub const WINDOW_BYTES: usize = 0x200;

/// Register offsets (virtio 1.2 §4.2.2, "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00C;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0A0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0A4;
    pub const SHM_SEL: u64 = 0x0AC;
    pub const CONFIG_GENERATION: u64 = 0x0FC;
    pub const CONFIG: u64 = 0x100;
}

/// Where a platform puts its virtio-mmio windows and their interrupt lines.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub name: &'static str,
    pub base: u64,
    pub stride: u64,
    pub slots: u64,
    /// GSI of the first window; window `n` uses `gsi_base + n`.
    pub gsi_base: u32,
}

/// Bulkhead: slot `n` at 0xD000_0000 + n * 0x1000 on GSI 16 + n (`src/layout.rs`).
pub const BULKHEAD: Layout = Layout {
    name: "bulkhead",
    base: 0xD000_0000,
    stride: 0x1000,
    slots: 16,
    gsi_base: 16,
};

/// QEMU `-M microvm`: transport `n` at 0xFEB0_0000 + n * 0x200. With `ioapic2=off` (and ACPI
/// on, the default) transport `n` raises GSI 16 + n on the first I/O APIC; with QEMU's default
/// second I/O APIC it is GSI 24 + n there, which the guests do not program.
pub const MICROVM: Layout = Layout {
    name: "microvm",
    base: 0xFEB0_0000,
    stride: 0x200,
    slots: 24,
    gsi_base: 16,
};

/// Windows must lie in the MMIO hole the boot stub maps uncacheable, never over RAM.
const HOLE: core::ops::Range<u64> = guest_rt::boot::MMIO_HOLE_START..(1 << 32);
/// Alignment of a window (QEMU's transports are this far apart).
const WINDOW_ALIGN: u64 = 0x200;

/// Whether a window at `base` lies wholly in the MMIO hole, aligned.
fn is_in_hole(base: u64) -> bool {
    let end = base.checked_add(WINDOW_BYTES as u64);
    HOLE.contains(&base) && end.is_some_and(|e| e <= HOLE.end) && base.is_multiple_of(WINDOW_ALIGN)
}

impl Layout {
    /// Every slot's window, with or without a device behind it, in slot order. Slots outside
    /// the MMIO hole are skipped, so no layout can aim a probe at RAM.
    pub fn windows(self) -> impl Iterator<Item = Window> {
        (0..self.slots).filter_map(move |slot| {
            let base = self.base.checked_add(slot.checked_mul(self.stride)?)?;
            let gsi = u32::try_from(slot)
                .ok()
                .and_then(|s| self.gsi_base.checked_add(s));
            // SAFETY: the window lies in the uncacheable MMIO hole (checked first), never over
            // RAM; probing an empty slot reads all-ones (Bulkhead's unbacked space) or zeros
            // (QEMU's), and probing writes nothing.
            is_in_hole(base).then(|| unsafe { Window::new(base, gsi) })
        })
    }

    /// The windows with a device of type `device_id` behind them, in slot order.
    pub fn devices(self, device_id: u32) -> impl Iterator<Item = Window> {
        self.windows()
            .filter(move |w| w.is_present() && w.device_id() == device_id)
    }
}

/// Why no window was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindError<'a> {
    /// A `virtio=` word is not `ADDR[@GSI]`.
    Malformed { word: &'a str },
    /// A `virtio=` address is outside 0xC000_0000..4 GiB or not 0x200-aligned.
    OutsideHole { base: u64 },
    /// No listed or scanned window holds the device.
    NotFound { device_id: u32 },
}

impl fmt::Display for FindError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { word } => write!(
                f,
                "command line virtio={word:?}: expected ADDR[@GSI][:NAME] (decimal or 0x-hex)"
            ),
            Self::OutsideHole { base } => write!(
                f,
                "virtio window {base:#x} is not a 0x200-aligned address in \
                 {:#x}..{:#x}",
                HOLE.start, HOLE.end
            ),
            Self::NotFound { device_id } => write!(
                f,
                "no virtio-mmio window holds device type {device_id} (give virtio=ADDR[@GSI])"
            ),
        }
    }
}

/// One virtio-mmio register window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    base: u64,
    gsi: Option<u32>,
}

impl Window {
    /// A window at `base`, raising `gsi` (when known).
    ///
    /// # Safety
    /// `base..base + 0x200` must be device memory in the boot stub's uncacheable identity map
    /// (a virtio-mmio window or unbacked space, which reads all-ones or zeros) that nothing else
    /// in the guest programs.
    pub unsafe fn new(base: u64, gsi: Option<u32>) -> Self {
        Self { base, gsi }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// The I/O APIC input the device raises, if known.
    pub fn gsi(&self) -> Option<u32> {
        self.gsi
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read(&self, offset: u64) -> u32 {
        // SAFETY: `new`'s contract; virtio-mmio register reads have no side effects.
        unsafe { mmio::read32(self.base + offset) }
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write(&self, offset: u64, value: u32) {
        // SAFETY: `new`'s contract; the caller chooses what the write does to its own device.
        unsafe { mmio::write32(self.base + offset, value) }
    }

    /// Whether the magic is right and a device sits behind the window.
    pub fn is_present(&self) -> bool {
        self.read(reg::MAGIC) == MAGIC && self.device_id() != 0
    }

    pub fn device_id(&self) -> u32 {
        self.read(reg::DEVICE_ID)
    }

    pub fn version(&self) -> u32 {
        self.read(reg::VERSION)
    }

    /// A `virtio-drivers` transport over the window.
    pub fn transport(&self) -> Result<MmioTransport<'static>, MmioError> {
        let header = NonNull::new(self.base as *mut VirtIOHeader).ok_or(MmioError::BadMagic(0))?;
        // SAFETY: `new`'s contract makes the window valid device memory for the guest's whole
        // life, and windows are 0x200-aligned, more than the header's alignment.
        unsafe { MmioTransport::new(header, WINDOW_BYTES) }
    }
}

/// GSI of the window at `base` when it sits where a known layout puts windows.
pub fn default_gsi(base: u64) -> Option<u32> {
    [BULKHEAD, MICROVM].iter().find_map(|l| {
        let offset = base.checked_sub(l.base)?;
        let slot = offset / l.stride;
        (offset.is_multiple_of(l.stride) && slot < l.slots).then(|| l.gsi_base + slot as u32)
    })
}

fn parse_word(word: &str) -> Result<Window, FindError<'_>> {
    let location = word
        .split_once(':')
        .map_or(word, |(location, _name)| location);
    let (addr, gsi) = match location.split_once('@') {
        Some((addr, gsi)) => (addr, Some(gsi)),
        None => (word, None),
    };
    let base = parse_u64(addr).ok_or(FindError::Malformed { word })?;
    let gsi = match gsi {
        Some(text) => Some(
            parse_u64(text)
                .and_then(|g| u32::try_from(g).ok())
                .ok_or(FindError::Malformed { word })?,
        ),
        None => default_gsi(base),
    };
    if !is_in_hole(base) {
        return Err(FindError::OutsideHole { base });
    }
    // SAFETY: the window lies in the uncacheable MMIO hole (checked above), never over RAM.
    Ok(unsafe { Window::new(base, gsi) })
}

/// The first window holding a device of type `device_id`: among those `virtio=` lists when
/// given, else among Bulkhead's slots and microvm's transports.
pub fn find<'a>(args: &Cmdline<'a>, device_id: u32) -> Result<Window, FindError<'a>> {
    let mut listed = false;
    for value in args.values("virtio") {
        for word in value.split(',').filter(|w| !w.is_empty()) {
            listed = true;
            let window = parse_word(word)?;
            if window.is_present() && window.device_id() == device_id {
                return Ok(window);
            }
        }
    }
    if listed {
        return Err(FindError::NotFound { device_id });
    }
    [BULKHEAD, MICROVM]
        .into_iter()
        .find_map(|layout| layout.devices(device_id).next())
        .ok_or(FindError::NotFound { device_id })
}
