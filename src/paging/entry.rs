//! The three entry formats: how a pointer to the next table, a leaf and its rights are encoded.

use super::{MapFlags, PageSize, PagingError};
use crate::addr::HostPhysAddr;

/// One page-table entry format. Levels are 1 (PT) to 4 (PML4).
pub trait Entry {
    /// Short name of the format, for logs.
    const NAME: &'static str;

    /// Whether `flags` can be expressed as a leaf in this format.
    fn check_flags(flags: MapFlags) -> Result<(), PagingError>;
    /// An entry pointing to the next-level table at `next`, granting every right (the leaves
    /// alone restrict access, so a split or merged mapping keeps its meaning).
    fn table(next: HostPhysAddr) -> u64;
    /// A leaf mapping a page of `size` at `phys` (aligned to `size`). `flags` passed
    /// [`Entry::check_flags`].
    fn leaf(phys: HostPhysAddr, flags: MapFlags, size: PageSize) -> u64;
    /// Whether the entry maps anything.
    fn is_present(raw: u64) -> bool;
    /// Whether a present entry at `level` is a leaf rather than a table pointer.
    fn is_leaf(raw: u64, level: u8) -> bool;
    /// The next table a non-leaf entry points to.
    fn table_addr(raw: u64) -> HostPhysAddr;
    /// The page a leaf of `size` maps.
    fn leaf_addr(raw: u64, size: PageSize) -> HostPhysAddr;
    /// The rights and memory type of a leaf of `size`.
    fn leaf_flags(raw: u64, size: PageSize) -> MapFlags;
}

/// Bits 51:12 of an entry: the address of a 4 KiB page or of the next table.
const ADDR_MASK_4K: u64 = 0x000f_ffff_ffff_f000;
/// Bits 51:21: the address of a 2 MiB page.
const ADDR_MASK_2M: u64 = 0x000f_ffff_ffe0_0000;
/// Bits 51:30: the address of a 1 GiB page.
const ADDR_MASK_1G: u64 = 0x000f_ffff_c000_0000;

fn addr_mask(size: PageSize) -> u64 {
    match size {
        PageSize::Size4K => ADDR_MASK_4K,
        PageSize::Size2M => ADDR_MASK_2M,
        PageSize::Size1G => ADDR_MASK_1G,
    }
}

// x86-64 (4-level) paging entry bits, Intel SDM vol.3 §4.5 tables 4-14..4-20, AMD APM vol.2 §5.4.
const X86_PRESENT: u64 = 1 << 0;
const X86_WRITABLE: u64 = 1 << 1;
const X86_USER: u64 = 1 << 2;
const X86_PWT: u64 = 1 << 3;
const X86_PCD: u64 = 1 << 4;
/// PS: set in a PDPTE/PDE that maps a 1 GiB/2 MiB page.
const X86_PAGE_SIZE: u64 = 1 << 7;
/// Requires EFER.NXE; otherwise bit 63 is reserved and the walk faults.
const X86_NO_EXECUTE: u64 = 1 << 63;

/// Strong uncacheable: PCD|PWT selects PAT entry 3, which is UC in the power-on PAT and in the
/// PAT the hypervisor keeps (Intel SDM vol.3 §13.12.4 "Programming the PAT"). PAT index 0
/// (all three bits clear) is write-back.
const X86_UNCACHED: u64 = X86_PCD | X86_PWT;

fn x86_check(flags: MapFlags) -> Result<(), PagingError> {
    if flags.contains(MapFlags::READ) {
        Ok(())
    } else {
        Err(PagingError::BadFlags { flags })
    }
}

