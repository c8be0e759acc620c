//! `check FILE [--cpus N] [--ram SIZE] [--skip-modules]`: validates a manifest on the build host
//! with the hypervisor's own reader, so the errors are the lines the hypervisor would print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulkhead::manifest::{self, MachineFacts};

use crate::args::{self, Spec};

/// The machine assumed when no flags say otherwise.
const DEFAULT_CPUS: u32 = 4;
const DEFAULT_RAM: &str = "2G";
const MIB: u64 = 1 << 20;

const SPEC: Spec = Spec {
    flags: &["skip-modules"],
    options: &["cpus", "ram"],
};

pub fn check(argv: Vec<String>) -> Result<ExitCode, String> {
    let (file, rest) = split_file(argv)?;
    let parsed = args::parse(rest, &SPEC)?;
    let cpu_count = parsed.number("cpus")?.unwrap_or(DEFAULT_CPUS);
    let ram = parsed.value("ram").unwrap_or(DEFAULT_RAM);
    let free_ram_bytes = ram_bytes(ram)?;
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let folder = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let skip_modules = parsed.flag("skip-modules");
    let exists = |module: &str| skip_modules || folder.join(module).is_file();
    let facts = MachineFacts {
        cpu_count,
        free_ram_bytes,
        module_exists: &exists,
    };
    let name = file.display().to_string();
    match manifest::parse_bytes(&bytes, &facts) {
        Ok(plan) => {
            println!("{name}: ok for {cpu_count} CPUs and {ram} of free RAM");
            print!("{plan}");
            let modules = plan.modules();
            println!("  modules besides the manifest: {}", modules.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            eprint!("{}", diagnostics.render(&name));
            let n = diagnostics.len();
            eprintln!(
                "{name}: {n} error{}; no guest would start",
                if n == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The one word that is not an option or an option's value: the manifest's path.
fn split_file(argv: Vec<String>) -> Result<(PathBuf, Vec<String>), String> {
    let mut file = None;
    let mut rest = Vec::new();
    let mut words = argv.into_iter();
    while let Some(word) = words.next() {
        if let Some(name) = word.strip_prefix("--") {
            let takes_value = SPEC.options.contains(&name);
            rest.push(word);
            if takes_value {
                rest.extend(words.next());
            }
        } else if file.replace(PathBuf::from(&word)).is_some() {
            return Err(format!("one manifest at a time (also got `{word}`)"));
        }
    }
    let file =
        file.ok_or("usage: cargo xtask check FILE [--cpus N] [--ram SIZE] [--skip-modules]")?;
    Ok((file, rest))
}

/// `--ram`: a size like the manifest's (`"2G"`), or a plain number of MiB like the other
/// commands' `--mem`.
fn ram_bytes(text: &str) -> Result<u64, String> {
    if let Ok(mib) = text.parse::<u64>() {
        return mib
            .checked_mul(MIB)
            .ok_or_else(|| format!("--ram {text} is too large"));
    }
    manifest::parse_size(text).map_err(|e| format!("--ram {text} {e} (write e.g. 2G or 512M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_file_may_stand_anywhere_among_the_options() {
        let (file, rest) = split_file(words(&["--cpus", "2", "m.toml", "--skip-modules"])).unwrap();
        assert_eq!(file, PathBuf::from("m.toml"));
        assert_eq!(rest, words(&["--cpus", "2", "--skip-modules"]));
        assert!(split_file(words(&["--ram", "1G"])).is_err());
        assert!(split_file(words(&["a.toml", "b.toml"])).is_err());
    }

    #[test]
    fn ram_is_a_size_or_mib() {
        assert_eq!(ram_bytes("2G"), Ok(2 << 30));
        assert_eq!(ram_bytes("512"), Ok(512 << 20));
        assert!(ram_bytes("lots").is_err());
    }
}
