//! The interrupt descriptor table, the assembly entry stubs and the dispatcher.
//!
//! Stable Rust has no `x86-interrupt` ABI, so every vector gets a 16-byte stub that pushes a
//! uniform frame (a dummy error code where the CPU pushes none, then the vector) and jumps to a
//! common routine that saves the general registers and calls [`trap_dispatch`].

use core::sync::atomic::{AtomicUsize, Ordering};

use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use super::{cpu, tables};

/// Vector of the spurious-interrupt register of the local APIC.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Vector used to kick a CPU out of guest mode or out of HLT (IPI).
pub const KICK_VECTOR: u8 = 0xF0;
/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0xEF;

const NMI: u64 = 2;
const DOUBLE_FAULT: u64 = 8;
const MACHINE_CHECK: u64 = 18;

core::arch::global_asm!(
    r#"
.section .text
.balign 16
.global trap_stubs
trap_stubs:
.set trap_vector, 0
.rept 256
    .balign 16
    .if (trap_vector == 8) || ((trap_vector >= 10) && (trap_vector <= 14)) || (trap_vector == 17) || (trap_vector == 21) || (trap_vector == 29) || (trap_vector == 30)
    .else
    push 0
    .endif
    push trap_vector
    jmp trap_common
    .set trap_vector, trap_vector + 1
.endr

trap_common:
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rdi, rsp
    cld
    call trap_dispatch
    pop rax
    pop rbx
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    pop rbp
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
    add rsp, 16
    iretq
"#
);

/// What the stubs leave on the stack: saved registers, vector, error code, CPU frame.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static IDT: spin::Once<Idt> = spin::Once::new();

/// Handlers for vectors 32..=255, as function addresses (0 = none).
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Registers `handler` for interrupt `vector` (≥ 32).
pub fn set_handler(vector: u8, handler: fn(&mut TrapFrame)) {
    assert!(vector >= 32, "vectors below 32 are exceptions");
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

fn gate(handler: u64, ist: u16) -> (u64, u64) {
    const PRESENT_INTERRUPT_GATE: u64 = 0x8E;
    let low = (handler & 0xFFFF)
        | (u64::from(tables::KERNEL_CS.0) << 16)
        | (u64::from(ist & 0x7) << 32)
        | (PRESENT_INTERRUPT_GATE << 40)
        | (((handler >> 16) & 0xFFFF) << 48);
    (low, handler >> 32)
}

/// Loads the shared IDT on this CPU (built on first use).
pub fn load() {
    let idt = IDT.call_once(|| {
        extern "C" {
            static trap_stubs: u8;
        }
        let base = core::ptr::addr_of!(trap_stubs) as u64;
        let mut t = Idt([0; 512]);
        for v in 0..256u64 {
            let ist = match v {
                DOUBLE_FAULT => tables::IST_DOUBLE_FAULT,
                NMI => tables::IST_NMI,
                MACHINE_CHECK => tables::IST_MACHINE_CHECK,
                _ => 0,
            };
            let (lo, hi) = gate(base + v * 16, ist);
            t.0[v as usize * 2] = lo;
            t.0[v as usize * 2 + 1] = hi;
        }
        t
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is static and every gate points at a stub in .text.
    unsafe { lidt(&ptr) };
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error (#DE)",
    "debug (#DB)",
    "NMI",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack fault (#SS)",
    "general protection (#GP)",
    "page fault (#PF)",
    "reserved (15)",
    "x87 floating point (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating point (#XM)",
    "virtualization (#VE)",
    "control protection (#CP)",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection (#HV)",
    "VMM communication (#VC)",
    "security (#SX)",
    "reserved (31)",
];

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector == NMI && super::smp::stop_requested() {
        cpu::halt_forever();
    }
    if vector < 32 {
        exception(frame);
    }
    let handler = HANDLERS[vector as usize & 0xFF].load(Ordering::Acquire);
    if handler != 0 {
        // SAFETY: only `set_handler` stores non-zero values, and it stores `fn(&mut TrapFrame)`.
        let f: fn(&mut TrapFrame) = unsafe { core::mem::transmute(handler) };
        f(frame);
    }
    if vector as u8 != SPURIOUS_VECTOR {
        super::apic::eoi();
    }
}

fn exception(frame: &TrapFrame) -> ! {
    let name = EXCEPTION_NAMES[frame.vector as usize];
    crate::println!(
        "EXCEPTION on cpu{}: {} (vector {}) error code {:#x}\n  RIP {:#018x}  CS {:#x}  RFLAGS {:#x}  RSP {:#018x}  SS {:#x}  CR2 {:#018x}\n  RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}\n  RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}\n  R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}\n  R13 {:#018x} R14 {:#018x} R15 {:#018x}",
        super::percpu::index(),
        name,
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss,
        cpu::read_cr2(),
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
    panic!("unhandled {name} at RIP {:#x}", frame.rip);
}
