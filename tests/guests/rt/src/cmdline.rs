//! The guest command line as whitespace-separated `key=value` words and bare flags.

use core::fmt;

/// A malformed value on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command line {}={:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

/// Borrowed view of a command line.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// All words.
    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace()
    }

    /// Every value given for `key` (a key may repeat, e.g. `skip=`).
    pub fn values(&self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.text
            .split_ascii_whitespace()
            .filter_map(move |word| match word.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                _ => None,
            })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &'a str) -> Option<&'a str> {
        self.values(key).last()
    }

    /// True when the bare word `flag` appears.
    pub fn has(&self, flag: &str) -> bool {
        self.words().any(|w| w == flag)
    }

    /// The value of `key` as a number (decimal or `0x` hex), if present.
    pub fn get_u64(&self, key: &'a str) -> Result<Option<u64>, CmdlineError<'a>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => parse_u64(value).map(Some).ok_or(CmdlineError {
                key,
                value,
                expected: "a decimal or 0x-hex number",
            }),
        }
    }
}

/// Parses decimal or `0x`-prefixed hex, allowing `_` separators.
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut value: u64 = 0;
    let mut any_digit = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let digit = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
        any_digit = true;
    }
    any_digit.then_some(value)
}
