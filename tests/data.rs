//! The data module: IDX parsing, the sine set, mini-batches, the cache's verification, and the
//! real datasets fetched from their registries (these need the network on first use and fail,
//! rather than pass, when the data cannot be had).

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::{Array2, Axis};
use sgn::data::{
    self, BatchOptions, Batches, Dataset, DatasetName, FetchReason, LoadOptions, SineOptions,
    Split, image_classification_split, parse_idx, read_idx, sha256_hex,
};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

// ---------------------------------------------------------------- IDX

/// An IDX file of unsigned bytes with sizes `dims` and elements `data`.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("in-memory write");
    encoder.finish().expect("in-memory gzip")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writable temporary directory");
    path
}

fn read_idx_error(bytes: &[u8]) -> (String, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = write(dir.path(), "bad-idx3-ubyte", bytes);
    let message = read_idx(&path)
        .expect_err("the file is malformed")
        .to_string();
    (message, path.display().to_string())
}

#[test]
fn idx_reads_raw_and_gzipped_files_alike() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data: Vec<u8> = (0..24).collect();
    let raw = idx_bytes(&[2, 3, 4], &data);
    let raw_path = write(dir.path(), "images-idx3-ubyte", &raw);
    // A misleading name: gzip is recognised by its magic bytes.
    let gz_path = write(dir.path(), "images-idx3-ubyte.raw", &gzip(&raw));
    for path in [raw_path, gz_path] {
        let array = read_idx(&path).expect("a well-formed file");
        assert_eq!(array.dims, [2, 3, 4], "{}", path.display());
        assert_eq!(array.data, data, "{}", path.display());
    }
}

#[test]
fn idx_wrong_magic_is_rejected() {
    let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
    bytes[1] = 0x01;
    let (message, file) = read_idx_error(&bytes);
    assert!(message.starts_with(&file), "{message}");
    assert!(
        message.contains("the magic number starts 00 01, expected 00 00"),
        "{message}"
    );
}

#[test]
fn idx_other_element_types_are_rejected() {
    let mut bytes = idx_bytes(&[1], &[0, 0, 0, 0]);
    bytes[2] = 0x0d; // f32 elements
    let (message, _) = read_idx_error(&bytes);
    assert!(message.contains("element type 0x0d"), "{message}");
}

#[test]
fn idx_truncated_data_names_expected_and_actual_sizes() {
    let bytes = idx_bytes(&[2, 3], &[0; 5]);
    let (message, file) = read_idx_error(&bytes);
    assert!(message.starts_with(&file), "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert!(
        message.contains(
            "2×3 unsigned bytes takes 18 bytes (12-byte header + 6 of data), the file has 17"
        ),
        "{message}"
    );
}

#[test]
fn idx_trailing_bytes_are_rejected() {
    let bytes = idx_bytes(&[2], &[7, 8, 9]);
    let (message, _) = read_idx_error(&bytes);
    assert!(message.contains("trailing bytes"), "{message}");
    assert!(message.contains("takes 10 bytes"), "{message}");
    assert!(message.contains("the file has 11"), "{message}");
}

#[test]
fn idx_truncated_header_is_rejected() {
    let (message, _) = read_idx_error(&[0, 0, 8, 3, 0, 0, 0, 2]);
    assert!(
        message.contains(
            "truncated IDX header: 3 dimensions need a 16-byte header, the file has 8 bytes"
        ),
        "{message}"
    );
    let (message, _) = read_idx_error(&[0, 0]);
    assert!(
        message.contains("shorter than the 4-byte magic"),
        "{message}"
    );
}

#[test]
fn idx_corrupt_gzip_is_a_format_error() {
    let mut bytes = gzip(&idx_bytes(&[4], &[1, 2, 3, 4]));
    bytes.truncate(bytes.len() - 10);
    let (message, file) = read_idx_error(&bytes);
    assert!(message.starts_with(&file), "{message}");
    assert!(message.contains("corrupt gzip data"), "{message}");
}

