//! BootInfo from fake tag lists shaped like what GRUB gives on SeaBIOS and on OVMF.

#![allow(unsafe_code)]

use multiboot2::{
    BootInformation, Builder, CommandLineTag, EFIMemoryAreaType, EFIMemoryDesc, EFIMemoryMapTag,
    MemoryArea, MemoryAreaType, MemoryMapTag, ModuleTag, RsdpV1Tag,
};

use super::*;

fn with_info<R>(builder: Builder, f: impl FnOnce(&BootInformation<'_>) -> R) -> R {
    let mbi = builder.build();
    // SAFETY: the builder produces a complete, 8-byte aligned MBI ending with an end tag, and it
    // outlives `info`.
    let info = unsafe { BootInformation::load(mbi.header()) }.expect("valid MBI");
    f(&info)
}

#[test]
fn bios_style_map_modules_cmdline_rsdp() {
    let b = Builder::new()
        .cmdline(CommandLineTag::new("log=debug test"))
        .mmap(MemoryMapTag::new(&[
            MemoryArea::new(0x0, 0x9fc00, MemoryAreaType::Available),
            MemoryArea::new(0x9fc00, 0x400, MemoryAreaType::Reserved),
            MemoryArea::new(0x100000, 0x7ee0000, MemoryAreaType::Available),
            MemoryArea::new(0x7fe0000, 0x20000, MemoryAreaType::AcpiAvailable),
            MemoryArea::new(0xfffc0000, 0x40000, 7u32),
        ]))
        .add_module(ModuleTag::new(0x400000, 0x401000, "manifest"))
        .add_module(ModuleTag::new(0x401000, 0x480000, "guests/hello.elf"))
        .rsdpv1(RsdpV1Tag::new(*b"BOCHS ", 0, 0x7fe1000));
    let bi = with_info(b, |i| BootInfo::parse(MULTIBOOT2_MAGIC, i)).unwrap();
    assert!(!bi.is_uefi);
    assert_eq!(bi.cmdline, "log=debug test");
    assert_eq!(bi.memory.len(), 5);
    assert_eq!(
        bi.memory[4].kind,
        RegionKind::Reserved,
        "unknown types are reserved"
    );
    assert_eq!(bi.memory[3].kind, RegionKind::AcpiReclaimable);
    assert_eq!(bi.usable_bytes(), 0x9fc00 + 0x7ee0000);
    assert_eq!(bi.modules.len(), 2);
    let m = bi.module("guests/hello.elf").unwrap();
    assert_eq!((m.start, m.len), (HostPhysAddr::new(0x401000), 0x7f000));
    assert_eq!(
        bi.acpi,
        Some(AcpiRoot {
            revision: 0,
            table_addr: HostPhysAddr::new(0x7fe1000)
        })
    );
}

#[test]
fn uefi_style_map_takes_precedence_and_frees_boot_services_memory() {
    let desc = |ty, start: u64, pages: u64| EFIMemoryDesc {
        ty,
        phys_start: start,
        virt_start: 0,
        page_count: pages,
        att: Default::default(),
        padding: 0,
    };
    let b = Builder::new()
        .mmap(MemoryMapTag::new(&[MemoryArea::new(
            0x0,
            0x1000,
            MemoryAreaType::Available,
        )]))
        .efi_mmap(EFIMemoryMapTag::new_from_descs(&[
            desc(EFIMemoryAreaType::BOOT_SERVICES_DATA, 0x100000, 16),
            desc(EFIMemoryAreaType::CONVENTIONAL, 0x0, 0x9f),
            desc(EFIMemoryAreaType::RUNTIME_SERVICES_CODE, 0x200000, 4),
            desc(EFIMemoryAreaType::ACPI_NON_VOLATILE, 0x300000, 1),
            desc(EFIMemoryAreaType::LOADER_DATA, 0x400000, 2),
            desc(EFIMemoryAreaType::CONVENTIONAL, 0x402000, 3),
        ]));
    let bi = with_info(b, |i| BootInfo::parse(MULTIBOOT2_MAGIC, i)).unwrap();
    assert!(bi.is_uefi);
    assert_eq!(bi.memory[0].start, HostPhysAddr::ZERO, "sorted by address");
    let kinds: Vec<_> = bi.memory.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RegionKind::Usable,
            RegionKind::Usable,
            RegionKind::Reserved,
            RegionKind::AcpiNvs,
            RegionKind::Usable
        ]
    );
    assert_eq!(bi.usable_bytes(), (0x9f + 16 + 2 + 3) * 4096);
    assert_eq!(bi.memory.len(), 5, "touching ranges of one kind are merged");
}

#[test]
fn rejects_wrong_magic_and_missing_map() {
    let err = with_info(Builder::new(), |i| BootInfo::parse(0x2BAD_B002, i)).unwrap_err();
    assert_eq!(err, BootError::BadMagic(0x2BAD_B002));
    assert!(err.to_string().contains("multiboot2"));
    let err = with_info(Builder::new().cmdline(CommandLineTag::new("x")), |i| {
        BootInfo::parse(MULTIBOOT2_MAGIC, i)
    })
    .unwrap_err();
    assert_eq!(err, BootError::NoMemoryMap);
}
