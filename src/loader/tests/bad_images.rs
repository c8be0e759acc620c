//! Bad images refused before any guest starts: the cases `loader::validate` must catch, the
//! committed images of the `bad-images` scenario (tests/images/bad), and the generator of those
//! images and of the loader's fuzz seeds.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::builders::*;
use crate::addr::GuestPhysAddr;
use crate::loader::{
    load, validate, AcpiConfig, BootRequest, Format, GuestRamLayout, ImagePart, LoadError,
};

fn request<'a>(kernel: &'a [u8], initrd: Option<&'a [u8]>) -> BootRequest<'a> {
    BootRequest {
        kernel,
        format: Format::Auto,
        cmdline: "console=ttyS0",
        initrd,
        acpi: Some(AcpiConfig {
            vcpus: 1,
            virtio_slots: &[],
        }),
    }
}

const MIB16: GuestRamLayout = GuestRamLayout::new(16 << 20);

/// The error `validate` gives, checked to be the one a real load into RAM gives too.
fn refused(kernel: &[u8], initrd: Option<&[u8]>, ram: GuestRamLayout) -> LoadError {
    let req = request(kernel, initrd);
    let err = validate(&ram, &req).expect_err("the image must be refused");
    let mem = crate::guest_mem::VecGuestMemory::new(GuestPhysAddr::ZERO, 16 << 20);
    if ram.size_bytes() <= 16 << 20 {
        assert_eq!(
            load(&mem, &ram, &req),
            Err(err),
            "load and validate disagree"
        );
    }
    err
}

/// Each committed bad image: file name under tests/images/bad, guest RAM, and the message.
struct BadImage {
    file: &'static str,
    ram: GuestRamLayout,
    message: &'static str,
}

const HELLO_LIKE_INITRD_RAM: GuestRamLayout = GuestRamLayout::new(2 << 20);

fn vmlinux_like() -> ElfBuilder {
    let mut notes = pvh_note(KERNEL_ENTRY);
    notes.extend(note(b"Xen\0", 6, b"linux\0"));
    ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![0x90; 0x1000], 0x1000))
        .segment(Segment::note(notes))
}

/// The images and what each must be refused with (also the `bad-images` scenario's markers).
fn bad_images() -> Vec<(BadImage, Vec<u8>)> {
    let truncated = vmlinux_like().build();
    let mut corrupt = standard_elf();
    corrupt.machine = 3;
    let mut huge = BzImage::new();
    huge.init_size = 0x4000_0000;
    let bz_truncated = BzImage::new().build();
    vec![
        (
            BadImage {
                file: "vmlinux-truncated.elf",
                ram: MIB16,
                message: "loader: ELF segment 0 data at offset 0xb0 (0x1000 bytes) runs past \
                          the end of the 0x800-byte image",
            },
            truncated[..0x800].to_vec(),
        ),
        (
            BadImage {
                file: "elf-corrupt.elf",
                ram: MIB16,
                message: "loader: ELF machine (e_machine) is 0x3, expected 62 (EM_X86_64)",
            },
            corrupt.build(),
        ),
        (
            BadImage {
                file: "elf-outside-ram.elf",
                ram: MIB16,
                message: "loader: ELF segment 3 at GPA:0x2000000 size 0x1000 does not fit in \
                          16 MiB of guest RAM",
            },
            standard_elf()
                .segment(Segment::load(32 << 20, vec![0xCC; 16], 0x1000))
                .build(),
        ),
        (
            BadImage {
                file: "elf-overlap.elf",
                ram: MIB16,
                message: "loader: ELF segments 0 and 3 overlap at GPA:0x100800: each needs its \
                          own memory",
            },
            standard_elf()
                .segment(Segment::load(KERNEL_BASE + 0x800, vec![0xCC; 16], 0x100))
                .build(),
        ),
        (
            BadImage {
                file: "elf-entry-outside.elf",
                ram: MIB16,
                message: "loader: PVH entry point 0x8000000 is not inside any loaded segment",
            },
            ElfBuilder::new()
                .segment(Segment::load(KERNEL_BASE, vec![0x90; 0x100], 0x100))
                .segment(Segment::note(pvh_note(0x800_0000)))
                .build(),
        ),
        (
            BadImage {
                file: "bzimage-truncated",
                ram: MIB16,
                message: "loader: bzImage protected-mode kernel (syssize) at offset 0x800 \
                          (0x3000 bytes) runs past the end of the 0x1800-byte image",
            },
            bz_truncated[..0x1800].to_vec(),
        ),
        (
            BadImage {
                file: "bzimage-huge",
                ram: MIB16,
                message: "loader: Linux kernel at GPA:0x1000000 needs 0x40000000 bytes \
                          (init_size), which does not fit in 16 MiB of guest RAM below the \
                          device window",
            },
            huge.build(),
        ),
    ]
}

