//! The primitive ops of the graph IR, in families.
//!
//! The set is small on purpose: every DSL operation (softmax, losses, `mean`, numpy
//! broadcasting, rank-N matmul, …) lowers to these. Ops come in families, one module each, and a
//! family's module holds everything the compiler knows about its ops, side by side (as JAX
//! registers a primitive's abstract evaluation, JVP and transpose next to its definition):
//!
//! - the spelling (IR text, e-graph patterns, error messages) and the parameters' text form;
//! - the shape rule ([`Family::infer_type`]);
//! - the semantics: one kernel, generic over f32/f64, that the interpreter runs and constant
//!   folding evaluates ([`Family::eval`], [`Family::fold`]);
//! - the JVP rule and, for the linear ops, the transpose rule ([`Family::jvp`],
//!   [`Family::transpose`]);
//! - the cost model's FLOPs and bytes ([`Family::work`]) and the sign facts rewriting relies on
//!   ([`Family::is_positive`]).
//!
//! The passes (interpreter, differentiation, rewriting, text) dispatch to the family with one
//! `match` over [`Op`] each ([`Op`]'s methods); the JIT's lowering lives in `codegen`, behind one
//! dispatch per family. Every `match` over a family's ops is exhaustive, so adding an op makes
//! the compiler list each rule it needs, all in its family's file; adding a family lists the
//! dispatch sites. docs/ADDING_AN_OP.md walks through both.
//!
//! Broadcasting is explicit ([`Layout::Broadcast`]): elementwise binary ops take operands of one
//! shape, so that the transpose of a broadcast is plainly a sum.

mod conv;
mod elementwise;
mod layout;
mod leaf;
mod matmul;
mod reduce;

pub use conv::{Conv, Extent, ImageKernel, Window};
pub use elementwise::{BinaryOp, Elementwise, UnaryOp};
pub use layout::Layout;
pub use leaf::Leaf;
pub use matmul::MatMul;
pub use reduce::{Reduce, ReduceKind};

use super::graph::{Graph, NodeId};
use super::shape::{Bindings, Dim, DimError, Shape, TensorType};
use super::tensor::Element;
use crate::ir::error::Result;
use ndarray::ArrayD;
use serde::Serialize;
use std::fmt;

/// A float constant hashed and compared by its bits, so that ops holding one can be hash-consed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct F64Bits(u64);

impl F64Bits {
    pub fn new(x: f64) -> F64Bits {
        // One zero: -0.0 and 0.0 behave alike everywhere the IR uses constants.
        F64Bits(if x == 0.0 { 0 } else { x.to_bits() })
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// A primitive operation, by family. Operands are the node's inputs, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Arguments, constants and dimension sizes: no operands, typed by the graph.
    Leaf(Leaf),
    /// One output element per input element: unary and binary functions, `pow`,
    /// `stop_gradient`.
    Elementwise(Elementwise),
    /// Rank-2 matrix products.
    MatMul(MatMul),
    /// Sums and maxima over axes.
    Reduce(Reduce),
    /// Data movement without arithmetic: broadcast, reshape, transpose, concat, slice.
    Layout(Layout),
    /// Convolution and pooling over NCHW images.
    Conv(Conv),
}

/// `$body` with `$family` bound to the family value inside `$op`: the one dispatch every pass
/// goes through. A new family is one more line here.
macro_rules! dispatch {
    ($op:expr, $family:ident => $body:expr) => {
        match $op {
            Op::Leaf($family) => $body,
            Op::Elementwise($family) => $body,
            Op::MatMul($family) => $body,
            Op::Reduce($family) => $body,
            Op::Layout($family) => $body,
            Op::Conv($family) => $body,
        }
    };
}

/// Why an op cannot be applied to operands of these types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// `Err(ShapeError(msg))`.
pub(crate) fn shape_err<T>(msg: impl Into<String>) -> Result<T, ShapeError> {
    Err(ShapeError(msg.into()))
}

/// A derivative rule's result: the new node, `None` for a symbolic zero.
pub type Built = Result<Option<NodeId>, ShapeError>;

/// What rewriting knows about a tensor value: its type, whether every element is one constant,
/// whether every element is positive.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub ty: TensorType,
    /// Every element equals this value.
    pub constant: Option<F64Bits>,
    /// Every element is > 0 (in exact arithmetic): the condition of rules such as
    /// `log(a / b) = log a − log b`.
    pub positive: bool,
}

