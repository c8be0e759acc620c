//! A raw virtio-mmio driver (virtio 1.2 §4.2.3, modern only) that can do everything wrong on
//! purpose: its own split virtqueue in guest RAM (§2.7), descriptors written one by one, the
//! available index set to anything, and a bounded look at what the device did.

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use guest_rt::cmdline::Cmdline;
use guest_rt::cpu::rdtsc;
use guest_rt::dma::PAGE_BYTES;
use guest_rt::setup::alloc;
use guest_virtio::window::{self, reg, FindError, Window, DEVICE_BLK, DEVICE_NET};

/// Device status bits (virtio 1.2 §2.1).
pub(crate) const ACKNOWLEDGE: u32 = 1;
pub(crate) const DRIVER: u32 = 2;
pub(crate) const DRIVER_OK: u32 = 4;
pub(crate) const FEATURES_OK: u32 = 8;
pub(crate) const NEEDS_RESET: u32 = 0x40;
/// Feature bits (§6).
pub(crate) const F_INDIRECT_DESC: u64 = 1 << 28;
const F_VERSION_1: u64 = 1 << 32;
/// Descriptor flags (§2.7.5).
pub(crate) const DESC_NEXT: u16 = 1;
pub(crate) const DESC_WRITE: u16 = 2;
pub(crate) const DESC_INDIRECT: u16 = 4;
pub(crate) const DESC_BYTES: u64 = 16;
/// virtio-blk request (§5.2.6): header type IN, status OK, sizes.
const BLK_T_IN: u32 = 0;
pub(crate) const BLK_S_OK: u8 = 0;
pub(crate) const BLK_HEADER_BYTES: u32 = 16;
pub(crate) const SECTOR_BYTES: u32 = 512;
/// The status byte before the device writes it.
const STATUS_UNWRITTEN: u8 = 0xFF;
/// A virtio-net transmit: the 12-byte header and a minimal Ethernet frame.
const NET_TX_BYTES: u32 = 12 + 60;
/// The queue a request goes to: blk's only queue, net's transmit queue.
const BLK_QUEUE: u16 = 0;
const NET_TX_QUEUE: u16 = 1;
/// How long a reset may take to read back 0.
const RESET_TIMEOUT_MS: u64 = 100;

/// The window to drive: `virtio=` or a scan, a blk device when there is one (its status byte
/// gives the strongest checks), else a net device.
pub(crate) fn find_window<'a>(args: &Cmdline<'a>) -> Result<Window, FindError<'a>> {
    window::find(args, DEVICE_BLK).or_else(|_| window::find(args, DEVICE_NET))
}

/// Guest memory the driver uses, all page-aligned, from the DMA pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// Request header at +0, status byte at +16 (blk); the transmit buffer (net).
    pub header: u64,
    /// Data buffers (many sectors), followed directly by [`Mem::guard`].
    pub data: u64,
    pub data_bytes: u64,
    /// A canary page right after the data: a device writing past its buffer hits it.
    pub guard: u64,
    /// Room for indirect tables.
    pub tables: u64,
    pub tables_bytes: u64,
}

impl Mem {
    /// Takes it from the DMA pool (an exhausted pool fails the guest): a page for each ring
    /// and the header, `data_bytes` of data with its guard page, `tables_bytes` of tables.
    pub(crate) fn alloc(data_bytes: u64, tables_bytes: u64) -> Self {
        let data = alloc(data_bytes + PAGE_BYTES);
        Self {
            desc: alloc(PAGE_BYTES),
            avail: alloc(PAGE_BYTES),
            used: alloc(PAGE_BYTES),
            header: alloc(PAGE_BYTES),
            data,
            data_bytes,
            guard: data + data_bytes,
            tables: alloc(tables_bytes),
            tables_bytes,
        }
    }
}

