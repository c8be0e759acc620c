//! Kernel modules for the initramfs: find them in an unpacked `linux-image` package, read each
//! one's dependencies from its `.modinfo` section (Debian's package ships no `modules.dep`:
//! depmod makes it at install time), and order the closure so dependencies load first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::le::{u16_at, u32_at, u64_at};

/// ELF identification and the ELF64 section header fields read here (System V ABI, "ELF
/// Header" and "Sections"; x86-64 modules are little-endian ELF64).
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const EI_CLASS: usize = 4;
const ELFCLASS64: u8 = 2;
const E_SHOFF: usize = 0x28;
const E_SHENTSIZE: usize = 0x3A;
const E_SHNUM: usize = 0x3C;
const E_SHSTRNDX: usize = 0x3E;
const SH_NAME: usize = 0x00;
const SH_OFFSET: usize = 0x18;
const SH_SIZE: usize = 0x20;
/// The magic that starts an xz stream (xz file format §2.1.1.1).
pub const XZ_MAGIC: &[u8; 6] = b"\xfd7zXZ\0";

/// A module file as found in the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The kernel's name for it: the file stem with `-` written `_`.
    pub name: String,
    /// The path below `lib/modules/<version>/`, as in the package (with `.ko` or `.ko.xz`).
    pub relative: PathBuf,
}

/// A module ready for the initramfs.
pub struct Loaded {
    pub module: Module,
    /// The uncompressed `.ko` bytes (busybox `insmod` takes no compressed modules).
    pub bytes: Vec<u8>,
}

/// The kernel's spelling of a module name (`virtio-rng` and `virtio_rng` are one module).
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name a file carries, or `None` if it is no module.
fn module_name(file_name: &str) -> Option<String> {
    let stem = file_name
        .strip_suffix(".ko")
        .or_else(|| file_name.strip_suffix(".ko.xz"))?;
    Some(canonical(stem))
}

/// Every module below `modules_dir` (`lib/modules/<version>`), by name.
pub fn index(modules_dir: &Path) -> Result<HashMap<String, Module>, String> {
    let mut found = HashMap::new();
    let mut pending = vec![modules_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(module_name)
            else {
                continue;
            };
            let relative = path
                .strip_prefix(modules_dir)
                .map_err(|e| e.to_string())?
                .to_path_buf();
            found.insert(name.clone(), Module { name, relative });
        }
    }
    Ok(found)
}

