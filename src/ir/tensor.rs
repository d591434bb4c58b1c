//! Host tensors: an `ndarray` array of either element type.

use super::shape::DType;
use ndarray::{ArrayD, IxDyn, LinalgScalar};
use num_traits::Float;

/// An element type tensors hold: the ops' kernels are written once, generic over it, and serve
/// f32 and f64 alike.
pub trait Element: Float + LinalgScalar + Send + Sync + std::fmt::Debug + 'static {
    /// The dtype of tensors of this element type.
    const DTYPE: DType;

    /// The array inside `tensor`, if it holds this element type.
    fn array(tensor: &Tensor) -> Option<&ArrayD<Self>>;

    /// The array inside `tensor`, writable, if it holds this element type.
    fn array_mut(tensor: &mut Tensor) -> Option<&mut ArrayD<Self>>;

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

    fn array_mut(tensor: &mut Tensor) -> Option<&mut ArrayD<f32>> {
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

    fn array_mut(tensor: &mut Tensor) -> Option<&mut ArrayD<f64>> {
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
    ///
    /// # Panics
    /// If the shape has more than `isize::MAX` elements (as ndarray does); the runs that make
    /// tensors from sizes they are given check them against memory first
    /// ([`crate::ir::memory::ensure_available`]).
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

    /// True if the elements are row-major and contiguous, as compiled graphs read them.
    pub fn is_standard_layout(&self) -> bool {
        match self {
            Tensor::F32(a) => a.is_standard_layout(),
            Tensor::F64(a) => a.is_standard_layout(),
        }
    }

    /// A row-major, contiguous copy.
    pub fn to_standard_layout(&self) -> Tensor {
        match self {
            Tensor::F32(a) => Tensor::F32(a.as_standard_layout().into_owned()),
            Tensor::F64(a) => Tensor::F64(a.as_standard_layout().into_owned()),
        }
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

    /// The index of the first NaN or infinity, in row-major order.
    pub fn first_non_finite(&self) -> Option<Vec<usize>> {
        let index = match self {
            Tensor::F32(a) => a.indexed_iter().find(|(_, v)| !v.is_finite())?.0,
            Tensor::F64(a) => a.indexed_iter().find(|(_, v)| !v.is_finite())?.0,
        };
        Some(ndarray::Dimension::slice(&index).to_vec())
    }

    /// The value of a one-element tensor.
    pub fn scalar_value(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.to_f64_vec()[0])
    }

    /// Compares two tensors element by element (see [`Comparison`] for what is measured).
    ///
    /// Non-finite values are compared exactly: NaN matches only NaN, and ±∞ only the same
    /// infinity. A pair of finite values `a`, `b` has the relative error
    /// `|a − b| / max(|a|, |b|, floor)` (0 when `a == b`, so +0 matches −0), where `floor` keeps
    /// values near zero from turning rounding noise into large relative errors.
    ///
    /// ```
    /// use sgn::ir::tensor::{Floor, Tensor};
    /// use sgn::ir::DType;
    ///
    /// let a = Tensor::from_f64(DType::F64, &[3], vec![1.0, 1e-20, f64::INFINITY]).unwrap();
    /// let b = Tensor::from_f64(DType::F64, &[3], vec![1.0 + 1e-13, 0.0, f64::INFINITY]).unwrap();
    /// // Relative to each element (no floor) 1e-20 against 0 is a 100% error ...
    /// assert_eq!(a.compare(&b, Floor::Absolute(0.0)).max_error(), 1.0);
    /// // ... but 1e-11 against a floor of 1e-9 of the largest value.
    /// assert!(a.compare(&b, Floor::OfLargest(1e-9)).within(1e-10));
    /// // An infinity against a finite value is a mismatch whatever the tolerance.
    /// let c = Tensor::from_f64(DType::F64, &[3], vec![1.0, 1e-20, 1e308]).unwrap();
    /// let comparison = a.compare(&c, Floor::OfLargest(1.0));
    /// assert!(!comparison.within(f64::MAX));
    /// assert_eq!(comparison.to_string(), "non-finite mismatch at [2]: inf vs 1e308");
    /// ```
    pub fn compare(&self, other: &Tensor, floor: Floor) -> Comparison {
        let mut comparison = Comparison {
            shapes: (self.shape().to_vec(), other.shape().to_vec()),
            floor: 0.0,
            non_finite_mismatch: None,
            worst: None,
        };
        if self.shape() != other.shape() {
            return comparison;
        }
        let (a, b) = (self.to_f64_vec(), other.to_f64_vec());
        comparison.floor = match floor {
            Floor::Absolute(floor) => floor,
            Floor::OfLargest(fraction) => {
                let largest = a
                    .iter()
                    .chain(&b)
                    .filter(|x| x.is_finite())
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                fraction * largest
            }
        };
        let element = |flat: usize, x: f64, y: f64, error: f64| Position {
            index: unravel(flat, self.shape()),
            values: (x, y),
            error,
        };
        let mut worst = 0.0;
        for (flat, (&x, &y)) in a.iter().zip(&b).enumerate() {
            let error = relative_error(x, y, comparison.floor);
            if error == f64::INFINITY && !(x.is_finite() && y.is_finite()) {
                comparison.non_finite_mismatch = Some(element(flat, x, y, error));
                return comparison;
            }
            if error > worst {
                worst = error;
                comparison.worst = Some(element(flat, x, y, error));
            }
        }
        comparison
    }
}

/// The relative error of [`Tensor::compare`] for one pair: `|a − b| / max(|a|, |b|, floor)` for
/// finite values (0 when `a == b`), 0 for two NaNs or the same infinity, infinite for any other
/// pair with a non-finite value.
pub fn relative_error(a: f64, b: f64, floor: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else if a.is_finite() && b.is_finite() {
        // Scaled first, so that the difference of values near ±f64::MAX does not overflow.
        let scale = a.abs().max(b.abs()).max(floor);
        (a / scale - b / scale).abs()
    } else {
        f64::INFINITY
    }
}

/// The scale below which [`Tensor::compare`] measures differences absolutely: the denominator
/// of a relative error is never smaller than the floor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Floor {
    /// A fixed magnitude (`Absolute(0.0)`: a purely elementwise relative error).
    Absolute(f64),
    /// This fraction of the largest finite magnitude in either tensor. `OfLargest(1.0)` measures
    /// every difference against that largest magnitude (a norm-relative error), the right scale
    /// for values that are sums of terms of that size (a matmul, a reduction) or computed with
    /// an absolute error (finite differences): near zero their rounding is not relative to the
    /// value itself.
    OfLargest(f64),
}

