//! Fuzz entry points: each turns arbitrary bytes into what a hostile guest could do to one
//! device and checks the device neither panics nor breaks its side of the protocol. The
//! cargo-fuzz targets under `fuzz/` call these; host tests run them over random inputs.

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::{reg, Buf, MockDriver, DESC_F_INDIRECT};
use crate::addr::GuestPhysAddr;
use crate::devices::switch::Switch;
use crate::devices::virtio::blk::{Blk, BlkOptions};
use crate::devices::virtio::console::{Console, ConsoleInput};
use crate::devices::virtio::mmio::{MmioTransport, VirtioTransport};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::queue::GuestRange;
use crate::devices::virtio::{status, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC, F_VERSION_1};

/// RAM of the fuzzed guest.
const RAM_BYTES: usize = 0x10000;
/// Fixed places for the rings (queue sizes up to 256 fit in a page each).
const DESC_GPA: u64 = 0x1000;
const AVAIL_GPA: u64 = 0x2000;
const USED_GPA: u64 = 0x3000;
/// Where fuzzed indirect tables are written.
const SCRATCH_GPA: u64 = 0x4000;
/// A slice of RAM treated as the device window, so that check is exercised too.
const FORBIDDEN: GuestRange = GuestRange {
    base: GuestPhysAddr::new(0xF000),
    len: 0x1000,
};

/// Reads the fuzz input as a stream of numbers, zero once it runs out.
struct Bytes<'a> {
    data: &'a [u8],
}

impl Bytes<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn fill(&mut self, out: &mut [u8]) {
        let n = out.len().min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
    }

    fn u8(&mut self) -> u8 {
        let mut b = [0; 1];
        self.fill(&mut b);
        b[0]
    }

    fn u16(&mut self) -> u16 {
        let mut b = [0; 2];
        self.fill(&mut b);
        u16::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n.min(self.data.len())];
        self.fill(&mut v);
        v
    }

    /// A descriptor, mostly pointing into the fuzzed guest's RAM so deep paths are reached.
    fn desc(&mut self) -> [u8; 16] {
        let mut raw = [0u8; 16];
        self.fill(&mut raw);
        if raw[7] < 0xF0 {
            let addr =
                u64::from_le_bytes(raw[..8].try_into().unwrap_or_default()) % RAM_BYTES as u64;
            raw[..8].copy_from_slice(&addr.to_le_bytes());
        }
        if raw[11] < 0xF0 {
            let len = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default()) % 0x2000;
            raw[8..12].copy_from_slice(&len.to_le_bytes());
        }
        raw
    }
}

fn features_from(bits: u8) -> u64 {
    let mut f = F_VERSION_1;
    if bits & 1 != 0 {
        f |= F_RING_INDIRECT_DESC;
    }
    if bits & 2 != 0 {
        f |= F_RING_EVENT_IDX;
    }
    f
}

fn blk_transport() -> MmioTransport<Blk<Vec<u8>>> {
    let options = BlkOptions {
        is_readonly: false,
        serial: *b"fuzz-disk\0\0\0\0\0\0\0\0\0\0\0",
    };
    MmioTransport::new(Blk::new(vec![0u8; 64 * 512], options)).with_forbidden_range(Some(FORBIDDEN))
}

/// Checks every used element the device returned names a valid head and no more bytes than
/// RAM could hold.
fn drain_used(drv: &mut MockDriver, q: u16, size: u16) {
    for _ in 0..=size {
        let Some(used) = drv.pop_used(q) else {
            break;
        };
        assert!(
            used.id < u32::from(size),
            "device returned head {} of {size}",
            used.id
        );
        assert!(
            used.len as usize <= RAM_BYTES,
            "device claims {} bytes written",
            used.len
        );
    }
}