#[test]
fn idx_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("absent-idx1-ubyte");
    let error = read_idx(&path).expect_err("no such file");
    assert!(matches!(error, sgn::Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("absent-idx1-ubyte"), "{error}");
}

#[test]
fn idx_images_and_labels_make_a_scaled_one_hot_split() {
    let images = parse_idx(&idx_bytes(&[2, 1, 2], &[0, 255, 51, 102]), "images").expect("valid");
    let labels = parse_idx(&idx_bytes(&[2], &[2, 0]), "labels").expect("valid");
    let split = image_classification_split(&images, &labels, 3, "images", "labels")
        .expect("consistent arrays");
    assert_eq!(
        split.features,
        Array2::from_shape_vec((2, 2), vec![0.0, 1.0, 0.2, 0.4]).expect("2×2")
    );
    assert_eq!(
        split.targets,
        Array2::from_shape_vec((2, 3), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]).expect("2×3")
    );
    assert_eq!(split.class_labels(), [2, 0]);
}

#[test]
fn idx_image_and_label_counts_must_agree() {
    let images = parse_idx(&idx_bytes(&[3, 2], &[0; 6]), "imgs.idx").expect("valid");
    let labels = parse_idx(&idx_bytes(&[2], &[0, 1]), "lbls.idx").expect("valid");
    let message = image_classification_split(&images, &labels, 10, "imgs.idx", "lbls.idx")
        .expect_err("3 images, 2 labels")
        .to_string();
    assert_eq!(
        message,
        "imgs.idx holds 3 images but lbls.idx holds 2 labels"
    );
}

#[test]
fn idx_labels_must_be_classes() {
    let images = parse_idx(&idx_bytes(&[2, 1], &[0, 0]), "imgs").expect("valid");
    let labels = parse_idx(&idx_bytes(&[2], &[9, 10]), "lbls").expect("valid");
    let message = image_classification_split(&images, &labels, 10, "imgs", "lbls")
        .expect_err("label 10 of 10 classes")
        .to_string();
    assert_eq!(message, "lbls: label 10 at index 1 is not a class 0..10");
}

/// Found by the `idx` fuzz target: no images, but pixel dimensions whose product overflows, used
/// to panic in ndarray ("arithmetic overflow") instead of being an error.
#[test]
fn idx_image_dimensions_that_overflow_are_an_error_even_without_images() {
    let crash = [
        0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0xc2, 0xff, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x6b, 0x02,
    ];
    let images = parse_idx(&crash, "imgs").expect("0 images of 262338×4278190080×27394 pixels");
    let labels = parse_idx(&idx_bytes(&[0], &[]), "lbls").expect("no labels");
    let message = image_classification_split(&images, &labels, 10, "imgs", "lbls")
        .expect_err("the pixel count overflows")
        .to_string();
    assert_eq!(
        message,
        "imgs: images of 262338×4278190080×27394 pixels are too large to hold"
    );
    // Large but representable: an empty split.
    let images = parse_idx(&idx_bytes(&[0, 1 << 31, 1 << 31], &[]), "imgs").expect("no images");
    let split = image_classification_split(&images, &labels, 10, "imgs", "lbls")
        .expect("no images of 2^62 pixels");
    assert_eq!(split.features.dim(), (0, 1 << 62));
}

// ---------------------------------------------------------------- sine

fn sine(options: SineOptions) -> Dataset {
    let options = LoadOptions { sine: options };
    let unused = Path::new("/nonexistent/sgn-data-dir");
    data::load(DatasetName::Sine, &options, unused, |reason| {
        panic!("sine fetched: {reason}")
    })
    .expect("valid sine options")
}

