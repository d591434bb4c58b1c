//! Rank-2 matrix products, each operand optionally transposed: `op(a) @ op(b)`. The flags let
//! rewriting and differentiation move transposes into the product, where they cost nothing.

use super::{
    Built, F64Bits, Facts, Family, ParamReader, ShapeError, Work, add_optional, check_arity,
    common_dtype, numel, operands, shape_err,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Dim, Shape, TensorType};
use crate::ir::tensor::Element;
use ndarray::{ArrayD, ArrayView2, Ix2};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl MatMul {
    /// `[rows, cols]` of `op(x)` for an operand of shape `x` transposed if `transposed`.
    fn oriented(x: &Shape, transposed: bool) -> [&Dim; 2] {
        let d = x.dims();
        if transposed {
            [&d[1], &d[0]]
        } else {
            [&d[0], &d[1]]
        }
    }

    /// The inner (summed) dimension for a left operand of shape `a`.
    pub fn inner_dim<'a>(&self, a: &'a Shape) -> &'a Dim {
        MatMul::oriented(a, self.transpose_a)[1]
    }

    /// `[m, k, n]` of the product of operands shaped `a` and `b` (rank 2 each).
    pub fn dims<'a>(&self, a: &'a Shape, b: &'a Shape) -> [&'a Dim; 3] {
        let [m, k] = MatMul::oriented(a, self.transpose_a);
        let [_, n] = MatMul::oriented(b, self.transpose_b);
        [m, k, n]
    }

    fn matrix<T>(x: &ArrayD<T>, transpose: bool) -> Result<ArrayView2<'_, T>, String> {
        let m = x
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| format!("operand of shape {:?} is not a matrix", x.shape()))?;
        Ok(if transpose { m.reversed_axes() } else { m })
    }
}

impl Family for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn names() -> Vec<&'static str> {
        vec!["matmul"]
    }

    /// `matmul`, `matmul[ta]`, `matmul[tb]`, `matmul[ta, tb]`.
    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<MatMul>> {
        if name != "matmul" {
            return None;
        }
        let flags = params.flags("matmul", &["ta", "tb"]);
        Some(flags.map(|flags| MatMul {
            transpose_a: flags.contains(&"ta"),
            transpose_b: flags.contains(&"tb"),
        }))
    }

    fn write_params(&self, f: &mut dyn fmt::Write, _: &dyn Fn(usize) -> String) -> fmt::Result {
        match (self.transpose_a, self.transpose_b) {
            (false, false) => Ok(()),
            (true, false) => f.write_str("[ta]"),
            (false, true) => f.write_str("[tb]"),
            (true, true) => f.write_str("[ta, tb]"),
        }
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        check_arity(self.name(), inputs.len(), 2)?;
        let dtype = common_dtype(self.name(), inputs)?;
        let (a, b) = (&inputs[0].shape, &inputs[1].shape);
        if a.rank() != 2 || b.rank() != 2 {
            return shape_err(format!("matmul needs two rank-2 operands, got {a} and {b}"));
        }
        let [m, ka] = MatMul::oriented(a, self.transpose_a);
        let [kb, n] = MatMul::oriented(b, self.transpose_b);
        if ka != kb {
            return shape_err(format!(
                "matmul inner dimensions differ: {a} @ {b} ({ka} vs {kb})"
            ));
        }
        Ok(TensorType::new(dtype, Shape(vec![m.clone(), n.clone()])))
    }

    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], _: &Bindings) -> Result<ArrayD<T>, String> {
        let [a, b] = operands(xs)?;
        let a = MatMul::matrix(a, self.transpose_a)?;
        let b = MatMul::matrix(b, self.transpose_b)?;
        if a.ncols() != b.nrows() {
            return Err(format!(
                "inner dimensions differ: {:?} @ {:?}",
                a.shape(),
                b.shape()
            ));
        }
        Ok(a.dot(&b).into_dyn())
    }

    /// The product rule: `op(ta)·op(b) + op(a)·op(tb)`.
    fn jvp(&self, g: &mut Graph, _: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        let op = super::Op::MatMul(*self);
        let left = ts[0]
            .map(|ta| g.apply(op.clone(), &[ta, xs[1]]))
            .transpose()?;
        let right = ts[1]
            .map(|tb| g.apply(op.clone(), &[xs[0], tb]))
            .transpose()?;
        add_optional(g, left, right)
    }

    fn check_linear(&self, linear: &[bool]) -> Result<(), &'static str> {
        if linear.iter().all(|&l| l) {
            Err("both factors depend on the linear inputs")
        } else {
            Ok(())
        }
    }

    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        let (ta, tb) = (self.transpose_a, self.transpose_b);
        let (a, b) = (xs[0], xs[1]);
        let product = |transpose_a, transpose_b| super::Op::matmul(transpose_a, transpose_b);
        let mut out = Vec::with_capacity(1);
        // y = op(a)·op(b); ∂op(a) = ct·op(b)ᵀ and ∂op(b) = op(a)ᵀ·ct, each transposed back when
        // the operand entered transposed — all as flags, never as copies.
        if linear[0] {
            let built = if ta {
                g.apply(product(tb, true), &[b, ct])?
            } else {
                g.apply(product(false, !tb), &[ct, b])?
            };
            out.push((a, built));
        }
        if linear[1] {
            let built = if tb {
                g.apply(product(true, ta), &[ct, a])?
            } else {
                g.apply(product(!ta, false), &[a, ct])?
            };
            out.push((b, built));
        }
        Ok(out)
    }

    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        let k = super::dim_size(self.inner_dim(&inputs[0].shape), batch);
        Work {
            matmul_flops: numel(&output.shape, batch)
                .saturating_mul(k)
                .saturating_mul(2),
            bytes: Work::streamed(inputs, output, batch),
            ..Work::default()
        }
    }

    fn fold(&self, inputs: &[&Facts], _: &TensorType) -> Option<f64> {
        // x @ 0 = 0 whatever x is (for finite x): the zero has the result's type.
        let zero = Some(F64Bits::new(0.0));
        if inputs.iter().any(|f| f.constant == zero) {
            return Some(0.0);
        }
        let (a, b) = (inputs[0].constant?.get(), inputs[1].constant?.get());
        Some(a * b * self.inner_dim(&inputs[0].ty.shape).as_fixed()? as f64)
    }

    fn is_positive(&self, inputs: &[&Facts]) -> bool {
        // A product with an empty inner dimension is 0.
        inputs.iter().all(|f| f.positive)
            && self.inner_dim(&inputs[0].ty.shape).as_fixed() != Some(0)
    }
}
