//! The IR's error type: what can go wrong reading, checking, storing and evaluating graphs and
//! tensors. The stages above wrap it in [`crate::Error`].

use super::Diagnostic;
use std::path::PathBuf;

/// An error of the IR layer, saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed IR text, with file:line:col.
    #[error("{0}")]
    Syntax(#[from] Box<Diagnostic>),
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
    /// A graph that cannot be evaluated as asked (unbound dimension, inconsistent arguments).
    #[error("{0}")]
    Eval(String),
    /// More memory than the machine has, or a size that overflows: says what needed it (the
    /// tensor, its shape) and how many GiB (see [`super::memory`]).
    #[error("{0}")]
    Memory(String),
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Error {
        Error::Syntax(Box::new(d))
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

/// Result with the IR's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
