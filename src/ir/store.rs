//! Named tensors on disk and seeded parameter initialization.
//!
//! - [`TensorMap`]: an ordered map name → [`Tensor`], read and written as
//!   [safetensors](https://huggingface.co/docs/safetensors) files (F32 and F64, little-endian),
//!   the format the rest of the ecosystem reads. Writes are atomic.
//! - [`check_args`]: picks the tensors for a graph's arguments out of a map, checking each against
//!   its declared type.
//! - [`init_params`]: draws a model's parameters from their [`Init`]s, deterministically from a
//!   seed, each parameter from its own stream.

use crate::ir::error::{Error, Result};
use crate::ir::graph::Arg;
use crate::ir::init::{Init, ParamSpec, fans};
use crate::ir::memory::{copy_bytes, ensure_available, gib, tensor_bytes};
use crate::ir::shape::{DType, TensorType};
use crate::ir::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use safetensors::{Dtype, SafeTensors, View};
use sha2::Digest;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

/// Named tensors, ordered by name: a parameter set, a batch of inputs, a set of results.
///
/// Saved and loaded as safetensors files; the names in the file are the DSL names.
///
/// ```
/// use sgn::ir::store::TensorMap;
/// use sgn::ir::{DType, Tensor};
/// use std::collections::BTreeMap;
///
/// # fn main() -> sgn::Result<()> {
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let path = dir.path().join("params.safetensors");
///
/// let mut params = TensorMap::new();
/// params.insert("w1", Tensor::from_f64(DType::F32, &[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap());
/// params.insert("scale", Tensor::scalar(DType::F64, 0.5));
/// let metadata = BTreeMap::from([("model".to_string(), "mnist_mlp".to_string())]);
/// params.save(&path, &metadata)?;
///
/// let (loaded, loaded_metadata) = TensorMap::load_with_metadata(&path)?;
/// assert_eq!(loaded, params);
/// assert_eq!(loaded_metadata, metadata);
/// assert_eq!(TensorMap::load(&path)?.names().collect::<Vec<_>>(), ["scale", "w1"]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorMap {
    tensors: BTreeMap<String, Tensor>,
}

impl TensorMap {
    /// An empty map.
    pub fn new() -> TensorMap {
        TensorMap::default()
    }

