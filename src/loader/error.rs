//! What can go wrong while loading a guest, said precisely enough to fix the image or manifest.

use core::fmt;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemError;

use super::acpi::AcpiError;

/// A part of a kernel image, for saying where an image is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePart {
    ElfHeader,
    ProgramHeader(u16),
    SectionHeader(u16),
    /// The file bytes of program header `n`'s segment.
    SegmentData(u16),
    /// The notes of PT_NOTE program header `n`.
    NoteSegment(u16),
    /// The notes of SHT_NOTE section `n`.
    NoteSection(u16),
    /// The bzImage setup header (offsets 0x1F1 up to its declared end).
    SetupHeader,
    /// The bzImage real-mode setup sectors.
    SetupCode,
    /// The bzImage protected-mode kernel (after the setup sectors), as long as syssize says.
    Payload,
}

impl fmt::Display for ImagePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ElfHeader => f.write_str("ELF header"),
            Self::ProgramHeader(n) => write!(f, "ELF program header {n}"),
            Self::SectionHeader(n) => write!(f, "ELF section header {n}"),
            Self::SegmentData(n) => write!(f, "ELF segment {n} data"),
            Self::NoteSegment(n) => write!(f, "ELF note segment {n}"),
            Self::NoteSection(n) => write!(f, "ELF note section {n}"),
            Self::SetupHeader => f.write_str("bzImage setup header"),
            Self::SetupCode => f.write_str("bzImage setup sectors"),
            Self::Payload => f.write_str("bzImage protected-mode kernel (syssize)"),
        }
    }
}

/// A byte count printed the way people think of RAM sizes ("128 MiB", "4 KiB", "0x1234 bytes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        match self.0 {
            0 => f.write_str("0 bytes"),
            n if n % GIB == 0 => write!(f, "{} GiB", n / GIB),
            n if n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n:#x} bytes"),
        }
    }
}

/// Why a kernel could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// `Format::Auto` found neither the ELF magic nor a bzImage header.
    UnknownFormat,
    /// A structure runs past the end of the image.
    Truncated {
        part: ImagePart,
        offset: u64,
        len: u64,
        image_len: u64,
    },
    /// The image does not start with `\x7fELF`.
    NotElf,
    /// An ELF header field has a value this loader does not accept.
    ElfUnsupported {
        field: &'static str,
        value: u64,
        expected: &'static str,
    },
    /// No PT_LOAD segment with a nonzero memory size.
    ElfNoLoadSegments,
    /// A segment has more file bytes than memory bytes.
    SegmentFileExceedsMem { index: u16, filesz: u64, memsz: u64 },
    /// A segment's physical range wraps around the address space.
    SegmentOverflows {
        index: u16,
        gpa: GuestPhysAddr,
        size: u64,
    },
    /// A segment overlaps the low memory where the loader puts its boot structures.
    SegmentInBootArea {
        index: u16,
        gpa: GuestPhysAddr,
        size: u64,
    },
    /// A segment overlaps the device window, which is never RAM.
    SegmentInDeviceWindow {
        index: u16,
        gpa: GuestPhysAddr,
        size: u64,
    },
    /// A segment ends beyond the guest's RAM.
    SegmentOutsideRam {
        index: u16,
        gpa: GuestPhysAddr,
        size: u64,
        ram_size: u64,
    },
    /// Two PT_LOAD segments share guest memory, starting at `gpa`.
    SegmentsOverlap {
        first: u16,
        second: u16,
        gpa: GuestPhysAddr,
    },
    /// A note's name or descriptor runs past the end of its segment or section.
    MalformedNote { part: ImagePart, offset: u64 },
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note in any PT_NOTE segment or SHT_NOTE section.
    PvhNoteMissing,
    /// The PVH note's descriptor is not a 32-bit address.
    PvhNoteBadDesc { descsz: u32, value: u64 },
    /// The PVH entry point is not inside any loaded segment.
    PvhEntryOutsideSegments { entry: u64 },
    /// The image has no "HdrS" signature at 0x202.
    NotBzImage,
    /// The setup header's boot_flag is not 0xAA55.
    BadBootFlag { found: u16 },
    /// Boot protocol older than 2.12 (no 64-bit entry, no xloadflags).
    ProtocolTooOld { version: u16 },
    /// The setup header ends before the fields protocol 2.12 guarantees.
    SetupHeaderTooShort { end: u64 },
    /// xloadflags lacks XLF_KERNEL_64.
    Not64Bit,
    /// kernel_alignment is not a power of two.
    BadKernelAlignment { align: u32 },
    /// The setup sectors leave no protected-mode kernel.
    NoKernelPayload { setup_bytes: u64, image_len: u64 },
    /// The protected-mode kernel ends before its 64-bit entry point (0x200 into it).
    NoEntry64 {
        payload_offset: u64,
        payload_len: u64,
    },
    /// The kernel (with its init_size) does not fit in RAM below the device window.
    KernelDoesNotFit {
        gpa: GuestPhysAddr,
        size: u64,
        ram_size: u64,
    },
    /// The command line is longer than the kernel or the loader accepts.
    CmdlineTooLong { len: usize, max: usize },
    /// The command line contains a NUL byte, which would cut it short.
    CmdlineHasNul { offset: usize },
    /// No room for the initrd between the kernel's end and the highest address it may use.
    InitrdTooLarge {
        size: u64,
        lowest: GuestPhysAddr,
        limit: GuestPhysAddr,
    },
    /// The guest has less RAM than the loader's fixed layout needs.
    RamTooSmall { ram_size: u64, min: u64 },
    /// Building the guest ACPI tables failed.
    Acpi(AcpiError),
    /// Writing a boot structure into guest RAM failed (the RAM is smaller than described).
    GuestWrite {
        what: &'static str,
        err: GuestMemError,
    },
}

