//! The hypervisor's own command line (`multiboot2 /boot/bulkhead log=debug test`).

use log::LevelFilter;

/// Options understood on the kernel command line. Unknown words are reported, not fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelArgs {
    /// Log level (`log=error|warn|info|debug|trace`); default info.
    pub log_level: LevelFilter,
    /// Test mode: when the hypervisor is done it ends the emulator with a status.
    pub test: bool,
    /// Run the in-kernel tests of CPU-only code.
    pub selftest: bool,
}

impl Default for KernelArgs {
    fn default() -> Self {
        Self {
            log_level: LevelFilter::Info,
            test: false,
            selftest: false,
        }
    }
}

/// Parses `cmdline`, calling `unknown` for every word it does not understand.
pub fn parse(cmdline: &str, mut unknown: impl FnMut(&str)) -> KernelArgs {
    let mut args = KernelArgs::default();
    for word in cmdline.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("log", level)) => match level.parse() {
                Ok(l) => args.log_level = l,
                Err(_) => unknown(word),
            },
            None if word == "test" => args.test = true,
            None if word == "selftest" => args.selftest = true,
            _ => unknown(word),
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn parses_known_words_and_reports_the_rest() {
        let mut bad = Vec::new();
        let a = parse("log=debug  test bogus log=loud selftest", |w| {
            bad.push(w.to_owned())
        });
        assert_eq!(
            a,
            KernelArgs {
                log_level: LevelFilter::Debug,
                test: true,
                selftest: true
            }
        );
        assert_eq!(bad, ["bogus", "log=loud"]);
        assert_eq!(parse("", |_| panic!()), KernelArgs::default());
    }
}