    /// Adds `tensor` under `name`, returning the tensor it replaces, if any.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.tensors.insert(name.into(), tensor)
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The tensor named `name`, to overwrite in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.tensors.get_mut(name)
    }

    /// Takes the tensor named `name` out of the map.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// `(name, tensor)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(name, t)| (name.as_str(), t))
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True if the map holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Moves every tensor of `other` in, its name prefixed with `prefix` (`grad.` + `w1`).
    pub fn extend_prefixed(&mut self, prefix: &str, other: TensorMap) {
        for (name, t) in other.tensors {
            self.tensors.insert(format!("{prefix}{name}"), t);
        }
    }

    /// Reads a safetensors file.
    ///
    /// Errors: [`Error::Io`] if the file cannot be read; [`Error::Tensor`], naming the file, if it
    /// is not a valid safetensors file or holds a tensor of a dtype other than F32 and F64;
    /// [`Error::Memory`] if the file is larger than the memory available to decode it.
    pub fn load(path: &Path) -> Result<TensorMap> {
        Ok(TensorMap::load_with_metadata(path)?.0)
    }

    /// Reads a safetensors file and its free-form string metadata (`__metadata__`; empty if the
    /// file has none). Errors as [`TensorMap::load`].
    pub fn load_with_metadata(path: &Path) -> Result<(TensorMap, BTreeMap<String, String>)> {
        // A regular file only: a device such as /dev/zero would be read forever.
        let mut file = open_regular(path).map_err(|e| Error::io(path, e))?;
        let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // The file's bytes and the decoded tensors are held at once.
        ensure_available(length.checked_mul(2), || {
            format!("reading {}", path.display())
        })?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| Error::io(path, e))?;
        TensorMap::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of a safetensors file and its metadata; `source` names the bytes in
    /// errors (a path, say). Errors as [`TensorMap::load`].
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<(TensorMap, BTreeMap<String, String>)> {
        let (header_len, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Tensor(format!("{source}: not a valid safetensors file: {e}")))?;
        // The format: an 8-byte little-endian header length, the JSON header, then the data.
        let data = bytes
            .get(HEADER_LEN_BYTES + header_len..)
            .expect("read_metadata checked the header length against the buffer");
        let mut map = TensorMap::new();
        for (name, info) in header.tensors() {
            let (start, end) = info.data_offsets;
            let raw = data
                .get(start..end)
                .expect("read_metadata checked the offsets against the buffer");
            map.insert(
                name.as_str(),
                decode(&name, info.dtype, &info.shape, raw, source)?,
            );
        }
        let metadata = header.metadata().clone().unwrap_or_default();
        Ok((map, metadata.into_iter().collect()))
    }

    /// The safetensors encoding of the map with `metadata` as its `__metadata__`.
    ///
    /// Errors ([`Error::Tensor`]): a tensor named `__metadata__` (the format reserves the name).
    pub fn to_bytes(&self, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        self.encode(metadata).map_err(Error::Tensor)
    }

    /// Writes the map to `path` as a safetensors file with `metadata`, atomically: the bytes go
    /// to a temporary file next to `path`, which is synced and then renamed over `path`. On any
    /// error the previous file at `path` is untouched and the temporary file is removed.
    ///
    /// Errors: [`Error::Io`] naming `path` if it cannot be written; [`Error::Tensor`] as
    /// [`TensorMap::to_bytes`].
    pub fn save(&self, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
        let bytes = self
            .encode(metadata)
            .map_err(|why| Error::Tensor(format!("{}: {why}", path.display())))?;
        write_atomically(path, |file, _| file.write_all(&bytes))
    }

    fn encode(&self, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
        if self.tensors.contains_key(RESERVED_NAME) {
            return Err(format!(
                "a tensor cannot be named '{RESERVED_NAME}' (safetensors reserves the name)"
            ));
        }
        let views = self
            .tensors
            .iter()
            .map(|(name, t)| (name.as_str(), LittleEndian(t)));
        let metadata: Option<HashMap<String, String>> =
            (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
        safetensors::serialize(views, metadata)
            .map_err(|e| format!("cannot encode the tensors as safetensors: {e}"))
    }
}

/// The header key of a safetensors file's free-form metadata, which no tensor may use.
const RESERVED_NAME: &str = "__metadata__";

impl<S: Into<String>> FromIterator<(S, Tensor)> for TensorMap {
    fn from_iter<I: IntoIterator<Item = (S, Tensor)>>(iter: I) -> TensorMap {
        TensorMap {
            tensors: iter.into_iter().map(|(n, t)| (n.into(), t)).collect(),
        }
    }
}

/// The sha256 of a tensor's data as a safetensors file stores it (row-major, little-endian), as
/// 64 lowercase hex digits.
pub fn sha256_of(tensor: &Tensor) -> String {
    sha256_hex(&LittleEndian(tensor).data())
}

/// The sha256 of `bytes` as 64 lowercase hex digits, the form `sha256sum` prints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&sha2::Sha256::digest(bytes))
}

/// `bytes` as lowercase hex digits, two per byte.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tensor as safetensors sees it: row-major little-endian bytes, whatever the host order and
/// the array's memory layout.
struct LittleEndian<'a>(&'a Tensor);

impl View for LittleEndian<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.dtype() {
            DType::F32 => Dtype::F32,
            DType::F64 => Dtype::F64,
        }
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        // `iter` walks in logical row-major order even for transposed or sliced arrays.
        let bytes = match self.0 {
            Tensor::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.0.len() * self.0.dtype().size_bytes()
    }
}

