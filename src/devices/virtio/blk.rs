//! virtio-blk (device ID 2, virtio 1.2 §5.2) over storage the hypervisor owns.
//!
//! One request queue. Requests IN, OUT, FLUSH and GET_ID; anything else is answered
//! VIRTIO_BLK_S_UNSUPP, a request beyond the disk or of a size that is not whole sectors
//! VIRTIO_BLK_S_IOERR. A chain without a writable status byte cannot be answered at all and
//! puts the device into DEVICE_NEEDS_RESET.

#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::chain::{ChainReader, ChainWriter, DescChain};
use super::{copy_config, DeviceCtx, DeviceError, DeviceStats, VirtioDevice, DEVICE_ID_BLK};
use crate::guest_mem::GuestMemory;

/// Bytes per sector; capacities and request offsets count in these (§5.2.4).
pub const SECTOR_SIZE: u64 = 512;
/// Largest queue the driver may set up.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments in one request: the queue minus header and status descriptors.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Length of a serial number answered to GET_ID (§5.2.6).
pub const SERIAL_LEN: usize = 20;
/// Bytes copied between storage and guest at a time.
const CHUNK_BYTES: usize = 64 * 1024;
/// Request header: type (le32), reserved (le32), sector (le64).
const HEADER_LEN: usize = 16;

/// seg_max is valid (§5.2.3).
pub const F_SEG_MAX: u64 = 1 << 2;
/// The device is read-only.
pub const F_RO: u64 = 1 << 5;
/// blk_size is valid.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// FLUSH is supported.
pub const F_FLUSH: u64 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

/// Request completed.
pub const S_OK: u8 = 0;
/// Request failed.
pub const S_IOERR: u8 = 1;
/// Request type not supported.
pub const S_UNSUPP: u8 = 2;

/// The backing store refused an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageError {
    /// Byte offset of the access.
    pub offset: u64,
    /// Length of the access.
    pub len: u64,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage access at {:#x} length {:#x} failed",
            self.offset, self.len
        )
    }
}

/// Bytes behind a block device (on bare metal: hypervisor memory holding a disk image).
pub trait BlockStorage: Send {
    /// Size in bytes.
    fn len_bytes(&self) -> u64;
    /// Copies `buf.len()` bytes from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    /// Copies `data` to `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Makes earlier writes durable.
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Any byte buffer the device owns is a disk: a `Vec<u8>` in tests, the hypervisor's private
/// copy of a disk image (`&'static mut [u8]`) on bare metal.
impl<T: AsRef<[u8]> + AsMut<[u8]> + Send> BlockStorage for T {
    fn len_bytes(&self) -> u64 {
        self.as_ref().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let range = byte_range(offset, buf.len(), self.as_ref().len())?;
        buf.copy_from_slice(&self.as_ref()[range]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let range = byte_range(offset, data.len(), self.as_ref().len())?;
        self.as_mut()[range].copy_from_slice(data);
        Ok(())
    }
}

/// `[offset, offset + len)` as an index range into a buffer of `total` bytes, or the error that
/// names the access when it does not fit.
fn byte_range(
    offset: u64,
    len: usize,
    total: usize,
) -> Result<core::ops::Range<usize>, StorageError> {
    let err = StorageError {
        offset,
        len: len as u64,
    };
    let start = usize::try_from(offset).map_err(|_| err)?;
    let end = start.checked_add(len).filter(|&e| e <= total).ok_or(err)?;
    Ok(start..end)
}

/// How a block device is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkOptions {
    /// Refuse writes (VIRTIO_BLK_F_RO).
    pub is_readonly: bool,
    /// Answer to GET_ID; NUL-padded.
    pub serial: [u8; SERIAL_LEN],
}

/// A virtio-blk device over storage `S`.
pub struct Blk<S: BlockStorage> {
    storage: S,
    options: BlkOptions,
    scratch: Vec<u8>,
    stats: DeviceStats,
}

impl<S: BlockStorage> Blk<S> {
    /// A block device over `storage`; a trailing partial sector is not visible to the guest.
    pub fn new(storage: S, options: BlkOptions) -> Self {
        Self {
            storage,
            options,
            scratch: vec![0; CHUNK_BYTES],
            stats: DeviceStats::default(),
        }
    }

