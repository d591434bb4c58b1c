//! Forward mode (R-op): a tangent rule for every primitive.
//!
//! Tangent nodes are added to the same graph as the primal nodes they read, so a tangent can use
//! any primal value (activations, outputs) directly. A missing tangent (`None`) is a symbolic
//! zero: it is never materialized, and rules skip the terms it would contribute.

use super::{AdError, ancestors};
use crate::ir::op::add_dims;
use crate::ir::{BinaryOp, Dim, Graph, NodeId, Op, UnaryOp};

/// Pushes tangents forward from `seeds` (primal node → its tangent node) to every node that
/// `targets` depend on. Returns the tangent of each node that existed before the call (`None`
/// for a symbolic zero); nodes added by the call have no entry.
pub fn jvp(
    g: &mut Graph,
    seeds: &[(NodeId, NodeId)],
    targets: &[NodeId],
) -> Result<Vec<Option<NodeId>>, AdError> {
    let primal_len = g.nodes().len();
    let needed = ancestors(g, targets);
    let mut tangent: Vec<Option<NodeId>> = vec![None; primal_len];
    for &(node, t) in seeds {
        tangent[node.index()] = Some(t);
    }
    let first = seeds
        .iter()
        .map(|(n, _)| n.index())
        .min()
        .unwrap_or(primal_len);
    for i in first..primal_len {
        if !needed[i] || seeds.iter().any(|(n, _)| n.index() == i) {
            continue;
        }
        let id = NodeId(i as u32);
        let node = g.node(id).clone();
        let operand_tangents: Vec<Option<NodeId>> =
            node.inputs.iter().map(|x| tangent[x.index()]).collect();
        if operand_tangents.iter().all(Option::is_none) {
            continue;
        }
        g.set_span(g.origin(id));
        tangent[i] = rule(g, id, &node.op, &node.inputs, &operand_tangents)
            .map_err(|e| AdError::from_shape(g, id, e))?;
    }
    g.set_span(None);
    Ok(tangent)
}

type Built = Result<Option<NodeId>, crate::ir::ShapeError>;

