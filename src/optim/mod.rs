//! Optimizers: SGN (truncated CG on the damped Gauss-Newton system, Levenberg-Marquardt damping,
//! Armijo backtracking) and the first-order baselines SGD and Adam, behind one trait.
//!
//! Optimizers see the model only through [`Objective`] — loss, gradient and Gauss-Newton products
//! on the current mini-batch, on a flat parameter vector — so they are plain numerics, tested on
//! quadratics, and the driver decides how parameters are laid out.

pub mod adam;
pub mod cg;
pub mod checkpoint;
pub mod collective;
mod feed;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod objective;
pub mod record;
pub mod report;
pub mod sgd;
pub mod sgn;
pub mod train;
pub mod vector;

pub use crate::compile::ParamLayout;
pub use adam::{Adam, AdamOptions};
pub use cg::{CgOptions, CgResult, CgStop};
pub use objective::ModelObjective;
pub use record::{Record, RecordKind};
pub use sgd::{Sgd, SgdOptions};
pub use sgn::{Damping, EarlyCg, Sgn, SgnOptions};
pub use train::{StopRule, TrainEvent, TrainOptions, Trainer};

use crate::Result;
use std::collections::BTreeMap;

/// The training objective on the current mini-batch, as the optimizers see it.
///
/// A compiled model's is [`ModelObjective`]; any other objective works as well. Here
/// `L(θ) = ½ Σ cᵢ (θᵢ − 1)²`, whose Gauss-Newton matrix is `diag(c)`, minimized by one SGN step:
///
/// ```
/// use sgn::optim::{Objective, Optimizer, Sgn, SgnOptions};
///
/// struct Bowl {
///     c: Vec<f64>,
/// }
///
/// impl Objective for Bowl {
///     fn dim(&self) -> usize {
///         self.c.len()
///     }
///     fn loss(&mut self, theta: &[f64]) -> sgn::Result<f64> {
///         Ok(theta.iter().zip(&self.c).map(|(t, c)| 0.5 * c * (t - 1.0).powi(2)).sum())
///     }
///     fn loss_and_grad(&mut self, theta: &[f64]) -> sgn::Result<(f64, Vec<f64>)> {
///         let grad = theta.iter().zip(&self.c).map(|(t, c)| c * (t - 1.0)).collect();
///         Ok((self.loss(theta)?, grad))
///     }
///     fn prepare_gv(&mut self, _theta: &[f64]) -> sgn::Result<()> {
///         Ok(()) // G does not depend on θ
///     }
///     fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> sgn::Result<()> {
///         out.clear();
///         out.extend(v.iter().zip(&self.c).map(|(v, c)| c * v));
///         Ok(())
///     }
/// }
///
/// let mut bowl = Bowl { c: vec![1.0, 10.0, 100.0] };
/// let mut theta = vec![0.0; bowl.dim()];
/// let report = Sgn::new(SgnOptions::default()).step(&mut theta, &mut bowl)?;
/// assert!(report.accepted);
/// assert_eq!(report.loss, 55.5); // at θ = 0
/// // (G + ρI) d = −g with ρ = 1e-4: θ is 1 up to the damping.
/// assert!(theta.iter().all(|t| (t - 1.0).abs() < 1e-3), "{theta:?}");
/// assert!(bowl.loss(&theta)? < 1e-6);
/// # Ok::<(), sgn::Error>(())
/// ```
pub trait Objective {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// `L(θ)`.
    fn loss(&mut self, theta: &[f64]) -> Result<f64>;
    /// `L(θ)` and `∇L(θ)`.
    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)>;
    /// Prepares Gauss-Newton products at `θ`: the v-independent work, once per step. SGN asks
    /// for it through [`Objective::loss_grad_and_prepare_gv`], whose default calls this.
    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()>;
    /// [`Objective::loss_and_grad`] and [`Objective::prepare_gv`] at the same `θ`, which an
    /// implementation may do in one pass (a compiled model runs their shared forward pass once).
    fn loss_grad_and_prepare_gv(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let value = self.loss_and_grad(theta)?;
        self.prepare_gv(theta)?;
        Ok(value)
    }
    /// `G v` at the `θ` last prepared, written into `out` (resized to [`Objective::dim`]; CG
    /// passes the same buffer every iteration).
    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()>;
    /// The products of [`Objective::gv`] as CG iterates with them. By default on flat vectors;
    /// a compiled model keeps CG's direction in its own direction tensors instead.
    fn cg_operator(&mut self) -> Box<dyn cg::CgOperator + '_> {
        let vectors = self.vectors();
        Box::new(cg::FlatOperator::new(
            move |v: &[f64], out: &mut Vec<f64>| self.gv(v, out),
            vectors,
        ))
    }
    /// Where the optimizer's vector passes run: by default on the calling thread alone; a
    /// compiled model's on its graphs' threads.
    fn vectors(&self) -> vector::Vectors {
        vector::Vectors::serial()
    }
}

