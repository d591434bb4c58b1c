//! The bridge between a compiled model and the optimizers: named parameter tensors laid out as
//! one flat vector, and an [`Objective`] on one mini-batch.

use super::Objective;
use crate::compile::{CompiledModel, GvOperator};
use crate::ir::store::TensorMap;
use crate::ir::{DType, Tensor};
use crate::{Error, Result};

/// Where each parameter lives in the flat vector: the model's declaration order, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    entries: Vec<LayoutEntry>,
    len: usize,
}

#[derive(Clone, Debug, PartialEq)]
struct LayoutEntry {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    offset: usize,
}

impl ParamLayout {
    /// The layout of `params`, ordered as `names` (the model's parameter order).
    pub fn new(names: &[String], params: &TensorMap) -> Result<ParamLayout> {
        let mut entries = Vec::with_capacity(names.len());
        let mut offset = 0;
        for name in names {
            let t = params
                .get(name)
                .ok_or_else(|| Error::Tensor(format!("no parameter '{name}'")))?;
            entries.push(LayoutEntry {
                name: name.clone(),
                shape: t.shape().to_vec(),
                dtype: t.dtype(),
                offset,
            });
            offset += t.len();
        }
        Ok(ParamLayout {
            entries,
            len: offset,
        })
    }

    /// The parameters' names, in layout order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensors as one vector.
    pub fn flatten(&self, params: &TensorMap) -> Result<Vec<f64>> {
        let mut flat = Vec::with_capacity(self.len);
        for e in &self.entries {
            let t = params
                .get(&e.name)
                .ok_or_else(|| Error::Tensor(format!("no tensor '{}'", e.name)))?;
            if t.shape() != e.shape.as_slice() {
                return Err(Error::Tensor(format!(
                    "tensor '{}' has shape {:?}, expected {:?}",
                    e.name,
                    t.shape(),
                    e.shape
                )));
            }
            t.extend_f64(&mut flat);
        }
        Ok(flat)
    }

    /// The name of the first parameter whose part of `flat` holds a NaN or an infinity.
    pub fn first_non_finite(&self, flat: &[f64]) -> Option<&str> {
        self.entries.iter().find_map(|e| {
            let n: usize = e.shape.iter().product();
            let part = flat.get(e.offset..e.offset + n)?;
            (!part.iter().all(|x| x.is_finite())).then_some(e.name.as_str())
        })
    }

    /// Rounds every entry to its parameter's element type (f32 parameters hold f32 values), so
    /// that the parameters saved in a checkpoint are exactly the ones trained with.
    pub fn round_to_dtypes(&self, flat: &mut [f64]) {
        for e in self.entries.iter().filter(|e| e.dtype == DType::F32) {
            let n: usize = e.shape.iter().product();
            for x in &mut flat[e.offset..e.offset + n] {
                *x = f64::from(*x as f32);
            }
        }
    }

    /// The vector as named tensors of the parameters' shapes and element types.
    pub fn unflatten(&self, flat: &[f64]) -> TensorMap {
        assert_eq!(flat.len(), self.len, "a flat vector of this layout");
        let mut map = TensorMap::new();
        for e in &self.entries {
            let n: usize = e.shape.iter().product();
            let values = &flat[e.offset..e.offset + n];
            let shape = ndarray::IxDyn(&e.shape);
            let t = match e.dtype {
                DType::F32 => Tensor::F32(
                    ndarray::ArrayD::from_shape_vec(
                        shape,
                        values.iter().map(|&v| v as f32).collect(),
                    )
                    .expect("length matches the shape"),
                ),
                DType::F64 => Tensor::F64(
                    ndarray::ArrayD::from_shape_vec(shape, values.to_vec())
                        .expect("length matches the shape"),
                ),
            };
            map.insert(e.name.clone(), t);
        }
        map
    }
}

/// The loss of a compiled model on one mini-batch, as an [`Objective`].
pub struct ModelObjective<'m> {
    model: &'m CompiledModel,
    layout: &'m ParamLayout,
    batch: TensorMap,
    gv: Option<GvOperator<'m>>,
}

impl<'m> ModelObjective<'m> {
    /// # Panics
    /// If `layout` does not list `model`'s parameters in the model's order (build it with
    /// `ParamLayout::new(model.param_names(), …)`).
    pub fn new(
        model: &'m CompiledModel,
        layout: &'m ParamLayout,
        batch: TensorMap,
    ) -> ModelObjective<'m> {
        assert!(
            layout
                .names()
                .eq(model.param_names().iter().map(String::as_str)),
            "the layout of the model's parameters, in the model's order"
        );
        ModelObjective {
            model,
            layout,
            batch,
            gv: None,
        }
    }
}

impl Objective for ModelObjective<'_> {
    fn dim(&self) -> usize {
        self.layout.len()
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.model.loss(&self.layout.unflatten(theta), &self.batch)
    }

    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (loss, grad) = self
            .model
            .loss_and_grad(&self.layout.unflatten(theta), &self.batch)?;
        Ok((loss, self.layout.flatten(&grad)?))
    }

    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()> {
        self.gv = Some(
            self.model
                .gv_operator(&self.layout.unflatten(theta), &self.batch)?,
        );
        Ok(())
    }

    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
        let op = self.gv.as_ref().expect("prepare_gv runs before gv");
        op.apply_flat(v, out)
    }
}
