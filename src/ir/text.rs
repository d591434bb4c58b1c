//! The graph IR's text form, and a Graphviz view of a graph.
//!
//! [`print_graph`] writes a [`Graph`] as text and [`parse_graph`] reads it back:
//! `parse_graph(&print_graph(g))` equals `g` (see [`Graph`]'s `PartialEq`). The text is meant for
//! people as well: tests state graphs in it and `Display` for [`Graph`] prints it.
//! [`print_dot`] draws a graph with Graphviz.
//!
//! # The format
//!
//! ```text
//! graph mnist_mlp                       # header: the first line, exactly once
//! arg x: f32[B, 784] input              # the arguments in order: name, type, role
//! arg w1: f32[784, 20] param
//! %0 = arg x : f32[B, 784]              # nodes: id = op operands : type
//! %1 = arg w1 : f32[784, 20]
//! %2 = matmul %0, %1 : f32[B, 20] @7:9  # optional source position line:col
//! out z = %2                            # the outputs in order
//! ```
//!
//! - One item a line; `#` starts a comment; blank lines are ignored. The printer writes the
//!   header, then the arguments, the nodes and the outputs; the reader only asks that a name be
//!   declared on an earlier line than its uses.
//! - Names (of the graph, arguments, outputs and dimension symbols) are identifiers
//!   `[A-Za-z_][A-Za-z0-9_]*` or double-quoted strings with the escapes `\\ \" \n \r \t \u{…}`;
//!   the printer quotes only names that are not identifiers.
//! - A type is `f32[…]` or `f64[…]`; a dimension is a product of an integer and symbols:
//!   `784`, `B`, `784*B`, `2*B*T`. `f32[]` is a scalar.
//! - A node id `%N` is any number not used by an earlier node; operands must be nodes of earlier
//!   lines. The printer numbers nodes by their arena index; the reader numbers them densely in
//!   the order of their lines, so printed ids read back unchanged.
//! - Floats are printed shortest-round-trip (`0.1`, `1e-300`, `-2.5`), or `inf`, `-inf`, `NaN`;
//!   a NaN whose bits differ from `f64::NAN` is printed with its bits, `NaN(0x7ff8000000000001)`,
//!   so that constants read back bit-exactly.
//! - The ops, parameters in brackets after the name (each family reads and writes its own
//!   parameters; see [`crate::ir::op`]):
//!
//! | text                                   | op                                           |
//! |----------------------------------------|----------------------------------------------|
//! | `arg x`                                | [`Leaf::Arg`]: reads argument `x` (no operands) |
//! | `const 0.5`                            | [`Leaf::Const`] (no operands; the type is a scalar) |
//! | `dim_size 2*B`                         | [`Leaf::DimSize`] (no operands; a scalar)    |
//! | `exp %0`, `neg %0`, … (every [`UnaryOp`]) | [`Elementwise::Unary`]                    |
//! | `pow[2.0] %0`                          | [`Elementwise::Pow`]                         |
//! | `add %0, %1`, `sub`, … (every [`BinaryOp`]) | [`Elementwise::Binary`]                 |
//! | `matmul %0, %1`, `matmul[ta]`, `matmul[tb]`, `matmul[ta, tb]` | [`MatMul`], operands transposed |
//! | `sum[0, 2] %0`, `reduce_max[1] %0`     | [`Reduce`] (sum, max) over the axes |
//! | `broadcast[B, 20] %0`, `reshape[784*B] %0` | [`Layout::Broadcast`], [`Layout::Reshape`] to the shape |
//! | `transpose[1, 0] %0`                   | [`Layout::Transpose`] by the permutation     |
//! | `concat[1] %0, %1, %2`                 | [`Layout::Concat`] along the axis            |
//! | `slice[1, 0..2*B] %0`                  | [`Layout::Slice`]: axis, then `start..end`   |
//! | `stop_gradient %0`                     | [`Elementwise::StopGradient`]                |
//!
//! # What the reader checks
//!
//! Each node's declared type is checked: an `arg` node has its argument's type, `const` and
//! `dim_size` are scalars, and every other op's type is recomputed by [`Op::infer_type`] from
//! its operands (a mismatch names both types). Each argument is read by exactly one `arg` node;
//! argument and output names are distinct. A node equal to an earlier one (same op, operands and
//! element type) is merged into it, as the graph's hash-consing does everywhere. Every error is a
//! [`Diagnostic`] at `<ir>:line:col` saying what was expected.

