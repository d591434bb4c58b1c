//! Runtime integers of a compiled graph: extents, strides and offsets as polynomials in the
//! graph's symbols, and the table that gives each one a slot the generated code reads.
//!
//! A [`Dim`] is a monomial; strides are products of dims (monomials too), but an offset into a
//! view sliced along two axes is a sum (`3·B + 5`), so every runtime integer is a [`Size`]: a sum
//! of monomials with like terms combined. Fixed sizes are folded into the code as constants; the
//! others are evaluated once per call (per distinct binding) into a table.

use crate::ir::{Bindings, Dim};
use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::Arc;

/// A sum of monomials `c · s₁ · s₂ ⋯` over symbol names; the empty sum is 0. The constant term
/// is kept apart, so that a fixed size (most of them) is a plain number that allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Size {
    /// The term without symbols.
    constant: u64,
    /// (symbols, coefficient) of the other terms: symbols sorted and not empty, distinct terms
    /// sorted, no zero coefficient.
    terms: Vec<(Vec<Arc<str>>, u64)>,
}

impl Size {
    /// The constant `n`.
    pub fn fixed(n: u64) -> Size {
        Size {
            constant: n,
            terms: Vec::new(),
        }
    }

    /// The size of a dimension.
    pub fn dim(d: &Dim) -> Size {
        match d.as_fixed() {
            Some(n) => Size::fixed(n),
            None => Size::from_terms(0, vec![(d.symbols().to_vec(), d.coeff())]),
        }
    }

    fn from_terms(mut constant: u64, mut terms: Vec<(Vec<Arc<str>>, u64)>) -> Size {
        terms.retain(|t| {
            if t.0.is_empty() {
                constant += t.1;
            }
            t.1 != 0 && !t.0.is_empty()
        });
        terms.sort();
        let mut merged: Vec<(Vec<Arc<str>>, u64)> = Vec::with_capacity(terms.len());
        for (syms, c) in terms {
            match merged.last_mut() {
                Some(last) if last.0 == syms => last.1 += c,
                _ => merged.push((syms, c)),
            }
        }
        Size {
            constant,
            terms: merged,
        }
    }

    /// The value when no symbol occurs.
    pub fn as_fixed(&self) -> Option<u64> {
        self.terms.is_empty().then_some(self.constant)
    }

    pub fn is_zero(&self) -> bool {
        self.constant == 0 && self.terms.is_empty()
    }

    pub fn add(&self, other: &Size) -> Size {
        let constant = self.constant + other.constant;
        match (self.terms.is_empty(), other.terms.is_empty()) {
            (_, true) => Size {
                constant,
                terms: self.terms.clone(),
            },
            (true, false) => Size {
                constant,
                terms: other.terms.clone(),
            },
            (false, false) => Size::from_terms(
                constant,
                self.terms.iter().chain(&other.terms).cloned().collect(),
            ),
        }
    }

    /// Every coefficient times `n`.
    fn scaled(&self, n: u64) -> Size {
        match n {
            0 => Size::default(),
            1 => self.clone(),
            _ => Size {
                constant: self.constant * n,
                terms: self.terms.iter().map(|(s, c)| (s.clone(), c * n)).collect(),
            },
        }
    }

    pub fn mul(&self, other: &Size) -> Size {
        if let Some(n) = other.as_fixed() {
            return self.scaled(n);
        }
        if let Some(n) = self.as_fixed() {
            return other.scaled(n);
        }
        let with_constant = |s: &Size| {
            let constant = (s.constant != 0).then(|| (Vec::new(), s.constant));
            constant
                .into_iter()
                .chain(s.terms.iter().cloned())
                .collect::<Vec<_>>()
        };
        let (a, b) = (with_constant(self), with_constant(other));
        let mut terms = Vec::with_capacity(a.len() * b.len());
        for (sa, ca) in &a {
            for (sb, cb) in &b {
                let mut syms: Vec<Arc<str>> = sa.iter().chain(sb).cloned().collect();
                syms.sort();
                terms.push((syms, ca * cb));
            }
        }
        Size::from_terms(0, terms)
    }

    pub fn mul_dim(&self, d: &Dim) -> Size {
        match d.as_fixed() {
            Some(n) => self.scaled(n),
            None => self.mul(&Size::dim(d)),
        }
    }

    /// The product of the sizes of `dims` (the element count of a shape).
    pub fn product(dims: &[Dim]) -> Size {
        dims.iter().fold(Size::fixed(1), |acc, d| acc.mul_dim(d))
    }