/// Size of the field that starts every safetensors file: the header's length.
const HEADER_LEN_BYTES: usize = 8;

/// A tensor from its raw little-endian bytes as stored in `source`, which names the file in errors.
fn decode(name: &str, dtype: Dtype, shape: &[usize], raw: &[u8], source: &str) -> Result<Tensor> {
    let bad_shape = |e: ndarray::ShapeError| {
        Error::Tensor(format!(
            "{source}: tensor '{name}' of shape {shape:?} does not fit its data: {e}"
        ))
    };
    match dtype {
        Dtype::F32 => {
            let values = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4 bytes")))
                .collect();
            ArrayD::from_shape_vec(IxDyn(shape), values)
                .map(Tensor::F32)
                .map_err(bad_shape)
        }
        Dtype::F64 => {
            let values = raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
                .collect();
            ArrayD::from_shape_vec(IxDyn(shape), values)
                .map(Tensor::F64)
                .map_err(bad_shape)
        }
        other => Err(Error::Tensor(format!(
            "{source}: tensor '{name}' has dtype {other}; sgn reads only F32 and F64 tensors"
        ))),
    }
}

/// Writes `path` through a temporary file beside it and a rename, so that readers see either
/// the old file or the new one, never a partial write. `write` fills the temporary file, given
/// both as an open file and by its path (whose extension is `path`'s: some encoders go by it); it
/// is synced before the rename and removed if anything fails.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File, &Path) -> std::io::Result<()>,
) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::new(
                ErrorKind::InvalidInput,
                "not a file path: it has no file name",
            ),
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let message = format!("directory {} does not exist", dir.display());
        return Err(Error::io(
            path,
            std::io::Error::new(ErrorKind::NotFound, message),
        ));
    }
    // The rename would put a regular file in place of a device, a FIFO or a socket (as root,
    // /dev/null itself): only a regular file is ever replaced.
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(Error::io(path, not_a_regular_file("written")));
    }
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    // Errors name the target: the temporary file is an implementation detail, removed anyway.
    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(&suffix);
    // A temporary file is private (0600), and the rename would keep that: the new file gets the
    // replaced file's permissions, or those of any new file (0666 less the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_or(0o666, |m| m.permissions().mode() & 0o7777);
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let mut temp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    let temp_path = temp.path().to_path_buf();
    write(temp.as_file_mut(), &temp_path)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_parent_dir(path);
    Ok(())
}

/// Opens `path` for reading if it is a regular file, and refuses anything else (a directory, a
/// device, a FIFO, a socket). A FIFO is opened without waiting for a writer, so that refusing it
/// cannot block, and the file is judged by what was opened, not by an earlier look at the path.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_a_regular_file("read"));
    }
    Ok(file)
}

/// Why a path that is no regular file cannot be `read` or `written`.
fn not_a_regular_file(what: &str) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::InvalidInput,
        format!(
            "not a regular file (a directory, device, FIFO or socket); only a regular file can be {what} here"
        ),
    )
}

/// Makes the rename itself durable. Best effort: some file systems cannot sync a directory, and
/// the new file is already complete and in place, so a failure here is not worth reporting.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The tensors for graph arguments `args`, in order, taken by name from `map` (read from `file`,
/// which names it in errors) and checked against each argument's declared type.
///
/// A fixed dimension must match exactly; a symbolic one accepts any size that is a multiple of
/// its constant factor (whether the symbols agree across arguments is the interpreter's check).
///
/// Errors ([`Error::Tensor`]): a missing name (listing the names the file has), a wrong dtype, a
/// wrong rank, a wrong fixed size; [`Error::Memory`] if the copies do not fit in memory.
pub fn check_args(map: &TensorMap, args: &[&Arg], file: &str) -> Result<Vec<Tensor>> {
    let copied = copy_bytes(args.iter().filter_map(|arg| map.get(&arg.name)));
    ensure_available(copied, || format!("a copy of the tensors of '{file}'"))?;
    args.iter()
        .map(|arg| checked(map, arg, file).cloned())
        .collect()
}

