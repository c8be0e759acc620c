//! Linux bzImage: setup header checks, boot_params, page tables and the 64-bit entry state.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::builders::*;
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;
use crate::loader::layout::{CMDLINE, LINUX_BOOT_PARAMS};
use crate::loader::{
    load, AcpiConfig, BootProtocol, BootRequest, Format, GuestRamLayout, ImagePart, LoadError,
    BOOT_CS, BOOT_DS,
};

const MIB128: GuestRamLayout = GuestRamLayout::new(128 << 20);
const BP: u64 = LINUX_BOOT_PARAMS.as_u64();

fn request(kernel: &[u8]) -> BootRequest<'_> {
    BootRequest {
        kernel,
        format: Format::Auto,
        cmdline: "console=ttyS0 quiet",
        initrd: None,
        acpi: None,
    }
}

/// Walks 4-level page tables with 2 MiB leaves: (physical address, leaf flags).
fn translate(mem: &dyn GuestMemory, cr3: u64, va: u64) -> Option<(u64, u64)> {
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    let pml4e = rd64(mem, (cr3 & ADDR) + 8 * ((va >> 39) & 511));
    if pml4e & 1 == 0 {
        return None;
    }
    let pdpte = rd64(mem, (pml4e & ADDR) + 8 * ((va >> 30) & 511));
    if pdpte & 1 == 0 || pdpte & 0x80 != 0 {
        return None;
    }
    let pde = rd64(mem, (pdpte & ADDR) + 8 * ((va >> 21) & 511));
    if pde & 1 == 0 || pde & 0x80 == 0 {
        return None;
    }
    Some((
        (pde & 0x000F_FFFF_FFE0_0000) | (va & 0x1F_FFFF),
        pde & 0xFFF,
    ))
}

#[test]
fn good_bzimage_loads_at_pref_address() {
    let mem = ram(128);
    let image = BzImage::new();
    let kernel = image.build();
    let setup = load(&mem, &MIB128, &request(&kernel)).unwrap();
    assert_eq!(setup.protocol, BootProtocol::Linux64);
    assert_eq!(setup.kernel.start, GuestPhysAddr::new(0x100_0000));
    assert_eq!(setup.kernel.len, 0x40_0000);
    assert_eq!(read(&mem, 0x100_0000, image.payload.len()), image.payload);
    assert_eq!(setup.boot_info, LINUX_BOOT_PARAMS);

    let e = setup.entry;
    assert_eq!(e.rip, 0x100_0200);
    assert_eq!(e.regs.gprs[6], BP, "RSI = boot_params");
    assert_eq!(e.regs.gprs.iter().filter(|&&v| v != 0).count(), 1);
    assert_eq!(e.cr0, 0x8000_0011);
    assert_eq!(e.cr4, 0x20, "PAE");
    assert_eq!(e.efer, 0x500, "LME | LMA");
    assert_eq!(e.rflags, 0x2, "interrupts off");
    assert_eq!(
        (e.cs.selector, e.cs.access),
        (BOOT_CS, 0xA09B),
        "64-bit code"
    );
    for s in [e.ds, e.es, e.ss] {
        assert_eq!(
            (s.selector, s.base, s.limit, s.access),
            (BOOT_DS, 0, 0xFFFF_FFFF, 0xC093)
        );
    }
    assert_eq!(rd64(&mem, e.gdtr_base + 0x10), 0x00AF_9B00_0000_FFFF);
    assert_eq!(rd64(&mem, e.gdtr_base + 0x18), 0x00CF_9300_0000_FFFF);
}

