//! What goes on boot media for a manifest: the manifest itself (module string `manifest`) and
//! every image it names, each loaded with the path exactly as the manifest writes it.

use std::path::Path;

use bulkhead::manifest;

use crate::iso::Module;

/// The module string the hypervisor looks for to find its manifest.
pub const MANIFEST_MODULE: &str = "manifest";

/// The manifest's modules: the manifest first, then its images in manifest order. Image paths
/// are relative to the manifest's folder. Read leniently, like the hypervisor's own packer
/// contract: an image that does not exist, or a manifest that is not valid TOML, is reported as
/// a warning and left out, so the hypervisor still boots far enough to report the mistake.
pub fn manifest_modules(manifest_path: &Path) -> Result<(Vec<Module>, Vec<String>), String> {
    let text = std::fs::read_to_string(manifest_path)
        .map_err(|e| format!("reading {}: {e}", manifest_path.display()))?;
    let mut modules = vec![Module {
        host_path: manifest_path.to_path_buf(),
        string: MANIFEST_MODULE.to_owned(),
    }];
    let mut warnings = Vec::new();
    let images = match manifest::image_paths(&text) {
        Ok(images) => images,
        Err(diagnostics) => {
            warnings.push(format!(
                "{} is not valid TOML; packing it without images:\n{}",
                manifest_path.display(),
                diagnostics.render(&manifest_path.display().to_string())
            ));
            Vec::new()
        }
    };
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    for image in images {
        let host_path = base.join(&image);
        if host_path.is_file() {
            modules.push(Module {
                host_path,
                string: image,
            });
        } else {
            warnings.push(format!(
                "{}: image `{image}` not found at {}; left off the boot media",
                manifest_path.display(),
                host_path.display()
            ));
        }
    }
    Ok((modules, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-pack-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("img")).unwrap();
        dir
    }

    #[test]
    fn packs_the_manifest_then_each_image_once_with_its_written_path() {
        let dir = scratch("ok");
        std::fs::write(dir.join("img/a.elf"), b"a").unwrap();
        let manifest = dir.join("m.toml");
        std::fs::write(
            &manifest,
            "version = 1\n[[guest]]\nname = \"a\"\nkernel = \"img/a.elf\"\n\
             [[guest]]\nname = \"b\"\nkernel = \"img/a.elf\"\ninitrd = \"img/missing\"\n",
        )
        .unwrap();
        let (modules, warnings) = manifest_modules(&manifest).unwrap();
        let strings: Vec<_> = modules.iter().map(|m| m.string.as_str()).collect();
        assert_eq!(strings, ["manifest", "img/a.elf"]);
        assert_eq!(modules[1].host_path, dir.join("img/a.elf"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("img/missing"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_manifest_is_still_packed_alone() {
        let dir = scratch("bad");
        let manifest = dir.join("m.toml");
        std::fs::write(&manifest, "version = = 1\n").unwrap();
        let (modules, warnings) = manifest_modules(&manifest).unwrap();
        assert_eq!(modules.len(), 1);
        assert!(warnings[0].contains("not valid TOML"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
