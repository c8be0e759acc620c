//! Host tests of the virtio transport, queues and devices against the mock driver.

mod blk;
mod bus;
mod chain;
mod console;
mod fuzz_smoke;
mod hostile;
mod net;
mod notify;
mod registers;

use alloc::vec;
use alloc::vec::Vec;

use super::blk::{Blk, BlkOptions, SECTOR_SIZE};
use super::mmio::MmioTransport;
use super::testing::MockDriver;
use super::{F_RING_EVENT_IDX, F_RING_INDIRECT_DESC};

/// Both ring features the transport offers.
const RING_FEATURES: u64 = F_RING_INDIRECT_DESC | F_RING_EVENT_IDX;
/// RAM of a mock guest.
const RAM_BYTES: usize = 0x40000;
/// Sectors of a test disk.
const DISK_SECTORS: u64 = 64;
const SERIAL: [u8; 20] = *b"bulkhead-disk-0\0\0\0\0\0";

type BlkTransport = MmioTransport<Blk<Vec<u8>>>;

/// A disk whose byte `i` is `i as u8 ^ 0x5a`, behind a transport.
fn blk(is_readonly: bool) -> BlkTransport {
    let disk = (0..DISK_SECTORS * SECTOR_SIZE)
        .map(|i| i as u8 ^ 0x5a)
        .collect();
    MmioTransport::new(Blk::new(
        disk,
        BlkOptions {
            is_readonly,
            serial: SERIAL,
        },
    ))
}

/// A block device set up with `features` and one queue of `size`.
fn blk_ready(is_readonly: bool, features: u64, size: u16) -> (BlkTransport, MockDriver) {
    let mut t = blk(is_readonly);
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.init(&mut t, features, &[size]).expect("blk init");
    (t, drv)
}

/// A block request header.
fn blk_header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = vec![0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}
