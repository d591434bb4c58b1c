//! The training driver: mini-batches from a dataset, one optimizer step each, evaluation after
//! every epoch, checkpoints that resume exactly.
//!
//! Exact resumption rests on three things: mini-batches are a pure function of (seed, epoch,
//! position); parameters are kept rounded to the model's element type, so the checkpoint holds
//! them exactly; and optimizer state is saved in f64.

use super::checkpoint::{Checkpoint, Progress};
use super::collective::{Collective, Sharded, SingleProcess, shard};
pub use super::feed::evaluate;
use super::feed::{Feed, gather_rows};
use super::objective::ModelObjective;
use super::record::{Record, RecordKind};
use super::{NonFiniteValue, Optimizer, StepReport};
use crate::compile::CompiledModel;
use crate::data::{BatchOptions, Batches, Dataset, PixelScale, Split};
use crate::ir::store::{TensorMap, listed};
use crate::{Error, Result};
use ndarray::Array2;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many f64 vectors of the parameters' length a step holds at once, at most (SGN: θ, the
/// gradient, CG's five, the trial point, the previous step, the squared gradients, the
/// preconditioner, and the conversions to and from tensors).
const OPTIMIZER_VECTORS: u64 = 16;

/// When training stops (whichever comes first).
///
/// See [`TrainOptions`] for an example.
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    pub epochs: Option<u64>,
    pub time_limit: Option<Duration>,
}

/// Options of [`Trainer`].
///
/// The defaults train one epoch in batches of 1000 (see [`Default`]); a run usually sets the
/// batch size and a [`StopRule`], and keeps the rest:
///
/// ```
/// use std::time::Duration;
/// use sgn::optim::{Sgd, SgdOptions, StopRule, TrainOptions, Trainer};
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
///
/// assert_eq!(TrainOptions::default().batch_size, 1000);
/// // 3 epochs of 32 examples in batches of 8, unless a minute passes first.
/// let options = TrainOptions {
///     batch_size: 8,
///     stop: StopRule { epochs: Some(3), time_limit: Some(Duration::from_secs(60)) },
///     seed: 7,
///     ..TrainOptions::default()
/// };
/// let sgd = Box::new(Sgd::new(SgdOptions::default()));
/// let mut trainer = Trainer::new(&compiled, &data, &params, sgd, options)?;
/// trainer.run(&mut |_| {})?;
/// let last = trainer.history().last().expect("records");
/// assert_eq!((last.epoch, last.iteration), (3.0, 3 * 32 / 8));
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub batch_size: usize,
    pub stop: StopRule,
    /// Seeds the mini-batch order (the parameters are initialized by the caller).
    pub seed: u64,
    /// Consecutive non-finite steps tolerated before training stops with an error.
    pub max_consecutive_failures: usize,
    /// Examples per forward pass when evaluating on the test split.
    pub eval_batch: usize,
    /// Where checkpoints go (after each epoch and at the end), if anywhere.
    pub checkpoint: Option<PathBuf>,
    /// Training times at which to evaluate on the test split as well (at the first step
    /// boundary past each), besides every epoch's end: a budget's result, as the SGN paper
    /// reports them.
    pub eval_at: Vec<Duration>,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            batch_size: 1000,
            stop: StopRule {
                epochs: Some(1),
                time_limit: None,
            },
            seed: 0,
            max_consecutive_failures: 5,
            eval_batch: 1000,
            checkpoint: None,
            eval_at: Vec::new(),
        }
    }
}