use crate::error::{Error, Result};
use crate::ir::dsl::Diagnostic;
use crate::ir::graph::{Arg, ArgRole, Graph, NodeId, Span};
use crate::ir::op::{Elementwise, Leaf, Op, ParamReader};
#[cfg(doc)]
use crate::ir::op::{Layout, MatMul, Reduce};
use crate::ir::shape::{DType, Dim, Shape, TensorType};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// The file name in diagnostics about IR text.
const SOURCE_NAME: &str = "<ir>";

/// The text form of `g` (see the [module docs](self)); [`parse_graph`] reads it back.
///
/// ```
/// use sgn::ir::text::{parse_graph, print_graph};
/// use sgn::ir::{ArgRole, DType, Dim, Graph, Shape, TensorType, UnaryOp};
///
/// let mut g = Graph::new("tiny");
/// let ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("B"), Dim::fixed(3)]));
/// let x = g.add_arg("x", ArgRole::Input, ty);
/// let y = g.unary(UnaryOp::Tanh, x)?;
/// g.add_output("y", y);
///
/// let text = print_graph(&g);
/// assert_eq!(
///     text,
///     "graph tiny\n\
///      arg x: f32[B, 3] input\n\
///      %0 = arg x : f32[B, 3]\n\
///      %1 = tanh %0 : f32[B, 3]\n\
///      out y = %1\n"
/// );
/// assert_eq!(parse_graph(&text)?, g);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn print_graph(g: &Graph) -> String {
    g.to_string()
}

impl fmt::Display for Graph {
    /// The text form; see [`print_graph`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {}", Name(&self.name))?;
        for a in self.args() {
            writeln!(
                f,
                "arg {}: {} {}",
                Name(&a.name),
                TypeText(&a.ty),
                a.role.name()
            )?;
        }
        for id in self.ids() {
            let node = self.node(id);
            write!(
                f,
                "%{} = {}",
                id.0,
                OpText {
                    graph: self,
                    op: &node.op
                }
            )?;
            for (k, operand) in node.inputs.iter().enumerate() {
                write!(f, "{}%{}", if k == 0 { " " } else { ", " }, operand.0)?;
            }
            write!(f, " : {}", TypeText(&node.ty))?;
            if let Some(Span { line, col }) = self.origin(id) {
                write!(f, " @{line}:{col}")?;
            }
            writeln!(f)?;
        }
        for o in self.outputs() {
            writeln!(f, "out {} = %{}", Name(&o.name), o.node.0)?;
        }
        Ok(())
    }
}

/// A name, bare if it is an identifier, else quoted.
struct Name<'a>(&'a str);

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_identifier(self.0) {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// A dimension with its symbols written as [`Name`]s.
pub(crate) struct DimText<'a>(pub(crate) &'a Dim);

impl fmt::Display for DimText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dim = self.0;
        let mut separator = "";
        if dim.coeff() != 1 || dim.symbols().is_empty() {
            write!(f, "{}", dim.coeff())?;
            separator = "*";
        }
        for s in dim.symbols() {
            write!(f, "{separator}{}", Name(s))?;
            separator = "*";
        }
        Ok(())
    }
}

/// `[d0, d1, …]`.
pub(crate) struct ShapeText<'a>(pub(crate) &'a Shape);

impl fmt::Display for ShapeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, self.0.dims(), |f, d| write!(f, "{}", DimText(d)))
    }
}

/// `f32[d0, d1, …]`.
struct TypeText<'a>(&'a TensorType);

impl fmt::Display for TypeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0.dtype, ShapeText(&self.0.shape))
    }
}

/// `[a, b, …]`.
fn write_list<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    write_item: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_char('[')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_item(f, item)?;
    }
    f.write_char(']')
}

/// A float that reads back bit-exactly.
pub(crate) struct Float(pub(crate) f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x.is_nan() && x.to_bits() != f64::NAN.to_bits() {
            write!(f, "NaN(0x{:016x})", x.to_bits())
        } else {
            // Rust's `Debug` for floats is the shortest text that parses back to the same bits.
            write!(f, "{x:?}")
        }
    }
}

