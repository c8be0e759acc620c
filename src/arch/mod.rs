//! Everything that executes privileged x86_64 instructions.

pub mod x86_64;
