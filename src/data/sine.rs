//! The synthetic regression of the SGN paper: y = sin(f·x) + ε with ε ~ N(0, σ²).

use super::{Dataset, Split, data_error, seeded_rng};
use crate::Result;
use ndarray::Array2;
use rand::RngExt;
use rand_distr::StandardNormal;

/// Separates the sine stream from the other seeded streams of the data module.
const SINE_STREAM: &[u8; 8] = b"sine\0\0\0\0";

/// How to generate the sine set. The defaults are the SGN paper's: f = 10, σ = 0.01, 7000 train
/// and 3000 test examples (the paper also uses f = 100).
///
/// Each example draws x uniformly from [−1, 1] and then the noise, from one ChaCha8 stream
/// keyed by `seed`: the train examples first, then the test ones, so the same options always
/// give the same data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SineOptions {
    /// The frequency f.
    pub frequency: f64,
    /// The standard deviation σ of the additive Gaussian noise.
    pub noise_std: f64,
    /// Number of train examples.
    pub train_size: usize,
    /// Number of test examples.
    pub test_size: usize,
    /// The seed of the data (independent of training seeds).
    pub seed: u64,
}

impl Default for SineOptions {
    fn default() -> SineOptions {
        SineOptions {
            frequency: 10.0,
            noise_std: 0.01,
            train_size: 7000,
            test_size: 3000,
            seed: 0,
        }
    }
}

/// The sine dataset for `options`: one feature x and one target y per example.
pub(crate) fn generate(options: &SineOptions) -> Result<Dataset> {
    let SineOptions {
        frequency,
        noise_std,
        train_size,
        test_size,
        seed,
    } = *options;
    if !frequency.is_finite() {
        return Err(data_error(format!(
            "sine: the frequency must be finite, not {frequency}"
        )));
    }
    if !(noise_std.is_finite() && noise_std >= 0.0) {
        return Err(data_error(format!(
            "sine: the noise standard deviation must be finite and non-negative, not {noise_std}"
        )));
    }
    if train_size == 0 || test_size == 0 {
        return Err(data_error(format!(
            "sine: both splits need examples, got {train_size} train and {test_size} test"
        )));
    }
    // x and y, f32 each, per example; checked before anything is reserved.
    let bytes = (train_size as u64)
        .checked_add(test_size as u64)
        .and_then(|n| n.checked_mul(8));
    crate::ir::memory::ensure_available(bytes, || {
        format!("sine: a dataset of {train_size} train and {test_size} test examples")
    })?;
    let mut rng = seeded_rng(seed, 0, SINE_STREAM);
    let mut split = |size: usize| {
        let mut xs = Vec::with_capacity(size);
        let mut ys = Vec::with_capacity(size);
        for _ in 0..size {
            // Rounded to f32 before use, so that y is the function of the x the model sees.
            let x = rng.random_range(-1.0..=1.0f64) as f32;
            let noise: f64 = rng.sample(StandardNormal);
            xs.push(x);
            ys.push(((frequency * f64::from(x)).sin() + noise_std * noise) as f32);
        }
        let column = |values| Array2::from_shape_vec((size, 1), values).expect("one per example");
        Split {
            features: column(xs),
            targets: column(ys),
        }
    };
    let train = split(train_size);
    let test = split(test_size);
    Ok(Dataset {
        name: format!("sine (f = {})", super::shown(frequency)),
        train,
        test,
        num_classes: None,
        target_scale: 1.0,
        image: None,
        standardization: None,
    })
}
