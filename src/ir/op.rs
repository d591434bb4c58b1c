//! The primitive operations of the graph IR and their shape rules.
//!
//! The set is deliberately small: every DSL operation (softmax, losses, `mean`, numpy
//! broadcasting, rank-N matmul, …) lowers to these, and each primitive later gets a JVP rule, a
//! transpose rule if it is linear, an e-graph node and a JIT lowering. Broadcasting is explicit
//! ([`Op::Broadcast`]): elementwise binary ops take operands of one shape, so that the transpose
//! of a broadcast is plainly a sum.

use super::shape::{Dim, Shape, TensorType};

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
}

impl UnaryOp {
    /// Every unary op, for tests and tables.
    pub const ALL: [UnaryOp; 12] = [
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
        }
    }

    pub fn from_name(name: &str) -> Option<UnaryOp> {
        UnaryOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The op on one f64, as the interpreter computes it (constant folding uses this).
    pub fn eval(self, x: f64) -> f64 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid if x >= 0.0 => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Sigmoid => x.exp() / (1.0 + x.exp()),
            UnaryOp::Relu if x < 0.0 => 0.0,
            UnaryOp::Relu => x,
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sign if x == 0.0 || x.is_nan() => x,
            UnaryOp::Sign => x.signum(),
            UnaryOp::Step => f64::from(u8::from(x > 0.0)),
            UnaryOp::Recip => x.recip(),
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

    /// The op on two f64s, as the interpreter computes it (NaN propagates through max/min).
    pub fn eval(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Max if a.is_nan() || a > b => a,
            BinaryOp::Max => b,
            BinaryOp::Min if a.is_nan() || a < b => a,
            BinaryOp::Min => b,
        }
    }
}

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

/// A primitive operation. Operands are the node's inputs, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The graph's argument number `.0` (an input, target, parameter, direction, residual, …).
    Arg(usize),
    /// A scalar constant of the node's dtype.
    Const(F64Bits),
    /// The size of a (possibly symbolic) dimension as a scalar of the node's dtype, known once
    /// the graph's symbols are bound: `mean` over the batch divides by `DimSize(B)`.
    DimSize(Dim),
    Unary(UnaryOp),
    /// `x ^ c` for a constant exponent.
    Pow(F64Bits),
    Binary(BinaryOp),
    /// Rank-2 matrix product, each operand optionally transposed: `op(a) @ op(b)`.
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// Sum over `axes` (sorted, distinct); the axes are removed.
    Sum {
        axes: Vec<usize>,
    },
    /// Maximum over `axes` (sorted, distinct); the axes are removed.
    ReduceMax {
        axes: Vec<usize>,
    },
    /// numpy `broadcast_to(x, shape)`: trailing axes aligned, size-1 axes stretched.
    Broadcast {
        shape: Shape,
    },
    /// Same elements, row-major order, new shape.
    Reshape {
        shape: Shape,
    },
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Concatenation of all operands along `axis`.
    Concat {
        axis: usize,
    },
    /// Elements `start..end` along `axis`.
    Slice {
        axis: usize,
        start: Dim,
        end: Dim,
    },
    /// The identity whose derivative is zero (used for the shift in `logsumexp`).
    StopGradient,
}

/// Why an op cannot be applied to operands of these types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

fn shape_err<T>(msg: impl Into<String>) -> Result<T, ShapeError> {
    Err(ShapeError(msg.into()))
}

impl Op {
    /// True for ops that are linear in their operands jointly (the ops that have transpose
    /// rules): scaling by a constant factor is [`Op::Binary`]`(Mul)` and is linear in one operand
    /// only, so it is not listed here.
    pub fn is_structurally_linear(&self) -> bool {
        matches!(
            self,
            Op::Binary(BinaryOp::Add | BinaryOp::Sub)
                | Op::Unary(UnaryOp::Neg)
                | Op::Sum { .. }
                | Op::Broadcast { .. }
                | Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
        )
    }