/// What one optimizer step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The loss at the parameters the step started from.
    pub loss: f64,
    /// Whether the parameters changed.
    pub accepted: bool,
    /// The damping after the step (SGN only).
    pub rho: Option<f64>,
    /// CG iterations (SGN only).
    pub cg_iters: usize,
    /// The fraction of the computed step that was taken (SGN's line search; 1 for SGD/Adam).
    pub step_size: f64,
    /// Set when the step was rejected because something was not finite: says what.
    pub non_finite: Option<NonFiniteValue>,
}

/// What was not finite when a step was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFiniteValue {
    /// The loss at the parameters the step started from.
    Loss,
    /// The gradient there.
    Gradient,
    /// The step computed from them (SGN's CG solution, its slope or curvature), or parameters
    /// it made non-finite (past f32's range): too little damping, or too large a learning rate,
    /// can give one at parameters where the loss and gradient are finite.
    Step,
}

impl NonFiniteValue {
    /// True if the value was computed at the parameters the step started from (before any step
    /// was taken), so that no step size or damping could have avoided it.
    pub fn at_the_parameters(self) -> bool {
        match self {
            NonFiniteValue::Loss | NonFiniteValue::Gradient => true,
            NonFiniteValue::Step => false,
        }
    }
}

impl std::fmt::Display for NonFiniteValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            NonFiniteValue::Loss => "loss",
            NonFiniteValue::Gradient => "gradient",
            NonFiniteValue::Step => "step",
        };
        write!(f, "non-finite {what}")
    }
}

/// Named flat vectors (scalars are one-element vectors): an optimizer's state for checkpoints,
/// which store entry `rho` as the tensor `optimizer.rho`.
pub type OptimizerState = BTreeMap<String, Vec<f64>>;

/// A training algorithm.
///
/// Optimizers are used through this trait (the [`Trainer`] holds a `Box<dyn Optimizer>`). Its
/// state is what a checkpoint keeps: an optimizer restored from it continues exactly as the
/// original would.
///
/// ```
/// use sgn::optim::{Adam, AdamOptions, ModelObjective, Optimizer};
/// use sgn::optim::{Sgd, SgdOptions, Sgn, SgnOptions};
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
/// use sgn::{CompileOptions, Model};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = zeros\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// let mut batch = TensorMap::new();
/// let x = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.5];
/// batch.insert("x", Tensor::from_f64(DType::F32, &[4, 2], x).expect("4×2 values"));
/// let y = vec![2.0, -1.0, 1.0, -2.5]; // y = 2·x₀ − x₁
/// batch.insert("y", Tensor::from_f64(DType::F32, &[4, 1], y).expect("4 values"));
/// let start = compiled.layout().flatten(&init_params(&model.params, 0)?)?;
///
/// let optimizers: Vec<Box<dyn Optimizer>> = vec![
///     Box::new(Sgn::new(SgnOptions::default())),
///     Box::new(Sgd::new(SgdOptions::default())),
///     Box::new(Adam::new(AdamOptions::default())),
/// ];
/// for mut optimizer in optimizers {
///     let mut objective = ModelObjective::new(&compiled, &batch);
///     let mut theta = start.clone();
///     let first = optimizer.step(&mut theta, &mut objective)?;
///     let second = optimizer.step(&mut theta, &mut objective)?;
///     assert!(second.loss < first.loss, "{}", optimizer.name());
///
///     // A fresh optimizer given the saved state takes the same next step.
///     let saved = optimizer.state();
///     let mut resumed: Box<dyn Optimizer> = match optimizer.name() {
///         "sgn" => Box::new(Sgn::new(SgnOptions::default())),
///         "sgd" => Box::new(Sgd::new(SgdOptions::default())),
///         _ => Box::new(Adam::new(AdamOptions::default())),
///     };
///     resumed.restore(&saved, theta.len())?;
///     let mut theta2 = theta.clone();
///     optimizer.step(&mut theta, &mut objective)?;
///     resumed.step(&mut theta2, &mut objective)?;
///     assert_eq!(theta, theta2);
/// }
/// # Ok::<(), sgn::Error>(())
/// ```
///
/// A state of another optimizer, or a damaged one, is refused with a message naming the entry:
///
/// ```
/// use sgn::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
///
/// let sgd_state = Sgd::new(SgdOptions::default()).state();
/// let err = Adam::new(AdamOptions::default()).restore(&sgd_state, 2).unwrap_err();
/// assert!(err.to_string().contains("optimizer.first_moment"), "{err}");
/// ```
pub trait Optimizer {
    /// Its name, as on the command line.
    fn name(&self) -> &'static str;
    /// Errors ([`Error::Options`](crate::Error::Options)) if an option is out of its range,
    /// naming it; [`Trainer::new`] asks before training and each step before it changes anything.
    /// By default every option is valid.
    fn validate(&self) -> Result<()> {
        Ok(())
    }
    /// One step on the current mini-batch; on rejection `theta` is left unchanged.
    fn step(&mut self, theta: &mut [f64], objective: &mut dyn Objective) -> Result<StepReport>;
    /// The state a resumed run needs to continue exactly.
    fn state(&self) -> OptimizerState;
    /// Restores a state saved by [`Optimizer::state`] for `dim` parameters, checking it first:
    /// every entry present with a valid length (per-parameter vectors have `dim` values, or
    /// none before the first step that makes them), every value finite and in its range, no
    /// unknown entry. On error (naming the entry) the optimizer is unchanged.
    fn restore(&mut self, state: &OptimizerState, dim: usize) -> Result<()>;
}

