//! The bridge between a compiled model and the optimizers: an [`Objective`] on one mini-batch,
//! over the model's parameters laid out as one flat vector.

use super::Objective;
use crate::Result;
use crate::compile::{CompiledModel, GvOperator};
use crate::ir::store::TensorMap;

/// The loss of a compiled model on one mini-batch, as an [`Objective`].
pub struct ModelObjective<'m> {
    model: &'m CompiledModel,
    batch: TensorMap,
    gv: Option<GvOperator<'m>>,
}

impl<'m> ModelObjective<'m> {
    /// The loss of `model` on `batch`, over the model's flat parameter vector
    /// ([`CompiledModel::layout`]).
    pub fn new(model: &'m CompiledModel, batch: TensorMap) -> ModelObjective<'m> {
        ModelObjective {
            model,
            batch,
            gv: None,
        }
    }
}

impl Objective for ModelObjective<'_> {
    fn dim(&self) -> usize {
        self.model.layout().len()
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.model
            .loss(&self.model.layout().unflatten(theta), &self.batch)
    }

    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (loss, grad) = self
            .model
            .loss_and_grad(&self.model.layout().unflatten(theta), &self.batch)?;
        Ok((loss, self.model.layout().flatten(&grad)?))
    }

    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()> {
        self.gv = Some(
            self.model
                .gv_operator(&self.model.layout().unflatten(theta), &self.batch)?,
        );
        Ok(())
    }

    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
        let op = self.gv.as_ref().expect("prepare_gv runs before gv");
        op.apply_flat(v, out)
    }
}
