//! The stochastic generalized Gauss-Newton method.
//!
//! Each step, on one mini-batch: `g = ∇L(θ)` and `G` prepared at `θ` (together: a compiled
//! model runs one graph for both); `d ≈ argmin q(d)` with `q(d) = gᵀd + ½ dᵀ(G + ρI)d` by
//! truncated CG on the objective's [`cg::CgOperator`]; Armijo backtracking on the same batch; a
//! Levenberg-Marquardt update of `ρ` from the ratio of actual to predicted reduction.

use super::cg::{self, CgOptions};
use super::{
    NonFiniteValue, Objective, Optimizer, OptimizerState, StateReader, StepReport, Values,
};
use crate::Result;

/// How the damping ρ evolves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Damping {
    /// Levenberg-Marquardt: with `r` = actual / predicted reduction, `r < ¼` → `ρ ← 1.5ρ`,
    /// `r > ¾` → `ρ ← max(⅔ρ, ρ_min)`.
    LevenbergMarquardt,
    /// ρ stays at its initial value (rejected steps still leave θ unchanged).
    Fixed,
}

/// A different CG cap for the first steps of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EarlyCg {
    /// Steps (accepted or not) that use `max_iters`.
    pub steps: u64,
    pub max_iters: usize,
}

/// SGN's options. The defaults are the paper's: `x₀ = 0`, `ρ₀ = 1e-4`, `ρ_min = 1e-6`,
/// Levenberg-Marquardt damping, Armijo backtracking (`c = 1e-4`, halving, at most 10 tries), and
/// 10 CG iterations; [`SgnOptions::paper`] adds the authors' CG stopping rules. The step size is
/// never a user setting.
#[derive(Clone, Debug, PartialEq)]
pub struct SgnOptions {
    pub cg: CgOptions,
    /// The first steps' CG cap, if it differs from `cg.max_iters`.
    pub early_cg: Option<EarlyCg>,
    pub rho0: f64,
    pub rho_min: f64,
    pub damping: Damping,
    /// Armijo backtracking on the same batch; without it the full CG step is tried once.
    pub line_search: bool,
    /// Armijo's sufficient-decrease constant.
    pub armijo_c: f64,
    /// Line-search tries (the step halves after each failed one).
    pub max_tries: usize,
    /// Warm start CG from this multiple of the previous step's solution (Martens 2010 uses
    /// 0.95); `None` starts from 0 as the paper does.
    pub warm_start: Option<f64>,
    /// Diagonal preconditioner `M = (s + ρ)^α` with `s` a running average (decay 0.95) of the
    /// squared gradients, as in Martens 2010 (α = 0.75 there); `None` for plain CG.
    pub preconditioner: Option<f64>,
}

impl SgnOptions {
    /// The SGN paper's settings, as the authors' code runs them: CG stops when ‖r‖∞ ≤ 1e-6 or
    /// after `cg_iters` iterations, but the first 10 steps run up to 10; the damping and the line
    /// search are the defaults'.
    ///
    /// ```
    /// use sgn::optim::SgnOptions;
    /// let paper = SgnOptions::paper(3);
    /// assert_eq!(paper.cg.max_iters, 3);
    /// assert_eq!(paper.cg.residual_max, Some(1e-6));
    /// assert_eq!(paper.early_cg.map(|e| (e.steps, e.max_iters)), Some((10, 10)));
    /// ```
    pub fn paper(cg_iters: usize) -> SgnOptions {
        SgnOptions {
            cg: CgOptions {
                max_iters: cg_iters,
                tolerance: 0.0,
                residual_max: Some(1e-6),
            },
            early_cg: Some(EarlyCg {
                steps: 10,
                max_iters: 10,
            }),
            ..SgnOptions::default()
        }
    }

    /// The CG options of step `step` (0 for the first).
    fn cg_at(&self, step: u64) -> CgOptions {
        match self.early_cg {
            Some(early) if step < early.steps => CgOptions {
                max_iters: early.max_iters,
                ..self.cg.clone()
            },
            _ => self.cg.clone(),
        }
    }
}

