//! sgn: train neural networks with the stochastic generalized Gauss-Newton method through a
//! symbolic computation-graph compiler.
//!
//! The pipeline, one module per stage: [`ir`] (the model DSL, the graph IR, the reference
//! interpreter), then differentiation, rewriting, code generation and optimizers in later
//! modules. [`Model`] is the entry point of the library API.

pub mod autodiff;
pub mod codegen;
pub mod compile;
pub mod data;
pub mod error;
pub mod ir;
pub mod memory;
pub mod model;
pub mod optim;
pub mod rewrite;

pub use compile::{CompileOptions, CompiledModel, GvOperator, Sources};
pub use error::{Error, Result};
pub use model::Model;
pub mod cli;
