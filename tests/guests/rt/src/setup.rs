//! Set-up helpers for guests that cannot go on once set-up fails: each error ends the guest
//! with `FAIL <guest>: <why>` (its verdict line, so the scenario stops waiting) and status 1.

use core::fmt::Display;

use crate::cmdline::Cmdline;
use crate::runtime::{exit, guest_name};
use crate::{dma, println};

/// Prints `FAIL <guest>: <why>` and stops the guest.
pub fn fail_setup(why: impl Display) -> ! {
    println!("FAIL {}: {why}", guest_name());
    exit(1)
}

/// The number given as `key=N` on the command line, `default` when absent; a malformed value
/// fails the guest.
pub fn number(args: &Cmdline<'_>, key: &'static str, default: u64) -> u64 {
    match args.get_u64(key) {
        Ok(v) => v.unwrap_or(default),
        Err(err) => fail_setup(err),
    }
}

/// `bytes` of zeroed DMA-pool memory (see [`dma::alloc`]); an exhausted pool fails the guest.
pub fn alloc(bytes: u64) -> u64 {
    dma::alloc(bytes).unwrap_or_else(|err| fail_setup(err))
}
