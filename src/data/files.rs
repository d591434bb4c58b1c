//! The user's own data files — safetensors, CSV with a header, or a pair of IDX files — read into
//! a [`Dataset`] for a model. The model's declarations ([`ModelData`]) say which tensors or
//! columns are its input and its target and how many values an example has; every mismatch is
//! an error naming the file, the tensor, column or line, and what was expected. Without a test
//! file, a seeded hold-out split (the same on every machine, whatever the training seed, so that
//! `sgn eval` finds the same test examples) is the test split.

use super::{
    Dataset, ImageFormat, PixelScale, Split, Standardization, classes_of, data_error,
    image_classification_split, one_hot, read_idx, seeded_rng, shuffled_indices,
};
use crate::ir::memory::ensure_available;
use crate::ir::store::listed;
use crate::ir::{Arg, ArgRole, Graph};
use crate::{Error, Result};
use ndarray::{Array2, Axis};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The seed of the hold-out split: fixed, so that evaluation finds the same test examples.
const HOLDOUT_SEED: u64 = 0;

/// A data file as users name it: `FILE.safetensors`, `FILE.csv`, or `IMAGES,LABELS` (two IDX
/// files, gzipped or not). A name with a comma that is an existing file is that file.
///
/// ```
/// use sgn::data::DataFile;
///
/// assert!(matches!("houses.csv".parse(), Ok(DataFile::Csv(_))));
/// assert!(matches!("train.safetensors".parse(), Ok(DataFile::Safetensors(_))));
/// assert!(matches!("images.idx,labels.idx".parse(), Ok(DataFile::Idx { .. })));
/// assert!("notes.txt".parse::<DataFile>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataFile {
    /// Two tensors named after the model's input and target, examples along their first axis.
    Safetensors(PathBuf),
    /// A header, then one example per row; [`FileOptions::target_columns`] names the targets.
    Csv(PathBuf),
    /// IDX images of unsigned bytes (examples first) and their class labels.
    Idx { images: PathBuf, labels: PathBuf },
}

impl FromStr for DataFile {
    type Err = Error;

    /// `IMAGES,LABELS` is a pair of IDX files (unless a file has that whole name); otherwise the
    /// extension decides (`.safetensors`, `.csv`), and anything else is an error listing the
    /// formats.
    fn from_str(spec: &str) -> Result<DataFile> {
        if let Some((images, labels)) = spec.split_once(',')
            && !Path::new(spec).is_file()
        {
            if images.is_empty() || labels.is_empty() || labels.contains(',') {
                return Err(data_error(format!(
                    "'{spec}': a pair of IDX files is written IMAGES,LABELS"
                )));
            }
            return Ok(DataFile::Idx {
                images: images.into(),
                labels: labels.into(),
            });
        }
        let path = PathBuf::from(spec);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("safetensors") => Ok(DataFile::Safetensors(path)),
            Some("csv") => Ok(DataFile::Csv(path)),
            _ => Err(data_error(format!(
                "'{spec}': unknown data file format; give a .safetensors or a .csv file, or two \
                 IDX files as IMAGES,LABELS"
            ))),
        }
    }
}

impl fmt::Display for DataFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataFile::Safetensors(path) | DataFile::Csv(path) => write!(f, "{}", path.display()),
            DataFile::Idx { images, labels } => {
                write!(f, "{},{}", images.display(), labels.display())
            }
        }
    }
}

impl DataFile {
    /// The files it reads.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            DataFile::Safetensors(path) | DataFile::Csv(path) => vec![path],
            DataFile::Idx { images, labels } => vec![images, labels],
        }
    }

    /// Its files' names without their folders, as a dataset's name shows them.
    fn short_name(&self) -> String {
        let names: Vec<String> = self
            .paths()
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or(p.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.join(",")
    }
}

