//! Fuzzes virtio-net transmit/receive through a switch (frame sizes, receive buffer layouts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::devices::virtio::testing::fuzz::net(data));
