//! Fuzzes virtio-console output lines and input delivery.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::devices::virtio::testing::fuzz::console(data));
