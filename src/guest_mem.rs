//! Access to a guest's RAM from the hypervisor.
//!
//! The guest may change its memory at any moment (from another vCPU), so the hypervisor never
//! holds a Rust reference into it: every access is a bounds-checked copy in or out through
//! [`GuestMemory`]. The bare-metal implementation copies with volatile accesses; tests and
//! fuzzers use [`VecGuestMemory`].

#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use crate::addr::GuestPhysAddr;

/// An access that is not entirely inside the guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMemError {
    /// First byte of the access.
    pub gpa: GuestPhysAddr,
    /// Length of the access in bytes.
    pub len: u64,
}

impl fmt::Display for GuestMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} length {:#x} is outside guest RAM",
            self.gpa, self.len
        )
    }
}

/// Bounds-checked copies into and out of one guest's RAM.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes starting at `gpa` into `buf`.
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError>;

    /// Copies `data` into guest RAM starting at `gpa`.
    fn write(&self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError>;

    /// Whether `[gpa, gpa + len)` lies entirely in guest RAM.
    fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool;

    /// Fills `[gpa, gpa + len)` with `byte`.
    fn fill(&self, gpa: GuestPhysAddr, len: u64, byte: u8) -> Result<(), GuestMemError> {
        if !self.contains(gpa, len) {
            return Err(GuestMemError { gpa, len });
        }
        let chunk = [byte; 256];
        let mut done = 0u64;
        while done < len {
            let n = core::cmp::min(chunk.len() as u64, len - done);
            self.write(gpa + done, &chunk[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian `u16`.
    fn read_u16(&self, gpa: GuestPhysAddr) -> Result<u16, GuestMemError> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, gpa: GuestPhysAddr) -> Result<u32, GuestMemError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, gpa: GuestPhysAddr) -> Result<u64, GuestMemError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u16`.
    fn write_u16(&self, gpa: GuestPhysAddr, v: u16) -> Result<(), GuestMemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Writes a little-endian `u32`.
    fn write_u32(&self, gpa: GuestPhysAddr, v: u32) -> Result<(), GuestMemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    fn write_u64(&self, gpa: GuestPhysAddr, v: u64) -> Result<(), GuestMemError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Checks that `[gpa, gpa + len)` lies inside `[base, base + size)` without overflowing.
pub fn range_within(base: GuestPhysAddr, size: u64, gpa: GuestPhysAddr, len: u64) -> bool {
    let Some(offset) = gpa.as_u64().checked_sub(base.as_u64()) else {
        return false;
    };
    offset <= size && len <= size - offset
}

/// Guest RAM backed by a `Vec`, for host tests and fuzzing.
pub struct VecGuestMemory {
    base: GuestPhysAddr,
    bytes: RefCell<Vec<u8>>,
}

impl VecGuestMemory {
    /// `size` zeroed bytes of guest RAM starting at `base`.
    pub fn new(base: GuestPhysAddr, size: usize) -> Self {
        Self {
            base,
            bytes: RefCell::new(vec![0; size]),
        }
    }

    /// A copy of the whole RAM, for assertions.
    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes.borrow().clone()
    }

    fn offset(&self, gpa: GuestPhysAddr, len: usize) -> Result<usize, GuestMemError> {
        let size = self.bytes.borrow().len() as u64;
        if range_within(self.base, size, gpa, len as u64) {
            Ok((gpa - self.base) as usize)
        } else {
            Err(GuestMemError {
                gpa,
                len: len as u64,
            })
        }
    }
}

impl GuestMemory for VecGuestMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let off = self.offset(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[off..off + buf.len()]);
        Ok(())
    }

    fn write(&self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let off = self.offset(gpa, data.len())?;
        self.bytes.borrow_mut()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        range_within(self.base, self.bytes.borrow().len() as u64, gpa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_without_overflow() {
        let m = VecGuestMemory::new(GuestPhysAddr::new(0x1000), 0x1000);
        assert!(m.write_u32(GuestPhysAddr::new(0x1ffc), 0xdead_beef).is_ok());
        assert_eq!(m.read_u32(GuestPhysAddr::new(0x1ffc)), Ok(0xdead_beef));
        assert!(m.write_u32(GuestPhysAddr::new(0x1ffd), 0).is_err());
        assert!(m.read_u16(GuestPhysAddr::new(0xfff)).is_err());
        assert!(!m.contains(GuestPhysAddr::new(u64::MAX), 2));
        assert!(!m.contains(GuestPhysAddr::new(0x1001), u64::MAX));
        assert!(m.fill(GuestPhysAddr::new(0x1000), 0x1000, 0xaa).is_ok());
        assert_eq!(m.snapshot()[0xfff], 0xaa);
    }
}
