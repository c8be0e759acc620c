//! Hand-built kernel images for the tests: minimal ELF64 executables and bzImage headers.

use alloc::vec;
use alloc::vec::Vec;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemory, VecGuestMemory};

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

/// One program header and the bytes its segment carries in the file.
pub struct Segment {
    pub p_type: u32,
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub align: u64,
}

impl Segment {
    pub fn load(paddr: u64, data: Vec<u8>, memsz: u64) -> Self {
        Self {
            p_type: PT_LOAD,
            paddr,
            data,
            memsz,
            align: 0x1000,
        }
    }

    pub fn note(data: Vec<u8>) -> Self {
        let memsz = data.len() as u64;
        Self {
            p_type: PT_NOTE,
            paddr: 0,
            data,
            memsz,
            align: 4,
        }
    }
}

/// One ELF note, padded to 4 bytes.
pub fn note(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// The PVH entry note (type 18, "Xen").
pub fn pvh_note(entry: u32) -> Vec<u8> {
    note(b"Xen\0", 18, &entry.to_le_bytes())
}

/// An ELF64 executable under construction.
pub struct ElfBuilder {
    pub segments: Vec<Segment>,
    /// Notes carried in an SHT_NOTE section instead of a segment.
    pub note_section: Option<Vec<u8>>,
    pub class: u8,
    pub e_type: u16,
    pub machine: u16,
}

impl ElfBuilder {
    pub fn new() -> Self {
        Self {
            segments: Vec::new(),
            note_section: None,
            class: 2,
            e_type: 2,
            machine: 62,
        }
    }

    pub fn segment(mut self, s: Segment) -> Self {
        self.segments.push(s);
        self
    }

    /// Header at 0, program headers at 64, then each segment's data (16-byte aligned), then the
    /// optional note section and its two section headers (null + note).
    pub fn build(&self) -> Vec<u8> {
        let phnum = self.segments.len();
        let mut data_at = Vec::new();
        let mut cursor = 64 + 56 * phnum;
        for s in &self.segments {
            cursor = cursor.next_multiple_of(16);
            data_at.push(cursor);
            cursor += s.data.len();
        }
        let mut out = vec![0u8; cursor];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = self.class;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&self.e_type.to_le_bytes());
        out[18..20].copy_from_slice(&self.machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes());
        for (i, s) in self.segments.iter().enumerate() {
            let ph = 64 + 56 * i;
            out[ph..ph + 4].copy_from_slice(&s.p_type.to_le_bytes());
            out[ph + 8..ph + 16].copy_from_slice(&(data_at[i] as u64).to_le_bytes());
            out[ph + 16..ph + 24].copy_from_slice(&s.paddr.to_le_bytes());
            out[ph + 24..ph + 32].copy_from_slice(&s.paddr.to_le_bytes());
            out[ph + 32..ph + 40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
            out[ph + 40..ph + 48].copy_from_slice(&s.memsz.to_le_bytes());
            out[ph + 48..ph + 56].copy_from_slice(&s.align.to_le_bytes());
            out[data_at[i]..data_at[i] + s.data.len()].copy_from_slice(&s.data);
        }
        if let Some(notes) = &self.note_section {
            let notes_at = out.len().next_multiple_of(8);
            out.resize(notes_at, 0);
            out.extend_from_slice(notes);
            let shoff = out.len().next_multiple_of(8);
            out.resize(shoff + 2 * 64, 0);
            let sh = shoff + 64;
            out[sh + 4..sh + 8].copy_from_slice(&7u32.to_le_bytes());
            out[sh + 24..sh + 32].copy_from_slice(&(notes_at as u64).to_le_bytes());
            out[sh + 32..sh + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
            out[sh + 48..sh + 56].copy_from_slice(&4u64.to_le_bytes());
            out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
            out[60..62].copy_from_slice(&2u16.to_le_bytes());
        }
        out
    }
}

/// Where the standard test kernel links.
pub const KERNEL_BASE: u64 = 0x10_0000;
pub const KERNEL_ENTRY: u32 = 0x10_0010;

/// A test-guest-like ELF: text at 1 MiB, data with 0x3000 bytes of bss at 1 MiB + 8 KiB, and the
/// PVH note in a PT_NOTE segment.
pub fn standard_elf() -> ElfBuilder {
    ElfBuilder::new()
        .segment(Segment::load(KERNEL_BASE, vec![0x90; 0x1000], 0x1000))
        .segment(Segment::load(
            KERNEL_BASE + 0x2000,
            vec![0x11; 0x100],
            0x3100,
        ))
        .segment(Segment::note(pvh_note(KERNEL_ENTRY)))
}

/// Setup-header fields of a fake bzImage.
pub struct BzImage {
    pub setup_sects: u8,
    pub boot_flag: u16,
    pub version: u16,
    pub header_len: u8,
    pub loadflags: u8,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: u8,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub payload: Vec<u8>,
}

impl BzImage {
    /// A 2.15 kernel that wants 16 MiB, 4 MiB of init_size, 64-bit and relocatable.
    pub fn new() -> Self {
        Self {
            setup_sects: 3,
            boot_flag: 0xAA55,
            version: 0x020F,
            header_len: 0x6A, // ends at 0x26C, as in Linux 5.x+
            loadflags: 0x01,
            initrd_addr_max: 0x7FFF_FFFF,
            kernel_alignment: 0x20_0000,
            relocatable: 1,
            xloadflags: 0x0003,
            cmdline_size: 2047,
            pref_address: 0x100_0000,
            init_size: 0x40_0000,
            payload: (0..0x3000u32).map(|i| (i * 7) as u8).collect(),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        let setup_bytes = (usize::from(sects) + 1) * 512;
        let mut out = vec![0u8; setup_bytes];
        out[0x1F1] = self.setup_sects;
        // syssize: the payload in 16-byte paragraphs, rounded up as Linux's build does.
        let syssize = self.payload.len().div_ceil(16) as u32;
        out[0x1F4..0x1F8].copy_from_slice(&syssize.to_le_bytes());
        out[0x1FE..0x200].copy_from_slice(&self.boot_flag.to_le_bytes());
        out[0x200] = 0xEB;
        out[0x201] = self.header_len;
        out[0x202..0x206].copy_from_slice(b"HdrS");
        out[0x206..0x208].copy_from_slice(&self.version.to_le_bytes());
        out[0x20E..0x210].copy_from_slice(&0x1234u16.to_le_bytes());
        out[0x211] = self.loadflags;
        out[0x22C..0x230].copy_from_slice(&self.initrd_addr_max.to_le_bytes());
        out[0x230..0x234].copy_from_slice(&self.kernel_alignment.to_le_bytes());
        out[0x234] = self.relocatable;
        out[0x236..0x238].copy_from_slice(&self.xloadflags.to_le_bytes());
        out[0x238..0x23C].copy_from_slice(&self.cmdline_size.to_le_bytes());
        out[0x258..0x260].copy_from_slice(&self.pref_address.to_le_bytes());
        out[0x260..0x264].copy_from_slice(&self.init_size.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Zeroed guest RAM of `mib` MiB at GPA 0.
pub fn ram(mib: usize) -> VecGuestMemory {
    VecGuestMemory::new(GuestPhysAddr::ZERO, mib << 20)
}

/// `len` bytes of guest memory at `gpa`.
pub fn read(mem: &dyn GuestMemory, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read(GuestPhysAddr::new(gpa), &mut buf)
        .expect("test read inside RAM");
    buf
}

pub fn rd32(mem: &dyn GuestMemory, gpa: u64) -> u32 {
    mem.read_u32(GuestPhysAddr::new(gpa)).expect("test read")
}

pub fn rd64(mem: &dyn GuestMemory, gpa: u64) -> u64 {
    mem.read_u64(GuestPhysAddr::new(gpa)).expect("test read")
}

/// Deterministic pseudo-random bytes (xorshift), for the corruption tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
