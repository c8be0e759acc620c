//! The network port as this guest uses it: `virtio-drivers`' raw net driver with every receive
//! buffer posted up front and re-posted as soon as its frame is read, and one transmit buffer
//! whose completion is awaited (bounded by a TSC timeout) before the next send.

use core::fmt;

use guest_rt::cpu::rdtsc;
use guest_rt::dma;
use guest_virtio::GuestHal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::MmioTransport;

pub(crate) const QUEUE_SIZE: usize = 16;
pub(crate) type Net = VirtIONetRaw<GuestHal, MmioTransport<'static>, QUEUE_SIZE>;

/// One buffer per receive descriptor; large enough for any frame plus the virtio header.
const RX_BUF_BYTES: usize = 2048;
const TX_BUF_BYTES: usize = 2048;
/// The virtio-net header (12 bytes in virtio 1.x) and the largest test frame fit.
const _: () = assert!(TX_BUF_BYTES >= 12 + crate::frame::MAX_FRAME);
const _: () = assert!(RX_BUF_BYTES >= 12 + crate::frame::MAX_FRAME);
const TX_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug)]
pub(crate) enum PortError {
    Driver {
        op: &'static str,
        err: virtio_drivers::Error,
    },
    Dma(dma::DmaError),
    /// The device did not complete a transmit in time.
    TxTimeout,
    /// The used ring named a descriptor no receive buffer owns.
    UnknownToken(u16),
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver { op, err } => write!(f, "{op}: {err}"),
            Self::Dma(e) => e.fmt(f),
            Self::TxTimeout => write!(f, "transmit not completed within {TX_TIMEOUT_MS} ms"),
            Self::UnknownToken(t) => {
                write!(f, "used ring names descriptor {t}, owned by no buffer")
            }
        }
    }
}

/// The device, its buffers, and counters.
pub(crate) struct Port {
    pub net: Net,
    rx_base: u64,
    /// Which receive buffer a descriptor head (token) holds.
    owner: [Option<usize>; QUEUE_SIZE],
    tx_base: u64,
    tsc_hz: u64,
    pub tx_frames: u64,
    pub rx_frames: u64,
}

fn driver(op: &'static str) -> impl Fn(virtio_drivers::Error) -> PortError {
    move |err| PortError::Driver { op, err }
}

impl Port {
    /// Takes over `net` and posts every receive buffer.
    pub(crate) fn new(net: Net, tsc_hz: u64) -> Result<Self, PortError> {
        let rx_base = dma::alloc((QUEUE_SIZE * RX_BUF_BYTES) as u64).map_err(PortError::Dma)?;
        let tx_base = dma::alloc(TX_BUF_BYTES as u64).map_err(PortError::Dma)?;
        let mut port = Self {
            net,
            rx_base,
            owner: [None; QUEUE_SIZE],
            tx_base,
            tsc_hz,
            tx_frames: 0,
            rx_frames: 0,
        };
        for index in 0..QUEUE_SIZE {
            port.post(index)?;
        }
        Ok(port)
    }

    /// Receive buffer `index`.
    ///
    /// # Safety
    /// The buffer must not be posted to the device (not between `receive_begin` and
    /// `receive_complete`), and no other slice of it may be alive.
    unsafe fn rx_buf(&self, index: usize) -> &'static mut [u8] {
        let addr = self.rx_base + (index * RX_BUF_BYTES) as u64;
        // SAFETY: the DMA pool gave these bytes to this port alone; the caller rules out
        // aliasing with the device and with other slices.
        unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, RX_BUF_BYTES) }
    }

    fn post(&mut self, index: usize) -> Result<(), PortError> {
        // SAFETY: buffer `index` is not posted (new, or just completed) and the slice ends here.
        let buf = unsafe { self.rx_buf(index) };
        // SAFETY: the buffer is not touched again until receive_complete for this token.
        let token = unsafe { self.net.receive_begin(buf) }.map_err(driver("receive_begin"))?;
        let slot = self
            .owner
            .get_mut(usize::from(token))
            .ok_or(PortError::UnknownToken(token))?;
        *slot = Some(index);
        Ok(())
    }

    /// Sends the frame `fill` writes into the buffer it is given (returning its length).
    pub(crate) fn send(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<(), PortError> {
        // SAFETY: the transmit buffer is this port's; the previous send completed before
        // returning, so the device no longer reads it.
        let tx = unsafe { core::slice::from_raw_parts_mut(self.tx_base as *mut u8, TX_BUF_BYTES) };
        let header = self
            .net
            .fill_buffer_header(tx)
            .map_err(driver("fill_buffer_header"))?;
        let len = header + fill(&mut tx[header..]);
        let tx = &tx[..len];
        // SAFETY: `tx` is not written until transmit_complete below (or the guest stops).
        let token = unsafe { self.net.transmit_begin(tx) }.map_err(driver("transmit_begin"))?;
        let limit = self.tsc_hz / 1000 * TX_TIMEOUT_MS;
        let start = rdtsc();
        while self.net.poll_transmit() != Some(token) {
            if rdtsc().wrapping_sub(start) > limit {
                return Err(PortError::TxTimeout);
            }
            core::hint::spin_loop();
        }
        // SAFETY: the buffer submitted with `token`.
        unsafe { self.net.transmit_complete(token, tx) }.map_err(driver("transmit_complete"))?;
        self.tx_frames += 1;
        Ok(())
    }

    /// Hands every received frame to `on_frame` and re-posts its buffer; returns how many.
    pub(crate) fn poll(&mut self, mut on_frame: impl FnMut(&[u8])) -> Result<usize, PortError> {
        let mut frames = 0;
        while self.poll_one(&mut on_frame)? {
            frames += 1;
        }
        Ok(frames)
    }

    /// Hands the next received frame, if any, to `on_frame` and re-posts its buffer.
    pub(crate) fn poll_one(&mut self, on_frame: impl FnOnce(&[u8])) -> Result<bool, PortError> {
        let Some(token) = self.net.poll_receive() else {
            return Ok(false);
        };
        let index = self
            .owner
            .get_mut(usize::from(token))
            .and_then(Option::take)
            .ok_or(PortError::UnknownToken(token))?;
        // SAFETY: the device has returned this buffer (its token is in the used ring), and
        // the slice ends before the buffer is posted again.
        let buf = unsafe { self.rx_buf(index) };
        // SAFETY: `buf` is the buffer posted with `token`.
        let (header, len) =
            unsafe { self.net.receive_complete(token, buf) }.map_err(driver("receive_complete"))?;
        let end = (header + len).min(buf.len());
        on_frame(&buf[header.min(end)..end]);
        self.rx_frames += 1;
        self.post(index)?;
        Ok(true)
    }
}