/// Checks that `map` (read from `file`, which names it in errors) holds exactly the tensors
/// `args` declare: each one under its name with its declared dtype and shape (as
/// [`check_args`]), and no other — a name the model does not declare is usually a typo, which
/// would otherwise go unnoticed.
///
/// Errors ([`Error::Tensor`]): as [`check_args`], and a tensor of another name (listing the
/// expected names).
///
/// ```
/// use sgn::Model;
/// use sgn::ir::store::{check_tensors, init_params};
///
/// let model = Model::parse(
///     "model m\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1]\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let params: Vec<_> = model.graph.args().iter().filter(|a| a.name == "w").collect();
/// let mut file = init_params(&model.params, 0)?;
/// check_tensors(&file, &params, "p.safetensors")?;
/// file.insert("w2", file.get("w").unwrap().clone());
/// let err = check_tensors(&file, &params, "p.safetensors").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "'p.safetensors' has a tensor 'w2' that the model does not declare (expected: w)"
/// );
/// # Ok::<(), sgn::Error>(())
/// ```
pub fn check_tensors(map: &TensorMap, args: &[&Arg], file: &str) -> Result<()> {
    for arg in args {
        checked(map, arg, file)?;
    }
    if let Some(unknown) = map.names().find(|n| !args.iter().any(|a| a.name == *n)) {
        let expected: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
        return Err(Error::Tensor(format!(
            "'{file}' has a tensor '{unknown}' that the model does not declare (expected: {})",
            listed(&expected)
        )));
    }
    Ok(())
}

/// The tensor for `arg` in `map`, checked against its declared type.
fn checked<'m>(map: &'m TensorMap, arg: &Arg, file: &str) -> Result<&'m Tensor> {
    checked_named(map, &arg.name, &arg.ty, file)
}

/// The tensor `name` of `map` (read from `file`, which names it in errors), checked against the
/// type `declared`, borrowed.
pub(crate) fn checked_named<'m>(
    map: &'m TensorMap,
    name: &str,
    declared: &TensorType,
    file: &str,
) -> Result<&'m Tensor> {
    let tensor = map
        .get(name)
        .ok_or_else(|| missing_tensor(map, name, file))?;
    check_type(tensor, name, declared, file)?;
    Ok(tensor)
}

/// `a, b, c` — or the first [`NAMES_SHOWN`] and how many more.
pub(crate) fn listed(names: &[&str]) -> String {
    let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown}, and {more} more"),
    }
}

/// How many names an error lists before it says how many more there are.
const NAMES_SHOWN: usize = 12;

fn missing_tensor(map: &TensorMap, name: &str, file: &str) -> Error {
    let available = if map.is_empty() {
        "it has none".to_string()
    } else {
        format!("it has: {}", listed(&map.names().collect::<Vec<_>>()))
    };
    Error::Tensor(format!("'{file}' has no tensor '{name}' ({available})"))
}

pub(crate) fn check_type(
    tensor: &Tensor,
    name: &str,
    declared: &TensorType,
    file: &str,
) -> Result<()> {
    let mismatch = |what: String| {
        Error::Tensor(format!(
            "tensor '{name}' in '{file}' {what} but the model declares {declared}"
        ))
    };
    if tensor.dtype() != declared.dtype {
        return Err(mismatch(format!("is {}", tensor.dtype())));
    }
    let actual = tensor.shape();
    let dims = declared.shape.dims();
    if actual.len() != dims.len() {
        return Err(mismatch(format!(
            "has rank {} (shape {actual:?})",
            actual.len()
        )));
    }
    for (axis, (&size, dim)) in actual.iter().zip(dims).enumerate() {
        let wrong = match dim.as_fixed() {
            Some(fixed) => (size as u64 != fixed).then(|| format!("not {fixed}")),
            None => (!(size as u64).is_multiple_of(dim.coeff()))
                .then(|| format!("not a multiple of {} as {dim} needs", dim.coeff())),
        };
        if let Some(wrong) = wrong {
            return Err(mismatch(format!(
                "has shape {actual:?} (axis {axis} is {size}, {wrong})"
            )));
        }
    }
    Ok(())
}