#[test]
fn every_bad_image_is_refused_with_its_message() {
    for (bad, bytes) in bad_images() {
        let err = refused(&bytes, None, bad.ram);
        assert_eq!(err.to_string(), bad.message, "{}", bad.file);
    }
}

#[test]
fn committed_bad_images_match_their_generator() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/bad");
    for (bad, bytes) in bad_images() {
        let path = dir.join(bad.file);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == bytes,
            "{} is stale: run the ignored generator",
            bad.file
        );
    }
    let initrd = std::fs::read(dir.join("initrd-1m.img")).unwrap();
    assert_eq!(initrd.len(), 1 << 20);
    let err = refused(
        &standard_elf().build(),
        Some(&initrd),
        HELLO_LIKE_INITRD_RAM,
    );
    assert!(
        matches!(
            err,
            LoadError::InitrdTooLarge {
                size: 0x10_0000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn overlapping_segments_are_refused_whatever_their_order() {
    // Inside segment 0, across the end of segment 1's bss, and exactly on segment 0.
    let cases = [
        (KERNEL_BASE + 0x100, 0x10, (0, 3)),
        (KERNEL_BASE + 0x2000 + 0x3000, 0x1000, (1, 3)),
        (KERNEL_BASE, 0x1000, (0, 3)),
    ];
    for (paddr, memsz, (first, second)) in cases {
        let b = standard_elf().segment(Segment::load(paddr, vec![], memsz));
        let err = refused(&b.build(), None, MIB16);
        assert!(
            matches!(err, LoadError::SegmentsOverlap { first: f, second: s, .. } if (f, s) == (first, second)),
            "{paddr:#x}: {err}"
        );
    }
    let long_first = ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![0x90; 0x10], 0x10_0000))
        .segment(Segment::load(KERNEL_BASE + 0x8000, vec![1; 0x10], 0x10))
        .segment(Segment::note(pvh_note(KERNEL_ENTRY)));
    assert_eq!(
        refused(&long_first.build(), None, MIB16),
        LoadError::SegmentsOverlap {
            first: 0,
            second: 1,
            gpa: GuestPhysAddr::new(KERNEL_BASE + 0x8000)
        }
    );
    // Touching is not overlapping.
    let adjacent = standard_elf().segment(Segment::load(KERNEL_BASE + 0x1000, vec![2; 4], 0x1000));
    assert!(validate(&MIB16, &request(&adjacent.build(), None)).is_ok());
}

#[test]
fn bzimage_header_cut_short_is_refused() {
    let image = BzImage::new().build();
    assert_eq!(
        refused(&image[..0x240], None, MIB16).to_string(),
        "loader: bzImage setup header at offset 0x1f1 (0x7b bytes) runs past the end of the \
         0x240-byte image"
    );
}

#[test]
fn bzimage_without_room_for_its_64_bit_entry_is_refused() {
    let mut image = BzImage::new();
    image.payload.truncate(0x200);
    let err = refused(&image.build(), None, MIB16);
    assert_eq!(
        err,
        LoadError::NoEntry64 {
            payload_offset: 0x800,
            payload_len: 0x200
        }
    );
    assert!(err
        .to_string()
        .contains("64-bit entry point (at +0x200) is missing"));
    image.payload.push(0x90);
    assert!(validate(&MIB16, &request(&image.build(), None)).is_ok());
}

#[test]
fn kernel_too_large_for_ram_is_refused_even_when_relocatable() {
    for relocatable in [0, 1] {
        let mut image = BzImage::new();
        image.relocatable = relocatable;
        image.init_size = 15 << 20;
        let err = refused(&image.build(), None, MIB16);
        assert!(matches!(err, LoadError::KernelDoesNotFit { .. }), "{err}");
    }
}

#[test]
fn initrd_larger_than_all_of_ram_is_refused() {
    let initrd = vec![0u8; 3 << 20];
    let err = refused(
        &standard_elf().build(),
        Some(&initrd),
        GuestRamLayout::new(2 << 20),
    );
    assert_eq!(
        err,
        LoadError::InitrdTooLarge {
            size: 3 << 20,
            lowest: GuestPhysAddr::new(KERNEL_BASE + 0x5100),
            limit: GuestPhysAddr::new(2 << 20)
        }
    );
}

#[test]
fn validate_accepts_what_load_accepts_and_reports_the_same_placement() {
    let kernel = standard_elf().build();
    let initrd = vec![7u8; 0x3000];
    let req = request(&kernel, Some(&initrd));
    let mem = ram(16);
    assert_eq!(validate(&MIB16, &req), load(&mem, &MIB16, &req));
    // Far more RAM than the host test could allocate: validation needs none.
    let big = GuestRamLayout::new(64 << 30);
    let setup = validate(&big, &req).unwrap();
    assert!(setup.initrd.is_some_and(|r| r.end() <= 3 << 30));
}

#[test]
fn truncation_at_every_offset_is_refused_or_loads_fully() {
    for kernel in [vmlinux_like().build(), BzImage::new().build()] {
        for len in 0..kernel.len() {
            let _ = validate(&MIB16, &request(&kernel[..len], None));
        }
        let err = validate(&MIB16, &request(&kernel[..kernel.len() / 2], None)).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::Truncated {
                    part: ImagePart::SegmentData(0) | ImagePart::Payload,
                    ..
                }
            ),
            "{err}"
        );
    }
}

