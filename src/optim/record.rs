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
