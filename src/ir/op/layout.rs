//! Layout ops: data movement without arithmetic. All are linear; their transposes are layout
//! ops again (broadcast ↔ sum, reshape ↔ reshape, transpose ↔ inverse transpose, concat ↔
//! slice).

use super::{
    Built, Facts, Family, ParamReader, ShapeError, Work, add_dims, check_arity, check_axis,
    common_dtype, eval_dim, eval_shape, operands, shape_err, sub_dims,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Dim, Shape, TensorType};
use crate::ir::tensor::Element;
use crate::ir::text::{DimText, ShapeText};
use ndarray::{ArrayD, Axis, IxDyn, Order, Slice};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
    /// numpy `broadcast_to(x, shape)`: trailing axes aligned, size-1 axes stretched.
    Broadcast { shape: Shape },
    /// Same elements, row-major order, new shape.
    Reshape { shape: Shape },
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose { perm: Vec<usize> },
    /// Concatenation of all operands along `axis`.
    Concat { axis: usize },
    /// Elements `start..end` along `axis`.
    Slice { axis: usize, start: Dim, end: Dim },
}

/// `[a, b, …]`.
pub(super) fn write_list<T: fmt::Display>(f: &mut dyn fmt::Write, items: &[T]) -> fmt::Result {
    f.write_char('[')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_char(']')
}

impl Layout {
    /// Views read their operand in place in the JIT (strides only); concat copies.
    pub fn is_view(&self) -> bool {
        !matches!(self, Layout::Concat { .. })
    }

    /// The shape of `op(x)` for the one-operand ops.
    fn result_shape(&self, x: &Shape) -> Result<Shape, ShapeError> {
        Ok(match self {
            Layout::Broadcast { shape } => {
                if !x.broadcasts_to(shape) {
                    return shape_err(format!("cannot broadcast shape {x} to {shape}"));
                }
                shape.clone()
            }
            Layout::Reshape { shape } => {
                if x.numel() != shape.numel() {
                    return shape_err(format!(
                        "cannot reshape {x} ({} elements) to {shape} ({} elements)",
                        x.numel(),
                        shape.numel()
                    ));
                }
                shape.clone()
            }
            Layout::Transpose { perm } => {
                let mut seen = vec![false; x.rank()];
                for &p in perm {
                    if p >= x.rank() || std::mem::replace(&mut seen[p], true) {
                        return shape_err(format!(
                            "transpose permutation {perm:?} is not a permutation of the {} axes of {x}",
                            x.rank()
                        ));
                    }
                }
                if perm.len() != x.rank() {
                    return shape_err(format!(
                        "transpose permutation {perm:?} has {} entries for the {} axes of {x}",
                        perm.len(),
                        x.rank()
                    ));
                }
                Shape(perm.iter().map(|&p| x.0[p].clone()).collect())
            }
            Layout::Slice { axis, start, end } => {
                if *axis >= x.rank() {
                    return shape_err(format!("slice axis {axis} is out of range for {x}"));
                }
                let len = sub_dims(&x.0[*axis], end)
                    .and_then(|_| sub_dims(end, start))
                    .ok_or_else(|| {
                        ShapeError(format!(
                            "slice {start}..{end} does not fit axis {axis} of {x}"
                        ))
                    })?;
                let mut dims = x.0.clone();
                dims[*axis] = len;
                Shape(dims)
            }
            Layout::Concat { .. } => unreachable!("concat takes any number of operands"),
        })
    }

    fn concat_shape(inputs: &[&TensorType], axis: usize) -> Result<Shape, ShapeError> {
        let first = &inputs[0].shape;
        if axis >= first.rank() {
            return shape_err(format!("concat axis {axis} is out of range for {first}"));
        }
        let mut total = Dim::fixed(0);
        for t in inputs {
            let s = &t.shape;
            let same_elsewhere = s.rank() == first.rank()
                && (0..s.rank()).all(|i| i == axis || s.0[i] == first.0[i]);
            if !same_elsewhere {
                return shape_err(format!(
                    "concat along axis {axis} needs equal sizes on the other axes, got {first} and {s}"
                ));
            }
            if total.coeff().checked_add(s.0[axis].coeff()).is_none() {
                return shape_err(format!(
                    "concat along axis {axis}: the sizes add up to more than 2^64"
                ));
            }
            total = add_dims(&total, &s.0[axis]).ok_or_else(|| {
                ShapeError(format!(
                    "concat along axis {axis} cannot add sizes {total} and {}",
                    s.0[axis]
                ))
            })?;
        }
        let mut dims = first.0.clone();
        dims[axis] = total;
        Ok(Shape(dims))
    }
}

