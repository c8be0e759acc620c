/* Bulkhead's first instructions: the multiboot2 header and the 32-bit entry that GRUB jumps to
 * (on SeaBIOS and on UEFI alike: GRUB leaves boot services and enters in 32-bit protected mode,
 * multiboot2 spec §3.3). It identity-maps the first 4 GiB with 2 MiB pages, enters long mode and
 * calls `kernel_main(magic, info_addr)`. Intel syntax (global_asm! default). */

.set MB2_MAGIC,        0xE85250D6
.set MB2_ARCH_I386,    0
.set MB2_TAG_OPTIONAL, 1

.set CR0_PE,   1 << 0
.set CR0_WP,   1 << 16
.set CR0_PG,   1 << 31
.set CR4_PAE,  1 << 5
.set EFER_MSR, 0xC0000080
.set EFER_LME, 1 << 8
.set EFER_NXE, 1 << 11
.set PTE_P_W,  0x3
.set PDE_LARGE, 0x83

.section .multiboot2, "a"
.balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    /* Information request (type 1): command line, modules, memory map, ACPI old/new, EFI memory
     * map. Optional, so GRUB boots us even where a tag cannot be given. */
    .balign 8
mb2_info_req:
    .short 1
    .short MB2_TAG_OPTIONAL
    .long mb2_info_req_end - mb2_info_req
    .long 1, 3, 6, 14, 15, 17
mb2_info_req_end:
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

.section .boot.text, "ax"
.code32
.global _start
_start:
    cli
    cld
    mov edi, eax                    /* multiboot2 magic (0x36d76289) */
    mov esi, ebx                    /* physical address of the boot information */

    /* Zero .bss: the page tables and the stack live there, so nothing may be on the stack yet. */
    mov ebp, edi
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov edi, ebp

    mov esp, offset boot_stack_top

    /* Long mode available? (CPUID 0x80000001 EDX bit 29) */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz no_long_mode

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages = 4 GiB. */
    mov eax, offset boot_pdpt
    or eax, PTE_P_W
    mov [boot_pml4], eax

    mov ecx, 0
1:  mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, PTE_P_W
    mov [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 1b

    mov ecx, 0                      /* entry index over all four directories */
2:  mov eax, ecx
    shl eax, 21                     /* low 32 bits of the 2 MiB frame */
    or eax, PDE_LARGE
    mov [boot_pd + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                     /* bits 32+ of the frame address */
    mov [boot_pd + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, EFER_MSR
    rdmsr
    or eax, EFER_LME | EFER_NXE
    wrmsr
    mov eax, cr0
    or eax, CR0_PE | CR0_PG | CR0_WP
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    push 0x08
    mov eax, offset long_mode_entry
    push eax
    retf

no_long_mode:
    /* No serial yet; write a message to the VGA text buffer and stop. */
    mov edi, 0xB8000
    mov esi, offset no_long_mode_msg
3:  lodsb
    test al, al
    jz 4f
    mov ah, 0x4F
    stosw
    jmp 3b
4:  hlt
    jmp 4b

.code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ax, ax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, edi                    /* zero-extend both arguments */
    mov esi, esi
    xor ebp, ebp
    call kernel_main
5:  hlt
    jmp 5b

.section .rodata
no_long_mode_msg:
    .asciz "Bulkhead needs a 64-bit (long mode) CPU"

.balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF        /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

.section .bss
.balign 4096
.global boot_pml4
boot_pml4:
    .space 4096
boot_pdpt:
    .space 4096
boot_pd:
    .space 4096 * 4
.global boot_stack_bottom
boot_stack_bottom:
    .space 64 * 1024
.global boot_stack_top
boot_stack_top:
