//! virtio-net cards on switches.

use alloc::sync::Arc;

use super::*;
use crate::devices::switch::{MacAddr, Switch};
use crate::devices::virtio::mmio::VirtioTransport;
use crate::devices::virtio::net::{Net, F_MAC, F_MTU, F_STATUS, NET_HDR_LEN, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::testing::reg;

const BCAST: MacAddr = [0xff; 6];

struct Card {
    t: MmioTransport<Net>,
    drv: MockDriver,
    mac: MacAddr,
}

fn card(switch: &Arc<Switch>, last: u8) -> Card {
    let mac = [0x52, 0x54, 0, 0, 0, last];
    let mut t = MmioTransport::new(Net::new(switch.add_port(), mac));
    let mut drv = MockDriver::new(RAM_BYTES);
    let features = drv
        .init(&mut t, RING_FEATURES | F_MAC | F_STATUS | F_MTU, &[16, 16])
        .unwrap();
    assert_eq!(
        features & (F_MAC | F_STATUS | F_MTU),
        F_MAC | F_STATUS | F_MTU
    );
    Card { t, drv, mac }
}

fn frame(dst: MacAddr, src: MacAddr, tag: u8, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8 ^ tag).collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

impl Card {
    fn send(&mut self, frame: &[u8]) {
        let header = [0u8; NET_HDR_LEN];
        self.drv
            .add_request(TX_QUEUE, &[&header, frame], &[], false);
        let _ = self.drv.notify(&mut self.t, TX_QUEUE);
        assert_eq!(self.drv.pop_used(TX_QUEUE).map(|u| u.len), Some(0));
    }

    /// Posts one receive buffer of `len` bytes and returns it for later reading.
    fn post(&mut self, len: u32) -> crate::devices::virtio::testing::Request {
        let req = self.drv.add_request(RX_QUEUE, &[], &[len], false);
        let _ = self.drv.notify(&mut self.t, RX_QUEUE);
        req
    }

    /// Frames received so far (after posting buffers and polling).
    fn receive(&mut self, bufs: &[crate::devices::virtio::testing::Request]) -> Vec<Vec<u8>> {
        let _ = self.t.poll(&self.drv.mem);
        let mut frames = Vec::new();
        while let Some(used) = self.drv.pop_used(RX_QUEUE) {
            let req = bufs
                .iter()
                .find(|r| u32::from(r.head) == used.id)
                .expect("known buffer");
            let data = self.drv.read_writable(req, used.len as usize);
            assert_eq!(&data[..NET_HDR_LEN], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
            frames.push(data[NET_HDR_LEN..].to_vec());
        }
        frames
    }
}

#[test]
fn config_has_mac_link_and_mtu() {
    let sw = Switch::new("lan", 8);
    let mut a = card(&sw, 1);
    let mac: Vec<u8> = (0..6).map(|i| a.t.read(reg::CONFIG + i, 1) as u8).collect();
    assert_eq!(mac, a.mac);
    assert_eq!(a.t.read(reg::CONFIG + 6, 2), 1);
    assert_eq!(a.t.read(reg::CONFIG + 10, 2), 1500);
}

#[test]
fn frames_flow_both_ways_between_two_ports() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    let rx_b = [b.post(1600), b.post(1600)];
    let to_b = frame(b.mac, a.mac, 1, 1514);
    a.send(&to_b);
    assert_eq!(b.receive(&rx_b), [to_b]);
    let rx_a = [a.post(1600)];
    let to_a = frame(a.mac, b.mac, 2, 60);
    b.send(&to_a);
    assert_eq!(a.receive(&rx_a), [to_a]);
    let stats = a.t.stats().device;
    assert_eq!((stats.bytes_from_guest, stats.bytes_to_guest), (1514, 60));
    let port = sw.port_stats(0).unwrap();
    assert_eq!(
        (port.tx_frames, port.tx_bytes, port.rx_frames, port.rx_bytes),
        (1, 1514, 1, 60)
    );
}

#[test]
fn receive_interrupt_comes_from_poll() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    let _ = b.post(1600);
    assert!(!b.t.poll(&b.drv.mem).interrupt);
    a.send(&frame(BCAST, a.mac, 0, 64));
    assert!(b.t.poll(&b.drv.mem).interrupt);
    assert!(b.t.interrupt_pending());
    assert!(!b.t.poll(&b.drv.mem).interrupt);
}

