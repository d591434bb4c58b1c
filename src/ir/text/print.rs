//! The printer: a graph as text.

use super::{Name, TypeText};
use crate::ir::graph::{Graph, Span};
use crate::ir::op::Op;
use std::fmt;

/// The text form of `g` (see the [format](crate::ir::text)); [`parse_graph`] reads it back.
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
///
/// [`parse_graph`]: crate::ir::text::parse_graph
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

/// An op with its parameters, without operands: `broadcast[B, 20]`.
pub(super) struct OpText<'a> {
    pub(super) graph: &'a Graph,
    pub(super) op: &'a Op,
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