/// What a model takes from a dataset: its one input and its one target, by name, the shape of
/// one example's input and the number of target values per example.
///
/// ```
/// use sgn::Model;
/// use sgn::data::ModelData;
///
/// let model = Model::parse(
///     "model classify\ninput x: f32[B, 4]\ntarget y: f32[B, 3]\nparam w: f32[4, 3]\n\
///      output z = x @ w\nloss softmax_cross_entropy(z, y)\n",
/// )?;
/// let data = ModelData::of(&model.graph)?;
/// assert_eq!((data.input.as_str(), data.input_example.as_slice()), ("x", &[4][..]));
/// assert_eq!((data.target.as_str(), data.target_width), ("y", 3));
/// assert_eq!(data.features(), 4);
///
/// // A dataset feeds one input; a model with two cannot take one.
/// let two_inputs = Model::parse(
///     "model two\ninput x: f32[B, 4]\ninput s: f32[B, 4]\ntarget y: f32[B, 3]\n\
///      param w: f32[4, 3]\noutput z = (x * s) @ w\nloss softmax_cross_entropy(z, y)\n",
/// )?;
/// let err = ModelData::of(&two_inputs.graph).unwrap_err();
/// assert!(err.to_string().contains("exactly one input"), "{err}");
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelData {
    /// The input's name.
    pub input: String,
    /// One example's input shape: the declared shape without the batch axis.
    pub input_example: Vec<usize>,
    /// The target's name.
    pub target: String,
    /// Target values per example (the `T` of `[B, T]`).
    pub target_width: usize,
}

impl ModelData {
    /// What the model of `graph` (a forward graph) takes.
    ///
    /// Errors ([`Error::Eval`]): not exactly one input and one target; an input not declared
    /// `[B, …]` with fixed sizes after the batch axis; a target not declared `[B, T]`.
    pub fn of(graph: &Graph) -> Result<ModelData> {
        let (input, target) = input_and_target(graph)?;
        let example = |arg: &Arg| -> Option<Vec<usize>> {
            let dims = arg.ty.shape.dims();
            if dims.len() < 2 {
                return None;
            }
            dims[1..]
                .iter()
                .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
                .collect()
        };
        let input_example = example(input).ok_or_else(|| {
            Error::Eval(format!(
                "the model declares its input '{}' as {}; data needs it [B, …] with fixed sizes \
                 after the batch axis",
                input.name, input.ty
            ))
        })?;
        let target_width = match example(target).as_deref() {
            Some(&[width]) => width,
            _ => {
                return Err(Error::Eval(format!(
                    "the model declares its target '{}' as {}; data needs it [B, T]",
                    target.name, target.ty
                )));
            }
        };
        Ok(ModelData {
            input: input.name.clone(),
            input_example,
            target: target.name.clone(),
            target_width,
        })
    }

    /// Input values per example.
    pub fn features(&self) -> usize {
        self.input_example.iter().product()
    }
}

/// The one input (the features) and the one target of the model of `graph`; else an error
/// ([`Error::Eval`]) saying how many there are.
pub fn input_and_target(graph: &Graph) -> Result<(&Arg, &Arg)> {
    let single = |role: ArgRole, what: &str| -> Result<&Arg> {
        let args: Vec<&Arg> = graph.args().iter().filter(|a| a.role == role).collect();
        match args.as_slice() {
            [arg] => Ok(arg),
            _ => Err(Error::Eval(format!(
                "training needs a model with exactly one {} (the dataset's {what}), found {}",
                role.name(),
                args.len()
            ))),
        }
    };
    Ok((
        single(ArgRole::Input, "features")?,
        single(ArgRole::Target, "targets")?,
    ))
}

/// Whether and how the feature columns are standardized.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Standardize {
    /// Not at all.
    #[default]
    No,
    /// With the statistics of the train split, fitted here.
    Fit,
    /// With these statistics (a checkpoint's, so that evaluation transforms as training did).
    With(Standardization),
}

