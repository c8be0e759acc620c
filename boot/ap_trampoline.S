/* Start-up code for application processors. The boot CPU copies the bytes between
 * ap_tramp_start and ap_tramp_end to a free page below 1 MiB, fills the four slots at the end,
 * and sends INIT-SIPI-SIPI with that page's number. The AP starts in real mode with
 * CS = page << 8, IP = 0. The code finds its own linear base from CS, patches its GDT pointer
 * and far-jump targets, then goes real → protected → long mode with the boot CPU's CR3 and
 * calls ap_entry(arg) on the stack it was given. Everything is position independent. */

.set AP_CR0_PE,  1 << 0
.set AP_CR0_WP,  1 << 16
.set AP_CR0_PG,  1 << 31
.set AP_CR4_PAE, 1 << 5
.set AP_EFER,    0xC0000080
.set AP_EFER_LME_NXE, (1 << 8) | (1 << 11)

.set OFF_AP_GDT, ap_gdt - ap_tramp_start
.set OFF_AP_PM32, ap_pm32 - ap_tramp_start
.set OFF_AP_LM64, ap_lm64 - ap_tramp_start
.set OFF_AP_CR3, ap_cr3 - ap_tramp_start
.set OFF_AP_STACK, ap_stack - ap_tramp_start
.set OFF_AP_ARG, ap_arg - ap_tramp_start
.set OFF_AP_ENTRY_PTR, ap_entry_ptr - ap_tramp_start
.set OFF_AP_GDT_PTR, ap_gdt_ptr - ap_tramp_start
.set OFF_AP_FAR32, ap_far32 - ap_tramp_start
.set OFF_AP_FAR64, ap_far64 - ap_tramp_start

.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_tramp_start
ap_tramp_start:
.code16
    cli
    cld
    mov ax, cs
    mov ds, ax
    xor ebx, ebx
    mov bx, ax
    shl ebx, 4                                  /* ebx = linear address of this page */

    lea eax, [ebx + OFF_AP_GDT]
    mov dword ptr [OFF_AP_GDT_PTR + 2], eax
    lea eax, [ebx + OFF_AP_PM32]
    mov dword ptr [OFF_AP_FAR32], eax
    lea eax, [ebx + OFF_AP_LM64]
    mov dword ptr [OFF_AP_FAR64], eax

    lgdt [OFF_AP_GDT_PTR]
    mov eax, cr0
    or eax, AP_CR0_PE
    mov cr0, eax
    .byte 0x66, 0xEA                            /* ljmp 0x18:ap_pm32 (32-bit offset) */
ap_far32:
    .long 0
    .short 0x18

.code32
ap_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, AP_CR4_PAE
    mov cr4, eax
    mov eax, [ebx + OFF_AP_CR3]
    mov cr3, eax
    mov ecx, AP_EFER
    rdmsr
    or eax, AP_EFER_LME_NXE
    wrmsr
    mov eax, cr0
    or eax, AP_CR0_PG | AP_CR0_WP
    mov cr0, eax
    .byte 0xEA                                  /* ljmp 0x08:ap_lm64 */
ap_far64:
    .long 0
    .short 0x08

.code64
ap_lm64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov ebx, ebx
    mov rsp, [rbx + OFF_AP_STACK]
    mov rdi, [rbx + OFF_AP_ARG]
    mov rax, [rbx + OFF_AP_ENTRY_PTR]
    xor ebp, ebp
    call rax
1:  cli
    hlt
    jmp 1b

.balign 8
ap_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF                    /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF                    /* 0x10: data */
    .quad 0x00CF9A000000FFFF                    /* 0x18: 32-bit code */
ap_gdt_end:
ap_gdt_ptr:
    .short ap_gdt_end - ap_gdt - 1
    .long 0
    .short 0
.balign 8
.global ap_tramp_slots
ap_tramp_slots:
ap_cr3:
    .quad 0
ap_stack:
    .quad 0
ap_entry_ptr:
    .quad 0
ap_arg:
    .quad 0
.global ap_tramp_end
ap_tramp_end:
