//! The e-class analysis: type, constant value and sign of every tensor class, with constant
//! folding.
//!
//! Every e-node's type comes from the IR's own shape rule ([`Op::infer_type`]), so the e-graph
//! and the graph can never disagree about shapes, and rules that build nodes through [`add_op`]
//! cannot build an ill-typed one: `add_op` refuses, and the rule does not fire.

use super::lang::ENode;
use crate::ir::op::{F64Bits, Facts};
use crate::ir::{DType, Dim, Leaf, Op, Shape, TensorType};
use egg::{Analysis, DidMerge, Id, Language};

/// The e-graph type used throughout the optimizer.
pub type EGraph = egg::EGraph<ENode, TensorAnalysis>;

/// The analysis data of an e-class: a tensor's facts, or an op's parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Tensor(Facts),
    Params(Op),
}

impl Data {
    /// The facts of a tensor class.
    ///
    /// # Panics
    /// On a parameter class: rules and the conversions only ask tensor classes.
    pub fn facts(&self) -> &Facts {
        match self {
            Data::Tensor(facts) => facts,
            Data::Params(p) => panic!("the parameters of {p} used as a tensor"),
        }
    }
}

/// The analysis: knows the graph's argument types, folds constants, tracks positivity.
#[derive(Clone, Debug, Default)]
pub struct TensorAnalysis {
    /// The type of each graph argument, by index.
    pub arg_types: Vec<TensorType>,
    /// The size symbolic dimensions stand for when rules compare costs.
    pub batch: u64,
    /// Classes created, merged or whose facts changed since this was last emptied (by
    /// [`super::saturate`], which searches only around them).
    pub changed: Vec<Id>,
}

/// The facts of tensor class `id`.
pub fn facts(egraph: &EGraph, id: Id) -> &Facts {
    egraph[id].data.facts()
}

/// The op whose parameters parameter class `id` holds.
///
/// # Panics
/// If `id` is a tensor class: the language puts parameters only in parameter positions.
pub fn params(egraph: &EGraph, id: Id) -> &Op {
    match &egraph[id].data {
        Data::Params(op) => op,
        Data::Tensor(f) => panic!("a tensor of type {} in a parameter position", f.ty),
    }
}

/// The IR op of a tensor e-node and its tensor operands (parameters read from their class).
/// `None` for a parameter leaf.
pub fn ir_op(egraph: &EGraph, node: &ENode) -> Option<(Op, Vec<Id>)> {
    match node {
        ENode::Params(_) => None,
        ENode::Leaf(leaf, _) => Some((Op::Leaf(leaf.clone()), Vec::new())),
        ENode::Apply(name, children) => {
            if let Some((&first, operands)) = children.split_first()
                && let Data::Params(op) = &egraph[first].data
            {
                return Some((op.clone(), operands.to_vec()));
            }
            let op = Op::without_params(name).expect("an op without parameters is known by name");
            Some((op, children.clone()))
        }
    }
}

/// Adds `op` applied to the tensor classes `operands` if the result type-checks; `None` if it
/// does not (the rule that asked does not fire). Leaves are added with [`add_const`] and
/// [`add_dim_size`] instead.
pub fn add_op(egraph: &mut EGraph, op: Op, operands: &[Id]) -> Option<Id> {
    let types: Vec<&TensorType> = operands
        .iter()
        .map(|&x| match &egraph[x].data {
            Data::Tensor(f) => Some(&f.ty),
            Data::Params(_) => None,
        })
        .collect::<Option<_>>()?;
    op.infer_type(&types).ok()?;
    let mut children = Vec::with_capacity(operands.len() + 1);
    if op.has_params() {
        children.push(egraph.add(ENode::Params(op.clone())));
    }
    children.extend_from_slice(operands);
    Some(egraph.add(ENode::Apply(op.name(), children)))
}

/// A scalar constant.
pub fn add_const(egraph: &mut EGraph, value: f64, dtype: DType) -> Id {
    egraph.add(ENode::Leaf(Leaf::Const(F64Bits::new(value)), dtype))
}

/// The size of `dim` as a scalar: a constant when it is fixed.
pub fn add_dim_size(egraph: &mut EGraph, dim: &Dim, dtype: DType) -> Id {
    match dim.as_fixed() {
        Some(n) => add_const(egraph, n as f64, dtype),
        None => egraph.add(ENode::Leaf(Leaf::DimSize(dim.clone()), dtype)),
    }
}

