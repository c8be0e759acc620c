//! ELF64 + PVH: segments, notes, start_info and the 32-bit entry state.

use alloc::string::ToString;
use alloc::vec;

use super::builders::*;
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;
use crate::loader::layout::{CMDLINE, PVH_MEMMAP, PVH_MODLIST, PVH_START_INFO};
use crate::loader::{
    load, AcpiConfig, BootProtocol, BootRequest, Format, GuestRamLayout, ImagePart, LoadError,
    BOOT_CS, BOOT_DS, BOOT_TSS, START_INFO_MAGIC,
};

fn request(kernel: &[u8]) -> BootRequest<'_> {
    BootRequest {
        kernel,
        format: Format::Auto,
        cmdline: "console=ttyS0",
        initrd: None,
        acpi: None,
    }
}

const MIB16: GuestRamLayout = GuestRamLayout::new(16 << 20);

#[test]
fn good_elf_loads_at_paddr_and_zeroes_bss() {
    let mem = ram(16);
    // Stale data where the bss goes, as after a guest restart.
    mem.fill(GuestPhysAddr::new(KERNEL_BASE + 0x2000), 0x3100, 0xAA)
        .unwrap();
    let kernel = standard_elf().build();
    let setup = load(&mem, &MIB16, &request(&kernel)).unwrap();

    assert_eq!(read(&mem, KERNEL_BASE, 0x1000), vec![0x90; 0x1000]);
    assert_eq!(read(&mem, KERNEL_BASE + 0x2000, 0x100), vec![0x11; 0x100]);
    assert_eq!(read(&mem, KERNEL_BASE + 0x2100, 0x3000), vec![0; 0x3000]);
    assert_eq!(setup.protocol, BootProtocol::Pvh);
    assert_eq!(setup.kernel.start, GuestPhysAddr::new(KERNEL_BASE));
    assert_eq!(setup.kernel.end(), KERNEL_BASE + 0x5100);
    assert_eq!(setup.boot_info, PVH_START_INFO);
    assert_eq!(setup.rsdp, None);
}

#[test]
fn pvh_entry_state_follows_the_contract() {
    let mem = ram(16);
    let kernel = standard_elf().build();
    let e = load(&mem, &MIB16, &request(&kernel)).unwrap().entry;
    assert_eq!(e.rip, u64::from(KERNEL_ENTRY));
    assert_eq!(e.regs.gprs[3], PVH_START_INFO.as_u64(), "EBX = start_info");
    for (i, v) in e.regs.gprs.iter().enumerate() {
        if i != 3 {
            assert_eq!(*v, 0, "GPR {i}");
        }
    }
    assert_eq!(e.cr0, 0x11);
    assert_eq!((e.cr3, e.cr4, e.efer), (0, 0, 0));
    assert_eq!(e.rflags, 0x2);
    assert_eq!(
        (e.cs.selector, e.cs.base, e.cs.limit, e.cs.access),
        (BOOT_CS, 0, 0xFFFF_FFFF, 0xC09B)
    );
    for s in [e.ds, e.es, e.ss, e.fs, e.gs] {
        assert_eq!(
            (s.selector, s.base, s.limit, s.access),
            (BOOT_DS, 0, 0xFFFF_FFFF, 0xC093)
        );
    }
    assert_eq!(
        (e.tr.selector, e.tr.base, e.tr.limit, e.tr.access),
        (BOOT_TSS, 0, 0x67, 0x8B)
    );
    // The GDT in memory matches the hidden state.
    let gdt = e.gdtr_base;
    assert_eq!(rd64(&mem, gdt + u64::from(BOOT_CS)), 0x00CF_9B00_0000_FFFF);
    assert_eq!(rd64(&mem, gdt + u64::from(BOOT_DS)), 0x00CF_9300_0000_FFFF);
    assert_eq!(rd64(&mem, gdt + u64::from(BOOT_TSS)), 0x0000_8B00_0000_0067);
    assert!(u64::from(e.gdtr_limit) >= u64::from(BOOT_TSS) + 7);
}

