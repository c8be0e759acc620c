//! Fuzzes the ELF64/PVH loader (headers, program headers, notes, segment placement, initrd)
//! against recording guest memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::loader::fuzzing::elf(data));
