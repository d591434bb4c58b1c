//! The builtin operations: their table ([`OPS`]: name, signature, lowering) and the dispatch
//! from a call to its lowering.
//!
//! Adding a builtin is one entry in [`OPS`], plus its lowering function (a [`Composite`]) when
//! it is not a single elementwise primitive or a reduction.

use super::composites::{self, Reduction};
use super::conv;
use super::{Lowerer, Scope, Value, describe, expr, layout};
use crate::dsl::parser::{Expr, ExprKind};
use crate::ir::Diagnostic;
use crate::ir::graph::{NodeId, Span};
use crate::ir::op::{BinaryOp, UnaryOp};

/// A builtin's name, signature and lowering.
pub(super) struct OpSpec {
    pub(super) name: &'static str,
    pub(super) signature: Signature,
    pub(super) kind: OpKind,
}

/// A builtin's parameter names (keyword names too), how many are required, and which of the
/// arguments are operands.
#[derive(Clone, Copy)]
pub(super) struct Signature {
    pub(super) params: &'static [&'static str],
    pub(super) required: usize,
    pub(super) operands: Operands,
}

/// The arguments that are operands: values lowered before the builtin applies. The other
/// arguments (axes, shapes, flags) are read from the syntax by the lowering.
#[derive(Clone, Copy)]
pub(super) enum Operands {
    /// The first n arguments.
    Leading(usize),
    /// The items of the list given as the first argument.
    List,
}

/// How a builtin becomes primitives.
#[derive(Clone, Copy)]
pub(super) enum OpKind {
    /// One elementwise primitive; a number operand folds.
    Unary(UnaryOp),
    /// One elementwise primitive on two operands, broadcast as `+` is.
    Binary(BinaryOp),
    /// A reduction over `axis` (all axes when absent), with `keepdims`.
    Reduce(Reduction),
    /// Any other lowering.
    Composite(Composite),
}

/// Lowers a call to a builtin once its operands are lowered.
pub(super) type Composite = fn(&mut Lowerer<'_>, &Call<'_>) -> Result<Value, Diagnostic>;

/// A call to a builtin, its arguments bound to the signature and its operands lowered.
pub(super) struct Call<'c> {
    pub(super) name: &'static str,
    /// Where the builtin is named: errors about the call as a whole point here.
    pub(super) span: Span,
    /// Each parameter's argument, in the signature's order (`None` when not given).
    pub(super) args: &'c [Option<&'c Expr>],
    /// The operands as written and their values.
    pub(super) operands: Vec<&'c Expr>,
    pub(super) values: Vec<Value>,
}

const fn op(name: &'static str, signature: Signature, kind: OpKind) -> OpSpec {
    OpSpec {
        name,
        signature,
        kind,
    }
}

const fn signature(
    params: &'static [&'static str],
    required: usize,
    operands: Operands,
) -> Signature {
    Signature {
        params,
        required,
        operands,
    }
}

const X: Signature = signature(&["x"], 1, Operands::Leading(1));
const XY: Signature = signature(&["x", "y"], 2, Operands::Leading(2));
const REDUCE: Signature = signature(&["x", "axis", "keepdims"], 1, Operands::Leading(1));
const ALONG_AXIS: Signature = signature(&["x", "axis"], 1, Operands::Leading(1));
const LOSS: Signature = signature(&["z", "y"], 2, Operands::Leading(2));

