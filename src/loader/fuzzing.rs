//! Fuzz entry points for the loader: arbitrary ELF and bzImage files, and arbitrary guest ACPI
//! configurations. The cargo-fuzz targets `elf`, `bzimage` and `acpi` call these; xtask's tests
//! replay the committed corpus through them on stable Rust.
//!
//! Assertions here are the oracle: a failed one is a loader bug, never a problem with the input.
//! A load either fails with a [`LoadError`] found before the first write to guest RAM, or
//! succeeds having written only inside RAM, each byte at most once, with the kernel, the initrd
//! and the entry point where the [`BootSetup`] says.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::vec::Vec;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemory, VecGuestMemory};
use crate::layout::VIRTIO_MMIO_SLOTS;

use super::acpi::{write_tables, AcpiConfig};
use super::layout::{GuestRamLayout, GuestRange, ACPI_TABLES, ACPI_TABLES_BYTES, BOOT_AREA_END};
use super::{is_linux, load, validate, BootProtocol, BootRequest, Format, LoadError, SparseMemory};

/// Guest RAM sizes the fuzzer picks from: the smallest the layout takes, typical ones, one that
/// ends just below the device window, one that crosses it, and one far above 4 GiB.
const RAM_SIZES: [u64; 8] = [
    2 << 20,
    16 << 20,
    (64 << 20) + 0x1000,
    128 << 20,
    (3 << 30) - (2 << 20),
    3 << 30,
    (3 << 30) + (512 << 20),
    8 << 30,
];
/// Initrd contents do not matter to the loader, only their size: slices of this.
static INITRD_ZEROES: [u8; 1 << 20] = [0; 1 << 20];
/// Bytes of input before the image: RAM size, initrd size (2).
const PREFIX_BYTES: usize = 3;
/// The virtio slots the loads describe in their ACPI tables.
const LOAD_SLOTS: [u32; 3] = [0, 1, 2];

/// An ELF kernel (PVH): `data` = RAM choice, initrd size (u16, in 16-byte units), image.
pub fn elf(data: &[u8]) {
    image(data, Format::Elf);
}

/// A bzImage (64-bit boot protocol), with the same prefix as [`elf`].
pub fn bzimage(data: &[u8]) {
    image(data, Format::Linux);
}

fn image(data: &[u8], format: Format) {
    let Some((prefix, kernel)) = data.split_first_chunk::<PREFIX_BYTES>() else {
        return;
    };
    let ram = GuestRamLayout::new(RAM_SIZES[usize::from(prefix[0]) % RAM_SIZES.len()]);
    let initrd_len = usize::from(u16::from_le_bytes([prefix[1], prefix[2]])) * 16;
    let initrd = INITRD_ZEROES.get(..initrd_len).unwrap_or(&INITRD_ZEROES);
    let _ = is_linux(kernel);
    for format in [format, Format::Auto] {
        let req = BootRequest {
            kernel,
            format,
            cmdline: "console=ttyS0 fuzz",
            initrd: Some(initrd),
            acpi: Some(AcpiConfig {
                vcpus: 2,
                virtio_slots: &LOAD_SLOTS,
            }),
        };
        check_load(&ram, &req);
    }
}

/// Loads `req` into recording memory and checks the result against the oracle above.
fn check_load(ram: &GuestRamLayout, req: &BootRequest<'_>) {
    let mem = SparseMemory::recording(*ram);
    let result = load(&mem, ram, req);
    // Validation is the same load without RAM: it must reach the same verdict.
    assert_eq!(validate(ram, req), result, "validate and load disagree");
    let writes = mem.writes();
    let setup = match result {
        Ok(setup) => setup,
        Err(e) => {
            assert!(
                !matches!(e, LoadError::GuestWrite { .. }),
                "a check was missed before writing: {e}"
            );
            let _ = format!("{e}");
            return;
        }
    };
    // The initrd and every segment are writes, so this also keeps them apart.
    check_disjoint(&writes);
    assert!(
        setup.kernel.start >= BOOT_AREA_END,
        "kernel in the boot area"
    );
    // A PVH kernel's range is its segments' span, which may straddle the device window when
    // segments sit both below it and above 4 GiB; Linux's is one block that must be RAM.
    if setup.protocol == BootProtocol::Linux64 {
        assert!(
            ram.contains(setup.kernel.start, setup.kernel.len),
            "kernel {:?} outside RAM of {:#x}",
            setup.kernel,
            ram.size_bytes()
        );
    }
    if let Some(initrd) = setup.initrd {
        assert!(ram.contains(initrd.start, initrd.len), "initrd outside RAM");
        assert!(
            initrd.start >= BOOT_AREA_END && initrd.start >= setup.kernel.start,
            "initrd {initrd:?} below the kernel {:?}",
            setup.kernel
        );
        if setup.protocol == BootProtocol::Linux64 {
            assert!(!initrd.overlaps(&setup.kernel), "initrd over the kernel");
        }
    }
    let entry = GuestRange {
        start: GuestPhysAddr::new(setup.entry.rip),
        len: 1,
    };
    assert!(
        entry.overlaps(&setup.kernel),
        "entry {:#x} outside the kernel {:?}",
        setup.entry.rip,
        setup.kernel
    );
    // The entry must be on bytes the loader copied from the image, not on zeroed bss.
    assert!(
        writes.iter().any(|w| w.overlaps(&entry)),
        "entry {:#x} on memory nothing was written to",
        setup.entry.rip
    );
    match setup.protocol {
        BootProtocol::Pvh => assert_ne!(req.format, Format::Linux),
        BootProtocol::Linux64 => assert_ne!(req.format, Format::Elf),
    }
}

