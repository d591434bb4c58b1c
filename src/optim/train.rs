//! The training driver: mini-batches from a dataset, one optimizer step each, evaluation after
//! every epoch, checkpoints that resume exactly.
//!
//! Exact resumption rests on three things: mini-batches are a pure function of (seed, epoch,
//! position); parameters are kept rounded to the model's element type, so the checkpoint holds
//! them exactly; and optimizer state is saved in f64.

use super::objective::ModelObjective;
use super::record::{RECORD_FIELDS, Record, RecordKind};
use super::{Optimizer, OptimizerState};
use crate::compile::CompiledModel;
use crate::data::{BatchOptions, Batches, Dataset, PixelScale, Split};
use crate::ir::store::{TensorMap, listed, sha256_of};
use crate::ir::{ArgRole, DType, Tensor};
use crate::{Error, Result};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many f64 vectors of the parameters' length a step holds at once, at most (SGN: θ, the
/// gradient, CG's five, the trial point, the previous step, the squared gradients, the
/// preconditioner, and the conversions to and from tensors).
const OPTIMIZER_VECTORS: u64 = 16;

/// When training stops (whichever comes first).
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    pub epochs: Option<u64>,
    pub time_limit: Option<Duration>,
}

/// Options of [`Trainer`].
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
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// A step or an evaluation was recorded.
    Recorded(&'a Record),
    /// A step was rejected because something was not finite; the parameters did not change.
    NonFinite { iteration: u64, what: &'a str },
    /// A checkpoint was written.
    Checkpoint(&'a Path),
}

/// Where a run stands: everything a checkpoint holds besides the parameters and optimizer.
#[derive(Clone, Debug, PartialEq)]
struct Progress {
    epoch: u64,
    position: usize,
    iteration: u64,
    /// Seconds trained before this process started (from a checkpoint).
    elapsed_before: f64,
}

/// Trains a compiled model on a dataset with one optimizer.
pub struct Trainer<'a> {
    model: &'a CompiledModel,
    dataset: &'a Dataset,
    optimizer: Box<dyn Optimizer>,
    options: TrainOptions,
    theta: Vec<f64>,
    progress: Progress,
    history: Vec<Record>,
    feed: Feed,
}

/// How a dataset's examples become a model's batches: the model's one input (the features) and
/// one target, their element type, and the shape one example's features take as the input.
struct Feed {
    input_name: String,
    target_name: String,
    dtype: DType,
    example_shape: Vec<usize>,
}

impl Feed {
    /// Checks that `model` can take `dataset`: one input and one target; the input declared
    /// `[B, F]` for F features per example or, for images, also `[B, C, H, W]`; targets `[B, T]`.
    fn new(model: &CompiledModel, dataset: &Dataset) -> Result<Feed> {
        let forward = &model.graphs.forward;
        let single = |role: ArgRole| -> Result<(String, DType)> {
            let args: Vec<_> = forward.args().iter().filter(|a| a.role == role).collect();
            match args.as_slice() {
                [a] => Ok((a.name.clone(), a.ty.dtype)),
                _ => Err(Error::Eval(format!(
                    "training needs a model with exactly one {} (the dataset's {}), found {}",
                    role.name(),
                    if role == ArgRole::Input {
                        "features"
                    } else {
                        "targets"
                    },
                    args.len()
                ))),
            }
        };
        let (input_name, dtype) = single(ArgRole::Input)?;
        let (target_name, _) = single(ArgRole::Target)?;
        let example_shape = input_example_shape(forward, &input_name, dataset)?;
        check_width(
            forward,
            &target_name,
            dataset.train.targets.ncols(),
            "targets",
        )?;
        Ok(Feed {
            input_name,
            target_name,
            dtype,
            example_shape,
        })
    }

    /// The batch of these feature and target rows, the features shaped as the model's input
    /// (a view of the same row-major numbers, not a copy) and both cast to its element type.
    fn batch(&self, features: Array2<f32>, targets: Array2<f32>) -> TensorMap {
        let mut shape = vec![features.nrows()];
        shape.extend(&self.example_shape);
        let features = features
            .into_shape_with_order(shape)
            .expect("the example shape holds each row's features (checked by Feed::new)");
        let mut batch = TensorMap::new();
        batch.insert(
            self.input_name.clone(),
            Tensor::F32(features).cast(self.dtype),
        );
        batch.insert(
            self.target_name.clone(),
            Tensor::F32(targets.into_dyn()).cast(self.dtype),
        );
        batch
    }
}

/// Mean loss of `model` at `params` over `split` (a split of `dataset`), run in chunks of
/// `chunk` examples (the losses are means over their chunk, so chunks are weighted by size),
/// and for a classification dataset the fraction of examples whose largest output is the label.
///
/// Errors: a model that cannot take the dataset (see [`Trainer::new`]), a `chunk` of 0, and
/// the model's own errors.
pub fn evaluate(
    model: &CompiledModel,
    params: &TensorMap,
    dataset: &Dataset,
    split: &Split,
    chunk: usize,
) -> Result<(f64, Option<f64>)> {
    if chunk == 0 {
        return Err(Error::Eval(
            "evaluation needs chunks of at least one example".to_string(),
        ));
    }
    let feed = Feed::new(model, dataset)?;
    let labels = dataset.num_classes.map(|_| split.class_labels());
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let n = split.len();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows = ndarray::s![start..end, ..];
        let batch = feed.batch(
            split.features.slice(rows).to_owned(),
            split.targets.slice(rows).to_owned(),
        );
        let (z, loss) = model.forward(params, &batch)?;
        loss_sum += loss * (end - start) as f64;
        if let Some(labels) = &labels {
            let z = z.to_f64();
            let classes = z.shape()[1];
            let flat = z.as_slice().expect("outputs are contiguous");
            for (row, label) in flat.chunks(classes).zip(&labels[start..end]) {
                let predicted = row
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 { (i, v) } else { best }
                    })
                    .0;
                correct += usize::from(predicted == *label);
            }
        }
        start = end;
    }
    let accuracy = labels.map(|_| correct as f64 / n as f64);
    Ok((loss_sum / n as f64, accuracy))
}

