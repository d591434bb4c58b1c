//! The e-class analysis: type, constant value and sign of every tensor class, with constant
//! folding.
//!
//! Every e-node's type comes from the IR's own shape rule ([`Op::infer_type`]), so the e-graph
//! and the graph can never disagree about shapes, and rules that build nodes through [`add_op`]
//! cannot build an ill-typed one: `add_op` refuses, and the rule does not fire.

use super::lang::{Param, Prim};
use crate::ir::op::F64Bits;
use crate::ir::{BinaryOp, DType, Dim, Op, Shape, TensorType, UnaryOp};
use egg::{Analysis, DidMerge, Id, Language};

/// The e-graph type used throughout the optimizer.
pub type EGraph = egg::EGraph<Prim, TensorAnalysis>;

/// What is known about the value of a tensor e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub ty: TensorType,
    /// Every element equals this value.
    pub constant: Option<F64Bits>,
    /// Every element is > 0 (in exact arithmetic): the condition of rules such as
    /// `log(a / b) = log a − log b`.
    pub positive: bool,
}

/// The analysis data of an e-class: a tensor's facts, or an op parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Tensor(Facts),
    Param(Param),
}

impl Data {
    /// The facts of a tensor class.
    ///
    /// # Panics
    /// On a parameter class: rules and the conversions only ask tensor classes.
    pub fn facts(&self) -> &Facts {
        match self {
            Data::Tensor(facts) => facts,
            Data::Param(p) => panic!("parameter {p} used as a tensor"),
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
}

/// The facts of tensor class `id`.
pub fn facts(egraph: &EGraph, id: Id) -> &Facts {
    egraph[id].data.facts()
}

/// The parameter held by parameter class `id`.
///
/// # Panics
/// If `id` is a tensor class: the language puts parameters only in parameter positions.
pub fn param(egraph: &EGraph, id: Id) -> &Param {
    match &egraph[id].data {
        Data::Param(p) => p,
        Data::Tensor(f) => panic!("a tensor of type {} in a parameter position", f.ty),
    }
}

/// The IR op of a tensor e-node and its tensor operands (parameters read from their classes).
/// `None` for a parameter leaf.
pub fn ir_op(egraph: &EGraph, node: &Prim) -> Option<(Op, Vec<Id>)> {
    let with_param = |[x, p]: [Id; 2], make: fn(&Param) -> Option<Op>| {
        let op = make(param(egraph, p)).expect("each op has its kind of parameter");
        Some((op, vec![x]))
    };
    match node {
        Prim::Param(_) => None,
        Prim::Arg(i) => Some((Op::Arg(*i), Vec::new())),
        Prim::Const(c, _) => Some((Op::Const(*c), Vec::new())),
        Prim::DimSize(d, _) => Some((Op::DimSize(d.clone()), Vec::new())),
        Prim::Unary(op, [x]) => Some((Op::Unary(*op), vec![*x])),
        Prim::Binary(op, [a, b]) => Some((Op::Binary(*op), vec![*a, *b])),
        Prim::MatMul {
            transpose_a,
            transpose_b,
            operands,
        } => Some((
            Op::MatMul {
                transpose_a: *transpose_a,
                transpose_b: *transpose_b,
            },
            operands.to_vec(),
        )),
        Prim::StopGradient([x]) => Some((Op::StopGradient, vec![*x])),
        Prim::Pow(c) => with_param(*c, |p| match p {
            Param::Exponent(e) => Some(Op::Pow(*e)),
            _ => None,
        }),
        Prim::Sum(c) => with_param(*c, |p| match p {
            Param::Axes(axes) => Some(Op::Sum { axes: axes.clone() }),
            _ => None,
        }),
        Prim::ReduceMax(c) => with_param(*c, |p| match p {
            Param::Axes(axes) => Some(Op::ReduceMax { axes: axes.clone() }),
            _ => None,
        }),
        Prim::Broadcast(c) => with_param(*c, |p| match p {
            Param::Shape(shape) => Some(Op::Broadcast {
                shape: shape.clone(),
            }),
            _ => None,
        }),
        Prim::Reshape(c) => with_param(*c, |p| match p {
            Param::Shape(shape) => Some(Op::Reshape {
                shape: shape.clone(),
            }),
            _ => None,
        }),
        Prim::Transpose(c) => with_param(*c, |p| match p {
            Param::Perm(perm) => Some(Op::Transpose { perm: perm.clone() }),
            _ => None,
        }),
        Prim::Slice(c) => with_param(*c, |p| match p {
            Param::Range { axis, start, end } => Some(Op::Slice {
                axis: *axis,
                start: start.clone(),
                end: end.clone(),
            }),
            _ => None,
        }),
        Prim::Concat(children) => {
            let (&axis, operands) = children.split_first().expect("a concat has an axis");
            let Param::Axis(axis) = param(egraph, axis) else {
                panic!("a concat's first child is its axis")
            };
            Some((Op::Concat { axis: *axis }, operands.to_vec()))
        }
    }
}

/// Adds `op` applied to the tensor classes `operands` if the result type-checks; `None` if it
/// does not (the rule that asked does not fire). Leaves are added with [`add_const`] and
/// [`add_dim_size`] instead.
pub fn add_op(egraph: &mut EGraph, op: Op, operands: &[Id]) -> Option<Id> {
    let types: Vec<TensorType> = operands
        .iter()
        .map(|&x| match &egraph[x].data {
            Data::Tensor(f) => Some(f.ty.clone()),
            Data::Param(_) => None,
        })
        .collect::<Option<_>>()?;
    op.infer_type(&types.iter().collect::<Vec<_>>()).ok()?;
    let mut param = |p: Param| egraph.add(Prim::Param(p));
    let node = match op {
        Op::Arg(_) | Op::Const(_) | Op::DimSize(_) => return None,
        Op::Unary(u) => Prim::Unary(u, [operands[0]]),
        Op::Binary(b) => Prim::Binary(b, [operands[0], operands[1]]),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => Prim::MatMul {
            transpose_a,
            transpose_b,
            operands: [operands[0], operands[1]],
        },
        Op::StopGradient => Prim::StopGradient([operands[0]]),
        Op::Pow(e) => Prim::Pow([operands[0], param(Param::Exponent(e))]),
        Op::Sum { axes } => Prim::Sum([operands[0], param(Param::Axes(axes))]),
        Op::ReduceMax { axes } => Prim::ReduceMax([operands[0], param(Param::Axes(axes))]),
        Op::Broadcast { shape } => Prim::Broadcast([operands[0], param(Param::Shape(shape))]),
        Op::Reshape { shape } => Prim::Reshape([operands[0], param(Param::Shape(shape))]),
        Op::Transpose { perm } => Prim::Transpose([operands[0], param(Param::Perm(perm))]),
        Op::Slice { axis, start, end } => {
            Prim::Slice([operands[0], param(Param::Range { axis, start, end })])
        }
        Op::Concat { axis } => {
            let mut children = vec![param(Param::Axis(axis))];
            children.extend_from_slice(operands);
            Prim::Concat(children)
        }
    };
    Some(egraph.add(node))
}

/// A scalar constant.
pub fn add_const(egraph: &mut EGraph, value: f64, dtype: DType) -> Id {
    egraph.add(Prim::Const(F64Bits::new(value), dtype))
}

/// The size of `dim` as a scalar: a constant when it is fixed.
pub fn add_dim_size(egraph: &mut EGraph, dim: &Dim, dtype: DType) -> Id {
    match dim.as_fixed() {
        Some(n) => add_const(egraph, n as f64, dtype),
        None => egraph.add(Prim::DimSize(dim.clone(), dtype)),
    }
}

/// `x` broadcast to `shape` (`x` itself when it has that shape already).
pub fn add_broadcast(egraph: &mut EGraph, x: Id, shape: &Shape) -> Option<Id> {
    if &facts(egraph, x).ty.shape == shape {
        return Some(x);
    }
    add_op(
        egraph,
        Op::Broadcast {
            shape: shape.clone(),
        },
        &[x],
    )
}

/// A tensor of type `ty` filled with `value`: the canonical form of every constant class.
pub fn add_splat(egraph: &mut EGraph, value: f64, ty: &TensorType) -> Id {
    let scalar = add_const(egraph, value, ty.dtype);
    add_broadcast(egraph, scalar, &ty.shape).expect("a scalar broadcasts to any shape")
}

impl Analysis<Prim> for TensorAnalysis {
    type Data = Data;

    fn make(egraph: &mut EGraph, enode: &Prim, _id: Id) -> Data {
        let scalar = |dtype| TensorType::new(dtype, Shape::scalar());
        Data::Tensor(match enode {
            Prim::Param(p) => return Data::Param(p.clone()),
            Prim::Arg(i) => Facts {
                ty: egraph.analysis.arg_types[*i].clone(),
                constant: None,
                positive: false,
            },
            Prim::Const(c, dtype) => Facts {
                ty: scalar(*dtype),
                constant: Some(*c),
                positive: c.get() > 0.0,
            },
            Prim::DimSize(_, dtype) => Facts {
                ty: scalar(*dtype),
                constant: None,
                positive: true,
            },
            _ => {
                let (op, operands) = ir_op(egraph, enode).expect("not a parameter");
                let inputs: Vec<&Facts> = operands.iter().map(|&x| facts(egraph, x)).collect();
                let types: Vec<&TensorType> = inputs.iter().map(|f| &f.ty).collect();
                let ty = op
                    .infer_type(&types)
                    .expect("e-nodes are added only when they type-check");
                Facts {
                    constant: fold(&op, &inputs, &ty).map(F64Bits::new),
                    positive: is_positive(&op, &inputs),
                    ty,
                }
            }
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
            (Data::Param(a), Data::Param(b)) => {
                debug_assert_eq!(*a, b, "merged different parameters");
                DidMerge(false, false)
            }
            _ => panic!("a tensor class merged with a parameter class"),
        }
    }

    /// Constant folding: a class known to be constant gets its canonical form (a scalar, or a
    /// broadcast scalar) and keeps only that, so rules stop matching inside constants.
    fn modify(egraph: &mut EGraph, id: Id) {
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
                let shape = egraph.add(Prim::Param(Param::Shape(ty.shape.clone())));
                let splat = egraph.add(Prim::Broadcast([scalar, shape]));
                egraph.union(id, splat);
                Some(Prim::Broadcast([egraph.find(scalar), egraph.find(shape)]))
            }
        };
        if canonical.is_none() {
            egraph.union(id, scalar);
        }
        let id = egraph.find(id);
        let kept: Vec<Prim> = egraph[id]
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

/// The constant value of `op` applied to operands with these facts, if they make it one.
fn fold(op: &Op, inputs: &[&Facts], out: &TensorType) -> Option<f64> {
    // x·0 = 0 and x @ 0 = 0 whatever x is (for finite x): the zero has the result's type, so
    // this is shape-safe.
    let zero = Some(F64Bits::new(0.0));
    if matches!(op, Op::Binary(BinaryOp::Mul) | Op::MatMul { .. })
        && inputs.iter().any(|f| f.constant == zero)
    {
        return Some(0.0);
    }
    let constants: Vec<f64> = inputs
        .iter()
        .map(|f| f.constant.map(F64Bits::get))
        .collect::<Option<_>>()?;
    let first = *constants.first()?;
    Some(match op {
        Op::Unary(u) => UnaryOp::eval(*u, first),
        Op::Pow(e) => first.powf(e.get()),
        Op::Binary(b) => BinaryOp::eval(*b, first, constants[1]),
        Op::Broadcast { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::StopGradient
        | Op::ReduceMax { .. } => first,
        Op::Concat { .. } => {
            return constants.iter().all(|&c| c == first).then_some(first);
        }
        Op::Sum { .. } => {
            let count = inputs[0].ty.shape.numel().div_exact(&out.shape.numel())?;
            first * count.as_fixed()? as f64
        }
        Op::MatMul { transpose_a, .. } => {
            let a = inputs[0].ty.shape.dims();
            let k = if *transpose_a { &a[0] } else { &a[1] };
            first * constants[1] * k.as_fixed()? as f64
        }
        Op::Arg(_) | Op::Const(_) | Op::DimSize(_) => return None,
    })
}

/// True when `op` of operands with these facts is positive everywhere.
fn is_positive(op: &Op, inputs: &[&Facts]) -> bool {
    let all = inputs.iter().all(|f| f.positive);
    match op {
        Op::Unary(UnaryOp::Exp | UnaryOp::Sigmoid | UnaryOp::Softplus) => true,
        Op::Unary(
            UnaryOp::Sqrt
            | UnaryOp::Recip
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::Tanh
            | UnaryOp::Step
            | UnaryOp::Sign,
        ) => all,
        Op::Unary(UnaryOp::Neg | UnaryOp::Log) => false,
        Op::Binary(BinaryOp::Max) => inputs.iter().any(|f| f.positive),
        Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Min) => all,
        Op::Binary(BinaryOp::Sub) => false,
        // A sum over no elements, or a product with an empty inner dimension, is 0.
        Op::Sum { .. } => all && inputs[0].ty.shape.numel().as_fixed() != Some(0),
        Op::MatMul { transpose_a, .. } => {
            let a = inputs[0].ty.shape.dims();
            let k = if *transpose_a { &a[0] } else { &a[1] };
            all && k.as_fixed() != Some(0)
        }
        Op::Pow(_)
        | Op::ReduceMax { .. }
        | Op::Broadcast { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::StopGradient => all,
        Op::Arg(_) | Op::Const(_) | Op::DimSize(_) => false,
    }
}