/// The work of one op or of a whole graph, with symbolic dimensions bound to a batch size:
/// FLOPs (a matmul `[M, K] @ [K, N]` is `2·M·K·N`; an elementwise op or a reduction one per
/// element it reads) and bytes moved (operands read plus the result written; views move none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Work {
    pub matmul_flops: u64,
    pub elementwise_flops: u64,
    pub bytes: u64,
}

impl Work {
    /// FLOPs plus bytes: the extraction cost of this work.
    pub fn total(&self) -> f64 {
        self.matmul_flops as f64 + self.elementwise_flops as f64 + self.bytes as f64
    }

    /// The sum of two works (saturating: costs of absurd sizes stay comparable).
    pub fn add(&mut self, other: Work) {
        self.matmul_flops = self.matmul_flops.saturating_add(other.matmul_flops);
        self.elementwise_flops = self
            .elementwise_flops
            .saturating_add(other.elementwise_flops);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    /// Bytes of the operands `inputs` and the result `output`: what an op that streams them
    /// once moves.
    pub fn streamed(inputs: &[&TensorType], output: &TensorType, batch: u64) -> u64 {
        inputs.iter().fold(bytes(output, batch), |n, t| {
            n.saturating_add(bytes(t, batch))
        })
    }
}

/// A dimension's size with every symbol bound to `batch`.
pub fn dim_size(dim: &Dim, batch: u64) -> u64 {
    dim.symbols()
        .iter()
        .fold(dim.coeff(), |n, _| n.saturating_mul(batch))
}

/// A shape's element count with every symbol bound to `batch`.
pub fn numel(shape: &Shape, batch: u64) -> u64 {
    shape
        .dims()
        .iter()
        .fold(1u64, |n, d| n.saturating_mul(dim_size(d, batch)))
}

fn bytes(t: &TensorType, batch: u64) -> u64 {
    numel(&t.shape, batch).saturating_mul(t.dtype.size_bytes() as u64)
}

/// The IR text reader as an op family sees it: the pieces an op's parameters are made of
/// (`pow[2.0]`, `sum[0, 2]`, `slice[1, 0..2*B]`, `matmul[ta]`). Errors point at the text.
pub trait ParamReader {
    /// Consumes `punct`, or fails saying what it was expected `context` (`"before the axes"`).
    fn expect(&mut self, punct: char, context: &str) -> Result<()>;
    /// Consumes the `..` of a range.
    fn expect_range(&mut self, context: &str) -> Result<()>;
    /// A non-negative integer; `what` names it in errors (`"an axis"`).
    fn integer(&mut self, what: &str) -> Result<usize>;
    /// `[i, j, …]`, possibly empty.
    fn integers(&mut self, what: &str) -> Result<Vec<usize>>;
    /// A float (`0.5`, `-inf`, `NaN(0x…)`).
    fn float(&mut self) -> Result<f64>;
    /// A dimension (`784`, `2*B`).
    fn dim(&mut self) -> Result<Dim>;
    /// `[d, …]`.
    fn shape(&mut self) -> Result<Shape>;
    /// `[w, …]` of flags of op `op` from `allowed`, each at most once, if a `[` comes next;
    /// else none.
    fn flags(&mut self, op: &str, allowed: &[&'static str]) -> Result<Vec<&'static str>>;
    /// The name of a declared argument not yet read by a node; its index.
    fn arg(&mut self) -> Result<usize>;
}

/// A [`ParamReader`] with nothing to read: an op that reads through it takes no parameters.
struct NoParams;

impl ParamReader for NoParams {
    fn expect(&mut self, punct: char, _: &str) -> Result<()> {
        Err(no_params(&punct.to_string()))
    }
    fn expect_range(&mut self, _: &str) -> Result<()> {
        Err(no_params(".."))
    }
    fn integer(&mut self, what: &str) -> Result<usize> {
        Err(no_params(what))
    }
    fn integers(&mut self, what: &str) -> Result<Vec<usize>> {
        Err(no_params(what))
    }
    fn float(&mut self) -> Result<f64> {
        Err(no_params("a float"))
    }
    fn dim(&mut self) -> Result<Dim> {
        Err(no_params("a dimension"))
    }
    fn shape(&mut self) -> Result<Shape> {
        Err(no_params("a shape"))
    }
    fn flags(&mut self, what: &str, _: &[&'static str]) -> Result<Vec<&'static str>> {
        Err(no_params(what))
    }
    fn arg(&mut self) -> Result<usize> {
        Err(no_params("an argument"))
    }
}

fn no_params(what: &str) -> crate::ir::Error {
    crate::ir::Error::Eval(format!("{what}: the op has no parameters here"))
}

/// The rules every op family defines for its ops. [`Op`] dispatches each pass to them.
pub trait Family: Sized {
    /// The spelling in the IR text, in e-graph patterns and in errors (`exp`, `matmul`, `sum`).
    fn name(&self) -> &'static str;

    /// Every spelling the family reads (for "unknown op" errors and pattern parsing).
    fn names() -> Vec<&'static str>;

    /// The op spelled `name`, its parameters read from `params` (after the name, before the
    /// operands); `None` if no op of the family is spelled so.
    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Self>>;

    /// Writes the parameters as [`Family::parse`] reads them (nothing for an op without).
    /// `arg_name` names graph argument `i` (for [`Leaf::Arg`]).
    fn write_params(
        &self,
        f: &mut dyn fmt::Write,
        arg_name: &dyn Fn(usize) -> String,
    ) -> fmt::Result;

    /// True if the op has parameters beyond its name (the e-graph keeps them in a leaf child).
    fn has_params(&self) -> bool;

    /// The type of the result for operands of types `inputs`.
    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError>;

    /// The result on operands `xs` (in element type `T`), with symbolic sizes from `bindings`.
    /// Errors say what does not fit (the interpreter adds the node).
    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], bindings: &Bindings)
    -> Result<ArrayD<T>, String>;

    /// The tangent of node `y = op(xs)` given the operands' tangents `ts`, at least one present
    /// (`None` is a symbolic zero). New nodes go into `g`, next to the primal ones they read.
    fn jvp(&self, g: &mut Graph, y: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built;

    /// `Err(reason)` unless the op is a linear map of the operands marked in `linear` (the
    /// others held fixed): only then does it have a transpose rule.
    fn check_linear(&self, linear: &[bool]) -> Result<(), &'static str>;

    /// The cotangent contributions of `y = op(xs)` to its linear operands, given `ct` = ∂/∂y;
    /// called only where [`Family::check_linear`] admits the op.
    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError>;

    /// FLOPs and bytes of the op on operands `inputs` giving `output`, symbols bound to `batch`.
    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work;

    /// The constant value of the result when the operands' facts make it one.
    fn fold(&self, inputs: &[&Facts], output: &TensorType) -> Option<f64>;

    /// True when the result is positive everywhere, given the operands' facts.
    fn is_positive(&self, inputs: &[&Facts]) -> bool;
}

impl Op {
    /// The op's spelling (see [`Family::name`]).
    pub fn name(&self) -> &'static str {
        dispatch!(self, f => f.name())
    }

    /// Every op spelling.
    pub fn names() -> Vec<&'static str> {
        [
            Leaf::names(),
            Elementwise::names(),
            MatMul::names(),
            Reduce::names(),
            Layout::names(),
            Conv::names(),
        ]
        .concat()
    }

    /// The op spelled `name`, with its parameters read from `params`; `None` for an unknown
    /// name.
    pub fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Op>> {
        fn wrap<F>(parsed: Option<Result<F>>, family: fn(F) -> Op) -> Option<Result<Op>> {
            parsed.map(|r| r.map(family))
        }
        wrap(Leaf::parse(name, params), Op::Leaf)
            .or_else(|| wrap(Elementwise::parse(name, params), Op::Elementwise))
            .or_else(|| wrap(MatMul::parse(name, params), Op::MatMul))
            .or_else(|| wrap(Reduce::parse(name, params), Op::Reduce))
            .or_else(|| wrap(Layout::parse(name, params), Op::Layout))
            .or_else(|| wrap(Conv::parse(name, params), Op::Conv))
    }

    /// The op spelled `name` if it takes no parameters.
    pub fn without_params(name: &str) -> Option<Op> {
        Op::parse(name, &mut NoParams)?.ok()
    }

    /// Writes the op's parameters as the IR text does.
    pub fn write_params(
        &self,
        f: &mut dyn fmt::Write,
        arg_name: &dyn Fn(usize) -> String,
    ) -> fmt::Result {
        dispatch!(self, op => op.write_params(f, arg_name))
    }

    /// True if the op has parameters beyond its name.
    pub fn has_params(&self) -> bool {
        dispatch!(self, f => f.has_params())
    }

    /// The shape rule: the type of the result for operands of types `inputs`.
    ///
    /// Leaves take their type from the graph, not from operands, so they are rejected here; the
    /// graph builder types them.
    pub fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        dispatch!(self, f => f.infer_type(inputs))
    }