#[test]
fn sine_has_the_paper_sizes_and_noise() {
    let set = sine(SineOptions::default());
    assert_eq!(set.train.features.dim(), (7000, 1));
    assert_eq!(set.train.targets.dim(), (7000, 1));
    assert_eq!(set.test.features.dim(), (3000, 1));
    assert_eq!(set.num_classes, None);
    let mut residuals = Vec::new();
    for split in [&set.train, &set.test] {
        for (x, y) in split.features.iter().zip(&split.targets) {
            assert!((-1.0..=1.0).contains(x), "x = {x}");
            residuals.push(f64::from(*y) - (10.0 * f64::from(*x)).sin());
        }
    }
    let n = residuals.len() as f64;
    let mean = residuals.iter().sum::<f64>() / n;
    let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 1e-3, "noise mean {mean}");
    assert!((std - 0.01).abs() < 5e-4, "noise std {std}");
    // x covers [−1, 1]: both ends of the interval are populated.
    let (lo, hi) = set
        .train
        .features
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    assert!(lo < -0.99 && hi > 0.99, "x range [{lo}, {hi}]");
}

#[test]
fn sine_is_deterministic_per_seed_and_follows_the_frequency() {
    let base = SineOptions::default();
    assert_eq!(sine(base), sine(base));
    let other_seed = sine(SineOptions { seed: 1, ..base });
    assert_ne!(other_seed.train, sine(base).train);
    let fast = sine(SineOptions {
        frequency: 100.0,
        noise_std: 0.0,
        train_size: 50,
        test_size: 20,
        ..base
    });
    assert_eq!((fast.train.len(), fast.test.len()), (50, 20));
    for (x, y) in fast.train.features.iter().zip(&fast.train.targets) {
        assert!((y - (100.0 * f64::from(*x)).sin() as f32).abs() < 1e-6);
    }
}

#[test]
fn sine_rejects_invalid_options() {
    let base = SineOptions::default();
    for (options, expected) in [
        (
            SineOptions {
                noise_std: -1.0,
                ..base
            },
            "sine: the noise standard deviation must be finite and non-negative, not -1",
        ),
        (
            SineOptions {
                frequency: f64::NAN,
                ..base
            },
            "sine: the frequency must be finite, not NaN",
        ),
        (
            SineOptions {
                test_size: 0,
                ..base
            },
            "sine: both splits need examples, got 7000 train and 0 test",
        ),
    ] {
        let options = LoadOptions { sine: options };
        let message = data::load(DatasetName::Sine, &options, Path::new("."), |_| {})
            .expect_err("invalid options")
            .to_string();
        assert_eq!(message, expected);
    }
}

// ---------------------------------------------------------------- mini-batches

/// A split whose features and targets both hold each example's index, to trace rows.
fn indexed_split(examples: usize) -> Split {
    Split {
        features: Array2::from_shape_fn((examples, 3), |(i, j)| (10 * i + j) as f32),
        targets: Array2::from_shape_fn((examples, 1), |(i, _)| i as f32),
    }
}

/// The example indices of a batch, checking that its features and targets stayed aligned.
fn batch_rows((features, targets): &(Array2<f32>, Array2<f32>)) -> Vec<usize> {
    features
        .axis_iter(Axis(0))
        .zip(targets.axis_iter(Axis(0)))
        .map(|(x, y)| {
            let index = y[0] as usize;
            assert_eq!(x[0], (10 * index) as f32, "features and targets misaligned");
            index
        })
        .collect()
}

#[test]
fn batches_are_deterministic_and_differ_by_seed_and_epoch() {
    let split = indexed_split(50);
    let options = BatchOptions::new(8, 3);
    let epoch = |options, e| -> Vec<_> {
        Batches::new(&split, options, e)
            .expect("valid batching")
            .collect()
    };
    assert_eq!(epoch(options, 0), epoch(options, 0));
    assert_ne!(epoch(options, 0), epoch(options, 1));
    assert_ne!(epoch(options, 0), epoch(BatchOptions::new(8, 4), 0));
    assert_eq!(
        epoch(options, 0)
            .iter()
            .flat_map(batch_rows)
            .collect::<Vec<_>>(),
        data::epoch_permutation(50, 3, 0)[..48],
        "batches follow the epoch permutation"
    );
}

