//! Errors in source text (model files, the IR's text form), reported as `file:line:col` with the
//! offending line and a caret.

use crate::ir::graph::Span;
use std::fmt;

/// An error at a position in a source file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// The file name as the user gave it (or `<input>` for source given as a string).
    pub file: String,
    pub span: Span,
    /// The text of the offending line (without its newline).
    pub line_text: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `span` of `source`.
    pub fn new(file: &str, source: &str, span: Span, message: impl Into<String>) -> Diagnostic {
        let line_text = source
            .lines()
            .nth(span.line.saturating_sub(1) as usize)
            .unwrap_or("")
            .to_string();
        Diagnostic {
            file: file.to_string(),
            span,
            line_text,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Span { line, col } = self.span;
        writeln!(f, "{}:{line}:{col}: error: {}", self.file, self.message)?;
        let gutter = line.to_string();
        writeln!(f, "{gutter} | {}", self.line_text)?;
        // The caret sits under column `col`, counted in characters; tabs are kept so it lines up.
        let pad: String = self
            .line_text
            .chars()
            .take(col.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{} | {pad}^", " ".repeat(gutter.len()))
    }
}
