//! Checkpoints: everything needed to continue a run exactly, in one safetensors file that also
//! works as a parameter file (the parameters under their DSL names). Every tensor's sha256 is in
//! the metadata, so a damaged file is an error naming the tensor, never a silently different run.

use super::record::{RECORD_FIELDS, Record, RecordKind};
use super::{OptimizerState, Values};
use crate::data::{PixelScale, Standardization};
use crate::ir::store::{TensorMap, sha256_of};
use crate::ir::{DType, Tensor};
use crate::{Error, ModelIdentity, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Where a run stands: everything a checkpoint holds besides the parameters and optimizer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Progress {
    pub(crate) epoch: u64,
    pub(crate) position: usize,
    pub(crate) iteration: u64,
    /// Seconds trained before this process started (from a checkpoint).
    pub(crate) elapsed_before: f64,
}

/// Everything needed to continue a run, stored as one safetensors file: the parameters under
/// their DSL names (so the file also works as `--params`), `optimizer.<entry>` and
/// `history.<field>` as f64 tensors, and the rest as metadata.
pub(crate) struct Checkpoint {
    pub(crate) params: TensorMap,
    pub(crate) optimizer_name: String,
    pub(crate) optimizer: OptimizerState,
    pub(crate) progress: Progress,
    pub(crate) history: Vec<Record>,
    pub(crate) dataset: String,
    /// How the image dataset's pixels were scaled; `None` for other data. Checkpoints written
    /// before the choice existed have none, which for an image dataset means
    /// [`PixelScale::Unit`], the only scaling there was.
    pub(crate) pixels: Option<PixelScale>,
    /// The feature standardization the run's data went through (training-split statistics),
    /// so that evaluation applies the same; stored as the tensors `data.mean` and `data.std`.
    pub(crate) standardization: Option<Standardization>,
    pub(crate) batch_size: usize,
    pub(crate) seed: u64,
    /// The model the run trained; `None` in checkpoints written before it was recorded.
    pub(crate) model: Option<ModelIdentity>,
}

/// The metadata keys of the model's identity.
const MODEL_KEY: &str = "model";
const MODEL_SHA256_KEY: &str = "model_sha256";

/// The tensors of the feature standardization's statistics.
const MEAN_KEY: &str = "data.mean";
const STD_KEY: &str = "data.std";

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
///
/// [`Trainer`]: crate::optim::Trainer
pub fn is_checkpoint(path: &Path) -> bool {
    checkpoint_format(path).is_some()
}

/// The `format` metadata of the safetensors file at `path` if it names an sgn checkpoint.
fn checkpoint_format(path: &Path) -> Option<String> {
    let metadata = safetensors_metadata(path)?;
    let format = metadata.get("format")?.as_str()?;
    [CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1]
        .contains(&format)
        .then(|| format.to_string())
}

/// The metadata of the safetensors file at `path`, read from its header alone; `None` for a
/// file that cannot be read, is not safetensors or is no regular file (a FIFO is not waited on).
pub(crate) fn safetensors_metadata(
    path: &Path,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    safetensors_header(path)?
        .get("__metadata__")?
        .as_object()
        .cloned()
}

/// The JSON header of the safetensors file at `path`: its tensors by name, and its metadata
/// under `__metadata__`; `None` as for [`safetensors_metadata`].
pub(crate) fn safetensors_header(
    path: &Path,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use std::io::Read;
    let mut file = crate::ir::store::open_regular(path).ok()?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).ok()?;
    // safetensors caps headers at 100 MB; a checkpoint's is far smaller.
    let length = u64::from_le_bytes(length).min(100_000_000);
    let mut header = Vec::new();
    file.take(length).read_to_end(&mut header).ok()?;
    match serde_json::from_slice(&header).ok()? {
        serde_json::Value::Object(header) => Some(header),
        _ => None,
    }
}