impl<'a> Trainer<'a> {
    /// A trainer starting from `params` (named as in the model).
    pub fn new(
        model: &'a CompiledModel,
        dataset: &'a Dataset,
        params: &TensorMap,
        optimizer: Box<dyn Optimizer>,
        options: TrainOptions,
    ) -> Result<Trainer<'a>> {
        let feed = Feed::new(model, dataset)?;
        if options.batch_size == 0 || options.batch_size > dataset.train.len() {
            return Err(Error::Eval(format!(
                "batch size {} does not fit the {} training examples of {}",
                options.batch_size,
                dataset.train.len(),
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
        Ok(Trainer {
            model,
            dataset,
            optimizer,
            options,
            theta,
            progress: Progress {
                epoch: 0,
                position: 0,
                iteration: 0,
                elapsed_before: 0.0,
            },
            history: Vec::new(),
            feed,
        })
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
        let start = Instant::now();
        // Evaluation and checkpoint time, off the training clock.
        let mut paused = Duration::ZERO;
        let elapsed = |p: &Progress, paused: Duration| {
            p.elapsed_before + start.elapsed().saturating_sub(paused).as_secs_f64()
        };
        let time_up = |p: &Progress, paused: Duration, limit: Option<Duration>| {
            limit.is_some_and(|l| elapsed(p, paused) >= l.as_secs_f64())
        };
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
            let batches = Batches::resume(
                &self.dataset.train,
                self.batch_options(),
                self.progress.epoch,
                self.progress.position,
            )?;
            for (features, targets) in batches {
                let batch = self.feed.batch(features, targets);
                let mut objective = ModelObjective::new(self.model, batch);
                let report = self.optimizer.step(&mut self.theta, &mut objective)?;
                self.model.layout().round_to_dtypes(&mut self.theta);
                self.progress.position += 1;
                self.progress.iteration += 1;
                (unevaluated_steps, unsaved_steps) = (true, true);
                if let Some(what) = &report.non_finite {
                    failures += 1;
                    observer(TrainEvent::NonFinite {
                        iteration: self.progress.iteration,
                        what,
                    });
                    if failures >= self.options.max_consecutive_failures {
                        return Err(Error::NonFinite(format!(
                            "training stopped after {failures} consecutive steps with a {what} \
                             (iteration {}); the parameters and the last checkpoint are the last good ones",
                            self.progress.iteration
                        )));
                    }
                } else {
                    failures = 0;
                    epoch_losses.push(report.loss);
                }
                let record = Record {
                    kind: RecordKind::Step,
                    epoch: self.fractional_epoch(),
                    iteration: self.progress.iteration,
                    wall_time: elapsed(&self.progress, paused),
                    train_loss: report.loss.is_finite().then_some(report.loss),
                    test_loss: None,
                    test_accuracy: None,
                    rho: report.rho,
                    cg_iters: report.rho.map(|_| report.cg_iters),
                    step_size: Some(report.step_size),
                };
                observer(TrainEvent::Recorded(&record));
                self.history.push(record);
                let now = elapsed(&self.progress, paused);
                if marks.next_if(|&m| now >= m).is_some() {
                    while marks.next_if(|&m| now >= m).is_some() {}
                    let pause = Instant::now();
                    self.evaluate(&mut epoch_losses, now, observer)?;
                    unevaluated_steps = false;
                    paused += pause.elapsed();
                }
                if time_up(&self.progress, paused, self.options.stop.time_limit) {
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
                let (now, pause) = (elapsed(&self.progress, paused), Instant::now());
                self.evaluate(&mut epoch_losses, now, observer)?;
                unevaluated_steps = false;
                self.save_checkpoint(now, observer)?;
                unsaved_steps = false;
                paused += pause.elapsed();
            }
        }
        let now = elapsed(&self.progress, paused);
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
            batch_size: self.options.batch_size,
            seed: self.options.seed,
        };
        checkpoint.save(path)?;
        observer(TrainEvent::Checkpoint(path));
        Ok(())
    }

    /// Continues from a checkpoint written by a run with the same model, optimizer, dataset, batch
    /// size and seed (anything else is an error that says what differs).
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let c = Checkpoint::load(path)?;
        let mismatch = |what: &str, saved: String, now: String| {
            Error::Tensor(format!(
                "{}: the checkpoint was written with {what} {saved}, this run uses {now}",
                path.display()
            ))
        };
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

/// The shape one example's features take as the model's input `name`: the input is declared
/// `[B, F]` for the dataset's F features per example, or for an image dataset also as one image
/// `[B, C, H, W]` (the same numbers, row-major). Anything else is an error naming the input, its
/// declared type and the dataset's features.
fn input_example_shape(
    graph: &crate::ir::Graph,
    name: &str,
    dataset: &Dataset,
) -> Result<Vec<usize>> {
    let ty = &graph.arg(name).expect("the argument exists").ty;
    let declared: Option<Vec<usize>> = ty.shape.dims()[1.min(ty.shape.rank())..]
        .iter()
        .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect();
    let width = dataset.train.features.ncols();
    let image = dataset.image.map(|image| image.shape().to_vec());
    let fits = |shape: &Vec<usize>| ty.shape.rank() >= 2 && declared.as_ref() == Some(shape);
    if let Some(shape) = [Some(vec![width]), image].into_iter().flatten().find(fits) {
        return Ok(shape);
    }
    let dtype = ty.dtype;
    let (what, layouts) = match dataset.image.map(|image| image.shape()) {
        Some([c, h, w]) => (
            format!(" ({}: {c}×{h}×{w} images)", dataset.name),
            format!("{dtype}[B, {width}] or {dtype}[B, {c}, {h}, {w}]"),
        ),
        None => (String::new(), format!("{dtype}[B, {width}]")),
    };
    Err(Error::Eval(format!(
        "the dataset's features have {width} columns{what} but the model declares '{name}' as \
         {ty}; declare it as {layouts}"
    )))
}

fn check_width(graph: &crate::ir::Graph, name: &str, width: usize, what: &str) -> Result<()> {
    let ty = &graph.arg(name).expect("the argument exists").ty;
    let last = ty.shape.dims().last().and_then(|d| d.as_fixed());
    if ty.shape.rank() != 2 || last != Some(width as u64) {
        return Err(Error::Eval(format!(
            "the dataset's {what} have {width} columns but the model declares '{name}' as {ty}"
        )));
    }
    Ok(())
}

/// Everything needed to continue a run, stored as one safetensors file: the parameters under
/// their DSL names (so the file also works as `--params`), `optimizer.<entry>` and
/// `history.<field>` as f64 tensors, and the rest as metadata.
struct Checkpoint {
    params: TensorMap,
    optimizer_name: String,
    optimizer: OptimizerState,
    progress: Progress,
    history: Vec<Record>,
    dataset: String,
    /// How the image dataset's pixels were scaled; `None` for other data. Checkpoints written
    /// before the choice existed have none, which for an image dataset means
    /// [`PixelScale::Unit`], the only scaling there was.
    pixels: Option<PixelScale>,
    batch_size: usize,
    seed: u64,
}

/// The metadata key of the pixel scaling of an image dataset.
const PIXELS_KEY: &str = "pixels";

/// The format this version writes: v1 plus a sha256 of every tensor in the metadata.
const CHECKPOINT_FORMAT: &str = "sgn-checkpoint-2";
/// The format before checksums; still read (there is nothing to verify).
const CHECKPOINT_FORMAT_V1: &str = "sgn-checkpoint-1";
/// The metadata key of a tensor's checksum: `sha256.<tensor name>`.
const CHECKSUM_PREFIX: &str = "sha256.";

/// True if `path` holds a checkpoint written by [`Trainer`] (of any format version), judged from
/// the file's header alone; false for anything else, including a file that cannot be read.
pub fn is_checkpoint(path: &Path) -> bool {
    checkpoint_format(path).is_some()
}

/// The `format` metadata of the safetensors file at `path` if it names an sgn checkpoint.
fn checkpoint_format(path: &Path) -> Option<String> {
    let metadata = checkpoint_metadata(path)?;
    let format = metadata.get("format")?.as_str()?;
    [CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1]
        .contains(&format)
        .then(|| format.to_string())
}

/// The metadata of the safetensors file at `path`, read from its header alone; `None` for a
/// file that cannot be read or is not safetensors.
fn checkpoint_metadata(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).ok()?;
    // safetensors caps headers at 100 MB; a checkpoint's is far smaller.
    let length = u64::from_le_bytes(length).min(100_000_000);
    let mut header = Vec::new();
    file.take(length).read_to_end(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header.get("__metadata__")?.as_object().cloned()
}

/// The pixel scaling a checkpoint's run used, if `path` is an sgn checkpoint of a run on an
/// image dataset (one written before the choice existed used [`PixelScale::Unit`]); `None` for
/// other checkpoints and for files that are not checkpoints (such as a parameter file). Reads
/// the header alone, so that a caller can load the same data before resuming or evaluating.
///
/// Errors: a checkpoint whose pixel scaling is not one sgn knows (a damaged file).
pub fn checkpoint_pixels(path: &Path) -> Result<Option<PixelScale>> {
    if !is_checkpoint(path) {
        return Ok(None);
    }
    let Some(metadata) = checkpoint_metadata(path) else {
        return Ok(None);
    };
    match metadata.get(PIXELS_KEY) {
        None => Ok(None),
        Some(serde_json::Value::String(p)) => Ok(Some(pixel_scale(p, path)?)),
        Some(other) => Err(Error::Tensor(format!(
            "{}: not an sgn checkpoint: metadata '{PIXELS_KEY}' is {other}, not a string",
            path.display()
        ))),
    }
}

/// The pixel scaling named in a checkpoint's metadata; an unknown one is an error naming the file.
fn pixel_scale(name: &str, path: &Path) -> Result<PixelScale> {
    name.parse().map_err(|e| {
        Error::Tensor(format!(
            "{}: not an sgn checkpoint: metadata '{PIXELS_KEY}': {e}",
            path.display()
        ))
    })
}

/// Parameters from `path`: a safetensors file of parameters, or a checkpoint (whose checksums
/// are verified and whose optimizer state and history are left out).
///
/// Errors: as [`TensorMap::load`]; for a checkpoint, a damaged tensor (checksum mismatch) or
/// metadata, naming the file and the tensor.
pub fn load_params(path: &Path) -> Result<TensorMap> {
    if is_checkpoint(path) {
        Ok(Checkpoint::load(path)?.params)
    } else {
        Ok(TensorMap::load(path)?)
    }
}

impl Checkpoint {
    fn save(&self, path: &Path) -> Result<()> {
        let mut map = self.params.clone();
        for (name, values) in &self.optimizer {
            map.insert(format!("optimizer.{name}"), vector(values.clone()));
        }
        for (i, field) in RECORD_FIELDS.iter().enumerate() {
            let column = self.history.iter().map(|r| history_row(r)[i]).collect();
            map.insert(format!("history.{field}"), vector(column));
        }
        let mut metadata = BTreeMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("optimizer".to_string(), self.optimizer_name.clone()),
            ("dataset".to_string(), self.dataset.clone()),
            ("batch_size".to_string(), self.batch_size.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("epoch".to_string(), self.progress.epoch.to_string()),
            ("position".to_string(), self.progress.position.to_string()),
            ("iteration".to_string(), self.progress.iteration.to_string()),
            // Bits, so the accumulated time resumes exactly.
            (
                "elapsed_bits".to_string(),
                self.progress.elapsed_before.to_bits().to_string(),
            ),
        ]);
        if let Some(pixels) = self.pixels {
            metadata.insert(PIXELS_KEY.to_string(), pixels.to_string());
        }
        for (name, tensor) in map.iter() {
            metadata.insert(format!("{CHECKSUM_PREFIX}{name}"), sha256_of(tensor));
        }
        Ok(map.save(path, &metadata)?)
    }

    fn load(path: &Path) -> Result<Checkpoint> {
        let (mut map, metadata) = TensorMap::load_with_metadata(path)?;
        let corrupt = |what: String| {
            Error::Tensor(format!("{}: not an sgn checkpoint: {what}", path.display()))
        };
        let meta = |key: &str| -> Result<&String> {
            metadata
                .get(key)
                .ok_or_else(|| corrupt(format!("no '{key}' in its metadata")))
        };
        match meta("format")?.as_str() {
            CHECKPOINT_FORMAT => verify_checksums(&map, &metadata, path)?,
            CHECKPOINT_FORMAT_V1 => {}
            other => {
                return Err(corrupt(format!(
                    "format '{other}', expected '{CHECKPOINT_FORMAT}'"
                )));
            }
        }
        let number = |key: &str| -> Result<u64> {
            meta(key)?
                .parse()
                .map_err(|_| corrupt(format!("metadata '{key}' is not a number")))
        };
        let mut history_columns = Vec::with_capacity(RECORD_FIELDS.len());
        for field in RECORD_FIELDS {
            let t = map
                .remove(&format!("history.{field}"))
                .ok_or_else(|| corrupt(format!("no tensor 'history.{field}'")))?;
            history_columns.push(t.to_f64_vec());
        }
        let rows = history_columns[0].len();
        if history_columns.iter().any(|c| c.len() != rows) {
            return Err(corrupt("history columns of different lengths".to_string()));
        }
        let history = (0..rows)
            .map(|r| record_from_row(&history_columns.iter().map(|c| c[r]).collect::<Vec<_>>()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("a history row of unknown kind".to_string()))?;
        let optimizer_keys: Vec<String> = map
            .names()
            .filter(|n| n.starts_with("optimizer."))
            .map(str::to_string)
            .collect();
        let mut optimizer = OptimizerState::new();
        for key in optimizer_keys {
            let t = map.remove(&key).expect("listed above");
            optimizer.insert(key["optimizer.".len()..].to_string(), t.to_f64_vec());
        }
        Ok(Checkpoint {
            params: map,
            optimizer_name: meta("optimizer")?.clone(),
            optimizer,
            progress: Progress {
                epoch: number("epoch")?,
                position: number("position")? as usize,
                iteration: number("iteration")?,
                elapsed_before: f64::from_bits(number("elapsed_bits")?),
            },
            history,
            dataset: meta("dataset")?.clone(),
            pixels: metadata
                .get(PIXELS_KEY)
                .map(|p| pixel_scale(p, path))
                .transpose()?,
            batch_size: number("batch_size")? as usize,
            seed: number("seed")?,
        })
    }
}

/// Checks every tensor of a checkpoint against the sha256 its metadata holds for it (and that
/// no checksum names a tensor the file lacks): a flipped bit is an error naming the tensor.
fn verify_checksums(
    map: &TensorMap,
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<()> {
    let damaged =
        |what: String| Error::Tensor(format!("{}: damaged checkpoint: {what}", path.display()));
    for (name, tensor) in map.iter() {
        let saved = metadata
            .get(&format!("{CHECKSUM_PREFIX}{name}"))
            .ok_or_else(|| damaged(format!("tensor '{name}' has no checksum in the metadata")))?;
        if *saved != sha256_of(tensor) {
            return Err(damaged(format!(
                "tensor '{name}' does not match its sha256 (its values changed after it was saved)"
            )));
        }
    }
    if let Some(key) = metadata.keys().find(|k| {
        k.strip_prefix(CHECKSUM_PREFIX)
            .is_some_and(|n| map.get(n).is_none())
    }) {
        return Err(damaged(format!(
            "metadata '{key}' names a tensor the file does not have"
        )));
    }
    Ok(())
}

fn vector(values: Vec<f64>) -> Tensor {
    let n = values.len();
    Tensor::from_f64(DType::F64, &[n], values).expect("a vector")
}

/// A record as numbers, NaN for `None`, in [`RECORD_FIELDS`] order.
fn history_row(r: &Record) -> [f64; 10] {
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    [
        match r.kind {
            RecordKind::Step => 0.0,
            RecordKind::Eval => 1.0,
        },
        r.epoch,
        r.iteration as f64,
        r.wall_time,
        opt(r.train_loss),
        opt(r.test_loss),
        opt(r.test_accuracy),
        opt(r.rho),
        opt(r.cg_iters.map(|c| c as f64)),
        opt(r.step_size),
    ]
}

fn record_from_row(row: &[f64]) -> Option<Record> {
    let opt = |v: f64| (!v.is_nan()).then_some(v);
    Some(Record {
        kind: match row[0] {
            0.0 => RecordKind::Step,
            1.0 => RecordKind::Eval,
            _ => return None,
        },
        epoch: row[1],
        iteration: row[2] as u64,
        wall_time: row[3],
        train_loss: opt(row[4]),
        test_loss: opt(row[5]),
        test_accuracy: opt(row[6]),
        rho: opt(row[7]),
        cg_iters: opt(row[8]).map(|c| c as usize),
        step_size: opt(row[9]),
    })
}