/// How [`load_files`] reads the user's files.
///
/// A CSV file of 8 examples, its `label` column the class (0, 1 or 2) of a model whose target
/// is `[B, 3]`; a quarter held out for testing, the features standardized:
///
/// ```
/// use sgn::Model;
/// use sgn::data::{DataFile, FileOptions, ModelData, Standardize, load_files};
///
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let path = dir.path().join("flowers.csv");
/// let csv = "petal,sepal,label\n1.0,5.1,0\n1.4,4.9,0\n4.7,7.0,1\n4.5,6.4,1\n\
///            6.0,6.3,2\n5.1,5.8,2\n1.3,4.7,0\n4.9,6.9,1\n";
/// std::fs::write(&path, csv).expect("written");
///
/// let model = Model::parse(
///     "model flowers\ninput x: f32[B, 2]\ntarget y: f32[B, 3]\nparam w: f32[2, 3]\n\
///      output z = x @ w\nloss softmax_cross_entropy(z, y)\n",
/// )?;
/// let options = FileOptions {
///     target_columns: vec!["label".to_string()],
///     standardize: Standardize::Fit,
///     test_fraction: 0.25,
///     ..FileOptions::default()
/// };
/// let file = DataFile::Csv(path);
/// let data = load_files(Some(&file), None, &ModelData::of(&model.graph)?, &options)?;
/// assert_eq!((data.train.len(), data.test.len()), (6, 2));
/// assert_eq!(data.num_classes, Some(3)); // labels, made one-hot
/// assert_eq!(data.train.targets.ncols(), 3);
/// assert!(data.standardization.is_some()); // fitted on the 6 train examples
/// let mean = data.train.features.column(0).mean().expect("examples");
/// assert!(mean.abs() < 1e-5, "{mean}");
///
/// // A fraction outside (0, 1) is refused, naming the option.
/// let nothing_kept = FileOptions { test_fraction: 1.0, ..options };
/// let err = load_files(Some(&file), None, &ModelData::of(&model.graph)?, &nothing_kept);
/// assert!(err.unwrap_err().to_string().contains("test_fraction is 1; it must be in (0, 1)"));
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FileOptions {
    /// How u8 features (pixels) become numbers: required for them, refused for other features.
    pub pixels: Option<PixelScale>,
    /// CSV: the target columns, by header name; every other column is a feature.
    pub target_columns: Vec<String>,
    /// Feature standardization.
    pub standardize: Standardize,
    /// Without a test file: the fraction of the examples held out as the test split, in (0, 1).
    pub test_fraction: f64,
}

impl Default for FileOptions {
    fn default() -> FileOptions {
        FileOptions {
            pixels: None,
            target_columns: Vec::new(),
            standardize: Standardize::No,
            test_fraction: 0.1,
        }
    }
}

/// The dataset in the user's files for `model`: `train` and `test`, or `train` with a held-out
/// test split, or `test` alone (an empty train split: for evaluation).
///
/// - Safetensors: the tensors named after the model's input and target, examples along the
///   first axis; features F32, F64 or U8 (u8 values are pixels, scaled as `options.pixels`
///   says, which they require); targets F32 or F64 values, or integer class labels (one per
///   example) made one-hot when the model's target is `[B, classes]`.
/// - CSV: a header, then one example per line; the target columns are
///   `options.target_columns`, the rest are features. One target column for a `[B, classes]`
///   target holds class labels 0..classes.
/// - IDX: images of unsigned bytes and labels, as the MNIST files.
///
/// An example's values may be shaped in the file as the model takes them or flat; their number
/// must be the model's. Targets that are class labels (or one-hot rows) make a classification
/// (training reports accuracy).
///
/// Errors: unreadable or malformed files, missing tensors or columns, example counts or widths
/// that do not match the model, ragged CSV rows, non-numbers, NaN or infinite values, labels out
/// of range, u8 features without `options.pixels`, too few examples to hold out a test split,
/// and standardization without a train split to fit it on.
pub fn load_files(
    train: Option<&DataFile>,
    test: Option<&DataFile>,
    model: &ModelData,
    options: &FileOptions,
) -> Result<Dataset> {
    let read = |file: &DataFile| read_examples(file, model, options);
    let (train_part, test_part, name) = match (train, test) {
        (Some(train), Some(test)) => {
            let train_part = read(train)?;
            let test_part = in_columns_of(read(test)?, &train_part, test, train)?;
            let name = format!("{} + {}", train.short_name(), test.short_name());
            (train_part, test_part, name)
        }
        (Some(train), None) => {
            let fraction = options.test_fraction;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(Error::Options(format!(
                    "FileOptions: test_fraction is {fraction}; it must be in (0, 1)"
                )));
            }
            let (kept, held_out) = hold_out(read(train)?, fraction, train)?;
            // The fraction is part of the name, so that resuming on another split is refused.
            let name = format!(
                "{}, {} held out",
                train.short_name(),
                super::shown(options.test_fraction)
            );
            (kept, held_out, name)
        }
        (None, Some(test)) => {
            let part = read(test)?;
            (part.none(), part, test.short_name())
        }
        (None, None) => {
            return Err(data_error(
                "no data file: give a train file (and a test file)".to_string(),
            ));
        }
    };
    let labels = train_part.labels || test_part.labels;
    let image = train_part.image.or(test_part.image);
    let (mut train_split, mut test_split) = (train_part.split, test_part.split);
    let standardization = match &options.standardize {
        Standardize::No => None,
        Standardize::Fit if train_split.is_empty() => {
            return Err(data_error(
                "standardizing needs the train split's statistics: give the train file, or \
                 the checkpoint of the run that trained on it"
                    .to_string(),
            ));
        }
        Standardize::Fit => Some(Standardization::fit(&train_split.features)?),
        Standardize::With(fitted) => Some(fitted.clone()),
    };
    if let Some(s) = &standardization {
        s.apply(
            &mut train_split.features,
            &format!("the train data of {name}"),
        )?;
        s.apply(
            &mut test_split.features,
            &format!("the test data of {name}"),
        )?;
    }
    let num_classes = if labels {
        Some(model.target_width)
    } else {
        classes_of(&[&train_split.targets, &test_split.targets])
    };
    Ok(Dataset {
        name,
        train: train_split,
        test: test_split,
        num_classes,
        target_scale: 1.0,
        image,
        standardization,
    })
}

