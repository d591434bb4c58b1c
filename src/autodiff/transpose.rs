//! Reverse mode (L-op) as the transpose of a linear graph.
//!
//! Only the linear primitives have transpose rules: add, sub, neg, a product or quotient with one
//! factor that does not depend on the linear inputs, matmul with one such operand, and the
//! structural ops (sum ↔ broadcast, reshape, transpose, concat ↔ slice). A VJP is the transpose
//! of a JVP, so forward and reverse mode come from one rule set.

use super::jvp::concat_offsets;
use super::{AdError, ancestors, descendants};
use crate::ir::op::{add_dims, sub_dims};
use crate::ir::{BinaryOp, Dim, Graph, NodeId, Op, Shape, ShapeError, TensorType, UnaryOp};

/// Transposes the linear map from the nodes `inputs` to the outputs named in `seeds`
/// (each output paired with its cotangent node). Returns the cotangent of each input (`None` when
/// no output depends on it).
///
/// A node on a path from `inputs` to the outputs that is not linear in `inputs` (say `exp` of
/// one) is an error naming the op and its source position.
pub fn transpose(
    g: &mut Graph,
    inputs: &[NodeId],
    seeds: &[(NodeId, NodeId)],
) -> Result<Vec<Option<NodeId>>, AdError> {
    let len = g.nodes().len();
    let outputs: Vec<NodeId> = seeds.iter().map(|(o, _)| *o).collect();
    let needed = ancestors(g, &outputs);
    let depends = descendants(g, inputs, len);
    let linear: Vec<bool> = (0..len).map(|i| needed[i] && depends[i]).collect();
    let mut cotangent: Vec<Option<NodeId>> = vec![None; len];
    for &(out, ct) in seeds {
        if linear[out.index()] {
            accumulate(g, &mut cotangent, out, ct).map_err(|e| AdError::from_shape(g, out, e))?;
        }
    }
    let first = inputs.iter().map(|n| n.index()).min().unwrap_or(len);
    for i in (first..len).rev() {
        let id = NodeId(i as u32);
        let Some(ct) = cotangent[i] else { continue };
        if !linear[i] || inputs.contains(&id) {
            continue;
        }
        let node = g.node(id).clone();
        let is_linear: Vec<bool> = node.inputs.iter().map(|x| linear[x.index()]).collect();
        g.set_span(g.origin(id));
        let contributions = rule(g, id, &node.op, &node.inputs, &is_linear, ct)?;
        for (x, ct_x) in contributions {
            accumulate(g, &mut cotangent, x, ct_x).map_err(|e| AdError::from_shape(g, id, e))?;
        }
    }
    g.set_span(None);
    Ok(inputs.iter().map(|x| cotangent[x.index()]).collect())
}

fn accumulate(
    g: &mut Graph,
    cotangent: &mut [Option<NodeId>],
    x: NodeId,
    ct: NodeId,
) -> Result<(), ShapeError> {
    let slot = &mut cotangent[x.index()];
    *slot = Some(match *slot {
        Some(prev) => g.binary(BinaryOp::Add, prev, ct)?,
        None => ct,
    });
    Ok(())
}

/// The cotangent contributions of node `y = op(xs)` to its linear operands, given `ct` = ∂/∂y.
fn rule(
    g: &mut Graph,
    y: NodeId,
    op: &Op,
    xs: &[NodeId],
    linear: &[bool],
    ct: NodeId,
) -> Result<Vec<(NodeId, NodeId)>, AdError> {
    if let Some(reason) = check_linear(op, linear) {
        return Err(AdError::not_linear(g, y, reason));
    }
    build_rule(g, op, xs, linear, ct).map_err(|e| AdError::from_shape(g, y, e))
}

