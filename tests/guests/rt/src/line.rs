//! Line assembly for the echo guests: typed bytes gathered into a line, each finished line
//! printed on COM1 as `<PREFIX> <line>` for the scenario to match.

use crate::{print, println};

/// Longest line kept; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 200;

/// The line being typed and how many have been echoed.
pub struct LineEcho {
    prefix: &'static str,
    line: [u8; MAX_LINE],
    len: usize,
    echoed: u64,
}

impl LineEcho {
    pub const fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            line: [0; MAX_LINE],
            len: 0,
            echoed: 0,
        }
    }

    /// Takes one typed byte. A CR or LF ends a non-empty line, which is printed; then returns
    /// the number of lines echoed so far.
    pub fn push(&mut self, b: u8) -> Option<u64> {
        if b != b'\r' && b != b'\n' {
            if self.len < MAX_LINE {
                self.line[self.len] = b;
                self.len += 1;
            }
            return None;
        }
        if self.len == 0 {
            return None;
        }
        // Printed as Latin-1 bytes so control characters reach the hypervisor unchanged.
        print!("{} ", self.prefix);
        for &c in &self.line[..self.len] {
            print!("{}", char::from(c));
        }
        println!();
        self.len = 0;
        self.echoed += 1;
        Some(self.echoed)
    }
}
