//! The bridge between a compiled model and the optimizers: an [`Objective`] on one mini-batch,
//! over the model's parameters laid out as one flat vector.

use super::Objective;
use super::cg::{CgOperator, FlatOperator};
use super::vector::{Real, Vectors};
use crate::Result;
use crate::compile::{CompiledModel, GvOperator};
use crate::ir::DType;
use crate::ir::store::TensorMap;
use ndarray::ArrayD;
use std::marker::PhantomData;

/// The loss of a compiled model on one mini-batch, as an [`Objective`].
pub struct ModelObjective<'m> {
    model: &'m CompiledModel,
    /// Borrowed: the Gauss-Newton operator reads some of its tensors where they are.
    batch: &'m TensorMap,
    gv: Option<GvOperator<'m>>,
    /// The parameters as the graphs take them, overwritten by each call (empty before the
    /// first): no allocation of parameter-sized tensors per call.
    params: TensorMap,
}

impl<'m> ModelObjective<'m> {
    /// The loss of `model` on `batch`, over the model's flat parameter vector
    /// ([`CompiledModel::layout`]).
    pub fn new(model: &'m CompiledModel, batch: &'m TensorMap) -> ModelObjective<'m> {
        ModelObjective {
            model,
            batch,
            gv: None,
            params: TensorMap::new(),
        }
    }
}

/// The parameters at `theta` as `model`'s named tensors, in `params` (filled on first use,
/// overwritten after).
fn params_at<'p>(
    model: &CompiledModel,
    params: &'p mut TensorMap,
    theta: &[f64],
) -> Result<&'p TensorMap> {
    let layout = model.layout();
    if params.is_empty() && theta.len() == layout.len() {
        *params = layout.unflatten(theta);
    } else {
        // Also the error for a θ of another length.
        layout.assign(theta, params, model.pool())?;
    }
    Ok(params)
}

impl ModelObjective<'_> {
    /// Per-parameter tensors (a gradient) as one flat vector, on the model's threads.
    fn flat(&self, per_param: &TensorMap) -> Result<Vec<f64>> {
        self.model.layout().flatten_on(per_param, self.model.pool())
    }
}

impl Objective for ModelObjective<'_> {
    fn dim(&self) -> usize {
        self.model.layout().len()
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        let params = params_at(self.model, &mut self.params, theta)?;
        self.model.loss(params, self.batch)
    }

    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let params = params_at(self.model, &mut self.params, theta)?;
        let (loss, grad) = self.model.loss_and_grad(params, self.batch)?;
        Ok((loss, self.flat(&grad)?))
    }

    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()> {
        let params = params_at(self.model, &mut self.params, theta)?;
        self.gv = Some(self.model.gv_operator(params, self.batch)?);
        Ok(())
    }

    fn loss_grad_and_prepare_gv(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let params = params_at(self.model, &mut self.params, theta)?;
        let (loss, grad, gv) = self.model.loss_grad_and_gv_operator(params, self.batch)?;
        self.gv = Some(gv);
        Ok((loss, self.flat(&grad)?))
    }

    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
        let op = self.gv.as_ref().ok_or_else(|| {
            crate::Error::Eval(
                "ModelObjective::gv: no Gauss-Newton products were prepared (call prepare_gv \
                 first)"
                    .into(),
            )
        })?;
        op.apply_flat(v, out)
    }

    /// # Panics
    /// If no products were prepared ([`Objective::prepare_gv`] first): the trait's operator
    /// cannot fail.
    fn cg_operator(&mut self) -> Box<dyn CgOperator + '_> {
        let vectors = self.vectors();
        let op = self
            .gv
            .as_ref()
            .expect("prepare_gv runs before cg_operator");
        match op.dtype() {
            Some(DType::F32) => Box::new(InPlace::<f32>::new(op, vectors)),
            Some(DType::F64) => Box::new(InPlace::<f64>::new(op, vectors)),
            // Parameters of both element types: CG on flat vectors, converted per product.
            None => Box::new(FlatOperator::new(
                |v: &[f64], out: &mut Vec<f64>| op.apply_flat(v, out),
                vectors,
            )),
        }
    }

    fn vectors(&self) -> Vectors {
        Vectors::new(self.model.pool().clone())
    }
}

/// CG's direction kept in gv-apply's own direction tensors, in their element type `T`, and its
/// products read where gv-apply wrote them: each CG pass reads and writes them in place, with
/// no flat copy converted to and from f64 at every iteration (for an f32 model, 64 bytes of
/// memory traffic per parameter and iteration where there were 120).
struct InPlace<'o, 'm, T> {
    op: &'o GvOperator<'m>,
    vectors: Vectors,
    shift: f64,
    element: PhantomData<T>,
}

impl<'o, 'm, T: Real> InPlace<'o, 'm, T> {
    /// On `op`, whose directions and products all hold `T`.
    fn new(op: &'o GvOperator<'m>, vectors: Vectors) -> Self {
        InPlace {
            op,
            vectors,
            shift: 0.0,
            element: PhantomData,
        }
    }

    /// `pass` on the directions and the last products as slices of `T`.
    fn slices<R>(&self, pass: impl FnOnce(&mut [&mut [T]], &[&[T]]) -> R) -> R {
        self.op.with_directions(|directions, products| {
            let mut directions: Vec<&mut [T]> = directions
                .iter_mut()
                .map(|d| contiguous_mut(T::array_mut(d)))
                .collect();
            let products: Vec<&[T]> = products.iter().map(|q| contiguous(T::array(q))).collect();
            pass(&mut directions, &products)
        })
    }

    /// `pass` on the directions and the last products, both read only.
    fn read<R>(&self, pass: impl FnOnce(&[&[T]], &[&[T]]) -> R) -> R {
        self.slices(|p, q| pass(&p.iter().map(|p| &**p).collect::<Vec<_>>(), q))
    }
}

/// A tensor's elements, for a tensor `GvOperator::dtype` vouched for (gv-apply's arguments
/// and outputs are dense arrays).
fn contiguous<T>(array: Option<&ArrayD<T>>) -> &[T] {
    array
        .and_then(|a| a.as_slice())
        .expect("gv-apply's tensors hold one element type, densely")
}

fn contiguous_mut<T>(array: Option<&mut ArrayD<T>>) -> &mut [T] {
    array
        .and_then(|a| a.as_slice_mut())
        .expect("gv-apply's tensors hold one element type, densely")
}

impl<T: Real> CgOperator for InPlace<'_, '_, T> {
    fn set_direction(&mut self, beta: f64, y: &[f64]) -> Result<()> {
        self.slices(|p, _| self.vectors.set_direction(p, beta, y));
        Ok(())
    }

    fn apply(&mut self, shift: f64) -> Result<f64> {
        self.op.apply_in_place()?;
        self.shift = shift;
        Ok(self.read(|p, q| self.vectors.shifted_dot(p, q, shift)))
    }

    fn update(&mut self, x: &mut [f64], r: &mut [f64], alpha: f64) -> f64 {
        self.read(|p, q| self.vectors.cg_update(x, r, alpha, self.shift, p, q))
    }
}
