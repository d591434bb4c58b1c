//! The e-graph language: the IR's own ops, one generic e-node over them.
//!
//! An op applied to e-classes is an [`ENode::Apply`] named as the op names itself
//! ([`Op::name`]); there is no second list of ops to keep in step with the IR. An op's
//! parameters (a broadcast's shape, a sum's axes, a permutation, matmul's transpose flags, …)
//! are not part of the e-node's operator but its first child: a [`ENode::Params`] leaf holding
//! the op itself. Rules can then match an op whatever its parameters, as in
//! `(transpose ?q (transpose ?p ?x))`, read the parameters from the analysis and compute new
//! ones. Graph leaves (arguments, constants compared by their bits, dimension sizes) are
//! [`ENode::Leaf`]s; a constant tensor is a broadcast of a scalar one.

use crate::ir::{DType, Leaf, Op};
use egg::{FromOpError, Id, Language};
use std::fmt;

/// An e-node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ENode {
    /// A graph leaf of the given element type.
    Leaf(Leaf, DType),
    /// The parameters of an op, as the op itself: the first child of the ops that have
    /// parameters. Never a tensor.
    Params(Op),
    /// The op spelled `.0` applied to `.1` (its [`ENode::Params`] class first if it has
    /// parameters).
    Apply(&'static str, Vec<Id>),
}

impl ENode {
    /// The node without its children: what [`Language::matches`] compares.
    fn operator(&self) -> ENode {
        match self {
            ENode::Leaf(..) | ENode::Params(_) => self.clone(),
            ENode::Apply(name, _) => ENode::Apply(name, Vec::new()),
        }
    }
}

impl Language for ENode {
    type Discriminant = ENode;

    fn discriminant(&self) -> ENode {
        self.operator()
    }

    /// `ENode::operator` equality, compared in place: rule search calls this for every e-node
    /// it visits, and building the operators would clone every op's parameters.
    fn matches(&self, other: &ENode) -> bool {
        match (self, other) {
            (ENode::Apply(a, xs), ENode::Apply(b, ys)) => a == b && xs.len() == ys.len(),
            // Leaves and parameters have no children: the whole node is the operator.
            _ => self == other,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Leaf(..) | ENode::Params(_) => &[],
            ENode::Apply(_, children) => children,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Leaf(..) | ENode::Params(_) => &mut [],
            ENode::Apply(_, children) => children,
        }
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ENode::Leaf(leaf, dtype) => write!(f, "{}:{dtype}", Op::Leaf(leaf.clone())),
            ENode::Params(op) => write!(f, "{op}"),
            ENode::Apply(name, _) => f.write_str(name),
        }
    }
}

impl egg::FromOp for ENode {
    type Error = FromOpError;

    /// Parses the operators that patterns use: every op by its name, with its children
    /// (parameters first, bound by a pattern variable; leaves are matched by pattern variables
    /// and conditions, not written in patterns).
    fn from_op(op: &str, children: Vec<Id>) -> Result<ENode, FromOpError> {
        match Op::names().into_iter().find(|name| *name == op) {
            Some(name) => Ok(ENode::Apply(name, children)),
            None => Err(FromOpError::new(op, children)),
        }
    }
}
