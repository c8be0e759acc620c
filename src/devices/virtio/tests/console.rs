//! virtio-console output lines and input.

use alloc::boxed::Box;
use alloc::sync::Arc;
use spin::Mutex;

use super::*;
use crate::devices::virtio::console::{
    Console, ConsoleInput, INPUT_CAPACITY, MAX_LINE, RX_QUEUE, TX_QUEUE,
};
use crate::devices::virtio::mmio::VirtioTransport;

struct Setup {
    t: MmioTransport<Console>,
    drv: MockDriver,
    lines: Arc<Mutex<Vec<Vec<u8>>>>,
    input: Arc<ConsoleInput>,
}

fn console() -> Setup {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let input = ConsoleInput::new();
    let sink = Box::new(move |line: &[u8]| sink_lines.lock().push(line.to_vec()));
    let mut t = MmioTransport::new(Console::new(sink, input.clone()));
    let mut drv = MockDriver::new(RAM_BYTES);
    drv.init(&mut t, RING_FEATURES, &[8, 8]).unwrap();
    Setup {
        t,
        drv,
        lines,
        input,
    }
}

impl Setup {
    fn write(&mut self, parts: &[&[u8]]) {
        self.drv.add_request(TX_QUEUE, parts, &[], false);
        let _ = self.drv.notify(&mut self.t, TX_QUEUE);
        assert_eq!(self.drv.pop_used(TX_QUEUE).map(|u| u.len), Some(0));
    }

    fn lines(&self) -> Vec<Vec<u8>> {
        self.lines.lock().clone()
    }
}

#[test]
fn output_is_cut_into_lines() {
    let mut s = console();
    s.write(&[b"hello\nwor"]);
    assert_eq!(s.lines(), [b"hello".to_vec()]);
    s.write(&[b"ld\r", b"\n", b"# "]);
    assert_eq!(s.lines(), [b"hello".to_vec(), b"world".to_vec()]);
    s.t.device_mut().flush_output();
    assert_eq!(s.lines().last().unwrap(), b"# ");
    assert_eq!(s.t.stats().device.bytes_from_guest, 15);
}

#[test]
fn long_lines_are_split() {
    let mut s = console();
    let long = vec![b'x'; MAX_LINE + 10];
    s.write(&[&long, b"\n"]);
    let lines = s.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), MAX_LINE);
    assert_eq!(lines[1].len(), 10);
}

#[test]
fn input_goes_into_receive_buffers() {
    let mut s = console();
    let buf = s.drv.add_request(RX_QUEUE, &[], &[64], false);
    let _ = s.drv.notify(&mut s.t, RX_QUEUE);
    assert!(s.drv.pop_used(RX_QUEUE).is_none());
    assert_eq!(s.input.push(b"ls -l\n"), 6);
    assert!(s.t.poll(&s.drv.mem).interrupt);
    let used = s.drv.pop_used(RX_QUEUE).unwrap();
    assert_eq!((used.id, used.len), (u32::from(buf.head), 6));
    assert_eq!(s.drv.read_writable(&buf, 6), b"ls -l\n");
}

#[test]
fn input_waits_for_a_buffer_and_is_split_over_small_ones() {
    let mut s = console();
    s.input.push(b"abcdef");
    assert!(!s.t.poll(&s.drv.mem).interrupt);
    let first = s.drv.add_request(RX_QUEUE, &[], &[4], false);
    let second = s.drv.add_request(RX_QUEUE, &[], &[4], false);
    assert!(s.drv.notify(&mut s.t, RX_QUEUE).interrupt);
    assert_eq!(s.drv.pop_used(RX_QUEUE).map(|u| u.len), Some(4));
    assert_eq!(s.drv.pop_used(RX_QUEUE).map(|u| u.len), Some(2));
    assert_eq!(s.drv.read_writable(&first, 4), b"abcd");
    assert_eq!(s.drv.read_writable(&second, 2), b"ef");
}

#[test]
fn input_overflow_is_dropped_and_counted() {
    let s = console();
    let big = vec![b'y'; INPUT_CAPACITY + 5];
    assert_eq!(s.input.push(&big), INPUT_CAPACITY);
    assert_eq!(s.input.push(b"z"), 0);
    assert_eq!(s.t.stats().device.dropped, 6);
}

#[test]
fn input_waker_runs_on_first_byte() {
    use core::sync::atomic::{AtomicUsize, Ordering};
    let mut s = console();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    s.input.set_waker(Box::new(move || {
        c.fetch_add(1, Ordering::Relaxed);
    }));
    s.input.push(b"a");
    s.input.push(b"b");
    assert_eq!(count.load(Ordering::Relaxed), 1);
    let _ = s.drv.add_request(RX_QUEUE, &[], &[8], false);
    let _ = s.t.poll(&s.drv.mem);
    s.input.push(b"c");
    assert_eq!(count.load(Ordering::Relaxed), 2);
}