    /// The result on operands `xs` (see [`Family::eval`]).
    pub fn eval<T: Element>(
        &self,
        xs: &[&ArrayD<T>],
        bindings: &Bindings,
    ) -> Result<ArrayD<T>, String> {
        dispatch!(self, f => f.eval(xs, bindings))
    }

    /// The tangent rule (see [`Family::jvp`]).
    pub fn jvp(&self, g: &mut Graph, y: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        dispatch!(self, f => f.jvp(g, y, xs, ts))
    }

    /// Whether the op is linear in the operands marked `linear` (see [`Family::check_linear`]).
    pub fn check_linear(&self, linear: &[bool]) -> Result<(), &'static str> {
        dispatch!(self, f => f.check_linear(linear))
    }

    /// The transpose rule (see [`Family::transpose`]).
    pub fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        dispatch!(self, f => f.transpose(g, xs, linear, ct))
    }

    /// The cost model (see [`Family::work`]).
    pub fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        dispatch!(self, f => f.work(inputs, output, batch))
    }

    /// Constant folding (see [`Family::fold`]).
    pub fn fold(&self, inputs: &[&Facts], output: &TensorType) -> Option<f64> {
        dispatch!(self, f => f.fold(inputs, output))
    }

    /// The sign fact (see [`Family::is_positive`]).
    pub fn is_positive(&self, inputs: &[&Facts]) -> bool {
        dispatch!(self, f => f.is_positive(inputs))
    }

    /// True for ops that are linear in all their operands jointly: the structural ops and
    /// add/sub/neg. (Scaling by a constant factor is linear in one operand only.)
    pub fn is_structurally_linear(&self, arity: usize) -> bool {
        self.check_linear(&vec![true; arity]).is_ok()
    }

    /// An argument of the graph.
    pub fn arg(index: usize) -> Op {
        Op::Leaf(Leaf::Arg(index))
    }

    /// A scalar constant.
    pub fn constant(value: f64) -> Op {
        Op::Leaf(Leaf::Const(F64Bits::new(value)))
    }

    /// The runtime size of a dimension.
    pub fn dim_size(dim: Dim) -> Op {
        Op::Leaf(Leaf::DimSize(dim))
    }

    pub fn unary(op: UnaryOp) -> Op {
        Op::Elementwise(Elementwise::Unary(op))
    }

    pub fn binary(op: BinaryOp) -> Op {
        Op::Elementwise(Elementwise::Binary(op))
    }

    /// `x ^ exponent`.
    pub fn pow(exponent: f64) -> Op {
        Op::Elementwise(Elementwise::Pow(F64Bits::new(exponent)))
    }

    /// The identity whose derivative is zero.
    pub fn stop_gradient() -> Op {
        Op::Elementwise(Elementwise::StopGradient)
    }

    /// `op(a) @ op(b)`, each operand transposed if its flag is set.
    pub fn matmul(transpose_a: bool, transpose_b: bool) -> Op {
        Op::MatMul(MatMul {
            transpose_a,
            transpose_b,
        })
    }

    /// Sum over `axes` (sorted, distinct).
    pub fn sum(axes: Vec<usize>) -> Op {
        Op::Reduce(Reduce {
            kind: ReduceKind::Sum,
            axes,
        })
    }

    /// Maximum over `axes` (sorted, distinct).
    pub fn reduce_max(axes: Vec<usize>) -> Op {
        Op::Reduce(Reduce {
            kind: ReduceKind::Max,
            axes,
        })
    }

    pub fn broadcast(shape: Shape) -> Op {
        Op::Layout(Layout::Broadcast { shape })
    }

    pub fn reshape(shape: Shape) -> Op {
        Op::Layout(Layout::Reshape { shape })
    }

    pub fn transpose_axes(perm: Vec<usize>) -> Op {
        Op::Layout(Layout::Transpose { perm })
    }

    pub fn concat(axis: usize) -> Op {
        Op::Layout(Layout::Concat { axis })
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(axis: usize, start: Dim, end: Dim) -> Op {
        Op::Layout(Layout::Slice { axis, start, end })
    }
}

