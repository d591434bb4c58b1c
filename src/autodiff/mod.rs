//! Symbolic differentiation as graph-to-graph transformations.
//!
//! One rule set gives both modes, as in JAX: [`jvp`](mod@jvp) pushes tangents forward (a rule per
//! primitive), [`transpose`](mod@transpose) turns a linear graph around (rules for the linear primitives only),
//! and a VJP is the transpose of a JVP. [`derive`](mod@derive) builds from a model every graph the optimizers
//! need — loss and gradient, `J v`, `Jᵀ w`, and the Gauss-Newton product `G v = Jᵀ H_L J v` in
//! two stages (a v-independent *prepare* graph and a linear *apply* graph) — and [`split`] does
//! the slicing of one combined graph into those stages.

pub mod derive;
pub mod jvp;
pub mod split;
pub mod transpose;

pub use derive::{Derivatives, DerivedGraphs, GraphName, ParamSlot, Signature, Slot, derive};
pub use jvp::jvp;
pub use transpose::transpose;

use crate::ir::{Graph, NodeId, ShapeError, Span};
use std::fmt;

/// Why a graph could not be differentiated, at the op (and source position) that stopped it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct AdError {
    /// The op's name, as in the IR text.
    pub op: String,
    /// Where the op came from in the model source, if it did.
    pub span: Option<Span>,
    pub reason: String,
}

impl AdError {
    fn at(g: &Graph, node: NodeId, reason: String) -> AdError {
        AdError {
            op: g.node(node).op.name().to_string(),
            span: g.origin(node),
            reason,
        }
    }

    pub(crate) fn not_linear(g: &Graph, node: NodeId, reason: &str) -> AdError {
        AdError::at(
            g,
            node,
            format!("the op is not linear in its input: {reason}"),
        )
    }

    pub(crate) fn from_shape(g: &Graph, node: NodeId, e: ShapeError) -> AdError {
        AdError::at(g, node, format!("a derivative did not type-check: {e}"))
    }
}

impl fmt::Display for AdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(Span { line, col }) = self.span {
            write!(f, "{line}:{col}: ")?;
        }
        write!(f, "cannot differentiate `{}`: {}", self.op, self.reason)
    }
}