/// The split-virtqueue walker: arbitrary descriptor tables, indirect tables, available ring
/// contents, indices and event fields behind a block device.
pub fn virtqueue(data: &[u8]) {
    let mut b = Bytes { data };
    let mut t = blk_transport();
    let mut drv = MockDriver::new(RAM_BYTES);
    let flags = b.u8();
    if drv.negotiate_exact(&mut t, features_from(flags)).is_err() {
        return;
    }
    let size = if flags & 4 != 0 {
        b.u16()
    } else {
        1 << (b.u8() % 9)
    };
    let (desc, avail, used) = (
        GuestPhysAddr::new(DESC_GPA),
        GuestPhysAddr::new(AVAIL_GPA),
        GuestPhysAddr::new(USED_GPA),
    );
    drv.program_queue(&mut t, 0, size, desc, avail, used);
    let _ = drv.write_reg(&mut t, reg::QUEUE_READY, 1);
    let _ = drv.driver_ok(&mut t);
    let table_len = usize::from(size.min(256));
    while !b.is_empty() && t.status() & status::DEVICE_NEEDS_RESET == 0 {
        for i in 0..table_len {
            drv.write_bytes(desc + 16 * i as u64, &b.desc());
        }
        for i in 0..b.u8() as usize % 64 {
            drv.write_bytes(GuestPhysAddr::new(SCRATCH_GPA) + 16 * i as u64, &b.desc());
        }
        for _ in 0..b.u8() % 8 {
            let slot = u64::from(b.u8());
            drv.write_bytes(avail + 4 + 2 * slot, &b.u16().to_le_bytes());
        }
        drv.write_bytes(avail + 2, &b.u16().to_le_bytes());
        drv.write_bytes(
            avail + 4 + 2 * u64::from(size.min(256)),
            &b.u16().to_le_bytes(),
        );
        let _ = drv.notify(&mut t, 0);
        let _ = t.read(reg::INTERRUPT_STATUS, 4);
    }
}

/// Block requests: arbitrary headers, segment layouts and sizes on a well-formed queue.
pub fn blk_request(data: &[u8]) {
    let mut b = Bytes { data };
    let mut t = blk_transport();
    let mut drv = MockDriver::new(0x40000);
    let wanted = features_from(b.u8());
    if drv.init(&mut t, wanted, &[16]).is_err() {
        return;
    }
    while !b.is_empty() && t.status() & status::DEVICE_NEEDS_RESET == 0 {
        let header = b.take(16);
        let mut bufs = vec![];
        let hdr_gpa = drv.alloc(16, 8);
        drv.write_bytes(hdr_gpa, &header);
        bufs.push(Buf {
            gpa: hdr_gpa,
            len: header.len() as u32,
            is_writable: false,
        });
        for _ in 0..b.u8() % 5 {
            let len = u32::from(b.u16() % 0x1200);
            let is_writable = b.u8() & 1 != 0;
            let gpa = drv.alloc(u64::from(len.max(1)), 8);
            if !is_writable {
                drv.write_bytes(gpa, &b.take(len as usize));
            }
            bufs.push(Buf {
                gpa,
                len,
                is_writable,
            });
        }
        if drv.features & F_RING_INDIRECT_DESC != 0 && b.u8() & 1 != 0 {
            drv.add_indirect_chain(0, &bufs);
        } else {
            drv.add_chain(0, &bufs);
        }
        let _ = drv.notify(&mut t, 0);
        let writable: u64 = bufs
            .iter()
            .filter(|b| b.is_writable)
            .map(|b| u64::from(b.len))
            .sum();
        while let Some(used) = drv.pop_used(0) {
            assert!(
                u64::from(used.len) <= writable,
                "used len {} > writable {writable}",
                used.len
            );
        }
        // Keep the bump allocator inside RAM.
        if drv.alloc(0, 8).as_u64() > 0x30000 {
            return;
        }
    }
}

