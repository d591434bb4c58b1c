//! Runtime integers of a compiled graph: extents, strides and offsets as polynomials in the
//! graph's symbols, and the table that gives each one a slot the generated code reads.
//!
//! A [`Dim`] is a monomial; strides are products of dims (monomials too), but an offset into a
//! view sliced along two axes is a sum (`3·B + 5`), so every runtime integer is a [`Size`]: a sum
//! of monomials with like terms combined. Fixed sizes are folded into the code as constants; the
//! others are evaluated once per call (per distinct binding) into a table.

use crate::ir::{Bindings, Dim};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A sum of monomials `c · s₁ · s₂ ⋯` over symbol names; the empty sum is 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Size {
    /// (symbols, coefficient) with symbols sorted, distinct terms sorted, no zero coefficient.
    terms: Vec<(Vec<Arc<str>>, u64)>,
}

impl Size {
    /// The constant `n`.
    pub fn fixed(n: u64) -> Size {
        Size::from_terms(vec![(Vec::new(), n)])
    }

    /// The size of a dimension.
    pub fn dim(d: &Dim) -> Size {
        Size::from_terms(vec![(d.symbols().to_vec(), d.coeff())])
    }

    fn from_terms(mut terms: Vec<(Vec<Arc<str>>, u64)>) -> Size {
        terms.retain(|t| t.1 != 0);
        terms.sort();
        let mut merged: Vec<(Vec<Arc<str>>, u64)> = Vec::with_capacity(terms.len());
        for (syms, c) in terms {
            match merged.last_mut() {
                Some(last) if last.0 == syms => last.1 += c,
                _ => merged.push((syms, c)),
            }
        }
        Size { terms: merged }
    }

    /// The value when no symbol occurs.
    pub fn as_fixed(&self) -> Option<u64> {
        match self.terms.as_slice() {
            [] => Some(0),
            [(syms, c)] if syms.is_empty() => Some(*c),
            _ => None,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn add(&self, other: &Size) -> Size {
        Size::from_terms(self.terms.iter().chain(&other.terms).cloned().collect())
    }

    pub fn mul(&self, other: &Size) -> Size {
        let mut terms = Vec::with_capacity(self.terms.len() * other.terms.len());
        for (sa, ca) in &self.terms {
            for (sb, cb) in &other.terms {
                let mut syms: Vec<Arc<str>> = sa.iter().chain(sb).cloned().collect();
                syms.sort();
                terms.push((syms, ca * cb));
            }
        }
        Size::from_terms(terms)
    }

    pub fn mul_dim(&self, d: &Dim) -> Size {
        self.mul(&Size::dim(d))
    }

    /// The product of the sizes of `dims` (the element count of a shape).
    pub fn product(dims: &[Dim]) -> Size {
        dims.iter().fold(Size::fixed(1), |acc, d| acc.mul_dim(d))
    }

    /// The value under `bindings`; `Err` names an unbound symbol or says the value overflows.
    pub fn eval(&self, bindings: &Bindings) -> Result<u64, String> {
        let mut total: u64 = 0;
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
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        for (i, (syms, c)) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            if syms.is_empty() || *c != 1 {
                write!(f, "{c}")?;
                if !syms.is_empty() {
                    f.write_str("*")?;
                }
            }
            for (k, s) in syms.iter().enumerate() {
                if k > 0 {
                    f.write_str("*")?;
                }
                f.write_str(s)?;
            }
        }
        Ok(())
    }
}

/// The non-constant sizes the generated code reads, each at a fixed slot of a table filled per
/// call.
#[derive(Clone, Debug, Default)]
pub struct SizeSlots {
    sizes: Vec<Size>,
    index: HashMap<Size, usize>,
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
}
