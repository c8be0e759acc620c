//! The boot information, parsed once from multiboot2 into Bulkhead's own [`BootInfo`].
//!
//! This is the only module that reads multiboot2 structures. Everything the rest of the
//! hypervisor needs (memory map, modules, command line, ACPI root) is copied into owned data
//! here, so nothing later depends on the bootloader's memory, which on UEFI sits in low memory
//! that the hypervisor reuses.

#![deny(unsafe_code)]

pub mod cmdline;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use multiboot2::{BootInformation, EFIMemoryAreaType, MemoryAreaType};

use crate::addr::HostPhysAddr;

/// Value the bootloader leaves in EAX (multiboot2 spec §3.3).
pub const MULTIBOOT2_MAGIC: u32 = 0x36D7_6289;

/// What a range of physical memory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Free RAM the hypervisor may use.
    Usable,
    /// ACPI tables (kept: the hypervisor reads them).
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective RAM.
    Bad,
    /// Anything else, including types this parser does not know.
    Reserved,
}

/// One range of the physical memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub start: HostPhysAddr,
    /// Length in bytes.
    pub len: u64,
    /// What the range holds.
    pub kind: RegionKind,
}

impl MemRegion {
    /// One past the last byte (saturating).
    pub fn end(&self) -> HostPhysAddr {
        HostPhysAddr::new(self.start.as_u64().saturating_add(self.len))
    }
}

/// A file GRUB loaded next to the hypervisor (`module2 PATH STRING`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The module string from grub.cfg (the manifest path, or `manifest`).
    pub name: String,
    /// Where GRUB put it.
    pub start: HostPhysAddr,
    /// Its length in bytes.
    pub len: u64,
}

/// Where the firmware's ACPI tables are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiRoot {
    /// RSDP revision (0 = ACPI 1.0 with an RSDT, 2+ = XSDT available).
    pub revision: u8,
    /// Physical address of the RSDT (revision 0) or XSDT.
    pub table_addr: HostPhysAddr,
}

/// Everything the hypervisor takes from the bootloader.
#[derive(Clone, Debug, Default)]
pub struct BootInfo {
    /// Physical memory map, sorted by address.
    pub memory: Vec<MemRegion>,
    /// Whether `memory` came from the EFI memory map (UEFI boot).
    pub is_uefi: bool,
    /// Modules in the order GRUB listed them.
    pub modules: Vec<Module>,
    /// The kernel command line.
    pub cmdline: String,
    /// The ACPI root, when the bootloader passed one.
    pub acpi: Option<AcpiRoot>,
    /// Where the boot information itself lies (to keep it from the frame allocator until parsed).
    pub info_start: HostPhysAddr,
    /// Its length.
    pub info_len: u64,
}

/// Boot information that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// EAX did not hold the multiboot2 magic.
    BadMagic(u32),
    /// Neither a memory map nor an EFI memory map tag was present.
    NoMemoryMap,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "boot: not started by a multiboot2 loader (EAX {m:#x}, expected {MULTIBOOT2_MAGIC:#x})"),
            Self::NoMemoryMap => write!(f, "boot: the bootloader passed no memory map (neither tag 6 nor tag 17)"),
        }
    }
}

fn efi_kind(t: EFIMemoryAreaType) -> RegionKind {
    // UEFI spec §7.2: after ExitBootServices, loader and boot-services memory is free.
    match t {
        EFIMemoryAreaType::CONVENTIONAL
        | EFIMemoryAreaType::LOADER_CODE
        | EFIMemoryAreaType::LOADER_DATA
        | EFIMemoryAreaType::BOOT_SERVICES_CODE
        | EFIMemoryAreaType::BOOT_SERVICES_DATA => RegionKind::Usable,
        EFIMemoryAreaType::ACPI_RECLAIM => RegionKind::AcpiReclaimable,
        EFIMemoryAreaType::ACPI_NON_VOLATILE => RegionKind::AcpiNvs,
        EFIMemoryAreaType::UNUSABLE => RegionKind::Bad,
        _ => RegionKind::Reserved,
    }
}

fn e820_kind(t: MemoryAreaType) -> RegionKind {
    match t {
        MemoryAreaType::Available => RegionKind::Usable,
        MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
        MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
        MemoryAreaType::Defective => RegionKind::Bad,
        _ => RegionKind::Reserved,
    }
}

impl BootInfo {
    /// Copies what Bulkhead needs out of the multiboot2 information.
    pub fn parse(magic: u32, info: &BootInformation<'_>) -> Result<Self, BootError> {
        if magic != MULTIBOOT2_MAGIC {
            return Err(BootError::BadMagic(magic));
        }
        let mut memory = Vec::new();
        let mut is_uefi = false;
        if let Some(efi) = info.efi_memory_map_tag() {
            for d in efi.memory_areas() {
                memory.push(MemRegion {
                    start: HostPhysAddr::new(d.phys_start),
                    len: d.page_count.saturating_mul(4096),
                    kind: efi_kind(d.ty),
                });
            }
            is_uefi = !memory.is_empty();
        }
        if memory.is_empty() {
            if let Some(mmap) = info.memory_map_tag() {
                for a in mmap.memory_areas() {
                    memory.push(MemRegion {
                        start: HostPhysAddr::new(a.start_address()),
                        len: a.size(),
                        kind: e820_kind(a.typ()),
                    });
                }
            }
        }
        if memory.is_empty() {
            return Err(BootError::NoMemoryMap);
        }
        memory.retain(|r| r.len > 0);
        memory.sort_by_key(|r| r.start);
        // The EFI map lists many small neighbouring ranges of one kind: merge them.
        let mut merged: Vec<MemRegion> = Vec::with_capacity(memory.len());
        for r in memory {
            match merged.last_mut() {
                Some(last) if last.kind == r.kind && last.end() == r.start => last.len += r.len,
                _ => merged.push(r),
            }
        }
        let memory = merged;

        let modules = info
            .module_tags()
            .map(|m| Module {
                name: m.cmdline().unwrap_or("").trim().to_string(),
                start: HostPhysAddr::new(u64::from(m.start_address())),
                len: u64::from(m.end_address().saturating_sub(m.start_address())),
            })
            .collect();
        let cmdline = info
            .command_line_tag()
            .and_then(|c| c.cmdline().ok())
            .unwrap_or("")
            .trim()
            .to_string();
        let acpi = if let Some(v2) = info.rsdp_v2_tag() {
            Some(AcpiRoot {
                revision: v2.revision(),
                table_addr: HostPhysAddr::new(v2.xsdt_address() as u64),
            })
        } else {
            info.rsdp_v1_tag().map(|v1| AcpiRoot {
                revision: 0,
                table_addr: HostPhysAddr::new(v1.rsdt_address() as u64),
            })
        };
        Ok(Self {
            memory,
            is_uefi,
            modules,
            cmdline,
            acpi,
            info_start: HostPhysAddr::new(info.start_address() as u64),
            info_len: info.total_size() as u64,
        })
    }

    /// Total usable RAM in bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| r.len)
            .sum()
    }

    /// The module whose string is `name`.
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests;
