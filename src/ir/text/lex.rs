//! The IR text's tokens.

use super::read::diagnostic;
use crate::ir::error::Result;
use crate::ir::graph::Span;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// Identifiers and keywords.
    Ident(String),
    /// A quoted string, unescaped.
    Str(String),
    /// A number as written (integer, float or `0x…` hex); the parser decides which it must be.
    Num(String),
    /// `%N`.
    NodeRef(u64),
    /// One of `= : , [ ] ( ) * @ -`.
    Punct(char),
    DotDot,
    EndOfLine,
    EndOfInput,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) span: Span,
}

pub(super) fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) | Tok::Num(s) => format!("`{s}`"),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::NodeRef(n) => format!("`%{n}`"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::DotDot => "`..`".to_string(),
        Tok::EndOfLine => "the end of the line".to_string(),
        Tok::EndOfInput => "the end of the text".to_string(),
    }
}

pub(super) fn lex(source: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut last_line = 1;
    for (line_index, line) in source.split('\n').enumerate() {
        let line_no = u32::try_from(line_index + 1).unwrap_or(u32::MAX);
        last_line = line_no;
        let chars: Vec<char> = line.chars().collect();
        let span_at = |i: usize| Span {
            line: line_no,
            col: u32::try_from(i + 1).unwrap_or(u32::MAX),
        };
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let start = i;
            let tok = match c {
                ' ' | '\t' | '\r' => {
                    i += 1;
                    continue;
                }
                '#' => break,
                c if c.is_ascii_alphabetic() || c == '_' => {
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    Tok::Ident(chars[start..i].iter().collect())
                }
                c if c.is_ascii_digit() => {
                    i = number_end(&chars, start);
                    Tok::Num(chars[start..i].iter().collect())
                }
                '%' => {
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let digits: String = chars[start + 1..i].iter().collect();
                    if digits.is_empty() {
                        let message = "expected a node id such as `%3` after `%`";
                        return Err(diagnostic(source, span_at(start), message));
                    }
                    let id = digits.parse().map_err(|_| {
                        diagnostic(
                            source,
                            span_at(start),
                            format!("node id `%{digits}` is too large"),
                        )
                    })?;
                    Tok::NodeRef(id)
                }
                '"' => {
                    let (text, end) = unquote(&chars, start)
                        .map_err(|(at, message)| diagnostic(source, span_at(at), message))?;
                    i = end;
                    Tok::Str(text)
                }
                '.' if chars.get(i + 1) == Some(&'.') => {
                    i += 2;
                    Tok::DotDot
                }
                '=' | ':' | ',' | '[' | ']' | '(' | ')' | '*' | '@' | '-' => {
                    i += 1;
                    Tok::Punct(c)
                }
                other => {
                    let message = format!(
                        "unexpected character {other:?}; expected a name, a number, a node id `%N` or one of `= : , [ ] ( ) * @ - ..`"
                    );
                    return Err(diagnostic(source, span_at(start), message));
                }
            };
            tokens.push(Token {
                tok,
                span: span_at(start),
            });
        }
        tokens.push(Token {
            tok: Tok::EndOfLine,
            span: span_at(chars.len()),
        });
    }
    let end = tokens.last().map_or(Span { line: 1, col: 1 }, |t| t.span);
    tokens.push(Token {
        tok: Tok::EndOfInput,
        span: Span {
            line: last_line,
            col: end.col,
        },
    });
    Ok(tokens)
}

/// The end of the number starting at `start`: digits, letters (exponents, hex, `0x`), a decimal
/// point that does not start `..`, and a sign right after a decimal exponent's `e`.
fn number_end(chars: &[char], start: usize) -> usize {
    let hex = chars.get(start + 1).is_some_and(|&c| c == 'x' || c == 'X');
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        let continues = c.is_ascii_alphanumeric()
            || (c == '.' && chars.get(i + 1) != Some(&'.'))
            || ((c == '+' || c == '-') && !hex && matches!(chars[i - 1], 'e' | 'E'));
        if !continues {
            break;
        }
        i += 1;
    }
    i
}

/// The string whose opening quote is at `start`, and the index after its closing quote; or the
/// index and message of what is wrong.
fn unquote(chars: &[char], start: usize) -> std::result::Result<(String, usize), (usize, String)> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                let message = "unterminated string: expected a closing `\"` on this line";
                return Err((start, message.to_string()));
            }
            Some('"') => return Ok((text, i + 1)),
            Some('\\') => {
                let (c, next) = unescape(chars, i)?;
                text.push(c);
                i = next;
            }
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

/// The character of the escape starting with the backslash at `at`, and the index after it.
fn unescape(chars: &[char], at: usize) -> std::result::Result<(char, usize), (usize, String)> {
    let simple = match chars.get(at + 1) {
        Some('"') => '"',
        Some('\\') => '\\',
        Some('n') => '\n',
        Some('r') => '\r',
        Some('t') => '\t',
        Some('u') => {
            let bad = || {
                let message = "bad escape: expected `\\u{…}` with 1 to 6 hex digits of a character";
                (at, message.to_string())
            };
            if chars.get(at + 2) != Some(&'{') {
                return Err(bad());
            }
            let close = (at + 3..chars.len().min(at + 10))
                .find(|&j| chars[j] == '}')
                .ok_or_else(bad)?;
            let hex: String = chars[at + 3..close].iter().collect();
            let c = u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(bad)?;
            return Ok((c, close + 1));
        }
        _ => {
            let message = "bad escape: expected one of `\\\\ \\\" \\n \\r \\t \\u{…}`";
            return Err((at, message.to_string()));
        }
    };
    Ok((simple, at + 2))
}
