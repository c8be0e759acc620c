//! Booting an ELF64 kernel through PVH: segments into RAM, then `hvm_start_info` with the memory
//! map, command line, initrd module and RSDP (Xen `public/arch-x86/hvm/start_info.h`).

use alloc::vec::Vec;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;

use super::boot_data::{place_initrd, write_cmdline, CMDLINE_MAX_LEN};
use super::cpu::pvh_entry_state;
use super::elf::ElfImage;
use super::error::{write_err, LoadError};
use super::image::{put_u32, put_u64};
use super::layout::{
    memory_map, GuestRamLayout, GuestRange, BOOT_AREA_END, PVH_MEMMAP, PVH_MEMMAP_BYTES,
    PVH_MODLIST, PVH_START_INFO,
};
use super::{write_acpi, BootProtocol, BootRequest, BootSetup};

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Version 1 adds the memory map fields.
pub const START_INFO_VERSION: u32 = 1;
/// `sizeof(struct hvm_start_info)` for version 1.
pub const START_INFO_SIZE: usize = 56;
/// `sizeof(struct hvm_modlist_entry)`.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// `sizeof(struct hvm_memmap_table_entry)`.
pub const MEMMAP_ENTRY_SIZE: usize = 24;

/// `hvm_start_info` field offsets.
mod start_info {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const NR_MODULES: usize = 12;
    pub const MODLIST_PADDR: usize = 16;
    pub const CMDLINE_PADDR: usize = 24;
    pub const RSDP_PADDR: usize = 32;
    pub const MEMMAP_PADDR: usize = 40;
    pub const MEMMAP_ENTRIES: usize = 48;
}

pub(crate) fn load(
    mem: &dyn GuestMemory,
    ram: &GuestRamLayout,
    req: &BootRequest<'_>,
) -> Result<BootSetup, LoadError> {
    let elf = ElfImage::parse(req.kernel)?;
    let segments = elf.load_segments(ram)?;
    let entry = elf.pvh_entry()?;
    let entry_range = GuestRange {
        start: GuestPhysAddr::new(u64::from(entry)),
        len: 1,
    };
    if !segments.iter().any(|s| s.dest.overlaps(&entry_range)) {
        return Err(LoadError::PvhEntryOutsideSegments {
            entry: u64::from(entry),
        });
    }

    let cmdline = write_cmdline(mem, req.cmdline, CMDLINE_MAX_LEN)?;
    for seg in &segments {
        let bytes = elf.segment_bytes(seg)?;
        let what = write_err("ELF segment");
        mem.write(seg.dest.start, bytes).map_err(&what)?;
        // The bss part: RAM may hold a previous run's data when a guest restarts.
        mem.fill(seg.dest.start + seg.filesz, seg.dest.len - seg.filesz, 0)
            .map_err(&what)?;
    }
    let kernel_start = segments.iter().map(|s| s.dest.start).min();
    let kernel_end = segments.iter().map(|s| s.dest.end()).max();
    let kernel = match (kernel_start, kernel_end) {
        (Some(start), Some(end)) => GuestRange {
            start,
            len: end - start.as_u64(),
        },
        _ => return Err(LoadError::ElfNoLoadSegments),
    };

    // The initrd goes below the device window and above every segment there.
    let low_end = ram.low_end().as_u64();
    let lowest = segments
        .iter()
        .map(|s| s.dest.end())
        .filter(|&end| end <= low_end)
        .fold(BOOT_AREA_END.as_u64(), u64::max);
    let initrd = match req.initrd {
        Some(bytes) => place_initrd(mem, bytes, lowest, low_end)?,
        None => None,
    };
    let rsdp = write_acpi(mem, req)?;
    write_start_info(mem, ram, cmdline, initrd, rsdp)?;

    Ok(BootSetup {
        protocol: BootProtocol::Pvh,
        entry: pvh_entry_state(mem, entry, PVH_START_INFO)?,
        boot_info: PVH_START_INFO,
        kernel,
        initrd,
        cmdline,
        rsdp,
    })
}

fn write_start_info(
    mem: &dyn GuestMemory,
    ram: &GuestRamLayout,
    cmdline: GuestPhysAddr,
    initrd: Option<GuestRange>,
    rsdp: Option<GuestPhysAddr>,
) -> Result<(), LoadError> {
    let map = memory_map(ram);
    let mut table = Vec::with_capacity(map.len() * MEMMAP_ENTRY_SIZE);
    for region in &map {
        let mut e = [0u8; MEMMAP_ENTRY_SIZE];
        put_u64(&mut e, 0, region.range.start.as_u64());
        put_u64(&mut e, 8, region.range.len);
        put_u32(&mut e, 16, region.kind as u32);
        table.extend_from_slice(&e);
    }
    // Five entries at most; the region holds hundreds.
    debug_assert!(table.len() as u64 <= PVH_MEMMAP_BYTES);
    mem.write(PVH_MEMMAP, &table)
        .map_err(write_err("PVH memory map"))?;

    let mut info = [0u8; START_INFO_SIZE];
    put_u32(&mut info, start_info::MAGIC, START_INFO_MAGIC);
    put_u32(&mut info, start_info::VERSION, START_INFO_VERSION);
    if let Some(initrd) = initrd {
        let mut module = [0u8; MODLIST_ENTRY_SIZE];
        put_u64(&mut module, 0, initrd.start.as_u64());
        put_u64(&mut module, 8, initrd.len);
        mem.write(PVH_MODLIST, &module)
            .map_err(write_err("PVH module list"))?;
        put_u32(&mut info, start_info::NR_MODULES, 1);
        put_u64(&mut info, start_info::MODLIST_PADDR, PVH_MODLIST.as_u64());
    }
    put_u64(&mut info, start_info::CMDLINE_PADDR, cmdline.as_u64());
    put_u64(
        &mut info,
        start_info::RSDP_PADDR,
        rsdp.map_or(0, |a| a.as_u64()),
    );
    put_u64(&mut info, start_info::MEMMAP_PADDR, PVH_MEMMAP.as_u64());
    put_u32(&mut info, start_info::MEMMAP_ENTRIES, map.len() as u32);
    mem.write(PVH_START_INFO, &info)
        .map_err(write_err("PVH start info"))
}
