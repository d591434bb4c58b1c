//! Literal arguments, read from the syntax rather than lowered: dimensions, integers, axes and
//! `true`/`false` flags; and the limit on a tensor's size.

use super::{Lowerer, MAX_ELEMENTS, describe};
use crate::dsl::parser::{BinOp, Expr, ExprKind};
use crate::ir::Diagnostic;
use crate::ir::graph::Span;
use crate::ir::shape::{Dim, Shape};

impl<'p> Lowerer<'p> {
    /// A dimension: a positive integer, a symbolic name, a product of those, or (when `infer`)
    /// `-1`, returned as `None`.
    pub(super) fn dim(&self, expr: &Expr, infer: bool) -> Result<Option<Dim>, Diagnostic> {
        match &expr.kind {
            ExprKind::Int(0) => {
                Err(self.error(expr.span, "a dimension must be at least 1, found 0"))
            }
            ExprKind::Int(n) => Ok(Some(Dim::fixed(*n))),
            ExprKind::Name(name) => Ok(Some(Dim::sym(name))),
            ExprKind::Neg(one) if infer && one.kind == ExprKind::Int(1) => Ok(None),
            ExprKind::Binary {
                op: BinOp::Mul,
                lhs,
                rhs,
            } => {
                let (Some(a), Some(b)) = (self.dim(lhs, false)?, self.dim(rhs, false)?) else {
                    unreachable!("-1 is rejected inside products")
                };
                if a.coeff()
                    .checked_mul(b.coeff())
                    .is_none_or(|n| n > MAX_ELEMENTS)
                {
                    return Err(
                        self.error(expr.span, "this dimension is too large (more than 2^48)")
                    );
                }
                Ok(Some(a.mul(&b)))
            }
            _ => Err(self.error(
                expr.span,
                format!(
                    "expected a dimension (a positive integer, a symbolic name such as B or a \
                     product such as 2*B{}), found {}",
                    if infer { ", or -1 to infer one" } else { "" },
                    describe(expr)
                ),
            )),
        }
    }

    /// An integer literal, possibly negative (`what` names it in errors).
    pub(super) fn int(&self, expr: &Expr, what: &str) -> Result<i64, Diagnostic> {
        let (negative, digits) = match &expr.kind {
            ExprKind::Neg(inner) => (true, &**inner),
            _ => (false, expr),
        };
        match digits.kind {
            ExprKind::Int(n) => {
                let n = i64::try_from(n)
                    .map_err(|_| self.error(expr.span, format!("{what} {n} is too large")))?;
                Ok(if negative { -n } else { n })
            }
            _ => Err(self.error(
                expr.span,
                format!("expected {what} (an integer), found {}", describe(expr)),
            )),
        }
    }

    /// Axis `value` of `shape`, negative counting from the end.
    pub(super) fn normalize_axis(
        &self,
        value: i64,
        span: Span,
        shape: &Shape,
    ) -> Result<usize, Diagnostic> {
        let rank = shape.rank() as i64;
        if rank == 0 {
            return Err(self.error(
                span,
                format!("axis {value} is out of range for a scalar (it has no axes)"),
            ));
        }
        if !(-rank..rank).contains(&value) {
            return Err(self.error(
                span,
                format!(
                    "axis {value} is out of range for shape {shape}; expected an axis from {} to {}",
                    -rank,
                    rank - 1
                ),
            ));
        }
        Ok(value.rem_euclid(rank) as usize)
    }

    /// One axis.
    pub(super) fn axis(&self, expr: &Expr, shape: &Shape) -> Result<usize, Diagnostic> {
        let value = self.int(expr, "an axis")?;
        self.normalize_axis(value, expr.span, shape)
    }

    /// `axis=`: one axis or a list, distinct, sorted; all axes when absent.
    pub(super) fn axes(
        &self,
        expr: Option<&Expr>,
        shape: &Shape,
    ) -> Result<Vec<usize>, Diagnostic> {
        let Some(expr) = expr else {
            return Ok((0..shape.rank()).collect());
        };
        let items = match &expr.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![expr],
        };
        let mut axes: Vec<usize> = Vec::with_capacity(items.len());
        for item in items {
            let axis = self.axis(item, shape)?;
            if axes.contains(&axis) {
                return Err(self.error(item.span, format!("axis {axis} is listed twice")));
            }
            axes.push(axis);
        }
        axes.sort_unstable();
        Ok(axes)
    }

    /// A `true`/`false` argument; false when absent.
    pub(super) fn flag(&self, expr: Option<&Expr>, name: &str) -> Result<bool, Diagnostic> {
        match expr.map(|e| (&e.kind, e)) {
            None => Ok(false),
            Some((ExprKind::Bool(b), _)) => Ok(*b),
            Some((_, e)) => Err(self.error(
                e.span,
                format!(
                    "expected {name}=true or {name}=false, found {}",
                    describe(e)
                ),
            )),
        }
    }

    pub(super) fn check_size(&self, span: Span, shape: &Shape) -> Result<(), Diagnostic> {
        let elements = shape
            .dims()
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(d.coeff()));
        if elements.is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(self.error(
                span,
                format!("a tensor of shape {shape} is too large (more than 2^48 elements)"),
            ));
        }
        Ok(())
    }
}
