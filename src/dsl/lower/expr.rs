//! Expressions: names, numbers (folded while they meet no tensor), elementwise arithmetic with
//! numpy broadcasting made explicit, and `@`; the builtins `square` and `pow`.

use super::builtins::Call;
use super::{Lowerer, Scope, Value};
use crate::dsl::parser::{BinOp, Expr, ExprKind, MAX_DEPTH};
use crate::ir::Diagnostic;
use crate::ir::graph::{NodeId, Span};
use crate::ir::op::{BinaryOp, Op, UnaryOp};
use crate::ir::shape::{DType, Shape, TensorType};

impl<'p> Lowerer<'p> {
    pub(super) fn expr(&mut self, expr: &Expr, scope: &Scope) -> Result<Value, Diagnostic> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(self.too_deep(expr))
        } else {
            self.expr_inner(expr, scope)
        };
        self.depth -= 1;
        result
    }

    fn too_deep(&self, expr: &Expr) -> Diagnostic {
        self.error(
            expr.span,
            format!(
                "expression nested too deeply once fns are inlined (more than {MAX_DEPTH} levels); \
                 split it into named steps"
            ),
        )
    }

    fn expr_inner(&mut self, expr: &Expr, scope: &Scope) -> Result<Value, Diagnostic> {
        match &expr.kind {
            ExprKind::Int(n) => Ok(Value::Number(*n as f64)),
            ExprKind::Float(x) => Ok(Value::Number(*x)),
            ExprKind::Name(name) => self.lookup(name, expr.span, scope),
            ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::List(_) => Err(self.misplaced(expr)),
            ExprKind::Neg(x) => {
                let x = self.expr(x, scope)?;
                self.unary(UnaryOp::Neg, x, expr.span)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.expr(lhs, scope)?;
                let b = self.expr(rhs, scope)?;
                match op {
                    BinOp::Add => self.elementwise(BinaryOp::Add, "'+'", a, b, expr.span),
                    BinOp::Sub => self.elementwise(BinaryOp::Sub, "'-'", a, b, expr.span),
                    BinOp::Mul => self.elementwise(BinaryOp::Mul, "'*'", a, b, expr.span),
                    BinOp::Div => self.elementwise(BinaryOp::Div, "'/'", a, b, expr.span),
                    BinOp::MatMul => self.matmul(a, b, expr.span),
                }
            }
            ExprKind::Call {
                callee,
                args,
                kwargs,
            } => self.call(callee, args, kwargs, scope),
        }
    }

    /// The error for a bool or list where a value is expected.
    fn misplaced(&self, expr: &Expr) -> Diagnostic {
        let message = match &expr.kind {
            ExprKind::Bool(b) => format!("'{b}' is a bool; bools are allowed only as keepdims=true/false"),
            ExprKind::Str(text) => format!("{text:?} is a string; strings are allowed only as padding=\"same\" or \"valid\""),
            _ => "a list is allowed only as an axis, a shape, a permutation or the operands of concat".to_string(),
        };
        self.error(expr.span, message)
    }

    /// A folded constant, which must be finite.
    pub(super) fn folded(&self, span: Span, value: f64) -> Result<Value, Diagnostic> {
        self.finite(span, value).map(Value::Number)
    }

    pub(super) fn finite(&self, span: Span, value: f64) -> Result<f64, Diagnostic> {
        if !value.is_finite() {
            return Err(self.error(
                span,
                format!("this constant evaluates to {value}, not a finite number"),
            ));
        }
        Ok(value)
    }

    /// `x`, if `dtype` holds it: in f32, a number past f32's range would be an infinity in every
    /// result it reaches. `what` (an expression, a param) is what has that element type.
    pub(super) fn within(
        &self,
        span: Span,
        x: f64,
        dtype: DType,
        what: &str,
    ) -> Result<f64, Diagnostic> {
        if dtype == DType::F32 && !(x as f32).is_finite() {
            return Err(self.error(
                span,
                format!(
                    "the constant {x:e} is outside f32's range (at most {:e} in magnitude), and \
                     this {what} is f32",
                    f32::MAX
                ),
            ));
        }
        Ok(x)
    }

    /// The number `x` as a constant of `like`'s element type, which must hold it.
    fn constant_like(&mut self, x: f64, like: NodeId, span: Span) -> Result<NodeId, Diagnostic> {
        let dtype = self.ty(like).dtype;
        let x = self.within(span, x, dtype, "expression")?;
        self.build(span, |g| Ok(g.constant(x, dtype)))
    }

    pub(super) fn unary(&mut self, op: UnaryOp, x: Value, span: Span) -> Result<Value, Diagnostic> {
        match x {
            Value::Number(x) => self.folded(span, UnaryOp::eval(op, x)),
            Value::Tensor(x) => Ok(Value::Tensor(self.build(span, |g| g.unary(op, x))?)),
        }
    }

    /// `a op b` with numpy broadcasting made explicit; a number becomes a constant of the
    /// other operand's element type. `symbol` names the operator in errors.
    pub(super) fn elementwise(
        &mut self,
        op: BinaryOp,
        symbol: &str,
        a: Value,
        b: Value,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let (a, b) = match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                return self.folded(span, BinaryOp::eval(op, x, y));
            }
            (Value::Number(x), Value::Tensor(b)) => (self.constant_like(x, b, span)?, b),
            (Value::Tensor(a), Value::Number(y)) => (a, self.constant_like(y, a, span)?),
            (Value::Tensor(a), Value::Tensor(b)) => (a, b),
        };
        let (ta, tb) = (self.ty(a), self.ty(b));
        self.same_dtype(symbol, &ta, &tb, span)?;
        let Some(shape) = ta.shape.broadcast(&tb.shape) else {
            return Err(self.error(
                span,
                format!(
                    "{symbol} cannot broadcast shapes {} and {} (numpy rules: aligned from the last \
                     axis, sizes must be equal or 1)",
                    ta.shape, tb.shape
                ),
            ));
        };
        self.check_size(span, &shape)?;
        let a = self.build(span, |g| g.broadcast(a, &shape))?;
        let b = self.build(span, |g| g.broadcast(b, &shape))?;
        Ok(Value::Tensor(self.build(span, |g| g.binary(op, a, b))?))
    }

    /// Operands of one element type (there is no implicit conversion); `symbol` names the op.
    fn same_dtype(
        &self,
        symbol: &str,
        a: &TensorType,
        b: &TensorType,
        span: Span,
    ) -> Result<(), Diagnostic> {
        if a.dtype == b.dtype {
            return Ok(());
        }
        Err(self.error(
            span,
            format!(
                "{symbol} mixes element types {} and {} ({a} and {b}); both operands must have one type",
                a.dtype, b.dtype
            ),
        ))
    }

    /// Elementwise on two tensors of one type and shape (no broadcasting).
    pub(super) fn binary(
        &mut self,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        self.build(span, |g| g.binary(op, a, b))
    }

    /// `x @ w`: rank-2 by rank-2, or rank-N by rank-2 over the last axis of `x`.
    fn matmul(&mut self, a: Value, b: Value, span: Span) -> Result<Value, Diagnostic> {
        let (Value::Tensor(a), Value::Tensor(b)) = (a, b) else {
            return Err(self.error(span, "'@' multiplies tensors, found a number operand"));
        };
        let (ta, tb) = (self.ty(a), self.ty(b));
        self.same_dtype("'@'", &ta, &tb, span)?;
        let (sa, sb) = (ta.shape.dims(), tb.shape.dims());
        if sa.len() < 2 || sb.len() != 2 {
            return Err(self.error(
                span,
                format!(
                    "'@' multiplies a tensor of rank 2 or more by a rank-2 matrix, found {} @ {}",
                    ta.shape, tb.shape
                ),
            ));
        }
        let (lead, k) = sa.split_at(sa.len() - 1);
        if k[0] != sb[0] {
            return Err(self.error(
                span,
                format!(
                    "'@' needs the last axis of the left operand to equal the first axis of the right, \
                     found {} @ {} ({} vs {})",
                    ta.shape, tb.shape, k[0], sb[0]
                ),
            ));
        }
        let mut out_dims = lead.to_vec();
        out_dims.push(sb[1].clone());
        let out_shape = Shape(out_dims);
        self.check_size(span, &out_shape)?;
        if lead.len() == 1 {
            return Ok(Value::Tensor(self.build(span, |g| g.matmul(a, b))?));
        }
        let rows = Shape(lead.to_vec()).numel();
        let flat = self.build(span, |g| g.reshape(a, &Shape(vec![rows, k[0].clone()])))?;
        let product = self.build(span, |g| g.matmul(flat, b))?;
        Ok(Value::Tensor(
            self.build(span, |g| g.reshape(product, &out_shape))?,
        ))
    }
}

/// `square(x)`: `x * x`.
pub(super) fn square(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let span = call.span;
    match call.values[0] {
        Value::Number(x) => lowerer.folded(span, x * x),
        Value::Tensor(x) => Ok(Value::Tensor(
            lowerer.build(span, |g| g.binary(BinaryOp::Mul, x, x))?,
        )),
    }
}

/// `pow(x, c)`: `x` to a constant power.
pub(super) fn pow(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let span = call.span;
    let Value::Number(c) = call.values[1] else {
        return Err(lowerer.error(
            call.operands[1].span,
            "the exponent of pow must be a constant number, found a tensor",
        ));
    };
    match call.values[0] {
        Value::Number(x) => lowerer.folded(span, x.powf(c)),
        Value::Tensor(x) => Ok(Value::Tensor(
            lowerer.build(span, |g| g.apply(Op::pow(c), &[x]))?,
        )),
    }
}
