//! The graph IR: its ops, its text form and its reference interpreter.
//!
//! - [`shape`]: element types, symbolic dimensions, shapes;
//! - [`op`]: the primitive ops, by family, with every rule each op has;
//! - [`graph`]: the SSA graph (arena, hash-consing, builder);
//! - [`text`]: the graph's text form (printer and reader);
//! - [`interp`]: the reference interpreter on `ndarray`, the oracle for every later stage;
//! - [`diagnostic`]: errors at file:line:col in source text (model files, IR text);
//! - [`tensor`], [`init`], [`store`]: host tensors, parameter declarations and initializers,
//!   named tensor files.
//!
//! Nothing here depends on the model language (the `dsl` module) that lowers into it.

pub mod diagnostic;
pub mod error;
pub mod graph;
pub mod init;
pub mod interp;
pub mod memory;
pub mod op;
pub mod parallel;
pub mod shape;
pub mod store;
pub mod tensor;
pub mod text;

pub use diagnostic::Diagnostic;
pub use error::Error;
pub use graph::{Arg, ArgRole, Graph, Node, NodeId, Output, Span};
pub use op::{
    BinaryOp, Conv, Elementwise, Family, Layout, Leaf, MatMul, Op, Reduce, ReduceKind, ShapeError,
    UnaryOp, Window,
};
pub use shape::{Bindings, DType, Dim, DimError, Shape, TensorType};
pub use tensor::{Element, Tensor};