#[test]
fn boot_params_decode_back() {
    let mem = ram(128);
    let kernel = BzImage::new().build();
    let initrd: Vec<u8> = (0..0x2345u32).map(|i| i as u8).collect();
    let req = BootRequest {
        initrd: Some(&initrd),
        acpi: Some(AcpiConfig {
            vcpus: 1,
            virtio_slots: &[],
        }),
        ..request(&kernel)
    };
    let setup = load(&mem, &MIB128, &req).unwrap();
    let bp = read(&mem, BP, 4096);
    let u16_at = |o: usize| u16::from_le_bytes([bp[o], bp[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bp[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bp[o..o + 8].try_into().unwrap());

    // The image's header is copied: boot_flag, HdrS, version, kernel_version, pref_address.
    assert_eq!(u16_at(0x1FE), 0xAA55);
    assert_eq!(&bp[0x202..0x206], b"HdrS");
    assert_eq!(u16_at(0x206), 0x020F);
    assert_eq!(u16_at(0x20E), 0x1234);
    assert_eq!(u64_at(0x258), 0x100_0000);
    // What the loader fills in.
    assert_eq!(bp[0x210], 0xFF, "type_of_loader");
    assert_eq!(bp[0x211] & 0x01, 0x01, "LOADED_HIGH");
    assert_eq!(u16_at(0x1FA), 0xFFFF, "vid_mode");
    assert_eq!(u32_at(0x228) as u64, CMDLINE.as_u64());
    assert_eq!(u32_at(0x0C8), 0);
    assert_eq!(read(&mem, CMDLINE.as_u64(), 20), b"console=ttyS0 quiet\0");
    let rd_image = u64::from(u32_at(0x218)) | u64::from(u32_at(0x0C0)) << 32;
    let rd_size = u64::from(u32_at(0x21C)) | u64::from(u32_at(0x0C4)) << 32;
    assert_eq!(rd_size, 0x2345);
    assert_eq!(
        rd_image,
        (128 << 20) - 0x3000,
        "page aligned at the top of RAM"
    );
    assert_eq!(read(&mem, rd_image, initrd.len()), initrd);
    assert_eq!(u64_at(0x070), setup.rsdp.unwrap().as_u64());

    let n = usize::from(bp[0x1E8]);
    let e820: Vec<(u64, u64, u32)> = (0..n)
        .map(|i| {
            let at = 0x2D0 + 20 * i;
            (u64_at(at), u64_at(at + 8), u32_at(at + 16))
        })
        .collect();
    assert_eq!(
        e820,
        [
            (0, 0xA_0000, 1),
            (0xA_0000, 0x6_0000, 2),
            (0x10_0000, (128 << 20) - 0x10_0000, 1),
            (0xC000_0000, 0x4000_0000, 2),
        ]
    );
}

#[test]
fn page_tables_identity_map_the_first_4_gib() {
    let mem = ram(128);
    let kernel = BzImage::new().build();
    let e = load(&mem, &MIB128, &request(&kernel)).unwrap().entry;
    for va in [
        0,
        BP,
        CMDLINE.as_u64(),
        0x100_0200,
        0x7FF_F000,
        0xBFFF_FFFF,
        0xFFFF_FFFF,
    ] {
        let (pa, flags) = translate(&mem, e.cr3, va).unwrap();
        assert_eq!(pa, va);
        assert_eq!(flags & 0x3, 0x3, "present and writable at {va:#x}");
    }
    // RAM is write-back, the device window uncacheable.
    assert_eq!(translate(&mem, e.cr3, 0x100_0000).unwrap().1 & 0x18, 0);
    assert_eq!(translate(&mem, e.cr3, 0xFEC0_0000).unwrap().1 & 0x18, 0x18);
    assert_eq!(translate(&mem, e.cr3, 1 << 32), None);
}

#[test]
fn setup_sects_zero_means_four() {
    let mut image = BzImage::new();
    image.setup_sects = 0;
    let kernel = image.build();
    assert_eq!(kernel.len(), 5 * 512 + image.payload.len());
    let mem = ram(128);
    load(&mem, &MIB128, &request(&kernel)).unwrap();
    assert_eq!(read(&mem, 0x100_0000, 16), image.payload[..16]);
}

#[test]
fn old_protocol_is_rejected() {
    let mut image = BzImage::new();
    image.version = 0x020B;
    let err = load(&ram(128), &MIB128, &request(&image.build())).unwrap_err();
    assert_eq!(err, LoadError::ProtocolTooOld { version: 0x020B });
    assert_eq!(
        err.to_string(),
        "loader: bzImage boot protocol 2.11 is older than 2.12, which the 64-bit entry needs"
    );
}

#[test]
fn kernel_without_64_bit_entry_is_rejected() {
    let mut image = BzImage::new();
    image.xloadflags = 0x0002;
    let err = load(&ram(128), &MIB128, &request(&image.build())).unwrap_err();
    assert_eq!(err, LoadError::Not64Bit);
}

#[test]
fn bad_boot_flag_and_short_header_are_rejected() {
    let mut image = BzImage::new();
    image.boot_flag = 0x1234;
    let err = load(&ram(128), &MIB128, &request(&image.build())).unwrap_err();
    assert_eq!(err, LoadError::BadBootFlag { found: 0x1234 });
    let mut image = BzImage::new();
    image.header_len = 0x40;
    let err = load(&ram(128), &MIB128, &request(&image.build())).unwrap_err();
    assert_eq!(err, LoadError::SetupHeaderTooShort { end: 0x242 });
}

#[test]
fn relocatable_kernel_moves_down_when_pref_address_does_not_fit() {
    let mut image = BzImage::new();
    image.init_size = 0x50_0000;
    let mem = ram(8);
    let setup = load(
        &mem,
        &GuestRamLayout::new(8 << 20),
        &request(&image.build()),
    )
    .unwrap();
    // The lowest 2 MiB-aligned address above the boot area.
    assert_eq!(setup.kernel.start, GuestPhysAddr::new(0x20_0000));
    assert_eq!(setup.entry.rip, 0x20_0200);
    image.relocatable = 0;
    let err = load(
        &mem,
        &GuestRamLayout::new(8 << 20),
        &request(&image.build()),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "loader: Linux kernel at GPA:0x1000000 needs 0x500000 bytes (init_size), which does not \
         fit in 8 MiB of guest RAM below the device window"
    );
}

#[test]
fn command_line_longer_than_cmdline_size_is_rejected() {
    let mut image = BzImage::new();
    image.cmdline_size = 8;
    let kernel = image.build();
    let req = BootRequest {
        cmdline: "console=ttyS0",
        ..request(&kernel)
    };
    assert_eq!(
        load(&ram(128), &MIB128, &req),
        Err(LoadError::CmdlineTooLong { len: 13, max: 8 })
    );
}

#[test]
fn initrd_respects_initrd_addr_max() {
    let mut image = BzImage::new();
    image.initrd_addr_max = 0x3FF_FFFF; // 64 MiB - 1
    let kernel = image.build();
    let initrd = vec![7u8; 0x1000];
    let req = BootRequest {
        initrd: Some(&initrd),
        ..request(&kernel)
    };
    let setup = load(&ram(128), &MIB128, &req).unwrap();
    assert_eq!(setup.initrd.unwrap().start, GuestPhysAddr::new(0x3FF_F000));
}

#[test]
fn initrd_too_large_is_rejected() {
    let kernel = BzImage::new().build();
    let initrd = vec![7u8; 0x800_0000];
    let req = BootRequest {
        initrd: Some(&initrd),
        ..request(&kernel)
    };
    let err = load(&ram(128), &MIB128, &req).unwrap_err();
    assert_eq!(
        err,
        LoadError::InitrdTooLarge {
            size: 0x800_0000,
            lowest: GuestPhysAddr::new(0x140_0000),
            limit: GuestPhysAddr::new(128 << 20),
        }
    );
}

#[test]
fn forced_linux_format_needs_hdrs() {
    let kernel = standard_elf().build();
    let req = BootRequest {
        format: Format::Linux,
        ..request(&kernel)
    };
    assert_eq!(load(&ram(128), &MIB128, &req), Err(LoadError::NotBzImage));
    let req = BootRequest {
        format: Format::Linux,
        ..request(&kernel[..0x100])
    };
    assert!(matches!(
        load(&ram(128), &MIB128, &req),
        Err(LoadError::Truncated {
            part: ImagePart::SetupHeader,
            ..
        })
    ));
}

#[test]
fn missing_payload_is_rejected() {
    let mut image = BzImage::new();
    image.payload.clear();
    let err = load(&ram(128), &MIB128, &request(&image.build())).unwrap_err();
    assert_eq!(
        err,
        LoadError::NoKernelPayload {
            setup_bytes: 0x800,
            image_len: 0x800
        }
    );
}

#[test]
fn truncations_and_corruptions_never_panic() {
    let kernel = BzImage::new().build();
    let mem = ram(32);
    let layout = GuestRamLayout::new(32 << 20);
    for len in (0..0x900).chain([kernel.len() - 1]) {
        let _ = load(&mem, &layout, &request(&kernel[..len]));
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        let mut bad = kernel.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = 0x1F0 + (rng.next() % 0x80) as usize;
            bad[at] = rng.next() as u8;
        }
        let _ = load(&mem, &layout, &request(&bad));
    }
}