/// What the device did after a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Observation {
    /// It set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// It put the request in the used ring (`blk_status`: the status byte, blk only).
    Used { len: u32, blk_status: Option<u8> },
    /// Neither, within the time allowed.
    Nothing,
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeedsReset => f.write_str("DEVICE_NEEDS_RESET"),
            Self::Used {
                len,
                blk_status: Some(s),
            } => write!(f, "completed, used length {len}, blk status {s:#x}"),
            Self::Used { len, .. } => write!(f, "completed, used length {len}"),
            Self::Nothing => f.write_str("no completion and no NEEDS_RESET"),
        }
    }
}

/// A step of the set-up the device refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DevError {
    ResetStuck { status: u32 },
    FeaturesRefused { status: u32 },
    QueueMissing { queue: u16 },
    NotReady { status: u32 },
    Request(Observation),
    WrongData,
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResetStuck { status } => write!(f, "status reads {status:#x} after reset"),
            Self::FeaturesRefused { status } => {
                write!(f, "FEATURES_OK refused (status {status:#x})")
            }
            Self::QueueMissing { queue } => write!(f, "queue {queue} has QueueNumMax 0"),
            Self::NotReady { status } => write!(f, "device not ready (status {status:#x})"),
            Self::Request(o) => write!(f, "valid request: {o}"),
            Self::WrongData => f.write_str("valid request read other data than at the start"),
        }
    }
}

/// One device and the queue this guest drives.
pub(crate) struct Dev {
    pub w: Window,
    pub is_blk: bool,
    pub mem: Mem,
    pub tsc_hz: u64,
    pub queue: u16,
    pub size: u16,
    /// Features negotiated by the last `negotiate`.
    pub features: u64,
    avail_idx: u16,
    used_seen: u16,
}