#[test]
fn start_info_decodes_back() {
    let mem = ram(64);
    let kernel = standard_elf().build();
    let initrd = vec![0x5A; 0x1800];
    let slots = [0, 3];
    let req = BootRequest {
        initrd: Some(&initrd),
        acpi: Some(AcpiConfig {
            vcpus: 2,
            virtio_slots: &slots,
        }),
        ..request(&kernel)
    };
    let setup = load(&mem, &GuestRamLayout::new(64 << 20), &req).unwrap();
    let si = PVH_START_INFO.as_u64();
    assert_eq!(rd32(&mem, si), START_INFO_MAGIC);
    assert_eq!(rd32(&mem, si + 4), 1, "version");
    assert_eq!(rd32(&mem, si + 8), 0, "flags");
    assert_eq!(rd32(&mem, si + 12), 1, "nr_modules");
    assert_eq!(rd64(&mem, si + 16), PVH_MODLIST.as_u64());
    assert_eq!(rd64(&mem, si + 24), CMDLINE.as_u64());
    assert_eq!(rd64(&mem, si + 32), setup.rsdp.unwrap().as_u64());
    assert_eq!(rd64(&mem, si + 40), PVH_MEMMAP.as_u64());
    assert_eq!(rd32(&mem, si + 52), 0, "reserved");
    assert_eq!(read(&mem, CMDLINE.as_u64(), 14), b"console=ttyS0\0");

    // Module 0 is the initrd, placed page-aligned at the top of RAM.
    let initrd_at = rd64(&mem, PVH_MODLIST.as_u64());
    assert_eq!(rd64(&mem, PVH_MODLIST.as_u64() + 8), 0x1800);
    assert_eq!(initrd_at, (64 << 20) - 0x2000);
    assert_eq!(read(&mem, initrd_at, 0x1800), initrd);
    assert_eq!(setup.initrd.unwrap().start.as_u64(), initrd_at);

    let entries = rd32(&mem, si + 48) as u64;
    let map: alloc::vec::Vec<(u64, u64, u32)> = (0..entries)
        .map(|i| {
            let e = PVH_MEMMAP.as_u64() + 24 * i;
            (rd64(&mem, e), rd64(&mem, e + 8), rd32(&mem, e + 16))
        })
        .collect();
    assert_eq!(
        map,
        [
            (0, 0xA_0000, 1),
            (0xA_0000, 0x6_0000, 2),
            (0x10_0000, (64 << 20) - 0x10_0000, 1),
            (0xC000_0000, 0x4000_0000, 2),
        ]
    );
}

#[test]
fn high_ram_appears_in_the_memory_map() {
    // Validation and the map need no backing beyond what is written.
    let mem = ram(16);
    let kernel = standard_elf().build();
    let layout = GuestRamLayout::new(4 << 30);
    let req = BootRequest {
        initrd: None,
        ..request(&kernel)
    };
    // Writes to the top of RAM would fail, but without an initrd nothing goes there.
    load(&mem, &layout, &req).unwrap();
    let entries = rd32(&mem, PVH_START_INFO.as_u64() + 48) as u64;
    let last = PVH_MEMMAP.as_u64() + 24 * (entries - 1);
    assert_eq!(rd64(&mem, last), 1 << 32);
    assert_eq!(rd64(&mem, last + 8), 1 << 30);
    assert_eq!(rd32(&mem, last + 16), 1);
    let low_ram = PVH_MEMMAP.as_u64() + 24 * 2;
    assert_eq!(rd64(&mem, low_ram + 8), 0xC000_0000 - 0x10_0000);
}

#[test]
fn note_in_a_section_is_found() {
    let mut b = ElfBuilder::new().segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100));
    b.note_section = Some(pvh_note(KERNEL_BASE as u32 + 4));
    let setup = load(&ram(16), &MIB16, &request(&b.build())).unwrap();
    assert_eq!(setup.entry.rip, KERNEL_BASE + 4);
}

#[test]
fn other_notes_are_skipped_and_eight_byte_descriptors_accepted() {
    let mut notes = note(b"GNU\0", 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    notes.extend(note(b"Xen\0", 5, b"linux\0"));
    notes.extend(note(b"Xen\0", 18, &(KERNEL_BASE + 8).to_le_bytes()));
    let b = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100))
        .segment(Segment::note(notes));
    let setup = load(&ram(16), &MIB16, &request(&b.build())).unwrap();
    assert_eq!(setup.entry.rip, KERNEL_BASE + 8);
}

#[test]
fn missing_pvh_note_is_an_error() {
    let b = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100))
        .segment(Segment::note(note(b"GNU\0", 18, &[0; 4])));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(err, LoadError::PvhNoteMissing);
    assert!(err.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"));
}

