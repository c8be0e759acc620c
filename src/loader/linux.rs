//! Booting a Linux bzImage through the 64-bit boot protocol (Linux
//! `Documentation/arch/x86/boot.rst`, "64-bit Boot Protocol", and `zero-page.rst`).
//!
//! The real-mode setup code is never run: the protected-mode kernel is copied to its preferred
//! address, `boot_params` is built from the image's setup header plus what a BIOS would have
//! found (the E820 map), and the vCPU starts in long mode at the kernel's 64-bit entry.

use alloc::vec;

use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use crate::guest_mem::GuestMemory;

use super::boot_data::{place_initrd, write_cmdline};
use super::cpu::linux64_entry_state;
use super::error::{write_err, ImagePart, LoadError};
use super::image::{put_u16, put_u32, put_u64, Image};
use super::layout::{memory_map, GuestRamLayout, GuestRange, BOOT_AREA_END, LINUX_BOOT_PARAMS};
use super::{write_acpi, BootProtocol, BootRequest, BootSetup};

/// Offsets in the image and in `boot_params` (they coincide for the setup header).
mod off {
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
    pub const E820_ENTRIES: usize = 0x1E8;
    pub const SETUP_SECTS: u64 = 0x1F1;
    pub const SYSSIZE: u64 = 0x1F4;
    pub const VID_MODE: usize = 0x1FA;
    pub const BOOT_FLAG: u64 = 0x1FE;
    /// Second byte of the jump instruction: the header's length past 0x202.
    pub const JUMP_LEN: u64 = 0x201;
    pub const HEADER: u64 = 0x202;
    pub const VERSION: u64 = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: u64 = 0x22C;
    pub const KERNEL_ALIGNMENT: u64 = 0x230;
    pub const RELOCATABLE_KERNEL: u64 = 0x234;
    pub const XLOADFLAGS: u64 = 0x236;
    pub const CMDLINE_SIZE: u64 = 0x238;
    pub const PREF_ADDRESS: u64 = 0x258;
    pub const INIT_SIZE: u64 = 0x260;
    pub const E820_TABLE: usize = 0x2D0;
}

/// "HdrS", little-endian.
const HDRS_MAGIC: u32 = 0x5372_6448;
const BOOT_FLAG_MAGIC: u16 = 0xAA55;
/// 2.12 brought xloadflags, which says whether a 64-bit entry exists.
const MIN_PROTOCOL: u16 = 0x020C;
/// The header must reach at least through init_size (2.10) for us to place the kernel.
const MIN_HEADER_END: u64 = off::INIT_SIZE + 4;
/// `boot_params` reserves 0x1F1..0x290 for the setup header.
const BOOT_PARAMS_HEADER_END: u64 = 0x290;
const BOOT_PARAMS_SIZE: usize = 4096;
const SECTOR_BYTES: u64 = 512;
/// syssize counts the protected-mode kernel in 16-byte paragraphs (boot.rst, protocol 2.04+).
const SYSSIZE_UNIT: u64 = 16;
/// boot.rst: "If this field is 0, the real value is 4."
const DEFAULT_SETUP_SECTS: u64 = 4;
const XLF_KERNEL_64: u16 = 1 << 0;
const LOADED_HIGH: u8 = 1 << 0;
/// Only meaningful to the 16-bit entry; cleared so a stale value in the image cannot matter.
const KEEP_SEGMENTS: u8 = 1 << 6;
/// A boot loader without an assigned ID.
const LOADER_TYPE_UNDEFINED: u8 = 0xFF;
/// `vga=normal`.
const VID_MODE_NORMAL: u16 = 0xFFFF;
/// The 64-bit entry point's offset from the load address.
const ENTRY_64_OFFSET: u64 = 0x200;
/// `E820_MAX_ENTRIES_ZEROPAGE` and the size of `struct boot_e820_entry`.
const E820_MAX_ENTRIES: usize = 128;
const E820_ENTRY_SIZE: usize = 20;

/// Whether `bytes` carries a Linux setup header.
pub(crate) fn has_magic(bytes: &[u8]) -> bool {
    bytes.get(off::HEADER as usize..off::HEADER as usize + 4) == Some(b"HdrS".as_slice())
}

/// The setup-header fields the loader acts on.
struct SetupHeader {
    /// Bytes of boot sector plus setup code; the protected-mode kernel follows.
    setup_bytes: u64,
    /// End of the header in the image (exclusive), capped at what `boot_params` holds.
    header_end: u64,
    is_relocatable: bool,
    kernel_alignment: u32,
    initrd_addr_max: u32,
    cmdline_size: u32,
    pref_address: u64,
    init_size: u32,
}

