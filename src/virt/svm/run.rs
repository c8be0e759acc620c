//! The world switch: load the guest's registers, VMRUN, save them again.
//!
//! VMRUN saves and restores only part of the host state (RSP, RAX, RIP, segments, control
//! registers, EFER, RFLAGS; AMD APM vol.2 §15.5.1). The other general registers are handled
//! here, and FS/GS/TR/LDTR/KernelGSBase/STAR/… (which Bulkhead's per-CPU data depends on) are
//! kept with VMSAVE/VMLOAD on a host VMCB around the guest's own VMLOAD/VMSAVE.

use crate::virt::GuestRegs;

core::arch::global_asm!(
    r#"
.section .text
.global bulkhead_svm_run
// rdi = *mut GuestRegs, rsi = guest VMCB PA, rdx = host VMCB PA. Called with GIF = 0.
bulkhead_svm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    push rdx
    push rsi
    mov rax, rdx
    vmsave rax
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
    mov rax, [rsp]
    vmload rax
    vmrun rax
    vmsave rax
    push rdi
    mov rdi, [rsp + 3*8]
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
    mov rax, [rsp + 8]
    vmload rax
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);

extern "C" {
    fn bulkhead_svm_run(regs: *mut GuestRegs, guest_vmcb: u64, host_vmcb: u64);
}

/// Runs the guest once.
///
/// # Safety
/// SVM must be enabled on this CPU (EFER.SVME, VM_HSAVE_PA set), GIF must be clear, and both
/// addresses must be valid VMCBs owned by this CPU, the guest one fully initialised.
pub unsafe fn vmrun(regs: &mut GuestRegs, guest_vmcb: u64, host_vmcb: u64) {
    // SAFETY: the caller guarantees the SVM preconditions; the routine saves and restores every
    // callee-saved register and the host's VMSAVE state.
    unsafe { bulkhead_svm_run(regs, guest_vmcb, host_vmcb) };
}

/// Clears the global interrupt flag.
///
/// # Safety
/// SVM must be enabled (EFER.SVME), else CLGI raises #UD.
pub unsafe fn clgi() {
    // SAFETY: the caller guarantees EFER.SVME is set.
    unsafe { core::arch::asm!("clgi", options(nomem, nostack)) };
}

/// Sets the global interrupt flag; pending host interrupts are taken after this.
///
/// # Safety
/// SVM must be enabled (EFER.SVME), else STGI raises #UD.
pub unsafe fn stgi() {
    // SAFETY: the caller guarantees EFER.SVME is set.
    unsafe { core::arch::asm!("stgi", options(nomem, nostack)) };
}