/// Two network cards on one switch: arbitrary frames and receive buffers.
pub fn net(data: &[u8]) {
    let mut b = Bytes { data };
    let switch = Switch::new("fuzz", 8);
    let mut ta = MmioTransport::new(Net::new(switch.add_port(), [2, 0, 0, 0, 0, 1]));
    let mut tb = MmioTransport::new(Net::new(switch.add_port(), [2, 0, 0, 0, 0, 2]));
    let (mut da, mut db) = (MockDriver::new(0x40000), MockDriver::new(0x40000));
    let wanted = features_from(b.u8());
    if da.init(&mut ta, wanted, &[8, 8]).is_err() || db.init(&mut tb, wanted, &[8, 8]).is_err() {
        return;
    }
    let (mut rx_sizes, mut outstanding) = ([0u32; 8], 0);
    while !b.is_empty() {
        let len = b.u16() % 1600;
        let frame = b.take(usize::from(len));
        let split = usize::from(b.u8()).min(frame.len());
        da.add_request(1, &[&frame[..split], &frame[split..]], &[], false);
        let _ = da.notify(&mut ta, 1);
        let rx = u32::from(b.u16() % 1600);
        let is_indirect = b.u8() & 1 != 0 && db.features & F_RING_INDIRECT_DESC != 0;
        // At most 4 buffers of at most 2 descriptors in flight, so the mock never reuses a
        // descriptor the device still owns.
        if outstanding < 4 {
            let req = db.add_request(0, &[], &[rx / 2, rx - rx / 2], is_indirect);
            rx_sizes[usize::from(req.head)] = rx;
            outstanding += 1;
        }
        let _ = db.notify(&mut tb, 0);
        let _ = tb.poll(&db.mem);
        while let Some(used) = db.pop_used(0) {
            let size = rx_sizes.get(used.id as usize).copied().unwrap_or(0);
            assert!(used.len <= size, "rx used len {} > buffer {size}", used.len);
            outstanding -= 1;
        }
        drain_used(&mut da, 1, 8);
        if da.alloc(0, 8).as_u64() > 0x30000 || db.alloc(0, 8).as_u64() > 0x30000 {
            return;
        }
    }
}

/// A console: arbitrary output chains, input bytes and receive buffers.
pub fn console(data: &[u8]) {
    let mut b = Bytes { data };
    let input = ConsoleInput::new();
    let mut t = MmioTransport::new(Console::new(
        alloc::boxed::Box::new(|line: &[u8]| {
            assert!(line.len() <= super::super::console::MAX_LINE)
        }),
        Arc::clone(&input),
    ));
    let mut drv = MockDriver::new(0x40000);
    if drv.init(&mut t, features_from(b.u8()), &[4, 4]).is_err() {
        return;
    }
    while !b.is_empty() {
        let out_len = usize::from(b.u8());
        let out = b.take(out_len);
        drv.add_request(1, &[&out], &[], false);
        let _ = drv.notify(&mut t, 1);
        let in_len = usize::from(b.u8());
        input.push(&b.take(in_len));
        let rx = u32::from(b.u8());
        drv.add_request(0, &[], &[rx], false);
        let _ = t.poll(&drv.mem);
        let _ = drv.notify(&mut t, 0);
        drain_used(&mut drv, 0, 4);
        drain_used(&mut drv, 1, 4);
        if drv.alloc(0, 8).as_u64() > 0x30000 {
            return;
        }
    }
}

/// Arbitrary register accesses of any width, with an indirect table lying around in RAM.
pub fn mmio_registers(data: &[u8]) {
    let mut b = Bytes { data };
    let mut t = blk_transport();
    let drv = MockDriver::new(RAM_BYTES);
    drv.write_desc_at(
        GuestPhysAddr::new(SCRATCH_GPA),
        0,
        SCRATCH_GPA,
        16,
        DESC_F_INDIRECT,
        0,
    );
    while !b.is_empty() {
        let op = b.u8();
        let offset = u64::from(b.u16() % 0x220);
        let size = [1, 2, 4, 8, 3][usize::from(op >> 1) % 5];
        if op & 1 == 0 {
            let _ = t.read(offset, size);
        } else {
            let value = u64::from(b.u16()) | (u64::from(b.u16()) << 16);
            let _ = t.write(offset, size, value, &drv.mem);
        }
    }
    let _ = t.stats();
}
