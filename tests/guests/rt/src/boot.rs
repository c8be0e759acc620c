//! The PVH boot path: the `XEN_ELFNOTE_PHYS32_ENTRY` note, the 32-bit entry stub, the boot page
//! tables (2 MiB identity map of the first 4 GiB), the 64-bit GDT and the stack.
//!
//! PVH entry state (Xen `docs/misc/pvh.pandoc`, "Initial state"): 32-bit protected mode, paging
//! off, flat 4 GiB CS (execute/read) and DS/ES/SS (read/write), EBX = physical address of
//! `hvm_start_info`, all other registers undefined. From there we zero .bss, build page tables,
//! enter long mode (AMD APM vol.2 §14.6.1 / Intel SDM vol.3 §10.8.5) and call `guest_main(ebx)`.

use core::arch::global_asm;

/// Size of the boot stack, which is also the only stack (interrupt handlers run on it too).
pub const STACK_SIZE_BYTES: usize = 64 * 1024;

/// Base of the region the boot stub maps uncacheable: the PCI hole where device MMIO lives.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;

/// GDT selectors set up by the stub.
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;

extern "C" {
    static rt_pml4: u8;
    static rt_pdpt: u8;
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical (= virtual) address of the page-map level-4 table built by the stub.
pub fn pml4_addr() -> u64 {
    core::ptr::addr_of!(rt_pml4) as u64
}

/// Physical address of the page-directory-pointer table that maps the first 512 GiB.
pub fn pdpt_addr() -> u64 {
    core::ptr::addr_of!(rt_pdpt) as u64
}

/// The physical range `[start, end)` that the guest image (code, data, bss, stack) occupies.
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

global_asm!(
    r#"
.set XEN_ELFNOTE_PHYS32_ENTRY, 18
.set CR0_PE,     1 << 0
.set CR0_PG,     1 << 31
.set CR4_PAE,    1 << 5
.set EFER_MSR,   0xC0000080
.set EFER_LME,   1 << 8
.set PTE_P_RW,   0x3
.set PDE_2M,     0x83
.set PTE_PWT_PCD, 0x18
.set TWO_MIB,    0x200000
.set PD_ENTRIES_4G, 2048
.set PD_FIRST_MMIO, {mmio_first_pde}

/* ELF note: namesz, descsz, type, name "Xen\0", desc = 32-bit physical entry address. */
.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 4
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long rt_pvh_entry32
    .balign 4

.section .text.rt_entry32, "ax"
.code32
.global rt_pvh_entry32
rt_pvh_entry32:
    cli
    cld
    /* EBP holds the hvm_start_info address until the 64-bit code passes it on. */
    mov ebp, ebx

    /* Zero .bss ourselves: a loader may hand over recycled RAM, and the tables and stack live
     * there. Nothing may be on the stack yet. */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    mov esp, offset rt_stack_top

    /* PML4[0] -> PDPT */
    mov eax, offset rt_pdpt
    or eax, PTE_P_RW
    mov [rt_pml4], eax

    /* PDPT[0..4] -> four page directories */
    mov edi, offset rt_pdpt
    mov eax, offset rt_pd
    or eax, PTE_P_RW
    mov ecx, 4
.Lrt_fill_pdpt:
    mov [edi], eax
    add eax, 4096
    add edi, 8
    dec ecx
    jnz .Lrt_fill_pdpt

    /* 2048 x 2 MiB identity pages; from the PCI hole on they are uncacheable (PCD|PWT). */
    mov edi, offset rt_pd
    mov eax, PDE_2M
    xor ecx, ecx
.Lrt_fill_pd:
    mov edx, eax
    cmp ecx, PD_FIRST_MMIO
    jb .Lrt_cacheable
    or edx, PTE_PWT_PCD
.Lrt_cacheable:
    mov [edi + ecx * 8], edx
    add eax, TWO_MIB
    inc ecx
    cmp ecx, PD_ENTRIES_4G
    jb .Lrt_fill_pd

    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    mov eax, offset rt_pml4
    mov cr3, eax
    mov ecx, EFER_MSR
    rdmsr
    or eax, EFER_LME
    wrmsr
    lgdt [rt_gdt_ptr]
    mov eax, cr0
    or eax, CR0_PG | CR0_PE
    mov cr0, eax

    /* Now in compatibility mode; a far return loads the 64-bit code segment. */
    push {cs}
    mov eax, offset rt_entry64
    push eax
    retf

.code64
rt_entry64:
    mov ax, {ds}
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + rt_stack_top]
    mov edi, ebp
    xor ebp, ebp
    call guest_main
.Lrt_dead:
    cli
    hlt
    jmp .Lrt_dead

.section .data.rt_gdt, "aw"
.balign 16
rt_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF    /* 0x08: 64-bit code, present, DPL0, accessed */
    .quad 0x00CF93000000FFFF    /* 0x10: flat data, present, DPL0, accessed */
rt_gdt_end:
.balign 4
rt_gdt_ptr:
    .short rt_gdt_end - rt_gdt - 1
    .long rt_gdt

.section .bss.rt_paging, "aw", @nobits
.balign 4096
.global rt_pml4
rt_pml4:
    .skip 4096
.global rt_pdpt
rt_pdpt:
    .skip 4096
rt_pd:
    .skip 4096 * 4
.balign 16
rt_stack:
    .skip {stack_size}
rt_stack_top:

.section .text
"#,
    mmio_first_pde = const MMIO_HOLE_START / 0x20_0000,
    cs = const KERNEL_CS,
    ds = const KERNEL_DS,
    stack_size = const STACK_SIZE_BYTES,
);
