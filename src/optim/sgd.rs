//! Stochastic gradient descent with optional (Nesterov) momentum, as in PyTorch.

use super::vector::all_finite;
use super::{
    NonFiniteValue, Objective, Optimizer, OptimizerState, StateReader, StepReport, Values,
};
use crate::Result;

/// SGD's options. Defaults: learning rate 0.1, no momentum.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    pub lr: f64,
    /// Momentum μ: `buf ← μ·buf + g`, step along `buf` (0 disables it).
    pub momentum: f64,
    /// Nesterov momentum: step along `g + μ·buf`.
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> SgdOptions {
        SgdOptions {
            lr: 0.1,
            momentum: 0.0,
            nesterov: false,
        }
    }
}

/// The SGD optimizer.
///
/// Twenty steps with Nesterov momentum on one mini-batch of a linear least-squares problem:
///
/// ```
/// use sgn::optim::{ModelObjective, Objective, Optimizer, Sgd, SgdOptions};
/// # use sgn::ir::store::{TensorMap, init_params};
/// # use sgn::ir::{DType, Tensor};
/// # use sgn::{CompileOptions, Model};
/// # let model = Model::parse(
/// #     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = zeros\n\
/// #      output z = x @ w\nloss mse(z, y)\n",
/// # )?;
/// # let compiled = model.compile(&CompileOptions::default())?;
/// # let mut batch = TensorMap::new();
/// # let x = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.5];
/// # batch.insert("x", Tensor::from_f64(DType::F32, &[4, 2], x).expect("4×2 values"));
/// # let y = vec![2.0, -1.0, 1.0, -2.5]; // y = 2·x₀ − x₁
/// # batch.insert("y", Tensor::from_f64(DType::F32, &[4, 1], y).expect("4 values"));
/// # let params = init_params(&model.params, 0)?;
///
/// let mut theta = compiled.layout().flatten(&params)?;
/// let mut objective = ModelObjective::new(&compiled, &batch);
/// let start = objective.loss(&theta)?;
/// let mut sgd = Sgd::new(SgdOptions { lr: 0.1, momentum: 0.9, nesterov: true });
/// for _ in 0..20 {
///     let report = sgd.step(&mut theta, &mut objective)?;
///     assert!(report.accepted && report.rho.is_none() && report.cg_iters == 0);
/// }
/// assert!(objective.loss(&theta)? < 0.01 * start);
/// assert_eq!(sgd.state()["momentum_buffer"].len(), 2); // one value per parameter
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    pub options: SgdOptions,
    buffer: Vec<f64>,
}

impl Sgd {
    pub fn new(options: SgdOptions) -> Sgd {
        Sgd {
            options,
            buffer: Vec::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn validate(&self) -> Result<()> {
        let o = &self.options;
        let m = o.momentum;
        let nesterov_ok = m > 0.0 || !o.nesterov;
        super::check_options(
            "SGD",
            &[
                ("lr", o.lr, super::positive(o.lr), "finite and > 0"),
                ("momentum", m, super::below_one(m), "in [0, 1)"),
                ("momentum", m, nesterov_ok, "> 0 for Nesterov momentum"),
            ],
        )
    }

    fn step(&mut self, theta: &mut [f64], objective: &mut dyn Objective) -> Result<StepReport> {
        self.validate()?;
        let (loss, grad) = objective.loss_and_grad(theta)?;
        if let Some(report) = non_finite_report(loss, &grad) {
            return Ok(report);
        }
        let SgdOptions {
            lr,
            momentum,
            nesterov,
        } = self.options;
        if momentum == 0.0 {
            for (t, g) in theta.iter_mut().zip(&grad) {
                *t -= lr * g;
            }
        } else {
            if self.buffer.len() != grad.len() {
                // PyTorch starts the buffer at the first gradient.
                self.buffer = grad.clone();
            } else {
                for (b, g) in self.buffer.iter_mut().zip(&grad) {
                    *b = momentum * *b + g;
                }
            }
            for ((t, b), g) in theta.iter_mut().zip(&self.buffer).zip(&grad) {
                let direction = if nesterov { g + momentum * b } else { *b };
                *t -= lr * direction;
            }
        }
        Ok(accepted_report(loss))
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::from([("momentum_buffer".to_string(), self.buffer.clone())])
    }

    fn restore(&mut self, state: &OptimizerState, dim: usize) -> Result<()> {
        let mut reader = StateReader::new(state, dim);
        let buffer = reader.vector("momentum_buffer", Values::Finite)?;
        reader.finish()?;
        self.buffer = buffer.to_vec();
        Ok(())
    }
}

/// The report of a first-order step rejected for a non-finite loss or gradient, if it is one.
pub(super) fn non_finite_report(loss: f64, grad: &[f64]) -> Option<StepReport> {
    let what = if !loss.is_finite() {
        NonFiniteValue::Loss
    } else if !all_finite(grad) {
        NonFiniteValue::Gradient
    } else {
        return None;
    };
    Some(StepReport {
        loss,
        accepted: false,
        rho: None,
        cg_iters: 0,
        step_size: 0.0,
        non_finite: Some(what),
    })
}

/// The report of an accepted first-order step.
pub(super) fn accepted_report(loss: f64) -> StepReport {
    StepReport {
        loss,
        accepted: true,
        rho: None,
        cg_iters: 0,
        step_size: 1.0,
        non_finite: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::Quadratic;

    fn distance(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn plain_step_is_theta_minus_lr_g() {
        let mut q = Quadratic::new(2);
        let mut theta = vec![0.0, 0.0];
        let (_, g) = q.loss_and_grad(&theta).unwrap();
        Sgd::new(SgdOptions {
            lr: 0.25,
            ..SgdOptions::default()
        })
        .step(&mut theta, &mut q)
        .unwrap();
        assert_eq!(theta, vec![-0.25 * g[0], -0.25 * g[1]]);
    }

    #[test]
    fn every_variant_converges_on_a_quadratic() {
        for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
            let mut q = Quadratic::new(4);
            let target = q.minimizer();
            let mut sgd = Sgd::new(SgdOptions {
                lr: 0.05,
                momentum,
                nesterov,
            });
            let mut theta = vec![0.0; 4];
            for _ in 0..2000 {
                sgd.step(&mut theta, &mut q).unwrap();
            }
            assert!(
                distance(&theta, &target) < 1e-6,
                "momentum {momentum} nesterov {nesterov}"
            );
        }
    }

    #[test]
    fn non_finite_gradients_are_rejected() {
        let mut q = Quadratic::new(2);
        q.poison_grad = true;
        let mut theta = vec![1.0, 1.0];
        let report = Sgd::new(SgdOptions::default())
            .step(&mut theta, &mut q)
            .unwrap();
        assert!(!report.accepted);
        assert_eq!(theta, vec![1.0, 1.0]);
    }
}
