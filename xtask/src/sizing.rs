//! How big a machine `run` and `gdb` boot when the user does not say: enough CPUs and RAM for
//! the manifest they pack, so `cargo xtask run` with any manifest starts every guest.

use std::path::Path;

use bulkhead::manifest::{self, MachineFacts};

const MIB: u64 = 1 << 20;
/// What the hypervisor keeps for itself: its image, heap, page tables, stacks and slack.
const HYPERVISOR_MIB: u64 = 96;
/// Large enough that validation never fails for want of CPUs or RAM: only the sizes matter.
const PLENTY_CPUS: u32 = 255;
const PLENTY_RAM: u64 = 1 << 40;
/// Emulated machines get RAM in these steps.
const ROUND_MIB: u64 = 64;

/// The machine a manifest needs: CPUs (the boot CPU plus the highest one a guest is given) and
/// MiB of RAM (the guests', the hypervisor's, and room for every module twice: GRUB loads it
/// and disks are copied out of it). `None` when the manifest does not validate; the hypervisor
/// then prints its errors on a minimal machine.
pub fn needed_by(manifest: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(manifest).ok()?;
    let folder = manifest.parent().unwrap_or(Path::new("."));
    let facts = MachineFacts {
        cpu_count: PLENTY_CPUS,
        free_ram_bytes: PLENTY_RAM,
        module_exists: &|_| true,
    };
    let plan = manifest::parse_bytes(&bytes, &facts).ok()?;
    let cpus = plan
        .guests
        .iter()
        .flat_map(|g| g.cpus.iter().copied())
        .max()
        .map_or(1, |top| top + 1);
    let guest_ram: u64 = plan.guests.iter().map(|g| g.memory_bytes).sum();
    let modules: u64 = plan
        .modules()
        .iter()
        .filter_map(|m| std::fs::metadata(folder.join(m)).ok())
        .map(|meta| meta.len())
        .sum();
    let mib = (guest_ram + 2 * modules).div_ceil(MIB) + HYPERVISOR_MIB;
    u32::try_from(mib.div_ceil(ROUND_MIB) * ROUND_MIB)
        .ok()
        .map(|mib| (cpus, mib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_manifest_gets_a_cpu_per_guest_plus_the_boot_cpu() {
        let manifest = crate::paths::default_manifest();
        let (cpus, mib) = needed_by(&manifest).expect("the default manifest validates");
        let bytes = std::fs::read_to_string(&manifest).unwrap();
        let guests = bytes.matches("[[guest]]").count() as u32;
        assert!(cpus > guests, "{cpus} CPUs for {guests} guests");
        assert!(
            u64::from(mib) >= HYPERVISOR_MIB && u64::from(mib) % ROUND_MIB == 0,
            "{mib} MiB"
        );
    }

    #[test]
    fn an_invalid_manifest_needs_nothing() {
        let dir = std::env::temp_dir().join(format!("bulkhead-sizing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "version = 1\n[[guest]]\nname = 3\n").unwrap();
        assert_eq!(needed_by(&bad), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