/// No byte of guest RAM is written twice: kernel segments, initrd and boot structures each have
/// their own place.
fn check_disjoint(writes: &[GuestRange]) {
    let mut sorted: Vec<GuestRange> = writes.iter().copied().filter(|w| w.len > 0).collect();
    sorted.sort_unstable_by_key(|w| w.start.as_u64());
    for pair in sorted.windows(2) {
        if let [a, b] = pair {
            assert!(
                !a.overlaps(b),
                "loader wrote {a:?} and {b:?}, which overlap"
            );
        }
    }
}

/// The guest ACPI tables for any vCPU count and slot list: an error, or tables whose
/// checksums hold, that lie inside their reserved range and list the DSDT, FADT and MADT.
/// `data` = vCPU count (u16), then one byte per virtio slot.
pub fn acpi(data: &[u8]) {
    let Some((count, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let vcpus = u32::from(u16::from_le_bytes(*count));
    // Slots mostly in range so that valid configurations are common; 0xFF stays out of range.
    let slots: Vec<u32> = rest
        .iter()
        .map(|&b| match b {
            0xFF => u32::MAX,
            b => u32::from(b) % (VIRTIO_MMIO_SLOTS + 1),
        })
        .collect();
    let config = AcpiConfig {
        vcpus,
        virtio_slots: &slots,
    };
    let mem = VecGuestMemory::new(ACPI_TABLES, ACPI_TABLES_BYTES as usize);
    let rsdp = match write_tables(&mem, &config) {
        Ok(rsdp) => rsdp,
        Err(e) => {
            let _ = format!("{e}");
            assert!(
                mem.snapshot().iter().all(|&b| b == 0),
                "wrote before failing"
            );
            return;
        }
    };
    let rsdp_bytes = read(&mem, rsdp.as_u64(), RSDP_V2_SIZE);
    assert_eq!(&rsdp_bytes[..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp_bytes[..RSDP_V1_SIZE]), 0, "RSDP checksum");
    assert_eq!(sum(&rsdp_bytes), 0, "RSDP extended checksum");
    let xsdt = le64(&rsdp_bytes[RSDP_XSDT..]);
    let xsdt_bytes = sdt(&mem, xsdt, b"XSDT");
    let mut seen = Vec::new();
    for entry in xsdt_bytes[SDT_HEADER..].chunks(8) {
        let addr = le64(entry);
        let table = sdt(&mem, addr, &[0; 4]);
        if &table[..4] == b"FACP" {
            let dsdt = le64(table.get(FADT_X_DSDT..).unwrap_or(&[]));
            sdt(&mem, dsdt, b"DSDT");
            seen.push(*b"DSDT");
        }
        seen.push([table[0], table[1], table[2], table[3]]);
    }
    for sig in [b"FACP", b"APIC", b"DSDT"] {
        assert!(seen.contains(sig), "no {sig:?} table");
    }
}

const RSDP_V1_SIZE: usize = 20;
const RSDP_V2_SIZE: usize = 36;
const RSDP_XSDT: usize = 24;
const SDT_HEADER: usize = 36;
/// FADT X_DSDT (ACPI 6.5 Table 5.9).
const FADT_X_DSDT: usize = 140;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

fn le64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(b)
}

fn read(mem: &dyn GuestMemory, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = alloc::vec![0u8; len];
    assert!(
        mem.read(GuestPhysAddr::new(gpa), &mut buf).is_ok(),
        "ACPI pointer {gpa:#x}+{len:#x} outside the tables' range"
    );
    buf
}

/// The table at `gpa`, checked: inside the range, its checksum zero, its signature `sig`
/// (unless `sig` is all zeroes).
fn sdt(mem: &dyn GuestMemory, gpa: u64, sig: &[u8; 4]) -> Vec<u8> {
    let header = read(mem, gpa, SDT_HEADER);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    assert!(len >= SDT_HEADER, "table at {gpa:#x} of length {len}");
    let table = read(mem, gpa, len);
    assert_eq!(sum(&table), 0, "checksum of table at {gpa:#x}");
    if sig != &[0; 4] {
        assert_eq!(&table[..4], sig);
    }
    table
}
