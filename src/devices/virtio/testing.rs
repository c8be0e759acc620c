//! A mock virtio driver for host tests and fuzzers: it lays out descriptor tables and rings in a
//! [`VecGuestMemory`], negotiates through the MMIO registers, submits chains and reads the used
//! rings back, as a guest's driver would.
//!
//! This is test support, not hypervisor code: it trusts itself and panics on its own misuse
//! (e.g. running out of its RAM), never on anything a device does.

#![forbid(unsafe_code)]

pub mod fuzz;

use alloc::vec;
use alloc::vec::Vec;

use super::mmio::{MmioEffect, VirtioTransport};
use super::{status, F_VERSION_1};
use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemory, VecGuestMemory};

pub use super::mmio::reg;

/// Descriptor flag: chain continues.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: device-writable.
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: indirect table.
pub const DESC_F_INDIRECT: u16 = 4;

/// One buffer of a chain the mock builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Guest address.
    pub gpa: GuestPhysAddr,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub is_writable: bool,
}

/// A submitted request: its head and the buffers the device may fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Head descriptor index.
    pub head: u16,
    /// Device-writable buffers in order.
    pub writable: Vec<(GuestPhysAddr, u32)>,
}

/// One used ring element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// Head of the chain returned.
    pub id: u32,
    /// Bytes the device wrote.
    pub len: u32,
}

/// Where the mock placed one queue.
#[derive(Clone, Copy, Debug)]
pub struct MockQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table.
    pub desc: GuestPhysAddr,
    /// Available ring.
    pub avail: GuestPhysAddr,
    /// Used ring.
    pub used: GuestPhysAddr,
    next_desc: u16,
    avail_idx: u16,
    last_used: u16,
}

/// Why the mock's set-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockError {
    /// The device did not keep FEATURES_OK.
    FeaturesRefused,
    /// QueueNumMax is 0.
    NoSuchQueue(u16),
    /// The queue did not become ready.
    QueueNotReady(u16),
}

/// A driver in a guest whose RAM starts at GPA 0.
pub struct MockDriver {
    /// The guest's RAM.
    pub mem: VecGuestMemory,
    ram_bytes: u64,
    next_free: u64,
    queues: Vec<Option<MockQueue>>,
    /// Features accepted in the last negotiation.
    pub features: u64,
}

impl MockDriver {
    /// A driver with `ram_bytes` of zeroed RAM; the first page is left unused.
    pub fn new(ram_bytes: usize) -> Self {
        Self {
            mem: VecGuestMemory::new(GuestPhysAddr::ZERO, ram_bytes),
            ram_bytes: ram_bytes as u64,
            next_free: 0x1000,
            queues: Vec::new(),
            features: 0,
        }
    }

