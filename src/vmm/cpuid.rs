//! What a guest sees when it executes CPUID: the host's answer, filtered.
//!
//! Guests see no virtualization extensions, no features Bulkhead does not emulate (MONITOR,
//! performance counters, SGX, PT, …), a topology that matches their own vCPU count, the
//! hypervisor bit and Bulkhead's leaves at 0x40000000, and the TSC frequency so they never need
//! to calibrate it against a PIT.

/// The guest and vCPU a CPUID is answered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidContext {
    /// This vCPU's number within its guest (also its APIC id).
    pub vcpu_index: u32,
    /// vCPUs in the guest.
    pub vcpu_count: u32,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// The guest's CR4 (OSXSAVE is reflected in leaf 1).
    pub guest_cr4: u64,
    /// Whether the guest is offered an x2APIC.
    pub x2apic: bool,
    /// Whether the guest's APIC timer offers TSC-deadline mode.
    pub tsc_deadline: bool,
}

/// Highest hypervisor leaf.
pub const HV_MAX_LEAF: u32 = 0x4000_0010;
/// "Bulkhead" in EBX, ECX, EDX of leaf 0x40000000.
pub const HV_SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"Bulk"),
    u32::from_le_bytes(*b"head"),
    0,
];

// Leaf 1 ECX.
const L1_ECX_MONITOR: u32 = 1 << 3;
const L1_ECX_VMX: u32 = 1 << 5;
const L1_ECX_SMX: u32 = 1 << 6;
const L1_ECX_EST: u32 = 1 << 7;
const L1_ECX_TM2: u32 = 1 << 8;
const L1_ECX_PDCM: u32 = 1 << 15;
const L1_ECX_X2APIC: u32 = 1 << 21;
const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const L1_ECX_XSAVE: u32 = 1 << 26;
const L1_ECX_OSXSAVE: u32 = 1 << 27;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX.
const L1_EDX_ACPI: u32 = 1 << 22;
const L1_EDX_TM: u32 = 1 << 29;
const L1_EDX_PBE: u32 = 1 << 31;
const L1_EDX_DS: u32 = 1 << 21;
// Leaf 7.0.
const L7_EBX_SGX: u32 = 1 << 2;
const L7_EBX_PQM: u32 = 1 << 12;
const L7_EBX_PQE: u32 = 1 << 15;
const L7_EBX_PT: u32 = 1 << 25;
const L7_ECX_WAITPKG: u32 = 1 << 5;
/// 5-level paging: the hypervisor's guest page walker (for decoding at RIP) handles 4 levels.
const L7_ECX_LA57: u32 = 1 << 16;
const L7_ECX_SGX_LC: u32 = 1 << 30;
const L7_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
const L7_EDX_CORE_CAPABILITIES: u32 = 1 << 30;
// Leaf 0x80000001 ECX.
const E1_ECX_SVM: u32 = 1 << 2;
const E1_ECX_TOPOEXT: u32 = 1 << 22;
const E1_ECX_PERFCTR_CORE: u32 = 1 << 23;
const E1_ECX_PERFCTR_NB: u32 = 1 << 24;
const E1_ECX_PERFCTR_LLC: u32 = 1 << 28;
const E1_ECX_MONITORX: u32 = 1 << 29;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Answers CPUID(`leaf`, `subleaf`) for the guest, given the host's answer `host` ([EAX, EBX,
/// ECX, EDX]) and the host's highest basic and extended leaves.
pub fn filter(
    leaf: u32,
    subleaf: u32,
    host: [u32; 4],
    host_max_basic: u32,
    host_max_ext: u32,
    ctx: &CpuidContext,
) -> [u32; 4] {
    let [mut a, mut b, mut c, mut d] = host;
    let count = ctx.vcpu_count.max(1);
    match leaf {
        0 => a = host_max_basic.max(0x16),
        1 => {
            b = (b & 0x0000_FFFF) | (ctx.vcpu_index << 24) | ((count.min(255)) << 16);
            c &= !(L1_ECX_MONITOR
                | L1_ECX_VMX
                | L1_ECX_SMX
                | L1_ECX_EST
                | L1_ECX_TM2
                | L1_ECX_PDCM
                | L1_ECX_TSC_DEADLINE
                | L1_ECX_OSXSAVE);
            if ctx.x2apic {
                c |= L1_ECX_X2APIC;
            } else {
                c &= !L1_ECX_X2APIC;
            }
            if ctx.tsc_deadline {
                c |= L1_ECX_TSC_DEADLINE;
            }
            if ctx.guest_cr4 & CR4_OSXSAVE != 0 && c & L1_ECX_XSAVE != 0 {
                c |= L1_ECX_OSXSAVE;
            }
            c |= L1_ECX_HYPERVISOR;
            d &= !(L1_EDX_ACPI | L1_EDX_TM | L1_EDX_PBE | L1_EDX_DS);
        }
        // Intel deterministic cache parameters: cores per package follow the guest.
        4 if a & 0x1F != 0 => a = (a & 0x03FF_FFFF) | ((count - 1) << 26),
        4 => {}
        5 | 6 | 0xA | 0x12 | 0x14 | 0x1B | 0x1C => return [0; 4],
        7 if subleaf == 0 => {
            b &= !(L7_EBX_SGX | L7_EBX_PQM | L7_EBX_PQE | L7_EBX_PT);
            c &= !(L7_ECX_WAITPKG | L7_ECX_SGX_LC | L7_ECX_LA57);
            d &= !(L7_EDX_ARCH_CAPABILITIES | L7_EDX_CORE_CAPABILITIES);
        }
        // x2APIC topology: one thread per core, `count` cores.
        0xB | 0x1F => {
            return match subleaf {
                0 => [0, 1, 0x100, ctx.vcpu_index],
                1 => [bits_for(count), count, 0x201, ctx.vcpu_index],
                _ => [0, 0, subleaf & 0xFF, ctx.vcpu_index],
            }
        }
        // TSC/crystal ratio: TSC Hz = ECX * EBX / EAX.
        0x15 => return [1, ctx.tsc_khz.min(u64::from(u32::MAX)) as u32, 1000, 0],
        0x16 => {
            let mhz = (ctx.tsc_khz / 1000).min(0xFFFF) as u32;
            return [mhz, mhz, 100, 0];
        }
        l if (2..=0x3FFF_FFFF).contains(&l) && l > host_max_basic => return [0; 4],
        0x4000_0000 => {
            return [
                HV_MAX_LEAF,
                HV_SIGNATURE[0],
                HV_SIGNATURE[1],
                HV_SIGNATURE[2],
            ]
        }
        // Timing leaf in the VMware/KVM convention: TSC and APIC timer frequency in kHz.
        0x4000_0010 => {
            return [
                ctx.tsc_khz.min(u64::from(u32::MAX)) as u32,
                crate::vmm::APIC_TIMER_KHZ,
                0,
                0,
            ]
        }
        0x4000_0001..=0x7FFF_FFFF => return [0; 4],
        0x8000_0000 => a = host_max_ext.min(0x8000_0008),
        0x8000_0001 => {
            c &= !(E1_ECX_SVM
                | E1_ECX_TOPOEXT
                | E1_ECX_PERFCTR_CORE
                | E1_ECX_PERFCTR_NB
                | E1_ECX_PERFCTR_LLC
                | E1_ECX_MONITORX);
        }
        0x8000_0008 => c = (c & !0xFF & !0xF000) | (count - 1),
        0x8000_0009..=0xFFFF_FFFF => return [0; 4],
        _ => {}
    }
    [a, b, c, d]
}

