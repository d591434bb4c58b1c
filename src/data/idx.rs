//! The IDX format of the MNIST family: a 4-byte magic number `00 00 08 n` (unsigned bytes, `n`
//! dimensions), `n` big-endian `u32` sizes, then the elements in row-major order. Files may be
//! gzipped; the reader recognises gzip by its magic bytes `1f 8b`, not by the file name.

use super::{ImageFormat, PixelScale, Split, classes, data_error, one_hot};
use crate::ir::memory::ensure_available;
use crate::{Error, Result};
use flate2::read::MultiGzDecoder;
use ndarray::Array2;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The most bytes past an IDX array's end that are counted for the error.
const TRAILING_COUNTED: u64 = 1 << 20;
/// The IDX type code of unsigned bytes, the only element type of the MNIST family.
const UNSIGNED_BYTE: u8 = 0x08;

/// An IDX array of unsigned bytes: its sizes (outermost first) and its elements in row-major
/// order, `data.len()` being the product of `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<u8>,
}

/// Reads the IDX file at `path`, gzipped or not, checking its magic number and that its size
/// matches its dimensions exactly.
///
/// ```
/// # fn main() -> sgn::Result<()> {
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let path = dir.path().join("labels-idx1-ubyte");
/// // Magic 00 00 08 01 (unsigned bytes, one dimension), size 3, then the three labels.
/// std::fs::write(&path, [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]).expect("writable");
/// let labels = sgn::data::read_idx(&path)?;
/// assert_eq!(labels.dims, [3]);
/// assert_eq!(labels.data, [7, 2, 1]);
/// # Ok(())
/// # }
/// ```
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let source = path.display().to_string();
    let mut file = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    let gzipped = (file.fill_buf().map_err(|e| Error::io(path, e))?).starts_with(&GZIP_MAGIC);
    let failed = |e: std::io::Error| match gzipped {
        true => data_error(format!("{source}: corrupt gzip data: {e}")),
        false => Error::io(path, e),
    };
    // Decompressed as it is read: the header's sizes are checked, and the memory for them,
    // before a gzip stream that claims more than it holds (or than the machine has) is expanded.
    match gzipped {
        true => read_from(MultiGzDecoder::new(file), &source, failed),
        false => read_from(file, &source, failed),
    }
}

/// Parses IDX `bytes` (already decompressed); `source` names them in errors.
pub fn parse_idx(bytes: &[u8], source: &str) -> Result<IdxArray> {
    read_from(bytes, source, |e| {
        unreachable!("reading a byte slice cannot fail: {e}")
    })
}

/// Reads an IDX array from `reader`: the header, then exactly the bytes it declares. `source`
/// names the array in errors; `failed` turns a read error into one.
fn read_from(
    mut reader: impl Read,
    source: &str,
    failed: impl Fn(std::io::Error) -> Error,
) -> Result<IdxArray> {
    let mut read_up_to = |count: usize, into: &mut Vec<u8>| {
        (&mut reader)
            .take(count as u64)
            .read_to_end(into)
            .map_err(&failed)
    };
    let mut header = Vec::new();
    read_up_to(4, &mut header)?;
    let Some(&[zero_a, zero_b, type_code, ndim]) = header.first_chunk::<4>() else {
        return Err(data_error(format!(
            "{source}: not an IDX file: {} bytes is shorter than the 4-byte magic number",
            header.len()
        )));
    };
    if zero_a != 0 || zero_b != 0 {
        return Err(data_error(format!(
            "{source}: not an IDX file: the magic number starts {zero_a:02x} {zero_b:02x}, \
             expected 00 00"
        )));
    }
    if type_code != UNSIGNED_BYTE {
        return Err(data_error(format!(
            "{source}: IDX element type 0x{type_code:02x} is not supported; sgn reads unsigned \
             bytes (0x08) only"
        )));
    }
    if ndim == 0 {
        return Err(data_error(format!(
            "{source}: the IDX magic number declares 0 dimensions"
        )));
    }
    let header_len = 4 + 4 * usize::from(ndim);
    read_up_to(header_len - 4, &mut header)?;
    if header.len() < header_len {
        return Err(data_error(format!(
            "{source}: truncated IDX header: {ndim} dimensions need a {header_len}-byte header, \
             the file has {} bytes",
            header.len()
        )));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|b| {
            let size = u32::from_be_bytes(b.try_into().expect("chunks of exactly 4 bytes"));
            usize::try_from(size).expect("a u32 fits in usize on supported platforms")
        })
        .collect();
    let shape = dims
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×");
    let elements = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n.checked_add(header_len).is_some())
        .ok_or_else(|| data_error(format!("{source}: IDX dimensions {shape} overflow")))?;
    ensure_available(Some(elements as u64), || {
        format!("{source}: an IDX array of {shape} unsigned bytes")
    })?;
    let mut data = Vec::new();
    // Reserved once: growing by doubling could hold twice what was checked.
    data.try_reserve_exact(elements).map_err(|_| {
        Error::Memory(format!(
            "{source}: an IDX array of {shape} unsigned bytes: cannot allocate {elements} bytes"
        ))
    })?;
    read_up_to(elements, &mut data)?;
    // Trailing bytes are counted up to a bound: a gzip stream could expand without end.
    let trailing = std::io::copy(
        &mut (&mut reader).take(TRAILING_COUNTED),
        &mut std::io::sink(),
    )
    .map_err(&failed)?;
    let found = (header_len + data.len()) as u64 + trailing;
    if data.len() < elements || trailing > 0 {
        let (what, has) = match trailing {
            0 => ("truncated", ""),
            TRAILING_COUNTED => ("trailing bytes", "more than "),
            _ => ("trailing bytes", ""),
        };
        return Err(data_error(format!(
            "{source}: {what}: an IDX array of {shape} unsigned bytes takes {} bytes \
             ({header_len}-byte header + {elements} of data), the file has {has}{found}",
            header_len + elements,
        )));
    }
    Ok(IdxArray { dims, data })
}

