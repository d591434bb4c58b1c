//! The model language: `*.sgn` files (see docs/DSL.md), the front end above the IR.
//!
//! Source text is split into tokens ([`lexer`]), parsed into statements ([`parser`]) and lowered
//! into a [`Graph`](crate::ir::Graph) of primitive ops ([`lower`]), with every error reported as
//! a [`Diagnostic`](crate::ir::Diagnostic) at file:line:col. This module builds on [`crate::ir`]
//! alone; the model (`Model`, in the `model` module) sits on top of it.

pub mod lexer;
pub mod lower;
pub mod parser;