/// The first of `checks` — an option's name, its value, whether the value is in range, and the
/// range in words — that fails, as an error naming `optimizer`'s option.
fn check_options(optimizer: &str, checks: &[(&str, f64, bool, &str)]) -> Result<()> {
    match checks.iter().find(|(_, _, valid, _)| !valid) {
        Some((option, value, _, range)) => Err(crate::Error::Options(format!(
            "{optimizer} option {option} is {value}; it must be {range}"
        ))),
        None => Ok(()),
    }
}

/// `x` in `[0, 1)`.
fn below_one(x: f64) -> bool {
    (0.0..1.0).contains(&x)
}

/// `x` finite and > 0 (as a state entry of [`Values::Positive`]).
fn positive(x: f64) -> bool {
    Values::Positive.admits(x)
}

/// What values a saved state entry may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    Finite,
    NonNegative,
    Positive,
    /// A whole number ≥ 0 (a step count), exact in f64.
    Count,
}

impl Values {
    fn admits(self, x: f64) -> bool {
        x.is_finite()
            && match self {
                Values::Finite => true,
                Values::NonNegative => x >= 0.0,
                Values::Positive => x > 0.0,
                Values::Count => x >= 0.0 && x.fract() == 0.0 && x <= (1u64 << 53) as f64,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Values::Finite => "finite",
            Values::NonNegative => "finite and >= 0",
            Values::Positive => "finite and > 0",
            Values::Count => "a whole number >= 0",
        }
    }
}

/// Reads the entries of a saved [`OptimizerState`], checking each, so that a damaged
/// checkpoint is an error naming the entry (`optimizer.rho`) instead of a run that resumes from
/// wrong state.
pub(crate) struct StateReader<'a> {
    state: &'a OptimizerState,
    dim: usize,
    read: Vec<&'static str>,
}

