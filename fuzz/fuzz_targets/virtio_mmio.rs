//! Fuzzes the virtio-mmio register file (any offset, width and value).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::devices::virtio::testing::fuzz::mmio_registers(data));