fn parse_header(image: &Image<'_>) -> Result<SetupHeader, LoadError> {
    let part = ImagePart::SetupHeader;
    if image.u32(part, off::HEADER)? != HDRS_MAGIC {
        return Err(LoadError::NotBzImage);
    }
    let boot_flag = image.u16(part, off::BOOT_FLAG)?;
    if boot_flag != BOOT_FLAG_MAGIC {
        return Err(LoadError::BadBootFlag { found: boot_flag });
    }
    let version = image.u16(part, off::VERSION)?;
    if version < MIN_PROTOCOL {
        return Err(LoadError::ProtocolTooOld { version });
    }
    let declared_end = off::HEADER + u64::from(image.u8(part, off::JUMP_LEN)?);
    if declared_end < MIN_HEADER_END {
        return Err(LoadError::SetupHeaderTooShort { end: declared_end });
    }
    let header_end = declared_end.min(BOOT_PARAMS_HEADER_END);
    image.slice(part, off::SETUP_SECTS, header_end - off::SETUP_SECTS)?;
    if image.u16(part, off::XLOADFLAGS)? & XLF_KERNEL_64 == 0 {
        return Err(LoadError::Not64Bit);
    }
    let setup_sects = match u64::from(image.u8(part, off::SETUP_SECTS)?) {
        0 => DEFAULT_SETUP_SECTS,
        n => n,
    };
    let setup_bytes = (setup_sects + 1) * SECTOR_BYTES;
    image.slice(ImagePart::SetupCode, 0, setup_bytes)?;
    if image.len() <= setup_bytes {
        return Err(LoadError::NoKernelPayload {
            setup_bytes,
            image_len: image.len(),
        });
    }
    // A file cut short still has a header, but fewer kernel bytes than the header promises.
    // Zero means the builder did not say; Linux's own build always fills it in.
    let syssize_bytes = u64::from(image.u32(part, off::SYSSIZE)?) * SYSSIZE_UNIT;
    let payload_len = image.len() - setup_bytes;
    if syssize_bytes > payload_len.next_multiple_of(SYSSIZE_UNIT) {
        return Err(LoadError::Truncated {
            part: ImagePart::Payload,
            offset: setup_bytes,
            len: syssize_bytes,
            image_len: image.len(),
        });
    }
    let is_relocatable = image.u8(part, off::RELOCATABLE_KERNEL)? != 0;
    let kernel_alignment = image.u32(part, off::KERNEL_ALIGNMENT)?;
    if is_relocatable && !kernel_alignment.is_power_of_two() {
        return Err(LoadError::BadKernelAlignment {
            align: kernel_alignment,
        });
    }
    Ok(SetupHeader {
        setup_bytes,
        header_end,
        is_relocatable,
        kernel_alignment,
        initrd_addr_max: image.u32(part, off::INITRD_ADDR_MAX)?,
        cmdline_size: image.u32(part, off::CMDLINE_SIZE)?,
        pref_address: image.u64(part, off::PREF_ADDRESS)?,
        init_size: image.u32(part, off::INIT_SIZE)?,
    })
}

/// Where the kernel goes: its preferred address, or (if relocatable) the lowest aligned address
/// above the boot area, whichever first leaves `need` bytes below the device window.
fn choose_load_address(
    hdr: &SetupHeader,
    need: u64,
    ram: &GuestRamLayout,
) -> Result<GuestPhysAddr, LoadError> {
    let fits = |addr: u64| {
        addr >= BOOT_AREA_END.as_u64()
            && addr
                .checked_add(need)
                .is_some_and(|end| end <= ram.low_end().as_u64())
    };
    let fallback = hdr
        .is_relocatable
        .then(|| BOOT_AREA_END.checked_align_up(u64::from(hdr.kernel_alignment)))
        .flatten()
        .map(|a| a.as_u64());
    [Some(hdr.pref_address), fallback]
        .into_iter()
        .flatten()
        .find(|&a| fits(a))
        .map(GuestPhysAddr::new)
        .ok_or(LoadError::KernelDoesNotFit {
            gpa: GuestPhysAddr::new(hdr.pref_address),
            size: need,
            ram_size: ram.size_bytes(),
        })
}

