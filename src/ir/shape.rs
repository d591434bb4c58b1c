//! Element types, symbolic dimensions and shapes.
//!
//! A dimension is a monomial `c · s₁ · s₂ ⋯` over symbolic names (the batch `B`, say), so that
//! reshapes such as `[B, 28, 28] → [B, 784]` or `[B, 10] → [10·B]` stay exact without knowing `B`.
//! Symbols are bound to sizes only when a graph runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Floating-point element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    /// The DSL spelling, `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// Significand bits: integers up to `2^mantissa_bits` are exact.
    pub fn mantissa_bits(self) -> u32 {
        match self {
            DType::F32 => f32::MANTISSA_DIGITS,
            DType::F64 => f64::MANTISSA_DIGITS,
        }
    }

    /// Parses `f32` / `f64`.
    pub fn from_name(name: &str) -> Option<DType> {
        match name {
            "f32" => Some(DType::F32),
            "f64" => Some(DType::F64),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dimension: `coeff` times the product of `syms` (sorted, repeats allowed).
/// A dimension with no symbols is a fixed size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dim {
    coeff: u64,
    syms: Vec<Arc<str>>,
}

impl Dim {
    /// A fixed size.
    pub fn fixed(n: u64) -> Dim {
        Dim {
            coeff: n,
            syms: Vec::new(),
        }
    }

    /// A symbolic size such as the batch `B`.
    pub fn sym(name: &str) -> Dim {
        Dim {
            coeff: 1,
            syms: vec![Arc::from(name)],
        }
    }

    /// The size if it does not depend on any symbol.
    pub fn as_fixed(&self) -> Option<u64> {
        self.syms.is_empty().then_some(self.coeff)
    }

    /// The constant factor.
    pub fn coeff(&self) -> u64 {
        self.coeff
    }

    /// The symbolic factors, sorted.
    pub fn symbols(&self) -> &[Arc<str>] {
        &self.syms
    }

    /// The symbol an argument's axis of this size fixes when a graph runs: a bare symbol (`B`),
    /// not a multiple or product (`2*B`), which is only checked.
    pub fn bare_symbol(&self) -> Option<&Arc<str>> {
        match self.syms.as_slice() {
            [symbol] if self.coeff == 1 => Some(symbol),
            _ => None,
        }
    }

    /// True if this is the fixed size 1 (the broadcastable size).
    pub fn is_one(&self) -> bool {
        self.as_fixed() == Some(1)
    }

    /// The product of two dimensions. A coefficient past `u64::MAX` saturates there, and
    /// [`Dim::eval`] reports it as an overflow: never a wrapped-around small number.
    pub fn mul(&self, other: &Dim) -> Dim {
        if self.coeff == 0 || other.coeff == 0 {
            return Dim::fixed(0);
        }
        let mut syms: Vec<Arc<str>> = self.syms.iter().chain(&other.syms).cloned().collect();
        syms.sort();
        Dim {
            coeff: self.coeff.saturating_mul(other.coeff),
            syms,
        }
    }

    /// `self / other` when the quotient is again a monomial with an integer coefficient.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        if other.coeff == 0 || !self.coeff.is_multiple_of(other.coeff) {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.iter().position(|t| t == s)?;
            syms.remove(at);
        }
        Some(Dim {
            coeff: self.coeff / other.coeff,
            syms,
        })
    }

    /// The concrete size under `bindings`, computed with checked arithmetic: an unbound symbol
    /// or a product that does not fit in `usize` is an error, never a wrapped-around size.
    pub fn eval(&self, bindings: &Bindings) -> Result<usize, DimError> {
        let size = |s: &Arc<str>| {
            bindings
                .get(s)
                .copied()
                .ok_or_else(|| DimError::Unbound(s.clone()))
        };
        let mut has_zero = self.coeff == 0;
        for s in &self.syms {
            has_zero |= size(s)? == 0;
        }
        // A zero factor makes the product 0, however large the other factors are.
        if has_zero {
            return Ok(0);
        }
        if self.coeff == u64::MAX {
            // Saturated by `mul`.
            return Err(DimError::Overflow);
        }
        let mut n = usize::try_from(self.coeff).map_err(|_| DimError::Overflow)?;
        for s in &self.syms {
            n = n.checked_mul(size(s)?).ok_or(DimError::Overflow)?;
        }
        Ok(n)
    }
}

/// Why a [`Dim`] has no concrete size under some bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimError {
    /// This symbol is not bound.
    Unbound(Arc<str>),
    /// The product of the sizes does not fit in `usize`.
    Overflow,
}

