//! CIFAR-10, binary version (`cifar-10-binary.tar.gz` from <https://www.cs.toronto.edu/~kriz/cifar.html>,
//! which unpacks into a folder `cifar-10-batches-bin`): `data_batch_1.bin` … `data_batch_5.bin`
//! (training) and `test_batch.bin`, each 10000 records of one label byte (0–9) and 3072 pixel
//! bytes — the red, green and blue 32×32 planes, each row by row, which is one NCHW image of
//! shape [3, 32, 32].
//!
//! No package registry ships CIFAR-10, so the user provides the files. They are checked by size,
//! label range, and the class counts the dataset's page states (the test batch holds exactly 1000
//! images of each class, the training batches together exactly 5000). They are not checked by
//! sha256: no public source found lists digests of the individual files (the page gives only the
//! md5 of the archive, which sgn never sees).

use super::idx::{IdxArray, image_classification_split};
use super::{Dataset, ImageFormat, PixelScale, data_error};
use crate::{Error, Result};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The folder the official archive unpacks into; [`super::load`] looks for the files in
/// `<data dir>/cifar-10-batches-bin`.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// Records in each file of the official dataset.
pub const CIFAR10_RECORDS_PER_FILE: usize = 10_000;

const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
const NUM_CLASSES: usize = 10;
/// One image: channels, height, width.
const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
const IMAGE_BYTES: usize = 3 * 32 * 32;
/// A label byte, then the image.
const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Parses CIFAR-10 records (any whole number of them): the images as an IDX-like array
/// `records × 3 × 32 × 32` and the labels as one of `records`. `source` names the bytes in
/// errors.
///
/// Errors: a length that is not a whole number of 3073-byte records, and a label above 9 (naming
/// the record).
///
/// ```
/// # fn main() -> sgn::Result<()> {
/// let mut record = vec![7u8]; // the label
/// record.extend(std::iter::repeat_n(200u8, 3072)); // a light grey image
/// let (images, labels) = sgn::data::parse_cifar10_records(&record, "one record")?;
/// assert_eq!((images.dims, labels.data), (vec![1, 3, 32, 32], vec![7]));
/// # Ok(())
/// # }
/// ```
pub fn parse_cifar10_records(bytes: &[u8], source: &str) -> Result<(IdxArray, IdxArray)> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(data_error(format!(
            "{source}: {} bytes are not a whole number of CIFAR-10 records ({RECORD_BYTES} bytes \
             each: a label byte and 3×32×32 pixel bytes)",
            bytes.len()
        )));
    }
    let records = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(records);
    let mut images = Vec::with_capacity(records * IMAGE_BYTES);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let (label, image) = record.split_first().expect("records are not empty");
        if usize::from(*label) >= NUM_CLASSES {
            return Err(data_error(format!(
                "{source}: record {index} has label {label}; CIFAR-10 labels are 0 to 9"
            )));
        }
        labels.push(*label);
        images.extend_from_slice(image);
    }
    let mut dims = vec![records];
    dims.extend(IMAGE_SHAPE);
    Ok((
        IdxArray { dims, data: images },
        IdxArray {
            dims: vec![records],
            data: labels,
        },
    ))
}

/// Reads CIFAR-10 from the folder `dir` holding `data_batch_1.bin` … `data_batch_5.bin` and
/// `test_batch.bin`, each of `records_per_file` records ([`CIFAR10_RECORDS_PER_FILE`] for the
/// real files): 5 × `records_per_file` training and `records_per_file` test examples in file
/// order, features the 3072 pixels of each image scaled as `pixels` says, targets one-hot.
///
/// Checked before anything is used: every file is present (else the error lists the missing
/// ones, says where CIFAR-10 comes from and where to put it), has exactly `records_per_file`
/// records, labels 0–9, and the test file holds `records_per_file / 10` images of each class
/// and the training files together five times as many, as the official files do.
///
/// Errors: the above, I/O errors naming the file, features larger than the memory available,
/// and a `records_per_file` that is not a positive multiple of 10.
pub fn read_cifar10(dir: &Path, records_per_file: usize, pixels: PixelScale) -> Result<Dataset> {
    let examples = (TRAIN_FILES.len() + 1) as u64 * records_per_file as u64;
    crate::ir::memory::ensure_available(
        examples.checked_mul((IMAGE_BYTES * std::mem::size_of::<f32>()) as u64),
        || {
            format!(
                "CIFAR-10's features ({examples} images of {IMAGE_BYTES} f32 pixels) in {}",
                dir.display()
            )
        },
    )?;
    let [train, test] = read_files(dir, records_per_file)?;
    let split = |(images, labels, source): &(IdxArray, IdxArray, String)| {
        image_classification_split(images, labels, NUM_CLASSES, pixels, source, source)
    };
    Ok(Dataset {
        name: "cifar10".to_string(),
        train: split(&train)?,
        test: split(&test)?,
        num_classes: Some(NUM_CLASSES),
        target_scale: 1.0,
        image: Some(ImageFormat::of_example(&train.0.dims[1..], pixels)),
        standardization: None,
    })
}

