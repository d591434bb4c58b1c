//! The layout builtins: `reshape` (with one inferred `-1`), `transpose` and `concat`.

use super::builtins::Call;
use super::{Lowerer, MAX_ELEMENTS, Value, describe};
use crate::dsl::parser::{Expr, ExprKind};
use crate::ir::Diagnostic;
use crate::ir::graph::{NodeId, Span};
use crate::ir::op::Op;
use crate::ir::shape::{Dim, Shape};

/// `reshape(x, shape)`.
pub(super) fn reshape(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.the_operand(call)?;
    let shape = call.args[1].expect("reshape's shape is required");
    lowerer.reshape(x, shape, call.span)
}

/// `transpose(x, perm)`; all axes reversed when `perm` is absent.
pub(super) fn transpose(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.the_operand(call)?;
    lowerer.transpose(x, call.args[1], call.span)
}

/// `concat([a, b, …], axis)`.
pub(super) fn concat(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let list = call.args[0].expect("concat's operands are required");
    let mut nodes = Vec::with_capacity(call.values.len());
    for index in 0..call.values.len() {
        nodes.push(lowerer.tensor_operand(call, index, "each operand of concat")?);
    }
    lowerer.concat(&nodes, &call.operands, list.span, call.args[1], call.span)
}

impl<'p> Lowerer<'p> {
    fn reshape(&mut self, x: NodeId, shape: &Expr, span: Span) -> Result<Value, Diagnostic> {
        let ExprKind::List(items) = &shape.kind else {
            return Err(self.error(
                shape.span,
                format!(
                    "reshape takes the new shape as a list, as in reshape(x, [B, 784]), found {}",
                    describe(shape)
                ),
            ));
        };
        let mut dims: Vec<Option<Dim>> = Vec::with_capacity(items.len());
        for item in items {
            let dim = self.dim(item, true)?;
            if dim.is_none() && dims.iter().any(Option::is_none) {
                return Err(self.error(item.span, "only one dimension of a reshape may be -1"));
            }
            dims.push(dim);
        }
        let known = Shape(dims.iter().flatten().cloned().collect());
        self.check_size(shape.span, &known)?;
        let from = self.ty(x);
        let elements = from.shape.numel();
        let inferred = if dims.iter().any(Option::is_none) {
            Some(elements.div_exact(&known.numel()).ok_or_else(|| {
                self.error(
                    shape.span,
                    format!(
                        "cannot infer the -1 in reshape: {from} has {elements} elements, which is not \
                         a multiple of {}",
                        known.numel()
                    ),
                )
            })?)
        } else {
            None
        };
        let target = Shape(
            dims.into_iter()
                .map(|d| {
                    d.unwrap_or_else(|| inferred.clone().expect("inferred when a -1 is present"))
                })
                .collect(),
        );
        if target.numel() != elements {
            return Err(self.error(
                span,
                format!(
                    "cannot reshape {from} ({elements} elements) to {target} ({} elements)",
                    target.numel()
                ),
            ));
        }
        Ok(Value::Tensor(self.build(span, |g| g.reshape(x, &target))?))
    }

    fn transpose(
        &mut self,
        x: NodeId,
        perm: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let shape = self.ty(x).shape;
        let rank = shape.rank();
        let perm = match perm {
            None => (0..rank).rev().collect(),
            Some(list) => {
                let ExprKind::List(items) = &list.kind else {
                    return Err(self.error(
                        list.span,
                        format!("transpose takes the permutation as a list, as in transpose(x, [1, 0]), found {}", describe(list)),
                    ));
                };
                let mut perm: Vec<usize> = Vec::with_capacity(items.len());
                for item in items {
                    let value = self.int(item, "an axis")?;
                    perm.push(self.normalize_axis(value, item.span, &shape)?);
                }
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..rank).collect::<Vec<_>>() {
                    return Err(self.error(
                        list.span,
                        format!("transpose needs a permutation of the {rank} axes of {shape}, found {perm:?}"),
                    ));
                }
                perm
            }
        };
        Ok(Value::Tensor(self.build(span, |g| g.transpose(x, &perm))?))
    }

    /// Concatenation of `nodes` (the values of `operands`, written in the list at `list`).
    fn concat(
        &mut self,
        nodes: &[NodeId],
        operands: &[&Expr],
        list: Span,
        axis: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let (Some(&first_node), Some(first_operand)) = (nodes.first(), operands.first()) else {
            return Err(self.error(
                list,
                "concat needs at least one tensor, found an empty list",
            ));
        };
        let first = self.ty(first_node);
        let axis = match axis {
            Some(axis) => self.axis(axis, &first.shape)?,
            None => self.normalize_axis(0, first_operand.span, &first.shape)?,
        };
        let mut total: u64 = 0;
        for (node, item) in nodes.iter().zip(operands) {
            let ty = self.ty(*node);
            if ty.dtype != first.dtype || ty.shape.rank() != first.shape.rank() {
                return Err(self.error(
                    item.span,
                    format!(
                        "concat needs tensors of one element type and rank, found {first} and {ty}"
                    ),
                ));
            }
            total = total.saturating_add(ty.shape.dims()[axis].coeff());
        }
        if total > MAX_ELEMENTS {
            return Err(self.error(
                span,
                format!("concat along axis {axis} is too large (more than 2^48 elements)"),
            ));
        }
        let node = self.build(span, |g| g.apply(Op::concat(axis), nodes))?;
        self.check_size(span, &self.ty(node).shape)?;
        Ok(Value::Tensor(node))
    }
}