#[test]
fn broadcast_reaches_every_other_port() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b, mut c) = (card(&sw, 1), card(&sw, 2), card(&sw, 3));
    let (rb, rc, ra) = ([b.post(1600)], [c.post(1600)], [a.post(1600)]);
    let f = frame(BCAST, a.mac, 3, 100);
    a.send(&f);
    assert_eq!(b.receive(&rb), core::slice::from_ref(&f));
    assert_eq!(c.receive(&rc), [f]);
    assert!(a.receive(&ra).is_empty());
}

#[test]
fn switches_are_isolated() {
    let (lan, dmz) = (Switch::new("lan", 8), Switch::new("dmz", 8));
    let (mut a, mut b, mut c) = (card(&lan, 1), card(&lan, 2), card(&dmz, 3));
    let (rb, rc) = ([b.post(1600)], [c.post(1600)]);
    a.send(&frame(BCAST, a.mac, 0, 80));
    // Even to C's own MAC the frame stays on A's switch.
    a.send(&frame(c.mac, a.mac, 0, 80));
    assert_eq!(b.receive(&rb).len(), 1);
    assert!(c.receive(&rc).is_empty());
    assert_eq!(dmz.port_stats(0).unwrap().rx_frames, 0);
}

#[test]
fn frames_wait_for_buffers_and_overflow_is_dropped() {
    let sw = Switch::new("lan", 2);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    for tag in 0..5 {
        a.send(&frame(BCAST, a.mac, tag, 64));
    }
    assert!(!b.t.poll(&b.drv.mem).interrupt);
    let bufs: Vec<_> = (0..4).map(|_| b.post(1600)).collect();
    let got = b.receive(&bufs);
    assert_eq!(
        got,
        [frame(BCAST, a.mac, 0, 64), frame(BCAST, a.mac, 1, 64)]
    );
    assert_eq!(sw.port_stats(1).unwrap().rx_dropped, 3);
    assert_eq!(b.t.stats().device.dropped, 3);
}

#[test]
fn bad_frames_are_counted_not_forwarded() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    let rb = [b.post(1600)];
    a.send(&[0u8; 10]);
    a.send(&frame(BCAST, a.mac, 0, 1600));
    assert_eq!(a.t.stats().device.errors, 2);
    assert!(b.receive(&rb).is_empty());
    assert_eq!(sw.port_stats(1).unwrap().rx_frames, 0);
}

#[test]
fn a_receive_buffer_too_small_gets_nothing() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    let small = b.post(30);
    a.send(&frame(BCAST, a.mac, 0, 64));
    let _ = b.t.poll(&b.drv.mem);
    let used = b.drv.pop_used(RX_QUEUE).unwrap();
    assert_eq!((used.id, used.len), (u32::from(small.head), 0));
    assert_eq!(b.t.stats().device.dropped, 1);
}

#[test]
fn reset_drops_waiting_frames() {
    let sw = Switch::new("lan", 8);
    let (mut a, mut b) = (card(&sw, 1), card(&sw, 2));
    a.send(&frame(BCAST, a.mac, 0, 64));
    assert_eq!(sw.port_stats(1).unwrap().rx_frames, 1);
    let _ = b.drv.write_reg(&mut b.t, reg::STATUS, 0);
    assert_eq!(b.t.device().port().inbox_len(), 0);
    assert!(!b.t.device().port().has_pending());
}

#[test]
fn senders_on_other_cpus_never_lose_count() {
    extern crate std;
    let sw = Switch::new("lan", 64);
    let sink = sw.add_port();
    let senders: Vec<_> = (0..3u8)
        .map(|n| {
            let port = sw.add_port();
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    port.send(frame(
                        BCAST,
                        [2, 0, 0, 0, 1, n],
                        i as u8,
                        64 + (i % 64) as usize,
                    ));
                }
            })
        })
        .collect();
    let mut received = 0u64;
    while senders.iter().any(|s| !s.is_finished()) || sink.inbox_len() > 0 {
        if sink.take_pending() {
            while sink.recv().is_some() {
                received += 1;
            }
        }
        std::thread::yield_now();
    }
    for s in senders {
        s.join().unwrap();
    }
    while sink.recv().is_some() {
        received += 1;
    }
    let stats = sink.stats();
    assert_eq!(stats.rx_frames, received);
    assert_eq!(stats.rx_frames + stats.rx_dropped, 1500);
}
