//! virtio-console (device ID 3, virtio 1.2 §5.3), port 0 only (no MULTIPORT).
//!
//! What the guest writes is cut into lines and handed to a sink (the hypervisor prints them
//! with the guest's name in front). Input typed while the guest has the console focus arrives
//! on another CPU, waits in a shared [`ConsoleInput`], and is copied into the receive queue by
//! the guest's own CPU.

#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;

use super::{DeviceCtx, DeviceError, DeviceStats, VirtioDevice, DEVICE_ID_CONSOLE};

/// Queue the device writes input into (receiveq0).
pub const RX_QUEUE: u16 = 0;
/// Queue the driver writes output into (transmitq0).
pub const TX_QUEUE: u16 = 1;
/// Largest queue the driver may set up.
const QUEUE_SIZE: u16 = 64;
/// A line longer than this is handed out without waiting for its newline.
pub const MAX_LINE: usize = 512;
/// Input bytes kept at most; more are dropped and counted.
pub const INPUT_CAPACITY: usize = 4096;
/// Bytes copied out of a transmit chain at a time.
const CHUNK: usize = 256;

/// Receives each complete line of guest output (without its line ending).
pub type ConsoleSink = Box<dyn FnMut(&[u8]) + Send>;

/// Input waiting for a guest, filled from any CPU.
pub struct ConsoleInput {
    bytes: Mutex<VecDeque<u8>>,
    pending: AtomicBool,
    dropped: AtomicU64,
    waker: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl ConsoleInput {
    /// An empty input buffer.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            bytes: Mutex::new(VecDeque::new()),
            pending: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            waker: Mutex::new(None),
        })
    }

    /// Sets what to call when input arrives for an idle console (e.g. IPI the guest's CPU).
    pub fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        *self.waker.lock() = Some(waker);
    }

    /// Queues `data` for the guest; returns how many bytes fitted.
    pub fn push(&self, data: &[u8]) -> usize {
        let accepted = {
            let mut bytes = self.bytes.lock();
            let n = data.len().min(INPUT_CAPACITY.saturating_sub(bytes.len()));
            bytes.extend(&data[..n]);
            n
        };
        self.dropped
            .fetch_add((data.len() - accepted) as u64, Ordering::Relaxed);
        if accepted > 0 && !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(wake) = &*self.waker.lock() {
                wake();
            }
        }
        accepted
    }

    /// Bytes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Clears the "input arrived" flag; returns whether it was set.
    pub fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Whether input arrived since the flag was last taken.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether no input waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.lock().is_empty()
    }

    /// Marks input as waiting again (the consumer had no room for all of it).
    pub fn set_pending(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// Takes up to `max` bytes, oldest first.
    pub fn take(&self, max: usize) -> Vec<u8> {
        let mut bytes = self.bytes.lock();
        let n = max.min(bytes.len());
        bytes.drain(..n).collect()
    }

    /// Puts bytes back in front (the consumer could not take them).
    pub fn unget(&self, data: &[u8]) {
        let mut bytes = self.bytes.lock();
        for &b in data.iter().rev() {
            bytes.push_front(b);
        }
    }
}

/// A console device.
pub struct Console {
    sink: ConsoleSink,
    input: Arc<ConsoleInput>,
    line: Vec<u8>,
    stats: DeviceStats,
}

impl Console {
    /// A console that hands output lines to `sink` and reads input from `input`.
    pub fn new(sink: ConsoleSink, input: Arc<ConsoleInput>) -> Self {
        Self {
            sink,
            input,
            line: Vec::new(),
            stats: DeviceStats::default(),
        }
    }

    /// Hands out a partial line (e.g. a shell prompt) that has waited long enough.
    pub fn flush_output(&mut self) {
        if !self.line.is_empty() {
            (self.sink)(&self.line);
            self.line.clear();
        }
    }

    fn output(&mut self, data: &[u8]) {
        for &b in data {
            match b {
                b'\n' => {
                    if self.line.last() == Some(&b'\r') {
                        self.line.pop();
                    }
                    (self.sink)(&self.line);
                    self.line.clear();
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.flush_output();
                    }
                }
            }
        }
    }

    fn transmit(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        while let Some(chain) = ctx.pop(TX_QUEUE)? {
            let mut reader = chain.reader(ctx.mem);
            let mut buf = [0u8; CHUNK];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                self.output(&buf[..n]);
                self.stats.bytes_from_guest += n as u64;
            }
            self.stats.requests += 1;
            ctx.add_used(TX_QUEUE, chain, 0)?;
        }
        Ok(())
    }

    fn receive(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        loop {
            let data = self.input.take(INPUT_CAPACITY);
            if data.is_empty() {
                return Ok(());
            }
            let Some(chain) = ctx.pop(RX_QUEUE)? else {
                // No buffer yet: the driver's next receive notification delivers it.
                self.input.unget(&data);
                return Ok(());
            };
            let mut writer = chain.writer(ctx.mem);
            let n = writer.write(&data)?;
            self.input.unget(&data[n..]);
            self.stats.requests += 1;
            self.stats.bytes_to_guest += n as u64;
            // n is at most INPUT_CAPACITY.
            ctx.add_used(RX_QUEUE, chain, n as u32)?;
        }
    }
}

impl VirtioDevice for Console {
    fn name(&self) -> &'static str {
        "virtio-console"
    }

    fn device_id(&self) -> u32 {
        DEVICE_ID_CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // No SIZE, MULTIPORT or EMERG_WRITE: no configuration field is valid.
        data.fill(0);
    }

    fn notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        match queue {
            TX_QUEUE => self.transmit(ctx),
            RX_QUEUE => self.receive(ctx),
            _ => Ok(()),
        }
    }

    fn has_pending_work(&self) -> bool {
        self.input.pending.load(Ordering::Acquire)
    }

    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        if self.input.pending.swap(false, Ordering::AcqRel) {
            self.receive(ctx)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.line.clear();
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats {
            dropped: self.input.dropped(),
            ..self.stats
        }
    }
}
