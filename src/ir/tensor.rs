//! Host tensors: an `ndarray` array of either element type.

use super::shape::DType;
use ndarray::{ArrayD, IxDyn, LinalgScalar};
use num_traits::Float;

/// An element type tensors hold: the ops' kernels are written once, generic over it, and serve
/// f32 and f64 alike.
pub trait Element: Float + LinalgScalar + Send + Sync + std::fmt::Debug {
    /// The dtype of tensors of this element type.
    const DTYPE: DType;

    /// The array inside `tensor`, if it holds this element type.
    fn array(tensor: &Tensor) -> Option<&ArrayD<Self>>;

    /// A tensor holding `array`.
    fn into_tensor(array: ArrayD<Self>) -> Tensor;

    /// `x` rounded to this type (to nearest for `f32`).
    fn from_f64(x: f64) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;

    fn array(tensor: &Tensor) -> Option<&ArrayD<f32>> {
        match tensor {
            Tensor::F32(a) => Some(a),
            Tensor::F64(_) => None,
        }
    }

    fn into_tensor(array: ArrayD<f32>) -> Tensor {
        Tensor::F32(array)
    }

    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;

    fn array(tensor: &Tensor) -> Option<&ArrayD<f64>> {
        match tensor {
            Tensor::F64(a) => Some(a),
            Tensor::F32(_) => None,
        }
    }

    fn into_tensor(array: ArrayD<f64>) -> Tensor {
        Tensor::F64(array)
    }

    fn from_f64(x: f64) -> f64 {
        x
    }
}

/// A dense, row-major host tensor of f32 or f64.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        match dtype {
            DType::F32 => Tensor::F32(ArrayD::zeros(IxDyn(shape))),
            DType::F64 => Tensor::F64(ArrayD::zeros(IxDyn(shape))),
        }
    }

    /// A tensor from row-major values given as f64 (converted to `dtype`).
    ///
    /// Returns `None` when `values.len()` is not the product of `shape`.
    pub fn from_f64(dtype: DType, shape: &[usize], values: Vec<f64>) -> Option<Tensor> {
        let a = ArrayD::from_shape_vec(IxDyn(shape), values).ok()?;
        Some(Tensor::F64(a).cast(dtype))
    }

    /// A scalar.
    pub fn scalar(dtype: DType, value: f64) -> Tensor {
        Tensor::F64(ndarray::arr0(value).into_dyn()).cast(dtype)
    }

    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same values in element type `dtype` (f64 → f32 rounds to nearest).
    pub fn cast(self, dtype: DType) -> Tensor {
        match (self, dtype) {
            (Tensor::F32(a), DType::F64) => Tensor::F64(a.mapv(f64::from)),
            (Tensor::F64(a), DType::F32) => Tensor::F32(a.mapv(|x| x as f32)),
            (t, _) => t,
        }
    }

    /// The values as f64 (a copy for f32 tensors).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(f64::from),
            Tensor::F64(a) => a.clone(),
        }
    }

    /// All values in row-major order, as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let mut values = Vec::with_capacity(self.len());
        self.extend_f64(&mut values);
        values
    }

    /// Overwrites the values, in row-major order, with `values` converted to the element type
    /// (f64 → f32 rounds to nearest).
    ///
    /// # Panics
    /// If `values` does not hold exactly [`Tensor::len`] values.
    pub fn assign_f64(&mut self, values: &[f64]) {
        assert_eq!(values.len(), self.len(), "one value per element");
        // Tensors are built in standard layout, so the slice paths are the ones taken; they are
        // several times faster than ndarray's element iterators on parameter-sized tensors.
        match self {
            Tensor::F32(a) => match a.as_slice_mut() {
                Some(a) => a.iter_mut().zip(values).for_each(|(a, &v)| *a = v as f32),
                None => a.iter_mut().zip(values).for_each(|(a, &v)| *a = v as f32),
            },
            Tensor::F64(a) => match a.as_slice_mut() {
                Some(a) => a.copy_from_slice(values),
                None => a.iter_mut().zip(values).for_each(|(a, &v)| *a = v),
            },
        }
    }

    /// Appends the values, in row-major order, as f64 to `out`.
    pub fn extend_f64(&self, out: &mut Vec<f64>) {
        match self {
            Tensor::F32(a) => match a.as_slice() {
                Some(a) => out.extend(a.iter().map(|&v| f64::from(v))),
                None => out.extend(a.iter().map(|&v| f64::from(v))),
            },
            Tensor::F64(a) => match a.as_slice() {
                Some(a) => out.extend_from_slice(a),
                None => out.extend(a.iter().copied()),
            },
        }
    }

    /// The value of a one-element tensor.
    pub fn scalar_value(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.to_f64_vec()[0])
    }

    /// Largest absolute difference between two tensors of one shape, relative to the larger of
    /// their largest magnitudes (and 1e-300, so that two zero tensors compare as 0). NaN matches only NaN.
    pub fn max_rel_diff(&self, other: &Tensor) -> f64 {
        assert_eq!(
            self.shape(),
            other.shape(),
            "max_rel_diff needs equal shapes"
        );
        let (a, b) = (self.to_f64(), other.to_f64());
        let scale = a
            .iter()
            .chain(b.iter())
            .fold(1e-300f64, |m, x| m.max(x.abs()));
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| match (x.is_nan(), y.is_nan()) {
                (true, true) => 0.0,
                (true, false) | (false, true) => f64::INFINITY,
                _ if x == y => 0.0,
                _ => (x - y).abs() / scale,
            })
            .fold(0.0, f64::max)
    }
}