/// Examples read from one file, before the hold-out split and the standardization.
struct Examples {
    split: Split,
    /// Whether the targets were class labels, made one-hot.
    labels: bool,
    /// How pixels were laid out and scaled, for u8 features.
    image: Option<ImageFormat>,
    /// The feature columns' names in order, for a CSV file (whose header names them).
    feature_names: Option<Vec<String>>,
}

impl Examples {
    /// No examples, of the same widths and kind.
    fn none(&self) -> Examples {
        Examples {
            split: self.rows(&[]),
            labels: self.labels,
            image: self.image,
            feature_names: self.feature_names.clone(),
        }
    }

    fn rows(&self, rows: &[usize]) -> Split {
        Split {
            features: self.split.features.select(Axis(0), rows),
            targets: self.split.targets.select(Axis(0), rows),
        }
    }
}

/// `test`'s examples with their feature columns in `train`'s order, when both files name them
/// (CSV headers): features are matched by name, as a data frame would, never by position.
///
/// Errors: the two headers do not name the same feature columns, naming what differs.
fn in_columns_of(
    mut test: Examples,
    train: &Examples,
    test_file: &DataFile,
    train_file: &DataFile,
) -> Result<Examples> {
    let (Some(names), Some(wanted)) = (&test.feature_names, &train.feature_names) else {
        return Ok(test);
    };
    if names == wanted {
        return Ok(test);
    }
    let unique = |names: &[String]| names.iter().collect::<HashSet<_>>().len() == names.len();
    let order: Option<Vec<usize>> = wanted
        .iter()
        .map(|w| names.iter().position(|n| n == w))
        .collect();
    match order {
        Some(order) if names.len() == wanted.len() && unique(names) && unique(wanted) => {
            let features = test.split.features.select(Axis(1), &order);
            test.split.features = features.as_standard_layout().into_owned();
            test.feature_names = Some(wanted.clone());
            Ok(test)
        }
        _ => {
            let quoted = |names: &[String]| {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                listed(&names)
            };
            Err(data_error(format!(
                "{test_file}: its feature columns ({}) are not those of {train_file} ({}): a \
                 test file needs the train file's feature columns, in any order",
                quoted(names),
                quoted(wanted)
            )))
        }
    }
}

