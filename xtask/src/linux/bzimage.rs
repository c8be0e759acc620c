//! `vmlinux` out of a bzImage: the setup header says where the compressed kernel lies
//! (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header", fields `setup_sects`,
//! `payload_offset` and `payload_length`, protocol 2.08+). Debian compresses it with xz.

use std::io::Read;

use super::modules::XZ_MAGIC;
use crate::le::{u16_at, u32_at};

/// Setup header offsets in the bzImage file (boot.rst, "The Real-Mode Kernel Header").
const SETUP_SECTS: usize = 0x1F1;
const HEADER_MAGIC_AT: usize = 0x202;
const HEADER_MAGIC: &[u8; 4] = b"HdrS";
const VERSION_AT: usize = 0x206;
const PAYLOAD_OFFSET_AT: usize = 0x248;
const PAYLOAD_LENGTH_AT: usize = 0x24C;
/// The first boot protocol with `payload_offset` and `payload_length`.
const MIN_PAYLOAD_VERSION: u16 = 0x0208;
/// `setup_sects == 0` means 4 (boot.rst: "for backwards compatibility").
const DEFAULT_SETUP_SECTS: usize = 4;
const SECTOR: usize = 512;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Magics of the other payload formats, named in the error for a kernel built with them.
const GZIP_MAGIC: &[u8; 2] = b"\x1f\x8b";
const ZSTD_MAGIC: &[u8; 4] = b"\x28\xb5\x2f\xfd";

/// The compressed kernel inside a bzImage.
pub fn payload(bz: &[u8]) -> Result<&[u8], String> {
    if bz.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) != Some(HEADER_MAGIC.as_slice()) {
        return Err("no `HdrS` setup header: not a bzImage".into());
    }
    let version = u16_at(bz, VERSION_AT).ok_or("truncated setup header")?;
    if version < MIN_PAYLOAD_VERSION {
        return Err(format!(
            "boot protocol {}.{:02} has no payload fields (2.08 or later needed)",
            version >> 8,
            version & 0xFF
        ));
    }
    let setup_sects = match bz
        .get(SETUP_SECTS)
        .copied()
        .ok_or("truncated setup header")?
    {
        0 => DEFAULT_SETUP_SECTS,
        n => usize::from(n),
    };
    // The protected-mode kernel follows the boot sector and the setup sectors; the payload
    // offset counts from there.
    let protected_mode = (setup_sects + 1) * SECTOR;
    let offset = u32_at(bz, PAYLOAD_OFFSET_AT).ok_or("truncated setup header")? as usize;
    let length = u32_at(bz, PAYLOAD_LENGTH_AT).ok_or("truncated setup header")? as usize;
    let start = protected_mode + offset;
    bz.get(start..start + length).ok_or_else(|| {
        format!(
            "payload at {start:#x}+{length:#x} lies past the end of the file ({:#x})",
            bz.len()
        )
    })
}

/// Decompresses one xz stream; bytes after it are ignored (the kernel's build appends the
/// uncompressed size to its payload).
pub fn unxz(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    liblzma::read::XzDecoder::new(compressed)
        .read_to_end(&mut out)
        .map_err(|e| format!("xz: {e}"))?;
    Ok(out)
}

/// The `vmlinux` ELF a bzImage carries.
pub fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    let compressed = payload(bz)?;
    if !compressed.starts_with(XZ_MAGIC) {
        let kind = if compressed.starts_with(GZIP_MAGIC) {
            "gzip"
        } else if compressed.starts_with(ZSTD_MAGIC) {
            "zstd"
        } else {
            "an unknown format"
        };
        return Err(format!(
            "the payload is {kind}; only xz-compressed kernels (Debian's) are handled"
        ));
    }
    let elf = unxz(compressed)?;
    if !elf.starts_with(ELF_MAGIC) {
        return Err("the decompressed payload is not an ELF file".into());
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A bzImage-shaped file: boot sector, `setup_sects` setup sectors, then a protected-mode
    /// part with the payload at `offset`.
    fn fake_bzimage(setup_sects: u8, offset: u32, payload: &[u8]) -> Vec<u8> {
        let sectors = if setup_sects == 0 {
            4
        } else {
            setup_sects as usize
        };
        let mut bz = vec![0u8; (sectors + 1) * SECTOR + offset as usize];
        bz[SETUP_SECTS] = setup_sects;
        bz[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(HEADER_MAGIC);
        bz[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        bz[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&offset.to_le_bytes());
        let length = payload.len() as u32;
        bz[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4].copy_from_slice(&length.to_le_bytes());
        bz.extend_from_slice(payload);
        bz.extend_from_slice(b"tail");
        bz
    }

    #[test]
    fn the_payload_is_found_and_decompressed_ignoring_the_appended_size() {
        let mut elf = ELF_MAGIC.to_vec();
        elf.extend((0..5000u32).map(|i| (i * 7) as u8));
        let mut payload = xz(&elf);
        payload.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        for sects in [0, 27] {
            let bz = fake_bzimage(sects, 0x2CC, &payload);
            assert_eq!(extract_vmlinux(&bz).unwrap(), elf);
        }
    }

    #[test]
    fn wrong_inputs_are_named() {
        assert!(payload(&[0u8; 1024]).unwrap_err().contains("HdrS"));
        let gz = fake_bzimage(4, 16, b"\x1f\x8b\x08\0rest");
        assert!(extract_vmlinux(&gz).unwrap_err().contains("gzip"));
        let mut short = fake_bzimage(4, 16, b"xx");
        short[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
            .copy_from_slice(&0x1000_0000u32.to_le_bytes());
        assert!(payload(&short).unwrap_err().contains("past the end"));
        let not_elf = fake_bzimage(4, 16, &xz(b"plain data"));
        assert!(extract_vmlinux(&not_elf)
            .unwrap_err()
            .contains("not an ELF"));
    }
}
