//! The disk as this guest uses it: `virtio-drivers`' block driver through its non-blocking
//! calls, each request bounded by a TSC timeout so a device that never answers fails the guest
//! instead of hanging it.

use core::fmt;

use guest_rt::cpu::rdtsc;
use guest_virtio::GuestHal;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::mmio::MmioTransport;

pub(crate) type Blk = VirtIOBlk<GuestHal, MmioTransport<'static>>;

/// How long one request may take.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// A request that did not complete well.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DiskError {
    /// The driver refused or the device answered with an error status.
    Driver {
        op: &'static str,
        sector: u64,
        err: virtio_drivers::Error,
    },
    /// No answer within the timeout; the device still owns the buffers, so the guest must stop.
    Timeout { op: &'static str, sector: u64 },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver { op, sector, err } => write!(f, "{op} at sector {sector}: {err}"),
            Self::Timeout { op, sector } => write!(
                f,
                "{op} at sector {sector}: no completion within {REQUEST_TIMEOUT_MS} ms"
            ),
        }
    }
}

impl DiskError {
    /// Whether the device answered VIRTIO_BLK_S_IOERR.
    pub(crate) fn is_io_error(&self) -> bool {
        matches!(
            self,
            Self::Driver {
                err: virtio_drivers::Error::IoError,
                ..
            }
        )
    }
}

/// The block device and the TSC rate its timeouts use.
pub(crate) struct Disk {
    pub blk: Blk,
    pub tsc_hz: u64,
}

impl Disk {
    /// Capacity in 512-byte sectors.
    pub(crate) fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    /// Waits until the request `token` is in the used ring.
    fn wait_used(&mut self, token: u16, op: &'static str, sector: u64) -> Result<(), DiskError> {
        let limit = self.tsc_hz / 1000 * REQUEST_TIMEOUT_MS;
        let start = rdtsc();
        loop {
            if let Some(used) = self.blk.peek_used() {
                if used == token {
                    return Ok(());
                }
                // Only one request is ever in flight, so another token is a driver bug.
                return Err(DiskError::Driver {
                    op,
                    sector,
                    err: virtio_drivers::Error::WrongToken,
                });
            }
            if rdtsc().wrapping_sub(start) > limit {
                return Err(DiskError::Timeout { op, sector });
            }
            core::hint::spin_loop();
        }
    }

    /// Submits a read of `buf.len()` bytes (a multiple of 512) at `sector`; `on_submitted` runs
    /// while it is in flight (to wait for its interrupt).
    pub(crate) fn read_with(
        &mut self,
        sector: u64,
        buf: &mut [u8],
        on_submitted: impl FnOnce(&mut Blk),
    ) -> Result<(), DiskError> {
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        let op = "read";
        let driver = |err| DiskError::Driver { op, sector, err };
        // SAFETY: req, buf and resp stay untouched until complete_read_blocks below, which is
        // reached on every path except a timeout (after which the guest stops).
        let token = unsafe {
            self.blk
                .read_blocks_nb(sector as usize, &mut req, buf, &mut resp)
        }
        .map_err(driver)?;
        on_submitted(&mut self.blk);
        self.wait_used(token, op, sector)?;
        // SAFETY: the same buffers as submitted with `token`.
        unsafe {
            self.blk
                .complete_read_blocks(token, &req, buf, &mut resp)
                .map_err(driver)
        }
    }

    pub(crate) fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.read_with(sector, buf, |_| {})
    }

    /// Writes `buf` (a multiple of 512 bytes) at `sector`.
    pub(crate) fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        let op = "write";
        let driver = |err| DiskError::Driver { op, sector, err };
        // SAFETY: as in read_with.
        let token = unsafe {
            self.blk
                .write_blocks_nb(sector as usize, &mut req, buf, &mut resp)
        }
        .map_err(driver)?;
        self.wait_used(token, op, sector)?;
        // SAFETY: the same buffers as submitted with `token`.
        unsafe {
            self.blk
                .complete_write_blocks(token, &req, buf, &mut resp)
                .map_err(driver)
        }
    }
}

/// Bytes per sector.
pub(crate) const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;