/// An op with its parameters, without operands: `broadcast[B, 20]`.
struct OpText<'a> {
    graph: &'a Graph,
    op: &'a Op,
}

impl fmt::Display for OpText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.name())?;
        let arg_name = |i: usize| match self.graph.args().get(i) {
            Some(arg) => Name(&arg.name).to_string(),
            // A node for an argument that was never registered: printed so that the reader
            // rejects it (it expects a name) rather than silently inventing one.
            None => i.to_string(),
        };
        self.op.write_params(f, &arg_name)
    }
}

// ─── Graphviz ────────────────────────────────────────────────────────────────────────────────

/// The graph in Graphviz's dot language: one box per node labelled with its op and type,
/// arguments as ellipses coloured by role (input blue, target yellow, param green), outputs as
/// grey sink nodes, and edges from operand to user (labelled with the operand's position where
/// the order matters).
///
/// ```
/// use sgn::ir::text::print_dot;
/// use sgn::ir::{ArgRole, DType, Graph, Shape, TensorType, UnaryOp};
///
/// let mut g = Graph::new("tiny");
/// let x = g.add_arg("x", ArgRole::Input, TensorType::new(DType::F64, Shape::fixed(&[3])));
/// let y = g.unary(UnaryOp::Exp, x)?;
/// g.add_output("y", y);
/// let dot = print_dot(&g);
/// assert!(dot.starts_with("digraph \"tiny\" {"));
/// assert!(dot.contains("n1 [label=\"exp\\nf64[3]\"];"));
/// assert!(dot.contains("n0 -> n1;"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn print_dot(g: &Graph) -> String {
    let mut out = String::new();
    write_dot(g, &mut out).expect("writing to a String cannot fail");
    out
}

fn write_dot(g: &Graph, out: &mut String) -> fmt::Result {
    writeln!(out, "digraph {} {{", DotString(&g.name))?;
    writeln!(out, "  node [shape=box, fontname=\"monospace\"];")?;
    writeln!(out, "  edge [fontname=\"monospace\"];")?;
    for id in g.ids() {
        let node = g.node(id);
        let op = OpText {
            graph: g,
            op: &node.op,
        };
        let arg = match node.op {
            Op::Leaf(Leaf::Arg(i)) => g.args().get(i),
            _ => None,
        };
        match arg {
            Some(arg) => {
                let label = format!(
                    "{} {}\n{}",
                    arg.role.name(),
                    Name(&arg.name),
                    TypeText(&node.ty)
                );
                let colour = match arg.role {
                    ArgRole::Input => "lightblue",
                    ArgRole::Target => "lightyellow",
                    ArgRole::Param => "palegreen",
                    ArgRole::Direction => "plum",
                    ArgRole::Cotangent => "lightsalmon",
                    ArgRole::Residual => "lightgrey",
                };
                writeln!(
                    out,
                    "  n{} [label={}, shape=ellipse, style=filled, fillcolor={colour}];",
                    id.0,
                    DotString(&label)
                )?;
            }
            None => {
                let label = format!("{op}\n{}", TypeText(&node.ty));
                writeln!(out, "  n{} [label={}];", id.0, DotString(&label))?;
            }
        }
        let order_matters = node.inputs.len() > 1
            && !matches!(node.op, Op::Elementwise(Elementwise::Binary(b)) if b.is_commutative());
        for (k, operand) in node.inputs.iter().enumerate() {
            if order_matters {
                writeln!(out, "  n{} -> n{} [label=\"{k}\"];", operand.0, id.0)?;
            } else {
                writeln!(out, "  n{} -> n{};", operand.0, id.0)?;
            }
        }
    }
    for (k, o) in g.outputs().iter().enumerate() {
        let label = format!("out {}", Name(&o.name));
        writeln!(
            out,
            "  out{k} [label={}, shape=house, style=filled, fillcolor=lightgrey];",
            DotString(&label)
        )?;
        writeln!(out, "  n{} -> out{k};", o.node.0)?;
    }
    writeln!(out, "}}")
}

