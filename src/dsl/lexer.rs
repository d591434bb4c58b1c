//! Splits model source into tokens, each with its 1-based line and column (in characters).
//!
//! Newlines are tokens: a model has one statement per line. `#` starts a comment that runs to
//! the end of the line.

use crate::ir::Diagnostic;
use crate::ir::graph::Span;
use std::fmt;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// A name: `[A-Za-z_][A-Za-z0-9_]*` (keywords are names too; the parser tells them apart).
    Ident(String),
    /// An integer literal such as `784`.
    Int(u64),
    /// A literal with a fraction or an exponent, such as `0.5` or `1e-3`.
    Float(f64),
    /// A string such as `"same"`: no escapes, on one line.
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Equals,
    Plus,
    Minus,
    Star,
    Slash,
    At,
    /// The end of a line (statements end here).
    Newline,
    /// The end of the source.
    Eof,
}

impl fmt::Display for TokenKind {
    /// How the token is named in error messages ("found identifier 'x'", "found end of line").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symbol = match self {
            TokenKind::Ident(name) => return write!(f, "identifier '{name}'"),
            TokenKind::Int(n) => return write!(f, "number {n}"),
            TokenKind::Float(x) => return write!(f, "number {x:?}"),
            TokenKind::Str(text) => return write!(f, "string {text:?}"),
            TokenKind::Newline => return f.write_str("end of line"),
            TokenKind::Eof => return f.write_str("end of file"),
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Comma => ",",
            TokenKind::Colon => ":",
            TokenKind::Equals => "=",
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::At => "@",
        };
        write!(f, "'{symbol}'")
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Splits `source` into tokens, ending with [`TokenKind::Eof`]; `file` names the source in errors.
pub fn tokenize(file: &str, source: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut lexer = Lexer {
        file,
        source,
        chars: source.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    file: &'a str,
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: u32,
    col: u32,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn span(&self) -> Span {
        Span {
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, span: Span, message: String) -> Diagnostic {
        Diagnostic::new(self.file, self.source, span, message)
    }

    fn next_token(&mut self) -> Result<Token, Diagnostic> {
        self.skip_blanks_and_comments();
        let span = self.span();
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                span,
            });
        };
        let kind = match c {
            '\n' => TokenKind::Newline,
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            '[' => TokenKind::LBracket,
            ']' => TokenKind::RBracket,
            ',' => TokenKind::Comma,
            ':' => TokenKind::Colon,
            '=' => TokenKind::Equals,
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '*' => TokenKind::Star,
            '/' => TokenKind::Slash,
            '@' => TokenKind::At,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                return Ok(Token {
                    kind: TokenKind::Ident(name),
                    span,
                });
            }
            '"' => {
                self.bump();
                let text = self.take_while(|c| c != '"' && c != '\n');
                if self.peek() != Some('"') {
                    return Err(self.error(span, "a string that does not end on its line".into()));
                }
                self.bump();
                return Ok(Token {
                    kind: TokenKind::Str(text),
                    span,
                });
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let kind = self.number(span)?;
                return Ok(Token { kind, span });
            }
            other => {
                return Err(self.error(
                    span,
                    format!(
                        "unexpected character {other:?}; expected a name, a number, an operator \
                         (+ - * / @), a bracket, ',', ':', '=', a \"string\" or '#' for a comment"
                    ),
                ));
            }
        };
        self.bump();
        Ok(Token { kind, span })
    }

    fn skip_blanks_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                // A carriage return is a blank so that `\r\n` files read like `\n` files.
                ' ' | '\t' | '\r' => {
                    self.bump();
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut text = String::new();
        while let Some(c) = self.peek().filter(|&c| keep(c)) {
            text.push(c);
            self.bump();
        }
        text
    }

    /// `digits [. digits] [(e|E) [+|-] digits]`, or `. digits …`; a number must not run into a
    /// name (`12ab`).
    fn number(&mut self, span: Span) -> Result<TokenKind, Diagnostic> {
        let mut text = self.take_while(|c| c.is_ascii_digit());
        let mut is_float = false;
        if self.peek() == Some('.') {
            is_float = true;
            text.push('.');
            self.bump();
            let fraction = self.take_while(|c| c.is_ascii_digit());
            if fraction.is_empty() {
                return Err(self.error(
                    self.span(),
                    format!("expected a digit after the decimal point in '{text}'"),
                ));
            }
            text.push_str(&fraction);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            is_float = true;
            text.push('e');
            self.bump();
            if let Some(sign @ ('+' | '-')) = self.peek() {
                text.push(sign);
                self.bump();
            }
            let exponent = self.take_while(|c| c.is_ascii_digit());
            if exponent.is_empty() {
                return Err(self.error(
                    self.span(),
                    format!("expected the digits of the exponent in '{text}'"),
                ));
            }
            text.push_str(&exponent);
        }
        if let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        {
            return Err(self.error(
                self.span(),
                format!(
                    "unexpected {c:?} right after the number '{text}'; expected an operator, \
                     ',' or a bracket (names cannot start with a digit)"
                ),
            ));
        }
        if is_float {
            let value: f64 = text
                .parse()
                .expect("the lexer only accepts float syntax Rust parses");
            if !value.is_finite() {
                return Err(self.error(span, format!("the number {text} is too large for f64")));
            }
            Ok(TokenKind::Float(value))
        } else {
            text.parse().map(TokenKind::Int).map_err(|_| {
                self.error(
                    span,
                    format!(
                        "the integer {text} is too large (at most {}); write it as a float \
                         (with '.0' or an exponent) if a real number is meant",
                        u64::MAX
                    ),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize("<input>", source)
            .expect("valid source")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn tokens_with_positions() {
        let tokens = tokenize("<input>", "h = x @ w1 # c\n  out(2.5e1)").expect("valid source");
        let got: Vec<(TokenKind, u32, u32)> = tokens
            .into_iter()
            .map(|t| (t.kind, t.span.line, t.span.col))
            .collect();
        let ident = |s: &str| TokenKind::Ident(s.to_string());
        assert_eq!(
            got,
            vec![
                (ident("h"), 1, 1),
                (TokenKind::Equals, 1, 3),
                (ident("x"), 1, 5),
                (TokenKind::At, 1, 7),
                (ident("w1"), 1, 9),
                (TokenKind::Newline, 1, 15),
                (ident("out"), 2, 3),
                (TokenKind::LParen, 2, 6),
                (TokenKind::Float(25.0), 2, 7),
                (TokenKind::RParen, 2, 12),
                (TokenKind::Eof, 2, 13),
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("7 .5 1.25 3e2 2E-1")[..5],
            [
                TokenKind::Int(7),
                TokenKind::Float(0.5),
                TokenKind::Float(1.25),
                TokenKind::Float(300.0),
                TokenKind::Float(0.2),
            ]
        );
        assert_eq!(kinds("18446744073709551615")[0], TokenKind::Int(u64::MAX));
    }

    #[test]
    fn columns_count_characters_and_crlf_is_a_newline() {
        let tokens = tokenize("<input>", "é = 1\r\nx").expect_err("é is not a name character");
        assert_eq!(tokens.span, Span { line: 1, col: 1 });
        let tokens = tokenize("<input>", "# é\r\nx\r\n").expect("valid source");
        assert_eq!(tokens[1].span, Span { line: 2, col: 1 });
        assert_eq!(tokens[2].kind, TokenKind::Newline);
    }

    #[test]
    fn bad_numbers_are_errors() {
        for (source, col, words) in [
            ("18446744073709551616", 1, "too large"),
            ("1e999", 1, "too large for f64"),
            ("1.", 3, "digit after the decimal point"),
            ("2e+", 4, "exponent"),
            ("12ab", 3, "right after the number '12'"),
            ("1.2.3", 4, "right after the number '1.2'"),
        ] {
            let err = tokenize("<input>", source).expect_err(source);
            assert_eq!(err.span.col, col, "{source}");
            assert!(err.message.contains(words), "{source}: {}", err.message);
        }
    }
}