/// `x` broadcast to `shape` (`x` itself when it has that shape already).
pub fn add_broadcast(egraph: &mut EGraph, x: Id, shape: &Shape) -> Option<Id> {
    if &facts(egraph, x).ty.shape == shape {
        return Some(x);
    }
    add_op(egraph, Op::broadcast(shape.clone()), &[x])
}

/// A tensor of type `ty` filled with `value`: the canonical form of every constant class.
pub fn add_splat(egraph: &mut EGraph, value: f64, ty: &TensorType) -> Id {
    let scalar = add_const(egraph, value, ty.dtype);
    add_broadcast(egraph, scalar, &ty.shape).expect("a scalar broadcasts to any shape")
}

impl Analysis<ENode> for TensorAnalysis {
    type Data = Data;

    fn make(egraph: &mut EGraph, enode: &ENode, _id: Id) -> Data {
        let (op, operands) = match enode {
            ENode::Params(op) => return Data::Params(op.clone()),
            ENode::Leaf(leaf, dtype) => {
                let ty = match leaf {
                    Leaf::Arg(i) => egraph.analysis.arg_types[*i].clone(),
                    Leaf::Const(_) | Leaf::DimSize(_) => TensorType::new(*dtype, Shape::scalar()),
                };
                let op = Op::Leaf(leaf.clone());
                return Data::Tensor(Facts {
                    constant: op.fold(&[], &ty).map(F64Bits::new),
                    positive: op.is_positive(&[]),
                    ty,
                });
            }
            ENode::Apply(..) => ir_op(egraph, enode).expect("not a parameter"),
        };
        let inputs: Vec<&Facts> = operands.iter().map(|&x| facts(egraph, x)).collect();
        let types: Vec<&TensorType> = inputs.iter().map(|f| &f.ty).collect();
        let ty = op
            .infer_type(&types)
            .expect("e-nodes are added only when they type-check");
        Data::Tensor(Facts {
            constant: op.fold(&inputs, &ty).map(F64Bits::new),
            positive: op.is_positive(&inputs),
            ty,
        })
    }

    fn merge(&mut self, to: &mut Data, from: Data) -> DidMerge {
        match (to, from) {
            (Data::Tensor(a), Data::Tensor(b)) => {
                debug_assert_eq!(a.ty, b.ty, "merged classes of different types");
                let from_knows_more =
                    (a.constant.is_none() && b.constant.is_some()) || (!a.positive && b.positive);
                let to_knows_more =
                    (b.constant.is_none() && a.constant.is_some()) || (!b.positive && a.positive);
                a.constant = a.constant.or(b.constant);
                a.positive |= b.positive;
                DidMerge(from_knows_more, to_knows_more)
            }
            (Data::Params(a), Data::Params(b)) => {
                debug_assert_eq!(*a, b, "merged different parameters");
                DidMerge(false, false)
            }
            _ => panic!("a tensor class merged with a parameter class"),
        }
    }

    /// Constant folding: a class known to be constant gets its canonical form (a scalar, or a
    /// broadcast scalar) and keeps only that, so rules stop matching inside constants. egg calls
    /// this for every new class, union and change of facts: it records the class as changed.
    fn modify(egraph: &mut EGraph, id: Id) {
        egraph.analysis.changed.push(id);
        let Data::Tensor(Facts {
            ty,
            constant: Some(c),
            ..
        }) = &egraph[id].data
        else {
            return;
        };
        let (value, ty) = (c.get(), ty.clone());
        let scalar = add_const(egraph, value, ty.dtype);
        let canonical = match ty.shape.rank() {
            0 => None,
            _ => {
                let params = egraph.add(ENode::Params(Op::broadcast(ty.shape.clone())));
                let splat = egraph.add(ENode::Apply("broadcast", vec![params, scalar]));
                egraph.union(id, splat);
                Some(ENode::Apply(
                    "broadcast",
                    vec![egraph.find(params), egraph.find(scalar)],
                ))
            }
        };
        if canonical.is_none() {
            egraph.union(id, scalar);
        }
        let id = egraph.find(id);
        let kept: Vec<ENode> = egraph[id]
            .nodes
            .iter()
            .filter(|n| {
                n.is_leaf() || Some((*n).clone().map_children(|c| egraph.find(c))) == canonical
            })
            .cloned()
            .collect();
        egraph[id].nodes = kept;
    }
}
