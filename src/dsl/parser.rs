//! The syntax tree of a model file and its recursive-descent parser.
//!
//! ```text
//! file       = { [ statement ] NEWLINE } EOF
//! statement  = "model" NAME
//!            | ( "input" | "target" ) NAME ":" type
//!            | "param" NAME ":" type [ "=" expr ]
//!            | "fn" NAME "(" [ NAME { "," NAME } [ "," ] ] ")" "=" expr
//!            | "output" NAME "=" expr
//!            | "loss" expr
//!            | NAME "=" expr
//! type       = ( "f32" | "f64" ) list
//! expr       = term { ( "+" | "-" ) term }
//! term       = unary { ( "*" | "/" | "@" ) unary }
//! unary      = "-" unary | atom
//! atom       = INT | FLOAT | "true" | "false" | NAME [ "(" [ args ] ")" ] | "(" expr ")" | list
//! args       = arg { "," arg } [ "," ]          (keyword arguments after positional ones)
//! arg        = [ NAME "=" ] expr
//! list       = "[" [ expr { "," expr } [ "," ] ] "]"
//! ```
//!
//! Parsing never recurses without bound: nesting deeper than [`MAX_DEPTH`] levels is an error.

use super::lexer::{Token, TokenKind, tokenize};
use crate::ir::Diagnostic;
use crate::ir::graph::{ArgRole, Span};
use crate::ir::shape::DType;
use rapidfuzz::distance::levenshtein;

/// The deepest nesting of parentheses, calls, lists and operators an expression may have
/// (counting inlined fn bodies when lowering). Ample for models written by hand, and small
/// enough that parsing and lowering stay within a 2 MB thread stack even in debug builds.
pub const MAX_DEPTH: u32 = 128;

/// Words that start statements or spell booleans; they cannot name anything.
pub const KEYWORDS: [&str; 9] = [
    "model", "input", "target", "param", "fn", "output", "loss", "true", "false",
];

/// What may start a line, for error messages.
const A_STATEMENT: &str =
    "a statement (model, input, target, param, fn, output, loss or NAME = expr)";

/// A name and where it appears.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// The infix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
}

impl BinOp {
    /// The source spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::MatMul => "@",
        }
    }
}

/// An expression. `span` is where its operator, callee, name or literal is.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Levels of nesting (1 for a leaf); at most [`MAX_DEPTH`], which bounds every recursion
    /// over the tree.
    pub height: u32,
}

/// The forms of an expression (parentheses leave no trace).
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(u64),
    Float(f64),
    Bool(bool),
    /// A string: `padding="same"`.
    Str(String),
    Name(String),
    /// `[a, b, …]`: axes, shapes, permutations, concat operands.
    List(Vec<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Call {
        callee: Ident,
        args: Vec<Expr>,
        kwargs: Vec<(Ident, Expr)>,
    },
}

/// A tensor type as written: `f32[B, 784]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub dtype: DType,
    /// One expression per axis (integers, symbolic names, products of those).
    pub dims: Vec<Expr>,
    pub span: Span,
}

/// One line of a model file.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// Where the statement starts.
    pub span: Span,
    pub kind: StatementKind,
}

/// The statements of the DSL.
#[derive(Clone, Debug, PartialEq)]
pub enum StatementKind {
    Model {
        name: Ident,
    },
    /// `input`, `target` or `param`; only a param may have an initializer.
    Declare {
        role: ArgRole,
        name: Ident,
        ty: TypeExpr,
        init: Option<Expr>,
    },
    Fn {
        name: Ident,
        params: Vec<Ident>,
        body: Expr,
    },
    Let {
        name: Ident,
        value: Expr,
    },
    Output {
        name: Ident,
        value: Expr,
    },
    Loss {
        value: Expr,
    },
}

