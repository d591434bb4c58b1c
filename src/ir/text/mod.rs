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
//!
//! [`Graph`]: crate::ir::Graph
//! [`UnaryOp`]: crate::ir::UnaryOp
//! [`BinaryOp`]: crate::ir::BinaryOp
//! [`Op::infer_type`]: crate::ir::Op::infer_type
//! [`Diagnostic`]: crate::ir::Diagnostic

mod dot;
mod lex;
mod print;
mod read;

pub use dot::print_dot;
pub use print::{graph_sha256, print_graph};
pub use read::parse_graph;

#[cfg(doc)]
use crate::ir::op::{Elementwise, Layout, Leaf, MatMul, Reduce};
use crate::ir::shape::{Dim, Shape, TensorType};
use std::fmt::{self, Write as _};

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
