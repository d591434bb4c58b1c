//! Leaves: graph arguments, scalar constants and the runtime sizes of symbolic dimensions.
//! They have no operands; the graph gives them their type.

use super::{Built, F64Bits, Facts, Family, ParamReader, ShapeError, Work, eval_dim, shape_err};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Dim, TensorType};
use crate::ir::tensor::Element;
use crate::ir::text::{DimText, Float};
use ndarray::{ArrayD, IxDyn};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    /// The graph's argument number `.0` (an input, target, parameter, direction, residual, …).
    Arg(usize),
    /// A scalar constant of the node's dtype.
    Const(F64Bits),
    /// The size of a (possibly symbolic) dimension as a scalar of the node's dtype, known once
    /// the graph's symbols are bound: `mean` over the batch divides by `DimSize(B)`.
    DimSize(Dim),
}

impl Family for Leaf {
    fn name(&self) -> &'static str {
        match self {
            Leaf::Arg(_) => "arg",
            Leaf::Const(_) => "const",
            Leaf::DimSize(_) => "dim_size",
        }
    }

    fn names() -> Vec<&'static str> {
        vec!["arg", "const", "dim_size"]
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Leaf>> {
        Some(match name {
            "arg" => params.arg().map(Leaf::Arg),
            "const" => params.float().map(|c| Leaf::Const(F64Bits::new(c))),
            "dim_size" => params.dim().map(Leaf::DimSize),
            _ => return None,
        })
    }

    fn write_params(
        &self,
        f: &mut dyn fmt::Write,
        arg_name: &dyn Fn(usize) -> String,
    ) -> fmt::Result {
        match self {
            Leaf::Arg(i) => write!(f, " {}", arg_name(*i)),
            Leaf::Const(c) => write!(f, " {}", Float(c.get())),
            Leaf::DimSize(d) => write!(f, " {}", DimText(d)),
        }
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        shape_err(format!(
            "{} cannot take {} operand(s): its type comes from the graph",
            self.name(),
            inputs.len()
        ))
    }

    fn eval<T: Element>(&self, _: &[&ArrayD<T>], bindings: &Bindings) -> Result<ArrayD<T>, String> {
        let value = match self {
            Leaf::Arg(i) => {
                return Err(format!("argument {i} is read by the caller, not evaluated"));
            }
            Leaf::Const(c) => c.get(),
            Leaf::DimSize(dim) => eval_dim(dim, bindings)? as f64,
        };
        Ok(ArrayD::from_elem(IxDyn(&[]), T::from_f64(value)))
    }

    fn jvp(&self, _: &mut Graph, _: NodeId, _: &[NodeId], _: &[Option<NodeId>]) -> Built {
        Ok(None)
    }

    fn check_linear(&self, _: &[bool]) -> Result<(), &'static str> {
        // No operands, so no linear ones: the transpose has nothing to do.
        Ok(())
    }

    fn transpose(
        &self,
        _: &mut Graph,
        _: &[NodeId],
        _: &[bool],
        _: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        Ok(Vec::new())
    }

    fn work(&self, _: &[&TensorType], _: &TensorType, _: u64) -> Work {
        Work::default()
    }

    fn fold(&self, _: &[&Facts], _: &TensorType) -> Option<f64> {
        match self {
            Leaf::Const(c) => Some(c.get()),
            Leaf::Arg(_) | Leaf::DimSize(_) => None,
        }
    }

    fn is_positive(&self, _: &[&Facts]) -> bool {
        match self {
            Leaf::Const(c) => c.get() > 0.0,
            // Sizes of symbolic dimensions are bound to positive sizes only.
            Leaf::DimSize(_) => true,
            Leaf::Arg(_) => false,
        }
    }
}
