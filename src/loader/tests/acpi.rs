//! Guest ACPI tables decoded back from guest memory.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::aml_walker::{self, Obj, Res, Term};
use super::builders::*;
use crate::guest_mem::GuestMemory;
use crate::layout::{IOAPIC_BASE, LAPIC_BASE};
use crate::loader::acpi::{
    eisa_id, is_poweroff_write, pkg_length, write_tables, AcpiConfig, AcpiError,
    SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT,
};
use crate::loader::layout::ACPI_TABLES;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// A table read back by address: checks its checksum and returns its bytes.
fn table_at(mem: &dyn GuestMemory, gpa: u64, signature: &[u8; 4]) -> Vec<u8> {
    let len = rd32(mem, gpa + 4) as usize;
    let t = read(mem, gpa, len);
    assert_eq!(&t[..4], signature);
    assert_eq!(
        sum(&t),
        0,
        "{} checksum",
        core::str::from_utf8(signature).unwrap()
    );
    t
}

struct Tables {
    fadt: Vec<u8>,
    madt: Vec<u8>,
    dsdt: Vec<u8>,
}

fn build(vcpus: u32, slots: &[u32]) -> Tables {
    let mem = ram(2);
    let config = AcpiConfig {
        vcpus,
        virtio_slots: slots,
    };
    let rsdp = write_tables(&mem, &config).unwrap().as_u64();
    assert_eq!(rsdp, ACPI_TABLES.as_u64());
    assert_eq!(rsdp % 16, 0);
    let r = read(&mem, rsdp, 36);
    assert_eq!(&r[..8], b"RSD PTR ");
    assert_eq!(sum(&r[..20]), 0, "RSDP checksum");
    assert_eq!(sum(&r), 0, "RSDP extended checksum");
    assert_eq!(r[15], 2, "revision");
    assert_eq!(rd32(&mem, rsdp + 20), 36);
    let xsdt = table_at(&mem, rd64(&mem, rsdp + 24), b"XSDT");
    let entries: Vec<u64> = xsdt[36..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(entries.len(), 2);
    let fadt = table_at(&mem, entries[0], b"FACP");
    let madt = table_at(&mem, entries[1], b"APIC");
    let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
    assert_eq!(
        u64::from(u32::from_le_bytes(fadt[40..44].try_into().unwrap())),
        x_dsdt
    );
    let dsdt = table_at(&mem, x_dsdt, b"DSDT");
    Tables { fadt, madt, dsdt }
}

#[test]
fn fadt_is_hardware_reduced_with_sleep_and_reset_registers() {
    let f = build(1, &[]).fadt;
    assert_eq!(f.len(), 276);
    assert_eq!(f[8], 6, "revision");
    let flags = u32::from_le_bytes(f[112..116].try_into().unwrap());
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    // GAS: system I/O, 8 bits, byte access, port.
    let gas = |at: usize| {
        (
            f[at],
            f[at + 1],
            f[at + 3],
            u64::from_le_bytes(f[at + 4..at + 12].try_into().unwrap()),
        )
    };
    assert_eq!(gas(244), (1, 8, 1, u64::from(SLEEP_CONTROL_PORT)));
    assert_eq!(gas(256), (1, 8, 1, u64::from(SLEEP_STATUS_PORT)));
    assert_eq!(gas(116), (1, 8, 1, 0x602));
    assert_eq!(f[128], 1, "reset value");
    assert_eq!(&f[268..276], b"Bulkhead");
}

#[test]
fn madt_lists_every_vcpu_and_the_io_apic() {
    let m = build(4, &[]).madt;
    assert_eq!(
        u32::from_le_bytes(m[36..40].try_into().unwrap()) as u64,
        LAPIC_BASE.as_u64()
    );
    let mut at = 44;
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    while at < m.len() {
        let (kind, len) = (m[at], usize::from(m[at + 1]));
        let e = &m[at..at + len];
        match kind {
            0 => lapics.push((e[2], e[3], u32::from_le_bytes(e[4..8].try_into().unwrap()))),
            1 => ioapics.push((
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
                u32::from_le_bytes(e[8..12].try_into().unwrap()),
            )),
            other => panic!("unexpected MADT entry type {other}"),
        }
        at += len;
    }
    assert_eq!(at, m.len());
    assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
    assert_eq!(ioapics, [(IOAPIC_BASE.as_u64() as u32, 0)]);
}

#[test]
fn madt_uses_x2apic_entries_beyond_apic_id_254() {
    let m = build(300, &[]).madt;
    let mut at = 44;
    let (mut lapic, mut x2apic_ids) = (0, Vec::new());
    while at < m.len() {
        match m[at] {
            0 => lapic += 1,
            9 => {
                assert_eq!(m[at + 1], 16);
                x2apic_ids.push(u32::from_le_bytes(m[at + 4..at + 8].try_into().unwrap()));
            }
            _ => {}
        }
        at += usize::from(m[at + 1]);
    }
    assert_eq!(lapic, 255);
    assert_eq!(x2apic_ids, (255..300).collect::<Vec<u32>>());
}

#[test]
fn dsdt_describes_com1_virtio_slots_and_s5() {
    let d = build(1, &[0, 5]).dsdt;
    assert_eq!(d[8], 2, "revision");
    let terms = aml_walker::parse(&d[36..]).unwrap();
    assert_eq!(terms.len(), 2);
    let Term::Scope {
        path,
        terms: devices,
    } = &terms[0]
    else {
        panic!("expected \\_SB_ scope, got {:?}", terms[0]);
    };
    assert_eq!(path, "\\_SB_");
    assert_eq!(
        Term::find_name(&terms, "_S5_"),
        Some(&Obj::Pkg(vec![Obj::Int(5), Obj::Int(0)]))
    );

    let device = |name: &str| -> &Vec<Term> {
        devices
            .iter()
            .find_map(|t| match t {
                Term::Device { name: n, terms } if n == name => Some(terms),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no device {name}"))
    };
    let crs = |terms: &[Term]| -> Vec<Res> {
        let Some(Obj::Buf(b)) = Term::find_name(terms, "_CRS") else {
            panic!("no _CRS buffer");
        };
        aml_walker::resources(b).unwrap()
    };

    let com1 = device("COM1");
    assert_eq!(Term::find_name(com1, "_HID"), Some(&Obj::Int(0x0105_D041)));
    assert_eq!(
        crs(com1),
        [
            Res::Io {
                min: 0x3F8,
                max: 0x3F8,
                align: 1,
                len: 8
            },
            Res::Irq { mask: 1 << 4 }
        ]
    );

    for (slot, name) in [(0u32, "VR00"), (5, "VR05")] {
        let dev = device(name);
        assert_eq!(
            Term::find_name(dev, "_HID"),
            Some(&Obj::Str("LNRO0005".to_string()))
        );
        assert_eq!(
            Term::find_name(dev, "_UID"),
            Some(&Obj::Int(u64::from(slot)))
        );
        assert_eq!(
            crs(dev),
            [
                Res::Mem32Fixed {
                    writable: true,
                    base: 0xD000_0000 + slot * 0x1000,
                    len: 0x200
                },
                // Consumer, level-triggered, active-high, exclusive.
                Res::ExtIrq {
                    flags: 0x01,
                    gsis: vec![16 + slot]
                },
            ]
        );
    }
    assert_eq!(devices.len(), 3);
}

#[test]
fn virtio_device_aml_matches_hand_encoding() {
    // Device (VR03) { Name (_HID, "LNRO0005") Name (_UID, 3)
    //   Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0003000, 0x200)
    //     Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { 19 } }) }
    let mut crs = vec![
        0x86, 0x09, 0x00, 0x01, 0x00, 0x30, 0x00, 0xD0, 0x00, 0x02, 0x00, 0x00,
    ];
    crs.extend([0x89, 0x06, 0x00, 0x01, 0x01, 0x13, 0x00, 0x00, 0x00]);
    crs.extend([0x79, 0x51]);
    let mut body = b"VR03".to_vec();
    body.extend([0x08, b'_', b'H', b'I', b'D', 0x0D]);
    body.extend(b"LNRO0005\0");
    body.extend([0x08, b'_', b'U', b'I', b'D', 0x0A, 0x03]);
    body.extend([0x08, b'_', b'C', b'R', b'S', 0x11, 0x1A, 0x0A, 0x17]);
    body.extend(&crs);
    assert_eq!(body.len(), 58);
    let mut expected = vec![0x5B, 0x82, 0x3B];
    expected.extend(&body);

    let d = build(1, &[3]).dsdt;
    assert!(
        d.windows(expected.len()).any(|w| w == expected),
        "DSDT lacks the hand-encoded VR03 device"
    );
}

#[test]
fn pkg_length_encodings() {
    assert_eq!(pkg_length(0), [0x01]);
    assert_eq!(pkg_length(62), [0x3F]);
    // 63 content bytes + 2 length bytes = 0x41: lead 0x40 | 0x1, then 0x41 >> 4.
    assert_eq!(pkg_length(63), [0x41, 0x04]);
    assert_eq!(pkg_length(0xFFD), [0x4F, 0xFF]);
    assert_eq!(pkg_length(0xFFE), [0x81, 0x00, 0x01]);
}

#[test]
fn eisa_ids() {
    assert_eq!(eisa_id(b"PNP0501"), 0x0105_D041);
    assert_eq!(eisa_id(b"PNP0A03"), 0x030A_D041);
}

#[test]
fn poweroff_decoding() {
    assert!(is_poweroff_write(0x34)); // SLP_EN | 5 << 2
    assert!(!is_poweroff_write(0x14)); // no SLP_EN
    assert!(!is_poweroff_write(0x20)); // S0 type
}

#[test]
fn bad_configurations_are_errors() {
    let mem = ram(2);
    let cfg = |vcpus, virtio_slots| AcpiConfig {
        vcpus,
        virtio_slots,
    };
    assert_eq!(write_tables(&mem, &cfg(0, &[])), Err(AcpiError::NoVcpus));
    assert_eq!(
        write_tables(&mem, &cfg(5000, &[])),
        Err(AcpiError::TooManyVcpus { count: 5000 })
    );
    let err = write_tables(&mem, &cfg(1, &[16])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest ACPI: virtio slot 16 is out of range (slots 0..16)"
    );
    assert_eq!(
        write_tables(&mem, &cfg(1, &[2, 2])),
        Err(AcpiError::DuplicateVirtioSlot { slot: 2 })
    );
    // Guest RAM that does not reach the ACPI area.
    let small = crate::guest_mem::VecGuestMemory::new(crate::addr::GuestPhysAddr::ZERO, 0x8_0000);
    assert!(matches!(
        write_tables(&small, &cfg(1, &[])),
        Err(AcpiError::GuestWrite(_))
    ));
}