pub(crate) fn load(
    mem: &dyn GuestMemory,
    ram: &GuestRamLayout,
    req: &BootRequest<'_>,
) -> Result<BootSetup, LoadError> {
    let image = Image::new(req.kernel);
    let hdr = parse_header(&image)?;
    let payload = image.slice(
        ImagePart::SetupCode,
        hdr.setup_bytes,
        image.len() - hdr.setup_bytes,
    )?;
    let payload_len = payload.len() as u64;
    if payload_len <= ENTRY_64_OFFSET {
        return Err(LoadError::NoEntry64 {
            payload_offset: hdr.setup_bytes,
            payload_len,
        });
    }
    // init_size covers the decompressor's whole footprint; never less than what we copy.
    let need = u64::from(hdr.init_size)
        .max(payload_len)
        .next_multiple_of(PAGE_SIZE);
    let load_addr = choose_load_address(&hdr, need, ram)?;
    let cmdline_max = usize::try_from(hdr.cmdline_size).unwrap_or(usize::MAX);
    let cmdline = write_cmdline(mem, req.cmdline, cmdline_max)?;
    mem.write(load_addr, payload)
        .map_err(write_err("Linux kernel"))?;
    let kernel = GuestRange {
        start: load_addr,
        len: need,
    };

    // initrd_addr_max is the highest byte the initrd may occupy.
    let limit = (u64::from(hdr.initrd_addr_max) + 1).min(ram.low_end().as_u64());
    let initrd = match req.initrd {
        Some(bytes) => place_initrd(mem, bytes, kernel.end(), limit)?,
        None => None,
    };
    let rsdp = write_acpi(mem, req)?;
    write_boot_params(mem, ram, &image, &hdr, cmdline, initrd, rsdp)?;

    Ok(BootSetup {
        protocol: BootProtocol::Linux64,
        entry: linux64_entry_state(mem, load_addr.as_u64() + ENTRY_64_OFFSET, LINUX_BOOT_PARAMS)?,
        boot_info: LINUX_BOOT_PARAMS,
        kernel,
        initrd,
        cmdline,
        rsdp,
    })
}

/// Splits a 64-bit address into the low field and its `ext_` high-half field.
fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

fn write_boot_params(
    mem: &dyn GuestMemory,
    ram: &GuestRamLayout,
    image: &Image<'_>,
    hdr: &SetupHeader,
    cmdline: GuestPhysAddr,
    initrd: Option<GuestRange>,
    rsdp: Option<GuestPhysAddr>,
) -> Result<(), LoadError> {
    let mut bp = vec![0u8; BOOT_PARAMS_SIZE];
    let header = image.slice(
        ImagePart::SetupHeader,
        off::SETUP_SECTS,
        hdr.header_end - off::SETUP_SECTS,
    )?;
    let start = off::SETUP_SECTS as usize;
    if let Some(dst) = bp.get_mut(start..start + header.len()) {
        dst.copy_from_slice(header);
    }

    bp[off::TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
    bp[off::LOADFLAGS] = (bp[off::LOADFLAGS] | LOADED_HIGH) & !KEEP_SEGMENTS;
    put_u16(&mut bp, off::VID_MODE, VID_MODE_NORMAL);
    let (lo, hi) = split(cmdline.as_u64());
    put_u32(&mut bp, off::CMD_LINE_PTR, lo);
    put_u32(&mut bp, off::EXT_CMD_LINE_PTR, hi);
    // Written even without an initrd, so stray values in the image's header cannot leak in.
    let (start, len) = initrd.map_or((0, 0), |r| (r.start.as_u64(), r.len));
    let (lo, hi) = split(start);
    put_u32(&mut bp, off::RAMDISK_IMAGE, lo);
    put_u32(&mut bp, off::EXT_RAMDISK_IMAGE, hi);
    let (lo, hi) = split(len);
    put_u32(&mut bp, off::RAMDISK_SIZE, lo);
    put_u32(&mut bp, off::EXT_RAMDISK_SIZE, hi);
    put_u64(&mut bp, off::ACPI_RSDP_ADDR, rsdp.map_or(0, |a| a.as_u64()));

    let map = memory_map(ram);
    for (i, region) in map.iter().take(E820_MAX_ENTRIES).enumerate() {
        let at = off::E820_TABLE + i * E820_ENTRY_SIZE;
        put_u64(&mut bp, at, region.range.start.as_u64());
        put_u64(&mut bp, at + 8, region.range.len);
        put_u32(&mut bp, at + 16, region.kind as u32);
    }
    bp[off::E820_ENTRIES] = map.len().min(E820_MAX_ENTRIES) as u8;

    mem.write(LINUX_BOOT_PARAMS, &bp)
        .map_err(write_err("Linux boot_params"))
}
