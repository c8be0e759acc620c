//! Guest page walker: guest-virtual to guest-physical through the guest's own page tables,
//! and fetching the instruction bytes at the guest's RIP.
//!
//! Every table read goes through [`GuestMemory`], so tables the guest points outside its RAM
//! give an error, never a panic. Reserved bits are not checked: the processor walked the same
//! tables moments ago to run the instruction that exited.

use core::fmt;

use bitflags::bitflags;

use super::MAX_INSN_LEN;
use crate::addr::{GuestPhysAddr, GuestVirtAddr, PAGE_SIZE};
use crate::guest_mem::GuestMemory;

#[cfg(test)]
mod tests;

// Control-register and EFER bits, Intel SDM vol.3 §2.5 / §2.2.1, AMD APM vol.2 §3.1.
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

// Paging-structure entry bits common to all three formats (SDM vol.3 §4.3-§4.5).
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_LARGE: u64 = 1 << 7;
const PTE_NO_EXEC: u64 = 1 << 63;
/// Bits 51:12 of a 64-bit entry.
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bits 31:12 of a 32-bit entry.
const PTE32_ADDR_MASK: u64 = 0xffff_f000;
/// Bits 31:22 of a 32-bit PDE mapping a 4 MiB page.
const PDE32_4M_MASK: u64 = 0xffc0_0000;
/// PSE-36: bits 20:13 of a 4 MiB PDE hold physical address bits 39:32 (SDM vol.3 §4.3).
const PDE32_HIGH_SHIFT: u32 = 13;
const PDE32_HIGH_MASK: u64 = 0xff;
/// CR3 bits 31:5: the PAE page-directory-pointer table (SDM vol.3 §4.4.1).
const CR3_PAE_MASK: u64 = 0xffff_ffe0;
/// Linear addresses outside long mode are 32 bits wide.
const LINEAR32_MASK: u64 = 0xffff_ffff;

bitflags! {
    /// The kind of access a translation is for; empty = a supervisor read.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Access: u8 {
        const WRITE = 1 << 0;
        /// CPL 3.
        const USER = 1 << 1;
        const FETCH = 1 << 2;
    }
}

/// The guest's paging registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingContext {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// Which translation the guest's registers select (SDM vol.3 §4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// CR0.PG=0: linear = physical (32 bits).
    Off,
    /// 2-level, 32-bit entries; 4 MiB pages if CR4.PSE.
    TwoLevel,
    /// PAE 3-level, 64-bit entries; 2 MiB pages.
    Pae,
    /// Long-mode 4-level; 2 MiB and 1 GiB pages.
    FourLevel,
}

impl PagingContext {
    /// The paging mode, or an error for 5-level paging (not supported).
    pub fn mode(&self) -> Result<PagingMode, WalkError> {
        Ok(if self.cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if self.cr4 & CR4_PAE == 0 {
            PagingMode::TwoLevel
        } else if self.efer & EFER_LMA == 0 {
            PagingMode::Pae
        } else if self.cr4 & CR4_LA57 != 0 {
            return Err(WalkError::FiveLevel);
        } else {
            PagingMode::FourLevel
        })
    }
}

/// Why a guest-virtual address could not be translated or fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// 5-level paging (CR4.LA57) is not supported.
    FiveLevel,
    /// Bits 63:47 of a long-mode address are not all equal.
    NonCanonical { gva: GuestVirtAddr },
    /// The entry at `level` (4 = PML4 … 1 = PT) is not present.
    NotPresent { gva: GuestVirtAddr, level: u8 },
    /// The entries deny `access`.
    Protection { gva: GuestVirtAddr, access: Access },
    /// A paging-structure entry lies outside guest RAM.
    TableOutsideRam {
        gva: GuestVirtAddr,
        entry: GuestPhysAddr,
    },
    /// The instruction bytes at `gva` lie outside guest RAM.
    CodeOutsideRam {
        gva: GuestVirtAddr,
        gpa: GuestPhysAddr,
    },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FiveLevel => write!(f, "walk: 5-level paging (CR4.LA57) is not supported"),
            Self::NonCanonical { gva } => write!(f, "walk: {gva} is not canonical"),
            Self::NotPresent { gva, level } => {
                write!(f, "walk: {gva} is not present at level {level}")
            }
            Self::Protection { gva, access } => {
                write!(f, "walk: {gva} does not allow {access:?}")
            }
            Self::TableOutsideRam { gva, entry } => write!(
                f,
                "walk: page-table entry at {entry} for {gva} is outside guest RAM"
            ),
            Self::CodeOutsideRam { gva, gpa } => {
                write!(f, "walk: code at {gva} ({gpa}) is outside guest RAM")
            }
        }
    }
}