#[test]
fn pvh_note_with_a_64_bit_address_is_rejected() {
    let b = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100))
        .segment(Segment::note(note(
            b"Xen\0",
            18,
            &(1u64 << 32).to_le_bytes(),
        )));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(
        err,
        LoadError::PvhNoteBadDesc {
            descsz: 8,
            value: 1 << 32
        }
    );
}

#[test]
fn note_running_past_its_segment_is_rejected() {
    let mut notes = pvh_note(KERNEL_ENTRY);
    notes[0..4].copy_from_slice(&0x100u32.to_le_bytes()); // namesz beyond the 20-byte segment
    let b = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100))
        .segment(Segment::note(notes));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert!(matches!(
        err,
        LoadError::MalformedNote {
            part: ImagePart::NoteSegment(1),
            ..
        }
    ));
    assert!(err
        .to_string()
        .starts_with("loader: ELF note segment 1 has a note at offset 0x"));
}

#[test]
fn entry_outside_the_segments_is_rejected() {
    let b = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![1; 0x100], 0x100))
        .segment(Segment::note(pvh_note(0x20_0000)));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(err, LoadError::PvhEntryOutsideSegments { entry: 0x20_0000 });
}

#[test]
fn truncated_header_is_an_error() {
    let kernel = standard_elf().build();
    let err = load(&ram(16), &MIB16, &request(&kernel[..40])).unwrap_err();
    assert_eq!(
        err,
        LoadError::Truncated {
            part: ImagePart::ElfHeader,
            offset: 0,
            len: 64,
            image_len: 40
        }
    );
    assert_eq!(
        err.to_string(),
        "loader: ELF header at offset 0x0 (0x40 bytes) runs past the end of the 0x28-byte image"
    );
    let err = load(&ram(16), &MIB16, &request(&kernel[..100])).unwrap_err();
    assert!(matches!(
        err,
        LoadError::Truncated {
            part: ImagePart::ProgramHeader(0),
            ..
        }
    ));
}

#[test]
fn segment_data_past_the_file_is_an_error() {
    let mut kernel = standard_elf().build();
    // Program header 1's p_filesz (offset 64 + 56 + 32).
    kernel[64 + 56 + 32..64 + 56 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
    kernel[64 + 56 + 40..64 + 56 + 48].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let err = load(&ram(16), &MIB16, &request(&kernel)).unwrap_err();
    assert!(matches!(
        err,
        LoadError::Truncated {
            part: ImagePart::SegmentData(1),
            ..
        }
    ));
}

#[test]
fn segment_beyond_ram_is_an_error() {
    let b = standard_elf().segment(Segment::load(15 << 20, vec![], 2 << 20));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "loader: ELF segment 3 at GPA:0xf00000 size 0x200000 does not fit in 16 MiB of guest RAM"
    );
}

#[test]
fn segment_in_the_device_window_is_an_error() {
    let b = standard_elf().segment(Segment::load(0xBFFF_F000, vec![], 0x2000));
    let err = load(
        &ram(16),
        &GuestRamLayout::new(8 << 30),
        &request(&b.build()),
    )
    .unwrap_err();
    assert_eq!(
        err,
        LoadError::SegmentInDeviceWindow {
            index: 3,
            gpa: GuestPhysAddr::new(0xBFFF_F000),
            size: 0x2000
        }
    );
    assert!(err
        .to_string()
        .contains("device window GPA:0xc0000000–GPA:0x100000000"));
}

#[test]
fn segment_in_the_boot_area_is_an_error() {
    let b = ElfBuilder::new()
        .segment(Segment::load(0x8000, vec![1; 0x10], 0x10))
        .segment(Segment::note(pvh_note(0x8000)));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert!(matches!(err, LoadError::SegmentInBootArea { index: 0, .. }));
}

#[test]
fn wrapping_segment_is_an_error() {
    let b = standard_elf().segment(Segment::load(u64::MAX - 0xFFF, vec![], 0x2000));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert!(matches!(err, LoadError::SegmentOverflows { index: 3, .. }));
}

#[test]
fn file_size_above_memory_size_is_an_error() {
    let b = standard_elf().segment(Segment::load(0x20_0000, vec![1; 0x20], 0x10));
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(
        err,
        LoadError::SegmentFileExceedsMem {
            index: 3,
            filesz: 0x20,
            memsz: 0x10
        }
    );
}

