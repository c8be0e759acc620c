//! The hypervisor image's size as loaded: the sum of its ELF64 PT_LOAD segments, in the file
//! (text and data) and in memory (plus .bss, which holds the heap). Debug info is not loaded,
//! so the ELF file's own size says little.

use crate::le::{u16_at, u32_at, u64_at};

/// ELF64 header fields (System V ABI, "ELF Header").
const E_PHOFF: usize = 0x20;
const E_PHENTSIZE: usize = 0x36;
const E_PHNUM: usize = 0x38;
/// Program header fields.
const P_TYPE: usize = 0x00;
const P_FILESZ: usize = 0x20;
const P_MEMSZ: usize = 0x28;
const PT_LOAD: u32 = 1;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;

/// (file bytes, memory bytes) of the loadable segments; `None` for anything not ELF64.
pub fn load_size(elf: &[u8]) -> Option<(u64, u64)> {
    if elf.get(..4)? != ELF_MAGIC || *elf.get(4)? != ELFCLASS64 {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, E_PHOFF)?).ok()?;
    let entsize = usize::from(u16_at(elf, E_PHENTSIZE)?);
    let count = usize::from(u16_at(elf, E_PHNUM)?);
    let (mut file, mut mem) = (0u64, 0u64);
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(entsize)?)?;
        // Checked: a corrupt header must give `None`, not an overflow panic.
        if u32_at(elf, at.checked_add(P_TYPE)?)? == PT_LOAD {
            file = file.checked_add(u64_at(elf, at.checked_add(P_FILESZ)?)?)?;
            mem = mem.checked_add(u64_at(elf, at.checked_add(P_MEMSZ)?)?)?;
        }
    }
    Some((file, mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_loadable_segments() {
        let mut elf = vec![0u8; 0x40 + 3 * 0x38];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[E_PHOFF..E_PHOFF + 8].copy_from_slice(&0x40u64.to_le_bytes());
        elf[E_PHENTSIZE..E_PHENTSIZE + 2].copy_from_slice(&0x38u16.to_le_bytes());
        elf[E_PHNUM..E_PHNUM + 2].copy_from_slice(&3u16.to_le_bytes());
        for (i, (kind, filesz, memsz)) in [(1u32, 100u64, 100u64), (4, 7, 7), (1, 50, 4096)]
            .into_iter()
            .enumerate()
        {
            let at = 0x40 + i * 0x38;
            elf[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            elf[at + P_FILESZ..at + P_FILESZ + 8].copy_from_slice(&filesz.to_le_bytes());
            elf[at + P_MEMSZ..at + P_MEMSZ + 8].copy_from_slice(&memsz.to_le_bytes());
        }
        assert_eq!(load_size(&elf), Some((150, 4196)));
        assert_eq!(load_size(b"not an elf"), None);
        let mut huge = elf.clone();
        for at in [0x40 + P_FILESZ, 0x40 + 2 * 0x38 + P_FILESZ] {
            huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        }
        assert_eq!(load_size(&huge), None, "sizes that overflow are refused");
        let mut far = elf.clone();
        far[E_PHOFF..E_PHOFF + 8].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        assert_eq!(
            load_size(&far),
            None,
            "a table past the address space is refused"
        );
        elf.truncate(0x50);
        assert_eq!(load_size(&elf), None);
    }
}