impl Default for SgnOptions {
    fn default() -> SgnOptions {
        SgnOptions {
            cg: CgOptions::default(),
            early_cg: None,
            rho0: 1e-4,
            rho_min: 1e-6,
            damping: Damping::LevenbergMarquardt,
            line_search: true,
            armijo_c: 1e-4,
            max_tries: 10,
            warm_start: None,
            preconditioner: None,
        }
    }
}

/// How much a rejected step raises ρ: 1.5 as for a poor ratio, 10 after a non-finite value.
const REJECT_RAISE: f64 = 1.5;
const NON_FINITE_RAISE: f64 = 10.0;
/// Decay of the running average of squared gradients behind the preconditioner.
const SQUARED_GRAD_DECAY: f64 = 0.95;

/// The SGN optimizer (see the module docs).
///
/// One step on a linear least-squares problem, with 3 CG iterations instead of the paper's 10:
/// the Gauss-Newton model is then exact, so one step nearly reaches the minimum, and the
/// Levenberg-Marquardt rule lowers the damping after such a good step.
///
/// ```
/// use sgn::optim::{CgOptions, ModelObjective, Objective, Optimizer, Sgn, SgnOptions};
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
/// let mut theta = compiled.layout().flatten(&init_params(&model.params, 0)?)?; // w = 0
///
/// let options = SgnOptions {
///     cg: CgOptions { max_iters: 3, ..CgOptions::default() },
///     ..SgnOptions::default()
/// };
/// let mut sgn = Sgn::new(options);
/// assert_eq!(sgn.rho(), 1e-4); // ρ₀
/// let mut objective = ModelObjective::new(&compiled, &batch);
/// let report = sgn.step(&mut theta, &mut objective)?;
/// assert!(report.accepted && report.step_size == 1.0);
/// assert!(report.cg_iters <= 3);
/// assert!(objective.loss(&theta)? < 1e-6 * report.loss);
/// assert!((theta[0] - 2.0).abs() < 1e-3 && (theta[1] + 1.0).abs() < 1e-3);
/// assert!(sgn.rho() < 1e-4 && report.rho == Some(sgn.rho()));
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgn {
    pub options: SgnOptions,
    rho: f64,
    /// Steps taken, accepted or not.
    steps: u64,
    previous_step: Vec<f64>,
    squared_grad: Vec<f64>,
}

impl Sgn {
    pub fn new(options: SgnOptions) -> Sgn {
        Sgn {
            rho: options.rho0,
            steps: 0,
            options,
            previous_step: Vec::new(),
            squared_grad: Vec::new(),
        }
    }

    /// The current damping.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    fn raise(&mut self, factor: f64) {
        if self.options.damping == Damping::LevenbergMarquardt {
            self.rho *= factor;
        }
    }

    fn rejected(
        &mut self,
        loss: f64,
        cg_iters: usize,
        factor: f64,
        non_finite: Option<NonFiniteValue>,
    ) -> StepReport {
        self.raise(factor);
        self.previous_step.clear();
        StepReport {
            loss,
            accepted: false,
            rho: Some(self.rho),
            cg_iters,
            step_size: 0.0,
            non_finite,
        }
    }
}

