//! Building the guests (interim: one guest per boot module named `guest:<name>`; replaced by
//! the manifest's Plan and the full loader as they land).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::guest::{CrashPolicy, Guest};
use crate::addr::{GuestPhysAddr, LARGE_PAGE_SIZE};
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::memory;
use crate::arch::x86_64::page_tables::{self, FrameTables};
use crate::boot::BootInfo;
use crate::guest_mem::GuestMemory;
use crate::paging::{EptEntry, MapFlags, NptEntry, PageTable};
use crate::virt::{Caps, EntryState, Segment};

const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = 0x6100;
const CMDLINE: u64 = 0x7000;

fn u16le(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}
fn u32le(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        b[o..o + 4].try_into().unwrap_or_default(),
    ))
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

fn load_pvh(ram: &GuestRam, image: &[u8], cmdline: &str) -> Result<EntryState, String> {
    if image.len() < 64 || &image[..4] != b"\x7fELF" {
        return Err(String::from("not an ELF image"));
    }
    let phoff = u64le(image, 32) as usize;
    let phentsize = u16le(image, 54) as usize;
    let phnum = u16le(image, 56) as usize;
    let mut entry = None;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 56 > image.len() {
            return Err(String::from("program header outside the image"));
        }
        let (ty, off, paddr, filesz) = (
            u32le(image, o),
            u64le(image, o + 8) as usize,
            u64le(image, o + 24),
            u64le(image, o + 32) as usize,
        );
        if off.checked_add(filesz).is_none_or(|e| e > image.len()) {
            return Err(String::from("segment outside the image"));
        }
        match ty {
            1 => ram
                .write(GuestPhysAddr::new(paddr), &image[off..off + filesz])
                .map_err(|e| alloc::format!("{e}"))?,
            4 => {
                let mut n = off;
                while n + 12 <= off + filesz {
                    let (namesz, descsz, nty) = (
                        u32le(image, n) as usize,
                        u32le(image, n + 4) as usize,
                        u32le(image, n + 8),
                    );
                    let desc = n + 12 + namesz.div_ceil(4) * 4;
                    if nty == 18 && desc + 4 <= image.len() {
                        entry = Some(u32le(image, desc));
                    }
                    n = desc + descsz.div_ceil(4) * 4;
                }
            }
            _ => {}
        }
    }
    let entry = entry.ok_or_else(|| String::from("no PVH entry note"))?;
    let w = |gpa: u64, bytes: &[u8]| {
        ram.write(GuestPhysAddr::new(gpa), bytes)
            .map_err(|e| alloc::format!("{e}"))
    };
    w(CMDLINE, cmdline.as_bytes())?;
    w(CMDLINE + cmdline.len() as u64, &[0])?;
    let mut mm = Vec::new();
    for r in ram.regions() {
        mm.extend_from_slice(&r.gpa.as_u64().to_le_bytes());
        mm.extend_from_slice(&r.len.to_le_bytes());
        mm.extend_from_slice(&1u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
    }
    w(MEMMAP, &mm)?;
    let mut si = Vec::new();
    si.extend_from_slice(&0x336e_c578u32.to_le_bytes());
    si.extend_from_slice(&1u32.to_le_bytes());
    si.extend_from_slice(&0u32.to_le_bytes());
    si.extend_from_slice(&0u32.to_le_bytes());
    si.extend_from_slice(&0u64.to_le_bytes());
    si.extend_from_slice(&CMDLINE.to_le_bytes());
    si.extend_from_slice(&0u64.to_le_bytes());
    si.extend_from_slice(&MEMMAP.to_le_bytes());
    si.extend_from_slice(&(ram.regions().count() as u32).to_le_bytes());
    si.extend_from_slice(&0u32.to_le_bytes());
    w(START_INFO, &si)?;
    let code = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xFFFF_FFFF,
        access: 0xC09B,
    };
    let data = Segment {
        selector: 0x18,
        base: 0,
        limit: 0xFFFF_FFFF,
        access: 0xC093,
    };
    let tr = Segment {
        selector: 0x20,
        base: 0,
        limit: 0x67,
        access: 0x8B,
    };
    let ldtr = Segment {
        selector: 0,
        base: 0,
        limit: 0,
        access: 0x82,
    };
    let mut st = EntryState {
        rip: entry,
        rflags: 2,
        cr0: 0x11,
        cs: code,
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        tr,
        ldtr,
        ..Default::default()
    };
    st.regs.gprs[3] = START_INFO;
    Ok(st)
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
        let loader = Box::new(move |ram: &GuestRam| load_pvh(ram, image, &cmdline));
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