fn build_rule(
    g: &mut Graph,
    op: &Op,
    xs: &[NodeId],
    linear: &[bool],
    ct: NodeId,
) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
    let mut out = Vec::with_capacity(xs.len());
    match op {
        Op::Unary(UnaryOp::Neg) => out.push((xs[0], g.unary(UnaryOp::Neg, ct)?)),
        Op::Binary(BinaryOp::Add) => {
            out.extend(
                xs.iter()
                    .zip(linear)
                    .filter(|(_, l)| **l)
                    .map(|(&x, _)| (x, ct)),
            );
        }
        Op::Binary(BinaryOp::Sub) => {
            if linear[0] {
                out.push((xs[0], ct));
            }
            if linear[1] {
                out.push((xs[1], g.unary(UnaryOp::Neg, ct)?));
            }
        }
        Op::Binary(BinaryOp::Mul) => {
            let (lin, factor) = if linear[0] {
                (xs[0], xs[1])
            } else {
                (xs[1], xs[0])
            };
            out.push((lin, g.binary(BinaryOp::Mul, ct, factor)?));
        }
        Op::Binary(BinaryOp::Div) => out.push((xs[0], g.binary(BinaryOp::Div, ct, xs[1])?)),
        Op::MatMul {
            transpose_a: ta,
            transpose_b: tb,
        } => {
            let (ta, tb) = (*ta, *tb);
            let (a, b) = (xs[0], xs[1]);
            // y = op(a)·op(b); ∂op(a) = ct·op(b)ᵀ and ∂op(b) = op(a)ᵀ·ct, each transposed back
            // when the operand entered transposed — all as flags, never as copies.
            if linear[0] {
                let built = if ta {
                    g.apply(matmul(tb, true), &[b, ct])?
                } else {
                    g.apply(matmul(false, !tb), &[ct, b])?
                };
                out.push((a, built));
            }
            if linear[1] {
                let built = if tb {
                    g.apply(matmul(true, ta), &[ct, a])?
                } else {
                    g.apply(matmul(!ta, false), &[a, ct])?
                };
                out.push((b, built));
            }
        }
        Op::Sum { axes } => {
            let x_shape = g.ty(xs[0]).shape.clone();
            let kept = g.reshape(ct, &x_shape.keepdims(axes))?;
            out.push((xs[0], g.broadcast(kept, &x_shape)?));
        }
        Op::Broadcast { shape } => {
            let x_shape = g.ty(xs[0]).shape.clone();
            let summed = g.sum(ct, &broadcast_axes(&x_shape, shape))?;
            out.push((xs[0], g.reshape(summed, &x_shape)?));
        }
        Op::Reshape { .. } => {
            let x_shape = g.ty(xs[0]).shape.clone();
            out.push((xs[0], g.reshape(ct, &x_shape)?));
        }
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            out.push((xs[0], g.transpose(ct, &inverse)?));
        }
        Op::Concat { axis } => {
            let offsets = concat_offsets(g, xs, *axis);
            for (i, &x) in xs.iter().enumerate().filter(|(i, _)| linear[*i]) {
                let len = &g.ty(x).shape.dims()[*axis];
                let end = add_dims(&offsets[i], len).expect("offsets and lengths are like terms");
                let slice = Op::Slice {
                    axis: *axis,
                    start: offsets[i].clone(),
                    end,
                };
                out.push((x, g.apply(slice, &[ct])?));
            }
        }
        Op::Slice { axis, start, end } => {
            let x_shape = g.ty(xs[0]).shape.clone();
            out.push((xs[0], pad_slice(g, ct, &x_shape, *axis, start, end)?));
        }
        _ => unreachable!("`check_linear` admits only the ops above"),
    }
    Ok(out)
}

/// Why `op` with these operands is not a linear map of its linear operands, if it is not.
fn check_linear(op: &Op, linear: &[bool]) -> Option<&'static str> {
    match op {
        Op::Unary(UnaryOp::Neg)
        | Op::Binary(BinaryOp::Add | BinaryOp::Sub)
        | Op::Sum { .. }
        | Op::Broadcast { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. } => None,
        Op::Binary(BinaryOp::Mul) | Op::MatMul { .. } if linear.iter().all(|&l| l) => {
            Some("both factors depend on the linear inputs")
        }
        Op::Binary(BinaryOp::Mul) | Op::MatMul { .. } => None,
        Op::Binary(BinaryOp::Div) if linear[1] => Some("the divisor depends on the linear inputs"),
        Op::Binary(BinaryOp::Div) => None,
        _ => Some("it has no transpose rule (only linear ops do)"),
    }
}

fn matmul(transpose_a: bool, transpose_b: bool) -> Op {
    Op::MatMul {
        transpose_a,
        transpose_b,
    }
}

/// The axes of `target` that a broadcast from `source` stretched or added.
fn broadcast_axes(source: &Shape, target: &Shape) -> Vec<usize> {
    let lead = target.rank() - source.rank();
    (0..target.rank())
        .filter(|&i| i < lead || (source.dims()[i - lead].is_one() && !target.dims()[i].is_one()))
        .collect()
}

/// Zeros around `ct` along `axis`, so that it fills the `start..end` part of a tensor of `shape`.
fn pad_slice(
    g: &mut Graph,
    ct: NodeId,
    shape: &Shape,
    axis: usize,
    start: &Dim,
    end: &Dim,
) -> Result<NodeId, ShapeError> {
    let dtype = g.ty(ct).dtype;
    let size = &shape.dims()[axis];
    let after = sub_dims(size, end)
        .ok_or_else(|| ShapeError(format!("cannot pad slice {start}..{end} of {shape}")))?;
    let mut parts = Vec::with_capacity(3);
    for (len, is_ct) in [
        (start.clone(), false),
        (Dim::fixed(1), true),
        (after, false),
    ] {
        if is_ct {
            parts.push(ct);
        } else if len.as_fixed() != Some(0) {
            let mut dims = shape.dims().to_vec();
            dims[axis] = len;
            let zeros = g.full(0.0, &TensorType::new(dtype, Shape(dims)))?;
            parts.push(zeros);
        }
    }
    if parts.len() == 1 {
        return Ok(ct);
    }
    g.apply(Op::Concat { axis }, &parts)
}