#[test]
fn batches_cover_every_example_once_per_epoch() {
    let split = indexed_split(50);
    let keep = BatchOptions {
        keep_partial: true,
        ..BatchOptions::new(8, 11)
    };
    for e in 0..3 {
        let batches: Vec<_> = Batches::new(&split, keep, e).expect("valid").collect();
        let sizes: Vec<usize> = batches.iter().map(|(x, _)| x.nrows()).collect();
        assert_eq!(sizes, [8, 8, 8, 8, 8, 8, 2]);
        let mut rows: Vec<usize> = batches.iter().flat_map(batch_rows).collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..50).collect::<Vec<_>>(), "epoch {e}");
    }
    // Dropping the partial batch: 6 full batches of distinct examples.
    let drop = BatchOptions::new(8, 11);
    let batches: Vec<_> = Batches::new(&split, drop, 0).expect("valid").collect();
    assert_eq!(batches.len(), 6);
    assert!(
        batches
            .iter()
            .all(|(x, y)| x.nrows() == 8 && y.nrows() == 8)
    );
    let distinct: BTreeSet<usize> = batches.iter().flat_map(batch_rows).collect();
    assert_eq!(distinct.len(), 48);
    // Over epochs, the dropped examples change.
    let dropped = |e| data::epoch_permutation(50, 11, e)[48..].to_vec();
    assert_ne!(dropped(0), dropped(1));
}

#[test]
fn batches_resume_exactly_at_any_position() {
    let split = indexed_split(37);
    let options = BatchOptions::new(5, 9);
    for e in [0, 4] {
        let mut full = Batches::new(&split, options, e).expect("valid");
        assert_eq!(
            (full.epoch(), full.batches_per_epoch(), full.len()),
            (e, 7, 7)
        );
        let all: Vec<_> = full.by_ref().collect();
        assert_eq!(full.position(), 7);
        for position in 0..=7 {
            let resumed = Batches::resume(&split, options, e, position).expect("in range");
            assert_eq!(resumed.position(), position);
            assert_eq!(
                resumed.collect::<Vec<_>>(),
                all[position..],
                "position {position}"
            );
        }
    }
    // Interrupting after some batches and resuming at the reported position continues exactly.
    let mut interrupted = Batches::new(&split, options, 2).expect("valid");
    let head: Vec<_> = interrupted.by_ref().take(3).collect();
    let tail: Vec<_> = Batches::resume(&split, options, 2, interrupted.position())
        .expect("in range")
        .collect();
    let whole: Vec<_> = Batches::new(&split, options, 2).expect("valid").collect();
    assert_eq!([head, tail].concat(), whole);
}

#[test]
fn batching_rejects_impossible_requests() {
    let split = indexed_split(10);
    let message = |options, position| {
        Batches::resume(&split, options, 0, position)
            .expect_err("impossible")
            .to_string()
    };
    assert_eq!(
        message(BatchOptions::new(0, 0), 0),
        "the batch size must be at least 1"
    );
    assert_eq!(
        message(BatchOptions::new(11, 0), 0),
        "a batch size of 11 leaves no full batch in 10 examples; use at most 10 or keep the \
         partial batch"
    );
    assert_eq!(
        message(BatchOptions::new(3, 0), 4),
        "cannot resume at batch 4 of an epoch of 3 batches"
    );
    let empty = indexed_split(0);
    assert_eq!(
        Batches::new(&empty, BatchOptions::new(1, 0), 0)
            .expect_err("no examples")
            .to_string(),
        "cannot batch a split without examples"
    );
    let keep = BatchOptions {
        keep_partial: true,
        ..BatchOptions::new(11, 0)
    };
    let batches: Vec<_> = Batches::new(&split, keep, 0)
        .expect("one partial batch")
        .collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].0.nrows(), 10);
}

// ---------------------------------------------------------------- cache verification

const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

