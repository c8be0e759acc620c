//! ELF64 parsing for guest kernels: the file header, PT_LOAD segments and the PVH entry note.
//!
//! Field offsets follow the System V gABI (ELF-64 Object File Format, version 1.5) and its
//! x86-64 supplement. Every offset and size comes from the untrusted image and is checked.

use alloc::vec::Vec;

use crate::addr::GuestPhysAddr;
use crate::layout::{HIGH_RAM_START, LOW_RAM_END};

use super::error::{ImagePart, LoadError};
use super::image::Image;
use super::layout::{GuestRamLayout, GuestRange, BOOT_AREA_END};

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u16 = 56;
const SHDR_SIZE: u16 = 64;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
/// e_phnum value meaning "the count is in section 0" (gABI "Extended numbering").
const PN_XNUM: u16 = 0xFFFF;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;

/// Xen `public/elfnote.h`: the 32-bit physical entry point of a PVH kernel.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_ELFNOTE_GUEST_OS`: the kernel's name (Xen's elfnote.h).
const XEN_ELFNOTE_GUEST_OS: u32 = 6;
const XEN_NOTE_NAME: &[u8] = b"Xen";
/// namesz, descsz, type.
const NOTE_HEADER_SIZE: u64 = 12;

/// Whether `bytes` starts with the ELF magic.
pub(crate) fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(&ELF_MAGIC)
}

/// The fields of one program header the loader uses.
#[derive(Clone, Copy, Debug)]
struct ProgramHeader {
    p_type: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// A PT_LOAD segment that has been checked against the image and the guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    /// Program header index, for messages.
    pub(crate) index: u16,
    /// Where its file bytes are in the image.
    pub(crate) file_offset: u64,
    pub(crate) filesz: u64,
    /// Where it goes in guest RAM, memsz bytes long.
    pub(crate) dest: GuestRange,
}

/// A validated ELF64 x86-64 executable.
pub(crate) struct ElfImage<'a> {
    image: Image<'a>,
    phoff: u64,
    phnum: u16,
    shoff: u64,
    shnum: u16,
    shentsize: u16,
}

