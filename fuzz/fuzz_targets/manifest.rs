//! Fuzzes the manifest reader (TOML parsing, every validation rule, diagnostics rendering) with
//! arbitrary bytes; the oracle lives in `bulkhead::manifest::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::manifest::fuzzing::manifest(data));
