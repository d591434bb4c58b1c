//! What training records: one row per optimizer step and one per evaluation.

/// The kind of a [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// One optimizer step on one mini-batch.
    Step,
    /// An evaluation on the test split (after each epoch, and when training stops).
    Eval,
}

impl RecordKind {
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Step => "step",
            RecordKind::Eval => "eval",
        }
    }
}

/// The names of [`Record`]'s fields, in order: the log's columns and the checkpoint's history.
pub const RECORD_FIELDS: [&str; 10] = [
    "kind",
    "epoch",
    "iteration",
    "wall_time",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "rho",
    "cg_iters",
    "step_size",
];

/// One row of the training log. Fields that do not apply to a row are `None` (an empty CSV cell,
/// a JSON `null`).
///
/// A [`Trainer`](super::Trainer)'s history holds a step row per optimizer step and an
/// evaluation row after each epoch; the learning curve is read from the latter:
///
/// ```
/// use sgn::optim::{Record, RecordKind, Sgn, SgnOptions, StopRule, TrainOptions, Trainer};
/// # use ndarray::Array2;
/// # use sgn::data::Dataset;
/// # use sgn::{CompileOptions, Model};
/// # let model = Model::parse(
/// #     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = zeros\n\
/// #      output z = x @ w\nloss mse(z, y)\n",
/// # )?;
/// # let compiled = model.compile(&CompileOptions::default())?;
/// # let x = Array2::from_shape_fn((32, 2), |(i, j)| [i % 8, i / 8][j] as f32 / 4.0 - 0.5);
/// # let y = Array2::from_shape_fn((32, 1), |(i, _)| 2.0 * x[[i, 0]] - x[[i, 1]]);
/// # let data = Dataset::from_arrays(&x, &y, &x, &y)?;
/// # let params = sgn::ir::store::init_params(&model.params, 0)?;
/// let options = TrainOptions {
///     batch_size: 16,
///     stop: StopRule { epochs: Some(3), time_limit: None },
///     ..TrainOptions::default()
/// };
/// let sgn = Box::new(Sgn::new(SgnOptions::default()));
/// let mut trainer = Trainer::new(&compiled, &data, &params, sgn, options)?;
/// trainer.run(&mut |_| {})?;
///
/// let step: &Record = &trainer.history()[0];
/// assert_eq!((step.kind, step.epoch, step.iteration), (RecordKind::Step, 0.5, 1));
/// assert!(step.train_loss.is_some() && step.test_loss.is_none());
/// assert!(step.rho.is_some() && step.cg_iters.is_some()); // SGN's
/// let curve: Vec<(f64, f64)> = (trainer.history().iter())
///     .filter(|r| r.kind == RecordKind::Eval)
///     .map(|r| (r.epoch, r.test_loss.expect("an evaluation's test loss")))
///     .collect();
/// assert_eq!(curve.iter().map(|p| p.0).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
/// assert!(curve[2].1 < curve[0].1);
/// assert_eq!(RecordKind::Eval.name(), "eval");
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: RecordKind,
    /// Epochs done, fractional: 1.5 is half-way through the second epoch.
    pub epoch: f64,
    /// Optimizer steps done (accepted or not).
    pub iteration: u64,
    /// Seconds of training so far (accumulated across resumed runs; evaluation and checkpoints
    /// not counted).
    pub wall_time: f64,
    /// Step: the mini-batch loss before the step. Eval: the mean of the step losses since the
    /// previous evaluation.
    pub train_loss: Option<f64>,
    pub test_loss: Option<f64>,
    /// Fraction of test examples classified correctly (classification datasets only).
    pub test_accuracy: Option<f64>,
    /// SGN's damping after the step.
    pub rho: Option<f64>,
    /// SGN's CG iterations in the step.
    pub cg_iters: Option<usize>,
    /// The fraction of the computed step taken (0 for a rejected step).
    pub step_size: Option<f64>,
}
