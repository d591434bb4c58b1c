//! Composites: builtins that become several primitives. Reductions (`mean` is a sum scaled by
//! the element count, `keepdims` a reshape), the stable softmax family (softmax, log_softmax,
//! logsumexp, all shifted by a `stop_gradient` max), the activations GELU and SiLU, and the
//! losses. Their key values are
//! labelled (`softmax(z)`, `log_softmax(z)`, …) so that a reader can follow them.

use super::builtins::Call;
use super::{Lowerer, Value};
use crate::dsl::parser::Expr;
use crate::ir::Diagnostic;
use crate::ir::graph::{NodeId, Span};
use crate::ir::op::{BinaryOp, Op, UnaryOp};
use crate::ir::shape::{Dim, Shape};
use std::f64::consts::FRAC_1_SQRT_2;

/// The reductions of the builtin table (`sum`, `mean`, `max`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Reduction {
    Sum,
    Mean,
    Max,
}

/// The pieces of a stable softmax over one axis.
struct ShiftedExp {
    /// `stop_gradient(max(x, axis))`, axis removed.
    shift: NodeId,
    /// `exp(x − shift)`, in `x`'s shape.
    exp: NodeId,
    /// `sum(exp, axis)`, axis removed.
    sum: NodeId,
}

impl<'p> Lowerer<'p> {
    /// `sum`, `mean` or `max` of `x` over `axis` (all axes when absent), with `keepdims`.
    pub(super) fn reduce(
        &mut self,
        reduction: Reduction,
        x: Value,
        axis: Option<&Expr>,
        keepdims: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let shape = match x {
            Value::Tensor(x) => self.ty(x).shape,
            Value::Number(_) => Shape::scalar(),
        };
        let axes = self.axes(axis, &shape)?;
        let keepdims = self.flag(keepdims, "keepdims")?;
        // A number is a scalar: its only valid reduction is over no axes, which is the number.
        let Value::Tensor(x) = x else { return Ok(x) };
        let reduced = match reduction {
            Reduction::Sum => self.build(span, |g| g.sum(x, &axes))?,
            Reduction::Max if axes.is_empty() => x,
            Reduction::Max => self.build(span, |g| g.apply(Op::reduce_max(axes.clone()), &[x]))?,
            Reduction::Mean => {
                let sum = self.build(span, |g| g.sum(x, &axes))?;
                let count = axes
                    .iter()
                    .fold(Dim::fixed(1), |n, &a| n.mul(&shape.dims()[a]));
                self.divide_by_count(sum, &count, span)?
            }
        };
        if keepdims {
            return Ok(Value::Tensor(self.keep_dims(reduced, &shape, &axes, span)?));
        }
        Ok(Value::Tensor(reduced))
    }

    /// `x / n` for the number of elements `n` an average runs over: a multiplication by the
    /// constant 1/n when n is fixed, a division by the runtime size when it is symbolic.
    fn divide_by_count(
        &mut self,
        x: NodeId,
        count: &Dim,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let ty = self.ty(x);
        let fixed = count.as_fixed();
        if fixed == Some(1) {
            return Ok(x);
        }
        let factor = self.build(span, |g| {
            let factor = match fixed {
                Some(n) => g.constant(1.0 / n as f64, ty.dtype),
                None => g.dim_size(count, ty.dtype),
            };
            g.broadcast(factor, &ty.shape)
        })?;
        let op = if fixed.is_some() {
            BinaryOp::Mul
        } else {
            BinaryOp::Div
        };
        self.binary(op, x, factor, span)
    }

    /// Reshapes a reduction result to `shape` with the reduced `axes` kept as size 1.
    fn keep_dims(
        &mut self,
        reduced: NodeId,
        shape: &Shape,
        axes: &[usize],
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let kept = shape.keepdims(axes);
        self.build(span, |g| g.reshape(reduced, &kept))
    }

    /// The shift `m = stop_gradient(max(x, axis))`, broadcast back over `x`, and `exp(x − m)`
    /// with its sum over `axis`: the pieces of the stable softmax family.
    fn shifted_exp(
        &mut self,
        x: NodeId,
        axis: usize,
        span: Span,
    ) -> Result<ShiftedExp, Diagnostic> {
        let shape = self.ty(x).shape;
        let max = self.build(span, |g| g.apply(Op::reduce_max(vec![axis]), &[x]))?;
        let shift = self.build(span, |g| g.apply(Op::stop_gradient(), &[max]))?;
        let spread = self.spread(shift, &shape, axis, span)?;
        let centered = self.binary(BinaryOp::Sub, x, spread, span)?;
        let exp = self.build(span, |g| g.unary(UnaryOp::Exp, centered))?;
        let sum = self.build(span, |g| g.sum(exp, &[axis]))?;
        let x_label = self.graph.label(x).unwrap_or("…");
        let labels = [
            (shift, format!("max({x_label})")),
            (exp, format!("exp({x_label} - max({x_label}))")),
            (sum, format!("sum(exp({x_label} - max({x_label})))")),
        ];
        for (node, label) in labels {
            self.graph.set_label(node, &label);
        }
        Ok(ShiftedExp { shift, exp, sum })
    }