/// The outcome of [`Tensor::compare`]: where two tensors differ most, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The two shapes; values are compared only when they are equal.
    pub shapes: (Vec<usize>, Vec<usize>),
    /// The absolute floor the relative errors used.
    pub floor: f64,
    /// The first position (row-major) where the tensors disagree on a non-finite value: NaN
    /// against a number, or an infinity against a finite value or the other infinity.
    pub non_finite_mismatch: Option<Position>,
    /// The largest relative error among positions where both values are finite (the first
    /// such position on ties), if any pair differs.
    pub worst: Option<Position>,
}

/// One position of a [`Comparison`].
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    /// The index along each axis.
    pub index: Vec<usize>,
    /// The value in the tensor compared, and in the other.
    pub values: (f64, f64),
    /// The relative error there (infinite for a non-finite mismatch).
    pub error: f64,
}

impl Comparison {
    /// The largest relative error: infinite when the shapes differ or non-finite values do
    /// not match, 0 when the tensors are equal.
    pub fn max_error(&self) -> f64 {
        if self.shapes.0 != self.shapes.1 || self.non_finite_mismatch.is_some() {
            f64::INFINITY
        } else {
            self.worst.as_ref().map_or(0.0, |w| w.error)
        }
    }

    /// True if the shapes and the non-finite values match and every relative error is at most
    /// `tolerance`.
    pub fn within(&self, tolerance: f64) -> bool {
        self.max_error() <= tolerance
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shapes.0 != self.shapes.1 {
            return write!(
                f,
                "shapes differ: {:?} vs {:?}",
                self.shapes.0, self.shapes.1
            );
        }
        if let Some(m) = &self.non_finite_mismatch {
            return write!(
                f,
                "non-finite mismatch at {:?}: {:e} vs {:e}",
                m.index, m.values.0, m.values.1
            );
        }
        match &self.worst {
            None => write!(f, "equal"),
            Some(w) => write!(
                f,
                "max relative error {:e} (floor {:e}) at {:?}: {:e} vs {:e}",
                w.error, self.floor, w.index, w.values.0, w.values.1
            ),
        }
    }
}

/// The index along each axis of row-major position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &n) in shape.iter().enumerate().rev() {
        index[i] = flat % n;
        flat /= n;
    }
    index
}
