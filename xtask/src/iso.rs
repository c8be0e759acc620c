//! GRUB rescue ISOs (BIOS and UEFI in one image) holding the hypervisor, its command line and
//! its multiboot2 modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{pack, paths};

/// A file GRUB loads as a multiboot2 module, and the string the hypervisor sees for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Module {
    pub host_path: PathBuf,
    pub string: String,
}

/// Everything that goes into one ISO.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IsoSpec {
    pub kernel: PathBuf,
    pub cmdline: String,
    pub modules: Vec<Module>,
}

impl IsoSpec {
    /// The hypervisor with `cmdline`, plus the manifest and the images it names when there is
    /// one. Also returns warnings about what could not be packed.
    pub fn new(
        kernel: PathBuf,
        cmdline: &str,
        manifest: Option<&Path>,
    ) -> Result<(Self, Vec<String>), String> {
        let (modules, warnings) = match manifest {
            Some(m) => pack::manifest_modules(m)?,
            None => (Vec::new(), Vec::new()),
        };
        let spec = Self {
            kernel,
            cmdline: cmdline.to_owned(),
            modules,
        };
        Ok((spec, warnings))
    }
}

const TEMPLATE_FILE: &str = "boot/grub.cfg.in";

/// Characters GRUB's script parser takes literally in an unquoted word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-=,./:+@%".contains(c)
}

/// One word for grub.cfg: as is when plain, else in single quotes (GRUB, like sh, takes
/// everything inside them literally; a single quote itself cannot be written there).
fn grub_word(word: &str, what: &str) -> Result<String, String> {
    if word.chars().any(|c| c == '\'' || c.is_control()) {
        return Err(format!(
            "{what} `{word}` contains a single quote or a control character, which grub.cfg cannot carry"
        ));
    }
    if !word.is_empty() && word.chars().all(is_plain) {
        Ok(word.to_owned())
    } else {
        Ok(format!("'{word}'"))
    }
}

/// Fills the template: `@CMDLINE@` with the command line's words, `@MODULES@` with one
/// `module2` line per module.
pub fn grub_cfg(template: &str, spec: &IsoSpec) -> Result<String, String> {
    let words = spec
        .cmdline
        .split_whitespace()
        .map(|w| grub_word(w, "command-line word"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut modules = String::new();
    for (index, module) in spec.modules.iter().enumerate() {
        let string = grub_word(&module.string, "module string")?;
        modules.push_str(&format!("    module2 /boot/modules/{index} {string}\n"));
    }
    for placeholder in ["@CMDLINE@", "@MODULES@"] {
        if !template.contains(placeholder) {
            return Err(format!("{TEMPLATE_FILE} lacks {placeholder}"));
        }
    }
    Ok(template
        .replace("@CMDLINE@", &words.join(" "))
        .replace("@MODULES@\n", &modules)
        .replace("@MODULES@", modules.trim_end()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// Builds the ISO at `out`, staging its tree next to it in `target/iso/`.
pub fn build(spec: &IsoSpec, out: &Path) -> Result<(), String> {
    let template_path = paths::root().join(TEMPLATE_FILE);
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("reading {}: {e}", template_path.display()))?;
    let cfg = grub_cfg(&template, spec)?;

    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bulkhead".to_owned());
    let stage = paths::iso_work_dir().join(format!("{stem}.tree"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .map_err(|e| format!("clearing {}: {e}", stage.display()))?;
    }
    let boot = stage.join("boot");
    let make_dir = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
    };
    make_dir(&boot.join("grub"))?;
    make_dir(&boot.join("modules"))?;
    if let Some(parent) = out.parent() {
        make_dir(parent)?;
    }
    copy(&spec.kernel, &boot.join("bulkhead"))?;
    for (index, module) in spec.modules.iter().enumerate() {
        copy(
            &module.host_path,
            &boot.join("modules").join(index.to_string()),
        )?;
    }
    let cfg_path = boot.join("grub").join("grub.cfg");
    std::fs::write(&cfg_path, cfg).map_err(|e| format!("writing {}: {e}", cfg_path.display()))?;

    // No translations, fonts or themes: the console is a serial line.
    let output = Command::new("grub-mkrescue")
        .arg("--locales=")
        .arg("--fonts=")
        .arg("--themes=")
        .arg("-o")
        .arg(out)
        .arg(&stage)
        .output()
        .map_err(|e| format!("cannot start grub-mkrescue: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "grub-mkrescue failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str =
        "set timeout=0\nmenuentry \"B\" {\n    multiboot2 /boot/bulkhead @CMDLINE@\n@MODULES@\n}\n";

    fn spec(cmdline: &str, modules: &[&str]) -> IsoSpec {
        IsoSpec {
            kernel: PathBuf::from("k"),
            cmdline: cmdline.to_owned(),
            modules: modules
                .iter()
                .map(|s| Module {
                    host_path: PathBuf::from("m"),
                    string: s.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn writes_one_module2_line_per_module_in_order() {
        let cfg = grub_cfg(
            TEMPLATE,
            &spec("log=debug  test", &["manifest", "guests/hello.elf"]),
        )
        .unwrap();
        assert_eq!(
            cfg,
            "set timeout=0\nmenuentry \"B\" {\n    multiboot2 /boot/bulkhead log=debug test\n    \
             module2 /boot/modules/0 manifest\n    module2 /boot/modules/1 guests/hello.elf\n}\n"
        );
    }

    #[test]
    fn no_modules_leaves_no_blank_line() {
        let cfg = grub_cfg(TEMPLATE, &spec("", &[])).unwrap();
        assert_eq!(
            cfg,
            "set timeout=0\nmenuentry \"B\" {\n    multiboot2 /boot/bulkhead \n}\n"
        );
    }

    #[test]
    fn quotes_what_grub_would_interpret() {
        let cfg = grub_cfg(TEMPLATE, &spec("a=$x b;c", &[])).unwrap();
        assert!(cfg.contains("multiboot2 /boot/bulkhead 'a=$x' 'b;c'"));
        assert!(grub_cfg(TEMPLATE, &spec("it's", &[])).is_err());
        let cfg = grub_cfg(TEMPLATE, &spec("", &["my disk.img"])).unwrap();
        assert!(cfg.contains("module2 /boot/modules/0 'my disk.img'\n"));
    }

    #[test]
    fn the_real_template_has_both_placeholders() {
        let template = std::fs::read_to_string(paths::root().join(TEMPLATE_FILE)).unwrap();
        let cfg = grub_cfg(&template, &spec("log=info test", &["manifest"])).unwrap();
        assert!(cfg.contains("multiboot2 /boot/bulkhead log=info test\n"));
        assert!(cfg.contains("    module2 /boot/modules/0 manifest\n"));
        assert!(cfg.contains("serial --unit=0 --speed=115200"));
        assert!(!cfg.contains('@'));
    }
}
