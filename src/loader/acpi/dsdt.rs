//! The DSDT: the devices Linux cannot discover by itself (virtio-mmio slots, COM1) and the S5
//! sleep type that makes `poweroff` write the FADT's sleep control register.

use alloc::vec::Vec;

use crate::layout::{virtio_slot_base, COM1_GSI, COM1_PORT, VIRTIO_GSI_BASE};

use super::aml::{self, NameSeg, ResourceTemplate, EXT_IRQ_CONSUMER, ROOT_CHAR};
use super::tables::{fix_checksum, table};
use super::S5_SLEEP_TYPE;

/// DSDT revision 2: integers are 64-bit.
const DSDT_REVISION: u8 = 2;
/// Linux `drivers/virtio/virtio_mmio.c` matches this ACPI ID.
pub(crate) const VIRTIO_MMIO_HID: &str = "LNRO0005";
/// Bytes of the virtio-mmio register block (virtio 1.2 §4.2.2), what `_CRS` claims.
pub(crate) const VIRTIO_MMIO_REGS_BYTES: u32 = 0x200;
/// 16550-compatible UART.
pub(crate) const COM1_HID: &[u8; 7] = b"PNP0501";
const COM1_PORTS: u8 = 8;

/// `\_SB_` as a NameString.
const SB_PATH: [u8; 5] = [ROOT_CHAR, b'_', b'S', b'B', b'_'];

/// The device name of virtio slot `slot` (< 256): "VR" and two hex digits.
pub(crate) fn virtio_device_name(slot: u32) -> NameSeg {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let hi = HEX[((slot >> 4) & 0xF) as usize];
    let lo = HEX[(slot & 0xF) as usize];
    [b'V', b'R', hi, lo]
}

fn com1() -> Vec<u8> {
    let crs = ResourceTemplate::new()
        .io(COM1_PORT, COM1_PORTS)
        .irq_no_flags(COM1_GSI as u8)
        .finish();
    let mut terms = aml::name(*b"_HID", &aml::integer(u64::from(aml::eisa_id(COM1_HID))));
    terms.extend(aml::name(*b"_UID", &aml::integer(0)));
    terms.extend(aml::name(*b"_CRS", &aml::buffer(&crs)));
    aml::device(*b"COM1", &terms)
}

/// One virtio-mmio device: its register block and a level-triggered, active-high, exclusive
/// interrupt on its GSI (the transport's interrupt status is a level the driver acknowledges).
fn virtio(slot: u32) -> Vec<u8> {
    let base = virtio_slot_base(slot).as_u64() as u32;
    let crs = ResourceTemplate::new()
        .memory32_fixed(base, VIRTIO_MMIO_REGS_BYTES)
        .extended_interrupt(EXT_IRQ_CONSUMER, VIRTIO_GSI_BASE + slot)
        .finish();
    let mut terms = aml::name(*b"_HID", &aml::string(VIRTIO_MMIO_HID));
    terms.extend(aml::name(*b"_UID", &aml::integer(u64::from(slot))));
    terms.extend(aml::name(*b"_CRS", &aml::buffer(&crs)));
    aml::device(virtio_device_name(slot), &terms)
}

/// The DSDT for the given (validated) virtio slots.
pub(crate) fn dsdt(virtio_slots: &[u32]) -> Vec<u8> {
    let mut devices = com1();
    for &slot in virtio_slots {
        devices.extend(virtio(slot));
    }
    let mut aml_code = aml::scope(&SB_PATH, &devices);
    // \_S5_: Package { SLP_TYPa, SLP_TYPb }; only SLP_TYPa matters for the hardware-reduced
    // sleep control register (ACPI 6.5 §4.8.3.7).
    let s5 = aml::package(&[aml::integer(u64::from(S5_SLEEP_TYPE)), aml::integer(0)]);
    aml_code.extend(aml::name(*b"_S5_", &s5));
    let mut t = table(b"DSDT", DSDT_REVISION, &aml_code);
    fix_checksum(&mut t);
    t
}
