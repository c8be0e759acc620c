//! virtio-blk requests.

use super::*;
use crate::devices::virtio::blk::{S_IOERR, S_OK, S_UNSUPP};
use crate::devices::virtio::mmio::VirtioTransport;
use crate::devices::virtio::status;
use crate::devices::virtio::testing::Request;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;

/// Submits `readable` + writable buffers of `writable` bytes (the last byte of the last one is
/// the status), notifies, and returns the request with its used length and status byte.
fn submit(
    t: &mut BlkTransport,
    drv: &mut MockDriver,
    readable: &[&[u8]],
    writable: &[u32],
    is_indirect: bool,
) -> (Request, u32, u8) {
    let req = drv.add_request(0, readable, writable, is_indirect);
    let _ = drv.notify(t, 0);
    let used = drv.pop_used(0).expect("request completed");
    assert_eq!(used.id, u32::from(req.head));
    let total: u32 = writable.iter().sum();
    let status = drv.read_writable(&req, total as usize)[total as usize - 1];
    (req, used.len, status)
}

fn disk_byte(i: u64) -> u8 {
    i as u8 ^ 0x5a
}

#[test]
fn reads_sectors_across_several_buffers() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let (req, len, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_IN, 3)],
        &[512, 1024, 1],
        false,
    );
    assert_eq!((len, status), (1537, S_OK));
    let data = drv.read_writable(&req, 1536);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == disk_byte(3 * 512 + i as u64)));
    let stats = t.stats().device;
    assert_eq!(
        (stats.requests, stats.bytes_to_guest, stats.errors),
        (1, 1536, 0)
    );
}

#[test]
fn writes_then_reads_back() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    let (_, len, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_OUT, 10), &data[..100], &data[100..]],
        &[1],
        false,
    );
    assert_eq!((len, status), (1, S_OK));
    assert_eq!(&t.device().storage()[10 * 512..12 * 512], &data[..]);
    let (req, _, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_IN, 10)],
        &[1024, 1],
        false,
    );
    assert_eq!(status, S_OK);
    assert_eq!(drv.read_writable(&req, 1024), data);
    assert_eq!(t.stats().device.bytes_from_guest, 1024);
}

#[test]
fn flush_and_get_id() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let (_, len, status) = submit(&mut t, &mut drv, &[&blk_header(T_FLUSH, 0)], &[1], false);
    assert_eq!((len, status), (1, S_OK));
    let (req, len, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_GET_ID, 0)],
        &[20, 1],
        false,
    );
    assert_eq!((len, status), (21, S_OK));
    assert_eq!(drv.read_writable(&req, 20), SERIAL);
    // A shorter buffer gets as much of the serial as fits.
    let (req, len, _) = submit(&mut t, &mut drv, &[&blk_header(T_GET_ID, 0)], &[9], false);
    assert_eq!(len, 9);
    assert_eq!(drv.read_writable(&req, 8), SERIAL[..8]);
}

#[test]
fn readonly_disk_refuses_writes_but_reads() {
    let (mut t, mut drv) = blk_ready(true, RING_FEATURES, 16);
    let before = t.device().storage().clone();
    let (_, len, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_OUT, 0), &[0xEE; 512]],
        &[1],
        false,
    );
    assert_eq!((len, status), (1, S_IOERR));
    assert_eq!(t.device().storage(), &before);
    let (_, _, status) = submit(&mut t, &mut drv, &[&blk_header(T_IN, 0)], &[512, 1], false);
    assert_eq!(status, S_OK);
    assert_eq!(t.stats().device.errors, 1);
}

#[test]
fn out_of_range_and_partial_sectors_are_io_errors() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let last = DISK_SECTORS - 1;
    let (_, _, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_IN, last)],
        &[512, 1],
        false,
    );
    assert_eq!(status, S_OK);
    let (_, len, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_IN, last)],
        &[1024, 1],
        false,
    );
    assert_eq!((len, status), (1, S_IOERR));
    let (_, _, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_IN, u64::MAX)],
        &[512, 1],
        false,
    );
    assert_eq!(status, S_IOERR);
    let (_, _, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_OUT, u64::MAX / 512), &[0; 512]],
        &[1],
        false,
    );
    assert_eq!(status, S_IOERR);
    let (_, _, status) = submit(&mut t, &mut drv, &[&blk_header(T_IN, 0)], &[100, 1], false);
    assert_eq!(status, S_IOERR);
    let (_, _, status) = submit(
        &mut t,
        &mut drv,
        &[&blk_header(T_OUT, 0), &[0; 100]],
        &[1],
        false,
    );
    assert_eq!(status, S_IOERR);
    assert_eq!(t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn unknown_requests_and_short_headers_get_a_status() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let (_, _, status) = submit(&mut t, &mut drv, &[&blk_header(T_DISCARD, 0)], &[1], false);
    assert_eq!(status, S_UNSUPP);
    let (_, _, status) = submit(&mut t, &mut drv, &[&[0u8; 8]], &[1], false);
    assert_eq!(status, S_IOERR);
    // The header split over two descriptors is still one header.
    let h = blk_header(T_IN, 1);
    let (req, _, status) = submit(&mut t, &mut drv, &[&h[..5], &h[5..]], &[512, 1], false);
    assert_eq!(status, S_OK);
    assert_eq!(drv.read_writable(&req, 1)[0], disk_byte(512));
}

#[test]
fn a_request_without_status_byte_needs_reset() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 16);
    let _ = drv.add_request(0, &[&blk_header(T_FLUSH, 0)], &[], false);
    assert!(drv.notify(&mut t, 0).interrupt);
    assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    assert!(t
        .last_fault()
        .unwrap()
        .to_string()
        .contains("no writable status byte"));
}

#[test]
fn requests_through_indirect_tables() {
    let (mut t, mut drv) = blk_ready(false, RING_FEATURES, 4);
    for round in 0..10u64 {
        let (req, len, status) = submit(
            &mut t,
            &mut drv,
            &[&blk_header(T_IN, round)],
            &[256, 256, 1],
            true,
        );
        assert_eq!((len, status), (513, S_OK));
        assert_eq!(drv.read_writable(&req, 1)[0], disk_byte(round * 512));
    }
}

#[test]
fn many_requests_wrap_the_rings() {
    let (mut t, mut drv) = blk_ready(false, 0, 4);
    for round in 0..40u64 {
        let sector = round % DISK_SECTORS;
        let (req, _, status) = submit(
            &mut t,
            &mut drv,
            &[&blk_header(T_IN, sector)],
            &[512, 1],
            false,
        );
        assert_eq!(status, S_OK);
        assert_eq!(drv.read_writable(&req, 1)[0], disk_byte(sector * 512));
    }
    assert_eq!(t.stats().device.requests, 40);
}

#[test]
fn a_trailing_partial_sector_is_invisible() {
    let disk = vec![0u8; 3 * 512 + 100];
    let mut t = MmioTransport::new(Blk::new(
        disk,
        BlkOptions {
            is_readonly: false,
            serial: SERIAL,
        },
    ));
    assert_eq!(t.read(crate::devices::virtio::testing::reg::CONFIG, 8), 3);
}
