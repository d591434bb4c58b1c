//! The reader: text back into a graph, checked line by line.

use super::lex::{Tok, Token, describe, lex};
use super::{Name, TypeText};
use crate::ir::Diagnostic;
use crate::ir::error::{Error, Result};
use crate::ir::graph::{Arg, ArgRole, Graph, NodeId, Span};
use crate::ir::op::{Leaf, Op, ParamReader};
use crate::ir::shape::{DType, Dim, Shape, TensorType};
use std::collections::HashMap;

/// The file name in diagnostics about IR text.
const SOURCE_NAME: &str = "<ir>";

/// Reads the text form written by [`print_graph`] (see the [module docs](crate::ir::text) for
/// the format and what is checked). Errors are [`Diagnostic`]s at `<ir>:line:col`.
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
///
/// [`print_graph`]: crate::ir::text::print_graph
pub fn parse_graph(text: &str) -> Result<Graph> {
    let tokens = lex(text)?;
    Reader::new(text, tokens).read()
}

pub(super) fn diagnostic(source: &str, span: Span, message: impl Into<String>) -> Error {
    Diagnostic::new(SOURCE_NAME, source, span, message).into()
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
