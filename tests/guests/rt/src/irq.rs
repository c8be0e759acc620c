//! Interrupt vectors 32..255: a handler per vector that guests register, a counter per vector
//! that every delivery bumps, and the dispatch the IDT's common stub calls.
//!
//! Handlers run on the one stack with interrupts disabled (the gates are interrupt gates), and
//! must end the interrupt themselves ([`crate::apic::eoi`]). A vector without a handler is only
//! counted and gets its local APIC EOI here, so a guest may rely on [`count`] alone.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::idt::ExceptionFrame;

/// The first vector that is not a CPU exception (Intel SDM vol.3 §6.2).
pub const FIRST_VECTOR: u8 = 32;
const VECTORS: usize = 256 - FIRST_VECTOR as usize;

/// What runs when an interrupt arrives on a vector.
pub type Handler = fn(&mut ExceptionFrame);

/// Vectors 0..31 belong to CPU exceptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionVector(pub u8);

impl fmt::Display for ExceptionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vector {} is a CPU exception; interrupts use {FIRST_VECTOR}..255",
            self.0
        )
    }
}

/// `Handler`s as addresses; 0 = none.
static HANDLERS: [AtomicUsize; VECTORS] = [const { AtomicUsize::new(0) }; VECTORS];
static COUNTS: [AtomicU64; VECTORS] = [const { AtomicU64::new(0) }; VECTORS];

fn slot(vector: u8) -> Result<usize, ExceptionVector> {
    vector
        .checked_sub(FIRST_VECTOR)
        .map(usize::from)
        .ok_or(ExceptionVector(vector))
}

/// Runs `handler` for every interrupt on `vector` from now on (replacing any earlier one).
pub fn set_handler(vector: u8, handler: Handler) -> Result<(), ExceptionVector> {
    HANDLERS[slot(vector)?].store(handler as usize, Ordering::SeqCst);
    Ok(())
}

/// Goes back to counting `vector` only.
pub fn clear_handler(vector: u8) -> Result<(), ExceptionVector> {
    HANDLERS[slot(vector)?].store(0, Ordering::SeqCst);
    Ok(())
}

/// How many interrupts arrived on `vector` (0 for exception vectors).
pub fn count(vector: u8) -> u64 {
    slot(vector).map_or(0, |i| COUNTS[i].load(Ordering::SeqCst))
}

/// Sets the counter of `vector` back to 0.
pub fn reset_count(vector: u8) {
    if let Ok(i) = slot(vector) {
        COUNTS[i].store(0, Ordering::SeqCst);
    }
}

/// Called from `idt::rt_exception` for vectors 32..255.
pub(crate) fn dispatch(frame: &mut ExceptionFrame) {
    let vector = frame.vector as u8;
    let Ok(i) = slot(vector) else {
        return;
    };
    COUNTS[i].fetch_add(1, Ordering::SeqCst);
    let handler = HANDLERS[i].load(Ordering::SeqCst);
    if handler == 0 {
        // A spurious interrupt is not in service (SDM vol.3 §11.9): no EOI for it.
        if vector != crate::apic::SPURIOUS_VECTOR {
            crate::apic::eoi();
        }
        return;
    }
    // SAFETY: HANDLERS only ever holds 0 or a value stored by set_handler from a `Handler`.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
    handler(frame);
}
