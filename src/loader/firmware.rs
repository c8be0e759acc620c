//! The one piece of "firmware" a guest gets: code at the x86 reset vector that asks the
//! hypervisor for a reset.
//!
//! Linux reboots a hardware-reduced ACPI machine through EFI (`efi_reboot_required()`); with no
//! EFI it falls back to `machine_real_restart`, which leaves long mode and jumps to the reset
//! vector, F000:FFF0, trusting the BIOS there to restart the machine. Bulkhead has no BIOS, so
//! the loader puts ten bytes there that write the FADT's reset value to its reset register —
//! the same request `reboot=acpi` makes — and halt.

#![forbid(unsafe_code)]

use super::acpi::{RESET_PORT, RESET_VALUE};
use super::error::{write_err, LoadError};
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;

/// Where a CPU starts after RESET or INIT: CS base 0xF0000 plus IP 0xFFF0 (Intel SDM vol.3
/// §9.1.4; AMD APM vol.2 §14.1.3). The 16 bytes up to 1 MiB are all there is room for.
pub const RESET_VECTOR: GuestPhysAddr = GuestPhysAddr::new(0xF_FFF0);

/// Real-mode code: `mov dx, RESET_PORT; mov al, RESET_VALUE; out dx, al; cli; hlt; jmp $-1`.
pub fn reset_stub() -> [u8; 10] {
    let [port_lo, port_hi] = RESET_PORT.to_le_bytes();
    [
        0xBA,
        port_lo,
        port_hi, // mov dx, imm16
        0xB0,
        RESET_VALUE, // mov al, imm8
        0xEE,        // out dx, al
        0xFA,        // cli
        0xF4,        // hlt
        0xEB,
        0xFD, // jmp short back to the hlt
    ]
}

/// Writes the reset stub at [`RESET_VECTOR`].
pub fn write_reset_vector(mem: &dyn GuestMemory) -> Result<(), LoadError> {
    mem.write(RESET_VECTOR, &reset_stub())
        .map_err(write_err("reset vector"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, CpuMode, InsnKind};

    #[test]
    fn the_stub_fits_below_1_mib_and_decodes_to_the_reset_request() {
        let stub = reset_stub();
        assert!(RESET_VECTOR.as_u64() + stub.len() as u64 <= 1 << 20);
        let mut at = 0;
        let mut kinds = alloc::vec::Vec::new();
        while at < stub.len() {
            let insn = decode(&stub[at..], CpuMode::Bits16).expect("decodes");
            kinds.push(insn.kind);
            at += usize::from(insn.len);
        }
        use InsnKind::{Hlt, Other, Out};
        assert_eq!(kinds, [Other, Other, Out, Other, Hlt, Other]);
        assert_eq!(at, stub.len());
    }
}
