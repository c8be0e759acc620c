//! Guest kernel loading: ELF64 kernels booted through PVH, Linux bzImages booted through the
//! 64-bit boot protocol, and the guest ACPI tables both can point at.
//!
//! [`load`] copies a kernel (and initrd) into guest RAM, writes the boot structures the protocol
//! needs at the fixed addresses of [`layout`], and returns a [`BootSetup`] whose
//! [`EntryState`] the vendor back end loads into the boot vCPU. Every image is untrusted: a
//! malformed one yields a [`LoadError`] that says what is wrong and where, never a panic.

#![forbid(unsafe_code)]

pub mod acpi;
mod boot_data;
mod check;
mod cpu;
mod elf;
mod error;
pub mod firmware;
pub mod fuzzing;
mod image;
pub mod layout;
mod linux;
mod pvh;

#[cfg(test)]
mod tests;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;
use crate::virt::EntryState;

pub use acpi::{AcpiConfig, AcpiError};
pub use boot_data::CMDLINE_MAX_LEN;
pub use check::{validate, SparseMemory};
pub use cpu::{BOOT_CS, BOOT_DS, BOOT_TSS, IDENTITY_MAP_END};
pub use error::{ImagePart, LoadError, Size};
pub use layout::{GuestRamLayout, GuestRange, MemKind, MemRegion};
pub use pvh::START_INFO_MAGIC;

/// How to interpret the kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ELF if it starts with `\x7fELF`, bzImage if it has "HdrS" at 0x202.
    Auto,
    /// ELF64 executable with a PVH entry note (test guests, or Linux `vmlinux`).
    Elf,
    /// Linux bzImage, booted through its 64-bit entry.
    Linux,
}

/// What to boot.
#[derive(Clone, Copy, Debug)]
pub struct BootRequest<'a> {
    pub kernel: &'a [u8],
    pub format: Format,
    /// Passed to the kernel NUL-terminated; must not contain NUL.
    pub cmdline: &'a str,
    /// Placed high in RAM below the device window; an empty one counts as none.
    pub initrd: Option<&'a [u8]>,
    /// Build guest ACPI tables (and report their RSDP) when given.
    pub acpi: Option<AcpiConfig<'a>>,
}

/// Which boot protocol the entry state follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh,
    /// 64-bit long mode on identity page tables, RSI = `boot_params`.
    Linux64,
}

/// What the loader put where, and how the boot vCPU must start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootSetup {
    pub protocol: BootProtocol,
    /// Initial state of the boot vCPU (other vCPUs wait for INIT/SIPI).
    pub entry: EntryState,
    /// `hvm_start_info` or `boot_params`.
    pub boot_info: GuestPhysAddr,
    /// RAM the kernel occupies (PVH: its segments' span; Linux: load address + init_size).
    pub kernel: GuestRange,
    pub initrd: Option<GuestRange>,
    pub cmdline: GuestPhysAddr,
    /// The ACPI RSDP, when tables were built.
    pub rsdp: Option<GuestPhysAddr>,
}

/// Whether `kernel` is Linux: a bzImage ("HdrS" at 0x202), or an ELF vmlinux whose Xen
/// `GUEST_OS` note says "linux". The hypervisor gives Linux what it needs on its command line.
pub fn is_linux(kernel: &[u8]) -> bool {
    const HDRS_OFFSET: usize = 0x202;
    kernel.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(b"HdrS")
        || elf::ElfImage::parse(kernel).ok().and_then(|e| e.guest_os()) == Some(b"linux".as_slice())
}

/// Loads `req.kernel` into the guest RAM `mem`, laid out as `ram`.
///
/// `mem` must hold all of `ram` and should be zeroed; the loader writes only the kernel, the
/// initrd and the structures listed in [`layout`].
pub fn load(
    mem: &dyn GuestMemory,
    ram: &GuestRamLayout,
    req: &BootRequest<'_>,
) -> Result<BootSetup, LoadError> {
    if ram.size_bytes() < layout::MIN_GUEST_RAM {
        return Err(LoadError::RamTooSmall {
            ram_size: ram.size_bytes(),
            min: layout::MIN_GUEST_RAM,
        });
    }
    firmware::write_reset_vector(mem)?;
    let is_elf = match req.format {
        Format::Elf => true,
        Format::Linux => false,
        Format::Auto if elf::has_magic(req.kernel) => true,
        Format::Auto if linux::has_magic(req.kernel) => false,
        Format::Auto => return Err(LoadError::UnknownFormat),
    };
    if is_elf {
        pvh::load(mem, ram, req)
    } else {
        linux::load(mem, ram, req)
    }
}

/// Builds the ACPI tables if the request asks for them.
fn write_acpi(
    mem: &dyn GuestMemory,
    req: &BootRequest<'_>,
) -> Result<Option<GuestPhysAddr>, LoadError> {
    match &req.acpi {
        Some(config) => Ok(Some(acpi::write_tables(mem, config)?)),
        None => Ok(None),
    }
}
