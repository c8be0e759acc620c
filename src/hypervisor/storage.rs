//! A guest's disk: its own copy of the disk image module, in hypervisor memory.

use crate::arch::x86_64::memory;
use crate::mm::frames::OutOfFrames;

/// A private copy of `image` for one guest's virtio-blk device (any byte buffer is a
/// `BlockStorage`), so guests sharing one image never see each other's writes and a restart
/// keeps what was written.
pub fn disk_copy(image: &[u8]) -> Result<&'static mut [u8], OutOfFrames> {
    let bytes = memory::alloc_owned_bytes(image.len() as u64)?;
    bytes.copy_from_slice(image);
    Ok(bytes)
}
