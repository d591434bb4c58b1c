//! How image datasets turn pixel bytes into features: divided by 255, or standardized image by
//! image as the SGN paper's CNNs are trained.

use super::parse_named;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// How the pixels (bytes 0–255) of an image dataset become features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PixelScale {
    /// Each pixel divided by 255, so features lie in [0, 1] (the SGN paper's MNIST MLP).
    #[default]
    Unit,
    /// Each channel of each image minus its own mean, divided by its own standard deviation (the
    /// population one, over the channel's pixels), as the SGN paper's CNNs are trained: every
    /// image channel then has mean 0 and standard deviation 1. The standard deviation is floored
    /// at 1/n grey levels (n pixels per channel), which is below that of any channel whose pixels
    /// are not all equal (whole grey levels that differ make it at least √(n−1)/n); so only a
    /// constant channel meets the floor, and it becomes all zeros instead of NaN.
    Standardized,
}

impl PixelScale {
    /// Both choices, in the order they are listed to users.
    pub const ALL: [PixelScale; 2] = [PixelScale::Unit, PixelScale::Standardized];

    /// The name users type: `unit` or `standardized`.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelScale::Unit => "unit",
            PixelScale::Standardized => "standardized",
        }
    }

    /// The features of `pixels`, a whole number of planes of `plane` pixels each (one plane per
    /// channel of each image, channel-major as in NCHW): scaled as `self` says, plane by plane.
    ///
    /// ```
    /// use sgn::data::PixelScale;
    ///
    /// // One image of two channels of two pixels each.
    /// let pixels = [0, 255, 7, 7];
    /// assert_eq!(PixelScale::Unit.features(&pixels, 2), [0.0, 1.0, 7.0 / 255.0, 7.0 / 255.0]);
    /// // Standardized: channel 0 becomes [-1, 1]; the constant channel 1 becomes zeros.
    /// assert_eq!(PixelScale::Standardized.features(&pixels, 2), [-1.0, 1.0, 0.0, 0.0]);
    /// ```
    ///
    /// # Panics
    /// If `plane` is 0 or does not divide `pixels.len()` (the callers derive both from checked
    /// image dimensions).
    pub fn features(self, pixels: &[u8], plane: usize) -> Vec<f32> {
        assert!(
            plane > 0 && pixels.len().is_multiple_of(plane),
            "{} pixels are not a whole number of planes of {plane}",
            pixels.len()
        );
        match self {
            PixelScale::Unit => pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
            PixelScale::Standardized => pixels.chunks_exact(plane).flat_map(standardized).collect(),
        }
    }
}

/// One plane standardized by its own mean and (floored) population standard deviation, computed
/// in f64 from the exact integer sums.
fn standardized(plane: &[u8]) -> impl Iterator<Item = f32> + '_ {
    let n = plane.len() as f64;
    let mean = plane.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
    let variance = plane
        .iter()
        .map(|&p| (f64::from(p) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = variance.sqrt().max(1.0 / n);
    plane
        .iter()
        .map(move |&p| ((f64::from(p) - mean) / std) as f32)
}

impl fmt::Display for PixelScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PixelScale {
    type Err = Error;

    /// Parses `unit` or `standardized`; anything else is an error that lists both.
    fn from_str(name: &str) -> Result<PixelScale> {
        parse_named(
            &PixelScale::ALL,
            name,
            PixelScale::as_str,
            "pixel scaling",
            "pixel scalings",
        )
    }
}