    /// A value reduced over `axis`, put back in `x`'s shape (keepdims, then broadcast).
    fn spread(
        &mut self,
        reduced: NodeId,
        shape: &Shape,
        axis: usize,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let kept = self.keep_dims(reduced, shape, &[axis], span)?;
        self.build(span, |g| g.broadcast(kept, shape))
    }

    /// `log Σ exp(x)` over `axis`, as `m + log Σ exp(x − m)` for the shift `m`.
    fn logsumexp(
        &mut self,
        x: NodeId,
        axis: usize,
        keepdims: bool,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let parts = self.shifted_exp(x, axis, span)?;
        let log_sum = self.build(span, |g| g.unary(UnaryOp::Log, parts.sum))?;
        let lse = self.binary(BinaryOp::Add, parts.shift, log_sum, span)?;
        self.label_applied(lse, "logsumexp", x);
        if keepdims {
            let shape = self.ty(x).shape;
            return self.keep_dims(lse, &shape, &[axis], span);
        }
        Ok(lse)
    }

    /// `x − logsumexp(x)` over `axis`.
    fn log_softmax(&mut self, x: NodeId, axis: usize, span: Span) -> Result<NodeId, Diagnostic> {
        let lse = self.logsumexp(x, axis, false, span)?;
        let shape = self.ty(x).shape;
        let lse = self.spread(lse, &shape, axis, span)?;
        let log_p = self.binary(BinaryOp::Sub, x, lse, span)?;
        self.label_applied(log_p, "log_softmax", x);
        Ok(log_p)
    }

    /// `exp(x − m) / Σ exp(x − m)` over `axis`, for the shift `m`.
    fn softmax(&mut self, x: NodeId, axis: usize, span: Span) -> Result<NodeId, Diagnostic> {
        let parts = self.shifted_exp(x, axis, span)?;
        let shape = self.ty(x).shape;
        let total = self.spread(parts.sum, &shape, axis, span)?;
        let p = self.binary(BinaryOp::Div, parts.exp, total, span)?;
        self.label_applied(p, "softmax", x);
        Ok(p)
    }

    /// The operand of a softmax-family call and its `axis` (the last when absent).
    fn operand_and_axis(&self, call: &Call) -> Result<(NodeId, usize), Diagnostic> {
        let x = self.the_operand(call)?;
        let shape = self.ty(x).shape;
        let axis = match call.args[1] {
            Some(axis) => self.axis(axis, &shape)?,
            None => self.normalize_axis(-1, call.span, &shape)?,
        };
        Ok((x, axis))
    }

    /// The output and the target of a loss call: tensors of one type.
    fn loss_operands(&self, call: &Call) -> Result<(NodeId, NodeId), Diagnostic> {
        let name = call.name;
        let z = self.tensor_operand(
            call,
            0,
            &format!("the first argument of {name} (the output)"),
        )?;
        let y = self.tensor_operand(
            call,
            1,
            &format!("the second argument of {name} (the target)"),
        )?;
        let (tz, ty) = (self.ty(z), self.ty(y));
        if tz != ty {
            return Err(self.error(
                call.span,
                format!("{name} needs an output and a target of one type, found {tz} and {ty}"),
            ));
        }
        Ok((z, y))
    }

    /// The mean of every element of `x`.
    fn mean_of_all(&mut self, x: NodeId, span: Span) -> Result<NodeId, Diagnostic> {
        let shape = self.ty(x).shape;
        let all_axes: Vec<usize> = (0..shape.rank()).collect();
        let total = self.build(span, |g| g.sum(x, &all_axes))?;
        self.divide_by_count(total, &shape.numel(), span)
    }

    /// Labels `node` as `f(x)` with `x`'s label in the parentheses (`…` when it has none).
    fn label_applied(&mut self, node: NodeId, f: &str, x: NodeId) {
        let label = format!("{f}({})", self.graph.label(x).unwrap_or("…"));
        self.graph.set_label(node, &label);
    }

    /// `y`, labelled `f(x)` when both are tensors.
    fn labelled(&mut self, y: Value, f: &str, x: Value) -> Value {
        if let (Value::Tensor(y), Value::Tensor(x)) = (y, x) {
            self.label_applied(y, f, x);
        }
        y
    }
}

