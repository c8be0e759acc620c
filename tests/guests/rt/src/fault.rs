//! Running a closure that may fault and getting the fault back as a value.
//!
//! [`catch`] works like setjmp/longjmp with the exception handler as the longjmp: the asm
//! trampoline `rt_try_call` saves the callee-saved registers on the stack, records that stack
//! pointer and the address of its landing pad, then calls the closure. If an exception arrives
//! while armed, [`recover`] rewrites the interrupt frame so that IRETQ resumes at the landing pad
//! on the recorded stack; the pad restores the callee-saved registers and returns "faulted".
//! Frames of the closure are abandoned, not unwound: closures given to `catch` should own
//! nothing that needs dropping (it would leak, which is safe).

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::idt::{vector_name, ExceptionFrame};

/// The exception a closure raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: u64,
    /// Address of the faulting instruction.
    pub rip: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (error code {:#x}) at RIP {:#x}",
            vector_name(self.vector),
            self.error_code,
            self.rip
        )
    }
}

/// How an [`expect_fault`] attempt differed from what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMismatch {
    /// The closure ran to completion.
    NoFault { expected: u8 },
    /// The closure raised another exception.
    Other { expected: u8, got: Fault },
}

impl fmt::Display for FaultMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFault { expected } => {
                write!(
                    f,
                    "expected {} but no exception was raised",
                    vector_name(*expected)
                )
            }
            Self::Other { expected, got } => {
                write!(f, "expected {} but got {}", vector_name(*expected), got)
            }
        }
    }
}

/// Shared between `rt_try_call` (which writes the first two fields by offset) and the handler.
#[repr(C)]
struct Recovery {
    /// RSP after `rt_try_call` pushed the callee-saved registers.
    saved_rsp: AtomicU64,
    /// Address of `rt_try_call`'s landing pad.
    landing_rip: AtomicU64,
    is_armed: AtomicBool,
    vector: AtomicU64,
    error_code: AtomicU64,
    fault_rip: AtomicU64,
}

static RECOVERY: Recovery = Recovery {
    saved_rsp: AtomicU64::new(0),
    landing_rip: AtomicU64::new(0),
    is_armed: AtomicBool::new(false),
    vector: AtomicU64::new(0),
    error_code: AtomicU64::new(0),
    fault_rip: AtomicU64::new(0),
};

// rt_try_call(func: extern "C" fn(*mut u8), data: *mut u8, recovery: *mut Recovery) -> u64
// Returns 0 when func returned, 1 when an exception was recovered.
global_asm!(
    r#"
.section .text.rt_try_call, "ax"
.global rt_try_call
rt_try_call:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rdx], rsp
    lea rax, [rip + rt_try_landing]
    mov [rdx + 8], rax
    /* Entry RSP was 8 mod 16; six pushes keep it so: one more slot aligns the call. */
    sub rsp, 8
    mov rax, rdi
    mov rdi, rsi
    call rax
    add rsp, 8
    xor eax, eax
    jmp rt_try_done
rt_try_landing:
    mov eax, 1
rt_try_done:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
.section .text
"#
);

extern "C" {
    fn rt_try_call(func: extern "C" fn(*mut u8), data: *mut u8, recovery: *const Recovery) -> u64;
}

struct Slot<F, R> {
    func: Option<F>,
    result: Option<R>,
}

extern "C" fn call_slot<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: `catch` passes a pointer to its own live `Slot<F, R>` and nothing else touches it
    // until rt_try_call returns.
    let slot = unsafe { &mut *data.cast::<Slot<F, R>>() };
    if let Some(func) = slot.func.take() {
        slot.result = Some(func());
    }
}

/// Runs `func`; returns its result, or the first exception it raised.
///
/// Not reentrant: calling `catch` from inside a caught closure is a runtime bug and panics.
pub fn catch<R, F: FnOnce() -> R>(func: F) -> Result<R, Fault> {
    assert!(
        !RECOVERY.is_armed.swap(true, Ordering::SeqCst),
        "fault::catch called while another catch is running"
    );
    let mut slot = Slot {
        func: Some(func),
        result: None,
    };
    // SAFETY: rt_try_call follows the SysV ABI for its caller: it restores the callee-saved
    // registers and RSP on both of its return paths. call_slot matches the pointer it receives.
    let faulted = unsafe {
        rt_try_call(
            call_slot::<F, R>,
            (&mut slot as *mut Slot<F, R>).cast::<u8>(),
            &RECOVERY,
        )
    };
    RECOVERY.is_armed.store(false, Ordering::SeqCst);
    if faulted != 0 {
        return Err(Fault {
            vector: RECOVERY.vector.load(Ordering::SeqCst) as u8,
            error_code: RECOVERY.error_code.load(Ordering::SeqCst),
            rip: RECOVERY.fault_rip.load(Ordering::SeqCst),
        });
    }
    match slot.result {
        Some(result) => Ok(result),
        None => unreachable!("rt_try_call returned normally without running the closure"),
    }
}

/// Runs `func` and checks that it raises exception `vector`.
pub fn expect_fault<F: FnOnce()>(vector: u8, func: F) -> Result<Fault, FaultMismatch> {
    match catch(func) {
        Ok(()) => Err(FaultMismatch::NoFault { expected: vector }),
        Err(fault) if fault.vector == vector => Ok(fault),
        Err(got) => Err(FaultMismatch::Other {
            expected: vector,
            got,
        }),
    }
}

/// Called by the exception handler: if a [`catch`] is armed, records the fault, disarms, and
/// points the frame at the landing pad. Returns whether it did.
pub(crate) fn recover(frame: &mut ExceptionFrame) -> bool {
    // Disarm first, so a fault in the landing path itself is reported rather than looping.
    if !RECOVERY.is_armed.swap(false, Ordering::SeqCst) {
        return false;
    }
    RECOVERY.vector.store(frame.vector, Ordering::SeqCst);
    RECOVERY
        .error_code
        .store(frame.error_code, Ordering::SeqCst);
    RECOVERY.fault_rip.store(frame.rip, Ordering::SeqCst);
    frame.rip = RECOVERY.landing_rip.load(Ordering::SeqCst);
    frame.rsp = RECOVERY.saved_rsp.load(Ordering::SeqCst);
    true
}