/// Checks the CIFAR-10 files in `dir` as [`read_cifar10`] does, without building features;
/// returns their paths (training files first).
pub(crate) fn verify(dir: &Path, records_per_file: usize) -> Result<Vec<PathBuf>> {
    read_files(dir, records_per_file)?;
    Ok(paths(dir))
}

/// The paths of the CIFAR-10 files in `dir`, training files first.
pub(crate) fn paths(dir: &Path) -> Vec<PathBuf> {
    file_names().map(|name| dir.join(name)).collect()
}

/// Whether every CIFAR-10 file is in `dir` (present, not necessarily valid).
pub(crate) fn all_present(dir: &Path) -> bool {
    paths(dir).iter().all(|path| path.is_file())
}

fn file_names() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.into_iter().chain([TEST_FILE])
}

/// The training files' images and labels, concatenated, and the test file's, each with a name
/// for errors; every check of [`read_cifar10`] done.
fn read_files(dir: &Path, records_per_file: usize) -> Result<[(IdxArray, IdxArray, String); 2]> {
    if records_per_file == 0 || !records_per_file.is_multiple_of(NUM_CLASSES) {
        return Err(data_error(format!(
            "CIFAR-10 files hold a positive multiple of {NUM_CLASSES} records (the test file as \
             many of each class), not {records_per_file}"
        )));
    }
    check_present(dir)?;
    let expected_bytes = records_per_file.checked_mul(RECORD_BYTES).ok_or_else(|| {
        data_error(format!(
            "{records_per_file} CIFAR-10 records per file are too many to hold"
        ))
    })?;
    let read = |name: &str| -> Result<(IdxArray, IdxArray)> {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.len() != expected_bytes {
            return Err(data_error(format!(
                "{}: {} bytes, but {records_per_file} records of {RECORD_BYTES} bytes (a label \
                 byte and 3×32×32 pixel bytes) take {expected_bytes}: the file is truncated or \
                 not of CIFAR-10's binary version",
                path.display(),
                bytes.len()
            )));
        }
        parse_cifar10_records(&bytes, &path.display().to_string())
    };
    let (mut train_images, mut train_labels) = (Vec::new(), Vec::new());
    for name in TRAIN_FILES {
        let (images, labels) = read(name)?;
        train_images.extend(images.data);
        train_labels.extend(labels.data);
    }
    let train_records = train_labels.len();
    let mut train_dims = vec![train_records];
    train_dims.extend(IMAGE_SHAPE);
    let train_source = format!(
        "{} … {}",
        dir.join(TRAIN_FILES[0]).display(),
        TRAIN_FILES[TRAIN_FILES.len() - 1]
    );
    let (test_images, test_labels) = read(TEST_FILE)?;
    let test_source = dir.join(TEST_FILE).display().to_string();
    check_classes(&test_labels.data, &test_source)?;
    check_classes(&train_labels, &train_source)?;
    Ok([
        (
            IdxArray {
                dims: train_dims,
                data: train_images,
            },
            IdxArray {
                dims: vec![train_records],
                data: train_labels,
            },
            train_source,
        ),
        (test_images, test_labels, test_source),
    ])
}

/// Errors if any file is missing from `dir`, listing them, saying that no registry ships
/// CIFAR-10, where to get it and where the files go.
fn check_present(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for name in file_names() {
        let path = dir.join(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(data_error(format!("{}: not a file", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let which = if missing.len() == TRAIN_FILES.len() + 1 {
        "none of its files is there".to_string()
    } else {
        format!("missing: {}", missing.join(", "))
    };
    // A common slip: the folder of the files itself given as the data directory.
    let parent_has_them = dir
        .parent()
        .is_some_and(|parent| parent.join(TRAIN_FILES[0]).is_file());
    let slip = if parent_has_them {
        format!(
            " ({} itself holds {}: the files belong in {}, so give its parent as the data \
             directory)",
            dir.parent().expect("checked").display(),
            TRAIN_FILES[0],
            dir.display()
        )
    } else {
        String::new()
    };
    Err(data_error(format!(
        "CIFAR-10 is not in {dir} ({which}){slip}. No package registry ships CIFAR-10, so sgn \
         cannot fetch it: download its binary version, cifar-10-binary.tar.gz (\"CIFAR-10 binary \
         version (suitable for C programs)\"), from https://www.cs.toronto.edu/~kriz/cifar.html \
         and unpack it so that {dir} holds data_batch_1.bin … data_batch_5.bin and \
         test_batch.bin (the archive unpacks into a folder named {CIFAR10_DIR})",
        dir = dir.display()
    )))
}

/// Errors unless each of the ten classes has the same number of `labels` (a multiple of ten
/// labels, all below 10): CIFAR-10's test file is balanced, and so are its training files
/// together.
fn check_classes(labels: &[u8], source: &str) -> Result<()> {
    let mut counts = [0usize; NUM_CLASSES];
    for &label in labels {
        counts[usize::from(label)] += 1;
    }
    let each = labels.len() / NUM_CLASSES;
    match counts.iter().position(|&c| c != each) {
        None => Ok(()),
        Some(class) => Err(data_error(format!(
            "{source}: class {class} appears {} times, but CIFAR-10 has exactly {each} images of \
             each class there (class counts {counts:?}): these are not the CIFAR-10 files, or \
             they are damaged",
            counts[class]
        ))),
    }
}
