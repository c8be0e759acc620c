//! One generic 4-level page-table builder for the three table formats the hypervisor writes:
//! its own x86-64 page tables ([`HostEntry`]), AMD nested page tables ([`NptEntry`]) and Intel
//! extended page tables ([`EptEntry`]).
//!
//! The tables live in frames reached through [`TableMemory`]: identity-mapped physical memory on
//! bare metal, an [`ArenaTables`] in host tests. [`PageTable`] never caches entries, so what it
//! reads back is what the hardware walks.
//!
//! Changing a table the CPU may be using needs a TLB flush (INVLPG, INVEPT, or a new ASID) from
//! the caller; this module only edits memory.

#![forbid(unsafe_code)]

mod arena;
mod check;
mod entry;
mod table;

#[cfg(test)]
mod tests;

pub use arena::{ArenaTables, TableMemory, ENTRIES_PER_TABLE};
pub use check::{check_host_tables, check_nested, HostLayout, HostTableViolation, NestedViolation};
pub use entry::{
    Entry, EptEntry, HostEntry, NptEntry, EPT_IGNORE_PAT, EPT_MEMTYPE_UC, EPT_MEMTYPE_WB,
};
pub use table::PageTable;

use core::fmt;

use bitflags::bitflags;

use crate::addr::{HostPhysAddr, HUGE_PAGE_SIZE, LARGE_PAGE_SIZE, PAGE_SIZE};

/// Input addresses (host-virtual, or guest-physical for NPT/EPT) must lie below 2^48: four
/// levels of 9 index bits above a 12-bit page offset.
pub const INPUT_ADDR_LIMIT: u64 = 1 << 48;
/// Output addresses must lie below 2^52, the architectural maximum physical address width
/// (Intel SDM vol.3 §4.1.4, AMD APM vol.2 §5.3.3).
pub const OUTPUT_ADDR_LIMIT: u64 = 1 << 52;

/// Size of one leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, a leaf in a level-1 table (PT).
    Size4K,
    /// 2 MiB, a leaf in a level-2 table (PD).
    Size2M,
    /// 1 GiB, a leaf in a level-3 table (PDPT).
    Size1G,
}

impl PageSize {
    /// Bytes covered by one page of this size.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => PAGE_SIZE,
            Self::Size2M => LARGE_PAGE_SIZE,
            Self::Size1G => HUGE_PAGE_SIZE,
        }
    }

    /// The table level (1 = PT … 4 = PML4) whose entries map pages of this size.
    pub const fn level(self) -> u8 {
        match self {
            Self::Size4K => 1,
            Self::Size2M => 2,
            Self::Size1G => 3,
        }
    }

    /// The page size a leaf at `level` maps, if that level can hold leaves.
    pub const fn at_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(Self::Size4K),
            2 => Some(Self::Size2M),
            3 => Some(Self::Size1G),
            _ => None,
        }
    }
}

bitflags! {
    /// Rights and memory type of a mapping.
    ///
    /// x86-64 formats cannot express a present page that is not readable, so they require
    /// `READ`; EPT can, but write without read is a misconfiguration there
    /// (Intel SDM vol.3 §29.3.3.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapFlags: u8 {
        /// Loads are allowed.
        const READ = 1 << 0;
        /// Stores are allowed.
        const WRITE = 1 << 1;
        /// Instruction fetches are allowed.
        const EXEC = 1 << 2;
        /// Uncacheable instead of write-back (device memory).
        const UNCACHED = 1 << 3;
    }
}

impl MapFlags {
    /// Read-only data.
    pub const R: Self = Self::READ;
    /// Read-write data.
    pub const RW: Self = Self::READ.union(Self::WRITE);
    /// Code.
    pub const RX: Self = Self::READ.union(Self::EXEC);
    /// Everything (guest RAM under NPT/EPT, where the guest's own tables restrict further).
    pub const RWX: Self = Self::RW.union(Self::EXEC);
}

/// One leaf mapping, as found by [`PageTable::for_each_mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First input address the leaf maps (aligned to `size`).
    pub virt: u64,
    /// Output address of `virt`.
    pub phys: HostPhysAddr,
    /// Leaf size.
    pub size: PageSize,
    /// Rights and memory type.
    pub flags: MapFlags,
}

impl Mapping {
    /// One past the last input address the leaf maps.
    pub fn virt_end(&self) -> u64 {
        self.virt + self.size.bytes()
    }
}

/// A range of input addresses that is expected to map linearly onto host-physical memory, for
/// [`PageTable::find_unexpected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First input address.
    pub virt: u64,
    /// Where `virt` must map to.
    pub phys: HostPhysAddr,
    /// Length in bytes.
    pub size_bytes: u64,
}

impl Region {
    /// Whether the whole of `m` lies inside this region at the expected offset.
    pub fn covers(&self, m: &Mapping) -> bool {
        let Some(offset) = m.virt.checked_sub(self.virt) else {
            return false;
        };
        offset
            .checked_add(m.size.bytes())
            .is_some_and(|end| end <= self.size_bytes)
            && self.phys.checked_add(offset) == Some(m.phys)
    }
}

/// Why a page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// An input or output address or the length is not a multiple of 4 KiB.
    Misaligned { virt: u64, phys: u64, size: u64 },
    /// A zero-length range.
    EmptyRange { virt: u64 },
    /// The input range reaches beyond 2^48.
    VirtTooWide { virt: u64, size: u64 },
    /// The output range reaches beyond 2^52.
    PhysTooWide { phys: HostPhysAddr, size: u64 },
    /// `map` found this input address already mapped (nothing was changed).
    AlreadyMapped { virt: u64 },
    /// `unmap`/`protect` found this input address unmapped (nothing was changed).
    NotMapped { virt: u64 },
    /// The table format cannot express these rights.
    BadFlags { flags: MapFlags },
    /// No frame was left for a page table.
    OutOfFrames,
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned { virt, phys, size } => write!(
                f,
                "paging: range {virt:#x} -> {:#x} length {size:#x} is not 4 KiB aligned",
                phys
            ),
            Self::EmptyRange { virt } => write!(f, "paging: empty range at {virt:#x}"),
            Self::VirtTooWide { virt, size } => write!(
                f,
                "paging: range {virt:#x} length {size:#x} reaches beyond 48-bit input addresses"
            ),
            Self::PhysTooWide { phys, size } => write!(
                f,
                "paging: target {phys} length {size:#x} reaches beyond 52-bit physical addresses"
            ),
            Self::AlreadyMapped { virt } => write!(f, "paging: {virt:#x} is already mapped"),
            Self::NotMapped { virt } => write!(f, "paging: {virt:#x} is not mapped"),
            Self::BadFlags { flags } => {
                write!(
                    f,
                    "paging: rights {flags:?} cannot be expressed in this format"
                )
            }
            Self::OutOfFrames => write!(f, "paging: out of frames for page tables"),
        }
    }
}
