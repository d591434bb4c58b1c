//! The model language: `*.sgn` files (see docs/DSL.md).
//!
//! Source text is split into tokens ([`lexer`]), parsed into statements ([`parser`]) and lowered
//! into a [`Graph`](crate::ir::Graph) of primitive ops ([`lower`]), with every error reported as
//! a [`Diagnostic`] at file:line:col.

pub mod diagnostic;
pub mod lexer;
pub mod lower;
pub mod parser;

pub use diagnostic::Diagnostic;