fn read_examples(file: &DataFile, model: &ModelData, options: &FileOptions) -> Result<Examples> {
    match file {
        DataFile::Safetensors(path) => read_safetensors(path, model, options),
        DataFile::Csv(path) => read_csv(path, model, options),
        DataFile::Idx { images, labels } => read_idx_pair(images, labels, model, options),
    }
}

/// Splits `all` into kept and held-out examples, `fraction` of them held out (at least one of
/// each), drawn by a fixed seed; each part keeps the file's order.
fn hold_out(all: Examples, fraction: f64, file: &DataFile) -> Result<(Examples, Examples)> {
    let n = all.split.len();
    if n < 2 {
        return Err(data_error(format!(
            "{file}: {n} example(s); holding out a test split needs at least 2 (or give a test \
             file)"
        )));
    }
    let held = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let order = shuffled_indices(n, &mut seeded_rng(HOLDOUT_SEED, 0, b"holdout\0"));
    let (mut held_rows, mut kept_rows) = (order[..held].to_vec(), order[held..].to_vec());
    held_rows.sort_unstable();
    kept_rows.sort_unstable();
    let part = |rows: &[usize]| Examples {
        split: all.rows(rows),
        labels: all.labels,
        image: all.image,
        feature_names: all.feature_names.clone(),
    };
    Ok((part(&kept_rows), part(&held_rows)))
}

/// The error for u8 features when no pixel scaling was chosen.
fn pixels_needed(what: &str) -> Error {
    data_error(format!(
        "{what} holds u8 values (pixels): say how to scale them with --pixels unit (divided by \
         255, into [0, 1]) or --pixels standardized (each image channel by its own mean and \
         deviation)"
    ))
}

/// The error when the file's values per example are not the model's.
fn width_mismatch(what: &str, shape: &[usize], role: &str, name: &str, wanted: &[usize]) -> Error {
    let has: usize = shape.iter().product();
    let wants: usize = wanted.iter().product();
    data_error(format!(
        "{what} has {has} values per example (example shape {shape:?}) but the model's {role} \
         '{name}' takes {wants} (shape {wanted:?})"
    ))
}

fn read_safetensors(path: &Path, model: &ModelData, options: &FileOptions) -> Result<Examples> {
    let file = path.display().to_string();
    let length = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    // The bytes and the decoded values (up to twice as wide) at once.
    ensure_available(length.checked_mul(3), || format!("reading {file}"))?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| data_error(format!("{file}: not a valid safetensors file: {e}")))?;
    let get = |name: &str, role: &str| {
        tensors.tensor(name).map_err(|_| {
            let mut names: Vec<&str> = tensors.names();
            names.sort_unstable();
            data_error(format!(
                "{file}: no tensor '{name}' (the model's {role}); the file has {}",
                listed(&names)
            ))
        })
    };
    let x = get(&model.input, "input")?;
    let y = get(&model.target, "target")?;
    let x_what = format!("{file}: tensor '{}'", model.input);
    let y_what = format!("{file}: tensor '{}'", model.target);
    let (count, x_example) = examples_of(&x, &x_what)?;
    let (y_count, y_example) = examples_of(&y, &y_what)?;
    if count != y_count {
        return Err(data_error(format!(
            "{x_what} holds {count} examples but tensor '{}' holds {y_count}",
            model.target
        )));
    }
    if count == 0 {
        return Err(data_error(format!("{x_what} holds no examples")));
    }
    if x_example.iter().product::<usize>() != model.features() {
        return Err(width_mismatch(
            &x_what,
            x_example,
            "input",
            &model.input,
            &model.input_example,
        ));
    }
    check_layout(&x_what, x_example, model)?;
    let (features, image) = match (x.dtype(), options.pixels) {
        (Dtype::U8, None) => return Err(pixels_needed(&x_what)),
        (Dtype::U8, Some(pixels)) => {
            // The model's image shape if it takes images, else the file's.
            let dims = if model.input_example.len() >= 2 {
                &model.input_example[..]
            } else {
                x_example
            };
            let image = ImageFormat::of_example(dims, pixels);
            let plane = (image.height * image.width).max(1);
            let values =
                Array2::from_shape_vec((count, model.features()), pixels.features(x.data(), plane))
                    .expect("the pixels fill count × features");
            (values, Some(image))
        }
        (Dtype::F32 | Dtype::F64, Some(_)) => {
            return Err(data_error(format!(
                "{x_what} holds {} values; --pixels scales u8 pixels only",
                x.dtype()
            )));
        }
        (Dtype::F32 | Dtype::F64, None) => (finite_rows(&x, count, &x_what)?, None),
        (other, _) => {
            return Err(data_error(format!(
                "{x_what} has dtype {other}; features must be F32, F64 or U8"
            )));
        }
    };
    let per_example: usize = y_example.iter().product();
    let width = model.target_width;
    let (targets, labels) = match y.dtype() {
        Dtype::F32 | Dtype::F64 => (finite_rows(&y, count, &y_what)?, false),
        dtype if is_integer(dtype) && per_example == 1 && width >= 2 => {
            let values = numbers(&y).expect("an integer dtype");
            let labels = values
                .iter()
                .enumerate()
                .map(|(index, &label)| class(label, width, || format!("{y_what}, example {index}")))
                .collect::<Result<Vec<usize>>>()?;
            (one_hot(labels, width), true)
        }
        dtype if is_integer(dtype) => (finite_rows(&y, count, &y_what)?, false),
        other => {
            return Err(data_error(format!(
                "{y_what} has dtype {other}; targets must be F32 or F64 values, or integer class \
                 labels"
            )));
        }
    };
    if targets.ncols() != width {
        let hint = if per_example == 1 {
            " (class labels: store them as integers)"
        } else {
            ""
        };
        return Err(data_error(format!(
            "{y_what} has {} values per example but the model's target '{}' takes {width}{hint}",
            targets.ncols(),
            model.target
        )));
    }
    Ok(Examples {
        split: Split { features, targets },
        labels,
        image,
        feature_names: None,
    })
}

