//! Bounds-checked little-endian reads from an untrusted kernel image.

use super::error::{ImagePart, LoadError};

/// A kernel image as read-only bytes; every read names the part it belongs to so a short image
/// yields a precise [`LoadError::Truncated`].
#[derive(Clone, Copy)]
pub(crate) struct Image<'a> {
    bytes: &'a [u8],
}

impl<'a> Image<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// `len` bytes at `offset`.
    pub(crate) fn slice(
        &self,
        part: ImagePart,
        offset: u64,
        len: u64,
    ) -> Result<&'a [u8], LoadError> {
        let truncated = LoadError::Truncated {
            part,
            offset,
            len,
            image_len: self.len(),
        };
        let end = offset.checked_add(len).ok_or(truncated)?;
        if end > self.len() {
            return Err(truncated);
        }
        // Both bounds are within the slice length, which fits in usize.
        self.bytes
            .get(offset as usize..end as usize)
            .ok_or(truncated)
    }

    fn array<const N: usize>(&self, part: ImagePart, offset: u64) -> Result<[u8; N], LoadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(part, offset, N as u64)?);
        Ok(out)
    }

    pub(crate) fn u8(&self, part: ImagePart, offset: u64) -> Result<u8, LoadError> {
        Ok(self.array::<1>(part, offset)?[0])
    }

    pub(crate) fn u16(&self, part: ImagePart, offset: u64) -> Result<u16, LoadError> {
        Ok(u16::from_le_bytes(self.array(part, offset)?))
    }

    pub(crate) fn u32(&self, part: ImagePart, offset: u64) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.array(part, offset)?))
    }

    pub(crate) fn u64(&self, part: ImagePart, offset: u64) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.array(part, offset)?))
    }
}

/// Stores `v` little-endian at `at` in a buffer the caller sized for it (no-op if it does not fit).
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(dst) = buf.get_mut(at..at + 2) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// See [`put_u16`].
pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// See [`put_u16`].
pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = buf.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}
