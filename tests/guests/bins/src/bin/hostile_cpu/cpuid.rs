//! Every CPUID leaf of the basic, hypervisor and extended ranges, asked twice: no leaf faults or
//! changes between asks, and none shows virtualization extensions or another hypervisor.

use guest_rt::cpu::{self, cpuid, Cpuid};
use guest_rt::Checks;

/// Leaf ranges asked (inclusive), each with subleaves 0..SUBLEAVES.
const RANGES: [(u32, u32); 4] = [
    (0, 0x7F),
    (0x4000_0000, 0x4000_01FF),
    (0x8000_0000, 0x8000_00FF),
    // Ranges other vendors or nobody use: must not fault either.
    (0xC000_0000, 0xC000_000F),
];
const ODD_LEAVES: [u32; 4] = [0x2000_0000, 0x7FFF_FFFF, 0x8FFF_FFFF, 0xFFFF_FFFF];
const SUBLEAVES: u32 = 4;
/// Leaf 1 ECX bit 6: SMX (Intel SDM vol.2A table 3-10); VMX and SVM come from `guest_rt::cpu`.
const L1_ECX_SMX: u32 = 1 << 6;
/// Leaf 0x8000_000A: SVM revision and features; zero when SVM is absent.
const LEAF_SVM_FEATURES: u32 = 0x8000_000A;
/// Leaf 7.0 EBX SGX, ECX LA57 (5-level paging, hidden: Bulkhead walks 4 levels).
const L7_EBX_SGX: u32 = 1 << 2;
const L7_ECX_LA57: u32 = 1 << 16;
/// Bulkhead's leaves end at its timing leaf; 0x4000_0100 up is where a second hypervisor's
/// signature would be looked for.
const HV_LAST_LEAF: u32 = cpu::HV_LEAF_TIMING;
const HV_SECOND_BASE: u32 = 0x4000_0100;

fn regs(r: Cpuid) -> [u32; 4] {
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Runs the CPUID checks; returns how many CPUIDs were executed.
pub(crate) fn check(checks: &mut Checks) -> u64 {
    let mut asked = 0u64;
    let mut unstable: Option<(u32, u32, [u32; 4], [u32; 4])> = None;
    let mut hv_nonzero: Option<(u32, [u32; 4])> = None;
    let leaves = RANGES.iter().flat_map(|&(a, b)| a..=b).chain(ODD_LEAVES);
    for leaf in leaves {
        for sub in 0..SUBLEAVES {
            let first = regs(cpuid(leaf, sub));
            let second = regs(cpuid(leaf, sub));
            asked += 2;
            if first != second && unstable.is_none() {
                unstable = Some((leaf, sub, first, second));
            }
            let is_past_bulkhead = (HV_LAST_LEAF + 1..=HV_SECOND_BASE + 0xFF).contains(&leaf);
            if is_past_bulkhead && first != [0; 4] && hv_nonzero.is_none() {
                hv_nonzero = Some((leaf, first));
            }
        }
    }
    match unstable {
        None => checks.pass("cpuid-stable"),
        Some((l, s, a, b)) => checks.fail(
            "cpuid-stable",
            format_args!("leaf {l:#x}.{s} gave {a:x?} then {b:x?}"),
        ),
    }
    match hv_nonzero {
        None => checks.pass("cpuid-hv-leaves-end"),
        Some((l, r)) => checks.fail(
            "cpuid-hv-leaves-end",
            format_args!("leaf {l:#x} past Bulkhead's leaves reads {r:x?}"),
        ),
    }
    let l1 = cpuid(1, 0);
    checks.expect(
        "cpuid-no-vmx-smx",
        l1.ecx & (cpu::LEAF1_ECX_VMX | L1_ECX_SMX) == 0 && l1.ecx & cpu::LEAF1_ECX_HYPERVISOR != 0,
        format_args!(
            "leaf 1 ECX {:#x}: VMX/SMX set or hypervisor bit clear",
            l1.ecx
        ),
    );
    let e1 = cpuid(0x8000_0001, 0);
    let svm = regs(cpuid(LEAF_SVM_FEATURES, 0));
    checks.expect(
        "cpuid-no-svm",
        e1.ecx & cpu::EXT1_ECX_SVM == 0 && svm == [0; 4],
        format_args!(
            "leaf 0x80000001 ECX {:#x}, leaf 0x8000000a {svm:x?}: SVM visible",
            e1.ecx
        ),
    );
    let l7 = cpuid(7, 0);
    let sgx = regs(cpuid(0x12, 0));
    checks.expect(
        "cpuid-no-sgx-la57",
        l7.ebx & L7_EBX_SGX == 0 && l7.ecx & L7_ECX_LA57 == 0 && sgx == [0; 4],
        format_args!(
            "leaf 7 EBX {:#x} ECX {:#x}, leaf 0x12 {sgx:x?}: SGX or LA57 visible",
            l7.ebx, l7.ecx
        ),
    );
    let hv = cpu::hypervisor_leaf();
    checks.expect(
        "cpuid-signature",
        hv.is_some_and(|(max, sig)| sig == cpu::BULKHEAD_SIGNATURE && max == HV_LAST_LEAF),
        format_args!("leaf 0x40000000 reads {hv:x?}"),
    );
    let bits = cpuid(0x8000_0008, 0).eax & 0xFF;
    checks.expect(
        "cpuid-phys-bits",
        (32..=52).contains(&bits),
        format_args!("leaf 0x80000008 says {bits} physical address bits"),
    );
    asked + 6
}