#[test]
fn check_cache_reports_first_use_missing_and_corrupt_files() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    assert_eq!(
        data::check_cache(DatasetName::Mnist, root).expect("readable"),
        Some(FetchReason::FirstUse)
    );
    let mnist = root.join("mnist");
    std::fs::create_dir(&mnist).expect("writable");
    let fake = idx_bytes(&[1], &[3]);
    write(&mnist, MNIST_FILES[1], &fake);
    assert_eq!(
        data::check_cache(DatasetName::Mnist, root).expect("readable"),
        Some(FetchReason::Missing {
            file: mnist.join(MNIST_FILES[0])
        })
    );
    for name in MNIST_FILES {
        write(&mnist, name, &fake);
    }
    let Some(FetchReason::Corrupt { file, problem }) =
        data::check_cache(DatasetName::Mnist, root).expect("readable")
    else {
        panic!("a fake cache must not verify");
    };
    assert_eq!(file, mnist.join(MNIST_FILES[0]));
    assert_eq!(
        problem,
        format!(
            "sha256 {}, expected ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            sha256_hex(&fake)
        )
    );
    let reason = FetchReason::Corrupt { file, problem };
    assert!(reason.to_string().starts_with(&format!(
        "cached {} is corrupt (sha256 ",
        mnist.join(MNIST_FILES[0]).display()
    )));
}

#[test]
fn check_cache_verifies_gzipped_files_by_their_content() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fashion = dir.path().join("fashion-mnist");
    std::fs::create_dir(&fashion).expect("writable");
    let name = "train-images-idx3-ubyte.gz";
    write(&fashion, name, &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]);
    let reason = data::check_cache(DatasetName::FashionMnist, dir.path()).expect("readable");
    let Some(FetchReason::Corrupt { file, problem }) = reason else {
        panic!("truncated gzip must not verify: {reason:?}");
    };
    assert_eq!(file, fashion.join(name));
    assert!(problem.starts_with("corrupt gzip data"), "{problem}");
}

#[test]
fn dataset_names_parse_and_unknown_ones_are_listed() {
    for name in DatasetName::ALL {
        assert_eq!(name.as_str().parse::<DatasetName>().expect("known"), name);
    }
    let message = "cifar10"
        .parse::<DatasetName>()
        .expect_err("unknown")
        .to_string();
    assert_eq!(
        message,
        "unknown dataset 'cifar10'; the datasets are mnist, fashion-mnist, boston, sine"
    );
    let fetched = data::fetch(DatasetName::Sine, Path::new("/nonexistent"), |_| {
        panic!("sine has nothing to fetch")
    })
    .expect("nothing to do");
    assert!(fetched.files.is_empty() && !fetched.downloaded);
}

// ---------------------------------------------------------------- real datasets (network on first use)

/// Loads `name` into the test data directory, fetching it if needed (and saying so), and checks
/// that the cache verifies afterwards.
fn load_real(name: DatasetName) -> Dataset {
    let dir = common::test_data_dir();
    let start = Instant::now();
    let set = data::load(name, &LoadOptions::default(), &dir, |reason| {
        eprintln!("fetching {name} into {} ({reason}) ...", dir.display())
    })
    .unwrap_or_else(|e| panic!("{name} must load (it is fetched when missing): {e}"));
    eprintln!("{name}: loaded in {:.1?}", start.elapsed());
    assert_eq!(data::check_cache(name, &dir).expect("readable"), None);
    set
}

/// Checks an MNIST-like set: sizes, one-hot targets over 10 classes, pixels in [0, 1]; returns
/// the per-class counts of the train and test splits.
fn check_image_set(set: &Dataset) -> [[usize; 10]; 2] {
    assert_eq!(set.num_classes, Some(10));
    assert_eq!(set.train.features.dim(), (60000, 784));
    assert_eq!(set.train.targets.dim(), (60000, 10));
    assert_eq!(set.test.features.dim(), (10000, 784));
    assert_eq!(set.test.targets.dim(), (10000, 10));
    [&set.train, &set.test].map(|split| {
        let (lo, hi) = split
            .features
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &p| {
                (lo.min(p), hi.max(p))
            });
        assert_eq!((lo, hi), (0.0, 1.0), "pixels span [0, 1]");
        for row in split.targets.axis_iter(Axis(0)) {
            assert_eq!(row.sum(), 1.0);
            assert!(row.iter().all(|&t| t == 0.0 || t == 1.0));
        }
        let mut counts = [0; 10];
        for label in split.class_labels() {
            counts[label] += 1;
        }
        assert_eq!(counts.iter().sum::<usize>(), split.len());
        counts
    })
}