impl fmt::Display for DimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimError::Unbound(symbol) => write!(f, "symbol {symbol} is not bound"),
            DimError::Overflow => f.write_str("the size does not fit in 64 bits"),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.syms.is_empty() {
            return write!(f, "{}", self.coeff);
        }
        if self.coeff != 1 {
            write!(f, "{}*", self.coeff)?;
        }
        for (i, s) in self.syms.iter().enumerate() {
            if i > 0 {
                f.write_str("*")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// Sizes bound to symbolic dimension names when a graph runs.
pub type Bindings = BTreeMap<Arc<str>, usize>;

/// A shape: one [`Dim`] per axis; the empty shape is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// The scalar shape `[]`.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// A shape of fixed sizes.
    pub fn fixed(dims: &[u64]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::fixed(d)).collect())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The axes.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// Number of elements as a dimension (a monomial).
    pub fn numel(&self) -> Dim {
        self.0.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d))
    }

    /// Concrete sizes under `bindings`.
    pub fn eval(&self, bindings: &Bindings) -> Result<Vec<usize>, DimError> {
        self.0.iter().map(|d| d.eval(bindings)).collect()
    }

    /// The numpy broadcast of two shapes (trailing axes aligned; size 1 stretches).
    pub fn broadcast(&self, other: &Shape) -> Option<Shape> {
        let rank = self.rank().max(other.rank());
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let a = self.axis_from_end(rank - 1 - i);
            let b = other.axis_from_end(rank - 1 - i);
            out.push(match (a, b) {
                (Some(a), Some(b)) if a == b => a.clone(),
                (Some(a), Some(b)) if a.is_one() => b.clone(),
                (Some(a), Some(b)) if b.is_one() => a.clone(),
                (Some(_), Some(_)) => return None,
                (Some(d), None) | (None, Some(d)) => d.clone(),
                (None, None) => unreachable!("rank is the larger of the two"),
            });
        }
        Some(Shape(out))
    }

    /// True if `self` broadcasts to `target` by numpy's rules.
    pub fn broadcasts_to(&self, target: &Shape) -> bool {
        self.rank() <= target.rank() && self.broadcast(target).as_ref() == Some(target)
    }

    /// The shape of a reduction over `axes` with the reduced axes kept as size 1 (numpy's
    /// `keepdims=True`).
    pub fn keepdims(&self, axes: &[usize]) -> Shape {
        Shape(
            self.0
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if axes.contains(&i) {
                        Dim::fixed(1)
                    } else {
                        d.clone()
                    }
                })
                .collect(),
        )
    }

    /// Axis `k` counted from the last (0 = last axis).
    fn axis_from_end(&self, k: usize) -> Option<&Dim> {
        (k < self.rank()).then(|| &self.0[self.rank() - 1 - k])
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of a tensor value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monomial_arithmetic() {
        let b = Dim::sym("B");
        let d = b.mul(&Dim::fixed(784));
        assert_eq!(d.to_string(), "784*B");
        assert_eq!(d.div_exact(&Dim::fixed(28)), Some(Dim::fixed(28).mul(&b)));
        assert_eq!(d.div_exact(&b), Some(Dim::fixed(784)));
        assert_eq!(d.div_exact(&Dim::sym("T")), None);
        assert_eq!(Dim::fixed(10).div_exact(&Dim::fixed(3)), None);
        let mut env = Bindings::new();
        env.insert(Arc::from("B"), 5);
        assert_eq!(d.eval(&env), Ok(3920));
        assert_eq!(
            Dim::sym("T").eval(&env),
            Err(DimError::Unbound(Arc::from("T")))
        );
        env.insert(Arc::from("B"), usize::MAX / 700);
        assert_eq!(d.eval(&env), Err(DimError::Overflow));
        let area = Dim::sym("B").mul(&Dim::sym("K"));
        env.insert(Arc::from("B"), usize::MAX);
        env.insert(Arc::from("K"), 0);
        assert_eq!(area.eval(&env), Ok(0));
    }

    #[test]
    fn numpy_broadcasting() {
        let a = Shape(vec![Dim::sym("B"), Dim::fixed(20)]);
        let b = Shape::fixed(&[20]);
        assert_eq!(a.broadcast(&b), Some(a.clone()));
        assert!(b.broadcasts_to(&a));
        assert!(!a.broadcasts_to(&b));
        assert_eq!(
            Shape::fixed(&[3, 1]).broadcast(&Shape::fixed(&[1, 4])),
            Some(Shape::fixed(&[3, 4]))
        );
        assert_eq!(Shape::fixed(&[3]).broadcast(&Shape::fixed(&[4])), None);
        assert!(Shape::scalar().broadcasts_to(&a));
    }
}