fn bits_for(count: u32) -> u32 {
    32 - (count.max(1) - 1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CpuidContext {
        CpuidContext {
            vcpu_index: 1,
            vcpu_count: 2,
            tsc_khz: 2_600_000,
            guest_cr4: 0,
            x2apic: false,
            tsc_deadline: false,
        }
    }

    #[test]
    fn hides_virtualization_and_sets_hypervisor_bit() {
        let l1 = filter(
            1,
            0,
            [0x806f8, 0x0810_0800, !(1u32 << 31), 0xFFFF_FFFF],
            0x1F,
            0x8000_0021,
            &ctx(),
        );
        assert_eq!(l1[2] & L1_ECX_VMX, 0);
        assert_eq!(l1[2] & L1_ECX_MONITOR, 0);
        assert_eq!(l1[2] & L1_ECX_X2APIC, 0, "no x2APIC until offered");
        assert_ne!(l1[2] & L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1[1] >> 24, 1, "initial APIC id is the vCPU index");
        assert_eq!((l1[1] >> 16) & 0xFF, 2, "logical processors = vCPU count");
        let e1 = filter(
            0x8000_0001,
            0,
            [0, 0, 0xFFFF_FFFF, 0],
            0x1F,
            0x8000_0021,
            &ctx(),
        );
        assert_eq!(e1[2] & E1_ECX_SVM, 0);
        assert_eq!(
            filter(0x8000_000A, 0, [1, 16, 0, 0xFF], 0x1F, 0x8000_0021, &ctx()),
            [0; 4]
        );
    }

    #[test]
    fn hypervisor_leaves_say_bulkhead_and_tsc() {
        let h = filter(0x4000_0000, 0, [0; 4], 0xD, 0x8000_0008, &ctx());
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&h[1].to_le_bytes());
        sig[4..8].copy_from_slice(&h[2].to_le_bytes());
        sig[8..].copy_from_slice(&h[3].to_le_bytes());
        assert_eq!(&sig, b"Bulkhead\0\0\0\0");
        assert_eq!(
            filter(0x4000_0010, 0, [0; 4], 0xD, 0x8000_0008, &ctx())[0],
            2_600_000
        );
        assert_eq!(
            filter(0x4000_0100, 0, [7; 4], 0xD, 0x8000_0008, &ctx()),
            [0; 4],
            "no Xen/KVM signature further up"
        );
        let t = filter(0x15, 0, [0; 4], 0xD, 0x8000_0008, &ctx());
        assert_eq!(
            u64::from(t[2]) * u64::from(t[1]) / u64::from(t[0]),
            2_600_000_000
        );
        assert_eq!(
            filter(0, 0, [0xD, 1, 2, 3], 0xD, 0x8000_0008, &ctx())[0],
            0x16,
            "max leaf covers the TSC leaves"
        );
    }

    #[test]
    fn topology_matches_the_guest() {
        assert_eq!(filter(0xB, 1, [0; 4], 0x1F, 0x8000_0008, &ctx())[1], 2);
        assert_eq!(filter(0xB, 0, [0; 4], 0x1F, 0x8000_0008, &ctx())[3], 1);
        assert_eq!(
            filter(
                0x8000_0008,
                0,
                [0x3030, 0, 0x0F, 0],
                0x1F,
                0x8000_0008,
                &ctx()
            )[2] & 0xFF,
            1
        );
        assert_eq!(
            filter(0x13, 0, [5; 4], 0x12, 0x8000_0008, &ctx()),
            [0; 4],
            "beyond the host's max"
        );
    }
}
