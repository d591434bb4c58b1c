//! A parsed model: its forward graph (output and loss) and its parameter declarations.

use crate::ir::graph::Graph;
use crate::ir::init::Init;
use crate::ir::shape::TensorType;

/// A declared parameter: name, type (fixed shape) and initializer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
}

/// A model read from the DSL.
///
/// `graph` has the model's `input`, `target` and `param` declarations as arguments, in source
/// order, and two outputs: the network output (named as in the `output` statement) first, then
/// `loss` (a scalar).
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    /// The file the model came from (`<input>` for source given as a string).
    pub file: String,
    /// The source text, kept so that later stages can point at lines in their errors.
    pub source: String,
    pub graph: Graph,
    /// The name of the network output (`z` in `output z = …`).
    pub output: String,
    pub params: Vec<ParamSpec>,
}
