//! A guest's disk: its own copy of the disk image module, in hypervisor memory.

use crate::arch::x86_64::memory;
use crate::devices::virtio::blk::{BlockStorage, StorageError};
use crate::mm::frames::OutOfFrames;

/// A disk image copied into memory only this guest's virtio-blk device touches, so guests
/// sharing one image never see each other's writes, and a restart keeps what was written.
pub struct DiskImage {
    bytes: &'static mut [u8],
}

impl DiskImage {
    /// A private copy of `image`.
    pub fn copy_of(image: &[u8]) -> Result<Self, OutOfFrames> {
        let bytes = memory::alloc_owned_bytes(image.len() as u64)?;
        bytes.copy_from_slice(image);
        Ok(Self { bytes })
    }
}

impl BlockStorage for DiskImage {
    fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let err = StorageError {
            offset,
            len: buf.len() as u64,
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        let end = start.checked_add(buf.len()).ok_or(err)?;
        buf.copy_from_slice(self.bytes.get(start..end).ok_or(err)?);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let err = StorageError {
            offset,
            len: data.len() as u64,
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        let end = start.checked_add(data.len()).ok_or(err)?;
        self.bytes
            .get_mut(start..end)
            .ok_or(err)?
            .copy_from_slice(data);
        Ok(())
    }
}
