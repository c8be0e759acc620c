//! The shell's line editor: collects typed bytes into a command line with backspace and
//! Ctrl-U, and says what to echo so a person at a terminal sees what they type.

#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

/// Longest command line kept; further bytes are ignored until Enter.
pub const MAX_LINE: usize = 128;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7F;
const CTRL_U: u8 = 0x15;

/// What one byte did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing to show.
    Nothing,
    /// Echo these bytes to the terminal.
    Echo(Vec<u8>),
    /// Enter: the finished line (printable ASCII, without the line ending).
    Line(String),
}

/// A line being typed.
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    buf: Vec<u8>,
}

impl LineEditor {
    /// An empty line.
    pub fn new() -> Self {
        Self::default()
    }

    /// One typed byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        match byte {
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.buf);
                // Only printable ASCII is ever stored, so this conversion loses nothing.
                Edit::Line(line.iter().map(|&b| char::from(b)).collect())
            }
            BACKSPACE | DELETE => match self.buf.pop() {
                Some(_) => Edit::Echo(b"\x08 \x08".to_vec()),
                None => Edit::Nothing,
            },
            CTRL_U => {
                let n = self.buf.len();
                self.buf.clear();
                let mut echo = Vec::with_capacity(n * 3);
                for _ in 0..n {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                Edit::Echo(echo)
            }
            0x20..=0x7E if self.buf.len() < MAX_LINE => {
                self.buf.push(byte);
                Edit::Echo(alloc::vec![byte])
            }
            _ => Edit::Nothing,
        }
    }

    /// Forgets a half-typed line (the focus left the shell).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_all(e: &mut LineEditor, bytes: &[u8]) -> Vec<Edit> {
        bytes.iter().map(|&b| e.feed(b)).collect()
    }

    #[test]
    fn enter_ends_the_line_and_starts_a_new_one() {
        let mut e = LineEditor::new();
        let edits = type_all(&mut e, b"list\r");
        assert_eq!(edits[0], Edit::Echo(b"l".to_vec()));
        assert_eq!(edits[4], Edit::Line("list".into()));
        assert_eq!(e.feed(b'\n'), Edit::Line(String::new()));
    }

    #[test]
    fn backspace_and_ctrl_u_edit_the_line() {
        let mut e = LineEditor::new();
        type_all(&mut e, b"lisx\x7ft");
        assert_eq!(e.feed(b'\r'), Edit::Line("list".into()));
        assert_eq!(e.feed(DELETE), Edit::Nothing, "nothing to delete");
        type_all(&mut e, b"junk");
        assert_eq!(e.feed(CTRL_U), Edit::Echo(b"\x08 \x08".repeat(4)));
        assert_eq!(e.feed(b'\r'), Edit::Line(String::new()));
    }

    #[test]
    fn control_bytes_are_dropped_and_the_line_is_bounded() {
        let mut e = LineEditor::new();
        assert_eq!(e.feed(0x1B), Edit::Nothing);
        assert_eq!(e.feed(0xC3), Edit::Nothing);
        for _ in 0..MAX_LINE + 10 {
            e.feed(b'a');
        }
        match e.feed(b'\r') {
            Edit::Line(l) => assert_eq!(l.len(), MAX_LINE),
            other => panic!("{other:?}"),
        }
    }
}
