//! Reading `hvm_start_info` (Xen `xen/include/public/arch-x86/hvm/start_info.h`) once, at boot,
//! into our own [`StartInfo`]; nothing later reads the loader's structures again.

use core::fmt;

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Field offsets in `hvm_start_info` (version 1 layout).
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 4;
const OFF_CMDLINE_PADDR: u64 = 24;
const OFF_RSDP_PADDR: u64 = 32;
const OFF_MEMMAP_PADDR: u64 = 40;
const OFF_MEMMAP_ENTRIES: u64 = 48;
/// `hvm_memmap_table_entry`: addr u64, size u64, type u32, reserved u32.
const MEMMAP_ENTRY_SIZE: u64 = 24;

/// Longest command line kept; longer ones are cut (and flagged).
pub const CMDLINE_CAPACITY: usize = 512;
/// Most memory-map entries kept; more are dropped (and flagged).
pub const MEMMAP_CAPACITY: usize = 64;
/// Only the identity-mapped first 4 GiB can be read before the guest maps more.
const READABLE_LIMIT: u64 = 1 << 32;

/// Memory-map entry types (the E820 numbering that `hvm_memmap_table_entry` reuses).
pub const MEM_RAM: u32 = 1;
pub const MEM_RESERVED: u32 = 2;
pub const MEM_ACPI: u32 = 3;
pub const MEM_NVS: u32 = 4;
pub const MEM_UNUSABLE: u32 = 5;

/// What is wrong with the start info the loader handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    BadMagic { addr: u64, found: u32 },
    Unreadable { what: &'static str, addr: u64 },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { addr, found } => write!(
                f,
                "hvm_start_info at {addr:#x} has magic {found:#x}, expected {START_INFO_MAGIC:#x}"
            ),
            Self::Unreadable { what, addr } => {
                write!(f, "start info {what} at {addr:#x} lies above 4 GiB")
            }
        }
    }
}

/// One memory-map range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRange {
    pub base: u64,
    pub size_bytes: u64,
    pub kind: u32,
}

impl MemRange {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size_bytes)
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            MEM_RAM => "RAM",
            MEM_RESERVED => "reserved",
            MEM_ACPI => "ACPI",
            MEM_NVS => "NVS",
            MEM_UNUSABLE => "unusable",
            _ => "other",
        }
    }
}

/// The boot information, copied out of the loader's structures.
#[derive(Clone, Debug)]
pub struct StartInfo {
    /// Physical address of the loader's `hvm_start_info`.
    pub paddr: u64,
    pub version: u32,
    pub rsdp_paddr: u64,
    cmdline: [u8; CMDLINE_CAPACITY],
    cmdline_len: usize,
    pub is_cmdline_truncated: bool,
    memmap: [MemRange; MEMMAP_CAPACITY],
    memmap_len: usize,
    pub is_memmap_truncated: bool,
    /// Where the memory map and command line were (so a guest does not overwrite them).
    pub memmap_paddr: u64,
    pub cmdline_paddr: u64,
}

fn read_u32(addr: u64) -> u32 {
    // SAFETY: callers pass addresses below 4 GiB, which the boot stub identity-maps; the loader
    // put the structure there for us to read.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn read_u64(addr: u64) -> u64 {
    u64::from(read_u32(addr)) | (u64::from(read_u32(addr + 4)) << 32)
}

fn read_u8(addr: u64) -> u8 {
    // SAFETY: as for read_u32.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

fn check_readable(what: &'static str, addr: u64, len: u64) -> Result<(), StartInfoError> {
    match addr.checked_add(len) {
        Some(end) if end <= READABLE_LIMIT => Ok(()),
        _ => Err(StartInfoError::Unreadable { what, addr }),
    }
}

impl StartInfo {
    /// Copies the start info at physical address `paddr`.
    pub fn read(paddr: u64) -> Result<StartInfo, StartInfoError> {
        check_readable("header", paddr, OFF_MEMMAP_ENTRIES + 8)?;
        let magic = read_u32(paddr + OFF_MAGIC);
        if magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic {
                addr: paddr,
                found: magic,
            });
        }
        let mut info = StartInfo {
            paddr,
            version: read_u32(paddr + OFF_VERSION),
            rsdp_paddr: read_u64(paddr + OFF_RSDP_PADDR),
            cmdline: [0; CMDLINE_CAPACITY],
            cmdline_len: 0,
            is_cmdline_truncated: false,
            memmap: [MemRange::default(); MEMMAP_CAPACITY],
            memmap_len: 0,
            is_memmap_truncated: false,
            memmap_paddr: 0,
            cmdline_paddr: read_u64(paddr + OFF_CMDLINE_PADDR),
        };
        if info.cmdline_paddr != 0 {
            check_readable("command line", info.cmdline_paddr, CMDLINE_CAPACITY as u64)?;
            for i in 0..CMDLINE_CAPACITY {
                let byte = read_u8(info.cmdline_paddr + i as u64);
                if byte == 0 {
                    break;
                }
                info.cmdline[i] = byte;
                info.cmdline_len = i + 1;
            }
            info.is_cmdline_truncated = info.cmdline_len == CMDLINE_CAPACITY;
        }
        // The memory map fields exist from version 1 on.
        if info.version >= 1 {
            info.memmap_paddr = read_u64(paddr + OFF_MEMMAP_PADDR);
            let entries = u64::from(read_u32(paddr + OFF_MEMMAP_ENTRIES));
            let kept = entries.min(MEMMAP_CAPACITY as u64);
            info.is_memmap_truncated = entries > kept;
            if info.memmap_paddr != 0 && kept != 0 {
                check_readable("memory map", info.memmap_paddr, kept * MEMMAP_ENTRY_SIZE)?;
                for (i, slot) in info.memmap.iter_mut().take(kept as usize).enumerate() {
                    let entry = info.memmap_paddr + i as u64 * MEMMAP_ENTRY_SIZE;
                    *slot = MemRange {
                        base: read_u64(entry),
                        size_bytes: read_u64(entry + 8),
                        kind: read_u32(entry + 16),
                    };
                }
                info.memmap_len = kept as usize;
            }
        }
        Ok(info)
    }

    /// The command line as text (invalid UTF-8 yields the valid prefix).
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => core::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The memory map as the loader gave it.
    pub fn memmap(&self) -> &[MemRange] {
        &self.memmap[..self.memmap_len]
    }

    /// The RAM ranges of the memory map.
    pub fn ram(&self) -> impl Iterator<Item = &MemRange> + '_ {
        self.memmap().iter().filter(|r| r.kind == MEM_RAM)
    }

    /// One past the highest RAM byte, or `None` without a memory map.
    pub fn ram_end(&self) -> Option<u64> {
        self.ram().map(MemRange::end).max()
    }

    /// Total RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram()
            .map(|r| r.size_bytes)
            .fold(0, u64::saturating_add)
    }

    /// True when `addr` lies in any memory-map range (RAM or reserved).
    pub fn is_described(&self, addr: u64) -> bool {
        self.memmap().iter().any(|r| r.contains(addr))
    }

    /// True when `addr` lies in a RAM range.
    pub fn is_ram(&self, addr: u64) -> bool {
        self.ram().any(|r| r.contains(addr))
    }

    /// Key/value view of the command line.
    pub fn args(&self) -> crate::cmdline::Cmdline<'_> {
        crate::cmdline::Cmdline::new(self.cmdline())
    }
}