/// Refuses an example shaped otherwise than the model's input, size-1 axes aside (`[28, 28]`
/// for `[1, 28, 28]` is fine; `[32, 32, 3]` for `[3, 32, 32]` would scramble the pixels); a flat
/// example on either side has no layout to contradict.
fn check_layout(what: &str, example: &[usize], model: &ModelData) -> Result<()> {
    let without_ones =
        |dims: &[usize]| -> Vec<usize> { dims.iter().copied().filter(|&d| d != 1).collect() };
    let (file, declared) = (without_ones(example), without_ones(&model.input_example));
    if file.len() <= 1 || declared.len() <= 1 || file == declared {
        return Ok(());
    }
    Err(data_error(format!(
        "{what} holds examples of shape {example:?}, but the model's input '{}' takes {:?}: \
         the same number of values in another layout (store them as the model takes them, or \
         flat)",
        model.input, model.input_example
    )))
}

/// A tensor's example count (its first axis) and one example's shape.
fn examples_of<'t>(tensor: &'t TensorView, what: &str) -> Result<(usize, &'t [usize])> {
    match tensor.shape().split_first() {
        Some((&count, example)) => Ok((count, example)),
        None => Err(data_error(format!(
            "{what} is a scalar; it needs the examples along a first axis"
        ))),
    }
}

fn is_integer(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::U8
            | Dtype::I8
            | Dtype::U16
            | Dtype::I16
            | Dtype::U32
            | Dtype::I32
            | Dtype::U64
            | Dtype::I64
    )
}

/// A tensor's values as f64 (exact for every dtype but 64-bit integers beyond 2^53); `None` for
/// dtypes that are not numbers sgn reads.
fn numbers(tensor: &TensorView) -> Option<Vec<f64>> {
    fn each<const N: usize>(data: &[u8], value: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        data.chunks_exact(N)
            .map(|b| value(b.try_into().expect("chunks of N bytes")))
            .collect()
    }
    let data = tensor.data();
    Some(match tensor.dtype() {
        Dtype::F32 => each(data, |b| f32::from_le_bytes(b).into()),
        Dtype::F64 => each(data, f64::from_le_bytes),
        Dtype::U8 => each(data, |b: [u8; 1]| b[0].into()),
        Dtype::I8 => each(data, |b| i8::from_le_bytes(b).into()),
        Dtype::U16 => each(data, |b| u16::from_le_bytes(b).into()),
        Dtype::I16 => each(data, |b| i16::from_le_bytes(b).into()),
        Dtype::U32 => each(data, |b| u32::from_le_bytes(b).into()),
        Dtype::I32 => each(data, |b| i32::from_le_bytes(b).into()),
        Dtype::U64 => each(data, |b| u64::from_le_bytes(b) as f64),
        Dtype::I64 => each(data, |b| i64::from_le_bytes(b) as f64),
        _ => return None,
    })
}