fn x86_leaf(phys: HostPhysAddr, flags: MapFlags, size: PageSize, user: u64) -> u64 {
    let mut raw = (phys.as_u64() & addr_mask(size)) | X86_PRESENT | user;
    if flags.contains(MapFlags::WRITE) {
        raw |= X86_WRITABLE;
    }
    if !flags.contains(MapFlags::EXEC) {
        raw |= X86_NO_EXECUTE;
    }
    if flags.contains(MapFlags::UNCACHED) {
        raw |= X86_UNCACHED;
    }
    if size != PageSize::Size4K {
        raw |= X86_PAGE_SIZE;
    }
    raw
}

fn x86_flags(raw: u64) -> MapFlags {
    let mut flags = MapFlags::READ;
    flags.set(MapFlags::WRITE, raw & X86_WRITABLE != 0);
    flags.set(MapFlags::EXEC, raw & X86_NO_EXECUTE == 0);
    flags.set(MapFlags::UNCACHED, raw & X86_PCD != 0);
    flags
}

fn x86_is_leaf(raw: u64, level: u8) -> bool {
    level == 1 || ((level == 2 || level == 3) && raw & X86_PAGE_SIZE != 0)
}

/// The hypervisor's own page tables: supervisor-only (U=0 everywhere), NX honoured.
pub type HostEntry = X86Entry<false>;

/// AMD nested page tables: the x86-64 format, with U=1 in every entry because the processor
/// treats every nested-table access as a user access (AMD APM vol.2 §15.25.5).
pub type NptEntry = X86Entry<true>;

/// The x86-64 4-level format; `USER` sets U in every entry (NPT) or in none (host tables).
#[derive(Clone, Copy, Debug)]
pub enum X86Entry<const USER: bool> {}

impl<const USER: bool> X86Entry<USER> {
    const USER_BIT: u64 = if USER { X86_USER } else { 0 };
}

impl<const USER: bool> Entry for X86Entry<USER> {
    const NAME: &'static str = if USER { "NPT" } else { "host" };

    fn check_flags(flags: MapFlags) -> Result<(), PagingError> {
        x86_check(flags)
    }
    fn table(next: HostPhysAddr) -> u64 {
        (next.as_u64() & ADDR_MASK_4K) | X86_PRESENT | X86_WRITABLE | Self::USER_BIT
    }
    fn leaf(phys: HostPhysAddr, flags: MapFlags, size: PageSize) -> u64 {
        x86_leaf(phys, flags, size, Self::USER_BIT)
    }
    fn is_present(raw: u64) -> bool {
        raw & X86_PRESENT != 0
    }
    fn is_leaf(raw: u64, level: u8) -> bool {
        x86_is_leaf(raw, level)
    }
    fn table_addr(raw: u64) -> HostPhysAddr {
        HostPhysAddr::new(raw & ADDR_MASK_4K)
    }
    fn leaf_addr(raw: u64, size: PageSize) -> HostPhysAddr {
        HostPhysAddr::new(raw & addr_mask(size))
    }
    fn leaf_flags(raw: u64, _size: PageSize) -> MapFlags {
        x86_flags(raw)
    }
}

// EPT entry bits, Intel SDM vol.3 §29.3.2 tables 29-1..29-6 (§28.3.2 in older editions).
const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
const EPT_EXEC: u64 = 1 << 2;
const EPT_RIGHTS: u64 = EPT_READ | EPT_WRITE | EPT_EXEC;
/// Bits 5:3 of a leaf: the EPT memory type.
const EPT_MEMTYPE_SHIFT: u32 = 3;
const EPT_MEMTYPE_MASK: u64 = 0b111 << EPT_MEMTYPE_SHIFT;
/// EPT memory type uncacheable (SDM vol.3 §29.3.7).
pub const EPT_MEMTYPE_UC: u64 = 0;
/// EPT memory type write-back (SDM vol.3 §29.3.7).
pub const EPT_MEMTYPE_WB: u64 = 6;
/// Ignore PAT: the EPT memory type wins over the guest's PAT. Guest RAM is always RAM here
/// (no device pass-through), so a guest must not make it UC and alias the hypervisor's
/// write-back view of the same frames.
pub const EPT_IGNORE_PAT: u64 = 1 << 6;
/// Bit 7 of an EPT PDPTE/PDE: maps a 1 GiB/2 MiB page.
const EPT_LARGE: u64 = 1 << 7;

