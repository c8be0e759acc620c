//! The fixed-layout ACPI tables: RSDP, XSDT, FADT and MADT (ACPI 6.5 §5.2), each built as bytes
//! with its checksum; addresses are patched in by the caller once the layout is known.

use alloc::vec;
use alloc::vec::Vec;

use crate::layout::{IOAPIC_BASE, LAPIC_BASE};

use super::{RESET_PORT, RESET_VALUE, SCI_IRQ, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT};

/// §5.2.6 System Description Table Header.
pub(crate) const HEADER_SIZE: usize = 36;
const CHECKSUM_OFFSET: usize = 9;
const OEM_ID: &[u8; 6] = b"BULKHD";
const OEM_TABLE_ID: &[u8; 8] = b"BULKHEAD";
const OEM_REVISION: u32 = 1;
const CREATOR_ID: &[u8; 4] = b"BLKH";
const CREATOR_REVISION: u32 = 1;

/// Sum of `bytes` as the ACPI checksum rules count it (mod 256).
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// A table: header (with its final length) plus `body`, checksum still zero.
pub(crate) fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_SIZE + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((HEADER_SIZE + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&OEM_REVISION.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&CREATOR_REVISION.to_le_bytes());
    t.extend_from_slice(body);
    t
}

/// Sets the header checksum so the whole table sums to zero.
pub(crate) fn fix_checksum(table: &mut [u8]) {
    if let Some(slot) = table.get_mut(CHECKSUM_OFFSET) {
        *slot = 0;
    }
    let sum = byte_sum(table);
    if let Some(slot) = table.get_mut(CHECKSUM_OFFSET) {
        *slot = 0u8.wrapping_sub(sum);
    }
}

/// §5.2.5.3 RSDP, revision 2 (ACPI 2.0+): only the XSDT is given.
pub(crate) const RSDP_SIZE: usize = 36;
const RSDP_REVISION: u8 = 2;

pub(crate) fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = vec![0u8; RSDP_SIZE];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = RSDP_REVISION;
    // RsdtAddress (16..20) stays 0: XSDT only.
    r[20..24].copy_from_slice(&(RSDP_SIZE as u32).to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    // Checksum over the ACPI 1.0 part, then the extended checksum over all of it.
    r[8] = 0u8.wrapping_sub(byte_sum(&r[..20]));
    r[32] = 0u8.wrapping_sub(byte_sum(&r));
    r
}

/// §5.2.8 XSDT: 64-bit pointers to the other tables (not the DSDT, which the FADT names).
pub(crate) fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    let mut t = table(b"XSDT", 1, &body);
    fix_checksum(&mut t);
    t
}

/// §5.2.9 FADT, revision 6 (276 bytes with the hypervisor vendor identity).
pub(crate) const FADT_SIZE: usize = 276;
const FADT_REVISION: u8 = 6;
mod fadt {
    pub const DSDT: usize = 40;
    pub const SCI_INT: usize = 46;
    pub const IAPC_BOOT_ARCH: usize = 109;
    pub const FLAGS: usize = 112;
    pub const RESET_REG: usize = 116;
    pub const RESET_VALUE: usize = 128;
    pub const X_DSDT: usize = 140;
    pub const SLEEP_CONTROL_REG: usize = 244;
    pub const SLEEP_STATUS_REG: usize = 256;
    pub const HYPERVISOR_VENDOR: usize = 268;
}
/// FADT flags (§5.2.9 Table 5.10): the reset register is supported; hardware-reduced ACPI
/// (no PM1 blocks, no SCI, no FACS: the sleep registers below replace them).
const FADT_RESET_REG_SUP: u32 = 1 << 10;
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IA-PC boot architecture flags (Table 5.11): no VGA, no CMOS RTC (no 8042 and no legacy
/// devices, by leaving those bits clear).
const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
const BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// §5.2.3.2 Generic Address Structure: system I/O space, byte access.
const GAS_SYSTEM_IO: u8 = 1;
const GAS_ACCESS_BYTE: u8 = 1;

fn gas_io_byte(port: u16) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = GAS_SYSTEM_IO;
    g[1] = 8; // register bit width
    g[3] = GAS_ACCESS_BYTE;
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

pub(crate) fn fadt(dsdt: u64) -> Vec<u8> {
    let mut body = vec![0u8; FADT_SIZE - HEADER_SIZE];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = body.get_mut(at - HEADER_SIZE..at - HEADER_SIZE + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    // The 32-bit field too, for older parsers; the tables sit below 1 MiB.
    put(fadt::DSDT, &(dsdt as u32).to_le_bytes());
    put(fadt::X_DSDT, &dsdt.to_le_bytes());
    put(fadt::SCI_INT, &u16::from(SCI_IRQ).to_le_bytes());
    put(
        fadt::IAPC_BOOT_ARCH,
        &(BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT).to_le_bytes(),
    );
    put(
        fadt::FLAGS,
        &(FADT_RESET_REG_SUP | FADT_HW_REDUCED_ACPI).to_le_bytes(),
    );
    put(fadt::RESET_REG, &gas_io_byte(RESET_PORT));
    put(fadt::RESET_VALUE, &[RESET_VALUE]);
    put(fadt::SLEEP_CONTROL_REG, &gas_io_byte(SLEEP_CONTROL_PORT));
    put(fadt::SLEEP_STATUS_REG, &gas_io_byte(SLEEP_STATUS_PORT));
    put(fadt::HYPERVISOR_VENDOR, b"Bulkhead");
    let mut t = table(b"FACP", FADT_REVISION, &body);
    fix_checksum(&mut t);
    t
}

/// §5.2.12 MADT, revision 5.
const MADT_REVISION: u8 = 5;
/// Interrupt controller structure types (Table 5.21).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_LOCAL_X2APIC: u8 = 9;
const MADT_ENABLED: u32 = 1;
/// The first APIC ID that the 8-bit Local APIC structure cannot describe (0xFF is broadcast).
const FIRST_X2APIC_ONLY_ID: u32 = 0xFF;
/// The I/O APIC's ID; the emulated I/O APIC resets its ID register to 0 too.
pub(crate) const IOAPIC_ID: u8 = 0;

/// vCPU `n` has APIC ID `n` and ACPI processor UID `n`. No interrupt source overrides: there is
/// no PIT (so no IRQ0→GSI2), and the only ISA device, COM1, uses IRQ 4 = GSI 4 with the ISA
/// default polarity and trigger. Flags stay 0 (no PC-AT 8259 pair to mask).
pub(crate) fn madt(vcpus: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(LAPIC_BASE.as_u64() as u32).to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    for id in 0..vcpus {
        if id < FIRST_X2APIC_ONLY_ID {
            body.extend_from_slice(&[MADT_LOCAL_APIC, 8, id as u8, id as u8]);
            body.extend_from_slice(&MADT_ENABLED.to_le_bytes());
        } else {
            body.extend_from_slice(&[MADT_LOCAL_X2APIC, 16, 0, 0]);
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&MADT_ENABLED.to_le_bytes());
            body.extend_from_slice(&id.to_le_bytes());
        }
    }
    body.extend_from_slice(&[MADT_IO_APIC, 12, IOAPIC_ID, 0]);
    body.extend_from_slice(&(IOAPIC_BASE.as_u64() as u32).to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    let mut t = table(b"APIC", MADT_REVISION, &body);
    fix_checksum(&mut t);
    t
}