impl<'a> ElfImage<'a> {
    /// Checks the file header.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        let image = Image::new(bytes);
        let part = ImagePart::ElfHeader;
        if !has_magic(bytes) {
            return Err(LoadError::NotElf);
        }
        image.slice(part, 0, EHDR_SIZE)?;
        expect(
            image.u8(part, 4)?,
            ELFCLASS64,
            "class (EI_CLASS)",
            "2 (ELFCLASS64)",
        )?;
        expect(
            image.u8(part, 5)?,
            ELFDATA2LSB,
            "data encoding (EI_DATA)",
            "1 (little-endian)",
        )?;
        expect(image.u8(part, 6)?, 1, "ident version (EI_VERSION)", "1")?;
        expect(
            image.u16(part, 16)?,
            ET_EXEC,
            "type (e_type)",
            "2 (ET_EXEC)",
        )?;
        expect(
            image.u16(part, 18)?,
            EM_X86_64,
            "machine (e_machine)",
            "62 (EM_X86_64)",
        )?;
        expect(image.u32(part, 20)?, EV_CURRENT, "version (e_version)", "1")?;
        let phnum = image.u16(part, 56)?;
        if phnum == PN_XNUM {
            return Err(LoadError::ElfUnsupported {
                field: "program header count (e_phnum)",
                value: u64::from(phnum),
                expected: "fewer than 0xffff",
            });
        }
        if phnum > 0 {
            let phentsize = image.u16(part, 54)?;
            expect(
                phentsize,
                PHDR_SIZE,
                "program header size (e_phentsize)",
                "56",
            )?;
        }
        Ok(Self {
            image,
            phoff: image.u64(part, 32)?,
            phnum,
            shoff: image.u64(part, 40)?,
            shentsize: image.u16(part, 58)?,
            shnum: image.u16(part, 60)?,
        })
    }

    fn program_header(&self, index: u16) -> Result<ProgramHeader, LoadError> {
        let part = ImagePart::ProgramHeader(index);
        let size = u64::from(PHDR_SIZE);
        let at = u64::from(index)
            .checked_mul(size)
            .and_then(|o| o.checked_add(self.phoff))
            .ok_or(LoadError::Truncated {
                part,
                offset: self.phoff,
                len: size,
                image_len: self.image.len(),
            })?;
        self.image.slice(part, at, size)?;
        Ok(ProgramHeader {
            p_type: self.image.u32(part, at)?,
            offset: self.image.u64(part, at + 8)?,
            paddr: self.image.u64(part, at + 24)?,
            filesz: self.image.u64(part, at + 32)?,
            memsz: self.image.u64(part, at + 40)?,
            align: self.image.u64(part, at + 48)?,
        })
    }

    /// All PT_LOAD segments with a nonzero memory size, each checked to lie inside the image
    /// and inside the guest's RAM, clear of the boot area and the device window.
    pub(crate) fn load_segments(
        &self,
        ram: &GuestRamLayout,
    ) -> Result<Vec<LoadSegment>, LoadError> {
        let mut segments = Vec::new();
        for index in 0..self.phnum {
            let ph = self.program_header(index)?;
            if ph.p_type != PT_LOAD || ph.memsz == 0 {
                continue;
            }
            segments.push(self.check_segment(index, &ph, ram)?);
        }
        if segments.is_empty() {
            return Err(LoadError::ElfNoLoadSegments);
        }
        check_no_overlap(&segments)?;
        Ok(segments)
    }

    fn check_segment(
        &self,
        index: u16,
        ph: &ProgramHeader,
        ram: &GuestRamLayout,
    ) -> Result<LoadSegment, LoadError> {
        if ph.filesz > ph.memsz {
            return Err(LoadError::SegmentFileExceedsMem {
                index,
                filesz: ph.filesz,
                memsz: ph.memsz,
            });
        }
        self.image
            .slice(ImagePart::SegmentData(index), ph.offset, ph.filesz)?;
        let gpa = GuestPhysAddr::new(ph.paddr);
        let size = ph.memsz;
        if ph.paddr.checked_add(size).is_none() {
            return Err(LoadError::SegmentOverflows { index, gpa, size });
        }
        let dest = GuestRange {
            start: gpa,
            len: size,
        };
        let boot_area = GuestRange {
            start: GuestPhysAddr::ZERO,
            len: BOOT_AREA_END.as_u64(),
        };
        let device_window = GuestRange {
            start: LOW_RAM_END,
            len: HIGH_RAM_START - LOW_RAM_END,
        };
        if dest.overlaps(&boot_area) {
            return Err(LoadError::SegmentInBootArea { index, gpa, size });
        }
        if dest.overlaps(&device_window) {
            return Err(LoadError::SegmentInDeviceWindow { index, gpa, size });
        }
        if !ram.contains(gpa, size) {
            return Err(LoadError::SegmentOutsideRam {
                index,
                gpa,
                size,
                ram_size: ram.size_bytes(),
            });
        }
        Ok(LoadSegment {
            index,
            file_offset: ph.offset,
            filesz: ph.filesz,
            dest,
        })
    }

    /// The file bytes of a checked segment.
    pub(crate) fn segment_bytes(&self, seg: &LoadSegment) -> Result<&'a [u8], LoadError> {
        self.image.slice(
            ImagePart::SegmentData(seg.index),
            seg.file_offset,
            seg.filesz,
        )
    }

    /// The PVH entry point from the `XEN_ELFNOTE_PHYS32_ENTRY` note, searched in PT_NOTE
    /// segments first and SHT_NOTE sections second (some linkers emit no PT_NOTE).
    pub(crate) fn pvh_entry(&self) -> Result<u32, LoadError> {
        for index in 0..self.phnum {
            let ph = self.program_header(index)?;
            if ph.p_type != PT_NOTE {
                continue;
            }
            let part = ImagePart::NoteSegment(index);
            let notes = self.image.slice(part, ph.offset, ph.filesz)?;
            if let Some(entry) = find_pvh_note(notes, ph.align, part, ph.offset)? {
                return Ok(entry);
            }
        }
        for index in 0..self.shnum {
            if let Some(entry) = self.pvh_entry_in_section(index)? {
                return Ok(entry);
            }
        }
        Err(LoadError::PvhNoteMissing)
    }

    /// The `XEN_ELFNOTE_GUEST_OS` string ("linux" for Linux's vmlinux), from PT_NOTE segments.
    pub(crate) fn guest_os(&self) -> Option<&'a [u8]> {
        (0..self.phnum).find_map(|index| {
            let ph = self.program_header(index).ok()?;
            if ph.p_type != PT_NOTE {
                return None;
            }
            let part = ImagePart::NoteSegment(index);
            let notes = self.image.slice(part, ph.offset, ph.filesz).ok()?;
            walk_notes(notes, ph.align, part, ph.offset, |name, n_type, desc| {
                (n_type == XEN_ELFNOTE_GUEST_OS && name == XEN_NOTE_NAME).then_some(trim_nul(desc))
            })
            .ok()
            .flatten()
        })
    }

    fn pvh_entry_in_section(&self, index: u16) -> Result<Option<u32>, LoadError> {
        let part = ImagePart::SectionHeader(index);
        if self.shentsize != SHDR_SIZE {
            return Err(LoadError::ElfUnsupported {
                field: "section header size (e_shentsize)",
                value: u64::from(self.shentsize),
                expected: "64",
            });
        }
        let size = u64::from(SHDR_SIZE);
        let at = u64::from(index)
            .checked_mul(size)
            .and_then(|o| o.checked_add(self.shoff))
            .ok_or(LoadError::Truncated {
                part,
                offset: self.shoff,
                len: size,
                image_len: self.image.len(),
            })?;
        self.image.slice(part, at, size)?;
        if self.image.u32(part, at + 4)? != SHT_NOTE {
            return Ok(None);
        }
        let offset = self.image.u64(part, at + 24)?;
        let len = self.image.u64(part, at + 32)?;
        let align = self.image.u64(part, at + 48)?;
        let part = ImagePart::NoteSection(index);
        let notes = self.image.slice(part, offset, len)?;
        find_pvh_note(notes, align, part, offset)
    }
}