/// Parses model source into statements; `file` names the source in errors.
pub fn parse(file: &str, source: &str) -> Result<Vec<Statement>, Diagnostic> {
    let tokens = tokenize(file, source)?;
    let mut parser = Parser {
        file,
        source,
        tokens,
        pos: 0,
        depth: 0,
    };
    let mut statements = Vec::new();
    loop {
        match parser.peek() {
            TokenKind::Eof => return Ok(statements),
            TokenKind::Newline => {
                parser.advance();
            }
            _ => statements.push(parser.statement()?),
        }
    }
}

/// What a bracket that is not closed belongs to.
enum Enclosing<'a> {
    Parenthesis(Span),
    List(Span),
    Call(&'a str),
    Params(&'a str),
}

struct Parser<'a> {
    file: &'a str,
    source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Current recursion depth of the expression parser.
    depth: u32,
}

impl Parser<'_> {
    fn token(&self) -> &Token {
        // The token list ends with Eof and the parser never moves past it.
        &self.tokens[self.pos]
    }

    fn peek(&self) -> &TokenKind {
        &self.token().kind
    }

    fn peek_second(&self) -> &TokenKind {
        let at = (self.pos + 1).min(self.tokens.len() - 1);
        &self.tokens[at].kind
    }

    fn span(&self) -> Span {
        self.token().span
    }

    /// Moves past the current token (never past the end) and returns where it was.
    fn advance(&mut self) -> Span {
        let span = self.span();
        if self.peek() != &TokenKind::Eof {
            self.pos += 1;
        }
        span
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let found = self.peek() == kind;
        if found {
            self.advance();
        }
        found
    }

    fn error_at(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, self.source, span, message)
    }

    /// "expected {what}, found {the current token}" at the current token.
    fn expected(&self, what: &str) -> Diagnostic {
        self.error_at(
            self.span(),
            format!("expected {what}, found {}", self.peek()),
        )
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<(), Diagnostic> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// A name that is not a keyword.
    fn name(&mut self, what: &str) -> Result<Ident, Diagnostic> {
        let TokenKind::Ident(name) = self.peek() else {
            return Err(self.expected(what));
        };
        if KEYWORDS.contains(&name.as_str()) {
            return Err(self.keyword_as_name(what));
        }
        let name = name.clone();
        let span = self.advance();
        Ok(Ident { name, span })
    }

    fn keyword_as_name(&self, what: &str) -> Diagnostic {
        let word = match self.peek() {
            TokenKind::Ident(word) => word.as_str(),
            _ => unreachable!("called at a keyword"),
        };
        self.error_at(
            self.span(),
            format!("expected {what}, found the keyword '{word}' (keywords cannot be names)"),
        )
    }

    fn statement(&mut self) -> Result<Statement, Diagnostic> {
        let span = self.span();
        let TokenKind::Ident(word) = self.peek().clone() else {
            return Err(self.expected(A_STATEMENT));
        };
        let kind = match word.as_str() {
            "model" => {
                self.advance();
                StatementKind::Model {
                    name: self.name("a model name after 'model'")?,
                }
            }
            "input" | "target" | "param" => {
                self.advance();
                self.declaration(&word)?
            }
            "fn" => {
                self.advance();
                self.function()?
            }
            "output" => {
                self.advance();
                let name = self.name("the output's name after 'output'")?;
                self.expect(
                    &TokenKind::Equals,
                    &format!(
                        "'=' and the output's expression after 'output {}'",
                        name.name
                    ),
                )?;
                StatementKind::Output {
                    name,
                    value: self.expr()?,
                }
            }
            "loss" => {
                self.advance();
                StatementKind::Loss {
                    value: self.expr()?,
                }
            }
            _ => {
                let name = self.name(A_STATEMENT)?;
                if !self.eat(&TokenKind::Equals) {
                    let statement_keywords = KEYWORDS
                        .into_iter()
                        .filter(|k| *k != "true" && *k != "false");
                    let hint = closest(&name.name, statement_keywords)
                        .map(|k| {
                            format!(
                                " ('{}' is not a statement keyword; did you mean '{k}'?)",
                                name.name
                            )
                        })
                        .unwrap_or_default();
                    return Err(self.error_at(
                        self.span(),
                        format!(
                            "expected '=' after '{}' to define it, found {}{hint}",
                            name.name,
                            self.peek()
                        ),
                    ));
                }
                StatementKind::Let {
                    name,
                    value: self.expr()?,
                }
            }
        };
        if !matches!(self.peek(), TokenKind::Newline | TokenKind::Eof) {
            return Err(self.expected("end of line after the statement (one statement per line)"));
        }
        Ok(Statement { span, kind })
    }

    /// After `input`, `target` or `param`: `NAME ":" type [ "=" init ]`.
    fn declaration(&mut self, role_word: &str) -> Result<StatementKind, Diagnostic> {
        let role = ArgRole::from_name(role_word).expect("called for input, target and param only");
        let name = self.name(&format!("a name after '{role_word}'"))?;
        self.expect(
            &TokenKind::Colon,
            &format!("':' and a type such as f32[B, 10] after '{}'", name.name),
        )?;
        let ty = self.type_expr()?;
        let init = if self.peek() == &TokenKind::Equals {
            if role != ArgRole::Param {
                return Err(self.error_at(
                    self.span(),
                    format!(
                        "only a param takes an initializer ('= …'); '{}' is an {role_word}",
                        name.name
                    ),
                ));
            }
            self.advance();
            Some(self.expr()?)
        } else {
            None
        };
        Ok(StatementKind::Declare {
            role,
            name,
            ty,
            init,
        })
    }

    fn type_expr(&mut self) -> Result<TypeExpr, Diagnostic> {
        let span = self.span();
        let dtype = match self.peek().clone() {
            TokenKind::Ident(word) => DType::from_name(&word).ok_or_else(|| {
                self.error_at(
                    span,
                    format!("unknown element type '{word}'; expected f32 or f64"),
                )
            })?,
            _ => return Err(self.expected("a type such as f32[B, 10]")),
        };
        self.advance();
        if self.peek() != &TokenKind::LBracket {
            return Err(self.expected(&format!(
                "'[' and the dimensions after '{dtype}' (write {dtype}[] for a scalar)"
            )));
        }
        let dims = self.list()?;
        let ExprKind::List(dims) = dims.kind else {
            unreachable!("list() returns a list")
        };
        Ok(TypeExpr { dtype, dims, span })
    }

    /// After `fn`: `NAME "(" params ")" "=" expr`.
    fn function(&mut self) -> Result<StatementKind, Diagnostic> {
        let name = self.name("the fn's name after 'fn'")?;
        self.expect(
            &TokenKind::LParen,
            &format!("'(' and the parameters of fn '{}'", name.name),
        )?;
        let mut params = Vec::new();
        while self.peek() != &TokenKind::RParen {
            params.push(self.name(&format!("a parameter name of fn '{}'", name.name))?);
            if !self.eat(&TokenKind::Comma) && self.peek() != &TokenKind::RParen {
                return Err(self.unclosed(")", Enclosing::Params(&name.name)));
            }
        }
        self.advance();
        self.expect(
            &TokenKind::Equals,
            &format!("'=' and the body of fn '{}'", name.name),
        )?;
        Ok(StatementKind::Fn {
            name,
            params,
            body: self.expr()?,
        })
    }

    /// The error for a bracketed sequence that neither continues nor closes.
    fn unclosed(&self, closer: &str, enclosing: Enclosing) -> Diagnostic {
        let context = match enclosing {
            Enclosing::Parenthesis(open) => {
                return self.expected(&format!(
                    "')' to close the '(' at {}:{}",
                    open.line, open.col
                ));
            }
            Enclosing::List(open) => format!("the list opened at {}:{}", open.line, open.col),
            Enclosing::Call(callee) => format!("the call to '{callee}'"),
            Enclosing::Params(name) => format!("the parameters of fn '{name}'"),
        };
        let message = if matches!(self.peek(), TokenKind::Newline | TokenKind::Eof) {
            format!(
                "expected '{closer}' to close {context}, found {}",
                self.peek()
            )
        } else {
            format!(
                "expected ',' or '{closer}' in {context}, found {}",
                self.peek()
            )
        };
        self.error_at(self.span(), message)
    }

    fn positional_after_keyword(&self, callee: &Ident, key: &Ident) -> Diagnostic {
        self.error_at(
            self.span(),
            format!(
                "positional argument after the keyword argument '{}' in the call to '{}'; \
                 expected positional arguments first",
                key.name, callee.name
            ),
        )
    }

    fn enter(&mut self) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep(self.span()));
        }
        Ok(())
    }

    fn too_deep(&self, span: Span) -> Diagnostic {
        self.error_at(
            span,
            format!(
                "expression nested too deeply: more than {MAX_DEPTH} levels of parentheses, \
                 calls, lists or operators; split it into named steps"
            ),
        )
    }

    /// The height of a compound expression over `children`, rejected if it is too deep.
    fn height(&self, span: Span, children: &[&Expr]) -> Result<u32, Diagnostic> {
        let height = 1 + children.iter().map(|c| c.height).max().unwrap_or(0);
        if height > MAX_DEPTH {
            return Err(self.too_deep(span));
        }
        Ok(height)
    }

    fn expr(&mut self) -> Result<Expr, Diagnostic> {
        self.enter()?;
        let result = self.sum();
        self.depth -= 1;
        result
    }

    fn sum(&mut self) -> Result<Expr, Diagnostic> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                TokenKind::Plus => BinOp::Add,
                TokenKind::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            lhs = self.binary_rest(op, lhs, Self::term)?;
        }
    }

    fn term(&mut self) -> Result<Expr, Diagnostic> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                TokenKind::Star => BinOp::Mul,
                TokenKind::Slash => BinOp::Div,
                TokenKind::At => BinOp::MatMul,
                _ => return Ok(lhs),
            };
            lhs = self.binary_rest(op, lhs, Self::unary)?;
        }
    }

    /// Consumes the operator at the current token and its right operand.
    fn binary_rest(
        &mut self,
        op: BinOp,
        lhs: Expr,
        operand: fn(&mut Self) -> Result<Expr, Diagnostic>,
    ) -> Result<Expr, Diagnostic> {
        let span = self.advance();
        let rhs = operand(self)?;
        let children = [&lhs, &rhs];
        let height = self.height(span, &children)?;
        Ok(Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            },
            span,
            height,
        })
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        if self.peek() != &TokenKind::Minus {
            return self.atom();
        }
        let span = self.advance();
        self.enter()?;
        let operand = self.unary();
        self.depth -= 1;
        let operand = operand?;
        let height = self.height(span, &[&operand])?;
        Ok(Expr {
            kind: ExprKind::Neg(Box::new(operand)),
            span,
            height,
        })
    }

    // The recursive functions below keep error formatting in separate functions: in debug
    // builds every temporary of a function occupies its frame, and nesting multiplies frames.

    fn atom(&mut self) -> Result<Expr, Diagnostic> {
        let kind = match self.peek() {
            TokenKind::Int(n) => ExprKind::Int(*n),
            TokenKind::Float(x) => ExprKind::Float(*x),
            TokenKind::Str(text) => ExprKind::Str(text.clone()),
            TokenKind::Ident(word) if word == "true" || word == "false" => {
                ExprKind::Bool(word == "true")
            }
            TokenKind::Ident(_) => {
                let name = self.name("an expression")?;
                if self.peek() == &TokenKind::LParen {
                    return self.call(name);
                }
                return Ok(Expr {
                    kind: ExprKind::Name(name.name),
                    span: name.span,
                    height: 1,
                });
            }
            TokenKind::LParen => return self.parenthesized(),
            TokenKind::LBracket => return self.list(),
            _ => return Err(self.expected("an expression (a name, a number, a call, '(' or '[')")),
        };
        let span = self.advance();
        Ok(Expr {
            kind,
            span,
            height: 1,
        })
    }

    /// `( expr )`, starting at the `(`.
    fn parenthesized(&mut self) -> Result<Expr, Diagnostic> {
        let open = self.advance();
        let inner = self.expr()?;
        if !self.eat(&TokenKind::RParen) {
            return Err(self.unclosed(")", Enclosing::Parenthesis(open)));
        }
        Ok(inner)
    }

    /// `[a, b, …]`, starting at the `[`.
    fn list(&mut self) -> Result<Expr, Diagnostic> {
        let span = self.advance();
        let mut items = Vec::new();
        while self.peek() != &TokenKind::RBracket {
            items.push(self.expr()?);
            if !self.eat(&TokenKind::Comma) && self.peek() != &TokenKind::RBracket {
                return Err(self.unclosed("]", Enclosing::List(span)));
            }
        }
        self.advance();
        let children: Vec<&Expr> = items.iter().collect();
        let height = self.height(span, &children)?;
        Ok(Expr {
            kind: ExprKind::List(items),
            span,
            height,
        })
    }

    /// `callee(args)`, starting at the `(`.
    fn call(&mut self, callee: Ident) -> Result<Expr, Diagnostic> {
        self.advance();
        let mut args = Vec::new();
        let mut kwargs: Vec<(Ident, Expr)> = Vec::new();
        while self.peek() != &TokenKind::RParen {
            let is_keyword = matches!(self.peek(), TokenKind::Ident(_))
                && self.peek_second() == &TokenKind::Equals;
            if is_keyword {
                let key = self.name("a keyword argument name")?;
                self.advance();
                kwargs.push((key, self.expr()?));
            } else if let Some((key, _)) = kwargs.last() {
                return Err(self.positional_after_keyword(&callee, key));
            } else {
                args.push(self.expr()?);
            }
            if !self.eat(&TokenKind::Comma) && self.peek() != &TokenKind::RParen {
                return Err(self.unclosed(")", Enclosing::Call(&callee.name)));
            }
        }
        self.advance();
        let children: Vec<&Expr> = args.iter().chain(kwargs.iter().map(|(_, e)| e)).collect();
        let span = callee.span;
        let height = self.height(span, &children)?;
        Ok(Expr {
            kind: ExprKind::Call {
                callee,
                args,
                kwargs,
            },
            span,
            height,
        })
    }
}