impl From<AcpiError> for LoadError {
    fn from(e: AcpiError) -> Self {
        Self::Acpi(e)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loader: ")?;
        match *self {
            Self::UnknownFormat => f.write_str(
                "kernel image is neither ELF (no \\x7fELF at 0) nor a Linux bzImage (no HdrS at 0x202)",
            ),
            Self::Truncated { part, offset, len, image_len } => write!(
                f,
                "{part} at offset {offset:#x} ({len:#x} bytes) runs past the end of the \
                 {image_len:#x}-byte image"
            ),
            Self::NotElf => f.write_str("kernel image does not start with the ELF magic \\x7fELF"),
            Self::ElfUnsupported { field, value, expected } => {
                write!(f, "ELF {field} is {value:#x}, expected {expected}")
            }
            Self::ElfNoLoadSegments => f.write_str("ELF image has no PT_LOAD segment to load"),
            Self::SegmentFileExceedsMem { index, filesz, memsz } => write!(
                f,
                "ELF segment {index} has file size {filesz:#x} larger than its memory size {memsz:#x}"
            ),
            Self::SegmentOverflows { index, gpa, size } => write!(
                f,
                "ELF segment {index} at {gpa} size {size:#x} wraps around the address space"
            ),
            Self::SegmentInBootArea { index, gpa, size } => write!(
                f,
                "ELF segment {index} at {gpa} size {size:#x} overlaps the loader's boot data below {}",
                super::layout::BOOT_AREA_END
            ),
            Self::SegmentInDeviceWindow { index, gpa, size } => write!(
                f,
                "ELF segment {index} at {gpa} size {size:#x} overlaps the device window {}–{}",
                crate::layout::LOW_RAM_END,
                crate::layout::HIGH_RAM_START
            ),
            Self::SegmentOutsideRam { index, gpa, size, ram_size } => write!(
                f,
                "ELF segment {index} at {gpa} size {size:#x} does not fit in {} of guest RAM",
                Size(ram_size)
            ),
            Self::SegmentsOverlap { first, second, gpa } => write!(
                f,
                "ELF segments {first} and {second} overlap at {gpa}: each needs its own memory"
            ),
            Self::MalformedNote { part, offset } => write!(
                f,
                "{part} has a note at offset {offset:#x} whose name or descriptor runs past \
                 the end of the notes"
            ),
            Self::PvhNoteMissing => f.write_str(
                "ELF image has no XEN_ELFNOTE_PHYS32_ENTRY note (type 18, name \"Xen\"), \
                 so it has no PVH entry point",
            ),
            Self::PvhNoteBadDesc { descsz, value } => write!(
                f,
                "PVH entry note has a {descsz}-byte descriptor with value {value:#x}, \
                 expected a 32-bit physical address"
            ),
            Self::PvhEntryOutsideSegments { entry } => {
                write!(f, "PVH entry point {entry:#x} is not inside any loaded segment")
            }
            Self::NotBzImage => f.write_str("kernel image has no Linux setup header (HdrS at 0x202)"),
            Self::BadBootFlag { found } => {
                write!(f, "bzImage boot_flag at 0x1fe is {found:#06x}, expected 0xaa55")
            }
            Self::ProtocolTooOld { version } => write!(
                f,
                "bzImage boot protocol {}.{:02} is older than 2.12, which the 64-bit entry needs",
                version >> 8,
                version & 0xff
            ),
            Self::SetupHeaderTooShort { end } => write!(
                f,
                "bzImage setup header ends at {end:#x}, before init_size at 0x260"
            ),
            Self::Not64Bit => f.write_str(
                "bzImage xloadflags lacks XLF_KERNEL_64: the kernel has no 64-bit entry point",
            ),
            Self::BadKernelAlignment { align } => {
                write!(f, "bzImage kernel_alignment {align:#x} is not a power of two")
            }
            Self::NoKernelPayload { setup_bytes, image_len } => write!(
                f,
                "bzImage setup sectors ({setup_bytes:#x} bytes) leave no kernel in the \
                 {image_len:#x}-byte image"
            ),
            Self::NoEntry64 { payload_offset, payload_len } => write!(
                f,
                "bzImage protected-mode kernel at offset {payload_offset:#x} is only \
                 {payload_len:#x} bytes, so its 64-bit entry point (at +0x200) is missing"
            ),
            Self::KernelDoesNotFit { gpa, size, ram_size } => write!(
                f,
                "Linux kernel at {gpa} needs {size:#x} bytes (init_size), which does not fit in \
                 {} of guest RAM below the device window",
                Size(ram_size)
            ),
            Self::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes is longer than the {max} allowed")
            }
            Self::CmdlineHasNul { offset } => {
                write!(f, "command line has a NUL byte at offset {offset}")
            }
            Self::InitrdTooLarge { size, lowest, limit } => write!(
                f,
                "initrd of {size:#x} bytes does not fit between the kernel's end at {lowest} \
                 and {limit}"
            ),
            Self::RamTooSmall { ram_size, min } => write!(
                f,
                "guest RAM of {} is smaller than the {} the boot layout needs",
                Size(ram_size),
                Size(min)
            ),
            Self::Acpi(e) => write!(f, "{e}"),
            Self::GuestWrite { what, err } => write!(f, "cannot write the {what}: {err}"),
        }
    }
}

/// Wraps a guest-memory failure with the name of the structure being written.
pub(crate) fn write_err(what: &'static str) -> impl Fn(GuestMemError) -> LoadError {
    move |err| LoadError::GuestWrite { what, err }
}
