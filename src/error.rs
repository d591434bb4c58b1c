//! The crate's error type: one variant per kind of failure, wrapping the errors each stage owns
//! (the IR's [`ir::Error`], the front end's [`Diagnostic`], differentiation's
//! [`AdError`](crate::autodiff::AdError), the JIT's [`codegen::Error`]) and adding the data and
//! training failures of the layers above.

use crate::codegen;
use crate::ir::{self, Diagnostic};
use std::path::PathBuf;

/// Everything that can go wrong in sgn, each saying what and where.
///
/// Match on the variant to tell kinds of failure apart; the text says what went wrong and
/// where. A model with a mistake in it is an [`Error::Dsl`] at the file, line and column of the
/// mistake:
///
/// ```
/// use sgn::{Error, Model};
///
/// let source = "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[3, 1]\n\
///               output z = x @ w\nloss mse(z, y)\n";
/// let err = Model::parse_named("line.sgn", source).unwrap_err();
/// match &err {
///     Error::Dsl(diagnostic) => {
///         assert_eq!(diagnostic.file, "line.sgn");
///         assert_eq!((diagnostic.span.line, diagnostic.span.col), (5, 14)); // the `@`
///         assert_eq!(diagnostic.line_text, "output z = x @ w");
///     }
///     other => panic!("expected a DSL error, got {other:?}"),
/// }
/// // The text: `file:line:col: error: message`, then the line with a caret under the column.
/// let text = err.to_string();
/// let lines: Vec<&str> = text.lines().collect();
/// assert_eq!(
///     lines[0],
///     "line.sgn:5:14: error: '@' needs the last axis of the left operand to equal the first \
///      axis of the right, found [B, 2] @ [3, 1] (2 vs 3)"
/// );
/// assert_eq!(lines[1..], ["5 | output z = x @ w", "  |              ^"]);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed model file (syntax, names, shapes), with file:line:col.
    #[error("{0}")]
    Dsl(#[from] Box<Diagnostic>),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tensor file or tensor argument that does not fit (missing name, wrong dtype or shape,
    /// corrupt file).
    #[error("{0}")]
    Tensor(String),
    /// A malformed data file, or a dataset that could not be fetched or verified.
    #[error("{0}")]
    Data(String),
    /// A model that cannot be differentiated, at `file:line:col` of the op that stopped it.
    #[error("{file}:{error}")]
    Differentiate {
        file: String,
        error: crate::autodiff::AdError,
    },
    /// Native code generation failed (a host Cranelift cannot target, or a bug in lowering).
    #[error("{0}")]
    Jit(String),
    /// A graph that cannot be evaluated as asked (unbound dimension, inconsistent arguments).
    #[error("{0}")]
    Eval(String),
    /// Training stopped on non-finite values (a loss or gradient that overflowed, usually from a
    /// step size too large for the model). `from_the_start`: no step of the run had finite values,
    /// so the parameters it started from (or the data) are at fault, not the step size.
    #[error("{message}")]
    NonFinite {
        message: String,
        from_the_start: bool,
    },
    /// More memory than the machine has, or a size that overflows: says what needed it (the
    /// tensor, its shape) and how many GiB (see [`crate::ir::memory`]).
    #[error("{0}")]
    Memory(String),
    /// An option out of its range (an optimizer's or the trainer's, set by a library caller:
    /// the command line refuses such values as usage errors), named with the range it must be in.
    #[error("{0}")]
    Options(String),
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Error {
        Error::Dsl(Box::new(d))
    }
}

impl From<ir::Error> for Error {
    fn from(e: ir::Error) -> Error {
        match e {
            ir::Error::Syntax(d) => Error::Dsl(d),
            ir::Error::Io { path, source } => Error::Io { path, source },
            ir::Error::Tensor(m) => Error::Tensor(m),
            ir::Error::Eval(m) => Error::Eval(m),
            ir::Error::Memory(m) => Error::Memory(m),
        }
    }
}

/// A graph built with an op its operands do not fit ([`crate::ir::Graph::apply`] and the
/// builders), as an [`Error::Tensor`], so that `?` works in functions returning this error.
impl From<crate::ir::ShapeError> for Error {
    fn from(e: crate::ir::ShapeError) -> Error {
        Error::Tensor(e.0)
    }
}

impl From<codegen::Error> for Error {
    fn from(e: codegen::Error) -> Error {
        match e {
            codegen::Error::Jit(m) => Error::Jit(m),
            codegen::Error::Ir(e) => e.into(),
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
