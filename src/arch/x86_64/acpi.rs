//! Reading the firmware's ACPI tables: the MADT tells which CPUs exist.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use crate::boot::BootInfo;

/// Physical memory is identity-mapped, so mapping a table is just taking its address.
#[derive(Clone, Copy)]
struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        // SAFETY: all physical memory below 4 GiB (where firmware puts ACPI tables) is
        // identity-mapped, so the physical address is a valid pointer to the table.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(physical_address as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Local APIC ids of the enabled (or online-capable) CPUs, in MADT order. Without ACPI or a
/// usable MADT, only the boot CPU is used.
pub fn cpu_apic_ids(info: &BootInfo) -> Vec<u32> {
    let Some(root) = info.acpi else {
        log::warn!(target: "acpi", "no ACPI tables from the bootloader; using the boot CPU only");
        return Vec::new();
    };
    // SAFETY: the address comes from the RSDP GRUB found; the handler maps identity.
    let tables = match unsafe {
        AcpiTables::from_rsdt(
            IdentityMapped,
            root.revision,
            root.table_addr.as_u64() as usize,
        )
    } {
        Ok(t) => t,
        Err(e) => {
            log::warn!(target: "acpi", "cannot read the RSDT/XSDT at {}: {e:?}; using the boot CPU only", root.table_addr);
            return Vec::new();
        }
    };
    let madt = match tables.find_table::<Madt>() {
        Ok(m) => m,
        Err(e) => {
            log::warn!(target: "acpi", "no MADT ({e:?}); using the boot CPU only");
            return Vec::new();
        }
    };
    const ENABLED: u32 = 1 << 0;
    const ONLINE_CAPABLE: u32 = 1 << 1;
    let mut ids = Vec::new();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) if e.flags & (ENABLED | ONLINE_CAPABLE) != 0 => {
                ids.push(u32::from(e.apic_id))
            }
            MadtEntry::LocalX2Apic(e) if e.flags & (ENABLED | ONLINE_CAPABLE) != 0 => {
                ids.push(e.x2apic_id)
            }
            _ => {}
        }
    }
    ids.dedup();
    ids
}