    /// The backing storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Capacity in sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.storage.len_bytes() / SECTOR_SIZE
    }

    /// Byte offset of `len` bytes at `sector`, if whole sectors inside the disk.
    fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return None;
        }
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        (end <= self.capacity_sectors() * SECTOR_SIZE).then_some(start)
    }

    /// Serves one request; returns the used length (data written plus the status byte).
    fn serve(&mut self, chain: &DescChain, mem: &dyn GuestMemory) -> Result<u32, DeviceError> {
        let Some(status_gpa) = chain.last_writable_byte() else {
            return Err(DeviceError::Malformed {
                queue: chain.queue(),
                head: chain.head(),
                what: "virtio-blk request has no writable status byte",
            });
        };
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        // Cannot fail: the status byte exists.
        let _ = writer.reserve_tail(1);
        let mut header = [0u8; HEADER_LEN];
        let status = match reader.read_exact(&mut header) {
            Err(_) => S_IOERR,
            Ok(()) => {
                let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
                let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
                match u32::from_le_bytes([t0, t1, t2, t3]) {
                    T_IN => self.read_sectors(sector, &mut writer)?,
                    T_OUT => self.write_sectors(sector, &mut reader)?,
                    T_FLUSH => match self.storage.flush() {
                        Ok(()) => S_OK,
                        Err(_) => S_IOERR,
                    },
                    T_GET_ID => {
                        writer.write(&self.options.serial)?;
                        S_OK
                    }
                    _ => S_UNSUPP,
                }
            }
        };
        mem.write(status_gpa, &[status])?;
        self.stats.requests += 1;
        self.stats.bytes_to_guest += writer.written();
        if status != S_OK {
            self.stats.errors += 1;
        }
        // The chain is at most 4 GiB (checked by the walker), so this fits.
        Ok(u32::try_from(writer.written() + 1).unwrap_or(u32::MAX))
    }

    fn read_sectors(
        &mut self,
        sector: u64,
        writer: &mut ChainWriter<'_>,
    ) -> Result<u8, DeviceError> {
        let len = writer.remaining();
        let Some(mut offset) = self.byte_range(sector, len) else {
            return Ok(S_IOERR);
        };
        let end = offset + len;
        while offset < end {
            let n = core::cmp::min(self.scratch.len() as u64, end - offset) as usize;
            let buf = &mut self.scratch[..n];
            if self.storage.read_at(offset, buf).is_err() {
                return Ok(S_IOERR);
            }
            writer.write(buf)?;
            offset += n as u64;
        }
        Ok(S_OK)
    }

    fn write_sectors(
        &mut self,
        sector: u64,
        reader: &mut ChainReader<'_>,
    ) -> Result<u8, DeviceError> {
        // §5.2.6.2: a read-only device writes nothing.
        if self.options.is_readonly {
            return Ok(S_IOERR);
        }
        let len = reader.remaining();
        let Some(mut offset) = self.byte_range(sector, len) else {
            return Ok(S_IOERR);
        };
        let end = offset + len;
        while offset < end {
            let n = core::cmp::min(self.scratch.len() as u64, end - offset) as usize;
            let buf = &mut self.scratch[..n];
            reader.read(buf)?;
            if self.storage.write_at(offset, buf).is_err() {
                return Ok(S_IOERR);
            }
            self.stats.bytes_from_guest += n as u64;
            offset += n as u64;
        }
        Ok(S_OK)
    }
}

impl<S: BlockStorage> VirtioDevice for Blk<S> {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn device_id(&self) -> u32 {
        DEVICE_ID_BLK
    }

    fn features(&self) -> u64 {
        let ro = if self.options.is_readonly { F_RO } else { 0 };
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config up to blk_size (§5.2.4): capacity, size_max (not offered),
        // seg_max, geometry (not offered), blk_size.
        let mut image = [0u8; 24];
        image[0..8].copy_from_slice(&self.capacity_sectors().to_le_bytes());
        image[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        image[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        copy_config(&image, offset, data);
    }

    fn notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        while let Some(chain) = ctx.pop(queue)? {
            let len = self.serve(&chain, ctx.mem)?;
            ctx.add_used(queue, chain, len)?;
        }
        Ok(())
    }

    fn reset(&mut self) {}

    fn stats(&self) -> DeviceStats {
        self.stats
    }
}
