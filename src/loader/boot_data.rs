//! The pieces both boot protocols share: the command line and the initrd's placement.

use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use crate::guest_mem::GuestMemory;

use super::error::{write_err, LoadError};
use super::layout::{GuestRange, CMDLINE, CMDLINE_BYTES};

/// The longest command line the loader's layout holds (one byte goes to the NUL).
pub const CMDLINE_MAX_LEN: usize = CMDLINE_BYTES as usize - 1;

/// Checks `cmdline` against `max_len` (the kernel's limit, capped by the layout's) and writes it
/// NUL-terminated at [`CMDLINE`].
pub(crate) fn write_cmdline(
    mem: &dyn GuestMemory,
    cmdline: &str,
    max_len: usize,
) -> Result<GuestPhysAddr, LoadError> {
    let bytes = cmdline.as_bytes();
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(LoadError::CmdlineHasNul { offset });
    }
    let max = max_len.min(CMDLINE_MAX_LEN);
    if bytes.len() > max {
        return Err(LoadError::CmdlineTooLong {
            len: bytes.len(),
            max,
        });
    }
    let what = write_err("command line");
    mem.write(CMDLINE, bytes).map_err(&what)?;
    mem.write(CMDLINE + bytes.len() as u64, &[0])
        .map_err(&what)?;
    Ok(CMDLINE)
}

/// Copies `initrd` as high as possible below `limit` (exclusive), page aligned, and not below
/// `lowest` (the end of the kernel). Linux and the PVH test guests both prefer it high, away from
/// the kernel's own early allocations. An empty initrd is treated as none.
pub(crate) fn place_initrd(
    mem: &dyn GuestMemory,
    initrd: &[u8],
    lowest: u64,
    limit: u64,
) -> Result<Option<GuestRange>, LoadError> {
    if initrd.is_empty() {
        return Ok(None);
    }
    let size = initrd.len() as u64;
    let too_large = LoadError::InitrdTooLarge {
        size,
        lowest: GuestPhysAddr::new(lowest),
        limit: GuestPhysAddr::new(limit),
    };
    let start = limit.checked_sub(size).ok_or(too_large)? & !(PAGE_SIZE - 1);
    let lowest_aligned = lowest
        .checked_add(PAGE_SIZE - 1)
        .map(|v| v & !(PAGE_SIZE - 1))
        .ok_or(too_large)?;
    if start < lowest_aligned {
        return Err(too_large);
    }
    let start = GuestPhysAddr::new(start);
    mem.write(start, initrd).map_err(write_err("initrd"))?;
    Ok(Some(GuestRange { start, len: size }))
}
