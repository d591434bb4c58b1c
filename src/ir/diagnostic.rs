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

/// The most characters of the offending line a diagnostic shows: a longer line is shown as a
/// window around the column, so that a huge line (a generated model, a file that is no model)
/// does not flood the terminal.
const SHOWN_CHARS: usize = 120;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Span { line, col } = self.span;
        writeln!(f, "{}:{line}:{col}: error: {}", self.file, self.message)?;
        let gutter = line.to_string();
        let chars = self.line_text.chars().count();
        let caret = (col.saturating_sub(1) as usize).min(chars);
        let (start, end) = if chars <= SHOWN_CHARS {
            (0, chars)
        } else {
            let start = caret
                .saturating_sub(SHOWN_CHARS / 2)
                .min(chars - SHOWN_CHARS);
            (start, start + SHOWN_CHARS)
        };
        let shown: String = self
            .line_text
            .chars()
            .skip(start)
            .take(end - start)
            .collect();
        let (before, after) = (
            if start > 0 { "…" } else { "" },
            if end < chars { "…" } else { "" },
        );
        writeln!(f, "{gutter} | {before}{shown}{after}")?;
        // The caret sits under column `col`, counted in characters; tabs are kept so it lines up.
        let pad: String = before
            .chars()
            .chain(shown.chars().take(caret - start))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{} | {pad}^", " ".repeat(gutter.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_column() {
        let line = format!("{}error_here{}", "a".repeat(1000), "b".repeat(1000));
        let span = Span { line: 1, col: 1001 };
        let rendered = Diagnostic::new("m.sgn", &line, span, "bad").to_string();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines[0], "m.sgn:1:1001: error: bad");
        let shown = lines[1].strip_prefix("1 | ").unwrap();
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 2);
        // The caret is under the 'e' of error_here.
        let caret = lines[2].strip_prefix("  | ").unwrap().chars().count() - 1;
        assert_eq!(shown.chars().nth(caret), Some('e'), "{rendered}");
        assert!(
            shown
                .chars()
                .skip(caret)
                .collect::<String>()
                .starts_with("error_here")
        );
        // At either end, only the other side is cut.
        let rendered = Diagnostic::new("m.sgn", &line, Span { line: 1, col: 1 }, "x").to_string();
        assert!(rendered.lines().nth(1).unwrap().starts_with("1 | aaa"));
        let short = Diagnostic::new("m.sgn", "x = y", Span { line: 1, col: 5 }, "x").to_string();
        assert_eq!(short.lines().nth(2), Some("  |     ^"));
    }
}
