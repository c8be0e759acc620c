//! A small command-line parser: `--flag`, `--option VALUE` and `--option=VALUE`, nothing else.
//! Each command declares which names it accepts so a typo is an error, not a silent default.

use std::collections::{HashMap, HashSet};

/// What a command accepts.
pub struct Spec {
    /// Names (without `--`) that stand alone.
    pub flags: &'static [&'static str],
    /// Names (without `--`) that take one value.
    pub options: &'static [&'static str],
}

/// The parsed command line of one command.
#[derive(Debug, Default)]
pub struct Parsed {
    flags: HashSet<String>,
    values: HashMap<String, String>,
}

impl Parsed {
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `name` parsed as a number, if given.
    pub fn number(&self, name: &str) -> Result<Option<u32>, String> {
        self.value(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name} wants a whole number, got `{v}`"))
            })
            .transpose()
    }
}

/// Parses `argv` (the words after the command name) against `spec`.
pub fn parse(argv: Vec<String>, spec: &Spec) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut words = argv.into_iter();
    while let Some(word) = words.next() {
        let Some(name_and_value) = word.strip_prefix("--") else {
            return Err(format!(
                "unexpected argument `{word}` (options start with --)"
            ));
        };
        let (name, inline_value) = match name_and_value.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (name_and_value.to_owned(), None),
        };
        if spec.flags.contains(&name.as_str()) {
            if inline_value.is_some() {
                return Err(format!("--{name} takes no value"));
            }
            parsed.flags.insert(name);
        } else if spec.options.contains(&name.as_str()) {
            let value = match inline_value {
                Some(v) => v,
                None => words
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?,
            };
            if parsed.values.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        } else {
            return Err(format!("unknown option --{name}"));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        flags: &["uefi", "bochs"],
        options: &["smp", "cmdline"],
    };

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn reads_flags_and_both_value_forms() {
        let p = parse(
            words(&["--uefi", "--smp", "4", "--cmdline=log=debug test"]),
            &SPEC,
        )
        .unwrap();
        assert!(p.flag("uefi"));
        assert!(!p.flag("bochs"));
        assert_eq!(p.number("smp").unwrap(), Some(4));
        assert_eq!(p.value("cmdline"), Some("log=debug test"));
    }

    #[test]
    fn rejects_what_the_command_does_not_know() {
        assert!(parse(words(&["--smpp", "2"]), &SPEC)
            .unwrap_err()
            .contains("--smpp"));
        assert!(parse(words(&["stray"]), &SPEC).is_err());
        assert!(parse(words(&["--smp"]), &SPEC)
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(words(&["--uefi=yes"]), &SPEC).is_err());
        assert!(parse(words(&["--smp", "1", "--smp", "2"]), &SPEC).is_err());
    }

    #[test]
    fn numbers_must_be_numbers() {
        let p = parse(words(&["--smp", "four"]), &SPEC).unwrap();
        assert!(p.number("smp").unwrap_err().contains("four"));
    }
}