/// Start offsets of each operand of a concat along `axis`.
fn concat_offsets(g: &Graph, xs: &[NodeId], axis: usize) -> Vec<Dim> {
    let mut offsets = Vec::with_capacity(xs.len());
    let mut at = Dim::fixed(0);
    for &x in xs {
        offsets.push(at.clone());
        at = add_dims(&at, &g.ty(x).shape.dims()[axis])
            .expect("the concat's shape rule added these");
    }
    offsets
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
    g.apply(super::Op::concat(axis), &parts)
}

impl Family for Layout {
    fn name(&self) -> &'static str {
        match self {
            Layout::Broadcast { .. } => "broadcast",
            Layout::Reshape { .. } => "reshape",
            Layout::Transpose { .. } => "transpose",
            Layout::Concat { .. } => "concat",
            Layout::Slice { .. } => "slice",
        }
    }

    fn names() -> Vec<&'static str> {
        vec!["broadcast", "reshape", "transpose", "concat", "slice"]
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Layout>> {
        Some(match name {
            "broadcast" => params.shape().map(|shape| Layout::Broadcast { shape }),
            "reshape" => params.shape().map(|shape| Layout::Reshape { shape }),
            "transpose" => params
                .integers("the permutation of `transpose`")
                .map(|perm| Layout::Transpose { perm }),
            "concat" => (|| {
                params.expect('[', "before the axis of `concat`")?;
                let axis = params.integer("an axis")?;
                params.expect(']', "after the axis of `concat`")?;
                Ok(Layout::Concat { axis })
            })(),
            "slice" => (|| {
                params.expect('[', "before the axis of `slice`")?;
                let axis = params.integer("an axis")?;
                params.expect(',', "between the axis and the range of `slice`")?;
                let start = params.dim()?;
                params.expect_range("between the start and end of the slice")?;
                let end = params.dim()?;
                params.expect(']', "after the range of `slice`")?;
                Ok(Layout::Slice { axis, start, end })
            })(),
            _ => return None,
        })
    }

    fn write_params(&self, f: &mut dyn fmt::Write, _: &dyn Fn(usize) -> String) -> fmt::Result {
        match self {
            Layout::Broadcast { shape } | Layout::Reshape { shape } => {
                write!(f, "{}", ShapeText(shape))
            }
            Layout::Transpose { perm } => write_list(f, perm),
            Layout::Concat { axis } => write!(f, "[{axis}]"),
            Layout::Slice { axis, start, end } => {
                write!(f, "[{axis}, {}..{}]", DimText(start), DimText(end))
            }
        }
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let shape = match self {
            Layout::Concat { axis } => {
                if inputs.is_empty() {
                    return shape_err("concat cannot take 0 operand(s)");
                }
                Layout::concat_shape(inputs, *axis)?
            }
            _ => {
                check_arity(self.name(), inputs.len(), 1)?;
                self.result_shape(&inputs[0].shape)?
            }
        };
        Ok(TensorType::new(common_dtype(self.name(), inputs)?, shape))
    }

    fn eval<T: Element>(
        &self,
        xs: &[&ArrayD<T>],
        bindings: &Bindings,
    ) -> Result<ArrayD<T>, String> {
        if let Layout::Concat { axis } = self {
            let shapes = || xs.iter().map(|x| x.shape()).collect::<Vec<_>>();
            let Some(first) = xs.first() else {
                return Err("has no operands".to_string());
            };
            check_axis(first, *axis)?;
            if xs.iter().any(|x| x.ndim() != first.ndim()) {
                return Err(format!("operands of shapes {:?} differ in rank", shapes()));
            }
            let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
            return ndarray::concatenate(Axis(*axis), &views).map_err(|e| {
                format!(
                    "cannot concatenate shapes {:?} along axis {axis}: {e}",
                    shapes()
                )
            });
        }
        let [x] = operands(xs)?;
        Ok(match self {
            Layout::Broadcast { shape } => {
                let target = eval_shape(shape, bindings)?;
                x.broadcast(IxDyn(&target))
                    .ok_or_else(|| format!("cannot broadcast shape {:?} to {target:?}", x.shape()))?
                    .to_owned()
            }
            Layout::Reshape { shape } => {
                let target = eval_shape(shape, bindings)?;
                x.to_shape((IxDyn(&target), Order::RowMajor))
                    .map_err(|e| format!("cannot reshape {:?} to {target:?}: {e}", x.shape()))?
                    .into_owned()
            }
            Layout::Transpose { perm } => {
                let mut seen = vec![false; x.ndim()];
                let is_permutation = perm.len() == x.ndim()
                    && perm
                        .iter()
                        .all(|&p| p < x.ndim() && !std::mem::replace(&mut seen[p], true));
                if !is_permutation {
                    return Err(format!(
                        "{perm:?} is not a permutation of the axes of shape {:?}",
                        x.shape()
                    ));
                }
                x.view()
                    .permuted_axes(IxDyn(perm))
                    .as_standard_layout()
                    .into_owned()
            }
            Layout::Slice { axis, start, end } => {
                let (start, end) = (eval_dim(start, bindings)?, eval_dim(end, bindings)?);
                let len = check_axis(x, *axis)?;
                if start > end || end > len {
                    return Err(format!(
                        "slice {start}..{end} does not fit axis {axis} of {:?}",
                        x.shape()
                    ));
                }
                x.slice_axis(Axis(*axis), Slice::from(start..end))
                    .to_owned()
            }
            Layout::Concat { .. } => unreachable!("evaluated above"),
        })
    }

    /// Layout ops are linear: the tangent is the same op on the tangents (zeros standing in
    /// for a concat's operands without one).
    fn jvp(&self, g: &mut Graph, _: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        let op = super::Op::Layout(self.clone());
        if let Layout::Concat { .. } = self {
            let mut parts = Vec::with_capacity(xs.len());
            for (&x, t) in xs.iter().zip(ts) {
                let ty = g.ty(x).clone();
                parts.push(match t {
                    Some(t) => *t,
                    None => g.full(0.0, &ty)?,
                });
            }
            return g.apply(op, &parts).map(Some);
        }
        g.apply(op, &[ts[0].expect("one operand")]).map(Some)
    }

    fn check_linear(&self, _: &[bool]) -> Result<(), &'static str> {
        Ok(())
    }

    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        let x_shape = g.ty(xs[0]).shape.clone();
        let single = |node| Ok(vec![(xs[0], node)]);
        match self {
            Layout::Broadcast { shape } => {
                let summed = g.sum(ct, &broadcast_axes(&x_shape, shape))?;
                single(g.reshape(summed, &x_shape)?)
            }
            Layout::Reshape { .. } => single(g.reshape(ct, &x_shape)?),
            Layout::Transpose { perm } => {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                single(g.transpose(ct, &inverse)?)
            }
            Layout::Slice { axis, start, end } => {
                single(pad_slice(g, ct, &x_shape, *axis, start, end)?)
            }
            Layout::Concat { axis } => {
                let offsets = concat_offsets(g, xs, *axis);
                let mut out = Vec::with_capacity(xs.len());
                for (i, &x) in xs.iter().enumerate().filter(|(i, _)| linear[*i]) {
                    let len = &g.ty(x).shape.dims()[*axis];
                    let end =
                        add_dims(&offsets[i], len).expect("offsets and lengths are like terms");
                    let slice = super::Op::slice(*axis, offsets[i].clone(), end);
                    out.push((x, g.apply(slice, &[ct])?));
                }
                Ok(out)
            }
        }
    }

    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        match self {
            // A view of the same elements in the same order.
            Layout::Reshape { .. } => Work::default(),
            Layout::Broadcast { .. }
            | Layout::Transpose { .. }
            | Layout::Concat { .. }
            | Layout::Slice { .. } => Work {
                bytes: Work::streamed(inputs, output, batch),
                ..Work::default()
            },
        }
    }

    fn fold(&self, inputs: &[&Facts], _: &TensorType) -> Option<f64> {
        let first = inputs[0].constant?;
        // A concat is constant when all its parts are the same constant.
        inputs
            .iter()
            .all(|f| f.constant == Some(first))
            .then_some(first.get())
    }

    fn is_positive(&self, inputs: &[&Facts]) -> bool {
        inputs.iter().all(|f| f.positive)
    }
}