impl fmt::Display for Op {
    /// The op as the IR text writes it, parameters included (arguments by index).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        self.write_params(f, &|i| format!("#{i}"))
    }
}

/// Checks that an op spelled `name` got `count` operands where it takes `expected`.
pub(crate) fn check_arity(name: &str, count: usize, expected: usize) -> Result<(), ShapeError> {
    if count == expected {
        Ok(())
    } else {
        shape_err(format!("{name} cannot take {count} operand(s)"))
    }
}

/// The common element type of `inputs` (there is at least one), or an error naming both.
pub(crate) fn common_dtype(
    name: &str,
    inputs: &[&TensorType],
) -> Result<super::shape::DType, ShapeError> {
    let dtype = inputs[0].dtype;
    match inputs.iter().find(|t| t.dtype != dtype) {
        Some(other) => shape_err(format!(
            "{name} mixes element types {dtype} and {}",
            other.dtype
        )),
        None => Ok(dtype),
    }
}

/// The operands as an array of the arity the op takes.
pub(crate) fn operands<'a, T, const N: usize>(xs: &[&'a T]) -> Result<[&'a T; N], String> {
    xs.try_into()
        .map_err(|_| format!("expects {N} operand(s) but has {}", xs.len()))
}

/// The size of a dimension under `bindings`, or an error naming the unbound symbol.
pub(crate) fn eval_dim(dim: &Dim, bindings: &Bindings) -> Result<usize, String> {
    dim.eval(bindings).map_err(|e| match e {
        DimError::Unbound(symbol) => format!(
            "symbol {symbol} in {dim} is not bound (no argument has an axis declared {symbol})"
        ),
        DimError::Overflow => format!("{dim} does not fit in 64 bits"),
    })
}

