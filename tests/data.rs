//! The data module: IDX parsing, the sine set, mini-batches, the cache's verification, and the
//! real datasets fetched from their registries (these need the network on first use and fail,
//! rather than pass, when the data cannot be had).

use crate::common;

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::{Array2, Axis};
use sgn::data::{
    self, BatchOptions, Batches, BostonFeatures, Dataset, DatasetName, FetchReason, IdxArray,
    LoadOptions, PixelScale, SineOptions, Split, image_classification_split, parse_idx, read_idx,
    sha256_hex,
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
fn an_idx_file_claiming_more_than_memory_is_refused_before_it_is_expanded() {
    // 65535³ bytes (256 TiB) declared, a megabyte of zeros given: a gzip stream that small could
    // expand to far more, so the declared size is checked before any data is read.
    let mut claim = idx_bytes(&[65535, 65535, 65535], &[]);
    claim.extend(std::iter::repeat_n(0, 1 << 20));
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = write(dir.path(), "bomb-idx3-ubyte.gz", &gzip(&claim));
    let error = read_idx(&path).expect_err("more than memory");
    assert!(matches!(error, sgn::Error::Memory(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&path.display().to_string())
            && message.contains("IDX array of 65535×65535×65535 unsigned bytes needs"),
        "{message}"
    );
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
    let split =
        image_classification_split(&images, &labels, 3, PixelScale::Unit, "images", "labels")
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
    // A class count whose one-hot rows memory cannot hold is refused before any is made.
    let err = image_classification_split(
        &images,
        &labels,
        usize::MAX / 8,
        PixelScale::Unit,
        "images",
        "labels",
    )
    .unwrap_err();
    assert!(matches!(err, sgn::Error::Memory(_)), "{err}");
    assert!(
        err.to_string()
            .contains("classes as f32 features and one-hot targets"),
        "{err}"
    );
}

#[test]
fn idx_image_and_label_counts_must_agree() {
    let images = parse_idx(&idx_bytes(&[3, 2], &[0; 6]), "imgs.idx").expect("valid");
    let labels = parse_idx(&idx_bytes(&[2], &[0, 1]), "lbls.idx").expect("valid");
    let message = image_classification_split(
        &images,
        &labels,
        10,
        PixelScale::Unit,
        "imgs.idx",
        "lbls.idx",
    )
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
    let message =
        image_classification_split(&images, &labels, 10, PixelScale::Unit, "imgs", "lbls")
            .expect_err("label 10 of 10 classes")
            .to_string();
    assert_eq!(
        message,
        "lbls: label 10 at index 1 is not one of the 10 classes 0 to 9"
    );
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
    let message =
        image_classification_split(&images, &labels, 10, PixelScale::Unit, "imgs", "lbls")
            .expect_err("the pixel count overflows")
            .to_string();
    assert_eq!(
        message,
        "imgs: images of 262338×4278190080×27394 pixels are too large to hold"
    );
    // Large but representable: an empty split.
    let images = parse_idx(&idx_bytes(&[0, 1 << 31, 1 << 31], &[]), "imgs").expect("no images");
    let split = image_classification_split(&images, &labels, 10, PixelScale::Unit, "imgs", "lbls")
        .expect("no images of 2^62 pixels");
    assert_eq!(split.features.dim(), (0, 1 << 62));
}

// ---------------------------------------------------------------- sine

fn sine(options: SineOptions) -> Dataset {
    let options = LoadOptions {
        sine: options,
        ..LoadOptions::default()
    };
    let unused = Path::new("/nonexistent/sgn-data-dir");
    data::load(DatasetName::Sine, &options, unused, |reason| {
        panic!("sine fetched: {reason}")
    })
    .expect("valid sine options")
}

#[test]
fn a_sine_set_is_named_by_its_frequency_without_hundreds_of_digits() {
    for (frequency, name) in [
        (10.0, "sine (f = 10)"),
        (0.25, "sine (f = 0.25)"),
        (1e300, "sine (f = 1e300)"),
    ] {
        let options = SineOptions {
            frequency,
            train_size: 4,
            test_size: 2,
            ..SineOptions::default()
        };
        assert_eq!(sine(options).name, name);
    }
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
        (
            SineOptions {
                train_size: usize::MAX,
                ..base
            },
            "sine: a dataset of 18446744073709551615 train and 3000 test examples needs more than memory can address (2^63 bytes)",
        ),
    ] {
        let options = LoadOptions {
            sine: options,
            ..LoadOptions::default()
        };
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
fn next_rows_names_the_rows_the_iterator_gathers_and_moves_past_them() {
    let split = indexed_split(23);
    let mut keep = BatchOptions::new(5, 4);
    keep.keep_partial = true;
    let gathered: Vec<Vec<usize>> = Batches::new(&split, keep, 1)
        .expect("valid")
        .map(|batch| batch_rows(&batch))
        .collect();
    let mut batches = Batches::new(&split, keep, 1).expect("valid");
    let mut named = Vec::new();
    while let Some(rows) = batches.next_rows() {
        named.push(rows.to_vec());
    }
    assert_eq!(named, gathered);
    assert_eq!(named.last().map(Vec::len), Some(3), "the partial batch");
    assert_eq!(batches.position(), 5);
    assert!(batches.next().is_none());
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
    let message = "cifar100"
        .parse::<DatasetName>()
        .expect_err("unknown")
        .to_string();
    assert_eq!(
        message,
        "unknown dataset 'cifar100'; the datasets are mnist, fashion-mnist, cifar10, boston, sine"
    );
    let fetched = data::fetch(DatasetName::Sine, Path::new("/nonexistent"), |_| {
        panic!("sine has nothing to fetch")
    })
    .expect("nothing to do");
    assert!(fetched.files.is_empty() && !fetched.downloaded);
}

// ---------------------------------------------------------------- pixel scaling

/// Mean and population standard deviation, in f64.
fn mean_and_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let variance = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance.sqrt())
}

/// Varied pixel bytes: a fixed pseudo-random sequence.
fn pixel_bytes(n: usize, seed: u64) -> Vec<u8> {
    (0..n as u64)
        .map(|i| ((i * 2_654_435_761 + seed * 97) >> 7) as u8)
        .collect()
}

#[test]
fn unit_pixels_are_divided_by_255() {
    let pixels = [0, 1, 128, 254, 255, 17];
    let features = PixelScale::Unit.features(&pixels, 3);
    let expected: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    assert_eq!(features, expected);
}

#[test]
fn standardized_pixels_have_mean_0_and_std_1_per_image_and_channel() {
    // Three images of two 5×7 channels: each (image, channel) plane on its own.
    let plane = 35;
    let pixels = pixel_bytes(3 * 2 * plane, 1);
    let features = PixelScale::Standardized.features(&pixels, plane);
    assert_eq!(features.len(), pixels.len());
    for (k, (plane_features, plane_pixels)) in
        features.chunks(plane).zip(pixels.chunks(plane)).enumerate()
    {
        let (mean, std) = mean_and_std(plane_features);
        assert!(mean.abs() < 1e-6, "plane {k}: mean {mean}");
        assert!((std - 1.0).abs() < 1e-6, "plane {k}: std {std}");
        // Each value is (p − mean) / std of the plane's own pixels.
        let values: Vec<f32> = plane_pixels.iter().map(|&p| f32::from(p)).collect();
        let (pixel_mean, pixel_std) = mean_and_std(&values);
        for (&f, &p) in plane_features.iter().zip(plane_pixels) {
            let expected = (f64::from(p) - pixel_mean) / pixel_std;
            assert!((f64::from(f) - expected).abs() < 1e-6, "{f} vs {expected}");
        }
    }
}

#[test]
fn a_constant_image_standardizes_to_zeros_and_a_nearly_constant_one_exactly() {
    let plane = 784;
    // A constant channel: no spread at all; the floor keeps it finite (all zeros).
    let constant = vec![93u8; plane];
    let features = PixelScale::Standardized.features(&constant, plane);
    assert!(features.iter().all(|&f| f == 0.0), "{:?}", &features[..4]);
    // The least spread a non-constant channel can have (one pixel one grey level off) is above
    // the floor: standardized exactly, mean 0 and std 1.
    let mut nearly = constant.clone();
    nearly[10] = 94;
    let features = PixelScale::Standardized.features(&nearly, plane);
    assert!(features.iter().all(|f| f.is_finite()));
    let (mean, std) = mean_and_std(&features);
    assert!(
        mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-5,
        "{mean} {std}"
    );
    let n = plane as f64;
    assert!(
        (f64::from(features[10]) - (n - 1.0).sqrt()).abs() < 1e-4,
        "{}",
        features[10]
    );
    // A single pixel per channel is constant too.
    assert_eq!(PixelScale::Standardized.features(&[7, 200], 1), [0.0, 0.0]);
}

#[test]
fn pixel_scales_parse_and_unknown_ones_are_listed() {
    for scale in PixelScale::ALL {
        assert_eq!(scale.as_str().parse::<PixelScale>().unwrap(), scale);
    }
    assert_eq!(
        "per-image".parse::<PixelScale>().unwrap_err().to_string(),
        "unknown pixel scaling 'per-image'; the pixel scalings are unit, standardized"
    );
}

#[test]
fn idx_images_are_standardized_per_image_and_channel() {
    // Two images of 2 channels of 2×3 pixels: a count × C × H × W array.
    let pixels = pixel_bytes(2 * 2 * 6, 4);
    let images = parse_idx(&idx_bytes(&[2, 2, 2, 3], &pixels), "images").unwrap();
    let labels = parse_idx(&idx_bytes(&[2], &[1, 0]), "labels").unwrap();
    let standardized = |images: &IdxArray| {
        image_classification_split(
            images,
            &labels,
            2,
            PixelScale::Standardized,
            "images",
            "labels",
        )
        .unwrap()
    };
    let split = standardized(&images);
    assert_eq!(split.features.dim(), (2, 12));
    let flat = split.features.as_slice().unwrap();
    assert_eq!(flat, PixelScale::Standardized.features(&pixels, 6));
    // Per channel, not per image: the planes of 6 have mean 0 and std 1.
    for plane in flat.chunks(6) {
        let (mean, std) = mean_and_std(plane);
        assert!(
            mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-6,
            "{mean} {std}"
        );
    }
    // Images without channels (count × H × W, like MNIST) are one plane each.
    let images = parse_idx(&idx_bytes(&[2, 4, 3], &pixels), "images").unwrap();
    let split = standardized(&images);
    assert_eq!(
        split.features.as_slice().unwrap(),
        PixelScale::Standardized.features(&pixels, 12)
    );
}

// ---------------------------------------------------------------- CIFAR-10 files

const CIFAR_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// Record `i` of file `file` in the generated set: the label cycles through the ten classes (so
/// each file is balanced), the pixels are a pattern that differs per record and channel.
fn cifar_record(file: usize, i: usize) -> Vec<u8> {
    let mut record = vec![((i + file) % 10) as u8];
    record.extend(pixel_bytes(3072, (file * 1000 + i) as u64));
    record
}

/// A folder `cifar-10-batches-bin` of the six files with `records` records each, in a temporary
/// data directory.
fn cifar_dir(records: usize) -> (tempfile::TempDir, PathBuf) {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join(data::CIFAR10_DIR);
    std::fs::create_dir(&dir).unwrap();
    for (file, name) in CIFAR_FILES.iter().enumerate() {
        let bytes: Vec<u8> = (0..records).flat_map(|i| cifar_record(file, i)).collect();
        write(&dir, name, &bytes);
    }
    (data_dir, dir)
}

fn read_cifar_error(dir: &Path, records: usize) -> String {
    data::read_cifar10(dir, records, PixelScale::Unit)
        .expect_err("the files are not valid")
        .to_string()
}

#[test]
fn cifar_records_become_nchw_images_and_one_hot_labels() {
    let (_data_dir, dir) = cifar_dir(20);
    let set = data::read_cifar10(&dir, 20, PixelScale::Unit).unwrap();
    assert_eq!(set.name, "cifar10");
    assert_eq!(set.num_classes, Some(10));
    assert_eq!(
        set.image.map(|i| (i.shape(), i.pixels)),
        Some(([3, 32, 32], PixelScale::Unit))
    );
    assert_eq!(set.train.features.dim(), (100, 3072));
    assert_eq!(set.train.targets.dim(), (100, 10));
    assert_eq!(set.test.features.dim(), (20, 3072));
    // Training examples in file order, record order; the test file apart.
    for (split, files) in [(&set.train, 0..5), (&set.test, 5..6)] {
        let records = files.flat_map(|file| (0..20).map(move |i| cifar_record(file, i)));
        for (row, record) in records.enumerate() {
            assert_eq!(
                split.class_labels()[row],
                usize::from(record[0]),
                "row {row}"
            );
            // Pixel (c, h, w) is byte 1 + 1024·c + 32·h + w: the features are that order.
            let expected: Vec<f32> = record[1..].iter().map(|&p| f32::from(p) / 255.0).collect();
            assert_eq!(split.features.row(row).to_vec(), expected, "row {row}");
        }
    }
    // Standardized: each image's red, green and blue planes on their own.
    let set = data::read_cifar10(&dir, 20, PixelScale::Standardized).unwrap();
    assert_eq!(set.image.map(|i| i.pixels), Some(PixelScale::Standardized));
    let record = cifar_record(5, 3);
    assert_eq!(
        set.test.features.row(3).to_vec(),
        PixelScale::Standardized.features(&record[1..], 1024)
    );
}

#[test]
fn missing_cifar_files_are_listed_with_where_to_get_them() {
    let data_dir = tempfile::tempdir().unwrap();
    let message = data::load(
        DatasetName::Cifar10,
        &LoadOptions::default(),
        data_dir.path(),
        |_| panic!("CIFAR-10 is never fetched"),
    )
    .expect_err("no files")
    .to_string();
    let dir = data_dir.path().join("cifar-10-batches-bin");
    assert!(
        message.starts_with(&format!(
            "CIFAR-10 is not in {} (none of its files is there). No package registry ships \
             CIFAR-10, so sgn cannot fetch it: download its binary version",
            dir.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("https://www.cs.toronto.edu/~kriz/cifar.html")
            && message.contains(&format!(
                "so that {} holds data_batch_1.bin … data_batch_5.bin and test_batch.bin",
                dir.display()
            )),
        "{message}"
    );
    // `fetch` and `check_cache` cannot fetch it either, and say so the same way.
    for message in [
        data::fetch(DatasetName::Cifar10, data_dir.path(), |_| unreachable!())
            .expect_err("no files")
            .to_string(),
        data::check_cache(DatasetName::Cifar10, data_dir.path())
            .expect_err("no files")
            .to_string(),
    ] {
        assert!(
            message.contains("No package registry ships CIFAR-10"),
            "{message}"
        );
    }

    // Some files: the missing ones are named.
    let (_data_dir, dir) = cifar_dir(20);
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let message = read_cifar_error(&dir, 20);
    assert!(
        message.starts_with(&format!(
            "CIFAR-10 is not in {} (missing: data_batch_3.bin, test_batch.bin).",
            dir.display()
        )),
        "{message}"
    );

    // The files one level up, in the data directory itself: the slip is pointed out.
    let (data_dir, dir) = cifar_dir(20);
    for name in CIFAR_FILES {
        std::fs::rename(dir.join(name), data_dir.path().join(name)).unwrap();
    }
    let message = read_cifar_error(&dir, 20);
    assert!(
        message.contains(&format!(
            "({} itself holds data_batch_1.bin: the files belong in {}",
            data_dir.path().display(),
            dir.display()
        )),
        "{message}"
    );
}

#[test]
fn cifar_files_of_the_wrong_size_are_refused() {
    let (data_dir, dir) = cifar_dir(20);
    let path = dir.join("data_batch_4.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        read_cifar_error(&dir, 20),
        format!(
            "{}: 61459 bytes, but 20 records of 3073 bytes (a label byte and 3×32×32 pixel \
             bytes) take 61460: the file is truncated or not of CIFAR-10's binary version",
            path.display()
        )
    );
    // Through `load`, the official size is expected: 10000 records per file.
    std::fs::write(&path, [&bytes[..], &[0]].concat()).unwrap();
    let message = data::load(
        DatasetName::Cifar10,
        &LoadOptions::default(),
        data_dir.path(),
        |_| unreachable!(),
    )
    .expect_err("files of 20 records are not the real ones")
    .to_string();
    assert_eq!(
        message,
        format!(
            "{}: 61460 bytes, but 10000 records of 3073 bytes (a label byte and 3×32×32 pixel \
             bytes) take 30730000: the file is truncated or not of CIFAR-10's binary version",
            dir.join("data_batch_1.bin").display()
        )
    );
    // A count that cannot hold balanced classes is refused before any file is read.
    assert_eq!(
        read_cifar_error(&dir, 15),
        "CIFAR-10 files hold a positive multiple of 10 records (the test file as many of each \
         class), not 15"
    );
}

#[test]
fn cifar_labels_must_be_classes_and_balanced() {
    let (_data_dir, dir) = cifar_dir(20);
    let path = dir.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5 * 3073] = 10;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        read_cifar_error(&dir, 20),
        format!(
            "{}: record 5 has label 10; CIFAR-10 labels are 0 to 9",
            path.display()
        )
    );

    // A valid label, but one class too many in the test file.
    let (_data_dir, dir) = cifar_dir(20);
    let path = dir.join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes[0], 5,
        "record 0 of the test file is of class (0 + 5) % 10"
    );
    bytes[0] = 6;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        read_cifar_error(&dir, 20),
        format!(
            "{}: class 5 appears 1 times, but CIFAR-10 has exactly 2 images of each class there \
             (class counts [2, 2, 2, 2, 2, 1, 3, 2, 2, 2]): these are not the CIFAR-10 files, or \
             they are damaged",
            path.display()
        )
    );
}

