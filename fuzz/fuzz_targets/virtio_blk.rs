//! Fuzzes virtio-blk request parsing (headers, segment layouts, sector ranges).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::devices::virtio::testing::fuzz::blk_request(data));
