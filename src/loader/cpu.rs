//! The initial vCPU state each boot protocol prescribes, and the GDT and identity page tables
//! in guest RAM that back it.
//!
//! The segment registers' hidden parts and the GDT written to guest RAM come from one table of
//! descriptors, so a guest that reloads a selector gets exactly the segment it started with.

use alloc::vec;

use crate::addr::{GuestPhysAddr, LARGE_PAGE_SIZE, PAGE_SIZE};
use crate::guest_mem::GuestMemory;
use crate::layout::LOW_RAM_END;
use crate::virt::{reg, EntryState, GuestRegs, Segment};

use super::error::{write_err, LoadError};
use super::layout::{BOOT_GDT, PAGE_TABLES, PAGE_TABLES_BYTES};

/// Selector of the boot code segment (Linux `__BOOT_CS`, boot.rst "64-bit Boot Protocol").
pub const BOOT_CS: u16 = 0x10;
/// Selector of the boot data segment (Linux `__BOOT_DS`).
pub const BOOT_DS: u16 = 0x18;
/// Selector of the TSS descriptor.
pub const BOOT_TSS: u16 = 0x20;
/// GDT size: null, unused, code, data, and a TSS slot wide enough for the 16-byte long-mode
/// form (Intel SDM vol.3 §8.2.3).
const GDT_BYTES: u64 = 0x30;
const _: () = assert!(GDT_BYTES <= super::layout::BOOT_GDT_BYTES);

/// Access bytes (Intel SDM vol.3 §3.4.5): present, DPL 0.
const ACCESS_CODE: u8 = 0x9B; // code segment, execute/read, accessed
const ACCESS_DATA: u8 = 0x93; // data segment, read/write, accessed
const ACCESS_TSS_BUSY: u8 = 0x8B; // system segment, busy 32/64-bit TSS
const ACCESS_LDT: u8 = 0x82; // system segment, LDT
/// Flag nibble bits (descriptor bits 55:52 / VMX access-rights bits 15:12).
const FLAG_LONG: u8 = 0x2;
const FLAG_DB32: u8 = 0x4;
const FLAG_GRANULAR_4K: u8 = 0x8;
/// The PVH contract's TSS limit (Xen docs/misc/pvh.pandoc): 0x68 bytes, the 32-bit TSS.
const TSS_LIMIT: u32 = 0x67;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 always reads as one; IF, TF and VM stay clear as both protocols require.
const RFLAGS_FIXED: u64 = 1 << 1;

/// Page-table entry bits (Intel SDM vol.3 §5.5, AMD APM vol.2 §5.3).
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
const PTE_LARGE: u64 = 1 << 7;
const ENTRIES_PER_TABLE: u64 = 512;
/// The identity map covers the first 4 GiB: one PD per GiB.
const IDENTITY_MAP_GIB: u64 = 4;
// PML4, PDPT and one PD per GiB must fit the space the layout gives them.
const _: () = assert!((2 + IDENTITY_MAP_GIB) * PAGE_SIZE == PAGE_TABLES_BYTES);
/// What the boot page tables identity-map.
pub const IDENTITY_MAP_END: u64 = IDENTITY_MAP_GIB << 30;

/// A flat segment descriptor, the one source for both the GDT entry and the hidden state.
#[derive(Clone, Copy)]
struct Descriptor {
    access: u8,
    flags: u8,
    /// Byte-granular limit (what the CPU's hidden limit holds).
    limit: u32,
}

impl Descriptor {
    const fn flat(access: u8, flags: u8) -> Self {
        Self {
            access,
            flags: flags | FLAG_GRANULAR_4K,
            limit: u32::MAX,
        }
    }

    /// The 8-byte GDT entry with base 0 (Intel SDM vol.3 Figure 3-8).
    fn gdt_entry(&self) -> u64 {
        let raw_limit = if self.flags & FLAG_GRANULAR_4K != 0 {
            self.limit >> 12
        } else {
            self.limit
        };
        u64::from(raw_limit & 0xFFFF)
            | u64::from(self.access) << 40
            | u64::from((raw_limit >> 16) & 0xF) << 48
            | u64::from(self.flags & 0xF) << 52
    }

    fn segment(&self, selector: u16) -> Segment {
        Segment {
            selector,
            base: 0,
            limit: self.limit,
            access: u16::from(self.access) | u16::from(self.flags) << 12,
        }
    }
}

const CODE32: Descriptor = Descriptor::flat(ACCESS_CODE, FLAG_DB32);
const CODE64: Descriptor = Descriptor::flat(ACCESS_CODE, FLAG_LONG);
const DATA: Descriptor = Descriptor::flat(ACCESS_DATA, FLAG_DB32);
const TSS: Descriptor = Descriptor {
    access: ACCESS_TSS_BUSY,
    flags: 0,
    limit: TSS_LIMIT,
};
/// The architectural reset state of LDTR (Intel SDM vol.3 Table 10-1), valid for both vendors.
const LDT: Descriptor = Descriptor {
    access: ACCESS_LDT,
    flags: 0,
    limit: 0xFFFF,
};