impl Optimizer for Sgn {
    fn name(&self) -> &'static str {
        "sgn"
    }

    fn validate(&self) -> Result<()> {
        let o = &self.options;
        let count = |n: usize| n as f64;
        let unit = |x: Option<f64>| x.is_none_or(|x| (0.0..=1.0).contains(&x));
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        let early_iters = o.early_cg.map_or(1, |e| e.max_iters);
        super::check_options(
            "SGN",
            &[
                ("rho0", o.rho0, super::positive(o.rho0), "finite and > 0"),
                (
                    "rho_min",
                    o.rho_min,
                    non_negative(o.rho_min),
                    "finite and >= 0",
                ),
                (
                    "armijo_c",
                    o.armijo_c,
                    o.armijo_c > 0.0 && o.armijo_c < 1.0,
                    "in (0, 1)",
                ),
                (
                    "max_tries",
                    count(o.max_tries),
                    o.max_tries >= 1,
                    "at least 1",
                ),
                (
                    "cg.max_iters",
                    count(o.cg.max_iters),
                    o.cg.max_iters >= 1,
                    "at least 1",
                ),
                (
                    "cg.tolerance",
                    o.cg.tolerance,
                    non_negative(o.cg.tolerance),
                    "finite and >= 0",
                ),
                (
                    "cg.residual_max",
                    o.cg.residual_max.unwrap_or(0.0),
                    o.cg.residual_max.is_none_or(non_negative),
                    "finite and >= 0",
                ),
                (
                    "early_cg.max_iters",
                    count(early_iters),
                    early_iters >= 1,
                    "at least 1",
                ),
                (
                    "warm_start",
                    o.warm_start.unwrap_or(0.0),
                    unit(o.warm_start),
                    "in [0, 1]",
                ),
                (
                    "preconditioner",
                    o.preconditioner.unwrap_or(0.0),
                    unit(o.preconditioner),
                    "in [0, 1]",
                ),
            ],
        )
    }

    fn step(&mut self, theta: &mut [f64], objective: &mut dyn Objective) -> Result<StepReport> {
        self.validate()?;
        let cg_options = self.options.cg_at(self.steps);
        self.steps += 1;
        let vectors = objective.vectors();
        let (loss, grad) = objective.loss_grad_and_prepare_gv(theta)?;
        if !loss.is_finite() || !vectors.all_finite(&grad) {
            let what = match loss.is_finite() {
                true => NonFiniteValue::Gradient,
                false => NonFiniteValue::Loss,
            };
            return Ok(self.rejected(loss, 0, NON_FINITE_RAISE, Some(what)));
        }
        let rho = self.rho;
        let b = vectors.scaled(&grad, -1.0);
        let x0 = match self.options.warm_start {
            Some(decay) if self.previous_step.len() == theta.len() => {
                Some(vectors.scaled(&self.previous_step, decay))
            }
            _ => None,
        };
        let preconditioner = self.options.preconditioner.map(|alpha| {
            if self.squared_grad.len() != grad.len() {
                self.squared_grad = grad.iter().map(|g| g * g).collect();
            } else {
                for (s, g) in self.squared_grad.iter_mut().zip(&grad) {
                    *s = SQUARED_GRAD_DECAY * *s + (1.0 - SQUARED_GRAD_DECAY) * g * g;
                }
            }
            self.squared_grad
                .iter()
                .map(|s| (s + rho).powf(alpha))
                .collect::<Vec<f64>>()
        });
        let solved = cg::solve(
            &mut *objective.cg_operator(),
            rho,
            &b,
            x0,
            preconditioner.as_deref(),
            &cg_options,
            &vectors,
        )?;
        let d = solved.x;
        let slope = vectors.dot(&grad, &d);
        if !vectors.all_finite(&d) || !slope.is_finite() || !solved.curvature.is_finite() {
            return Ok(self.rejected(
                loss,
                solved.iterations,
                NON_FINITE_RAISE,
                Some(NonFiniteValue::Step),
            ));
        }
        if slope >= 0.0 {
            // Not a descent direction (only possible with G ≈ 0 and g ≈ 0): nothing to gain.
            return Ok(self.rejected(loss, solved.iterations, REJECT_RAISE, None));
        }
        let tries = if self.options.line_search {
            self.options.max_tries
        } else {
            1
        };
        let mut alpha = 1.0;
        let mut accepted = None;
        for _ in 0..tries {
            let trial = vectors.added(theta, alpha, &d);
            let trial_loss = objective.loss(&trial)?;
            if trial_loss.is_finite() && trial_loss <= loss + self.options.armijo_c * alpha * slope
            {
                accepted = Some((trial, trial_loss));
                break;
            }
            alpha *= 0.5;
        }
        let Some((trial, trial_loss)) = accepted else {
            return Ok(self.rejected(loss, solved.iterations, REJECT_RAISE, None));
        };
        let predicted = alpha * slope + 0.5 * alpha * alpha * solved.curvature;
        let ratio = (trial_loss - loss) / predicted;
        if ratio <= 0.0 || !ratio.is_finite() {
            return Ok(self.rejected(loss, solved.iterations, REJECT_RAISE, None));
        }
        if self.options.damping == Damping::LevenbergMarquardt {
            if ratio < 0.25 {
                self.rho *= 1.5;
            } else if ratio > 0.75 {
                self.rho = (self.rho * 2.0 / 3.0).max(self.options.rho_min);
            }
        }
        theta.copy_from_slice(&trial);
        self.previous_step = vectors.scaled(&d, alpha);
        Ok(StepReport {
            loss,
            accepted: true,
            rho: Some(self.rho),
            cg_iters: solved.iterations,
            step_size: alpha,
            non_finite: None,
        })
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::from([
            ("rho".to_string(), vec![self.rho]),
            ("steps".to_string(), vec![self.steps as f64]),
            ("previous_step".to_string(), self.previous_step.clone()),
            ("squared_grad".to_string(), self.squared_grad.clone()),
        ])
    }

    fn restore(&mut self, state: &OptimizerState, dim: usize) -> Result<()> {
        let mut reader = StateReader::new(state, dim);
        let rho = reader.scalar("rho", Values::Positive)?;
        // Checkpoints before the early CG cap existed count no steps.
        let steps = reader.scalar_or("steps", Values::Count, 0.0)?;
        let previous_step = reader.vector("previous_step", Values::Finite)?;
        let squared_grad = reader.vector("squared_grad", Values::NonNegative)?;
        reader.finish()?;
        self.rho = rho;
        self.steps = steps as u64;
        self.previous_step = previous_step.to_vec();
        self.squared_grad = squared_grad.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::Quadratic;

    /// Default SGN, with CG run to convergence so steps are exact damped Newton steps.
    fn exact_cg() -> SgnOptions {
        SgnOptions {
            cg: CgOptions {
                max_iters: 50,
                tolerance: 1e-14,
                residual_max: None,
            },
            ..SgnOptions::default()
        }
    }

    #[test]
    fn one_step_with_exact_cg_minimizes_a_quadratic() {
        // L(θ) = ½ θᵀAθ − bᵀθ with G = A exactly: from θ = 0 the damped Newton step is the
        // solution of (A + ρI) θ = b (solved directly here, not by CG), next to θ* = A⁻¹ b.
        let mut q = Quadratic::new(4);
        let mut sgn = Sgn::new(exact_cg());
        let mut theta = vec![0.0; 4];
        let report = sgn.step(&mut theta, &mut q).unwrap();
        assert!(report.accepted);
        assert_eq!(report.step_size, 1.0);
        let max_diff = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        let damped = q.damped_solve(1e-4);
        assert!(max_diff(&theta, &damped) < 1e-12, "{theta:?} vs {damped:?}");
        assert!(
            max_diff(&theta, &q.minimizer()) < 1e-3,
            "{theta:?} vs {:?}",
            q.minimizer()
        );
        // Ratio ≈ 1 > ¾: ρ shrinks by ⅔.
        assert!((sgn.rho() - 1e-4 * 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn levenberg_marquardt_raises_rho_when_the_decrease_falls_short_of_the_model() {
        // Curvature reported at 0.55×: the step is 1.8× too long; the loss still falls, but by
        // r = 2 − 1/0.55 ≈ 0.18 < ¼ of the predicted amount.
        let mut q = Quadratic::new(3);
        q.gv_scale = 0.55;
        let mut sgn = Sgn::new(exact_cg());
        let mut theta = vec![0.0; 3];
        let report = sgn.step(&mut theta, &mut q).unwrap();
        assert!(report.accepted);
        assert_eq!(report.step_size, 1.0);
        assert!((sgn.rho() - 1.5e-4).abs() < 1e-15);
    }

    #[test]
    fn an_overshooting_step_is_rejected_and_rho_raised() {
        // The objective reports a curvature 100× too small: the full step raises the loss.
        let mut q = Quadratic::new(3);
        q.gv_scale = 0.01;
        let mut sgn = Sgn::new(SgnOptions {
            line_search: false,
            ..SgnOptions::default()
        });
        let mut theta = vec![0.0; 3];
        let before = theta.clone();
        let report = sgn.step(&mut theta, &mut q).unwrap();
        // The full step overshoots so far that the loss rises: rejected, θ unchanged, ρ × 1.5.
        assert!(!report.accepted);
        assert_eq!(theta, before);
        assert!((sgn.rho() - 1.5e-4).abs() < 1e-15);
    }

    #[test]
    fn armijo_halves_until_sufficient_decrease() {
        let mut q = Quadratic::new(3);
        q.gv_scale = 0.3; // a step 3.3× too long: the full step fails Armijo, the half passes
        let mut sgn = Sgn::new(exact_cg());
        let mut theta = vec![0.0; 3];
        let report = sgn.step(&mut theta, &mut q).unwrap();
        assert!(report.accepted);
        assert_eq!(report.step_size, 0.5);
        assert!(q.loss(&theta).unwrap() < q.loss(&[0.0; 3]).unwrap());
    }

    #[test]
    fn fixed_damping_never_changes_rho() {
        let mut q = Quadratic::new(3);
        let mut sgn = Sgn::new(SgnOptions {
            damping: Damping::Fixed,
            rho0: 0.5,
            ..SgnOptions::default()
        });
        let mut theta = vec![0.0; 3];
        for _ in 0..3 {
            sgn.step(&mut theta, &mut q).unwrap();
        }
        assert_eq!(sgn.rho(), 0.5);
    }

    #[test]
    fn a_non_finite_gradient_never_reaches_the_parameters() {
        let mut q = Quadratic::new(3);
        q.poison_grad = true;
        let mut sgn = Sgn::new(SgnOptions::default());
        let mut theta = vec![1.0; 3];
        let report = sgn.step(&mut theta, &mut q).unwrap();
        assert!(!report.accepted);
        assert_eq!(report.non_finite, Some(NonFiniteValue::Gradient));
        assert_eq!(theta, vec![1.0; 3]);
        assert!((sgn.rho() - 1e-3).abs() < 1e-15);
        // The next healthy step proceeds.
        q.poison_grad = false;
        assert!(sgn.step(&mut theta, &mut q).unwrap().accepted);
    }

    #[test]
    fn the_first_steps_use_the_early_cg_cap_and_a_resumed_run_counts_on() {
        // A 12-dimensional quadratic: CG needs more than 2 iterations, so the cap shows.
        let options = SgnOptions {
            cg: CgOptions {
                max_iters: 2,
                tolerance: 0.0,
                residual_max: None,
            },
            early_cg: Some(EarlyCg {
                steps: 3,
                max_iters: 5,
            }),
            ..SgnOptions::default()
        };
        let mut q = Quadratic::new(12);
        let mut sgn = Sgn::new(options.clone());
        let mut theta = vec![0.0; 12];
        let mut iters = Vec::new();
        for step in 0..5 {
            iters.push(sgn.step(&mut theta, &mut q).unwrap().cg_iters);
            if step == 1 {
                // Resumed after two steps: one early step is left.
                let mut resumed = Sgn::new(options.clone());
                resumed.restore(&sgn.state(), theta.len()).unwrap();
                sgn = resumed;
            }
        }
        assert_eq!(iters, [5, 5, 5, 2, 2]);
        // A checkpoint from before the step count resumes as a run at its first step.
        let mut state = sgn.state();
        state.remove("steps");
        let mut old = Sgn::new(options);
        old.restore(&state, theta.len()).unwrap();
        assert_eq!(old.step(&mut theta, &mut q).unwrap().cg_iters, 5);
    }

    #[test]
    fn state_round_trips() {
        let mut q = Quadratic::new(3);
        let mut sgn = Sgn::new(SgnOptions {
            warm_start: Some(0.95),
            preconditioner: Some(0.75),
            ..SgnOptions::default()
        });
        let mut theta = vec![0.0; 3];
        sgn.step(&mut theta, &mut q).unwrap();
        let mut copy = Sgn::new(sgn.options.clone());
        copy.restore(&sgn.state(), theta.len()).unwrap();
        let (mut a, mut b) = (theta.clone(), theta.clone());
        sgn.step(&mut a, &mut q).unwrap();
        copy.step(&mut b, &mut q).unwrap();
        assert_eq!(a, b);
    }
}
