//! Elementwise ops: one output element per input element, operands of one shape.
//!
//! Each function is defined once, as a scalar kernel generic over f32/f64
//! ([`UnaryOp::kernel`], [`BinaryOp::kernel`]): the interpreter maps it over tensors and
//! constant folding applies it to f64s. Numerical conventions, where numpy leaves a choice:
//! `softplus` and `sigmoid` are evaluated without overflow for any |x|; `step(x)` is 1 for
//! x > 0 and 0 otherwise (including NaN); `sign(±0)` is 0; `sign`, `relu`, `max` and `min`
//! propagate NaN; `erf` is libm's, computed in f64 for f32 too and rounded once.

use super::{
    Built, F64Bits, Facts, Family, ParamReader, ShapeError, Work, add_optional, check_arity,
    common_dtype, numel, operands, shape_err,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, TensorType};
use crate::ir::tensor::Element;
use crate::ir::text::Float;
use ndarray::{ArrayD, Zip};
use std::fmt;

/// Elementwise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Relu,
    /// `log(1 + exp(x))`, evaluated without overflow.
    Softplus,
    Sqrt,
    Abs,
    /// −1, 0 or 1.
    Sign,
    /// Heaviside step: 1 where x > 0, else 0 (relu's derivative).
    Step,
    /// `1 / x`.
    Recip,
    /// The error function `2/√π ∫₀ˣ e^(−t²) dt` (exact GELU is `x·(1 + erf(x/√2))/2`).
    Erf,
}

