//! A validated descriptor chain and the cursors devices use to read requests out of its
//! device-readable buffers and write answers into its device-writable ones.
//!
//! By the time a [`DescChain`] exists, [`super::queue`] has checked every buffer lies in guest
//! RAM and that readable buffers come before writable ones, so devices only deal with their
//! own request format.

#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemError, GuestMemory};

/// One guest buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte in guest RAM.
    pub gpa: GuestPhysAddr,
    /// Length in bytes (never zero: empty descriptors are dropped while walking).
    pub len: u32,
    /// Device-writable (the driver set VIRTQ_DESC_F_WRITE).
    pub is_writable: bool,
}

/// A chain of buffers the driver made available, popped from a queue.
///
/// Hand it back with [`super::DeviceCtx::add_used`] once the request is done.
#[derive(Debug)]
pub struct DescChain {
    pub(super) queue: u16,
    pub(super) head: u16,
    pub(super) segs: Vec<Segment>,
    pub(super) first_writable: usize,
    pub(super) readable_len: u64,
    pub(super) writable_len: u64,
}

impl DescChain {
    /// Index of the queue the chain came from.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Head descriptor index (the ID returned in the used ring).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The chain's buffers, readable ones first.
    pub fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Guest address of the last device-writable byte (where block devices put their status).
    pub fn last_writable_byte(&self) -> Option<GuestPhysAddr> {
        let last = self.segs[self.first_writable..].last()?;
        Some(last.gpa + (u64::from(last.len) - 1))
    }

    /// A cursor over the device-readable bytes.
    pub fn reader<'a>(&'a self, mem: &'a dyn GuestMemory) -> ChainReader<'a> {
        ChainReader {
            cursor: Cursor::new(&self.segs[..self.first_writable], self.readable_len),
            mem,
        }
    }

    /// A cursor over the device-writable bytes.
    pub fn writer<'a>(&'a self, mem: &'a dyn GuestMemory) -> ChainWriter<'a> {
        ChainWriter {
            cursor: Cursor::new(&self.segs[self.first_writable..], self.writable_len),
            mem,
            written: 0,
        }
    }
}

/// A read or write that did not fit the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainIoError {
    /// The chain has fewer bytes left than asked for.
    Short {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes left in the chain.
        available: u64,
    },
    /// Guest memory refused the copy.
    Memory(GuestMemError),
}

impl fmt::Display for ChainIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { wanted, available } => {
                write!(
                    f,
                    "chain too short: {wanted} bytes wanted, {available} left"
                )
            }
            Self::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// Position inside a list of segments.
struct Cursor<'a> {
    segs: &'a [Segment],
    seg: usize,
    offset: u32,
    remaining: u64,
}

impl<'a> Cursor<'a> {
    fn new(segs: &'a [Segment], total: u64) -> Self {
        Self {
            segs,
            seg: 0,
            offset: 0,
            remaining: total,
        }
    }

    /// The next contiguous piece of at most `max` bytes, and advances past it.
    fn next_piece(&mut self, max: usize) -> Option<(GuestPhysAddr, usize)> {
        while let Some(s) = self.segs.get(self.seg) {
            let left = s.len - self.offset;
            if left == 0 {
                self.seg += 1;
                self.offset = 0;
                continue;
            }
            let n = core::cmp::min(left as usize, max);
            if n == 0 {
                return None;
            }
            let gpa = s.gpa + u64::from(self.offset);
            // n <= left, which fits in u32.
            self.offset += n as u32;
            self.remaining -= n as u64;
            return Some((gpa, n));
        }
        None
    }
}

/// Reads the device-readable part of a chain in order.
pub struct ChainReader<'a> {
    cursor: Cursor<'a>,
    mem: &'a dyn GuestMemory,
}

impl ChainReader<'_> {
    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.cursor.remaining
    }

    /// Fills as much of `buf` as the chain has left; returns how many bytes that was.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, GuestMemError> {
        let mut done = 0;
        while done < buf.len() {
            let Some((gpa, n)) = self.cursor.next_piece(buf.len() - done) else {
                break;
            };
            self.mem.read(gpa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(done)
    }

    /// Fills all of `buf`, or fails without a partial promise about the cursor.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ChainIoError> {
        if (buf.len() as u64) > self.remaining() {
            return Err(ChainIoError::Short {
                wanted: buf.len() as u64,
                available: self.remaining(),
            });
        }
        self.read(buf).map_err(ChainIoError::Memory)?;
        Ok(())
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: u64) -> Result<(), ChainIoError> {
        if n > self.remaining() {
            return Err(ChainIoError::Short {
                wanted: n,
                available: self.remaining(),
            });
        }
        let mut left = n;
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            match self.cursor.next_piece(max) {
                Some((_, got)) => left -= got as u64,
                None => break,
            }
        }
        Ok(())
    }
}

/// Writes into the device-writable part of a chain in order.
pub struct ChainWriter<'a> {
    cursor: Cursor<'a>,
    mem: &'a dyn GuestMemory,
    written: u64,
}

impl ChainWriter<'_> {
    /// Room left.
    pub fn remaining(&self) -> u64 {
        self.cursor.remaining
    }

    /// Bytes written so far (what goes into the used ring's `len`).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Keeps the last `n` writable bytes out of reach of this writer (e.g. a status byte).
    pub fn reserve_tail(&mut self, n: u64) -> Result<(), ChainIoError> {
        if n > self.cursor.remaining {
            return Err(ChainIoError::Short {
                wanted: n,
                available: self.cursor.remaining,
            });
        }
        self.cursor.remaining -= n;
        Ok(())
    }

    /// Writes as much of `data` as fits; returns how many bytes that was.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, GuestMemError> {
        let mut done = 0;
        while done < data.len() {
            let max = core::cmp::min(
                data.len() - done,
                usize::try_from(self.cursor.remaining).unwrap_or(usize::MAX),
            );
            let Some((gpa, n)) = self.cursor.next_piece(max) else {
                break;
            };
            self.mem.write(gpa, &data[done..done + n])?;
            done += n;
            self.written += n as u64;
        }
        Ok(done)
    }

    /// Writes all of `data`, or nothing if it does not fit.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ChainIoError> {
        if (data.len() as u64) > self.remaining() {
            return Err(ChainIoError::Short {
                wanted: data.len() as u64,
                available: self.remaining(),
            });
        }
        self.write(data).map_err(ChainIoError::Memory)?;
        Ok(())
    }
}