/// Initial values for the parameters `specs`, each drawn by its [`Init`] in its declared dtype.
///
/// Deterministic: each parameter's values depend only on `seed`, its name, shape and initializer,
/// so adding, removing or reordering other parameters leaves it unchanged. Values are drawn in
/// f64 and rounded for f32 parameters, so f32 and f64 versions of a model start from the same
/// point up to rounding.
///
/// Errors ([`Error::Tensor`]): a parameter with a symbolic dimension, a parameter declared twice,
/// `normal(std)` with a negative or non-finite `std`, `uniform(lo, hi)` with `lo > hi` or a
/// non-finite bound; [`Error::Memory`] when the parameters need more memory than is available
/// (naming the largest), checked before any is drawn.
pub fn init_params(specs: &[ParamSpec], seed: u64) -> Result<TensorMap> {
    let shapes = specs.iter().map(fixed_sizes).collect::<Result<Vec<_>>>()?;
    let bytes = |(spec, shape): (&ParamSpec, &Vec<usize>)| tensor_bytes(spec.ty.dtype, shape);
    let total = specs
        .iter()
        .zip(&shapes)
        .try_fold(0u64, |n, p| n.checked_add(bytes(p)?));
    ensure_available(total, || {
        let largest = specs
            .iter()
            .zip(&shapes)
            .max_by_key(|&p| bytes(p).unwrap_or(u64::MAX))
            .map_or(String::new(), |p| {
                let size = bytes(p).map_or("past 2^63 bytes".to_string(), gib);
                format!(" (the largest, '{}': {}, {size})", p.0.name, p.0.ty)
            });
        format!("initializing {} parameter(s){largest}", specs.len())
    })?;
    let mut map = TensorMap::new();
    for (spec, shape) in specs.iter().zip(shapes) {
        let tensor = init_param(spec, shape, seed)?;
        if map.insert(spec.name.clone(), tensor).is_some() {
            return Err(Error::Tensor(format!(
                "parameter '{}' is declared twice",
                spec.name
            )));
        }
    }
    Ok(map)
}

/// How the values of one parameter are drawn, once fans are known.
enum Draw {
    Fill(f64),
    Uniform { lo: f64, hi: f64 },
    Normal { std: f64 },
}

impl Draw {
    fn new(init: Init, shape: &[usize]) -> Draw {
        let (fan_in, fan_out) = fans(shape);
        let (fan_in, fan_sum) = (fan_in as f64, fan_in as f64 + fan_out as f64);
        let symmetric = |a: f64| Draw::Uniform { lo: -a, hi: a };
        match init {
            Init::Zeros => Draw::Fill(0.0),
            Init::Ones => Draw::Fill(1.0),
            Init::Constant(c) => Draw::Fill(c),
            Init::Normal(std) => Draw::Normal { std },
            Init::Uniform(lo, hi) => Draw::Uniform { lo, hi },
            Init::GlorotUniform => symmetric((6.0 / fan_sum).sqrt()),
            Init::GlorotNormal => Draw::Normal {
                std: (2.0 / fan_sum).sqrt(),
            },
            Init::HeUniform => symmetric((6.0 / fan_in).sqrt()),
            Init::HeNormal => Draw::Normal {
                std: (2.0 / fan_in).sqrt(),
            },
        }
    }

