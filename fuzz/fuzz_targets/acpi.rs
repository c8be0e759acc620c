//! Fuzzes the guest ACPI table builder with any vCPU count and virtio slot list.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bulkhead::loader::fuzzing::acpi(data));