impl UnaryOp {
    /// Every unary op, for tests and tables.
    pub const ALL: [UnaryOp; 13] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Softplus,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Step,
        UnaryOp::Recip,
        UnaryOp::Erf,
    ];

    /// The IR spelling.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Step => "step",
            UnaryOp::Recip => "recip",
            UnaryOp::Erf => "erf",
        }
    }

    pub fn from_name(name: &str) -> Option<UnaryOp> {
        UnaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The function on one element: chosen once per tensor, applied to every element.
    pub fn kernel<T: Element>(self) -> fn(T) -> T {
        match self {
            UnaryOp::Neg => |v: T| -v,
            UnaryOp::Exp => T::exp,
            UnaryOp::Log => T::ln,
            UnaryOp::Tanh => T::tanh,
            UnaryOp::Sigmoid => |v: T| {
                // exp of a non-positive number never overflows.
                if v >= T::zero() {
                    T::one() / (T::one() + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (T::one() + e)
                }
            },
            UnaryOp::Relu => |v: T| if v < T::zero() { T::zero() } else { v },
            UnaryOp::Softplus => |v: T| {
                let positive_part = if v > T::zero() { v } else { T::zero() };
                positive_part + (-v.abs()).exp().ln_1p()
            },
            UnaryOp::Sqrt => T::sqrt,
            UnaryOp::Abs => T::abs,
            UnaryOp::Sign => |v: T| {
                if v > T::zero() {
                    T::one()
                } else if v < T::zero() {
                    -T::one()
                } else if v == T::zero() {
                    T::zero()
                } else {
                    v
                }
            },
            UnaryOp::Step => |v: T| if v > T::zero() { T::one() } else { T::zero() },
            UnaryOp::Recip => T::recip,
            UnaryOp::Erf => |v: T| {
                let wide = v.to_f64().expect("f32 and f64 widen to f64 exactly");
                T::from_f64(libm::erf(wide))
            },
        }
    }

    /// The op on one value (see [`UnaryOp::kernel`]).
    pub fn eval<T: Element>(self, x: T) -> T {
        self.kernel::<T>()(x)
    }

    /// The tangent of `y = op(x)` along `t`.
    fn jvp(self, g: &mut Graph, y: NodeId, x: NodeId, t: NodeId) -> Built {
        let ty = g.ty(y).clone();
        let factor = match self {
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
            UnaryOp::Erf => {
                // erf′(x) = 2/√π · e^(−x²)
                let xx = g.binary(BinaryOp::Mul, x, x)?;
                let minus_xx = g.unary(UnaryOp::Neg, xx)?;
                let gauss = g.unary(UnaryOp::Exp, minus_xx)?;
                let scale = g.full(std::f64::consts::FRAC_2_SQRT_PI, &ty)?;
                g.binary(BinaryOp::Mul, gauss, scale)?
            }
        };
        g.binary(BinaryOp::Mul, t, factor).map(Some)
    }

    /// True when `op(x)` is positive everywhere, given whether `x` is.
    fn is_positive(self, x_positive: bool) -> bool {
        match self {
            UnaryOp::Exp | UnaryOp::Sigmoid | UnaryOp::Softplus => true,
            UnaryOp::Sqrt
            | UnaryOp::Recip
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::Tanh
            | UnaryOp::Erf
            | UnaryOp::Step
            | UnaryOp::Sign => x_positive,
            UnaryOp::Neg | UnaryOp::Log => false,
        }
    }
}

/// Elementwise functions of two tensors of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 6] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
    ];

    /// The IR spelling.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
        }
    }

    pub fn from_name(name: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// True if `a op b = b op a`.
    pub fn is_commutative(self) -> bool {
        match self {
            BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min => true,
            BinaryOp::Sub | BinaryOp::Div => false,
        }
    }

    /// The function on one pair of elements (numpy's `maximum`/`minimum`: NaN if either is).
    pub fn kernel<T: Element>(self) -> fn(T, T) -> T {
        match self {
            BinaryOp::Add => |a: T, b: T| a + b,
            BinaryOp::Sub => |a: T, b: T| a - b,
            BinaryOp::Mul => |a: T, b: T| a * b,
            BinaryOp::Div => |a: T, b: T| a / b,
            BinaryOp::Max => |a: T, b: T| if a.is_nan() || a > b { a } else { b },
            BinaryOp::Min => |a: T, b: T| if a.is_nan() || a < b { a } else { b },
        }
    }

    /// The op on two values (see [`BinaryOp::kernel`]).
    pub fn eval<T: Element>(self, a: T, b: T) -> T {
        self.kernel::<T>()(a, b)
    }

    /// The tangent of `y = a op b` given the operands' tangents.
    fn jvp(
        self,
        g: &mut Graph,
        y: NodeId,
        [a, b]: [NodeId; 2],
        [ta, tb]: [Option<NodeId>; 2],
    ) -> Built {
        match self {
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
                let (winner, loser) = if self == BinaryOp::Max {
                    (a, b)
                } else {
                    (b, a)
                };
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

    fn check_linear(self, [a, b]: [bool; 2]) -> Result<(), &'static str> {
        match self {
            BinaryOp::Add | BinaryOp::Sub => Ok(()),
            BinaryOp::Mul if a && b => Err("both factors depend on the linear inputs"),
            BinaryOp::Mul => Ok(()),
            BinaryOp::Div if b => Err("the divisor depends on the linear inputs"),
            BinaryOp::Div => Ok(()),
            BinaryOp::Max | BinaryOp::Min => Err("it has no transpose rule (only linear ops do)"),
        }
    }

    /// The transpose of `y = a op b` (linear in the operands marked `linear`), seeded with `ct`.
    fn transpose(
        self,
        g: &mut Graph,
        [a, b]: [NodeId; 2],
        [la, lb]: [bool; 2],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        let mut out = Vec::with_capacity(2);
        match self {
            BinaryOp::Add => {
                out.extend(
                    [(a, la), (b, lb)]
                        .into_iter()
                        .filter(|(_, l)| *l)
                        .map(|(x, _)| (x, ct)),
                );
            }
            BinaryOp::Sub => {
                if la {
                    out.push((a, ct));
                }
                if lb {
                    out.push((b, g.unary(UnaryOp::Neg, ct)?));
                }
            }
            BinaryOp::Mul => {
                let (lin, factor) = if la { (a, b) } else { (b, a) };
                out.push((lin, g.binary(BinaryOp::Mul, ct, factor)?));
            }
            BinaryOp::Div => out.push((a, g.binary(BinaryOp::Div, ct, b)?)),
            BinaryOp::Max | BinaryOp::Min => unreachable!("`check_linear` rejects max and min"),
        }
        Ok(out)
    }

    fn is_positive(self, [a, b]: [bool; 2]) -> bool {
        match self {
            BinaryOp::Max => a || b,
            BinaryOp::Add | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Min => a && b,
            BinaryOp::Sub => false,
        }
    }
}

/// The elementwise family.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elementwise {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `x ^ c` for a constant exponent.
    Pow(F64Bits),
    /// The identity whose derivative is zero (used for the shift in `logsumexp`).
    StopGradient,
}

