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

/// The sha256 of `g`'s text form without source positions, as 64 lowercase hex digits: two
/// graphs share it when they compute the same thing the same way, however their source files
/// are laid out (comments, blank lines, local names). It tells a checkpoint's model apart.
///
/// ```
/// use sgn::Model;
/// use sgn::ir::text::graph_sha256;
///
/// let source = "\
///     model m
///     input x: f32[B, 2]
///     target y: f32[B, 2]
///     param w: f32[2, 2]
///     output z = tanh(x @ w)
///     loss mse(z, y)
/// ";
/// let digest = |source: &str| graph_sha256(&Model::parse(source).unwrap().graph);
/// let commented = source.replace("model m", "model m\n# the same net, reformatted\n");
/// assert_eq!(digest(source), digest(&commented));
/// assert_ne!(digest(source), digest(&source.replace("tanh", "sigmoid")));
/// ```
pub fn graph_sha256(g: &Graph) -> String {
    let text = GraphText {
        graph: g,
        origins: false,
    };
    crate::ir::store::sha256_hex(text.to_string().as_bytes())
}

impl fmt::Display for Graph {
    /// The text form; see [`print_graph`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        GraphText {
            graph: self,
            origins: true,
        }
        .fmt(f)
    }
}

/// A graph's text form, with or without the nodes' source positions.
struct GraphText<'a> {
    graph: &'a Graph,
    origins: bool,
}

impl fmt::Display for GraphText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.graph;
        writeln!(f, "graph {}", Name(&g.name))?;
        for a in g.args() {
            writeln!(
                f,
                "arg {}: {} {}",
                Name(&a.name),
                TypeText(&a.ty),
                a.role.name()
            )?;
        }
        for id in g.ids() {
            let node = g.node(id);
            write!(
                f,
                "%{} = {}",
                id.0,
                OpText {
                    graph: g,
                    op: &node.op
                }
            )?;
            for (k, operand) in node.inputs.iter().enumerate() {
                write!(f, "{}%{}", if k == 0 { " " } else { ", " }, operand.0)?;
            }
            write!(f, " : {}", TypeText(&node.ty))?;
            if let Some(Span { line, col }) = g.origin(id).filter(|_| self.origins) {
                write!(f, " @{line}:{col}")?;
            }
            writeln!(f)?;
        }
        for o in g.outputs() {
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
