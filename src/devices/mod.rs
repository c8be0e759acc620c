//! (being written)

pub mod uart;