/// One level of a walk.
struct Level {
    /// Level number, 1 = the last.
    number: u8,
    /// Lowest address bit this level's index covers.
    shift: u32,
    /// Width of this level's index.
    index_bits: u32,
    /// Whether the PS bit makes an entry here a leaf.
    is_large_ok: bool,
    /// PAE PDPTEs carry no R/W, U/S or NX (SDM vol.3 §4.4.1).
    has_rights: bool,
}

const fn level(number: u8, shift: u32, index_bits: u32, is_large_ok: bool) -> Level {
    Level {
        number,
        shift,
        index_bits,
        is_large_ok,
        has_rights: true,
    }
}

const LONG_LEVELS: [Level; 4] = [
    level(4, 39, 9, false),
    level(3, 30, 9, true),
    level(2, 21, 9, true),
    level(1, 12, 9, false),
];
const PAE_LEVELS: [Level; 3] = [
    Level {
        has_rights: false,
        ..level(3, 30, 2, false)
    },
    level(2, 21, 9, true),
    level(1, 12, 9, false),
];
const PSE_LEVELS: [Level; 2] = [level(2, 22, 10, true), level(1, 12, 10, false)];
const NO_PSE_LEVELS: [Level; 2] = [level(2, 22, 10, false), level(1, 12, 10, false)];

/// Translates `gva` through the guest's page tables for `access`, checking present bits,
/// R/W (with CR0.WP for supervisor writes), U/S and NX (with EFER.NXE). SMEP, SMAP and
/// protection keys are not checked.
pub fn translate(
    mem: &dyn GuestMemory,
    ctx: &PagingContext,
    gva: GuestVirtAddr,
    access: Access,
) -> Result<GuestPhysAddr, WalkError> {
    let va = gva.as_u64();
    let (levels, base, is_wide): (&[Level], u64, bool) = match ctx.mode()? {
        PagingMode::Off => return Ok(GuestPhysAddr::new(va & LINEAR32_MASK)),
        PagingMode::TwoLevel if ctx.cr4 & CR4_PSE != 0 => {
            (&PSE_LEVELS, ctx.cr3 & PTE32_ADDR_MASK, false)
        }
        PagingMode::TwoLevel => (&NO_PSE_LEVELS, ctx.cr3 & PTE32_ADDR_MASK, false),
        PagingMode::Pae => (&PAE_LEVELS, ctx.cr3 & CR3_PAE_MASK, true),
        PagingMode::FourLevel => {
            // Canonical: bits 63:47 are copies of bit 47.
            let top = (va as i64) >> 47;
            if top != 0 && top != -1 {
                return Err(WalkError::NonCanonical { gva });
            }
            (&LONG_LEVELS, ctx.cr3 & PTE_ADDR_MASK, true)
        }
    };
    let va = if is_wide && ctx.efer & EFER_LMA != 0 {
        va
    } else {
        va & LINEAR32_MASK
    };
    let is_nx_on = ctx.efer & EFER_NXE != 0 && is_wide;
    let mut table = base;
    let mut is_writable = true;
    let mut is_user = true;
    let mut is_exec = true;
    for lvl in levels {
        let entry_bytes: u64 = if is_wide { 8 } else { 4 };
        let index = (va >> lvl.shift) & ((1 << lvl.index_bits) - 1);
        let entry_gpa = GuestPhysAddr::new(table + index * entry_bytes);
        let raw = read_entry(mem, entry_gpa, is_wide).map_err(|_| WalkError::TableOutsideRam {
            gva,
            entry: entry_gpa,
        })?;
        if raw & PTE_PRESENT == 0 {
            return Err(WalkError::NotPresent {
                gva,
                level: lvl.number,
            });
        }
        if lvl.has_rights {
            is_writable &= raw & PTE_WRITABLE != 0;
            is_user &= raw & PTE_USER != 0;
            is_exec &= !(is_nx_on && raw & PTE_NO_EXEC != 0);
        }
        let is_leaf = lvl.number == 1 || (lvl.is_large_ok && raw & PTE_LARGE != 0);
        if !is_leaf {
            table = if is_wide {
                raw & PTE_ADDR_MASK
            } else {
                raw & PTE32_ADDR_MASK
            };
            continue;
        }
        if !allows(ctx, access, is_writable, is_user, is_exec) {
            return Err(WalkError::Protection { gva, access });
        }
        let offset_mask = (1u64 << lvl.shift) - 1;
        let frame = if is_wide {
            raw & PTE_ADDR_MASK & !offset_mask
        } else if lvl.number == 2 {
            (raw & PDE32_4M_MASK) | ((raw >> PDE32_HIGH_SHIFT) & PDE32_HIGH_MASK) << 32
        } else {
            raw & PTE32_ADDR_MASK
        };
        return Ok(GuestPhysAddr::new(frame | (va & offset_mask)));
    }
    // Level 1 always ends the loop above.
    Err(WalkError::NotPresent { gva, level: 1 })
}

