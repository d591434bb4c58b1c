//! Feature standardization with training-split statistics: fitted on the train split, applied
//! to both splits, and kept (in checkpoints) so that evaluation applies the same transform.

use super::data_error;
use crate::Result;
use ndarray::{Array1, Array2, Axis};

/// Each feature column's mean and population standard deviation over a training split, applied
/// as `(x − mean) / std`. A constant column is only centred (its `std` is stored as 1).
///
/// ```
/// use ndarray::array;
/// use sgn::data::Standardization;
///
/// # fn main() -> sgn::Result<()> {
/// let mut train = array![[1.0f32, 5.0], [3.0, 5.0]];
/// let fitted = Standardization::fit(&train)?;
/// assert_eq!((fitted.mean.to_vec(), fitted.std.to_vec()), (vec![2.0, 5.0], vec![1.0, 1.0]));
/// fitted.apply(&mut train, "train")?;
/// assert_eq!(train, array![[-1.0, 0.0], [1.0, 0.0]]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Standardization {
    /// Each column's mean.
    pub mean: Array1<f32>,
    /// Each column's standard deviation (1 for a constant column).
    pub std: Array1<f32>,
}

impl Standardization {
    /// The statistics of the columns of `features`, which must have at least one row.
    ///
    /// Errors: no rows, or statistics beyond f32's range (values near f32's largest).
    pub fn fit(features: &Array2<f32>) -> Result<Standardization> {
        // In f64, so that large values do not overflow the sums.
        let wide = features.mapv(f64::from);
        let mean = wide.mean_axis(Axis(0)).ok_or_else(|| {
            data_error("standardizing needs at least one training example, found none".into())
        })?;
        let std = wide.std_axis(Axis(0), 0.0);
        let too_large = |v: &f64| !(*v as f32).is_finite();
        if let Some(column) = mean
            .iter()
            .position(too_large)
            .or(std.iter().position(too_large))
        {
            return Err(data_error(format!(
                "feature column {column} is too large to standardize in f32"
            )));
        }
        Ok(Standardization {
            mean: mean.mapv(|m| m as f32),
            std: std.mapv(|s| if s > 0.0 { s as f32 } else { 1.0 }),
        })
    }

    /// Why these statistics cannot standardize anything, if they cannot: `mean` and `std` of
    /// different lengths, a non-finite mean, or a deviation that is not finite and > 0 (what
    /// [`Standardization::fit`] never gives, but a damaged checkpoint or a library caller may).
    pub fn invalid(&self) -> Option<String> {
        if self.mean.len() != self.std.len() {
            return Some(format!(
                "{} means but {} deviations",
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some(column) = self.mean.iter().position(|m| !m.is_finite()) {
            return Some(format!("column {column}'s mean is {}", self.mean[column]));
        }
        let deviation = |s: &f32| s.is_finite() && *s > 0.0;
        let column = self.std.iter().position(|s| !deviation(s))?;
        Some(format!(
            "column {column}'s standard deviation is {}, not finite and > 0",
            self.std[column]
        ))
    }

    /// Standardizes the columns of `features` in place; `what` names them in the error when
    /// their number is not the fitted one.
    ///
    /// Errors: that, and statistics that are [`invalid`](Standardization::invalid).
    pub fn apply(&self, features: &mut Array2<f32>, what: &str) -> Result<()> {
        if let Some(why) = self.invalid() {
            return Err(data_error(format!("cannot standardize {what}: {why}")));
        }
        if features.ncols() != self.mean.len() {
            return Err(data_error(format!(
                "{what} has {} feature columns, but the standardization was fitted on {}",
                features.ncols(),
                self.mean.len()
            )));
        }
        *features -= &self.mean;
        *features /= &self.std;
        Ok(())
    }
}
