//! Adam (Kingma and Ba, 2015) with bias correction.

use super::sgd::{accepted_report, non_finite_report};
use super::{Objective, Optimizer, OptimizerState, StateReader, StepReport, Values};
use crate::Result;

/// Adam's options. Defaults are the paper's: lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-8.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamOptions {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamOptions {
    fn default() -> AdamOptions {
        AdamOptions {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The Adam optimizer.
///
/// Adam's first step moves every parameter by about the learning rate, whatever the size of
/// its gradient (bias correction makes the first update `lr · g/|g|`):
///
/// ```
/// use sgn::optim::{Adam, AdamOptions, ModelObjective, Objective, Optimizer};
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
/// let mut theta = compiled.layout().flatten(&params)?; // w = 0
/// let mut objective = ModelObjective::new(&compiled, &batch);
/// let mut adam = Adam::new(AdamOptions { lr: 0.05, ..AdamOptions::default() });
/// let first = adam.step(&mut theta, &mut objective)?;
/// assert!(first.accepted);
/// assert!(theta.iter().all(|t| (t.abs() - 0.05).abs() < 1e-6), "{theta:?}");
/// for _ in 0..100 {
///     adam.step(&mut theta, &mut objective)?;
/// }
/// assert!(objective.loss(&theta)? < 0.01 * first.loss);
/// assert_eq!(adam.state()["steps"], [101.0]);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    pub options: AdamOptions,
    first_moment: Vec<f64>,
    second_moment: Vec<f64>,
    steps: u64,
}

impl Adam {
    pub fn new(options: AdamOptions) -> Adam {
        Adam {
            options,
            first_moment: Vec::new(),
            second_moment: Vec::new(),
            steps: 0,
        }
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn validate(&self) -> Result<()> {
        let o = &self.options;
        super::check_options(
            "Adam",
            &[
                ("lr", o.lr, super::positive(o.lr), "finite and > 0"),
                ("beta1", o.beta1, super::below_one(o.beta1), "in [0, 1)"),
                ("beta2", o.beta2, super::below_one(o.beta2), "in [0, 1)"),
                ("eps", o.eps, super::positive(o.eps), "finite and > 0"),
            ],
        )
    }

    fn step(&mut self, theta: &mut [f64], objective: &mut dyn Objective) -> Result<StepReport> {
        self.validate()?;
        let (loss, grad) = objective.loss_and_grad(theta)?;
        if let Some(report) = non_finite_report(loss, &grad) {
            return Ok(report);
        }
        if self.first_moment.len() != grad.len() {
            self.first_moment = vec![0.0; grad.len()];
            self.second_moment = vec![0.0; grad.len()];
            self.steps = 0;
        }
        let AdamOptions {
            lr,
            beta1,
            beta2,
            eps,
        } = self.options;
        self.steps += 1;
        let correction1 = 1.0 - beta1.powi(self.steps as i32);
        let correction2 = 1.0 - beta2.powi(self.steps as i32);
        for (((t, m), v), g) in theta
            .iter_mut()
            .zip(&mut self.first_moment)
            .zip(&mut self.second_moment)
            .zip(&grad)
        {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *t -= lr * (*m / correction1) / ((*v / correction2).sqrt() + eps);
        }
        Ok(accepted_report(loss))
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::from([
            ("first_moment".to_string(), self.first_moment.clone()),
            ("second_moment".to_string(), self.second_moment.clone()),
            ("steps".to_string(), vec![self.steps as f64]),
        ])
    }

    fn restore(&mut self, state: &OptimizerState, dim: usize) -> Result<()> {
        let mut reader = StateReader::new(state, dim);
        let first_moment = reader.vector("first_moment", Values::Finite)?;
        let second_moment = reader.vector("second_moment", Values::NonNegative)?;
        let steps = reader.scalar("steps", Values::Count)? as u64;
        reader.finish()?;
        // The moments are made together by the first step, which also counts it.
        let counted = dim == 0 || first_moment.is_empty() == (steps == 0);
        if first_moment.len() != second_moment.len() || !counted {
            return Err(crate::Error::Tensor(format!(
                "optimizer state is inconsistent: 'optimizer.first_moment' has {} values, \
                 'optimizer.second_moment' {}, after {steps} step(s)",
                first_moment.len(),
                second_moment.len()
            )));
        }
        self.first_moment = first_moment.to_vec();
        self.second_moment = second_moment.to_vec();
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::Quadratic;

    #[test]
    fn first_step_moves_each_coordinate_by_lr_against_the_gradient_sign() {
        // With bias correction, m̂/√v̂ = g/|g| on the first step.
        let mut q = Quadratic::new(3);
        let mut theta = vec![0.0; 3];
        let (_, g) = q.loss_and_grad(&theta).unwrap();
        Adam::new(AdamOptions::default())
            .step(&mut theta, &mut q)
            .unwrap();
        for (t, g) in theta.iter().zip(&g) {
            assert!((t + 1e-3 * g.signum()).abs() < 1e-9, "{t} vs {g}");
        }
    }

    #[test]
    fn converges_on_a_quadratic_and_resumes_exactly() {
        let mut q = Quadratic::new(4);
        let mut adam = Adam::new(AdamOptions {
            lr: 0.05,
            ..AdamOptions::default()
        });
        let mut theta = vec![0.0; 4];
        for _ in 0..100 {
            adam.step(&mut theta, &mut q).unwrap();
        }
        let mut resumed = Adam::new(adam.options.clone());
        resumed.restore(&adam.state(), theta.len()).unwrap();
        let mut theta2 = theta.clone();
        for _ in 0..3000 {
            adam.step(&mut theta, &mut q).unwrap();
            resumed.step(&mut theta2, &mut q).unwrap();
        }
        assert_eq!(theta, theta2);
        let target = q.minimizer();
        let err = theta
            .iter()
            .zip(&target)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4, "{theta:?} vs {target:?}");
    }
}