    /// True for ops applied element by element (one output element per input element).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Pow(_) | Op::Binary(_) | Op::StopGradient
        )
    }

    /// The op's name as printed in the IR text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Arg(_) => "arg",
            Op::Const(_) => "const",
            Op::DimSize(_) => "dim_size",
            Op::Unary(u) => u.name(),
            Op::Pow(_) => "pow",
            Op::Binary(b) => b.name(),
            Op::MatMul { .. } => "matmul",
            Op::Sum { .. } => "sum",
            Op::ReduceMax { .. } => "reduce_max",
            Op::Broadcast { .. } => "broadcast",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::StopGradient => "stop_gradient",
        }
    }

    /// The shape rule: the type of the result for operands of types `inputs`.
    ///
    /// `Arg`, `Const` and `DimSize` take their type from the graph, not from operands, so they are rejected
    /// here; the graph builder types them.
    pub fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let arity_ok = match self {
            Op::Arg(_) | Op::Const(_) | Op::DimSize(_) => false,
            Op::Binary(_) | Op::MatMul { .. } => inputs.len() == 2,
            Op::Concat { .. } => !inputs.is_empty(),
            _ => inputs.len() == 1,
        };
        if !arity_ok {
            return shape_err(format!(
                "{} cannot take {} operand(s)",
                self.name(),
                inputs.len()
            ));
        }
        let dtype = inputs[0].dtype;
        if let Some(other) = inputs.iter().find(|t| t.dtype != dtype) {
            return shape_err(format!(
                "{} mixes element types {} and {}",
                self.name(),
                dtype,
                other.dtype
            ));
        }
        let x = &inputs[0].shape;
        let shape = match self {
            Op::Arg(_) | Op::Const(_) | Op::DimSize(_) => {
                unreachable!("rejected by the arity check")
            }
            Op::Unary(_) | Op::Pow(_) | Op::StopGradient => x.clone(),
            Op::Binary(op) => {
                let y = &inputs[1].shape;
                if x != y {
                    return shape_err(format!(
                        "{} needs operands of one shape, got {x} and {y}",
                        op.name()
                    ));
                }
                x.clone()
            }
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => matmul_shape(x, &inputs[1].shape, *transpose_a, *transpose_b)?,
            Op::Sum { axes } | Op::ReduceMax { axes } => {
                check_axes(axes, x.rank(), self.name())?;
                Shape(
                    x.0.iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, d)| d.clone())
                        .collect(),
                )
            }
            Op::Broadcast { shape } => {
                if !x.broadcasts_to(shape) {
                    return shape_err(format!("cannot broadcast shape {x} to {shape}"));
                }
                shape.clone()
            }
            Op::Reshape { shape } => {
                if x.numel() != shape.numel() {
                    return shape_err(format!(
                        "cannot reshape {x} ({} elements) to {shape} ({} elements)",
                        x.numel(),
                        shape.numel()
                    ));
                }
                shape.clone()
            }
            Op::Transpose { perm } => {
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
            Op::Concat { axis } => concat_shape(inputs, *axis)?,
            Op::Slice { axis, start, end } => {
                if *axis >= x.rank() {
                    return shape_err(format!("slice axis {axis} is out of range for {x}"));
                }
                let len = slice_len(&x.0[*axis], start, end).ok_or_else(|| {
                    ShapeError(format!(
                        "slice {start}..{end} does not fit axis {axis} of {x}"
                    ))
                })?;
                let mut dims = x.0.clone();
                dims[*axis] = len;
                Shape(dims)
            }
        };
        Ok(TensorType::new(dtype, shape))
    }
}

fn matmul_shape(a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Shape, ShapeError> {
    if a.rank() != 2 || b.rank() != 2 {
        return shape_err(format!("matmul needs two rank-2 operands, got {a} and {b}"));
    }
    let (m, ka) = if ta {
        (&a.0[1], &a.0[0])
    } else {
        (&a.0[0], &a.0[1])
    };
    let (kb, n) = if tb {
        (&b.0[1], &b.0[0])
    } else {
        (&b.0[0], &b.0[1])
    };
    if ka != kb {
        return shape_err(format!(
            "matmul inner dimensions differ: {a} @ {b} ({ka} vs {kb})"
        ));
    }
    Ok(Shape(vec![m.clone(), n.clone()]))
}

fn check_axes(axes: &[usize], rank: usize, name: &str) -> Result<(), ShapeError> {
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return shape_err(format!("{name} axis {a} is out of range for rank {rank}"));
        }
        if i > 0 && axes[i - 1] >= a {
            return shape_err(format!("{name} axes {axes:?} must be sorted and distinct"));
        }
    }
    Ok(())
}

fn concat_shape(inputs: &[&TensorType], axis: usize) -> Result<Shape, ShapeError> {
    let first = &inputs[0].shape;
    if axis >= first.rank() {
        return shape_err(format!("concat axis {axis} is out of range for {first}"));
    }
    let mut total = Dim::fixed(0);
    for t in inputs {
        let s = &t.shape;
        let same_elsewhere =
            s.rank() == first.rank() && (0..s.rank()).all(|i| i == axis || s.0[i] == first.0[i]);
        if !same_elsewhere {
            return shape_err(format!(
                "concat along axis {axis} needs equal sizes on the other axes, got {first} and {s}"
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

/// Length of `start..end` within an axis of size `size`, when it provably fits.
fn slice_len(size: &Dim, start: &Dim, end: &Dim) -> Option<Dim> {
    sub_dims(size, end)?;
    sub_dims(end, start)
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