/// A shape's sizes under `bindings`.
pub(crate) fn eval_shape(shape: &Shape, bindings: &Bindings) -> Result<Vec<usize>, String> {
    shape.dims().iter().map(|d| eval_dim(d, bindings)).collect()
}

/// The length of `axis` of `x`, or an error when `x` has no such axis.
pub(crate) fn check_axis<T>(x: &ArrayD<T>, axis: usize) -> Result<usize, String> {
    if axis < x.ndim() {
        Ok(x.len_of(ndarray::Axis(axis)))
    } else {
        Err(format!(
            "axis {axis} is out of range for shape {:?}",
            x.shape()
        ))
    }
}

/// Sum of two dimensions when it is again a monomial (fixed sizes, or like terms).
pub fn add_dims(a: &Dim, b: &Dim) -> Option<Dim> {
    if a.coeff() == 0 {
        return Some(b.clone());
    }
    if b.coeff() == 0 {
        return Some(a.clone());
    }
    if a.symbols() != b.symbols() {
        return None;
    }
    let unit = a.div_exact(&Dim::fixed(a.coeff()))?;
    Some(unit.mul(&Dim::fixed(a.coeff() + b.coeff())))
}

/// `a − b` when both are like terms (or `b` is 0) and the result is non-negative.
pub fn sub_dims(a: &Dim, b: &Dim) -> Option<Dim> {
    if b.coeff() == 0 {
        return Some(a.clone());
    }
    if a.symbols() != b.symbols() || a.coeff() < b.coeff() {
        return None;
    }
    if a.coeff() == b.coeff() {
        return Some(Dim::fixed(0));
    }
    let unit = a.div_exact(&Dim::fixed(a.coeff()))?;
    Some(unit.mul(&Dim::fixed(a.coeff() - b.coeff())))
}

/// `a + b` where either may be a symbolic zero.
pub(crate) fn add_optional(g: &mut Graph, a: Option<NodeId>, b: Option<NodeId>) -> Built {
    match (a, b) {
        (Some(a), Some(b)) => g.binary(BinaryOp::Add, a, b).map(Some),
        (a, b) => Ok(a.or(b)),
    }
}