/// Intel extended page tables: R/W/X bits, memory type and ignore-PAT in leaves.
///
/// Execute-only leaves (`EXEC` without `READ`) need the CPU's execute-only support
/// (IA32_VMX_EPT_VPID_CAP bit 0); checking that is the caller's business.
#[derive(Clone, Copy, Debug)]
pub enum EptEntry {}

impl Entry for EptEntry {
    const NAME: &'static str = "EPT";

    fn check_flags(flags: MapFlags) -> Result<(), PagingError> {
        let rights = flags & MapFlags::RWX;
        // Write without read is an EPT misconfiguration; no rights at all is "not present".
        if rights.is_empty()
            || (rights.contains(MapFlags::WRITE) && !rights.contains(MapFlags::READ))
        {
            Err(PagingError::BadFlags { flags })
        } else {
            Ok(())
        }
    }
    fn table(next: HostPhysAddr) -> u64 {
        (next.as_u64() & ADDR_MASK_4K) | EPT_RIGHTS
    }
    fn leaf(phys: HostPhysAddr, flags: MapFlags, size: PageSize) -> u64 {
        let mut raw = phys.as_u64() & addr_mask(size);
        if flags.contains(MapFlags::READ) {
            raw |= EPT_READ;
        }
        if flags.contains(MapFlags::WRITE) {
            raw |= EPT_WRITE;
        }
        if flags.contains(MapFlags::EXEC) {
            raw |= EPT_EXEC;
        }
        let memtype = if flags.contains(MapFlags::UNCACHED) {
            EPT_MEMTYPE_UC
        } else {
            EPT_MEMTYPE_WB
        };
        raw |= memtype << EPT_MEMTYPE_SHIFT | EPT_IGNORE_PAT;
        if size != PageSize::Size4K {
            raw |= EPT_LARGE;
        }
        raw
    }
    fn is_present(raw: u64) -> bool {
        // An entry with bits 2:0 all clear is not present (SDM vol.3 §29.3.2).
        raw & EPT_RIGHTS != 0
    }
    fn is_leaf(raw: u64, level: u8) -> bool {
        level == 1 || ((level == 2 || level == 3) && raw & EPT_LARGE != 0)
    }
    fn table_addr(raw: u64) -> HostPhysAddr {
        HostPhysAddr::new(raw & ADDR_MASK_4K)
    }
    fn leaf_addr(raw: u64, size: PageSize) -> HostPhysAddr {
        HostPhysAddr::new(raw & addr_mask(size))
    }
    fn leaf_flags(raw: u64, _size: PageSize) -> MapFlags {
        let mut flags = MapFlags::empty();
        flags.set(MapFlags::READ, raw & EPT_READ != 0);
        flags.set(MapFlags::WRITE, raw & EPT_WRITE != 0);
        flags.set(MapFlags::EXEC, raw & EPT_EXEC != 0);
        let memtype = (raw & EPT_MEMTYPE_MASK) >> EPT_MEMTYPE_SHIFT;
        flags.set(MapFlags::UNCACHED, memtype == EPT_MEMTYPE_UC);
        flags
    }
}

/// EPTP bits 5:3: page-walk length minus one (SDM vol.3 §25.6.11).
const EPTP_WALK_LENGTH_4: u64 = 3 << 3;

impl EptEntry {
    /// The EPT pointer for a 4-level tree rooted at `root`: write-back paging structures, no
    /// accessed/dirty flags (SDM vol.3 §25.6.11; §24.6.11 in older editions).
    pub fn eptp(root: HostPhysAddr) -> u64 {
        (root.as_u64() & ADDR_MASK_4K) | EPT_MEMTYPE_WB | EPTP_WALK_LENGTH_4
    }
}
