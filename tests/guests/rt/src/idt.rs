//! The IDT for all 256 vectors: entry stubs in `global_asm!`, one common path that saves the
//! registers and calls [`rt_exception`]. Exceptions (0..31) either let [`crate::fault`] recover
//! from an expected fault or are reported and stop the guest; interrupts (32..255) go to
//! [`crate::irq`]. Guests that never execute STI see no interrupts, as before.

use core::arch::{asm, global_asm};

use crate::boot::KERNEL_CS;

/// Exception vectors (Intel SDM vol.3 §6.3.1, table 6-1).
pub const DE: u8 = 0;
pub const UD: u8 = 6;
pub const DF: u8 = 8;
pub const GP: u8 = 13;
pub const PF: u8 = 14;

/// CPU exception vectors: 0..31 (Intel SDM vol.3 §6.2).
const NUM_EXCEPTIONS: usize = 32;
/// Every vector the IDT has a gate for.
const NUM_VECTORS: usize = 256;
/// Present, DPL 0, 64-bit interrupt gate (type 0xE): Intel SDM vol.3 §6.14.1.
const GATE_INTERRUPT_PRESENT: u64 = 0x8E;

/// Registers as the common stub leaves them on the stack, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Short name of an exception vector, as the manuals spell it.
pub fn vector_name(vector: u8) -> &'static str {
    const NAMES: [&str; NUM_EXCEPTIONS] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "#MF-legacy",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved-15",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
        "reserved-22",
        "reserved-23",
        "reserved-24",
        "reserved-25",
        "reserved-26",
        "reserved-27",
        "#HV",
        "#VC",
        "#SX",
        "reserved-31",
    ];
    NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("interrupt")
}

// Each stub pushes a zero error code where the CPU pushes none (so the frame has one layout),
// then the vector, and joins the common path; it also appends its own address to
// `rt_isr_table`, so the table is in vector order by construction. 15 GPR pushes + vector +
// error code + the CPU's 5-word frame = 22 words; the CPU aligned RSP to 16 before pushing,
// so RSP is 16-aligned at the call (SysV ABI). The x86_64-unknown-none target has no red zone
// and no SSE, so an interrupt may land anywhere without saving more than the GPRs.
global_asm!(
    r#"
.pushsection .rodata.rt_isr_table, "a"
.balign 8
.global rt_isr_table
rt_isr_table:
.popsection

.macro RT_ISR vec, has_error_code
.balign 16
1:
.if \has_error_code == 0
    push 0
.endif
    push \vec
    jmp rt_isr_common
.pushsection .rodata.rt_isr_table, "a"
    .quad 1b
.popsection
.endm

.section .text.rt_isr, "ax"
RT_ISR 0, 0
RT_ISR 1, 0
RT_ISR 2, 0
RT_ISR 3, 0
RT_ISR 4, 0
RT_ISR 5, 0
RT_ISR 6, 0
RT_ISR 7, 0
RT_ISR 8, 1
RT_ISR 9, 0
RT_ISR 10, 1
RT_ISR 11, 1
RT_ISR 12, 1
RT_ISR 13, 1
RT_ISR 14, 1
RT_ISR 15, 0
RT_ISR 16, 0
RT_ISR 17, 1
RT_ISR 18, 0
RT_ISR 19, 0
RT_ISR 20, 0
RT_ISR 21, 1
RT_ISR 22, 0
RT_ISR 23, 0
RT_ISR 24, 0
RT_ISR 25, 0
RT_ISR 26, 0
RT_ISR 27, 0
RT_ISR 28, 0
RT_ISR 29, 1
RT_ISR 30, 1
RT_ISR 31, 0
/* External interrupts and IPIs never push an error code. */
.set rt_vec, 32
.rept 224
RT_ISR rt_vec, 0
.set rt_vec, rt_vec + 1
.endr

rt_isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call rt_exception
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

.section .text
"#
);

extern "C" {
    static rt_isr_table: [u64; NUM_VECTORS];
}

#[repr(C, align(16))]
struct Idt([u64; 2 * NUM_VECTORS]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

static IDT: spin::Once<Idt> = spin::Once::new();

fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xFFFF)
        | (u64::from(KERNEL_CS) << 16)
        | (GATE_INTERRUPT_PRESENT << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    [low, handler >> 32]
}

/// Builds the IDT (once) and loads it.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut entries = [0u64; 2 * NUM_VECTORS];
        // SAFETY: rt_isr_table is a read-only table of 256 stub addresses, one per vector in
        // order, emitted by the RT_ISR invocations above.
        let handlers = unsafe { &rt_isr_table };
        for (pair, &handler) in entries.chunks_exact_mut(2).zip(handlers.iter()) {
            pair.copy_from_slice(&gate(handler));
        }
        Idt(entries)
    });
    let pointer = DescriptorPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: idt as *const Idt as u64,
    };
    // SAFETY: the IDT lives in a static for the rest of the guest's life and every gate points
    // at a stub that follows the frame layout rt_exception expects.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack)) };
}

/// Loads an empty IDT and raises #UD: with no usable gate the CPU escalates #UD → #GP → #DF →
/// shutdown (a triple fault; Intel SDM vol.3 §6.15, "Interrupt 8"). Only the crash guest wants
/// this; it is here because it needs the same descriptor format as [`init`].
pub fn triple_fault() -> ! {
    let pointer = DescriptorPointer { limit: 0, base: 0 };
    // SAFETY: the point is to stop this CPU; nothing runs after the shutdown.
    unsafe {
        asm!("lidt [{}]", "ud2", in(reg) &pointer, options(nostack, noreturn));
    }
}

/// Called by the common stub with the saved registers. Returning resumes at `frame.rip` with
/// `frame.rsp`, which [`crate::fault`] rewrites to recover from an expected fault.
#[no_mangle]
extern "C" fn rt_exception(frame: &mut ExceptionFrame) {
    // An interrupt that arrives while a `fault::catch` is armed is not the fault it waits for.
    if frame.vector >= NUM_EXCEPTIONS as u64 {
        crate::irq::dispatch(frame);
        return;
    }
    if crate::fault::recover(frame) {
        return;
    }
    let vector = frame.vector as u8;
    crate::println!(
        "FAIL {}: unexpected exception {} (vector {}) at RIP {:#x}, error code {:#x}, CR2 {:#x}, RSP {:#x}",
        crate::runtime::guest_name(),
        vector_name(vector),
        vector,
        frame.rip,
        frame.error_code,
        crate::cpu::cr2(),
        frame.rsp,
    );
    crate::runtime::exit(1);
}