/// `bytes` decompressed if they start with the gzip magic, else unchanged.
pub(crate) fn maybe_gunzip(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut plain = Vec::new();
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut plain)
        .map_err(|e| format!("corrupt gzip data: {e}"))?;
    Ok(plain)
}

/// A classification split from IDX images (`count × …`, pixels 0–255) and labels (`count`,
/// values below `num_classes`): features are the flattened images scaled as `pixels` says
/// (standardized over each plane of the last two dimensions: a `count × H × W` array is one
/// channel per image, `count × C × H × W` is C), targets the one-hot labels. `images_source` and
/// `labels_source` name the arrays in errors.
pub fn image_classification_split(
    images: &IdxArray,
    labels: &IdxArray,
    num_classes: usize,
    pixels: PixelScale,
    images_source: &str,
    labels_source: &str,
) -> Result<Split> {
    check_filled(images, images_source)?;
    check_filled(labels, labels_source)?;
    let [count, pixel_dims @ ..] = images.dims.as_slice() else {
        return Err(data_error(format!(
            "{images_source}: images need at least 2 dimensions (count × pixels), found 0"
        )));
    };
    if pixel_dims.is_empty() {
        return Err(data_error(format!(
            "{images_source}: images need at least 2 dimensions (count × pixels), found 1"
        )));
    }
    if labels.dims.len() != 1 {
        return Err(data_error(format!(
            "{labels_source}: labels need 1 dimension, found {}",
            labels.dims.len()
        )));
    }
    if labels.dims[0] != *count {
        return Err(data_error(format!(
            "{images_source} holds {count} images but {labels_source} holds {} labels",
            labels.dims[0]
        )));
    }
    if let Some((index, label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= num_classes)
    {
        return Err(data_error(format!(
            "{labels_source}: label {label} at index {index} is not one of {}",
            classes(num_classes)
        )));
    }
    // Checked even without images, when no data bounds it: ndarray refuses a shape whose
    // product does not fit `isize`.
    let per_image = pixel_dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&p| isize::try_from(p).is_ok())
        .ok_or_else(|| {
            let shape: Vec<String> = pixel_dims.iter().map(usize::to_string).collect();
            data_error(format!(
                "{images_source}: images of {} pixels are too large to hold",
                shape.join("×")
            ))
        })?;
    // The f32 features and the one-hot targets.
    let bytes = (per_image as u64)
        .checked_add(num_classes as u64)
        .and_then(|n| n.checked_mul(*count as u64))
        .and_then(|n| n.checked_mul(4));
    ensure_available(bytes, || {
        format!(
            "{images_source}: {count} images of {per_image} pixels and {num_classes} classes as \
             f32 features and one-hot targets"
        )
    })?;
    let image = ImageFormat::of_example(pixel_dims, pixels);
    // Saturating: with a zero dimension elsewhere there are no pixels and the plane size is moot.
    let plane = image.height.saturating_mul(image.width).max(1);
    let features =
        Array2::from_shape_vec((*count, per_image), pixels.features(&images.data, plane))
            .expect("check_filled: the data fills the dimensions");
    let targets = one_hot(labels.data.iter().map(|&l| usize::from(l)), num_classes);
    Ok(Split { features, targets })
}

/// Checks that the elements of `array` (which has public fields) fill its dimensions exactly.
fn check_filled(array: &IdxArray, source: &str) -> Result<()> {
    let elements = array.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements != Some(array.data.len()) {
        return Err(data_error(format!(
            "{source}: {} elements do not fill dimensions {:?}",
            array.data.len(),
            array.dims
        )));
    }
    Ok(())
}
