//! Guest ACPI tables, so an unmodified Linux finds its CPUs, I/O APIC, virtio-mmio devices and
//! UART, and can power off: RSDP → XSDT → {FADT → DSDT, MADT} (ACPI 6.5 §5.2).
//!
//! The platform is hardware-reduced (no PM1 blocks, SCI or FACS). Power-off and reset go
//! through I/O ports the VMM traps:
//! - [`SLEEP_CONTROL_PORT`]: Linux `poweroff` writes `SLP_EN | S5_SLEEP_TYPE << 2` (see
//!   [`is_poweroff_write`]); [`SLEEP_STATUS_PORT`] is polled afterwards.
//! - [`RESET_PORT`]: `reboot` writes [`RESET_VALUE`].
//!
//! The tables live at [`ACPI_TABLES`], RSDP first, so both `boot_params.acpi_rsdp_addr` /
//! `hvm_start_info.rsdp_paddr` and the legacy 0xE0000–0xFFFFF scan find them.

mod aml;
mod dsdt;
mod tables;

#[cfg(test)]
pub(crate) use aml::{eisa_id, pkg_length};

use alloc::vec::Vec;
use core::fmt;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemError, GuestMemory};
use crate::layout::VIRTIO_MMIO_SLOTS;

use super::layout::{ACPI_TABLES, ACPI_TABLES_BYTES};

/// FADT `SLEEP_CONTROL_REG` (byte, system I/O).
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// FADT `SLEEP_STATUS_REG` (byte, system I/O); reading it with bit 7 (WAK_STS) set ends the
/// wait that follows a sleep request.
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// FADT `RESET_REG` (byte, system I/O).
pub const RESET_PORT: u16 = 0x602;
/// What the guest writes to [`RESET_PORT`] to reset.
pub const RESET_VALUE: u8 = 0x01;
/// The DSDT's `\_S5_` SLP_TYPa.
pub const S5_SLEEP_TYPE: u8 = 5;
/// Sleep control register bits (ACPI 6.5 §4.8.3.7): SLP_TYPx in 4:2, SLP_EN in 5.
pub const SLEEP_TYPE_SHIFT: u8 = 2;
pub const SLEEP_TYPE_MASK: u8 = 0x7 << SLEEP_TYPE_SHIFT;
pub const SLEEP_ENABLE: u8 = 1 << 5;
/// FADT SCI_INT. Unused on hardware-reduced platforms, but Linux still routes it, so it names
/// IRQ 9 as PCs do rather than 0 (which would reconfigure the timer's ISA line).
pub const SCI_IRQ: u8 = 9;
/// Most vCPUs the tables describe.
pub const MAX_VCPUS: u32 = 1024;

/// Whether a byte written to [`SLEEP_CONTROL_PORT`] asks for S5 (soft off).
pub const fn is_poweroff_write(value: u8) -> bool {
    value & SLEEP_ENABLE != 0 && (value & SLEEP_TYPE_MASK) >> SLEEP_TYPE_SHIFT == S5_SLEEP_TYPE
}

/// The guest's hardware, as the tables describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig<'a> {
    /// vCPUs, with APIC IDs 0..vcpus.
    pub vcpus: u32,
    /// Populated virtio-mmio slots (each < `VIRTIO_MMIO_SLOTS`, no repeats).
    pub virtio_slots: &'a [u32],
}

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    NoVcpus,
    TooManyVcpus { count: u32 },
    VirtioSlotOutOfRange { slot: u32 },
    DuplicateVirtioSlot { slot: u32 },
    TablesTooLarge { size: u64 },
    GuestWrite(GuestMemError),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("guest ACPI: ")?;
        match *self {
            Self::NoVcpus => f.write_str("a guest needs at least one vCPU"),
            Self::TooManyVcpus { count } => {
                write!(f, "{count} vCPUs is more than the {MAX_VCPUS} the MADT describes")
            }
            Self::VirtioSlotOutOfRange { slot } => write!(
                f,
                "virtio slot {slot} is out of range (slots 0..{VIRTIO_MMIO_SLOTS})"
            ),
            Self::DuplicateVirtioSlot { slot } => {
                write!(f, "virtio slot {slot} is listed twice")
            }
            Self::TablesTooLarge { size } => write!(
                f,
                "tables need {size:#x} bytes, more than the {ACPI_TABLES_BYTES:#x} reserved at {ACPI_TABLES}"
            ),
            Self::GuestWrite(e) => write!(f, "cannot write the tables: {e}"),
        }
    }
}

fn validate(config: &AcpiConfig<'_>) -> Result<(), AcpiError> {
    if config.vcpus == 0 {
        return Err(AcpiError::NoVcpus);
    }
    if config.vcpus > MAX_VCPUS {
        return Err(AcpiError::TooManyVcpus {
            count: config.vcpus,
        });
    }
    for (i, &slot) in config.virtio_slots.iter().enumerate() {
        if slot >= VIRTIO_MMIO_SLOTS {
            return Err(AcpiError::VirtioSlotOutOfRange { slot });
        }
        if config.virtio_slots[..i].contains(&slot) {
            return Err(AcpiError::DuplicateVirtioSlot { slot });
        }
    }
    Ok(())
}

/// Tables are placed one after another, each 16-byte aligned.
const TABLE_ALIGN: usize = 16;

fn append(blob: &mut Vec<u8>, table: &[u8]) -> u64 {
    let at = blob.len().next_multiple_of(TABLE_ALIGN);
    blob.resize(at, 0);
    blob.extend_from_slice(table);
    ACPI_TABLES.as_u64() + at as u64
}

/// Builds the tables for `config`, writes them at [`ACPI_TABLES`] and returns the RSDP's address.
pub fn write_tables(
    mem: &dyn GuestMemory,
    config: &AcpiConfig<'_>,
) -> Result<GuestPhysAddr, AcpiError> {
    validate(config)?;
    // Reserve the RSDP's place first; the XSDT address is known only after the others.
    let mut blob = alloc::vec![0u8; tables::RSDP_SIZE];
    let dsdt = append(&mut blob, &dsdt::dsdt(config.virtio_slots));
    let fadt = append(&mut blob, &tables::fadt(dsdt));
    let madt = append(&mut blob, &tables::madt(config.vcpus));
    let xsdt = append(&mut blob, &tables::xsdt(&[fadt, madt]));
    blob[..tables::RSDP_SIZE].copy_from_slice(&tables::rsdp(xsdt));
    if blob.len() as u64 > ACPI_TABLES_BYTES {
        return Err(AcpiError::TablesTooLarge {
            size: blob.len() as u64,
        });
    }
    mem.write(ACPI_TABLES, &blob)
        .map_err(AcpiError::GuestWrite)?;
    Ok(ACPI_TABLES)
}