#[test]
fn foreign_elf_files_are_rejected() {
    let mut b = standard_elf();
    b.machine = 3;
    let err = load(&ram(16), &MIB16, &request(&b.build())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "loader: ELF machine (e_machine) is 0x3, expected 62 (EM_X86_64)"
    );
    let mut b = standard_elf();
    b.class = 1;
    assert!(matches!(
        load(&ram(16), &MIB16, &request(&b.build())),
        Err(LoadError::ElfUnsupported {
            field: "class (EI_CLASS)",
            ..
        })
    ));
    let mut b = standard_elf();
    b.e_type = 3;
    assert!(matches!(
        load(&ram(16), &MIB16, &request(&b.build())),
        Err(LoadError::ElfUnsupported {
            field: "type (e_type)",
            ..
        })
    ));
    let b = ElfBuilder::new().segment(Segment::note(pvh_note(KERNEL_ENTRY)));
    assert_eq!(
        load(&ram(16), &MIB16, &request(&b.build())),
        Err(LoadError::ElfNoLoadSegments)
    );
}

#[test]
fn initrd_too_large_is_an_error() {
    let kernel = standard_elf().build();
    let initrd = vec![0u8; 15 << 20];
    let req = BootRequest {
        initrd: Some(&initrd),
        ..request(&kernel)
    };
    let err = load(&ram(16), &MIB16, &req).unwrap_err();
    assert_eq!(
        err.to_string(),
        "loader: initrd of 0xf00000 bytes does not fit between the kernel's end at \
         GPA:0x105100 and GPA:0x1000000"
    );
}

#[test]
fn command_line_limits() {
    let kernel = standard_elf().build();
    let long = "x".repeat(crate::loader::CMDLINE_MAX_LEN + 1);
    let req = BootRequest {
        cmdline: &long,
        ..request(&kernel)
    };
    assert_eq!(
        load(&ram(16), &MIB16, &req),
        Err(LoadError::CmdlineTooLong {
            len: 0x10000,
            max: 0xFFFF
        })
    );
    let req = BootRequest {
        cmdline: "a\0b",
        ..request(&kernel)
    };
    assert_eq!(
        load(&ram(16), &MIB16, &req),
        Err(LoadError::CmdlineHasNul { offset: 1 })
    );
}

#[test]
fn tiny_ram_and_unknown_formats_are_errors() {
    let kernel = standard_elf().build();
    assert!(matches!(
        load(&ram(1), &GuestRamLayout::new(1 << 20), &request(&kernel)),
        Err(LoadError::RamTooSmall { .. })
    ));
    assert_eq!(
        load(&ram(16), &MIB16, &request(&[0u8; 0x1000])),
        Err(LoadError::UnknownFormat)
    );
    let req = BootRequest {
        format: Format::Elf,
        ..request(&[0u8; 0x1000])
    };
    assert_eq!(load(&ram(16), &MIB16, &req), Err(LoadError::NotElf));
}

#[test]
fn truncations_and_corruptions_never_panic() {
    let kernel = {
        let mut b = standard_elf();
        b.note_section = Some(pvh_note(KERNEL_ENTRY));
        b.build()
    };
    let mem = ram(16);
    for len in 0..kernel.len() {
        // A shorter image may still load if only trailing data is cut; it must never panic.
        let _ = load(&mem, &MIB16, &request(&kernel[..len]));
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..2000 {
        let mut bad = kernel.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() % 0x200) as usize % bad.len();
            bad[at] = rng.next() as u8;
        }
        let _ = load(&mem, &MIB16, &request(&bad));
    }
}

#[test]
fn linux_is_recognised_by_its_guest_os_note_or_bzimage_header() {
    let mut notes = pvh_note(KERNEL_ENTRY);
    notes.extend(note(b"Xen\0", 6, b"linux\0"));
    let vmlinux = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![0x90; 0x1000], 0x1000))
        .segment(Segment::note(notes))
        .build();
    assert!(crate::loader::is_linux(&vmlinux));
    assert!(
        !crate::loader::is_linux(&standard_elf().build()),
        "a test guest is not Linux"
    );
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    assert!(crate::loader::is_linux(&bz));
    assert!(
        !crate::loader::is_linux(b"\x7fELF"),
        "a truncated image is not Linux"
    );
}