/// Edits a likely typo may be away from the name it misspells: a third of the name's length, at
/// least 1 and at most this. The bound keeps each comparison linear in the names' lengths (only a
/// band of the edit-distance table this wide is computed), whatever the file holds.
const MAX_TYPO_EDITS: usize = 4;

/// The candidate closest to `name` by edit distance (in characters), if it is close enough to be
/// a likely typo.
pub(crate) fn closest<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).clamp(1, MAX_TYPO_EDITS);
    let within_limit = levenshtein::Args::default().score_cutoff(limit);
    candidates
        .into_iter()
        .filter_map(|c| {
            levenshtein::distance_with_args(name.chars(), c.chars(), &within_limit).map(|d| (d, c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr_of(source: &str) -> Expr {
        let statements = parse("<input>", &format!("loss {source}")).expect("valid source");
        match &statements[0].kind {
            StatementKind::Loss { value } => value.clone(),
            other => panic!("not a loss statement: {other:?}"),
        }
    }

    /// The expression re-printed with full parentheses.
    fn shown(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(n) => n.to_string(),
            ExprKind::Float(x) => format!("{x:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Str(text) => format!("{text:?}"),
            ExprKind::Name(n) => n.clone(),
            ExprKind::List(items) => format!(
                "[{}]",
                items.iter().map(shown).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::Neg(x) => format!("(-{})", shown(x)),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", shown(lhs), op.symbol(), shown(rhs))
            }
            ExprKind::Call {
                callee,
                args,
                kwargs,
            } => {
                let args = args.iter().map(shown).chain(
                    kwargs
                        .iter()
                        .map(|(k, v)| format!("{}={}", k.name, shown(v))),
                );
                format!("{}({})", callee.name, args.collect::<Vec<_>>().join(", "))
            }
        }
    }

    #[test]
    fn precedence_is_pythons() {
        assert_eq!(
            shown(&expr_of("a + b * c @ d - e")),
            "((a + ((b * c) @ d)) - e)"
        );
        assert_eq!(shown(&expr_of("-x @ w / 2")), "(((-x) @ w) / 2)");
        assert_eq!(shown(&expr_of("a - -b")), "(a - (-b))");
        assert_eq!(shown(&expr_of("(a + b) * c")), "((a + b) * c)");
        assert_eq!(
            shown(&expr_of("sum(x, axis=[0, -1], keepdims=true,)")),
            "sum(x, axis=[0, (-1)], keepdims=true)"
        );
        assert_eq!(shown(&expr_of("f()")), "f()");
    }

    #[test]
    fn statements() {
        let source = "model m\n\ninput x: f32[B, 3] # c\nparam w: f64[3, 2*K] = normal(0.1)\n\
                      fn f(a, b) = a + b\nh = f(x, w)\noutput z = h\nloss z";
        let statements = parse("m.sgn", source).expect("valid source");
        assert_eq!(statements.len(), 7);
        assert_eq!(statements[1].span, Span { line: 3, col: 1 });
        let StatementKind::Declare { role, ty, init, .. } = &statements[2].kind else {
            panic!("not a declaration: {:?}", statements[2]);
        };
        assert_eq!(*role, ArgRole::Param);
        assert_eq!(ty.dtype, DType::F64);
        assert_eq!(
            ty.dims.iter().map(shown).collect::<Vec<_>>(),
            ["3", "(2 * K)"]
        );
        assert_eq!(init.as_ref().map(shown).as_deref(), Some("normal(0.1)"));
        let StatementKind::Fn { params, .. } = &statements[3].kind else {
            panic!("not a fn: {:?}", statements[3]);
        };
        assert_eq!(
            params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = MAX_DEPTH as usize - 2;
        let ok = format!("{}x{}", "(".repeat(deep), ")".repeat(deep));
        assert_eq!(shown(&expr_of(&ok)), "x");
        for source in [
            format!("{}x{}", "(".repeat(300), ")".repeat(300)),
            format!("{}x", "-".repeat(100_000)),
            format!("x{}", " + x".repeat(300)),
            format!("{}x{}", "f(".repeat(300), ")".repeat(300)),
        ] {
            let err = parse("<input>", &format!("loss {source}")).expect_err("too deep");
            assert!(err.message.contains("nested too deeply"), "{}", err.message);
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("parm", KEYWORDS), Some("param"));
        assert_eq!(closest("sigmoidd", ["sigmoid", "softmax"]), Some("sigmoid"));
        assert_eq!(closest("zzz", ["sigmoid"]), None);
        // A third of the length, at most MAX_TYPO_EDITS: 3 edits in 9 characters are a typo.
        assert_eq!(closest("abcdefxyz", ["abcdefghi"]), Some("abcdefghi"));
        assert_eq!(closest("abcdefxyz", ["abcdeuvwx"]), None);
        let long = "a".repeat(30);
        let four_off = format!("{}bbbb", "a".repeat(26));
        let five_off = format!("{}bbbbb", "a".repeat(25));
        assert_eq!(closest(&long, [four_off.as_str()]), Some(four_off.as_str()));
        assert_eq!(closest(&long, [five_off.as_str()]), None);
    }
}