/// The name of the data a checkpoint's run trained on (e.g. `boston (raw features)`, or a user
/// file's name with its held-out fraction), if `path` is an sgn checkpoint; read from the header
/// alone.
pub fn checkpoint_dataset(path: &Path) -> Option<String> {
    if !is_checkpoint(path) {
        return None;
    }
    Some(
        safetensors_metadata(path)?
            .get("dataset")?
            .as_str()?
            .to_string(),
    )
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
    let Some(metadata) = safetensors_metadata(path) else {
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

/// The feature standardization of a checkpoint's run (each column's mean and standard
/// deviation), if `path` is an sgn checkpoint that has one; `None` for other files (such as a
/// parameter file).
///
/// Errors: a damaged checkpoint, as [`load_params`].
pub fn checkpoint_standardization(path: &Path) -> Result<Option<Standardization>> {
    if !is_checkpoint(path) {
        return Ok(None);
    }
    Ok(Checkpoint::load(path)?.standardization)
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
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut map = self.params.clone();
        for (name, values) in &self.optimizer {
            map.insert(format!("optimizer.{name}"), vector(values.clone()));
        }
        for (i, field) in RECORD_FIELDS.iter().enumerate() {
            let column = self.history.iter().map(|r| history_row(r)[i]).collect();
            map.insert(format!("history.{field}"), vector(column));
        }
        if let Some(s) = &self.standardization {
            map.insert(MEAN_KEY, Tensor::F32(s.mean.clone().into_dyn()));
            map.insert(STD_KEY, Tensor::F32(s.std.clone().into_dyn()));
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
        if let Some(model) = &self.model {
            metadata.insert(MODEL_KEY.to_string(), model.name.clone());
            metadata.insert(MODEL_SHA256_KEY.to_string(), model.graph_sha256.clone());
        }
        if let Some(pixels) = self.pixels {
            metadata.insert(PIXELS_KEY.to_string(), pixels.to_string());
        }
        for (name, tensor) in map.iter() {
            metadata.insert(format!("{CHECKSUM_PREFIX}{name}"), sha256_of(tensor));
        }
        Ok(map.save(path, &metadata)?)
    }

    pub(crate) fn load(path: &Path) -> Result<Checkpoint> {
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
        let history = history_records(&history_columns, rows).map_err(corrupt)?;
        let standardization = match (map.remove(MEAN_KEY), map.remove(STD_KEY)) {
            (None, None) => None,
            (Some(Tensor::F32(mean)), Some(Tensor::F32(std)))
                if mean.ndim() == 1 && mean.shape() == std.shape() =>
            {
                let vector = |t: ndarray::ArrayD<f32>| t.into_dimensionality().expect("1-D");
                let statistics = Standardization {
                    mean: vector(mean),
                    std: vector(std),
                };
                if let Some(why) = statistics.invalid() {
                    return Err(corrupt(format!("'{MEAN_KEY}' and '{STD_KEY}': {why}")));
                }
                Some(statistics)
            }
            _ => {
                return Err(corrupt(format!(
                    "'{MEAN_KEY}' and '{STD_KEY}' are not two f32 vectors of one length"
                )));
            }
        };
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
            standardization,
            batch_size: number("batch_size")? as usize,
            seed: number("seed")?,
            model: match (metadata.get(MODEL_KEY), metadata.get(MODEL_SHA256_KEY)) {
                (Some(name), Some(digest)) => Some(ModelIdentity {
                    name: name.clone(),
                    graph_sha256: digest.clone(),
                }),
                (None, None) => None,
                _ => {
                    return Err(corrupt(format!(
                        "metadata '{MODEL_KEY}' and '{MODEL_SHA256_KEY}' come together, and only \
                         one of them is there"
                    )));
                }
            },
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

/// What a history column's present values must be: mostly what optimizer state entries must
/// be ([`Values`]), besides the record kind, the accuracy and the losses.
#[derive(Clone, Copy)]
enum Column {
    Is(Values),
    Kind,
    Fraction,
    /// A loss: any number (a custom loss may be negative or overflow).
    Any,
}

impl Column {
    fn admits(self, v: f64) -> bool {
        match self {
            Column::Is(values) => values.admits(v),
            Column::Kind => v == 0.0 || v == 1.0,
            Column::Fraction => (0.0..=1.0).contains(&v),
            Column::Any => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Column::Is(values) => values.describe(),
            Column::Kind => "0 (step) or 1 (eval)",
            Column::Fraction => "in [0, 1]",
            Column::Any => "a number",
        }
    }
}

/// Each history column, in [`RECORD_FIELDS`] order: whether its value may be absent (NaN), and
/// what a present one must be.
const HISTORY_COLUMNS: [(bool, Column); 10] = [
    (false, Column::Kind),
    (false, Column::Is(Values::NonNegative)),
    (false, Column::Is(Values::Count)),
    (false, Column::Is(Values::NonNegative)),
    (true, Column::Any),
    (true, Column::Any),
    (true, Column::Fraction),
    (true, Column::Is(Values::Positive)),
    (true, Column::Is(Values::Count)),
    (true, Column::Is(Values::Finite)),
];

/// The history's records from its columns (in [`RECORD_FIELDS`] order, `rows` values each),
/// checked as training writes them: each value in its range (NaN only for an absent value), and
/// the epoch, iteration and time never running backwards. An error names the column and row.
fn history_records(columns: &[Vec<f64>], rows: usize) -> std::result::Result<Vec<Record>, String> {
    let mut history: Vec<Record> = Vec::with_capacity(rows);
    let row_values = (0..rows).map(|r| columns.iter().map(|c| c[r]).collect::<Vec<f64>>());
    for (r, row) in row_values.enumerate() {
        let value = |field: usize| row[field];
        let bad = |field: usize, what: &str| {
            format!(
                "'history.{}' holds {} at row {r}; {what}",
                RECORD_FIELDS[field],
                value(field)
            )
        };
        for (field, &(optional, column)) in HISTORY_COLUMNS.iter().enumerate() {
            let v = value(field);
            if !(optional && v.is_nan() || column.admits(v)) {
                return Err(bad(field, &format!("it must be {}", column.describe())));
            }
        }
        let opt = |field: usize| Some(value(field)).filter(|v| !v.is_nan());
        let record = Record {
            kind: if value(0) == 0.0 {
                RecordKind::Step
            } else {
                RecordKind::Eval
            },
            epoch: value(1),
            iteration: value(2) as u64,
            wall_time: value(3),
            train_loss: opt(4),
            test_loss: opt(5),
            test_accuracy: opt(6),
            rho: opt(7),
            cg_iters: opt(8).map(|c| c as usize),
            step_size: opt(9),
        };
        if let Some(last) = history.last() {
            let backwards = [
                (1, record.epoch < last.epoch),
                (2, record.iteration < last.iteration),
                (3, record.wall_time < last.wall_time),
            ];
            if let Some((field, _)) = backwards.into_iter().find(|&(_, b)| b) {
                return Err(bad(
                    field,
                    "it is smaller than the row before (runs backwards)",
                ));
            }
        }
        history.push(record);
    }
    Ok(history)
}