/// `softmax(x, axis=-1)`.
pub(super) fn softmax(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (x, axis) = lowerer.operand_and_axis(call)?;
    lowerer.softmax(x, axis, call.span).map(Value::Tensor)
}

/// `log_softmax(x, axis=-1)`.
pub(super) fn log_softmax(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (x, axis) = lowerer.operand_and_axis(call)?;
    lowerer.log_softmax(x, axis, call.span).map(Value::Tensor)
}

/// `logsumexp(x, axis=-1, keepdims=false)`.
pub(super) fn logsumexp(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (x, axis) = lowerer.operand_and_axis(call)?;
    let keepdims = lowerer.flag(call.args[2], "keepdims")?;
    lowerer
        .logsumexp(x, axis, keepdims, call.span)
        .map(Value::Tensor)
}

/// `gelu(x)`: the exact GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))` (PyTorch's default, not the tanh
/// approximation).
pub(super) fn gelu(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (x, span) = (call.values[0], call.span);
    let number = Value::Number;
    let scaled = lowerer.elementwise(BinaryOp::Mul, "*", x, number(FRAC_1_SQRT_2), span)?;
    let erf = lowerer.unary(UnaryOp::Erf, scaled, span)?;
    let cdf = lowerer.elementwise(BinaryOp::Add, "+", number(1.0), erf, span)?;
    let half = lowerer.elementwise(BinaryOp::Mul, "*", number(0.5), x, span)?;
    let y = lowerer.elementwise(BinaryOp::Mul, "*", half, cdf, span)?;
    Ok(lowerer.labelled(y, "gelu", x))
}

/// `silu(x)`: `x·σ(x)` (also called swish).
pub(super) fn silu(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (x, span) = (call.values[0], call.span);
    let sigmoid = lowerer.unary(UnaryOp::Sigmoid, x, span)?;
    let y = lowerer.elementwise(BinaryOp::Mul, "*", x, sigmoid, span)?;
    Ok(lowerer.labelled(y, "silu", x))
}

/// `softmax_cross_entropy(z, y)`: −Σ y·log_softmax(z) over the class axis (the last), averaged
/// over the other axes.
pub(super) fn softmax_cross_entropy(
    lowerer: &mut Lowerer<'_>,
    call: &Call<'_>,
) -> Result<Value, Diagnostic> {
    let (z, y) = lowerer.loss_operands(call)?;
    let span = call.span;
    let shape = lowerer.ty(z).shape;
    let Some((_classes, batch)) = shape.dims().split_last() else {
        return Err(lowerer.error(
            span,
            format!(
                "{} needs tensors with a class axis (the last), found scalars",
                call.name
            ),
        ));
    };
    let all_axes: Vec<usize> = (0..shape.rank()).collect();
    let log_p = lowerer.log_softmax(z, shape.rank() - 1, span)?;
    let weighted = lowerer.binary(BinaryOp::Mul, y, log_p, span)?;
    let total = lowerer.build(span, |g| g.sum(weighted, &all_axes))?;
    let negated = lowerer.build(span, |g| g.unary(UnaryOp::Neg, total))?;
    let count = Shape(batch.to_vec()).numel();
    lowerer
        .divide_by_count(negated, &count, span)
        .map(Value::Tensor)
}

/// `mse(z, y)`: the mean of (z − y)² over every element.
pub(super) fn mse(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let (z, y) = lowerer.loss_operands(call)?;
    let span = call.span;
    let diff = lowerer.binary(BinaryOp::Sub, z, y, span)?;
    let squared = lowerer.binary(BinaryOp::Mul, diff, diff, span)?;
    lowerer.mean_of_all(squared, span).map(Value::Tensor)
}

/// `sigmoid_cross_entropy(z, y)`: the logistic loss of the logits `z`, averaged over every
/// element.
pub(super) fn sigmoid_cross_entropy(
    lowerer: &mut Lowerer<'_>,
    call: &Call<'_>,
) -> Result<Value, Diagnostic> {
    let (z, y) = lowerer.loss_operands(call)?;
    let span = call.span;
    // softplus(z) − y·z is log(1 + e^z) − y·z: the logistic loss without overflow.
    let soft = lowerer.build(span, |g| g.unary(UnaryOp::Softplus, z))?;
    lowerer.label_applied(soft, "softplus", z);
    let yz = lowerer.binary(BinaryOp::Mul, y, z, span)?;
    let logistic = lowerer.binary(BinaryOp::Sub, soft, yz, span)?;
    lowerer.mean_of_all(logistic, span).map(Value::Tensor)
}
