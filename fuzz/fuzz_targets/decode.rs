//! Fuzzes the exit-length path: the guest page walker fetching at RIP through random page tables
//! in random guest RAM, then the iced-x86 decoder wrapper.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::decode::fuzzing::exit_path(data));