    /// The value under `bindings`; `Err` names an unbound symbol or says the value overflows.
    pub fn eval(&self, bindings: &Bindings) -> Result<u64, String> {
        let mut total: u64 = self.constant;
        for (syms, c) in &self.terms {
            let mut term = *c;
            for s in syms {
                let v = *bindings.get(s).ok_or_else(|| {
                    format!("symbol {s} is not bound (no argument has an axis declared {s})")
                })?;
                term = term
                    .checked_mul(v as u64)
                    .ok_or_else(|| format!("size {self} overflows"))?;
            }
            total = total
                .checked_add(term)
                .ok_or_else(|| format!("size {self} overflows"))?;
        }
        // Generated code computes with these in signed 64-bit registers.
        if total > i64::MAX as u64 {
            return Err(format!("size {self} overflows"));
        }
        Ok(total)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() || self.constant != 0 {
            write!(f, "{}", self.constant)?;
        }
        for (i, (syms, c)) in self.terms.iter().enumerate() {
            if i > 0 || self.constant != 0 {
                f.write_str(" + ")?;
            }
            if *c != 1 {
                write!(f, "{c}*")?;
            }
            f.write_str(&syms.join("*"))?;
        }
        Ok(())
    }
}

/// The non-constant sizes the generated code reads, each at a fixed slot of a table filled per
/// call.
#[derive(Clone, Debug, Default)]
pub struct SizeSlots {
    sizes: Vec<Size>,
    index: FxHashMap<Size, usize>,
}

impl SizeSlots {
    /// The slot of a symbolic size (interned).
    pub fn slot(&mut self, size: &Size) -> usize {
        if let Some(&i) = self.index.get(size) {
            return i;
        }
        let i = self.sizes.len();
        self.sizes.push(size.clone());
        self.index.insert(size.clone(), i);
        i
    }

    /// Every slot's value under `bindings`.
    pub fn eval(&self, bindings: &Bindings) -> Result<Vec<i64>, String> {
        self.sizes
            .iter()
            .map(|s| s.eval(bindings).map(|v| v as i64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_combine_like_terms_and_evaluate() {
        let b = Size::dim(&Dim::sym("B"));
        let s = b.mul(&Size::fixed(3)).add(&Size::fixed(5)).add(&b);
        assert_eq!(s.to_string(), "5 + 4*B");
        assert_eq!(s.as_fixed(), None);
        assert_eq!(Size::fixed(2).mul(&Size::fixed(3)).as_fixed(), Some(6));
        assert!(Size::fixed(0).is_zero());
        assert!(b.mul(&Size::fixed(0)).is_zero());
        let mut env = Bindings::new();
        assert!(s.eval(&env).unwrap_err().contains("symbol B"));
        env.insert(Arc::from("B"), 10);
        assert_eq!(s.eval(&env), Ok(45));
        env.insert(Arc::from("B"), usize::MAX / 2);
        assert!(s.eval(&env).unwrap_err().contains("overflows"));
    }

    #[test]
    fn products_of_sums_expand_with_the_constant_terms() {
        let b = Size::dim(&Dim::sym("B"));
        let c = Size::dim(&Dim::sym("C"));
        let (one, two) = (Size::fixed(1), Size::fixed(2));
        // (B + 1)(B + 2) = 2 + 3B + B²; (B + 1)(C + 2) = 2 + 2B + C + BC.
        let square = b.add(&one).mul(&b.add(&two));
        assert_eq!(square.to_string(), "2 + 3*B + B*B");
        assert_eq!(
            b.add(&one).mul(&c.add(&two)).to_string(),
            "2 + 2*B + B*C + C"
        );
        assert_eq!(
            Size::product(&[Dim::fixed(3), Dim::sym("B"), Dim::fixed(4)]).to_string(),
            "12*B"
        );
        assert_eq!(b.mul_dim(&Dim::fixed(0)), Size::fixed(0));
        assert_eq!(Size::fixed(0).to_string(), "0");
        assert_eq!(b.to_string(), "B");
        let mut env = Bindings::new();
        env.insert(Arc::from("B"), 7);
        env.insert(Arc::from("C"), 5);
        assert_eq!(square.eval(&env), Ok(72));
        assert_eq!(b.add(&one).mul(&c.add(&two)).eval(&env), Ok(56));
    }
}
