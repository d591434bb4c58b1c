//! The front of the pipeline: the graph IR, its DSL, its text form and its reference interpreter.
//!
//! - [`shape`]: element types, symbolic dimensions, shapes;
//! - [`op`]: the primitive ops and their shape rules;
//! - [`graph`]: the SSA graph (arena, hash-consing, builder);
//! - [`dsl`]: the model language (lexer, parser, lowering to a graph);
//! - [`text`]: the graph's text form (printer and reader);
//! - [`interp`]: the reference interpreter on `ndarray`, the oracle for every later stage;
//! - [`tensor`], [`init`], [`store`]: host tensors, parameter initializers, named tensor files.

pub mod dsl;
pub mod graph;
pub mod init;
pub mod interp;
pub mod op;
pub mod shape;
pub mod store;
pub mod tensor;
pub mod text;

pub use graph::{Arg, ArgRole, Graph, Node, NodeId, Output, Span};
pub use op::{BinaryOp, Op, ShapeError, UnaryOp};
pub use shape::{Bindings, DType, Dim, DimError, Shape, TensorType};
pub use tensor::Tensor;