/// A dot double-quoted string. Newlines become `\n` (a centred line break in labels); a
/// backslash is doubled so that Graphviz does not read it as an escape of its own.
struct DotString<'a>(&'a str);

impl fmt::Display for DotString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                c if c.is_control() => write!(f, "\\\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

// ─── Reading ─────────────────────────────────────────────────────────────────────────────────

/// Reads the text form written by [`print_graph`] (see the [module docs](self) for the format
/// and what is checked). Errors are [`Diagnostic`]s at `<ir>:line:col`.
///
/// ```
/// use sgn::ir::text::parse_graph;
///
/// let g = parse_graph(
///     "graph g\n\
///      arg x: f64[B] input\n\
///      %0 = arg x : f64[B]\n\
///      %1 = const 2.0 : f64[]\n\
///      %2 = broadcast[B] %1 : f64[B]\n\
///      %3 = mul %0, %2 : f64[B]\n\
///      out y = %3\n",
/// )?;
/// assert_eq!(g.nodes().len(), 4);
///
/// let err = parse_graph("graph g\n%0 = const 1.0 : f64[3]\n").unwrap_err();
/// assert!(err.to_string().starts_with("<ir>:2:18: error:"));
/// # Ok::<(), sgn::Error>(())
/// ```
pub fn parse_graph(text: &str) -> Result<Graph> {
    let tokens = lex(text)?;
    Reader::new(text, tokens).read()
}

fn diagnostic(source: &str, span: Span, message: impl Into<String>) -> Error {
    Diagnostic::new(SOURCE_NAME, source, span, message).into()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
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
struct Token {
    tok: Tok,
    span: Span,
}

fn describe(tok: &Tok) -> String {
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

fn lex(source: &str) -> Result<Vec<Token>> {
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

/// An argument declared by an `arg NAME: TYPE ROLE` line.
struct DeclaredArg {
    name: String,
    role: ArgRole,
    ty: TensorType,
    /// Where the name is, for errors about the declaration.
    span: Span,
    /// The `arg` node that reads it, once read.
    node: Option<(NodeId, u32)>,
}

/// The parser state: tokens, and the graph built so far.
struct Reader<'s> {
    source: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    graph: Graph,
    args: Vec<DeclaredArg>,
    /// Node id in the text → the node and the line that defined it.
    nodes: HashMap<u64, (NodeId, u32)>,
    /// Node id in the text → the line of its first definition anywhere in the text, to tell a
    /// forward reference from an undefined id.
    definition_lines: HashMap<u64, u32>,
    /// Output name → the line that defined it.
    output_lines: HashMap<String, u32>,
}

impl<'s> Reader<'s> {
    fn new(source: &'s str, tokens: Vec<Token>) -> Reader<'s> {
        let mut definition_lines = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let starts_line = i == 0 || tokens[i - 1].tok == Tok::EndOfLine;
            let defines = tokens.get(i + 1).is_some_and(|n| n.tok == Tok::Punct('='));
            if let (Tok::NodeRef(id), true, true) = (&t.tok, starts_line, defines) {
                definition_lines.entry(*id).or_insert(t.span.line);
            }
        }
        Reader {
            source,
            tokens,
            pos: 0,
            graph: Graph::default(),
            args: Vec::new(),
            nodes: HashMap::new(),
            definition_lines,
            output_lines: HashMap::new(),
        }
    }

    fn read(mut self) -> Result<Graph> {
        self.skip_blank_lines();
        let header = self.next();
        if header.tok != Tok::Ident("graph".into()) {
            return Err(self.error(
                header.span,
                format!(
                    "expected the header `graph NAME` first, found {}",
                    describe(&header.tok)
                ),
            ));
        }
        self.graph = Graph::new(self.name("the graph's name")?);
        self.end_of_line("after the graph's name")?;
        loop {
            self.skip_blank_lines();
            let t = self.peek().clone();
            match &t.tok {
                Tok::EndOfInput => break,
                Tok::Ident(k) if k == "arg" => self.declare_arg()?,
                Tok::Ident(k) if k == "out" => self.output()?,
                Tok::NodeRef(id) => self.node(*id)?,
                Tok::Ident(k) if k == "graph" => {
                    let message = "a second `graph` header: the text holds one graph";
                    return Err(self.error(t.span, message));
                }
                other => {
                    return Err(self.error(
                        t.span,
                        format!(
                            "expected a line `arg NAME: TYPE ROLE`, `%N = OP … : TYPE` or `out NAME = %N`, found {}",
                            describe(other)
                        ),
                    ));
                }
            }
        }
        self.finish()
    }

    /// Registers the arguments, each of which must have been read by a node.
    fn finish(mut self) -> Result<Graph> {
        for a in &self.args {
            let Some((node, _)) = a.node else {
                return Err(self.error(
                    a.span,
                    format!(
                        "argument {} is declared but no node reads it; expected a line `%N = arg {} : {}`",
                        Name(&a.name),
                        Name(&a.name),
                        TypeText(&a.ty)
                    ),
                ));
            };
            self.graph.register_arg(Arg {
                name: a.name.clone(),
                role: a.role,
                ty: a.ty.clone(),
                node,
            });
        }
        Ok(self.graph)
    }

    /// `arg NAME: TYPE ROLE`
    fn declare_arg(&mut self) -> Result<()> {
        self.next();
        let span = self.peek().span;
        let name = self.name("an argument name")?;
        if let Some(earlier) = self.args.iter().find(|a| a.name == name) {
            let message = format!(
                "argument {} is already declared on line {}",
                Name(&name),
                earlier.span.line
            );
            return Err(self.error(span, message));
        }
        self.expect(':', "after the argument's name")?;
        let ty = self.tensor_type()?;
        let role_token = self.next();
        let role = match &role_token.tok {
            Tok::Ident(r) => ArgRole::from_name(r),
            _ => None,
        };
        let Some(role) = role else {
            let message = format!(
                "expected the argument's role `input`, `target` or `param`, found {}",
                describe(&role_token.tok)
            );
            return Err(self.error(role_token.span, message));
        };
        self.end_of_line("after the argument's role")?;
        self.args.push(DeclaredArg {
            name,
            role,
            ty,
            span,
            node: None,
        });
        Ok(())
    }

    /// `out NAME = %N`
    fn output(&mut self) -> Result<()> {
        self.next();
        let span = self.peek().span;
        let name = self.name("an output name")?;
        if let Some(line) = self.output_lines.get(&name) {
            let message = format!("output {} is already defined on line {line}", Name(&name));
            return Err(self.error(span, message));
        }
        self.expect('=', "after the output's name")?;
        let t = self.next();
        let Tok::NodeRef(id) = t.tok else {
            let message = format!(
                "expected the output's node `%N`, found {}",
                describe(&t.tok)
            );
            return Err(self.error(t.span, message));
        };
        let node = self.operand(id, t.span)?;
        self.end_of_line("after the output's node")?;
        self.output_lines.insert(name.clone(), span.line);
        self.graph.add_output(name, node);
        Ok(())
    }

    /// `%N = OP OPERANDS : TYPE [@LINE:COL]`
    fn node(&mut self, text_id: u64) -> Result<()> {
        let id_token = self.next();
        if let Some((_, line)) = self.nodes.get(&text_id) {
            let message = format!("node %{text_id} is already defined on line {line}");
            return Err(self.error(id_token.span, message));
        }
        self.expect('=', "after the node id")?;
        let op_token = self.next();
        let Tok::Ident(op_name) = &op_token.tok else {
            let message = format!("expected an op name, found {}", describe(&op_token.tok));
            return Err(self.error(op_token.span, message));
        };
        let op = self.op(op_name, op_token.span)?;
        let inputs = if matches!(op, Op::Leaf(_)) {
            Vec::new()
        } else {
            self.operands()?
        };
        self.expect(':', "before the node's type")?;
        let type_span = self.peek().span;
        let ty = self.tensor_type()?;
        let origin = if self.eat('@') {
            let line = self.integer("a source line number")?;
            self.expect(':', "between the source line and column")?;
            let col = self.integer("a source column number")?;
            Some(Span { line, col })
        } else {
            None
        };
        self.end_of_line("after the node's type (and optional `@line:col`)")?;
        self.check_type(&op, &inputs, &ty, op_token.span, type_span)?;
        let arg_index = match op {
            Op::Leaf(Leaf::Arg(i)) => Some(i),
            _ => None,
        };
        self.graph.set_span(origin);
        let node = self.graph.intern(op, inputs, ty);
        self.graph.set_span(None);
        let line = id_token.span.line;
        if let Some(i) = arg_index {
            self.args[i].node = Some((node, line));
        }
        self.nodes.insert(text_id, (node, line));
        Ok(())
    }

    /// The op named `name` with its parameters.
    fn op(&mut self, name: &str, span: Span) -> Result<Op> {
        Op::parse(name, self).unwrap_or_else(|| {
            let message = format!(
                "unknown op `{name}`; expected one of {}",
                Op::names().join(", ")
            );
            Err(self.error(span, message))
        })
    }

    /// The argument named after `arg`, which no node may have read yet; its index.
    fn read_arg(&mut self) -> Result<usize> {
        let span = self.peek().span;
        let name = self.name("an argument name")?;
        let Some(index) = self.args.iter().position(|a| a.name == name) else {
            let message = format!(
                "no argument {} is declared on an earlier line (`arg {}: TYPE ROLE`)",
                Name(&name),
                Name(&name)
            );
            return Err(self.error(span, message));
        };
        if let Some((_, line)) = self.args[index].node {
            let message = format!(
                "argument {} is already read by the node on line {line}",
                Name(&name)
            );
            return Err(self.error(span, message));
        }
        Ok(index)
    }

    /// `%a, %b, …` (possibly none).
    fn operands(&mut self) -> Result<Vec<NodeId>> {
        let mut inputs = Vec::new();
        if !matches!(self.peek().tok, Tok::NodeRef(_)) {
            return Ok(inputs);
        }
        loop {
            let t = self.next();
            let Tok::NodeRef(id) = t.tok else {
                let message = format!(
                    "expected an operand `%N` after `,`, found {}",
                    describe(&t.tok)
                );
                return Err(self.error(t.span, message));
            };
            inputs.push(self.operand(id, t.span)?);
            if !self.eat(',') {
                return Ok(inputs);
            }
        }
    }

    /// The node a `%N` in the text refers to.
    fn operand(&self, text_id: u64, span: Span) -> Result<NodeId> {
        if let Some(&(node, _)) = self.nodes.get(&text_id) {
            return Ok(node);
        }
        let message = match self.definition_lines.get(&text_id) {
            Some(line) => format!(
                "node %{text_id} is used before its definition on line {line}; operands must be defined on earlier lines"
            ),
            None => format!("node %{text_id} is not defined"),
        };
        Err(self.error(span, message))
    }

    /// Checks the declared type of a node against its op and operands.
    fn check_type(
        &self,
        op: &Op,
        inputs: &[NodeId],
        ty: &TensorType,
        op_span: Span,
        type_span: Span,
    ) -> Result<()> {
        let mismatch = match op {
            Op::Leaf(Leaf::Arg(i)) => {
                let arg = &self.args[*i];
                (arg.ty != *ty).then(|| {
                    format!(
                        "argument {} has type {}, but this node declares {}",
                        Name(&arg.name),
                        TypeText(&arg.ty),
                        TypeText(ty)
                    )
                })
            }
            Op::Leaf(Leaf::Const(_) | Leaf::DimSize(_)) => (ty.shape.rank() != 0).then(|| {
                format!(
                    "`{}` makes a scalar, but this node declares {}; expected {}[]",
                    op.name(),
                    TypeText(ty),
                    ty.dtype
                )
            }),
            _ => {
                let types: Vec<&TensorType> = inputs.iter().map(|&x| self.graph.ty(x)).collect();
                let inferred = op.infer_type(&types).map_err(|e| {
                    self.error(op_span, format!("shape rule of `{}`: {e}", op.name()))
                })?;
                (inferred != *ty).then(|| {
                    format!(
                        "declared type {} differs from {}, the type `{}` gives for these operands",
                        TypeText(ty),
                        TypeText(&inferred),
                        op.name()
                    )
                })
            }
        };
        match mismatch {
            Some(message) => Err(self.error(type_span, message)),
            None => Ok(()),
        }
    }

    /// `f32[…]` or `f64[…]`.
    fn tensor_type(&mut self) -> Result<TensorType> {
        let t = self.next();
        let dtype = match &t.tok {
            Tok::Ident(name) => DType::from_name(name),
            _ => None,
        };
        let Some(dtype) = dtype else {
            let message = format!(
                "expected a type `f32[…]` or `f64[…]`, found {}",
                describe(&t.tok)
            );
            return Err(self.error(t.span, message));
        };
        Ok(TensorType::new(dtype, self.shape()?))
    }

    /// `[d0, d1, …]`, whose element count must fit in 64 bits (the shape rules multiply sizes).
    fn shape(&mut self) -> Result<Shape> {
        let span = self.peek().span;
        let shape = Shape(self.list("the dimensions of a shape", |r| r.dim())?);
        // The same fold as `Shape::numel`, which stops multiplying at a zero size.
        let numel = shape
            .dims()
            .iter()
            .try_fold(1u64, |n, d| match (n, d.coeff()) {
                (0, _) | (_, 0) => Some(0),
                (n, c) => n.checked_mul(c),
            });
        if numel.is_none() {
            let message = "this shape has more than 2^64 elements";
            return Err(self.error(span, message));
        }
        Ok(shape)
    }

    /// A dimension: `N`, `S` or a product such as `784*B`, `2*B*T`.
    fn dim(&mut self) -> Result<Dim> {
        let span = self.peek().span;
        let mut coeff: Option<u64> = Some(1);
        let mut symbols = Vec::new();
        loop {
            let t = self.next();
            match &t.tok {
                Tok::Num(_) => {
                    let n: u64 = self.parse_integer(&t, "a dimension")?;
                    coeff = coeff.and_then(|c| c.checked_mul(n));
                }
                Tok::Ident(s) | Tok::Str(s) => symbols.push(s.clone()),
                other => {
                    let message = format!(
                        "expected a dimension (a size such as `784`, a symbol such as `B`, or a product such as `784*B`), found {}",
                        describe(other)
                    );
                    return Err(self.error(t.span, message));
                }
            }
            if !self.eat('*') {
                break;
            }
        }
        let Some(coeff) = coeff else {
            return Err(self.error(span, "this dimension is larger than 2^64"));
        };
        Ok(symbols
            .iter()
            .fold(Dim::fixed(coeff), |d, s| d.mul(&Dim::sym(s))))
    }

    /// A float: `0.5`, `-1e-300`, `inf`, `-inf`, `NaN`, `NaN(0x…)`.
    fn float(&mut self) -> Result<f64> {
        let negative = self.eat('-');
        let t = self.next();
        let value = match &t.tok {
            Tok::Num(s) if !s.starts_with("0x") => s.parse::<f64>().ok(),
            Tok::Ident(s) if s == "inf" => Some(f64::INFINITY),
            Tok::Ident(s) if s == "NaN" => Some(if self.eat('(') {
                let bits = self.next();
                let value = match &bits.tok {
                    Tok::Num(hex) => hex
                        .strip_prefix("0x")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .map(f64::from_bits)
                        .filter(|x| x.is_nan()),
                    _ => None,
                };
                let Some(value) = value else {
                    let message = format!(
                        "expected the bits of a NaN such as `0x7ff8000000000001`, found {}",
                        describe(&bits.tok)
                    );
                    return Err(self.error(bits.span, message));
                };
                self.expect(')', "after the bits of the NaN")?;
                value
            } else {
                f64::NAN
            }),
            _ => None,
        };
        match value {
            Some(x) if negative => Ok(-x),
            Some(x) => Ok(x),
            None => {
                let message = format!(
                    "expected a number such as `0.5`, `-1e-300`, `inf` or `NaN`, found {}",
                    describe(&t.tok)
                );
                Err(self.error(t.span, message))
            }
        }
    }

    /// A non-negative integer (an axis, a source position).
    fn integer<T: std::str::FromStr>(&mut self, what: &str) -> Result<T> {
        let t = self.next();
        self.parse_integer(&t, what)
    }

    fn parse_integer<T: std::str::FromStr>(&self, t: &Token, what: &str) -> Result<T> {
        let parsed = match &t.tok {
            Tok::Num(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            let message = format!(
                "expected {what} (a non-negative integer that fits), found {}",
                describe(&t.tok)
            );
            self.error(t.span, message)
        })
    }

    /// `[item, item, …]`, possibly empty.
    fn list<T>(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.expect('[', &format!("before {what}"))?;
        let mut items = Vec::new();
        if self.eat(']') {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(']') {
                return Ok(items);
            }
            self.expect(',', &format!("or `]` in {what}"))?;
        }
    }

    /// A name: an identifier or a quoted string.
    fn name(&mut self, what: &str) -> Result<String> {
        let t = self.next();
        match t.tok {
            Tok::Ident(s) | Tok::Str(s) => Ok(s),
            other => {
                let message = format!(
                    "expected {what} (an identifier or a quoted string), found {}",
                    describe(&other)
                );
                Err(self.error(t.span, message))
            }
        }
    }

    fn end_of_line(&mut self, context: &str) -> Result<()> {
        let t = self.next();
        match t.tok {
            Tok::EndOfLine | Tok::EndOfInput => Ok(()),
            other => {
                let message = format!(
                    "expected the end of the line {context}, found {}",
                    describe(&other)
                );
                Err(self.error(t.span, message))
            }
        }
    }

    fn skip_blank_lines(&mut self) {
        while self.peek().tok == Tok::EndOfLine {
            self.pos += 1;
        }
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    /// The next token; the end of the text repeats forever.
    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.tok != Tok::EndOfInput {
            self.pos += 1;
        }
        t
    }

    /// Consumes the punctuation `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        let found = self.peek().tok == Tok::Punct(c);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, c: char, context: &str) -> Result<()> {
        if self.eat(c) {
            return Ok(());
        }
        let t = self.peek();
        let message = format!("expected `{c}` {context}, found {}", describe(&t.tok));
        Err(self.error(t.span, message))
    }

    fn error(&self, span: Span, message: impl Into<String>) -> Error {
        diagnostic(self.source, span, message)
    }
}

/// The reader lends its token-level parsers to the op families, which read their own parameters.
impl ParamReader for Reader<'_> {
    fn expect(&mut self, punct: char, context: &str) -> Result<()> {
        Reader::expect(self, punct, context)
    }

    fn expect_range(&mut self, context: &str) -> Result<()> {
        let t = self.next();
        if t.tok == Tok::DotDot {
            return Ok(());
        }
        let message = format!("expected `..` {context}, found {}", describe(&t.tok));
        Err(self.error(t.span, message))
    }

    fn integer(&mut self, what: &str) -> Result<usize> {
        Reader::integer(self, what)
    }

    fn integers(&mut self, what: &str) -> Result<Vec<usize>> {
        self.list(what, |r| r.integer("an axis"))
    }

    fn float(&mut self) -> Result<f64> {
        Reader::float(self)
    }

    fn dim(&mut self) -> Result<Dim> {
        Reader::dim(self)
    }

    fn shape(&mut self) -> Result<Shape> {
        Reader::shape(self)
    }

    fn flags(&mut self, op: &str, allowed: &[&'static str]) -> Result<Vec<&'static str>> {
        if self.peek().tok != Tok::Punct('[') {
            return Ok(Vec::new());
        }
        let choices = allowed.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>();
        let read = self.list(&format!("the flags of `{op}`"), |r| {
            let t = r.next();
            let flag = match &t.tok {
                Tok::Ident(w) => allowed.iter().find(|a| **a == w.as_str()),
                _ => None,
            };
            match flag {
                Some(flag) => Ok((*flag, t.span)),
                None => Err(r.error(
                    t.span,
                    format!(
                        "expected a {op} flag {}, found {}",
                        choices.join(" or "),
                        describe(&t.tok)
                    ),
                )),
            }
        })?;
        let mut flags = Vec::with_capacity(read.len());
        for (flag, span) in read {
            if flags.contains(&flag) {
                return Err(self.error(span, format!("{op} flag `{flag}` is given twice")));
            }
            flags.push(flag);
        }
        Ok(flags)
    }

    fn arg(&mut self) -> Result<usize> {
        self.read_arg()
    }
}