/// Writes the GDT for `code` and returns the entry state's segment part.
fn write_gdt(mem: &dyn GuestMemory, code: Descriptor) -> Result<EntryState, LoadError> {
    let mut gdt = [0u8; GDT_BYTES as usize];
    for (selector, desc) in [(BOOT_CS, code), (BOOT_DS, DATA), (BOOT_TSS, TSS)] {
        let at = usize::from(selector);
        gdt[at..at + 8].copy_from_slice(&desc.gdt_entry().to_le_bytes());
    }
    mem.write(BOOT_GDT, &gdt).map_err(write_err("boot GDT"))?;
    let data = DATA.segment(BOOT_DS);
    Ok(EntryState {
        rflags: RFLAGS_FIXED,
        cs: code.segment(BOOT_CS),
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        tr: TSS.segment(BOOT_TSS),
        ldtr: LDT.segment(0),
        gdtr_base: BOOT_GDT.as_u64(),
        gdtr_limit: (GDT_BYTES - 1) as u16,
        ..EntryState::default()
    })
}

/// The PVH entry state (Xen docs/misc/pvh.pandoc, "Initial state"): 32-bit protected mode,
/// paging off, flat CS/DS/ES/SS, a busy TSS of limit 0x67 at base 0, EBX = `start_info`.
pub(crate) fn pvh_entry_state(
    mem: &dyn GuestMemory,
    entry: u32,
    start_info: GuestPhysAddr,
) -> Result<EntryState, LoadError> {
    let mut state = write_gdt(mem, CODE32)?;
    let mut regs = GuestRegs::default();
    regs.set_gpr(reg::RBX, start_info.as_u64());
    state.regs = regs;
    state.rip = u64::from(entry);
    state.cr0 = CR0_PE | CR0_ET;
    Ok(state)
}

/// The Linux 64-bit entry state (boot.rst "64-bit Boot Protocol"): long mode with the identity
/// map, CS = `__BOOT_CS`, DS/ES/SS = `__BOOT_DS`, interrupts off, RSI = `boot_params`.
pub(crate) fn linux64_entry_state(
    mem: &dyn GuestMemory,
    entry: u64,
    boot_params: GuestPhysAddr,
) -> Result<EntryState, LoadError> {
    let cr3 = write_identity_page_tables(mem)?;
    let mut state = write_gdt(mem, CODE64)?;
    let mut regs = GuestRegs::default();
    regs.set_gpr(reg::RSI, boot_params.as_u64());
    state.regs = regs;
    state.rip = entry;
    state.cr0 = CR0_PE | CR0_ET | CR0_PG;
    state.cr3 = cr3.as_u64();
    state.cr4 = CR4_PAE;
    state.efer = EFER_LME | EFER_LMA;
    Ok(state)
}

/// Builds 4-level page tables identity-mapping [0, 4 GiB) with 2 MiB pages (2 MiB pages need
/// no CPUID feature, unlike 1 GiB ones) and returns the PML4's address. The device window is
/// mapped uncacheable (PCD|PWT) so an early MMIO access through it is not cached.
fn write_identity_page_tables(mem: &dyn GuestMemory) -> Result<GuestPhysAddr, LoadError> {
    let table = |n: u64| PAGE_TABLES + n * PAGE_SIZE;
    let (pml4, pdpt) = (table(0), table(1));
    let write = |at: GuestPhysAddr, entries: &[u64]| -> Result<(), LoadError> {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for (slot, e) in page.chunks_exact_mut(8).zip(entries) {
            slot.copy_from_slice(&e.to_le_bytes());
        }
        mem.write(at, &page).map_err(write_err("boot page tables"))
    };
    write(pml4, &[pdpt.as_u64() | PTE_PRESENT | PTE_WRITABLE])?;
    let pdpt_entries: alloc::vec::Vec<u64> = (0..IDENTITY_MAP_GIB)
        .map(|gib| table(2 + gib).as_u64() | PTE_PRESENT | PTE_WRITABLE)
        .collect();
    write(pdpt, &pdpt_entries)?;
    for gib in 0..IDENTITY_MAP_GIB {
        let pd: alloc::vec::Vec<u64> = (0..ENTRIES_PER_TABLE)
            .map(|i| {
                let addr = (gib * ENTRIES_PER_TABLE + i) * LARGE_PAGE_SIZE;
                let caching = if addr >= LOW_RAM_END.as_u64() {
                    PTE_PCD | PTE_PWT
                } else {
                    0
                };
                addr | PTE_PRESENT | PTE_WRITABLE | PTE_LARGE | caching
            })
            .collect();
        write(table(2 + gib), &pd)?;
    }
    Ok(pml4)
}
