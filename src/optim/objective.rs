//! The bridge between a compiled model and the optimizers: an [`Objective`] on one mini-batch,
//! over the model's parameters laid out as one flat vector.

use super::Objective;
use super::vector::Vectors;
use crate::Result;
use crate::compile::{CompiledModel, GvOperator};
use crate::ir::store::TensorMap;

/// The loss of a compiled model on one mini-batch, as an [`Objective`].
pub struct ModelObjective<'m> {
    model: &'m CompiledModel,
    batch: TensorMap,
    gv: Option<GvOperator<'m>>,
    /// The parameters as the graphs take them, overwritten by each call (empty before the
    /// first): no allocation of parameter-sized tensors per call.
    params: TensorMap,
}

impl<'m> ModelObjective<'m> {
    /// The loss of `model` on `batch`, over the model's flat parameter vector
    /// ([`CompiledModel::layout`]).
    pub fn new(model: &'m CompiledModel, batch: TensorMap) -> ModelObjective<'m> {
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
        self.model.loss(params, &self.batch)
    }

    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let params = params_at(self.model, &mut self.params, theta)?;
        let (loss, grad) = self.model.loss_and_grad(params, &self.batch)?;
        Ok((loss, self.flat(&grad)?))
    }

    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()> {
        let params = params_at(self.model, &mut self.params, theta)?;
        self.gv = Some(self.model.gv_operator(params, &self.batch)?);
        Ok(())
    }

    fn loss_grad_and_prepare_gv(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let params = params_at(self.model, &mut self.params, theta)?;
        let (loss, grad, gv) = self.model.loss_grad_and_gv_operator(params, &self.batch)?;
        self.gv = Some(gv);
        Ok((loss, self.flat(&grad)?))
    }

    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
        let op = self.gv.as_ref().expect("prepare_gv runs before gv");
        op.apply_flat(v, out)
    }

    fn vectors(&self) -> Vectors {
        Vectors::new(self.model.pool().clone())
    }
}