/// The bytes of the ELF64 section called `wanted`, if the file has one.
fn section<'a>(elf: &'a [u8], wanted: &str) -> Result<Option<&'a [u8]>, String> {
    if elf.get(..4) != Some(ELF_MAGIC.as_slice()) || elf.get(EI_CLASS) != Some(&ELFCLASS64) {
        return Err("not an ELF64 file".into());
    }
    let bad = || "truncated or inconsistent ELF section headers".to_owned();
    let shoff = usize::try_from(u64_at(elf, E_SHOFF).ok_or_else(bad)?).map_err(|_| bad())?;
    let entsize = usize::from(u16_at(elf, E_SHENTSIZE).ok_or_else(bad)?);
    let count = usize::from(u16_at(elf, E_SHNUM).ok_or_else(bad)?);
    let strndx = usize::from(u16_at(elf, E_SHSTRNDX).ok_or_else(bad)?);
    let header = |i: usize| -> Result<(u32, &'a [u8]), String> {
        let at = i
            .checked_mul(entsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or_else(bad)?;
        let name = u32_at(elf, at + SH_NAME).ok_or_else(bad)?;
        let offset = u64_at(elf, at + SH_OFFSET).ok_or_else(bad)?;
        let size = u64_at(elf, at + SH_SIZE).ok_or_else(bad)?;
        let start = usize::try_from(offset).map_err(|_| bad())?;
        let end = usize::try_from(offset.checked_add(size).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok((name, elf.get(start..end).ok_or_else(bad)?))
    };
    let (_, names) = header(strndx)?;
    for i in 0..count {
        let (name_at, data) = header(i)?;
        let name = names
            .get(name_at as usize..)
            .and_then(|rest| rest.split(|b| *b == 0).next())
            .ok_or_else(bad)?;
        if name == wanted.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The modules a `.ko` needs, from the `depends=` entry of its `.modinfo` section.
pub fn depends(ko: &[u8]) -> Result<Vec<String>, String> {
    let modinfo = section(ko, ".modinfo")?.ok_or("the module has no .modinfo section")?;
    let list = modinfo
        .split(|b| *b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .next()
        .unwrap_or_default();
    let text = std::str::from_utf8(list).map_err(|_| "depends= is not UTF-8".to_owned())?;
    Ok(text
        .split(',')
        .filter(|d| !d.is_empty())
        .map(canonical)
        .collect())
}

/// A module's `.ko` bytes, decompressed when the package ships it as `.ko.xz`.
fn read_module(modules_dir: &Path, module: &Module) -> Result<Vec<u8>, String> {
    let path = modules_dir.join(&module.relative);
    let raw = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if raw.starts_with(XZ_MAGIC) {
        super::bzimage::unxz(&raw).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Ok(raw)
    }
}

/// `roots` and everything they depend on, dependencies before their users (so `insmod` in
/// this order always finds the symbols it needs). Among modules with no order between them,
/// names sort alphabetically, so the order is the same on every machine.
pub fn closure(
    modules_dir: &Path,
    index: &HashMap<String, Module>,
    roots: &[&str],
) -> Result<Vec<Loaded>, String> {
    let mut loaded: BTreeMap<String, (Loaded, Vec<String>)> = BTreeMap::new();
    let mut pending: Vec<String> = roots.iter().map(|r| canonical(r)).collect();
    while let Some(name) = pending.pop() {
        if loaded.contains_key(&name) {
            continue;
        }
        let module = index
            .get(&name)
            .ok_or_else(|| format!("module {name} is not in {}", modules_dir.display()))?;
        let bytes = read_module(modules_dir, module)?;
        let deps = depends(&bytes).map_err(|e| format!("{}: {e}", module.relative.display()))?;
        pending.extend(deps.iter().cloned());
        let entry = Loaded {
            module: module.clone(),
            bytes,
        };
        loaded.insert(name, (entry, deps));
    }
    let mut ordered = Vec::new();
    while !loaded.is_empty() {
        let ready = loaded
            .iter()
            .find(|(_, (_, deps))| deps.iter().all(|d| !loaded.contains_key(d)))
            .map(|(name, _)| name.clone())
            .ok_or("the modules' dependencies form a cycle")?;
        if let Some((entry, _)) = loaded.remove(&ready) {
            ordered.push(entry);
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a null section, `.modinfo` and `.shstrtab`.
    fn fake_ko(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[EI_CLASS] = ELFCLASS64;
        let modinfo_at = elf.len() as u64;
        elf.extend_from_slice(modinfo);
        let names_at = elf.len() as u64;
        elf.extend_from_slice(names);
        let shoff = elf.len() as u64;
        let mut header = |name: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[SH_NAME..SH_NAME + 4].copy_from_slice(&name.to_le_bytes());
            h[SH_OFFSET..SH_OFFSET + 8].copy_from_slice(&offset.to_le_bytes());
            h[SH_SIZE..SH_SIZE + 8].copy_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&h);
        };
        header(0, 0, 0);
        header(1, modinfo_at, modinfo.len() as u64);
        header(10, names_at, names.len() as u64);
        elf[E_SHOFF..E_SHOFF + 8].copy_from_slice(&shoff.to_le_bytes());
        elf[E_SHENTSIZE..E_SHENTSIZE + 2].copy_from_slice(&64u16.to_le_bytes());
        elf[E_SHNUM..E_SHNUM + 2].copy_from_slice(&3u16.to_le_bytes());
        elf[E_SHSTRNDX..E_SHSTRNDX + 2].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn depends_come_from_modinfo() {
        let ko = fake_ko(b"license=GPL\0depends=virtio,virtio_ring,net-failover\0name=x\0");
        assert_eq!(
            depends(&ko).unwrap(),
            ["virtio", "virtio_ring", "net_failover"]
        );
        assert!(depends(&fake_ko(b"depends=\0")).unwrap().is_empty());
        assert!(depends(b"not an elf").is_err());
        let mut truncated = fake_ko(b"depends=a\0");
        truncated.truncate(100);
        assert!(depends(&truncated).is_err());
    }

    #[test]
    fn the_closure_puts_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel/drivers")).unwrap();
        let write = |name: &str, deps: &str| {
            let info = format!("depends={deps}\0");
            std::fs::write(
                dir.join("kernel/drivers").join(name),
                fake_ko(info.as_bytes()),
            )
            .unwrap();
        };
        write("virtio_ring.ko", "");
        write("virtio.ko", "virtio_ring");
        write("virtio_mmio.ko", "virtio,virtio_ring");
        write("virtio_net.ko", "net_failover,virtio,virtio_ring");
        write("net_failover.ko", "failover");
        write("failover.ko", "");
        write("unrelated.ko", "");
        let index = index(&dir).unwrap();
        assert_eq!(index.len(), 7);
        let order: Vec<String> = closure(&dir, &index, &["virtio_mmio", "virtio-net"])
            .unwrap()
            .into_iter()
            .map(|l| l.module.name)
            .collect();
        let at = |n: &str| order.iter().position(|m| m == n).unwrap();
        assert_eq!(order.len(), 6);
        assert!(at("virtio_ring") < at("virtio") && at("virtio") < at("virtio_mmio"));
        assert!(at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"));
        assert!(closure(&dir, &index, &["missing"]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
