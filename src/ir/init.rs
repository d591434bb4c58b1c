//! Parameter declarations and their initializers, as written in the DSL
//! (`param w: f32[784, 20] = glorot_uniform`).

use crate::ir::shape::TensorType;
use std::fmt;

/// A declared parameter: name, type (fixed shape) and initializer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
}

/// How a parameter's initial values are drawn. Sampling lives in [`crate::ir::store`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    /// N(0, std²).
    Normal(f64),
    /// U(lo, hi).
    Uniform(f64, f64),
    /// U(−a, a) with a = √(6 / (fan_in + fan_out)).
    GlorotUniform,
    /// N(0, 2 / (fan_in + fan_out)).
    GlorotNormal,
    /// U(−a, a) with a = √(6 / fan_in).
    HeUniform,
    /// N(0, 2 / fan_in).
    HeNormal,
}

impl Init {
    /// The default when a `param` statement names none: Glorot-uniform for matrices and larger,
    /// zeros for vectors and scalars (biases), as Keras does.
    pub fn default_for_rank(rank: usize) -> Init {
        if rank >= 2 {
            Init::GlorotUniform
        } else {
            Init::Zeros
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Constant(c) => write!(f, "constant({c})"),
            Init::Normal(s) => write!(f, "normal({s})"),
            Init::Uniform(lo, hi) => write!(f, "uniform({lo}, {hi})"),
            Init::GlorotUniform => f.write_str("glorot_uniform"),
            Init::GlorotNormal => f.write_str("glorot_normal"),
            Init::HeUniform => f.write_str("he_uniform"),
            Init::HeNormal => f.write_str("he_normal"),
        }
    }
}

/// `(fan_in, fan_out)` of a parameter shape: a dense weight `[in, out]` (as `x @ w` reads it)
/// has `(in, out)`; a convolution filter `[O, C/groups, k…]` (OIHW, rank > 2) has, as PyTorch
/// defines it, `(C/groups · field, O · field)` with `field` the product of the kernel sizes; a
/// vector `[n]` has `(n, n)`, a scalar `(1, 1)`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [in_, out] => (*in_, *out),
        [out, in_, kernel @ ..] => {
            let field: usize = kernel.iter().product();
            (in_ * field, out * field)
        }
    }
}
