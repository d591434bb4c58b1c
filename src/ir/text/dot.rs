//! The Graphviz view of a graph.

use super::{Name, TypeText};
use crate::ir::graph::{ArgRole, Graph};
use crate::ir::op::{Elementwise, Leaf, Op};
use std::fmt::{self, Write as _};

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
        let op = super::print::OpText {
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
