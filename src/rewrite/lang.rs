//! The e-graph language: one e-node per IR primitive.
//!
//! An op's parameters (a broadcast's shape, a sum's axes, a permutation, …) are not part of the
//! e-node's operator but a child: a [`Prim::Param`] leaf. Rules can then match an op whatever its
//! parameters, as in `(transpose (transpose ?x ?p) ?q)`, read the parameters from the analysis and
//! compute new ones. Constants are scalar leaves compared by their bits; a constant tensor is a
//! broadcast of one.

use crate::ir::op::F64Bits;
use crate::ir::{BinaryOp, DType, Dim, Shape, UnaryOp};
use egg::{FromOpError, Id, Language};
use std::fmt;

/// A parameter of an op that is not a tensor operand.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Param {
    /// The target shape of a broadcast or reshape.
    Shape(Shape),
    /// The reduced axes of a sum or max (sorted, distinct).
    Axes(Vec<usize>),
    /// A transpose's permutation.
    Perm(Vec<usize>),
    /// A `pow`'s exponent.
    Exponent(F64Bits),
    /// A concat's axis.
    Axis(usize),
    /// A slice: elements `start..end` along `axis`.
    Range { axis: usize, start: Dim, end: Dim },
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Shape(s) => write!(f, "{s}"),
            Param::Axes(a) | Param::Perm(a) => write!(f, "{a:?}"),
            Param::Exponent(c) => write!(f, "{}", c.get()),
            Param::Axis(a) => write!(f, "axis={a}"),
            Param::Range { axis, start, end } => write!(f, "axis={axis} {start}..{end}"),
        }
    }
}

/// An e-node: an IR primitive over e-class operands.
///
/// Ops with parameters take the [`Param`] leaf as their last child (first for `concat`, whose
/// operand count varies).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prim {
    /// Graph argument number `.0`.
    Arg(usize),
    /// A scalar constant of the given element type.
    Const(F64Bits, DType),
    /// The runtime size of a symbolic dimension, as a scalar.
    DimSize(Dim, DType),
    /// An op parameter (never a tensor).
    Param(Param),
    Unary(UnaryOp, [Id; 1]),
    Binary(BinaryOp, [Id; 2]),
    /// `x ^ c`: operand, exponent.
    Pow([Id; 2]),
    /// `op(a) @ op(b)`.
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
        operands: [Id; 2],
    },
    /// Operand, axes.
    Sum([Id; 2]),
    /// Operand, axes.
    ReduceMax([Id; 2]),
    /// Operand, shape.
    Broadcast([Id; 2]),
    /// Operand, shape.
    Reshape([Id; 2]),
    /// Operand, permutation.
    Transpose([Id; 2]),
    /// Axis, then the operands.
    Concat(Vec<Id>),
    /// Operand, range.
    Slice([Id; 2]),
    StopGradient([Id; 1]),
}

/// The matmul operator names by transpose flags (`t` = transposed, `n` = not), for patterns.
const MATMUL_NAMES: [(&str, bool, bool); 4] = [
    ("matmul", false, false),
    ("matmul_tn", true, false),
    ("matmul_nt", false, true),
    ("matmul_tt", true, true),
];

/// The pattern name of the matmul with these transpose flags.
pub fn matmul_name(transpose_a: bool, transpose_b: bool) -> &'static str {
    MATMUL_NAMES
        .iter()
        .find(|(_, a, b)| (*a, *b) == (transpose_a, transpose_b))
        .map(|(name, _, _)| *name)
        .expect("every flag pair has a name")
}

impl Prim {
    /// The operator without its children: what [`Language::matches`] compares.
    fn operator(&self) -> Prim {
        let zero = Id::from(0);
        match self {
            Prim::Arg(_) | Prim::Const(..) | Prim::DimSize(..) | Prim::Param(_) => self.clone(),
            Prim::Unary(op, _) => Prim::Unary(*op, [zero]),
            Prim::Binary(op, _) => Prim::Binary(*op, [zero; 2]),
            Prim::Pow(_) => Prim::Pow([zero; 2]),
            Prim::MatMul {
                transpose_a,
                transpose_b,
                ..
            } => Prim::MatMul {
                transpose_a: *transpose_a,
                transpose_b: *transpose_b,
                operands: [zero; 2],
            },
            Prim::Sum(_) => Prim::Sum([zero; 2]),
            Prim::ReduceMax(_) => Prim::ReduceMax([zero; 2]),
            Prim::Broadcast(_) => Prim::Broadcast([zero; 2]),
            Prim::Reshape(_) => Prim::Reshape([zero; 2]),
            Prim::Transpose(_) => Prim::Transpose([zero; 2]),
            // Concats of any arity share a discriminant (so that they sort together);
            // `matches` also compares the arity.
            Prim::Concat(_) => Prim::Concat(Vec::new()),
            Prim::Slice(_) => Prim::Slice([zero; 2]),
            Prim::StopGradient(_) => Prim::StopGradient([zero]),
        }
    }

