//! Reductions over axes: `sum` and `reduce_max`. The reduced axes are removed; `keepdims` and
//! `mean` are DSL composites of these, a reshape and a division.

use super::{
    Built, Facts, Family, ParamReader, ShapeError, Work, check_arity, check_axis, numel, operands,
    shape_err,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Shape, TensorType};
use crate::ir::tensor::Element;
use crate::ir::{BinaryOp, UnaryOp};
use ndarray::{ArrayD, Axis};
use std::borrow::Cow;
use std::fmt;

/// How a reduction combines the elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    Sum,
    /// The maximum; NaN if any element is NaN.
    Max,
}

/// A reduction over `axes` (sorted, distinct).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Vec<usize>,
}

impl Reduce {
    /// Applies `reduce_axis` to each reduced axis, last first, so that the indices of the axes
    /// still to reduce stay valid.
    fn reduce<T: Element>(
        &self,
        x: &ArrayD<T>,
        reduce_axis: impl Fn(&ArrayD<T>, Axis) -> Result<ArrayD<T>, String>,
    ) -> Result<ArrayD<T>, String> {
        let mut acc = Cow::Borrowed(x);
        for &axis in self.axes.iter().rev() {
            check_axis(&acc, axis)?;
            acc = Cow::Owned(reduce_axis(&acc, Axis(axis))?);
        }
        Ok(acc.into_owned())
    }
}

impl Family for Reduce {
    fn name(&self) -> &'static str {
        match self.kind {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "reduce_max",
        }
    }

    fn names() -> Vec<&'static str> {
        vec!["sum", "reduce_max"]
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Reduce>> {
        let kind = match name {
            "sum" => ReduceKind::Sum,
            "reduce_max" => ReduceKind::Max,
            _ => return None,
        };
        let what = format!("the axes of `{name}`");
        Some(params.integers(&what).map(|axes| Reduce { kind, axes }))
    }

    fn write_params(&self, f: &mut dyn fmt::Write, _: &dyn Fn(usize) -> String) -> fmt::Result {
        super::layout::write_list(f, &self.axes)
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        check_arity(self.name(), inputs.len(), 1)?;
        let x = &inputs[0].shape;
        for (i, &a) in self.axes.iter().enumerate() {
            if a >= x.rank() {
                return shape_err(format!(
                    "{} axis {a} is out of range for rank {}",
                    self.name(),
                    x.rank()
                ));
            }
            if i > 0 && self.axes[i - 1] >= a {
                return shape_err(format!(
                    "{} axes {:?} must be sorted and distinct",
                    self.name(),
                    self.axes
                ));
            }
        }
        let kept = x
            .dims()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.axes.contains(i));
        Ok(TensorType::new(
            inputs[0].dtype,
            Shape(kept.map(|(_, d)| d.clone()).collect()),
        ))
    }

    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], _: &Bindings) -> Result<ArrayD<T>, String> {
        let [x] = operands(xs)?;
        match self.kind {
            ReduceKind::Sum => self.reduce(x, |acc, axis| Ok(acc.sum_axis(axis))),
            ReduceKind::Max => self.reduce(x, |acc, axis| {
                if acc.len_of(axis) == 0 {
                    return Err(format!(
                        "axis {} is empty, so it has no maximum",
                        axis.index()
                    ));
                }
                let max = BinaryOp::Max.kernel::<T>();
                Ok(acc.map_axis(axis, |lane| lane.fold(lane[0], |m, &v| max(m, v))))
            }),
        }
    }

    fn jvp(&self, g: &mut Graph, y: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        let t = ts[0].expect("a reduction has one operand");
        match self.kind {
            ReduceKind::Sum => g.apply(super::Op::Reduce(self.clone()), &[t]).map(Some),
            ReduceKind::Max => {
                // The tangent at the maximum, averaged over ties: Σ t·mask / Σ mask, where mask
                // marks the elements equal to the maximum (m − x = 0 exactly there, > 0
                // elsewhere).
                let x = xs[0];
                let x_ty = g.ty(x).clone();
                let kept = x_ty.shape.keepdims(&self.axes);
                let m = g.reshape(y, &kept)?;
                let m = g.broadcast(m, &x_ty.shape)?;
                let gap = g.binary(BinaryOp::Sub, m, x)?;
                let below = g.unary(UnaryOp::Step, gap)?;
                let one = g.full(1.0, &x_ty)?;
                let mask = g.binary(BinaryOp::Sub, one, below)?;
                let picked = g.binary(BinaryOp::Mul, t, mask)?;
                let picked = g.sum(picked, &self.axes)?;
                let count = g.sum(mask, &self.axes)?;
                g.binary(BinaryOp::Div, picked, count).map(Some)
            }
        }
    }

    fn check_linear(&self, _: &[bool]) -> Result<(), &'static str> {
        match self.kind {
            ReduceKind::Sum => Ok(()),
            ReduceKind::Max => Err("it has no transpose rule (only linear ops do)"),
        }
    }

    /// The transpose of a sum spreads the cotangent back over the summed axes.
    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        _: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        let x_shape = g.ty(xs[0]).shape.clone();
        let kept = g.reshape(ct, &x_shape.keepdims(&self.axes))?;
        Ok(vec![(xs[0], g.broadcast(kept, &x_shape)?)])
    }

    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        Work {
            elementwise_flops: numel(&inputs[0].shape, batch),
            bytes: Work::streamed(inputs, output, batch),
            ..Work::default()
        }
    }

    fn fold(&self, inputs: &[&Facts], output: &TensorType) -> Option<f64> {
        let c = inputs[0].constant?.get();
        match self.kind {
            ReduceKind::Max => Some(c),
            ReduceKind::Sum => {
                let count = inputs[0]
                    .ty
                    .shape
                    .numel()
                    .div_exact(&output.shape.numel())?;
                Some(c * count.as_fixed()? as f64)
            }
        }
    }

    fn is_positive(&self, inputs: &[&Facts]) -> bool {
        match self.kind {
            // A sum over no elements is 0.
            ReduceKind::Sum => {
                inputs[0].positive && inputs[0].ty.shape.numel().as_fixed() != Some(0)
            }
            ReduceKind::Max => inputs[0].positive,
        }
    }
}