    /// Bump-allocates `len` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, len: u64, align: u64) -> GuestPhysAddr {
        let start = (self.next_free + align - 1) & !(align - 1);
        assert!(start + len <= self.ram_bytes, "mock driver RAM exhausted");
        self.next_free = start + len;
        GuestPhysAddr::new(start)
    }

    /// Copies `data` into guest RAM.
    pub fn write_bytes(&self, gpa: GuestPhysAddr, data: &[u8]) {
        self.mem.write(gpa, data).expect("mock write inside RAM");
    }

    /// Copies `len` bytes out of guest RAM.
    pub fn read_bytes(&self, gpa: GuestPhysAddr, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(gpa, &mut v).expect("mock read inside RAM");
        v
    }

    /// A 32-bit register read.
    pub fn read_reg(&self, t: &mut dyn VirtioTransport, offset: u64) -> u32 {
        t.read(offset, 4) as u32
    }

    /// A 32-bit register write.
    pub fn write_reg(&self, t: &mut dyn VirtioTransport, offset: u64, value: u32) -> MmioEffect {
        t.write(offset, 4, u64::from(value), &self.mem)
    }

    /// Both halves of DeviceFeatures.
    pub fn device_features(&self, t: &mut dyn VirtioTransport) -> u64 {
        let _ = self.write_reg(t, reg::DEVICE_FEATURES_SEL, 0);
        let low = self.read_reg(t, reg::DEVICE_FEATURES);
        let _ = self.write_reg(t, reg::DEVICE_FEATURES_SEL, 1);
        let high = self.read_reg(t, reg::DEVICE_FEATURES);
        u64::from(low) | (u64::from(high) << 32)
    }

    /// Resets the device and negotiates: accepts exactly `features` (offered or not) and
    /// sets FEATURES_OK (§3.1.1 steps 1–6).
    pub fn negotiate_exact(
        &mut self,
        t: &mut dyn VirtioTransport,
        features: u64,
    ) -> Result<(), MockError> {
        let _ = self.write_reg(t, reg::STATUS, 0);
        self.queues.clear();
        let _ = self.write_reg(t, reg::STATUS, status::ACKNOWLEDGE);
        let _ = self.write_reg(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        let _ = self.write_reg(t, reg::DRIVER_FEATURES_SEL, 0);
        let _ = self.write_reg(t, reg::DRIVER_FEATURES, features as u32);
        let _ = self.write_reg(t, reg::DRIVER_FEATURES_SEL, 1);
        let _ = self.write_reg(t, reg::DRIVER_FEATURES, (features >> 32) as u32);
        let st = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        let _ = self.write_reg(t, reg::STATUS, st);
        if self.read_reg(t, reg::STATUS) & status::FEATURES_OK == 0 {
            return Err(MockError::FeaturesRefused);
        }
        self.features = features;
        Ok(())
    }

    /// Negotiates the offered features that are also in `wanted` (plus VERSION_1).
    pub fn negotiate(
        &mut self,
        t: &mut dyn VirtioTransport,
        wanted: u64,
    ) -> Result<u64, MockError> {
        let offered = self.device_features(t);
        let features = offered & (wanted | F_VERSION_1);
        self.negotiate_exact(t, features)?;
        Ok(features)
    }

    /// Places queue `q` with `size` entries in RAM and enables it (§4.2.3.2).
    pub fn setup_queue(
        &mut self,
        t: &mut dyn VirtioTransport,
        q: u16,
        size: u16,
    ) -> Result<(), MockError> {
        let _ = self.write_reg(t, reg::QUEUE_SEL, u32::from(q));
        if self.read_reg(t, reg::QUEUE_NUM_MAX) == 0 {
            return Err(MockError::NoSuchQueue(q));
        }
        let n = u64::from(size);
        let desc = self.alloc(16 * n, 16);
        let avail = self.alloc(6 + 2 * n, 2);
        let used = self.alloc(6 + 8 * n, 4);
        self.program_queue(t, q, size, desc, avail, used);
        let _ = self.write_reg(t, reg::QUEUE_READY, 1);
        if self.read_reg(t, reg::QUEUE_READY) != 1 {
            return Err(MockError::QueueNotReady(q));
        }
        let slot = usize::from(q);
        if self.queues.len() <= slot {
            self.queues.resize(slot + 1, None);
        }
        self.queues[slot] = Some(MockQueue {
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        });
        Ok(())
    }

    /// Writes the size and ring addresses of queue `q` without enabling it.
    pub fn program_queue(
        &self,
        t: &mut dyn VirtioTransport,
        q: u16,
        size: u16,
        desc: GuestPhysAddr,
        avail: GuestPhysAddr,
        used: GuestPhysAddr,
    ) {
        let _ = self.write_reg(t, reg::QUEUE_SEL, u32::from(q));
        let _ = self.write_reg(t, reg::QUEUE_NUM, u32::from(size));
        for (low, gpa) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            let _ = self.write_reg(t, low, gpa.as_u64() as u32);
            let _ = self.write_reg(t, low + 4, (gpa.as_u64() >> 32) as u32);
        }
    }

    /// Sets DRIVER_OK (§3.1.1 step 8).
    pub fn driver_ok(&self, t: &mut dyn VirtioTransport) -> MmioEffect {
        let st = self.read_reg(t, reg::STATUS);
        self.write_reg(t, reg::STATUS, st | status::DRIVER_OK)
    }

    /// The whole initialisation: negotiate `wanted`, set up queues `0..sizes.len()`, DRIVER_OK.
    pub fn init(
        &mut self,
        t: &mut dyn VirtioTransport,
        wanted: u64,
        sizes: &[u16],
    ) -> Result<u64, MockError> {
        let features = self.negotiate(t, wanted)?;
        for (q, &size) in sizes.iter().enumerate() {
            self.setup_queue(t, q as u16, size)?;
        }
        let _ = self.driver_ok(t);
        Ok(features)
    }

    /// Where queue `q` lives.
    pub fn queue(&self, q: u16) -> MockQueue {
        self.queues
            .get(usize::from(q))
            .copied()
            .flatten()
            .expect("mock queue set up")
    }

    fn queue_mut(&mut self, q: u16) -> &mut MockQueue {
        self.queues
            .get_mut(usize::from(q))
            .and_then(Option::as_mut)
            .expect("mock queue set up")
    }

    /// Writes descriptor `idx` of a table at `table`.
    pub fn write_desc_at(
        &self,
        table: GuestPhysAddr,
        idx: u32,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        self.write_bytes(table + 16 * u64::from(idx), &raw);
    }

    /// Writes descriptor `idx` of queue `q`'s table.
    pub fn write_desc(&self, q: u16, idx: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.write_desc_at(self.queue(q).desc, u32::from(idx), addr, len, flags, next);
    }

    /// Puts `head` into the available ring and publishes the new index.
    pub fn publish(&mut self, q: u16, head: u16) {
        let mq = self.queue(q);
        let slot = u64::from(mq.avail_idx % mq.size);
        self.write_bytes(mq.avail + 4 + 2 * slot, &head.to_le_bytes());
        let idx = mq.avail_idx.wrapping_add(1);
        self.set_avail_idx(q, idx);
    }

    /// Overwrites the available index.
    pub fn set_avail_idx(&mut self, q: u16, idx: u16) {
        let avail = self.queue(q).avail;
        self.write_bytes(avail + 2, &idx.to_le_bytes());
        self.queue_mut(q).avail_idx = idx;
    }

    /// Builds a chain of `bufs` in consecutive descriptors and publishes it.
    pub fn add_chain(&mut self, q: u16, bufs: &[Buf]) -> u16 {
        let mq = self.queue(q);
        let head = mq.next_desc;
        for (i, b) in bufs.iter().enumerate() {
            let idx = (head as usize + i) as u16 % mq.size;
            let is_last = i + 1 == bufs.len();
            let flags = if is_last { 0 } else { DESC_F_NEXT }
                | if b.is_writable { DESC_F_WRITE } else { 0 };
            self.write_desc(q, idx, b.gpa.as_u64(), b.len, flags, (idx + 1) % mq.size);
        }
        self.queue_mut(q).next_desc = ((head as usize + bufs.len()) % usize::from(mq.size)) as u16;
        self.publish(q, head);
        head
    }

    /// Builds an indirect table of `bufs`, one descriptor pointing at it, and publishes it.
    pub fn add_indirect_chain(&mut self, q: u16, bufs: &[Buf]) -> u16 {
        let table = self.alloc(16 * bufs.len() as u64, 16);
        for (i, b) in bufs.iter().enumerate() {
            let is_last = i + 1 == bufs.len();
            let flags = if is_last { 0 } else { DESC_F_NEXT }
                | if b.is_writable { DESC_F_WRITE } else { 0 };
            self.write_desc_at(table, i as u32, b.gpa.as_u64(), b.len, flags, i as u16 + 1);
        }
        let mq = self.queue(q);
        let head = mq.next_desc;
        self.write_desc(
            q,
            head,
            table.as_u64(),
            16 * bufs.len() as u32,
            DESC_F_INDIRECT,
            0,
        );
        self.queue_mut(q).next_desc = (head + 1) % mq.size;
        self.publish(q, head);
        head
    }

    /// Allocates buffers holding `readable` and room for `writable`, and publishes the chain
    /// (through an indirect table if `is_indirect`).
    pub fn add_request(
        &mut self,
        q: u16,
        readable: &[&[u8]],
        writable: &[u32],
        is_indirect: bool,
    ) -> Request {
        let mut bufs = Vec::new();
        for data in readable {
            let gpa = self.alloc(data.len().max(1) as u64, 8);
            self.write_bytes(gpa, data);
            bufs.push(Buf {
                gpa,
                len: data.len() as u32,
                is_writable: false,
            });
        }
        let mut out = Vec::new();
        for &len in writable {
            let gpa = self.alloc(u64::from(len.max(1)), 8);
            bufs.push(Buf {
                gpa,
                len,
                is_writable: true,
            });
            out.push((gpa, len));
        }
        let head = if is_indirect {
            self.add_indirect_chain(q, &bufs)
        } else {
            self.add_chain(q, &bufs)
        };
        Request {
            head,
            writable: out,
        }
    }

    /// The first `len` bytes the device wrote into a request's writable buffers.
    pub fn read_writable(&self, req: &Request, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for &(gpa, n) in &req.writable {
            out.extend(self.read_bytes(gpa, n as usize));
        }
        out.truncate(len);
        out
    }

    /// QueueNotify for queue `q`.
    pub fn notify(&self, t: &mut dyn VirtioTransport, q: u16) -> MmioEffect {
        self.write_reg(t, reg::QUEUE_NOTIFY, u32::from(q))
    }

    /// The next used element of queue `q`, if the device returned one.
    pub fn pop_used(&mut self, q: u16) -> Option<Used> {
        let mq = self.queue(q);
        let idx = self.mem.read_u16(mq.used + 2).ok()?;
        if idx == mq.last_used {
            return None;
        }
        let elem = mq.used + 4 + 8 * u64::from(mq.last_used % mq.size);
        let id = self.mem.read_u32(elem).ok()?;
        let len = self.mem.read_u32(elem + 4).ok()?;
        self.queue_mut(q).last_used = mq.last_used.wrapping_add(1);
        Some(Used { id, len })
    }

    /// Writes `used_event` (EVENT_IDX: interrupt once the used index passes it).
    pub fn set_used_event(&self, q: u16, v: u16) {
        let mq = self.queue(q);
        self.write_bytes(mq.avail + 4 + 2 * u64::from(mq.size), &v.to_le_bytes());
    }

    /// Reads `avail_event` (EVENT_IDX: notify once the available index passes it).
    pub fn avail_event(&self, q: u16) -> u16 {
        let mq = self.queue(q);
        self.mem
            .read_u16(mq.used + 4 + 8 * u64::from(mq.size))
            .unwrap_or(0)
    }

    /// Writes the available ring's flags (VIRTQ_AVAIL_F_NO_INTERRUPT = 1).
    pub fn set_avail_flags(&self, q: u16, flags: u16) {
        self.write_bytes(self.queue(q).avail, &flags.to_le_bytes());
    }
}
