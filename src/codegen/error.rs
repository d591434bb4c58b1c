//! The JIT's error type.

use crate::ir;

/// An error of code generation or of a compiled graph's run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Native code generation failed (a host Cranelift cannot target, options the host cannot
    /// honour, a bug in lowering).
    #[error("{0}")]
    Jit(String),
    /// Arguments that do not fit the graph, sizes too large for memory: the same errors the
    /// interpreter gives.
    #[error(transparent)]
    Ir(#[from] ir::Error),
}

impl Error {
    /// A graph that cannot run as asked (see [`ir::Error::Eval`]).
    pub fn eval(message: String) -> Error {
        Error::Ir(ir::Error::Eval(message))
    }

    /// Arguments or outputs that do not fit (see [`ir::Error::Tensor`]).
    pub fn tensor(message: String) -> Error {
        Error::Ir(ir::Error::Tensor(message))
    }
}

/// Result with the JIT's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