/// The tangent of node `y = op(xs)` given the operands' tangents `ts` (at least one present).
fn rule(g: &mut Graph, y: NodeId, op: &Op, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
    let ty = g.ty(y).clone();
    let t0 = ts[0];
    match op {
        Op::Arg(_) | Op::Const(_) | Op::DimSize(_) | Op::StopGradient => Ok(None),
        Op::Unary(u) => {
            let t = t0.expect("a unary op with a tangent has it on its operand");
            let x = xs[0];
            let factor = match u {
                UnaryOp::Sign | UnaryOp::Step => return Ok(None),
                UnaryOp::Neg => return g.unary(UnaryOp::Neg, t).map(Some),
                // d log x = dx / x: a division keeps the rule exact and needs no reciprocal.
                UnaryOp::Log => return g.binary(BinaryOp::Div, t, x).map(Some),
                UnaryOp::Exp => y,
                UnaryOp::Tanh => {
                    let yy = g.binary(BinaryOp::Mul, y, y)?;
                    let one = g.full(1.0, &ty)?;
                    g.binary(BinaryOp::Sub, one, yy)?
                }
                UnaryOp::Sigmoid => {
                    let one = g.full(1.0, &ty)?;
                    let rest = g.binary(BinaryOp::Sub, one, y)?;
                    g.binary(BinaryOp::Mul, y, rest)?
                }
                UnaryOp::Relu => g.unary(UnaryOp::Step, x)?,
                UnaryOp::Softplus => g.unary(UnaryOp::Sigmoid, x)?,
                UnaryOp::Sqrt => {
                    let two = g.full(2.0, &ty)?;
                    let twice = g.binary(BinaryOp::Mul, y, two)?;
                    return g.binary(BinaryOp::Div, t, twice).map(Some);
                }
                UnaryOp::Abs => g.unary(UnaryOp::Sign, x)?,
                UnaryOp::Recip => {
                    let yy = g.binary(BinaryOp::Mul, y, y)?;
                    let scaled = g.binary(BinaryOp::Mul, t, yy)?;
                    return g.unary(UnaryOp::Neg, scaled).map(Some);
                }
            };
            g.binary(BinaryOp::Mul, t, factor).map(Some)
        }
        Op::Pow(c) => {
            let t = t0.expect("pow has one operand");
            let c = c.get();
            if c == 0.0 {
                return Ok(None);
            }
            let derivative = if c == 1.0 {
                return Ok(Some(t));
            } else if c == 2.0 {
                xs[0]
            } else {
                g.apply(Op::Pow(crate::ir::op::F64Bits::new(c - 1.0)), &[xs[0]])?
            };
            let scale = g.full(c, &ty)?;
            let factor = g.binary(BinaryOp::Mul, derivative, scale)?;
            g.binary(BinaryOp::Mul, t, factor).map(Some)
        }
        Op::Binary(b) => binary_rule(g, y, *b, xs, ts),
        Op::MatMul { .. } => {
            let left = ts[0]
                .map(|ta| g.apply(op.clone(), &[ta, xs[1]]))
                .transpose()?;
            let right = ts[1]
                .map(|tb| g.apply(op.clone(), &[xs[0], tb]))
                .transpose()?;
            add_optional(g, left, right)
        }
        Op::Sum { .. }
        | Op::Broadcast { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Slice { .. } => g.apply(op.clone(), &[t0.expect("one operand")]).map(Some),
        Op::Concat { .. } => {
            let mut parts = Vec::with_capacity(xs.len());
            for (&x, t) in xs.iter().zip(ts) {
                let ty = g.ty(x).clone();
                parts.push(match t {
                    Some(t) => *t,
                    None => g.full(0.0, &ty)?,
                });
            }
            g.apply(op.clone(), &parts).map(Some)
        }
        Op::ReduceMax { axes } => {
            // The tangent at the maximum, averaged over ties: Σ t·mask / Σ mask, where mask marks
            // the elements equal to the maximum (m − x = 0 exactly there, > 0 elsewhere).
            let x = xs[0];
            let t = t0.expect("one operand");
            let x_shape = g.ty(x).shape.clone();
            let kept = x_shape.keepdims(axes);
            let m = g.reshape(y, &kept)?;
            let m = g.broadcast(m, &x_shape)?;
            let gap = g.binary(BinaryOp::Sub, m, x)?;
            let below = g.unary(UnaryOp::Step, gap)?;
            let x_ty = g.ty(x).clone();
            let one = g.full(1.0, &x_ty)?;
            let mask = g.binary(BinaryOp::Sub, one, below)?;
            let picked = g.binary(BinaryOp::Mul, t, mask)?;
            let picked = g.sum(picked, axes)?;
            let count = g.sum(mask, axes)?;
            g.binary(BinaryOp::Div, picked, count).map(Some)
        }
    }
}

fn binary_rule(
    g: &mut Graph,
    y: NodeId,
    op: BinaryOp,
    xs: &[NodeId],
    ts: &[Option<NodeId>],
) -> Built {
    let (a, b) = (xs[0], xs[1]);
    let (ta, tb) = (ts[0], ts[1]);
    match op {
        BinaryOp::Add => add_optional(g, ta, tb),
        BinaryOp::Sub => match (ta, tb) {
            (Some(ta), Some(tb)) => g.binary(BinaryOp::Sub, ta, tb).map(Some),
            (Some(ta), None) => Ok(Some(ta)),
            (None, Some(tb)) => g.unary(UnaryOp::Neg, tb).map(Some),
            (None, None) => Ok(None),
        },
        BinaryOp::Mul => {
            let left = ta.map(|ta| g.binary(BinaryOp::Mul, ta, b)).transpose()?;
            let right = tb.map(|tb| g.binary(BinaryOp::Mul, a, tb)).transpose()?;
            add_optional(g, left, right)
        }
        BinaryOp::Div => {
            // d(a/b) = (da − y·db) / b with y = a/b: one division, and y is already computed.
            let numerator = match (ta, tb) {
                (Some(ta), None) => ta,
                (ta, Some(tb)) => {
                    let ydb = g.binary(BinaryOp::Mul, y, tb)?;
                    match ta {
                        Some(ta) => g.binary(BinaryOp::Sub, ta, ydb)?,
                        None => g.unary(UnaryOp::Neg, ydb)?,
                    }
                }
                (None, None) => return Ok(None),
            };
            g.binary(BinaryOp::Div, numerator, b).map(Some)
        }
        BinaryOp::Max | BinaryOp::Min => {
            // The tangent of the operand that wins; ties go to the second operand.
            let (winner, loser) = if op == BinaryOp::Max { (a, b) } else { (b, a) };
            let diff = g.binary(BinaryOp::Sub, winner, loser)?;
            let first_wins = g.unary(UnaryOp::Step, diff)?;
            let ty = g.ty(a).clone();
            let one = g.full(1.0, &ty)?;
            let second_wins = g.binary(BinaryOp::Sub, one, first_wins)?;
            let left = ta
                .map(|ta| g.binary(BinaryOp::Mul, ta, first_wins))
                .transpose()?;
            let right = tb
                .map(|tb| g.binary(BinaryOp::Mul, tb, second_wins))
                .transpose()?;
            add_optional(g, left, right)
        }
    }
}

/// `a + b` where either may be a symbolic zero.
pub(super) fn add_optional(g: &mut Graph, a: Option<NodeId>, b: Option<NodeId>) -> Built {
    match (a, b) {
        (Some(a), Some(b)) => g.binary(BinaryOp::Add, a, b).map(Some),
        (a, b) => Ok(a.or(b)),
    }
}

/// Start offsets of each operand of a concat along `axis`.
pub(super) fn concat_offsets(g: &Graph, xs: &[NodeId], axis: usize) -> Vec<Dim> {
    let mut offsets = Vec::with_capacity(xs.len());
    let mut at = Dim::fixed(0);
    for &x in xs {
        offsets.push(at.clone());
        at = add_dims(&at, &g.ty(x).shape.dims()[axis])
            .expect("the concat's shape rule added these");
    }
    offsets
}