/// What the driver tells its observer (a progress bar, a log file).
///
/// An observer that counts the step and evaluation records and prints each epoch's test loss:
///
/// ```
/// use sgn::optim::{RecordKind, Sgn, SgnOptions, StopRule, TrainEvent, TrainOptions, Trainer};
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
///     stop: StopRule { epochs: Some(2), time_limit: None },
///     ..TrainOptions::default()
/// };
/// let sgn = Box::new(Sgn::new(SgnOptions::default()));
/// let mut trainer = Trainer::new(&compiled, &data, &params, sgn, options)?;
/// let (mut steps, mut evals, mut failures) = (0, 0, 0);
/// trainer.run(&mut |event| match event {
///     TrainEvent::Recorded(record) if record.kind == RecordKind::Step => steps += 1,
///     TrainEvent::Recorded(record) => {
///         evals += 1;
///         println!("epoch {}: test loss {:?}", record.epoch, record.test_loss);
///     }
///     TrainEvent::NonFinite { .. } => failures += 1,
///     TrainEvent::Checkpoint(_) => {} // none: `options.checkpoint` is `None`
/// })?;
/// // 2 steps per epoch, one evaluation after each epoch.
/// assert_eq!((steps, evals, failures), (4, 2, 0));
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// A step or an evaluation was recorded.
    Recorded(&'a Record),
    /// A step was rejected because something was not finite; the parameters did not change.
    NonFinite {
        iteration: u64,
        what: NonFiniteValue,
    },
    /// A checkpoint was written.
    Checkpoint(&'a Path),
}

/// Trains a compiled model on a dataset with one optimizer.
///
/// A linear model fitted to `y = 2·x₀ − x₁` with SGN, which solves this least-squares problem
/// in a few steps:
///
/// ```
/// use ndarray::Array2;
/// use sgn::data::Dataset;
/// use sgn::ir::store::init_params;
/// use sgn::optim::{Sgn, SgnOptions, StopRule, TrainOptions, Trainer};
/// use sgn::{CompileOptions, Model};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = zeros\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// // 32 points on an 8×4 grid, and their targets.
/// let x = Array2::from_shape_fn((32, 2), |(i, j)| [i % 8, i / 8][j] as f32 / 4.0 - 0.5);
/// let y = Array2::from_shape_fn((32, 1), |(i, _)| 2.0 * x[[i, 0]] - x[[i, 1]]);
/// let data = Dataset::from_arrays(&x, &y, &x, &y)?;
/// let params = init_params(&model.params, 0)?; // w = 0, as declared
/// let options = TrainOptions {
///     batch_size: 8,
///     stop: StopRule { epochs: Some(2), time_limit: None },
///     ..TrainOptions::default()
/// };
/// let sgn = Box::new(Sgn::new(SgnOptions::default()));
/// let mut trainer = Trainer::new(&compiled, &data, &params, sgn, options)?;
/// let (before, accuracy) = trainer.test_metrics(&data.test)?;
/// assert_eq!(accuracy, None); // regression: no accuracy
/// trainer.run(&mut |_| {})?;
/// let (after, _) = trainer.test_metrics(&data.test)?;
/// assert!(after < 1e-6 * before, "test loss {before} -> {after}");
/// let w = trainer.params().get("w").expect("the parameter").to_f64_vec();
/// assert!((w[0] - 2.0).abs() < 1e-3 && (w[1] + 1.0).abs() < 1e-3, "{w:?}");
/// // 8 steps (2 epochs of 4 batches) and an evaluation after each epoch.
/// assert_eq!(trainer.history().len(), 8 + 2);
/// # Ok::<(), sgn::Error>(())
/// ```
pub struct Trainer<'a> {
    model: &'a CompiledModel,
    dataset: &'a Dataset,
    optimizer: Box<dyn Optimizer>,
    options: TrainOptions,
    theta: Vec<f64>,
    /// The parameters before the step in progress, to go back to if it overflows them.
    theta_before: Vec<f64>,
    progress: Progress,
    history: Vec<Record>,
    feed: Feed,
    /// The processes this run's batches are shared among (one by default).
    collective: &'a dyn Collective,
}

