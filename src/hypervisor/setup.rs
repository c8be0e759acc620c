//! Building the guests (interim: one guest per boot module named `guest:<name>`; replaced by
//! the manifest's Plan and the full loader as they land).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::guest::{CrashPolicy, Guest};
use crate::addr::LARGE_PAGE_SIZE;
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::memory;
use crate::arch::x86_64::page_tables::{self, FrameTables};
use crate::boot::BootInfo;
use crate::loader::{self, AcpiConfig, BootRequest, Format};
use crate::paging::{EptEntry, MapFlags, NptEntry, PageTable};
use crate::virt::{Caps, EntryState};

/// Loads `image` into the guest's RAM with `cmdline`, by the boot protocol its format says.
fn load_kernel(
    ram: &GuestRam,
    image: &[u8],
    cmdline: &str,
    vcpus: u32,
) -> Result<EntryState, String> {
    let req = BootRequest {
        kernel: image,
        format: Format::Auto,
        cmdline,
        initrd: None,
        acpi: Some(AcpiConfig {
            vcpus,
            virtio_slots: &[],
        }),
    };
    loader::load(ram, &ram.layout(), &req)
        .map(|setup| setup.entry)
        .map_err(|e| alloc::format!("{e}"))
}

/// Builds the guest's nested page table (NPT or EPT, by vendor): exactly its RAM, nothing else.
fn build_nested(
    ram: &GuestRam,
    caps: &Caps,
) -> Result<crate::addr::HostPhysAddr, crate::paging::PagingError> {
    let mem = &mut FrameTables;
    let max = page_tables::max_page();
    match caps {
        Caps::Svm(_) => {
            let mut t = PageTable::<NptEntry>::new(mem)?;
            for r in ram.regions() {
                t.map(mem, r.gpa.as_u64(), r.hpa, r.len, MapFlags::RWX, max)?;
            }
            Ok(t.root())
        }
        Caps::Vmx(v) => {
            let max = if v.ept_1g {
                max
            } else {
                crate::paging::PageSize::Size2M
            };
            let mut t = PageTable::<EptEntry>::new(mem)?;
            for r in ram.regions() {
                t.map(mem, r.gpa.as_u64(), r.hpa, r.len, MapFlags::RWX, max)?;
            }
            Ok(t.root())
        }
    }
}

/// Builds every guest the boot modules describe.
pub fn build_guests(info: &BootInfo, caps: &Caps) -> Result<Vec<Arc<Guest>>, String> {
    let mut guests = Vec::new();
    let mut next_cpu = 1;
    for m in &info.modules {
        let Some(spec) = m.name.strip_prefix("guest:") else {
            continue;
        };
        let mut parts = spec.splitn(2, ' ');
        let name = parts.next().unwrap_or("guest");
        let cmdline = String::from(parts.next().unwrap_or(""));
        let size = 64 << 20;
        let base = memory::alloc_zeroed(size, LARGE_PAGE_SIZE)
            .map_err(|e| alloc::format!("{name}: {e}"))?;
        // SAFETY: the block was just allocated for this guest alone and is identity-mapped.
        let ram = unsafe { GuestRam::new(base, size) };
        let npt = build_nested(&ram, caps)
            .map_err(|e| alloc::format!("{name}: nested page table: {e}"))?;
        let image = memory::module_bytes(m);
        let loader = Box::new(move |ram: &GuestRam| load_kernel(ram, image, &cmdline, 1));
        let policy = if name.starts_with("crash") {
            CrashPolicy::Restart { limit: 3 }
        } else {
            CrashPolicy::Stop
        };
        guests.push(Arc::new(Guest::new(
            name,
            alloc::vec![next_cpu],
            ram,
            npt,
            guests.len() as u32 + 1,
            policy,
            loader,
        )));
        next_cpu += 1;
    }
    Ok(guests)
}