impl<'a> StateReader<'a> {
    /// A reader of `state` for an optimizer of `dim` parameters.
    pub fn new(state: &'a OptimizerState, dim: usize) -> StateReader<'a> {
        StateReader {
            state,
            dim,
            read: Vec::new(),
        }
    }

    /// A one-value entry.
    pub fn scalar(&mut self, name: &'static str, values: Values) -> Result<f64> {
        Ok(self.entry(name, values, &[1])?[0])
    }

    /// A one-value entry that checkpoints of an earlier version lack: `default` there.
    pub fn scalar_or(&mut self, name: &'static str, values: Values, default: f64) -> Result<f64> {
        if self.state.contains_key(name) {
            self.scalar(name, values)
        } else {
            self.read.push(name);
            Ok(default)
        }
    }

    /// A per-parameter entry: one value per parameter, or none (not made yet).
    pub fn vector(&mut self, name: &'static str, values: Values) -> Result<&'a [f64]> {
        self.entry(name, values, &[0, self.dim])
    }

    fn entry(
        &mut self,
        name: &'static str,
        values: Values,
        lengths: &[usize],
    ) -> Result<&'a [f64]> {
        self.read.push(name);
        let invalid =
            |why: String| crate::Error::Tensor(format!("optimizer state 'optimizer.{name}' {why}"));
        let value = self
            .state
            .get(name)
            .ok_or_else(|| invalid("is missing".to_string()))?;
        if !lengths.contains(&value.len()) {
            let expected: Vec<String> = lengths.iter().map(usize::to_string).collect();
            return Err(invalid(format!(
                "has {} values, expected {}",
                value.len(),
                expected.join(" or ")
            )));
        }
        if let Some((i, x)) = value.iter().enumerate().find(|(_, x)| !values.admits(**x)) {
            return Err(invalid(format!(
                "holds {x} at index {i}; its values must be {}",
                values.describe()
            )));
        }
        Ok(value)
    }

    /// Errors if the state has an entry that was not read (a state of another optimizer or
    /// version).
    pub fn finish(self) -> Result<()> {
        match self.state.keys().find(|k| !self.read.contains(&k.as_str())) {
            Some(unknown) => Err(crate::Error::Tensor(format!(
                "optimizer state 'optimizer.{unknown}' is not part of this optimizer's state \
                 (expected: {})",
                self.read.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `L(θ) = ½ θᵀAθ − bᵀθ` with an SPD `A`; its Gauss-Newton matrix is `A` (times `gv_scale`,
    /// to simulate a model that misjudges curvature).
    pub struct Quadratic {
        a: Vec<Vec<f64>>,
        b: Vec<f64>,
        pub gv_scale: f64,
        pub poison_grad: bool,
    }

    impl Quadratic {
        pub fn new(n: usize) -> Quadratic {
            let a = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| {
                            if i == j {
                                2.0 + i as f64
                            } else {
                                0.5 / (1.0 + (i + j) as f64)
                            }
                        })
                        .collect()
                })
                .collect();
            let b = (0..n).map(|i| 1.0 + i as f64 * 0.5).collect();
            Quadratic {
                a,
                b,
                gv_scale: 1.0,
                poison_grad: false,
            }
        }

        fn a_times(&self, v: &[f64]) -> Vec<f64> {
            self.a.iter().map(|row| vector::dot(row, v)).collect()
        }

        /// θ* = A⁻¹ b.
        pub fn minimizer(&self) -> Vec<f64> {
            self.damped_solve(0.0)
        }

        /// The solution of (A + ρI) x = b by Gaussian elimination with partial pivoting: a
        /// direct solve, independent of the CG the optimizers use.
        pub fn damped_solve(&self, rho: f64) -> Vec<f64> {
            let n = self.b.len();
            let mut m: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let mut row = self.a[i].clone();
                    row[i] += rho;
                    row.push(self.b[i]);
                    row
                })
                .collect();
            for col in 0..n {
                let pivot = (col..n)
                    .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
                    .unwrap();
                m.swap(col, pivot);
                let (upper, lower) = m.split_at_mut(col + 1);
                let pivot_row = &upper[col];
                for row in lower {
                    let factor = row[col] / pivot_row[col];
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= factor * p;
                    }
                }
            }
            let mut x = vec![0.0; n];
            for row in (0..n).rev() {
                let tail: f64 = (row + 1..n).map(|k| m[row][k] * x[k]).sum();
                x[row] = (m[row][n] - tail) / m[row][row];
            }
            x
        }
    }

    impl Objective for Quadratic {
        fn dim(&self) -> usize {
            self.b.len()
        }
        fn loss(&mut self, theta: &[f64]) -> Result<f64> {
            Ok(0.5 * vector::dot(theta, &self.a_times(theta)) - vector::dot(&self.b, theta))
        }
        fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
            let mut grad: Vec<f64> = self
                .a_times(theta)
                .iter()
                .zip(&self.b)
                .map(|(a, b)| a - b)
                .collect();
            if self.poison_grad {
                grad[0] = f64::NAN;
            }
            Ok((self.loss(theta)?, grad))
        }
        fn prepare_gv(&mut self, _theta: &[f64]) -> Result<()> {
            Ok(())
        }
        fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
            *out = self.a_times(v).iter().map(|x| x * self.gv_scale).collect();
            Ok(())
        }
    }
}
