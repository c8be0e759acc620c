//! Where the loader puts its boot structures, and the memory map it reports to the guest.
//!
//! Everything the loader writes besides the kernel and the initrd lives below 1 MiB, where no
//! kernel may load (the test guests link at 1 MiB, Linux at 16 MiB):
//!
//! | GPA             | size    | contents                                               |
//! |-----------------|---------|--------------------------------------------------------|
//! | 0x0000–0x0FFF   | 4 KiB   | untouched (so a null pointer reads zeroes, not data)   |
//! | 0x1000–0x1FFF   | 4 KiB   | GDT matching the entry state's selectors               |
//! | 0x2000–0x2FFF   | 4 KiB   | PVH `hvm_start_info`                                   |
//! | 0x3000–0x3FFF   | 4 KiB   | PVH module list (the initrd)                           |
//! | 0x4000–0x6FFF   | 12 KiB  | PVH memory map                                         |
//! | 0x7000–0x7FFF   | 4 KiB   | Linux `boot_params` (the "zero page")                  |
//! | 0x9000–0xEFFF   | 24 KiB  | identity page tables: PML4, PDPT, 4 PDs (2 MiB pages)  |
//! | 0x20000–0x2FFFF | 64 KiB  | kernel command line, NUL-terminated                    |
//! | 0xA0000–0xFFFFF |         | reported reserved (the PC's VGA/ROM hole)              |
//! | 0xE0000–0xEFFFF | 64 KiB  | ACPI tables, RSDP first (in the legacy scan range)     |
//! | 0xFFFF0–0xFFFF9 | 10 B    | reset-vector stub asking for a reset (`firmware.rs`)   |
//!
//! The VMM zeroes guest RAM before loading, so untouched bytes are zero.

use alloc::vec::Vec;

use crate::addr::GuestPhysAddr;
use crate::layout::{HIGH_RAM_START, LOW_RAM_END};

/// The loader's GDT.
pub const BOOT_GDT: GuestPhysAddr = GuestPhysAddr::new(0x1000);
/// Bytes available for the GDT.
pub const BOOT_GDT_BYTES: u64 = 0x1000;
/// PVH `hvm_start_info` (passed in EBX).
pub const PVH_START_INFO: GuestPhysAddr = GuestPhysAddr::new(0x2000);
/// PVH `hvm_modlist_entry` array.
pub const PVH_MODLIST: GuestPhysAddr = GuestPhysAddr::new(0x3000);
/// PVH `hvm_memmap_table_entry` array.
pub const PVH_MEMMAP: GuestPhysAddr = GuestPhysAddr::new(0x4000);
/// Bytes available for the PVH memory map.
pub const PVH_MEMMAP_BYTES: u64 = 0x3000;
/// Linux `boot_params` (passed in RSI).
pub const LINUX_BOOT_PARAMS: GuestPhysAddr = GuestPhysAddr::new(0x7000);
/// First page of the identity-mapping page tables (the PML4).
pub const PAGE_TABLES: GuestPhysAddr = GuestPhysAddr::new(0x9000);
/// Bytes available for the page tables.
pub const PAGE_TABLES_BYTES: u64 = 0x6000;
/// The kernel command line.
pub const CMDLINE: GuestPhysAddr = GuestPhysAddr::new(0x2_0000);
/// Bytes available for the command line, including its terminating NUL.
pub const CMDLINE_BYTES: u64 = 0x1_0000;
/// Start of the legacy hole reported as reserved (VGA memory and option/BIOS ROMs on a PC).
pub const LEGACY_HOLE_START: GuestPhysAddr = GuestPhysAddr::new(0xA_0000);
/// The ACPI tables; the RSDP sits first, 16-byte aligned, inside the range that
/// ACPI 6.5 §5.2.5.1 tells an OS to scan.
pub const ACPI_TABLES: GuestPhysAddr = GuestPhysAddr::new(0xE_0000);
/// Bytes available for the ACPI tables.
pub const ACPI_TABLES_BYTES: u64 = 0x1_0000;
/// End of the loader's low-memory area; kernels and initrds must lie at or above it.
pub const BOOT_AREA_END: GuestPhysAddr = GuestPhysAddr::new(0x10_0000);
/// The least RAM the layout works with: the boot area plus room for a small kernel.
pub const MIN_GUEST_RAM: u64 = 2 << 20;