    /// Why the distribution cannot be sampled, if it cannot.
    fn invalid(&self) -> Option<&'static str> {
        match *self {
            Draw::Fill(_) => None,
            Draw::Normal { std } if !(std.is_finite() && std >= 0.0) => {
                Some("the standard deviation must be finite and non-negative")
            }
            Draw::Uniform { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo <= hi) => {
                Some("the bounds must be finite with lo <= hi")
            }
            Draw::Normal { .. } | Draw::Uniform { .. } => None,
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            Draw::Fill(c) => c,
            Draw::Uniform { lo, hi } => lo + (hi - lo) * rng.random::<f64>(),
            Draw::Normal { std } => std * rng.sample::<f64, _>(StandardNormal),
        }
    }
}

fn init_param(spec: &ParamSpec, shape: Vec<usize>, seed: u64) -> Result<Tensor> {
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            Error::Tensor(format!(
                "parameter '{}': {} has too many elements",
                spec.name, spec.ty
            ))
        })?;
    let draw = Draw::new(spec.init, &shape);
    // Sizes of zero draw nothing, so degenerate fans (a glorot bound of ∞) do not matter there.
    if numel > 0
        && let Some(why) = draw.invalid()
    {
        return Err(Error::Tensor(format!(
            "parameter '{}' cannot be initialized with {}: {why}",
            spec.name, spec.init
        )));
    }
    let mut rng = param_rng(seed, &spec.name);
    let values = (0..numel).map(|_| draw.sample(&mut rng)).collect();
    Ok(Tensor::from_f64(spec.ty.dtype, &shape, values)
        .expect("one value was drawn per element of the shape"))
}

/// The parameter's sizes; parameters must have fixed shapes.
fn fixed_sizes(spec: &ParamSpec) -> Result<Vec<usize>> {
    spec.ty
        .shape
        .dims()
        .iter()
        .map(|d| {
            let fixed = d.as_fixed().ok_or_else(|| {
                Error::Tensor(format!(
                    "parameter '{}' has the symbolic shape {}; parameters need fixed sizes",
                    spec.name, spec.ty.shape
                ))
            })?;
            usize::try_from(fixed).map_err(|_| {
                Error::Tensor(format!(
                    "parameter '{}': dimension {fixed} does not fit in memory",
                    spec.name
                ))
            })
        })
        .collect()
}

/// The random stream of one parameter: a ChaCha8 key made of the seed and a stable hash of the
/// name (FNV-1a, fixed by its spec, unlike std's hashers which may change between releases).
fn param_rng(seed: u64, name: &str) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&fnv1a_64(name.as_bytes()).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{fnv1a_64, open_regular, write_atomically};
    use std::path::Path;

    /// Makes a FIFO at `path`: a file that no write may replace and whose opening for reading
    /// waits for a writer, unless asked not to.
    #[cfg(unix)]
    pub(crate) fn make_fifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `name` is a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_neither_replaced_nor_waited_on() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.safetensors");
        make_fifo(&fifo);
        let err = write_atomically(&fifo, |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        let err = open_regular(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let file = dir.path().join("file.txt");
        write_atomically(&file, |f, _| std::io::Write::write_all(f, b"new")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut open_regular(&file).unwrap(), &mut text).unwrap();
        assert_eq!(text, "new");
    }

    #[cfg(unix)]
    #[test]
    fn a_written_file_has_the_permissions_of_the_one_it_replaces_or_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = dir.path().join("fresh.txt");
        std::fs::write(&fresh, "").unwrap();
        let written = dir.path().join("written.txt");
        write_atomically(&written, |f, _| std::io::Write::write_all(f, b"x")).unwrap();
        assert_eq!(
            mode(&written),
            mode(&fresh),
            "as any new file (umask applied)"
        );
        let perms = std::fs::Permissions::from_mode(0o640);
        std::fs::set_permissions(&written, perms).unwrap();
        write_atomically(&written, |f, _| std::io::Write::write_all(f, b"y")).unwrap();
        assert_eq!(mode(&written), 0o640);
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
