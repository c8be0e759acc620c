//! Fuzzes the split-virtqueue walker (descriptor tables, indirect tables, ring indices) behind virtio-blk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::devices::virtio::testing::fuzz::virtqueue(data));