    /// The operator's name, as in patterns.
    pub fn name(&self) -> &'static str {
        match self {
            Prim::Arg(_) => "arg",
            Prim::Const(..) => "const",
            Prim::DimSize(..) => "dim_size",
            Prim::Param(_) => "param",
            Prim::Unary(op, _) => op.name(),
            Prim::Binary(op, _) => op.name(),
            Prim::Pow(_) => "pow",
            Prim::MatMul {
                transpose_a,
                transpose_b,
                ..
            } => matmul_name(*transpose_a, *transpose_b),
            Prim::Sum(_) => "sum",
            Prim::ReduceMax(_) => "reduce_max",
            Prim::Broadcast(_) => "broadcast",
            Prim::Reshape(_) => "reshape",
            Prim::Transpose(_) => "transpose",
            Prim::Concat(_) => "concat",
            Prim::Slice(_) => "slice",
            Prim::StopGradient(_) => "stop_gradient",
        }
    }
}

impl Language for Prim {
    type Discriminant = Prim;

    fn discriminant(&self) -> Prim {
        self.operator()
    }

    /// [`Prim::operator`] equality, compared in place: rule search calls this for every e-node
    /// it visits, and building the operators would clone every leaf's parameters.
    fn matches(&self, other: &Prim) -> bool {
        match (self, other) {
            (Prim::Arg(_) | Prim::Const(..) | Prim::DimSize(..) | Prim::Param(_), _) => {
                self == other
            }
            (Prim::Unary(a, _), Prim::Unary(b, _)) => a == b,
            (Prim::Binary(a, _), Prim::Binary(b, _)) => a == b,
            (
                Prim::MatMul {
                    transpose_a: a1,
                    transpose_b: b1,
                    ..
                },
                Prim::MatMul {
                    transpose_a: a2,
                    transpose_b: b2,
                    ..
                },
            ) => (a1, b1) == (a2, b2),
            (Prim::Concat(a), Prim::Concat(b)) => a.len() == b.len(),
            // The other ops have no parameters in the operator and a fixed arity.
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            Prim::Arg(_) | Prim::Const(..) | Prim::DimSize(..) | Prim::Param(_) => &[],
            Prim::Unary(_, c) | Prim::StopGradient(c) => c,
            Prim::Binary(_, c)
            | Prim::Pow(c)
            | Prim::MatMul { operands: c, .. }
            | Prim::Sum(c)
            | Prim::ReduceMax(c)
            | Prim::Broadcast(c)
            | Prim::Reshape(c)
            | Prim::Transpose(c)
            | Prim::Slice(c) => c,
            Prim::Concat(c) => c,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            Prim::Arg(_) | Prim::Const(..) | Prim::DimSize(..) | Prim::Param(_) => &mut [],
            Prim::Unary(_, c) | Prim::StopGradient(c) => c,
            Prim::Binary(_, c)
            | Prim::Pow(c)
            | Prim::MatMul { operands: c, .. }
            | Prim::Sum(c)
            | Prim::ReduceMax(c)
            | Prim::Broadcast(c)
            | Prim::Reshape(c)
            | Prim::Transpose(c)
            | Prim::Slice(c) => c,
            Prim::Concat(c) => c,
        }
    }
}

impl fmt::Display for Prim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prim::Arg(i) => write!(f, "arg{i}"),
            Prim::Const(c, dtype) => write!(f, "{}:{dtype}", c.get()),
            Prim::DimSize(d, dtype) => write!(f, "dim_size({d}):{dtype}"),
            Prim::Param(p) => write!(f, "{p}"),
            other => f.write_str(other.name()),
        }
    }
}

impl egg::FromOp for Prim {
    type Error = FromOpError;

    /// Parses the operators that patterns use: every op by name with its children (leaves are
    /// matched by pattern variables and conditions, not written in patterns).
    fn from_op(op: &str, children: Vec<Id>) -> Result<Prim, FromOpError> {
        let error = || FromOpError::new(op, children.clone());
        let one = |c: &[Id]| -> Result<[Id; 1], FromOpError> { c.try_into().map_err(|_| error()) };
        let two = |c: &[Id]| -> Result<[Id; 2], FromOpError> { c.try_into().map_err(|_| error()) };
        if let Some(u) = UnaryOp::from_name(op) {
            return Ok(Prim::Unary(u, one(&children)?));
        }
        if let Some(b) = BinaryOp::from_name(op) {
            return Ok(Prim::Binary(b, two(&children)?));
        }
        if let Some((_, transpose_a, transpose_b)) = MATMUL_NAMES.iter().find(|(n, ..)| *n == op) {
            return Ok(Prim::MatMul {
                transpose_a: *transpose_a,
                transpose_b: *transpose_b,
                operands: two(&children)?,
            });
        }
        Ok(match op {
            "pow" => Prim::Pow(two(&children)?),
            "sum" => Prim::Sum(two(&children)?),
            "reduce_max" => Prim::ReduceMax(two(&children)?),
            "broadcast" => Prim::Broadcast(two(&children)?),
            "reshape" => Prim::Reshape(two(&children)?),
            "transpose" => Prim::Transpose(two(&children)?),
            "slice" => Prim::Slice(two(&children)?),
            "stop_gradient" => Prim::StopGradient(one(&children)?),
            "concat" if children.len() >= 2 => Prim::Concat(children),
            _ => return Err(error()),
        })
    }
}