fn read_entry(mem: &dyn GuestMemory, gpa: GuestPhysAddr, is_wide: bool) -> Result<u64, ()> {
    if is_wide {
        mem.read_u64(gpa).map_err(|_| ())
    } else {
        mem.read_u32(gpa).map(u64::from).map_err(|_| ())
    }
}

/// The access rules of SDM vol.3 §4.6.1, without SMEP, SMAP and protection keys.
fn allows(
    ctx: &PagingContext,
    access: Access,
    is_writable: bool,
    is_user: bool,
    is_exec: bool,
) -> bool {
    let is_user_access = access.contains(Access::USER);
    let is_write_checked = is_user_access || ctx.cr0 & CR0_WP != 0;
    let user_ok = !is_user_access || is_user;
    let write_ok = !access.contains(Access::WRITE) || is_writable || !is_write_checked;
    let fetch_ok = !access.contains(Access::FETCH) || is_exec;
    user_ok && write_ok && fetch_ok
}

/// Reads up to 15 instruction bytes at `cs_base + rip` into `buf` and returns how many it got.
///
/// The first byte must translate and lie in guest RAM; if the instruction may continue onto
/// the next page and that page is unmapped or outside RAM, the bytes up to the page end are
/// returned (the decoder then reports a truncated instruction if they are not enough).
/// In 64-bit code pass `cs_base = 0` (the CS base is ignored there).
pub fn fetch_insn(
    mem: &dyn GuestMemory,
    ctx: &PagingContext,
    cs_base: u64,
    rip: u64,
    buf: &mut [u8; MAX_INSN_LEN],
) -> Result<usize, WalkError> {
    let is_long = ctx.efer & EFER_LMA != 0 && ctx.cr0 & CR0_PG != 0;
    let wrap = |a: u64| if is_long { a } else { a & LINEAR32_MASK };
    let start = wrap(cs_base.wrapping_add(rip));
    let first = (PAGE_SIZE - (start % PAGE_SIZE)).min(MAX_INSN_LEN as u64) as usize;
    let gva = GuestVirtAddr::new(start);
    let gpa = translate(mem, ctx, gva, Access::FETCH)?;
    mem.read(gpa, &mut buf[..first])
        .map_err(|_| WalkError::CodeOutsideRam { gva, gpa })?;
    if first == MAX_INSN_LEN {
        return Ok(first);
    }
    let next = GuestVirtAddr::new(wrap(start.wrapping_add(first as u64)));
    let Ok(next_gpa) = translate(mem, ctx, next, Access::FETCH) else {
        return Ok(first);
    };
    match mem.read(next_gpa, &mut buf[first..]) {
        Ok(()) => Ok(MAX_INSN_LEN),
        Err(_) => Ok(first),
    }
}
