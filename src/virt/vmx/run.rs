//! The world switch: load the guest's registers, VMLAUNCH/VMRESUME, store them at the VM exit.
//!
//! VMX switches RSP, RIP, RFLAGS, segments, control registers and the MSRs the VMCS names
//! (SDM vol.3 §27.3.2, §28.3, §28.5), but none of the other general registers. The host's
//! callee-saved registers and RFLAGS are pushed here; HOST_RSP is written right before the
//! entry so the exit lands on that stack at `bulkhead_vmx_exit` (HOST_RIP).

use crate::virt::GuestRegs;

core::arch::global_asm!(
    r#"
.section .text
.global bulkhead_vmx_run
.global bulkhead_vmx_exit
.global bulkhead_vmx_raise
// rdi = *mut GuestRegs, esi = 0 for VMLAUNCH, else VMRESUME.
// Returns 0 after a VM exit, or the RFLAGS of the failed instruction (CF/ZF say how; SDM
// vol.3 §31.2) when VMLAUNCH/VMRESUME or the VMWRITE of HOST_RSP failed.
bulkhead_vmx_run:
    pushfq
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov eax, 0x6C14                 // HOST_RSP
    vmwrite rax, rsp
    jbe 2f
    test esi, esi                   // MOVs below leave the flags alone
    mov rax, [rdi + 0*8]
    mov rcx, [rdi + 1*8]
    mov rdx, [rdi + 2*8]
    mov rbx, [rdi + 3*8]
    mov rbp, [rdi + 5*8]
    mov rsi, [rdi + 6*8]
    mov r8,  [rdi + 8*8]
    mov r9,  [rdi + 9*8]
    mov r10, [rdi + 10*8]
    mov r11, [rdi + 11*8]
    mov r12, [rdi + 12*8]
    mov r13, [rdi + 13*8]
    mov r14, [rdi + 14*8]
    mov r15, [rdi + 15*8]
    mov rdi, [rdi + 7*8]
    jnz 1f
    vmlaunch
    jmp 2f
1:
    vmresume
2:
    // Still in the host: the entry failed. GuestRegs in memory is unchanged.
    pushfq
    pop rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    popfq
    ret

bulkhead_vmx_exit:
    // RSP = HOST_RSP: the GuestRegs pointer is on top.
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0*8], rax
    mov [rdi + 1*8], rcx
    mov [rdi + 2*8], rdx
    mov [rdi + 3*8], rbx
    mov [rdi + 5*8], rbp
    mov [rdi + 6*8], rsi
    mov [rdi + 8*8], r8
    mov [rdi + 9*8], r9
    mov [rdi + 10*8], r10
    mov [rdi + 11*8], r11
    mov [rdi + 12*8], r12
    mov [rdi + 13*8], r13
    mov [rdi + 14*8], r14
    mov [rdi + 15*8], r15
    pop rax
    mov [rdi + 7*8], rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    popfq
    xor eax, eax
    ret

// One `int n; ret` per vector, 8 bytes apart: hands an interrupt the VM exit acknowledged to
// the host's own IDT handler, which also sends the EOI.
.balign 16
bulkhead_vmx_raise:
.set vmx_raise_vector, 0
.rept 256
    .balign 8
    int vmx_raise_vector
    ret
    .set vmx_raise_vector, vmx_raise_vector + 1
.endr
"#
);

extern "C" {
    fn bulkhead_vmx_run(regs: *mut GuestRegs, launched: u32) -> u64;
    fn bulkhead_vmx_exit();
}

/// HOST_RIP: where VM exits land.
pub fn exit_landing_pad() -> u64 {
    bulkhead_vmx_exit as *const () as u64
}

/// Enters the guest once. Returns `None` after a VM exit, or the RFLAGS of the failed
/// VMLAUNCH/VMRESUME.
///
/// # Safety
/// The VMCS must be current on this CPU and fully initialised, with HOST_RIP at
/// [`exit_landing_pad`] and host state matching this CPU; `launched` must match its launch
/// state.
pub unsafe fn enter(regs: &mut GuestRegs, launched: bool) -> Option<u64> {
    // SAFETY: the caller guarantees the VMCS is ready; the routine saves and restores every
    // callee-saved register and RFLAGS, and the exit comes back to it on the same stack.
    let flags = unsafe { bulkhead_vmx_run(regs, u32::from(launched)) };
    (flags != 0).then_some(flags)
}

/// Runs the host's IDT handler for `vector` as if the interrupt had arrived in the host.
///
/// # Safety
/// `vector` must be 2 (NMI) or an interrupt vector (≥ 32) whose handler ends with IRET and
/// expects no error code; for an external interrupt the vector must be in service at the
/// local APIC (acknowledged on exit), since the handler sends the EOI.
pub unsafe fn raise(vector: u8) {
    // SAFETY: the table entry executes `int vector; ret`; the IDT stubs save and restore every
    // register and RFLAGS, so only RAX (the call target) is clobbered.
    unsafe {
        core::arch::asm!(
            "lea rax, [rip + bulkhead_vmx_raise]",
            "lea rax, [rax + {v} * 8]",
            "call rax",
            v = in(reg) u64::from(vector),
            out("rax") _,
        )
    };
}