/// A tensor's values as `count` rows of f32; a value that is not finite (in f32) is an error
/// naming `what` and the example.
fn finite_rows(tensor: &TensorView, count: usize, what: &str) -> Result<Array2<f32>> {
    let values: Vec<f32> = numbers(tensor)
        .expect("a number dtype")
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let width: usize = tensor.shape()[1..].iter().product();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(data_error(format!(
            "{what}, example {}: holds {} (data must be finite{})",
            index / width.max(1),
            values[index],
            if tensor.dtype() == Dtype::F64 {
                ", and within f32's range"
            } else {
                ""
            }
        )));
    }
    Ok(Array2::from_shape_vec((count, width), values).expect("the values fill count × width"))
}

/// `value` as a class below `classes`, else an error naming `at()`.
fn class(value: f64, classes: usize, at: impl FnOnce() -> String) -> Result<usize> {
    if value >= 0.0 && value.fract() == 0.0 && value < classes as f64 {
        Ok(value as usize)
    } else {
        Err(data_error(format!(
            "{}: label {value} is not one of {}",
            at(),
            super::classes(classes)
        )))
    }
}

/// The line of `path` that `position` is on, counting `\n`, `\r\n` and a lone `\r` as line
/// ends (the csv crate counts `\n` alone, so CR-only files were all line 1); the csv crate's
/// count if the file cannot be read again (a FIFO, whose reopening would wait).
fn line_at(path: &Path, position: &csv::Position) -> u64 {
    let Ok(file) = crate::ir::store::open_regular(path) else {
        return position.line();
    };
    let byte = position.byte();
    let bytes = std::io::Read::bytes(std::io::Read::take(std::io::BufReader::new(file), byte));
    let (mut line, mut after_cr) = (1, false);
    for b in bytes.map_while(std::result::Result::ok) {
        if b == b'\r' || (b == b'\n' && !after_cr) {
            line += 1;
        }
        after_cr = b == b'\r';
    }
    line
}