// The areas above must not overlap one another, and all of them stay below the boot area's end.
const _: () = {
    let areas = [
        (BOOT_GDT, BOOT_GDT_BYTES),
        (PVH_START_INFO, 0x1000),
        (PVH_MODLIST, 0x1000),
        (PVH_MEMMAP, PVH_MEMMAP_BYTES),
        (LINUX_BOOT_PARAMS, 0x1000),
        (PAGE_TABLES, PAGE_TABLES_BYTES),
        (CMDLINE, CMDLINE_BYTES),
        (ACPI_TABLES, ACPI_TABLES_BYTES),
    ];
    let mut i = 0;
    while i < areas.len() {
        let (start, len) = areas[i];
        assert!(start.as_u64() >= 0x1000 && start.as_u64() + len <= BOOT_AREA_END.as_u64());
        if i + 1 < areas.len() {
            assert!(start.as_u64() + len <= areas[i + 1].0.as_u64());
        }
        i += 1;
    }
};

/// A range of guest-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    pub start: GuestPhysAddr,
    pub len: u64,
}

impl GuestRange {
    /// One past the last byte (saturating, so a malformed range never wraps).
    pub fn end(&self) -> u64 {
        self.start.as_u64().saturating_add(self.len)
    }

    /// Whether the two ranges share a byte.
    pub fn overlaps(&self, other: &GuestRange) -> bool {
        self.start.as_u64() < other.end() && other.start.as_u64() < self.end()
    }
}

/// A guest's RAM as it appears in guest-physical space: `size_bytes` from GPA 0, with what does
/// not fit below the device window continuing at [`HIGH_RAM_START`] (as `GuestRam` maps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRamLayout {
    size_bytes: u64,
}

impl GuestRamLayout {
    /// RAM of `size_bytes` bytes.
    pub const fn new(size_bytes: u64) -> Self {
        Self { size_bytes }
    }

    /// Total RAM in bytes.
    pub const fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// One past the last RAM byte below the device window.
    pub fn low_end(&self) -> GuestPhysAddr {
        GuestPhysAddr::new(self.size_bytes.min(LOW_RAM_END.as_u64()))
    }

    /// The (at most two) RAM ranges.
    pub fn ranges(&self) -> impl Iterator<Item = GuestRange> {
        let low = self.low_end().as_u64();
        [
            GuestRange {
                start: GuestPhysAddr::ZERO,
                len: low,
            },
            GuestRange {
                start: HIGH_RAM_START,
                len: self.size_bytes - low,
            },
        ]
        .into_iter()
        .filter(|r| r.len > 0)
    }

    /// Whether `[gpa, gpa + len)` lies entirely inside one RAM range.
    pub fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        self.ranges()
            .any(|r| crate::guest_mem::range_within(r.start, r.len, gpa, len))
    }
}

/// Kinds of memory-map ranges, numbered as E820 numbers them (ACPI 6.5 Table 15.1), which
/// both `boot_params.e820_table` and `hvm_memmap_table_entry` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MemKind {
    Ram = 1,
    Reserved = 2,
}

/// One range of the memory map the guest is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub range: GuestRange,
    pub kind: MemKind,
}

/// The memory map: low RAM up to the legacy hole, the hole (with the ACPI tables) reserved,
/// RAM from 1 MiB up to the device window, the device window reserved (so the guest never puts
/// RAM-like data there and may map its MMIO), and high RAM if any. Sorted, non-overlapping.
///
/// With less than [`MIN_GUEST_RAM`] the map is still well formed, just useless; callers reject
/// such guests first.
pub fn memory_map(ram: &GuestRamLayout) -> Vec<MemRegion> {
    let mut map = Vec::with_capacity(5);
    let mut push = |start: GuestPhysAddr, end: u64, kind| {
        if end > start.as_u64() {
            let len = end - start.as_u64();
            map.push(MemRegion {
                range: GuestRange { start, len },
                kind,
            });
        }
    };
    let low_end = ram.low_end().as_u64();
    push(
        GuestPhysAddr::ZERO,
        low_end.min(LEGACY_HOLE_START.as_u64()),
        MemKind::Ram,
    );
    push(LEGACY_HOLE_START, BOOT_AREA_END.as_u64(), MemKind::Reserved);
    push(BOOT_AREA_END, low_end, MemKind::Ram);
    push(LOW_RAM_END, HIGH_RAM_START.as_u64(), MemKind::Reserved);
    let high_len = ram.size_bytes() - low_end;
    push(
        HIGH_RAM_START,
        HIGH_RAM_START.as_u64().saturating_add(high_len),
        MemKind::Ram,
    );
    map
}