#[test]
fn cifar_records_parse_only_in_whole_records() {
    let bytes: Vec<u8> = (0..3).flat_map(|i| cifar_record(0, i)).collect();
    let (images, labels) = data::parse_cifar10_records(&bytes, "three").unwrap();
    assert_eq!(images.dims, [3, 3, 32, 32]);
    assert_eq!(labels.data, [0, 1, 2]);
    assert_eq!(
        images.data,
        [&bytes[1..3073], &bytes[3074..6146], &bytes[6147..]].concat()
    );
    let (images, labels) = data::parse_cifar10_records(&[], "none").unwrap();
    assert_eq!((images.dims, labels.dims), (vec![0, 3, 32, 32], vec![0]));
    assert_eq!(
        data::parse_cifar10_records(&bytes[..3073 + 10], "short")
            .unwrap_err()
            .to_string(),
        "short: 3083 bytes are not a whole number of CIFAR-10 records (3073 bytes each: a label \
         byte and 3×32×32 pixel bytes)"
    );
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
    assert_eq!(
        set.image.map(|i| (i.shape(), i.pixels)),
        Some(([1, 28, 28], PixelScale::Unit))
    );
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
fn fashion_mnist_standardized_has_mean_0_and_std_1_in_every_image() {
    let unit = load_real(DatasetName::FashionMnist);
    let options = LoadOptions {
        pixels: PixelScale::Standardized,
        ..LoadOptions::default()
    };
    let set = data::load(
        DatasetName::FashionMnist,
        &options,
        &common::test_data_dir(),
        |_| panic!("cached by load_real"),
    )
    .unwrap();
    assert_eq!(
        set.image.map(|i| (i.shape(), i.pixels)),
        Some(([1, 28, 28], PixelScale::Standardized))
    );
    assert_eq!(
        (set.train.targets.clone(), set.test.targets.clone()),
        (unit.train.targets, unit.test.targets)
    );
    for split in [&set.train, &set.test] {
        for (i, image) in split.features.rows().into_iter().enumerate() {
            let (mean, std) = mean_and_std(image.as_slice().unwrap());
            assert!(
                mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-5,
                "image {i}: mean {mean}, std {std}"
            );
        }
    }
    // The same images: standardizing the unit features row by row gives the same values.
    let row = unit.test.features.row(123).to_vec();
    let (mean, std) = mean_and_std(&row);
    for (&s, &u) in set.test.features.row(123).iter().zip(&row) {
        assert!((f64::from(s) - (f64::from(u) - mean) / std).abs() < 1e-5);
    }
}

#[test]
fn a_dataset_without_pixels_refuses_a_pixel_scaling() {
    let options = LoadOptions {
        pixels: PixelScale::Standardized,
        ..LoadOptions::default()
    };
    let message = data::load(
        DatasetName::Sine,
        &options,
        Path::new("/nonexistent"),
        |_| unreachable!(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "sine is not an image dataset, so its features cannot have standardized pixels (the \
         pixel scaling applies to mnist, fashion-mnist and cifar10)"
    );
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
    // Raw features (the paper's authors'): the same split, the CSV's values, a name that says so.
    let raw_options = LoadOptions {
        boston: BostonFeatures::Raw,
        ..LoadOptions::default()
    };
    let raw = data::load(
        DatasetName::Boston,
        &raw_options,
        &common::test_data_dir(),
        |_| {},
    )
    .unwrap();
    assert_eq!(raw.name, "boston (raw features)");
    assert_eq!(
        (raw.train.targets.clone(), raw.test.targets.clone()),
        (set.train.targets, set.test.targets)
    );
    let tax = raw.train.features.column(9);
    assert!(
        tax.iter().all(|&t| (180.0..=720.0).contains(&t)),
        "TAX: {tax}"
    );
    let message = data::load(DatasetName::Sine, &raw_options, Path::new("."), |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(message, "sine: raw features are an option of boston only");
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