fn read_csv(path: &Path, model: &ModelData, options: &FileOptions) -> Result<Examples> {
    let file = path.display().to_string();
    if options.pixels.is_some() {
        return Err(data_error(format!(
            "{file}: --pixels scales u8 pixels (in safetensors or IDX files); CSV values are \
             used as they are"
        )));
    }
    let csv_error = |e: csv::Error| match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => data_error(format!(
            "{file}:{}: {len} fields, but the header has {expected_len}",
            pos.as_ref().map_or(0, |p| line_at(path, p))
        )),
        _ => data_error(format!("{file}: {e}")),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(csv_error)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let columns: Vec<&str> = header.iter().map(String::as_str).collect();
    if options.target_columns.is_empty() {
        return Err(data_error(format!(
            "{file}: name the target column(s) with --target-columns (the header has {})",
            listed(&columns)
        )));
    }
    let mut target_index = Vec::new();
    for name in &options.target_columns {
        let index = columns.iter().position(|c| c == name).ok_or_else(|| {
            data_error(format!(
                "{file}: no column '{name}' in the header (it has {})",
                listed(&columns)
            ))
        })?;
        if target_index.contains(&index) {
            return Err(data_error(format!("--target-columns names '{name}' twice")));
        }
        if columns.iter().filter(|c| *c == name).count() > 1 {
            return Err(data_error(format!(
                "{file}: the header has two columns named '{name}'; a target's name must be \
                 unique"
            )));
        }
        target_index.push(index);
    }
    let feature_index: Vec<usize> = (0..header.len())
        .filter(|i| !target_index.contains(i))
        .collect();
    if feature_index.len() != model.features() {
        return Err(data_error(format!(
            "{file}: {} feature columns (all but the targets) but the model's input '{}' takes \
             {} values per example (shape {:?})",
            feature_index.len(),
            model.input,
            model.features(),
            model.input_example
        )));
    }
    let width = model.target_width;
    let labels = target_index.len() == 1 && width >= 2;
    if !labels && target_index.len() != width {
        return Err(data_error(format!(
            "{file}: {} target column(s) but the model's target '{}' takes {width} values per \
             example (give {width} columns, or one column of class labels 0..{width})",
            target_index.len(),
            model.target
        )));
    }
    let (mut features, mut targets, mut classes) = (Vec::new(), Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        // Counted again only for an error message: the csv crate counts `\n` alone.
        let line = || record.position().map_or(0, |p| line_at(path, p));
        let number = |i: usize| -> Result<f32> {
            let text = record.get(i).unwrap_or("").trim();
            let value: f32 = text.parse().map_err(|_| {
                data_error(format!(
                    "{file}:{}: column '{}': '{text}' is not a number",
                    line(),
                    header[i]
                ))
            })?;
            if !value.is_finite() {
                let why = match text.parse::<f64>().is_ok_and(f64::is_finite) {
                    true => format!("past f32's range (at most {:e} in magnitude)", f32::MAX),
                    false => "data must be finite".to_string(),
                };
                return Err(data_error(format!(
                    "{file}:{}: column '{}' holds {text} ({why})",
                    line(),
                    header[i]
                )));
            }
            Ok(value)
        };
        for &i in &feature_index {
            features.push(number(i)?);
        }
        if labels {
            let i = target_index[0];
            let at = || format!("{file}:{}: column '{}'", line(), header[i]);
            classes.push(class(number(i)?.into(), width, at)?);
        } else {
            for &i in &target_index {
                targets.push(number(i)?);
            }
        }
    }
    let count = features.len().checked_div(feature_index.len()).unwrap_or(0);
    if count == 0 {
        return Err(data_error(format!("{file}: no examples after the header")));
    }
    let features = Array2::from_shape_vec((count, feature_index.len()), features)
        .expect("a row of features per example");
    let targets = if labels {
        one_hot(classes, width)
    } else {
        Array2::from_shape_vec((count, width), targets).expect("a row of targets per example")
    };
    Ok(Examples {
        split: Split { features, targets },
        labels,
        image: None,
        feature_names: Some(feature_index.iter().map(|&i| header[i].clone()).collect()),
    })
}

fn read_idx_pair(
    images: &Path,
    labels: &Path,
    model: &ModelData,
    options: &FileOptions,
) -> Result<Examples> {
    let (images_what, labels_what) = (images.display().to_string(), labels.display().to_string());
    let pixels = options.pixels.ok_or_else(|| pixels_needed(&images_what))?;
    if model.target_width < 2 {
        return Err(data_error(format!(
            "{labels_what}: IDX labels are classes, but the model's target '{}' takes 1 value \
             per example; declare it [B, classes]",
            model.target
        )));
    }
    let image_array = read_idx(images)?;
    let label_array = read_idx(labels)?;
    let split = image_classification_split(
        &image_array,
        &label_array,
        model.target_width,
        pixels,
        &images_what,
        &labels_what,
    )?;
    let example = &image_array.dims[1..];
    if split.features.ncols() != model.features() {
        return Err(width_mismatch(
            &images_what,
            example,
            "input",
            &model.input,
            &model.input_example,
        ));
    }
    if split.is_empty() {
        return Err(data_error(format!("{images_what} holds no images")));
    }
    check_layout(&images_what, example, model)?;
    // The model's image shape if it takes images, else the file's (as for safetensors).
    let dims = if model.input_example.len() >= 2 {
        &model.input_example[..]
    } else {
        example
    };
    Ok(Examples {
        split,
        labels: true,
        image: Some(ImageFormat::of_example(dims, pixels)),
        feature_names: None,
    })
}