fn write16(addr: u64, v: u16) {
    // SAFETY: callers pass addresses inside the driver's own DMA-pool memory (rings, tables).
    unsafe { core::ptr::write_volatile(addr as *mut u16, v) }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: as for write16.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn write64(addr: u64, v: u64) {
    // SAFETY: as for write16.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

pub(crate) fn read8(addr: u64) -> u8 {
    // SAFETY: as for write16 (the device writes these bytes, hence volatile).
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

pub(crate) fn write8(addr: u64, v: u8) {
    // SAFETY: as for write16.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}

fn read16(addr: u64) -> u16 {
    // SAFETY: as for read8.
    unsafe { core::ptr::read_volatile(addr as *const u16) }
}

fn read32(addr: u64) -> u32 {
    // SAFETY: as for read8.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes descriptor `index` of the table at `table`.
pub(crate) fn write_desc(table: u64, index: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let at = table + index * DESC_BYTES;
    write64(at, addr);
    write32(at + 8, len);
    write16(at + 12, flags);
    write16(at + 14, next);
}

impl Dev {
    pub(crate) fn new(w: Window, mem: Mem, tsc_hz: u64) -> Self {
        let is_blk = w.device_id() == DEVICE_BLK;
        Self {
            w,
            is_blk,
            mem,
            tsc_hz,
            queue: if is_blk { BLK_QUEUE } else { NET_TX_QUEUE },
            size: 0,
            features: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    pub(crate) fn status(&self) -> u32 {
        self.w.read(reg::STATUS)
    }

    fn ms_to_tsc(&self, ms: u64) -> u64 {
        self.tsc_hz / 1000 * ms
    }

    /// Status = 0, and waits until it reads back 0.
    pub(crate) fn reset(&mut self) -> Result<(), DevError> {
        self.w.write(reg::STATUS, 0);
        let start = rdtsc();
        while self.status() != 0 {
            if rdtsc().wrapping_sub(start) > self.ms_to_tsc(RESET_TIMEOUT_MS) {
                return Err(DevError::ResetStuck {
                    status: self.status(),
                });
            }
            core::hint::spin_loop();
        }
        self.avail_idx = 0;
        self.used_seen = 0;
        Ok(())
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features (VERSION_1, and INDIRECT_DESC when offered),
    /// FEATURES_OK read back (§3.1.1 steps 1-6).
    pub(crate) fn negotiate(&mut self) -> Result<(), DevError> {
        self.reset()?;
        self.w.write(reg::STATUS, ACKNOWLEDGE);
        self.w.write(reg::STATUS, ACKNOWLEDGE | DRIVER);
        self.w.write(reg::DEVICE_FEATURES_SEL, 1);
        let high = u64::from(self.w.read(reg::DEVICE_FEATURES));
        self.w.write(reg::DEVICE_FEATURES_SEL, 0);
        let offered = (high << 32) | u64::from(self.w.read(reg::DEVICE_FEATURES));
        self.features = offered & (F_VERSION_1 | F_INDIRECT_DESC);
        self.w.write(reg::DRIVER_FEATURES_SEL, 0);
        self.w.write(reg::DRIVER_FEATURES, self.features as u32);
        self.w.write(reg::DRIVER_FEATURES_SEL, 1);
        self.w
            .write(reg::DRIVER_FEATURES, (self.features >> 32) as u32);
        self.w
            .write(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        let status = self.status();
        if status & FEATURES_OK == 0 {
            return Err(DevError::FeaturesRefused { status });
        }
        Ok(())
    }

    /// The largest queue the device offers for the driven queue.
    pub(crate) fn max_size(&self) -> u32 {
        self.w.write(reg::QUEUE_SEL, u32::from(self.queue));
        self.w.read(reg::QUEUE_NUM_MAX)
    }

    /// Zeroes the rings and programs the driven queue with `size` and ring addresses; does not
    /// enable it.
    pub(crate) fn program_queue(&mut self, size: u16, desc: u64, avail: u64, used: u64) {
        for page in [self.mem.desc, self.mem.avail, self.mem.used] {
            // SAFETY: each ring has a whole page of its own in the DMA pool.
            unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
        }
        self.size = size;
        self.w.write(reg::QUEUE_SEL, u32::from(self.queue));
        self.w.write(reg::QUEUE_NUM, u32::from(size));
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            self.w.write(low, addr as u32);
            self.w.write(low + 4, (addr >> 32) as u32);
        }
    }

    pub(crate) fn enable_queue(&self) {
        self.w.write(reg::QUEUE_SEL, u32::from(self.queue));
        self.w.write(reg::QUEUE_READY, 1);
    }

    pub(crate) fn queue_ready(&self) -> u32 {
        self.w.write(reg::QUEUE_SEL, u32::from(self.queue));
        self.w.read(reg::QUEUE_READY)
    }

    pub(crate) fn driver_ok(&self) {
        self.w
            .write(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// The whole valid set-up with a queue of `size`.
    pub(crate) fn init(&mut self, size: u16) -> Result<(), DevError> {
        self.negotiate()?;
        if self.max_size() == 0 {
            return Err(DevError::QueueMissing { queue: self.queue });
        }
        let (desc, avail, used) = (self.mem.desc, self.mem.avail, self.mem.used);
        self.program_queue(size, desc, avail, used);
        self.enable_queue();
        self.driver_ok();
        let status = self.status();
        if status & DRIVER_OK == 0 || status & NEEDS_RESET != 0 || self.queue_ready() != 1 {
            return Err(DevError::NotReady { status });
        }
        Ok(())
    }

    /// Puts `head` in the next available slot and publishes it (§2.7.13).
    pub(crate) fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size.max(1));
        write16(self.mem.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    /// Writes the available ring's index as it is (after the ring entries are visible).
    pub(crate) fn set_avail_idx(&self, idx: u16) {
        fence(Ordering::SeqCst);
        write16(self.mem.avail + 2, idx);
        fence(Ordering::SeqCst);
    }

    pub(crate) fn notify(&self) {
        self.w.write(reg::QUEUE_NOTIFY, u32::from(self.queue));
    }

    /// Descriptors 0 and (blk) 2 of a request: header and status around data descriptor 1,
    /// which the caller writes. For net, descriptor 0 is the whole transmit buffer and the
    /// caller's descriptor replaces it. Resets the status byte to "unwritten".
    pub(crate) fn write_request_frame(&self, table: u64) {
        if self.is_blk {
            write32(self.mem.header, BLK_T_IN);
            write32(self.mem.header + 4, 0);
            write64(self.mem.header + 8, 0);
            write8(self.mem.header + 16, STATUS_UNWRITTEN);
            write_desc(table, 0, self.mem.header, BLK_HEADER_BYTES, DESC_NEXT, 1);
            write_desc(table, 2, self.mem.header + 16, 1, DESC_WRITE, 0);
        } else {
            // A broadcast-free frame to a locally administered address nobody has.
            // SAFETY: the header page belongs to this driver.
            unsafe { core::ptr::write_bytes(self.mem.header as *mut u8, 0, NET_TX_BYTES as usize) };
            write16(self.mem.header + 12, 0x0002);
            write16(self.mem.header + 12 + 12, 0xB588);
        }
    }

    /// The data descriptor of a valid request: one sector into the data buffer (blk), or the
    /// transmit buffer (net), at index 1 (blk) or 0 (net) of `table`, with `extra` flags.
    pub(crate) fn valid_data_desc(&self, table: u64) {
        if self.is_blk {
            write_desc(
                table,
                1,
                self.mem.data,
                SECTOR_BYTES,
                DESC_WRITE | DESC_NEXT,
                2,
            );
        } else {
            write_desc(table, 0, self.mem.header, NET_TX_BYTES, 0, 0);
        }
    }

    /// Index of the data descriptor in a request.
    pub(crate) fn data_index(&self) -> u64 {
        if self.is_blk {
            1
        } else {
            0
        }
    }

    /// Writes the data descriptor with another buffer; blk keeps it writable and chained.
    pub(crate) fn data_desc(&self, table: u64, addr: u64, len: u32) {
        if self.is_blk {
            write_desc(table, 1, addr, len, DESC_WRITE | DESC_NEXT, 2);
        } else {
            write_desc(table, 0, addr, len, 0, 0);
        }
    }

    /// Waits up to `timeout_ms` for NEEDS_RESET or a new used entry.
    pub(crate) fn observe(&mut self, timeout_ms: u64) -> Observation {
        let start = rdtsc();
        loop {
            if self.status() & NEEDS_RESET != 0 {
                return Observation::NeedsReset;
            }
            fence(Ordering::SeqCst);
            let used_idx = read16(self.mem.used + 2);
            if used_idx != self.used_seen {
                let slot = u64::from(self.used_seen % self.size.max(1));
                let len = read32(self.mem.used + 4 + 8 * slot + 4);
                self.used_seen = self.used_seen.wrapping_add(1);
                let blk_status = self.is_blk.then(|| read8(self.mem.header + 16));
                return Observation::Used { len, blk_status };
            }
            if rdtsc().wrapping_sub(start) > self.ms_to_tsc(timeout_ms) {
                return Observation::Nothing;
            }
            core::hint::spin_loop();
        }
    }

    /// One valid request on a fresh queue; blk must read the sector it read at the start
    /// (`baseline`).
    pub(crate) fn valid_request(
        &mut self,
        baseline: &[u8],
        timeout_ms: u64,
    ) -> Result<(), DevError> {
        let table = self.mem.desc;
        self.write_request_frame(table);
        self.valid_data_desc(table);
        if self.is_blk {
            // SAFETY: the data buffer belongs to this driver.
            unsafe {
                core::ptr::write_bytes(self.mem.data as *mut u8, 0xEE, SECTOR_BYTES as usize)
            };
        }
        self.publish(0);
        self.notify();
        match self.observe(timeout_ms) {
            Observation::Used {
                blk_status: Some(BLK_S_OK) | None,
                ..
            } => {}
            other => return Err(DevError::Request(other)),
        }
        if self.is_blk && !baseline.is_empty() {
            let is_same =
                (0..baseline.len()).all(|i| read8(self.mem.data + i as u64) == baseline[i]);
            if !is_same {
                return Err(DevError::WrongData);
            }
        }
        Ok(())
    }
}