/// Writes tests/images/bad and the loader's fuzz seeds:
/// `cargo test --lib loader::tests::bad_images::write_images_and_seeds -- --ignored`.
#[test]
#[ignore = "regenerates committed files"]
fn write_images_and_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let write = |rel: &str, bytes: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    };
    for (bad, bytes) in bad_images() {
        write(&alloc::format!("tests/images/bad/{}", bad.file), &bytes);
    }
    write("tests/images/bad/initrd-1m.img", &vec![0u8; 1 << 20]);
    // Fuzz inputs start with RAM choice and initrd size (see loader::fuzzing).
    let seed = |ram_choice: u8, initrd_units: u16, image: &[u8]| {
        let mut s = vec![ram_choice];
        s.extend_from_slice(&initrd_units.to_le_bytes());
        s.extend_from_slice(image);
        s
    };
    let elf_seeds = [
        ("standard", standard_elf().build()),
        ("vmlinux-like", vmlinux_like().build()),
        ("two-segments-high", {
            let b = standard_elf().segment(Segment::load(4 << 30, vec![3; 8], 0x2000));
            b.build()
        }),
    ];
    for (i, (name, image)) in elf_seeds.iter().enumerate() {
        write(
            &alloc::format!("fuzz/corpus/elf/{name}"),
            &seed(i as u8 * 3, 0x100, image),
        );
    }
    let mut note_section =
        ElfBuilder::new().segment(Segment::load(KERNEL_BASE, vec![0x90; 0x40], 0x40));
    note_section.note_section = Some(pvh_note(KERNEL_ENTRY));
    write(
        "fuzz/corpus/elf/note-section",
        &seed(1, 0, &note_section.build()),
    );
    let mut small = BzImage::new();
    small.payload.truncate(0x400);
    let mut fixed = BzImage::new();
    fixed.relocatable = 0;
    fixed.setup_sects = 0;
    fixed.payload.truncate(0x300);
    for (name, image, ram_choice) in [("relocatable", small, 3u8), ("fixed", fixed, 1)] {
        write(
            &alloc::format!("fuzz/corpus/bzimage/{name}"),
            &seed(ram_choice, 0x40, &image.build()),
        );
    }
    write("fuzz/corpus/acpi/one-vcpu", &[1, 0]);
    write("fuzz/corpus/acpi/four-vcpus-three-slots", &[4, 0, 0, 1, 2]);
    write(
        "fuzz/corpus/acpi/all-slots",
        &[2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    );
}