/// Every builtin. A name here cannot be the name of a `fn`.
pub(super) const OPS: [OpSpec; 32] = [
    op("neg", X, OpKind::Unary(UnaryOp::Neg)),
    op("exp", X, OpKind::Unary(UnaryOp::Exp)),
    op("log", X, OpKind::Unary(UnaryOp::Log)),
    op("tanh", X, OpKind::Unary(UnaryOp::Tanh)),
    op("sigmoid", X, OpKind::Unary(UnaryOp::Sigmoid)),
    op("relu", X, OpKind::Unary(UnaryOp::Relu)),
    op("softplus", X, OpKind::Unary(UnaryOp::Softplus)),
    op("sqrt", X, OpKind::Unary(UnaryOp::Sqrt)),
    op("abs", X, OpKind::Unary(UnaryOp::Abs)),
    op("erf", X, OpKind::Unary(UnaryOp::Erf)),
    op("gelu", X, OpKind::Composite(composites::gelu)),
    op("silu", X, OpKind::Composite(composites::silu)),
    op("square", X, OpKind::Composite(expr::square)),
    op(
        "pow",
        signature(&["x", "c"], 2, Operands::Leading(2)),
        OpKind::Composite(expr::pow),
    ),
    op("maximum", XY, OpKind::Binary(BinaryOp::Max)),
    op("minimum", XY, OpKind::Binary(BinaryOp::Min)),
    op("sum", REDUCE, OpKind::Reduce(Reduction::Sum)),
    op("mean", REDUCE, OpKind::Reduce(Reduction::Mean)),
    op("max", REDUCE, OpKind::Reduce(Reduction::Max)),
    op(
        "reshape",
        signature(&["x", "shape"], 2, Operands::Leading(1)),
        OpKind::Composite(layout::reshape),
    ),
    op(
        "transpose",
        signature(&["x", "perm"], 1, Operands::Leading(1)),
        OpKind::Composite(layout::transpose),
    ),
    op(
        "concat",
        signature(&["xs", "axis"], 1, Operands::List),
        OpKind::Composite(layout::concat),
    ),
    op(
        "softmax",
        ALONG_AXIS,
        OpKind::Composite(composites::softmax),
    ),
    op(
        "log_softmax",
        ALONG_AXIS,
        OpKind::Composite(composites::log_softmax),
    ),
    op(
        "logsumexp",
        REDUCE,
        OpKind::Composite(composites::logsumexp),
    ),
    op(
        "softmax_cross_entropy",
        LOSS,
        OpKind::Composite(composites::softmax_cross_entropy),
    ),
    op("mse", LOSS, OpKind::Composite(composites::mse)),
    op(
        "conv2d",
        signature(
            &["x", "w", "stride", "padding", "dilation", "groups"],
            2,
            Operands::Leading(2),
        ),
        OpKind::Composite(conv::conv2d),
    ),
    op(
        "max_pool2d",
        signature(
            &["x", "kernel", "stride", "padding", "dilation"],
            2,
            Operands::Leading(1),
        ),
        OpKind::Composite(conv::max_pool2d),
    ),
    op(
        "avg_pool2d",
        signature(
            &["x", "kernel", "stride", "padding"],
            2,
            Operands::Leading(1),
        ),
        OpKind::Composite(conv::avg_pool2d),
    ),
    op("flatten", X, OpKind::Composite(conv::flatten)),
    op(
        "sigmoid_cross_entropy",
        LOSS,
        OpKind::Composite(composites::sigmoid_cross_entropy),
    ),
];

pub(super) fn find_op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|op| op.name == name)
}

impl<'p> Lowerer<'p> {
    /// A call to a builtin, its arguments bound to the signature (`args`): the operands are
    /// lowered here, the rest (axes, shapes, flags) are read from the syntax by the lowering.
    pub(super) fn builtin(
        &mut self,
        spec: &OpSpec,
        span: Span,
        args: &[Option<&Expr>],
        scope: &Scope,
    ) -> Result<Value, Diagnostic> {
        let first = args[0].expect("the first argument of every op is required");
        let operands: Vec<&Expr> = match (spec.signature.operands, &first.kind) {
            (Operands::List, ExprKind::List(items)) => items.iter().collect(),
            (Operands::List, _) => return Err(self.needs_list(spec.name, first)),
            (Operands::Leading(n), _) => args[..n]
                .iter()
                .map(|a| a.expect("operands are required arguments"))
                .collect(),
        };
        let mut values = Vec::with_capacity(operands.len());
        for operand in &operands {
            values.push(self.expr(operand, scope)?);
        }
        let call = Call {
            name: spec.name,
            span,
            args,
            operands,
            values,
        };
        match spec.kind {
            OpKind::Unary(op) => self.unary(op, call.values[0], span),
            OpKind::Binary(op) => {
                let symbol = format!("'{}'", spec.name);
                self.elementwise(op, &symbol, call.values[0], call.values[1], span)
            }
            OpKind::Reduce(reduction) => {
                self.reduce(reduction, call.values[0], args[1], args[2], span)
            }
            OpKind::Composite(lower) => lower(self, &call),
        }
    }

    /// Operand `index` of `call` as a tensor; a number is an error (`what` names the operand).
    pub(super) fn tensor_operand(
        &self,
        call: &Call,
        index: usize,
        what: &str,
    ) -> Result<NodeId, Diagnostic> {
        match call.values[index] {
            Value::Tensor(node) => Ok(node),
            Value::Number(x) => Err(self.error(
                call.operands[index].span,
                format!("{what} must be a tensor, found the number {x}"),
            )),
        }
    }

    /// The only operand of `call` as a tensor.
    pub(super) fn the_operand(&self, call: &Call) -> Result<NodeId, Diagnostic> {
        self.tensor_operand(call, 0, &format!("the operand of {}", call.name))
    }

    /// The error for a builtin that takes a list of operands (`concat`) given something else.
    fn needs_list(&self, name: &str, found: &Expr) -> Diagnostic {
        self.error(
            found.span,
            format!(
                "{name} takes a list of tensors, as in {name}([a, b], axis=1), found {}",
                describe(found)
            ),
        )
    }
}
