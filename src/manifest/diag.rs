//! Diagnostics: every problem found in a manifest, each with its line and column, rendered the
//! way compilers do (`manifest:7:10: error: ...`) so editors and people can jump to it.

#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// The name `Display` uses for the source, matching the multiboot2 module string.
pub const DEFAULT_SOURCE_NAME: &str = "manifest";

/// Byte-order mark that editors on some systems put at the start of a file.
const BOM: char = '\u{feff}';

/// One problem in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters (a tab counts as one).
    pub column: u32,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

/// Every problem found in a manifest, in source order. A manifest with any of them yields no
/// `Plan`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing was found (never true for a `Diagnostics` that `parse` returns).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The problems in source order.
    pub fn iter(&self) -> core::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    /// One `NAME:LINE:COL: error: what` line per problem, each followed by an indented
    /// `hint: ...` line where there is one. Every line ends in `\n`.
    pub fn render(&self, source_name: &str) -> String {
        let mut out = String::new();
        for d in &self.items {
            // Writing into a String cannot fail.
            let _ = render_one(&mut out, source_name, d);
        }
        out
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = core::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            render_one(f, DEFAULT_SOURCE_NAME, d)?;
        }
        Ok(())
    }
}

fn render_one(out: &mut dyn fmt::Write, name: &str, d: &Diagnostic) -> fmt::Result {
    writeln!(out, "{name}:{}:{}: error: {}", d.line, d.column, d.message)?;
    if let Some(hint) = &d.hint {
        writeln!(out, "    hint: {hint}")?;
    }
    Ok(())
}

/// Collects problems by byte span while the manifest is read; turned into line:column once at
/// the end.
pub(super) struct Sink<'s> {
    source: &'s str,
    pending: Vec<(Range<usize>, String, Option<String>)>,
}

impl<'s> Sink<'s> {
    pub(super) fn new(source: &'s str) -> Self {
        Self {
            source,
            pending: Vec::new(),
        }
    }

    /// Records a problem at `span` (byte offsets into the manifest).
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.pending.push((span, message.into(), None));
    }

    /// Records a problem with a hint on how to fix it.
    pub(super) fn error_hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.pending.push((span, message.into(), Some(hint.into())));
    }

    /// Records a problem with an optional hint.
    pub(super) fn error_maybe_hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.pending.push((span, message.into(), hint));
    }

    /// Whether any problem has been recorded.
    pub(super) fn has_errors(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The source text the spans point into.
    pub(super) fn source(&self) -> &'s str {
        self.source
    }

    /// Sorts the problems into source order (stable, so problems at one spot keep the order
    /// they were found in) and converts every span to line:column in one walk over the text.
    pub(super) fn finish(mut self) -> Diagnostics {
        self.pending.sort_by_key(|(span, _, _)| span.start);
        let mut cursor = Cursor::default();
        let items = self
            .pending
            .into_iter()
            .map(|(span, message, hint)| {
                let (line, column) = cursor.advance_to(self.source, span.start);
                Diagnostic {
                    line,
                    column,
                    message,
                    hint,
                }
            })
            .collect();
        Diagnostics { items }
    }
}

/// A position in the text that only moves forward.
struct Cursor {
    offset: usize,
    line: u32,
    column: u32,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            offset: 0,
            line: 1,
            column: 1,
        }
    }
}

impl Cursor {
    /// Moves to byte `target` (not past the end, not into a character) and says where it is.
    fn advance_to(&mut self, source: &str, target: usize) -> (u32, u32) {
        let base = self.offset;
        let rest = source.get(base..).unwrap_or_default();
        for (at, c) in rest.char_indices() {
            let at = base + at;
            if at + c.len_utf8() > target {
                break;
            }
            self.step(at, c);
        }
        (self.line, self.column)
    }

    fn step(&mut self, at: usize, c: char) {
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else if !(at == 0 && c == BOM) {
            self.column = self.column.saturating_add(1);
        }
        self.offset = at + c.len_utf8();
    }
}

/// 1-based line and column of byte `offset` in `source`. Offsets past the end point just past
/// the last character; an offset inside a character counts as that character.
pub(super) fn line_column(source: &str, offset: usize) -> (u32, u32) {
    Cursor::default().advance_to(source, offset)
}