#[test]
fn mnist_loads_with_the_official_split() {
    let set = load_real(DatasetName::Mnist);
    let [train, test] = check_image_set(&set);
    // The well-known class counts of MNIST.
    assert_eq!(
        train,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let fetched = data::fetch(DatasetName::Mnist, &common::test_data_dir(), |reason| {
        panic!("a verified cache is reused, not fetched ({reason})")
    })
    .expect("cached");
    assert!(!fetched.downloaded);
    assert_eq!(fetched.files.len(), 4);
}

#[test]
fn fashion_mnist_loads_balanced_classes() {
    let set = load_real(DatasetName::FashionMnist);
    assert_eq!(check_image_set(&set), [[6000; 10], [1000; 10]]);
}

#[test]
fn boston_is_split_and_scaled_as_documented() {
    let set = load_real(DatasetName::Boston);
    assert_eq!(set.num_classes, None);
    assert_eq!(set.train.features.dim(), (406, 13));
    assert_eq!(set.train.targets.dim(), (406, 1));
    assert_eq!(set.test.features.dim(), (100, 13));
    assert_eq!(set.test.targets.dim(), (100, 1));
    // MEDV is censored at 50 ($50000), and several of those rows are in any 406 of 506.
    assert_eq!(set.target_scale, 50.0);
    let max = set.train.targets.fold(0.0f32, |m, &t| m.max(t));
    assert_eq!(max, 1.0);
    assert!(set.train.targets.iter().all(|&t| t > 0.0));
    for (column, (mean, std)) in set
        .train
        .features
        .mean_axis(Axis(0))
        .expect("rows")
        .iter()
        .zip(set.train.features.std_axis(Axis(0), 0.0).iter())
        .enumerate()
    {
        assert!(mean.abs() < 1e-4, "feature {column}: train mean {mean}");
        assert!(
            (std - 1.0).abs() < 1e-4,
            "feature {column}: train std {std}"
        );
    }
    // The split is fixed: loading again gives the same examples in the same order.
    assert_eq!(load_real(DatasetName::Boston), set);
}

#[test]
fn a_corrupt_cached_file_is_fetched_again() {
    // Populate the shared cache, then copy it so that this test can damage its own copy.
    load_real(DatasetName::Mnist);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).expect("writable");
    for name in MNIST_FILES {
        std::fs::copy(
            common::test_data_dir().join("mnist").join(name),
            mnist.join(name),
        )
        .expect("copy of the verified cache");
    }
    let damaged = mnist.join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&damaged).expect("readable");
    bytes[100] ^= 0x01;
    std::fs::write(&damaged, &bytes).expect("writable");

    let mut reasons = Vec::new();
    let start = Instant::now();
    let fetched = data::fetch(DatasetName::Mnist, dir.path(), |reason| {
        reasons.push(reason.clone())
    })
    .expect("the corrupt file is replaced");
    eprintln!("mnist re-fetched in {:.1?}", start.elapsed());
    assert!(fetched.downloaded);
    assert_eq!(reasons.len(), 1);
    assert!(
        matches!(&reasons[0], FetchReason::Corrupt { file, problem }
            if *file == damaged && problem.contains("expected ff7bcfd416de3373")),
        "{reasons:?}"
    );
    assert_eq!(
        data::check_cache(DatasetName::Mnist, dir.path()).expect("readable"),
        None
    );
    // The work directory of the fetch is gone.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("downloads"))
        .expect("the downloads directory exists")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