impl Elementwise {
    fn arity(&self) -> usize {
        match self {
            Elementwise::Binary(_) => 2,
            Elementwise::Unary(_) | Elementwise::Pow(_) | Elementwise::StopGradient => 1,
        }
    }
}

impl Family for Elementwise {
    fn name(&self) -> &'static str {
        match self {
            Elementwise::Unary(u) => u.name(),
            Elementwise::Binary(b) => b.name(),
            Elementwise::Pow(_) => "pow",
            Elementwise::StopGradient => "stop_gradient",
        }
    }

    fn names() -> Vec<&'static str> {
        let unary = UnaryOp::ALL.iter().map(|u| u.name());
        let binary = BinaryOp::ALL.iter().map(|b| b.name());
        unary
            .chain(binary)
            .chain(["pow", "stop_gradient"])
            .collect()
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Elementwise>> {
        if let Some(u) = UnaryOp::from_name(name) {
            return Some(Ok(Elementwise::Unary(u)));
        }
        if let Some(b) = BinaryOp::from_name(name) {
            return Some(Ok(Elementwise::Binary(b)));
        }
        Some(match name {
            "pow" => (|| {
                params.expect('[', "before the exponent of `pow`")?;
                let exponent = params.float()?;
                params.expect(']', "after the exponent of `pow`")?;
                Ok(Elementwise::Pow(F64Bits::new(exponent)))
            })(),
            "stop_gradient" => Ok(Elementwise::StopGradient),
            _ => return None,
        })
    }

    fn write_params(&self, f: &mut dyn fmt::Write, _: &dyn Fn(usize) -> String) -> fmt::Result {
        match self {
            Elementwise::Pow(c) => write!(f, "[{}]", Float(c.get())),
            Elementwise::Unary(_) | Elementwise::Binary(_) | Elementwise::StopGradient => Ok(()),
        }
    }

    fn has_params(&self) -> bool {
        matches!(self, Elementwise::Pow(_))
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        check_arity(self.name(), inputs.len(), self.arity())?;
        let dtype = common_dtype(self.name(), inputs)?;
        let x = &inputs[0].shape;
        if let Elementwise::Binary(op) = self {
            let y = &inputs[1].shape;
            if x != y {
                return shape_err(format!(
                    "{} needs operands of one shape, got {x} and {y}",
                    op.name()
                ));
            }
        }
        Ok(TensorType::new(dtype, x.clone()))
    }

    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], _: &Bindings) -> Result<ArrayD<T>, String> {
        Ok(match self {
            Elementwise::Unary(op) => {
                let [x] = operands(xs)?;
                x.mapv(op.kernel::<T>())
            }
            Elementwise::Pow(c) => {
                let [x] = operands(xs)?;
                let c = T::from_f64(c.get());
                x.mapv(|v| v.powf(c))
            }
            Elementwise::Binary(op) => {
                let [a, b] = operands(xs)?;
                if a.shape() != b.shape() {
                    return Err(format!(
                        "operands have shapes {:?} and {:?}",
                        a.shape(),
                        b.shape()
                    ));
                }
                let f = op.kernel::<T>();
                Zip::from(a).and(b).map_collect(|&x, &y| f(x, y))
            }
            Elementwise::StopGradient => {
                let [x] = operands(xs)?;
                x.clone()
            }
        })
    }

    fn jvp(&self, g: &mut Graph, y: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        match self {
            Elementwise::StopGradient => Ok(None),
            Elementwise::Unary(op) => {
                let t = ts[0].expect("a unary op with a tangent has it on its operand");
                op.jvp(g, y, xs[0], t)
            }
            Elementwise::Binary(op) => op.jvp(g, y, [xs[0], xs[1]], [ts[0], ts[1]]),
            Elementwise::Pow(c) => {
                let t = ts[0].expect("pow has one operand");
                let c = c.get();
                if c == 0.0 {
                    return Ok(None);
                }
                let derivative = if c == 1.0 {
                    return Ok(Some(t));
                } else if c == 2.0 {
                    xs[0]
                } else {
                    g.apply(crate::ir::Op::pow(c - 1.0), &[xs[0]])?
                };
                let ty = g.ty(y).clone();
                let scale = g.full(c, &ty)?;
                let factor = g.binary(BinaryOp::Mul, derivative, scale)?;
                g.binary(BinaryOp::Mul, t, factor).map(Some)
            }
        }
    }

    fn check_linear(&self, linear: &[bool]) -> Result<(), &'static str> {
        match self {
            Elementwise::Unary(UnaryOp::Neg) => Ok(()),
            Elementwise::Binary(op) => op.check_linear([linear[0], linear[1]]),
            Elementwise::Unary(_) | Elementwise::Pow(_) | Elementwise::StopGradient => {
                Err("it has no transpose rule (only linear ops do)")
            }
        }
    }

    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        match self {
            Elementwise::Unary(UnaryOp::Neg) => Ok(vec![(xs[0], g.unary(UnaryOp::Neg, ct)?)]),
            Elementwise::Binary(op) => op.transpose(g, [xs[0], xs[1]], [linear[0], linear[1]], ct),
            Elementwise::Unary(_) | Elementwise::Pow(_) | Elementwise::StopGradient => {
                unreachable!("`check_linear` admits only neg and the linear binary ops")
            }
        }
    }

    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        match self {
            // The identity: a view.
            Elementwise::StopGradient => Work::default(),
            Elementwise::Unary(_) | Elementwise::Binary(_) | Elementwise::Pow(_) => Work {
                elementwise_flops: numel(&output.shape, batch),
                bytes: Work::streamed(inputs, output, batch),
                ..Work::default()
            },
        }
    }

    fn fold(&self, inputs: &[&Facts], _: &TensorType) -> Option<f64> {
        // x·0 = 0 whatever x is (for finite x): the zero has the result's type.
        let zero = Some(F64Bits::new(0.0));
        if *self == Elementwise::Binary(BinaryOp::Mul) && inputs.iter().any(|f| f.constant == zero)
        {
            return Some(0.0);
        }
        let constants: Vec<f64> = inputs
            .iter()
            .map(|f| f.constant.map(F64Bits::get))
            .collect::<Option<_>>()?;
        Some(match self {
            Elementwise::Unary(u) => u.eval(constants[0]),
            Elementwise::Pow(e) => constants[0].powf(e.get()),
            Elementwise::Binary(b) => b.eval(constants[0], constants[1]),
            Elementwise::StopGradient => constants[0],
        })
    }

    fn is_positive(&self, inputs: &[&Facts]) -> bool {
        let positive = |i: usize| inputs[i].positive;
        match self {
            Elementwise::Unary(u) => u.is_positive(positive(0)),
            Elementwise::Binary(b) => b.is_positive([positive(0), positive(1)]),
            Elementwise::Pow(_) | Elementwise::StopGradient => positive(0),
        }
    }
}