impl<'a> Trainer<'a> {
    /// A trainer starting from `params` (named as in the model).
    ///
    /// Errors: a model that cannot take the dataset, a batch size of 0 or past the train split,
    /// options out of range ([`Optimizer::validate`], a stop rule with neither epochs nor a time
    /// limit, an `eval_batch` of 0), a dataset without test examples, parameters that do not fit
    /// the model or are not finite, and more memory than the machine has.
    pub fn new(
        model: &'a CompiledModel,
        dataset: &'a Dataset,
        params: &TensorMap,
        optimizer: Box<dyn Optimizer>,
        options: TrainOptions,
    ) -> Result<Trainer<'a>> {
        dataset.check()?;
        let feed = Feed::new(model, dataset)?;
        if options.batch_size == 0 || options.batch_size > dataset.train.len() {
            return Err(Error::Eval(format!(
                "batch size {} does not fit the {} training examples of {}",
                options.batch_size,
                dataset.train.len(),
                dataset.name
            )));
        }
        optimizer.validate()?;
        let refused = |what: &str| Err(Error::Options(format!("TrainOptions: {what}")));
        if options.stop.epochs.is_none() && options.stop.time_limit.is_none() {
            return refused(
                "the stop rule has neither epochs nor a time limit: it would never stop",
            );
        }
        if options.eval_batch == 0 {
            return refused("eval_batch is 0; evaluation needs chunks of at least one example");
        }
        if dataset.test.is_empty() {
            return Err(Error::Data(format!(
                "{} has no test examples to evaluate after each epoch",
                dataset.name
            )));
        }
        let layout = model.layout();
        let vectors = (layout.len() as u64).checked_mul(OPTIMIZER_VECTORS * 8);
        crate::ir::memory::ensure_available(vectors, || {
            format!(
                "training {} parameters ({OPTIMIZER_VECTORS} f64 vectors of them at a time)",
                layout.len()
            )
        })?;
        let theta = layout.flatten(params)?;
        if let Some(name) = layout.first_non_finite(&theta) {
            return Err(Error::Tensor(format!(
                "parameter '{name}' holds a non-finite value; training starts from finite parameters"
            )));
        }
        Ok(Trainer {
            model,
            dataset,
            optimizer,
            options,
            theta,
            theta_before: Vec::new(),
            progress: Progress {
                epoch: 0,
                position: 0,
                iteration: 0,
                elapsed_before: 0.0,
            },
            history: Vec::new(),
            feed,
            collective: &SingleProcess,
        })
    }

    /// Trains data-parallel among the processes of `collective`: each holds its [`shard`] of
    /// every batch, the sums cross the processes, and every process takes the same steps; only
    /// the first writes checkpoints. Every process must run the same trainer (model, data,
    /// options, starting point).
    ///
    /// Errors: a collective whose rank is not below its size, and a batch smaller than the
    /// number of processes (a process would hold no example).
    pub fn distributed(mut self, collective: &'a dyn Collective) -> Result<Trainer<'a>> {
        let (rank, size) = (collective.rank(), collective.size());
        if rank >= size {
            return Err(Error::Options(format!(
                "a collective of {size} process(es) says this is process {rank}: ranks run \
                 from 0 to {}",
                size.saturating_sub(1)
            )));
        }
        if self.options.batch_size < collective.size() {
            return Err(Error::Eval(format!(
                "a batch of {} cannot be shared among {} processes; each needs an example",
                self.options.batch_size,
                collective.size()
            )));
        }
        self.collective = collective;
        Ok(self)
    }

    /// One optimizer step on a batch: on this process's shard of it when the run is shared.
    /// One optimizer step on these rows, the parameters then rounded to their element types. A
    /// step that leaves a parameter non-finite (an SGD step past f32's range, say) is rejected
    /// as SGN rejects its own: the parameters stay as they were.
    fn step(&mut self, features: Array2<f32>, targets: Array2<f32>) -> Result<StepReport> {
        self.theta_before.clone_from(&self.theta);
        let report = self.optimizer_step(features, targets)?;
        let layout = self.model.layout();
        layout.round_to_dtypes(&mut self.theta);
        if report.non_finite.is_some() || layout.first_non_finite(&self.theta).is_none() {
            return Ok(report);
        }
        self.theta.clone_from(&self.theta_before);
        Ok(StepReport {
            accepted: false,
            step_size: 0.0,
            non_finite: Some(NonFiniteValue::Step),
            ..report
        })
    }

    fn optimizer_step(
        &mut self,
        features: Array2<f32>,
        targets: Array2<f32>,
    ) -> Result<StepReport> {
        let (rank, size) = (self.collective.rank(), self.collective.size());
        if size == 1 {
            let batch = self.feed.batch(features, targets);
            let mut objective = ModelObjective::new(self.model, &batch);
            return self.optimizer.step(&mut self.theta, &mut objective);
        }
        let rows = features.nrows();
        let mine = shard(rows, rank, size);
        let take = |a: Array2<f32>| a.slice_move(ndarray::s![mine.clone(), ..]);
        let batch = self.feed.batch(take(features), take(targets));
        let local = ModelObjective::new(self.model, &batch);
        let mut objective = Sharded::new(local, self.collective, mine.len(), rows);
        self.optimizer.step(&mut self.theta, &mut objective)
    }

    /// Errors on a process whose starting point differs from the first's (parameters, training
    /// data, position, batch options): the processes would train on different problems, or wait
    /// for each other forever. Compared by a fingerprint of sums, broadcast from the first.
    fn check_processes_agree(&self) -> Result<()> {
        if self.collective.size() == 1 {
            return Ok(());
        }
        let sum = |values: &mut dyn Iterator<Item = f64>| values.fold(0.0, |s, v| s + v);
        let train = &self.dataset.train;
        let p = &self.progress;
        let mine = [
            sum(&mut self.theta.iter().copied()),
            sum(&mut self.theta.iter().map(|t| t * t)),
            train.len() as f64,
            sum(&mut train.features.iter().map(|&f| f64::from(f))),
            sum(&mut train.targets.iter().map(|&t| f64::from(t))),
            p.epoch as f64,
            p.position as f64,
            p.iteration as f64,
            self.options.batch_size as f64,
            self.options.seed as f64,
        ];
        let mut first = mine;
        self.collective.broadcast(&mut first)?;
        let differs = mine.map(f64::to_bits) != first.map(f64::to_bits);
        // Every process learns how many differ, so that all stop, not only those.
        let mut differing = [f64::from(u8::from(differs))];
        self.collective.sum(&mut differing)?;
        if differing[0] == 0.0 {
            return Ok(());
        }
        let who = if differs {
            format!("this process ({}) starts", self.collective.rank())
        } else {
            format!("{} other process(es) start", differing[0])
        };
        Err(Error::Eval(format!(
            "{who} elsewhere than the first (parameters, training data, position in the data, \
             batch size or seed differ): every process must be given the same model, data and \
             options"
        )))
    }

    /// The training time every process goes by: the first's, so that all stop, evaluate and
    /// checkpoint at the same step.
    fn agreed(&self, seconds: f64) -> Result<f64> {
        let mut value = [seconds];
        self.collective.broadcast(&mut value)?;
        Ok(value[0])
    }

    /// The current parameters.
    pub fn params(&self) -> TensorMap {
        self.model.layout().unflatten(&self.theta)
    }

    /// Every record so far (including those of the runs this one resumed).
    pub fn history(&self) -> &[Record] {
        &self.history
    }

    fn batch_options(&self) -> BatchOptions {
        BatchOptions::new(self.options.batch_size, self.options.seed)
    }

    fn fractional_epoch(&self) -> f64 {
        let per_epoch = self
            .batch_options()
            .batches_per_epoch(self.dataset.train.len());
        self.progress.epoch as f64 + self.progress.position as f64 / per_epoch as f64
    }

    /// Trains until the stop rule holds. Checkpoints (if configured) are written after every
    /// epoch and at the end; on an error the last checkpoint is left as it was.
    ///
    /// Times (the stop rule's, the evaluation marks', the records') are training time: the
    /// clock stops while the test split is evaluated and checkpoints are written.
    pub fn run(&mut self, observer: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        self.check_processes_agree()?;
        let start = Instant::now();
        // Evaluation and checkpoint time, off the training clock.
        let mut paused = Duration::ZERO;
        let elapsed = |p: &Progress, paused: Duration| {
            p.elapsed_before + start.elapsed().saturating_sub(paused).as_secs_f64()
        };
        let time_up =
            |now: f64, limit: Option<Duration>| limit.is_some_and(|l| now >= l.as_secs_f64());
        // The evaluation marks still ahead (a resumed run has passed some).
        let mut marks: Vec<f64> = self
            .options
            .eval_at
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        marks.sort_by(f64::total_cmp);
        marks.retain(|&m| m > self.progress.elapsed_before);
        let mut marks = marks.into_iter().peekable();
        let mut failures = 0;
        // Whether every step of this run failed on the loss or gradient at its parameters
        // (rejected steps leave them as they were): then they were bad from the start.
        let mut bad_from_the_start = true;
        let mut out_of_time = false;
        let mut epoch_losses: Vec<f64> = Vec::new();
        // True when steps ran since the last evaluation or checkpoint (so a stop mid-epoch
        // evaluates and saves once more).
        let (mut unevaluated_steps, mut unsaved_steps) = (false, false);
        loop {
            // The time limit is checked after each step, so every run makes at least one.
            if self
                .options
                .stop
                .epochs
                .is_some_and(|e| self.progress.epoch >= e)
                || out_of_time
            {
                break;
            }
            let mut batches = Batches::resume(
                &self.dataset.train,
                self.batch_options(),
                self.progress.epoch,
                self.progress.position,
            )?;
            while let Some(rows) = batches.next_rows() {
                let train = &self.dataset.train;
                let features = gather_rows(self.model.pool(), &train.features, rows);
                let targets = gather_rows(self.model.pool(), &train.targets, rows);
                let report = self.step(features, targets)?;
                self.progress.position += 1;
                self.progress.iteration += 1;
                (unevaluated_steps, unsaved_steps) = (true, true);
                if let Some(what) = report.non_finite {
                    failures += 1;
                    bad_from_the_start &= what.at_the_parameters();
                    observer(TrainEvent::NonFinite {
                        iteration: self.progress.iteration,
                        what,
                    });
                    if failures >= self.options.max_consecutive_failures {
                        return Err(Error::NonFinite {
                            message: format!(
                                "training stopped after {failures} consecutive steps with a {what} \
                                 (iteration {}); the parameters and the last checkpoint are the last good ones",
                                self.progress.iteration
                            ),
                            from_the_start: bad_from_the_start,
                        });
                    }
                } else {
                    failures = 0;
                    bad_from_the_start = false;
                    epoch_losses.push(report.loss);
                }
                let now = self.agreed(elapsed(&self.progress, paused))?;
                let record = Record {
                    kind: RecordKind::Step,
                    epoch: self.fractional_epoch(),
                    iteration: self.progress.iteration,
                    wall_time: now,
                    train_loss: report.loss.is_finite().then_some(report.loss),
                    test_loss: None,
                    test_accuracy: None,
                    rho: report.rho,
                    cg_iters: report.rho.map(|_| report.cg_iters),
                    step_size: Some(report.step_size),
                };
                observer(TrainEvent::Recorded(&record));
                self.history.push(record);
                if marks.next_if(|&m| now >= m).is_some() {
                    while marks.next_if(|&m| now >= m).is_some() {}
                    let pause = Instant::now();
                    self.evaluate(&mut epoch_losses, now, observer)?;
                    unevaluated_steps = false;
                    paused += pause.elapsed();
                }
                if time_up(now, self.options.stop.time_limit) {
                    out_of_time = true;
                    break;
                }
            }
            if self.progress.position
                == self
                    .batch_options()
                    .batches_per_epoch(self.dataset.train.len())
            {
                self.progress.epoch += 1;
                self.progress.position = 0;
                let (now, pause) = (
                    self.agreed(elapsed(&self.progress, paused))?,
                    Instant::now(),
                );
                // An evaluation mark that fell on the epoch's last step has evaluated it.
                if unevaluated_steps {
                    self.evaluate(&mut epoch_losses, now, observer)?;
                    unevaluated_steps = false;
                }
                self.save_checkpoint(now, observer)?;
                unsaved_steps = false;
                paused += pause.elapsed();
            }
        }
        let now = self.agreed(elapsed(&self.progress, paused))?;
        if unevaluated_steps {
            self.evaluate(&mut epoch_losses, now, observer)?;
        }
        if unsaved_steps {
            self.save_checkpoint(now, observer)?;
        }
        Ok(())
    }

    /// Test loss and accuracy of the current parameters; records them.
    fn evaluate(
        &mut self,
        epoch_losses: &mut Vec<f64>,
        wall_time: f64,
        observer: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let (test_loss, test_accuracy) = self.test_metrics(&self.dataset.test)?;
        let train_loss = (!epoch_losses.is_empty())
            .then(|| epoch_losses.iter().sum::<f64>() / epoch_losses.len() as f64);
        epoch_losses.clear();
        let record = Record {
            kind: RecordKind::Eval,
            epoch: self.fractional_epoch(),
            iteration: self.progress.iteration,
            wall_time,
            train_loss,
            test_loss: Some(test_loss),
            test_accuracy,
            rho: None,
            cg_iters: None,
            step_size: None,
        };
        observer(TrainEvent::Recorded(&record));
        self.history.push(record);
        Ok(())
    }

    /// Mean loss over a split of the dataset and, for classification, the accuracy: see
    /// [`evaluate`].
    pub fn test_metrics(&self, split: &Split) -> Result<(f64, Option<f64>)> {
        evaluate(
            self.model,
            &self.params(),
            self.dataset,
            split,
            self.options.eval_batch,
        )
    }

    fn save_checkpoint(&self, wall_time: f64, observer: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        let Some(path) = &self.options.checkpoint else {
            return Ok(());
        };
        // One writer: the processes hold the same parameters and state.
        if self.collective.rank() != 0 {
            return Ok(());
        }
        let checkpoint = Checkpoint {
            params: self.params(),
            optimizer_name: self.optimizer.name().to_string(),
            optimizer: self.optimizer.state(),
            progress: Progress {
                elapsed_before: wall_time,
                ..self.progress.clone()
            },
            history: self.history.clone(),
            dataset: self.dataset.name.clone(),
            pixels: self.dataset.image.map(|image| image.pixels),
            standardization: self.dataset.standardization.clone(),
            batch_size: self.options.batch_size,
            seed: self.options.seed,
            model: Some(self.model.identity().clone()),
        };
        checkpoint.save(path)?;
        observer(TrainEvent::Checkpoint(path));
        Ok(())
    }

    /// Continues from a checkpoint written by a run with the same model, optimizer, dataset, batch
    /// size and seed (anything else is an error that says what differs). The model is compared
    /// by its [`ModelIdentity`](crate::ModelIdentity), when the checkpoint records one.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let c = Checkpoint::load(path)?;
        let mismatch = |what: &str, saved: String, now: String| {
            Error::Tensor(format!(
                "{}: the checkpoint was written with {what} {saved}, this run uses {now}",
                path.display()
            ))
        };
        if let Some(saved) = c.model.as_ref().filter(|m| *m != self.model.identity()) {
            return Err(Error::Tensor(format!(
                "{}: the checkpoint's run trained {saved}, this run's is {}: a run resumes only \
                 into its own model (its parameters can start a new run, as --params)",
                path.display(),
                self.model.identity()
            )));
        }
        if c.optimizer_name != self.optimizer.name() {
            return Err(mismatch(
                "optimizer",
                c.optimizer_name,
                self.optimizer.name().to_string(),
            ));
        }
        if c.dataset != self.dataset.name {
            return Err(mismatch("dataset", c.dataset, self.dataset.name.clone()));
        }
        if let Some(image) = self.dataset.image {
            let saved = c.pixels.unwrap_or(PixelScale::Unit);
            if saved != image.pixels {
                return Err(mismatch(
                    "pixel scaling",
                    saved.to_string(),
                    image.pixels.to_string(),
                ));
            }
        }
        if c.standardization != self.dataset.standardization {
            return Err(Error::Tensor(format!(
                "{}: the checkpoint's run standardized its features differently (other \
                 statistics, or only one of the two runs standardized): resume on the same data \
                 with the same standardization choice",
                path.display()
            )));
        }
        if c.batch_size != self.options.batch_size {
            return Err(mismatch(
                "batch size",
                c.batch_size.to_string(),
                self.options.batch_size.to_string(),
            ));
        }
        if c.seed != self.options.seed {
            return Err(mismatch(
                "seed",
                c.seed.to_string(),
                self.options.seed.to_string(),
            ));
        }
        let in_file = |e: Error| Error::Tensor(format!("{}: {e}", path.display()));
        let per_epoch = self
            .batch_options()
            .batches_per_epoch(self.dataset.train.len());
        let p = &c.progress;
        if p.position > per_epoch
            || p.iteration != p.epoch.saturating_mul(per_epoch as u64) + p.position as u64
        {
            return Err(in_file(Error::Tensor(format!(
                "not a consistent position: epoch {}, batch {} and iteration {} (an epoch has \
                 {per_epoch} batches of {})",
                p.epoch, p.position, p.iteration, self.options.batch_size
            ))));
        }
        if let Some(epochs) = self.options.stop.epochs
            && p.epoch >= epochs
        {
            return Err(in_file(Error::Eval(format!(
                "the checkpoint is at epoch {}, past the end of this run ({epochs} epoch(s)); \
                 nothing is left to train (ask for more epochs)",
                p.epoch
            ))));
        }
        if !(p.elapsed_before.is_finite() && p.elapsed_before >= 0.0) {
            return Err(in_file(Error::Tensor(format!(
                "metadata 'elapsed_bits' is {} seconds, not a time",
                p.elapsed_before
            ))));
        }
        if let Some(unknown) = c
            .params
            .names()
            .find(|n| !self.model.layout().names().any(|p| p == *n))
        {
            let expected: Vec<&str> = self.model.layout().names().collect();
            return Err(in_file(Error::Tensor(format!(
                "tensor '{unknown}' is not a parameter of the model (expected: {})",
                listed(&expected)
            ))));
        }
        let theta = self.model.layout().flatten(&c.params).map_err(in_file)?;
        if let Some(name) = self.model.layout().first_non_finite(&theta) {
            return Err(in_file(Error::Tensor(format!(
                "parameter '{name}' holds a non-finite value"
            ))));
        }
        self.optimizer
            .restore(&c.optimizer, self.model.layout().len())
            .map_err(in_file)?;
        self.theta = theta;
        self.progress = c.progress;
        self.history = c.history;
        Ok(())
    }
}