/// Refuses two PT_LOAD segments that share guest memory: the later copy would silently
/// overwrite (or zero, through its bss) what the earlier one loaded.
fn check_no_overlap(segments: &[LoadSegment]) -> Result<(), LoadError> {
    let mut by_start: Vec<&LoadSegment> = segments.iter().collect();
    by_start.sort_unstable_by_key(|s| (s.dest.start.as_u64(), s.index));
    // The segment reaching furthest so far: any later start below its end overlaps it.
    let mut furthest: Option<&LoadSegment> = None;
    for seg in by_start {
        if let Some(prev) = furthest {
            if seg.dest.start.as_u64() < prev.dest.end() {
                let (first, second) = if prev.index < seg.index {
                    (prev, seg)
                } else {
                    (seg, prev)
                };
                return Err(LoadError::SegmentsOverlap {
                    first: first.index,
                    second: second.index,
                    gpa: seg.dest.start,
                });
            }
        }
        if furthest.is_none_or(|p| seg.dest.end() > p.dest.end()) {
            furthest = Some(seg);
        }
    }
    Ok(())
}

fn expect<T: Copy + PartialEq + Into<u64>>(
    value: T,
    want: T,
    field: &'static str,
    expected: &'static str,
) -> Result<(), LoadError> {
    if value == want {
        Ok(())
    } else {
        Err(LoadError::ElfUnsupported {
            field,
            value: value.into(),
            expected,
        })
    }
}

/// The PVH entry note among `notes`.
fn find_pvh_note(
    notes: &[u8],
    align: u64,
    part: ImagePart,
    base_offset: u64,
) -> Result<Option<u32>, LoadError> {
    walk_notes(notes, align, part, base_offset, |name, n_type, desc| {
        (n_type == XEN_ELFNOTE_PHYS32_ENTRY && name == XEN_NOTE_NAME)
            .then(|| pvh_entry_from_desc(desc))
    })
    .and_then(|found| found.transpose())
}

/// Walks the notes in `notes` (gABI "Note Section": namesz, descsz, type, name, desc, each of
/// name and desc padded to the alignment), calling `visit(name, type, desc)` until it returns
/// something.
fn walk_notes<'n, T>(
    notes: &'n [u8],
    align: u64,
    part: ImagePart,
    base_offset: u64,
    mut visit: impl FnMut(&'n [u8], u32, &'n [u8]) -> Option<T>,
) -> Result<Option<T>, LoadError> {
    // Notes are 4-byte aligned in practice; 8 only where the producer asked for it.
    let pad = if align == 8 { 8 } else { 4 };
    let region = Image::new(notes);
    let mut at = 0u64;
    let malformed = |at: u64| LoadError::MalformedNote {
        part,
        offset: base_offset.saturating_add(at),
    };
    while at + NOTE_HEADER_SIZE <= region.len() {
        let namesz = u64::from(region.u32(part, at)?);
        let descsz = u64::from(region.u32(part, at + 4)?);
        let n_type = region.u32(part, at + 8)?;
        let name_at = at + NOTE_HEADER_SIZE;
        // Both sizes are 32-bit and `at` is within a slice, so none of these sums overflow.
        let desc_at = align_up(name_at + namesz, pad).ok_or(malformed(at))?;
        let next = align_up(desc_at + descsz, pad).ok_or(malformed(at))?;
        let name = region
            .slice(part, name_at, namesz)
            .map_err(|_| malformed(at))?;
        let desc = region
            .slice(part, desc_at, descsz)
            .map_err(|_| malformed(at))?;
        if let Some(found) = visit(trim_nul(name), n_type, desc) {
            return Ok(Some(found));
        }
        at = next;
    }
    Ok(None)
}

fn pvh_entry_from_desc(desc: &[u8]) -> Result<u32, LoadError> {
    let value = match *desc {
        [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    };
    let bad = LoadError::PvhNoteBadDesc {
        descsz: desc.len() as u32,
        value,
    };
    if desc.len() != 4 && desc.len() != 8 {
        return Err(bad);
    }
    u32::try_from(value).map_err(|_| bad)
}

fn trim_nul(name: &[u8]) -> &[u8] {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    &name[..end]
}

/// Rounds `v` up to a multiple of `align` (a power of two).
fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}
