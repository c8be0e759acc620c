//! Fuzzes the bzImage loader (setup header, load address, boot_params, initrd) against recording
//! guest memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::loader::fuzzing::bzimage(data));
