//! Helpers shared by the integration tests.
#![allow(dead_code)] // the MPI test binary uses only a few

pub mod derivatives;

use ndarray::Array2;
use sgn::codegen::{GemmKernels, JitOptions, ParallelMin};
use sgn::data::{Dataset, Split};
use sgn::ir::store::TensorMap;
use sgn::ir::tensor::Floor;
use sgn::ir::{DType, Tensor};
use sgn::{CompiledModel, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The models shipped in `ir/`, by file name.
pub fn ir_models() -> Vec<(String, Model)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("ir/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sgn"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the five shipped models in ir/");
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let model = Model::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, model)
        })
        .collect()
}

/// True for a model with convolution or pooling ops (not a dense MLP).
pub fn has_conv(model: &Model) -> bool {
    model
        .graph
        .nodes()
        .iter()
        .any(|n| matches!(n.op, sgn::ir::Op::Conv(_)))
}

/// Deterministic, varied values in (-scale, scale): a fixed quasi-random sequence per `seed`.
pub fn wavy(dtype: DType, shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let values = (0..n)
        .map(|i| {
            let t = (i as f64 + 1.0) * 0.618_033_988_749_894_9 + seed as f64 * 0.414_213_562_373;
            scale * (2.0 * (t.fract()) - 1.0) * (1.0 - 0.3 * (t * 7.0).sin().abs())
        })
        .collect();
    Tensor::from_f64(dtype, shape, values).expect("length matches shape")
}

/// Rows of one-hot vectors (class `(i * 7 + seed) % classes` for row i).
pub fn one_hot(dtype: DType, rows: usize, classes: usize, seed: usize) -> Tensor {
    let mut values = vec![0.0; rows * classes];
    for r in 0..rows {
        values[r * classes + (r * 7 + seed) % classes] = 1.0;
    }
    Tensor::from_f64(dtype, &[rows, classes], values).expect("length matches shape")
}

/// A batch of `rows` for a model: wavy inputs, and targets that suit the loss (one-hot rows for
/// 10-class outputs, values in (0, 1) otherwise). Symbolic dims bind to `rows`.
pub fn batch_for(model: &Model, dtype: DType, rows: usize, seed: u64) -> TensorMap {
    let mut batch = TensorMap::new();
    for (k, arg) in model.graph.args().iter().enumerate() {
        let shape: Vec<usize> = arg
            .ty
            .shape
            .dims()
            .iter()
            .map(|d| d.as_fixed().map_or(rows, |n| n as usize))
            .collect();
        let value = match arg.role {
            sgn::ir::ArgRole::Input => wavy(dtype, &shape, seed + k as u64, 1.0),
            sgn::ir::ArgRole::Target if shape.len() == 2 && shape[1] > 1 => {
                one_hot(dtype, shape[0], shape[1], seed as usize + k)
            }
            sgn::ir::ArgRole::Target => {
                let t = wavy(dtype, &shape, seed + 17 + k as u64, 0.5).to_f64();
                Tensor::from_f64(dtype, &shape, t.iter().map(|x| x + 0.5).collect()).unwrap()
            }
            _ => continue,
        };
        batch.insert(arg.name.clone(), value);
    }
    batch
}

/// One wavy tensor per entry of `like`, with the same shapes.
pub fn direction_like(like: &TensorMap, seed: u64) -> TensorMap {
    let mut v = TensorMap::new();
    for (i, (name, t)) in like.iter().enumerate() {
        v.insert(name, wavy(t.dtype(), t.shape(), seed * 31 + i as u64, 1.0));
    }
    v
}

/// `a + s·b`, entry by entry.
pub fn axpy(a: &TensorMap, s: f64, b: &TensorMap) -> TensorMap {
    let mut out = TensorMap::new();
    for (name, ta) in a.iter() {
        let tb = b.get(name).expect("same names");
        let values: Vec<f64> = ta
            .to_f64_vec()
            .iter()
            .zip(tb.to_f64_vec())
            .map(|(x, y)| x + s * y)
            .collect();
        out.insert(
            name,
            Tensor::from_f64(ta.dtype(), ta.shape(), values).unwrap(),
        );
    }
    out
}

/// Σ ⟨a_k, b_k⟩ over the entries of two maps with the same names.
pub fn dot(a: &TensorMap, b: &TensorMap) -> f64 {
    a.iter()
        .map(|(name, ta)| {
            let tb = b.get(name).expect("same names");
            ta.to_f64_vec()
                .iter()
                .zip(tb.to_f64_vec())
                .map(|(x, y)| x * y)
                .sum::<f64>()
        })
        .sum()
}

/// |a − b| / max(|a|, |b|, 1e-300).
pub fn rel_err(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// Where the real datasets are cached for the tests: `$SGN_DATA_DIR` if set (CI may point it at
/// a persistent cache), else a directory under cargo's target dir, reused between runs.
pub fn test_data_dir() -> PathBuf {
    match std::env::var_os(sgn::data::DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("data"),
    }
}

// ------------------------------------------------ G v against an explicitly built Jᵀ H J

/// The analytic loss Hessian at z, as a dense matrix over z's elements (row-major).
pub fn analytic_hessian(loss: &str, z: &Tensor) -> Vec<Vec<f64>> {
    let (rows, cols) = (z.shape()[0], z.shape()[1]);
    let n = rows * cols;
    let zv = z.to_f64_vec();
    let mut h = vec![vec![0.0; n]; n];
    match loss {
        "softmax_cross_entropy" => {
            for r in 0..rows {
                let row = &zv[r * cols..(r + 1) * cols];
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = row.iter().map(|x| (x - m).exp()).collect();
                let s: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|x| x / s).collect();
                for i in 0..cols {
                    for j in 0..cols {
                        let diag = if i == j { p[i] } else { 0.0 };
                        h[r * cols + i][r * cols + j] = (diag - p[i] * p[j]) / rows as f64;
                    }
                }
            }
        }
        "mse" => (0..n).for_each(|i| h[i][i] = 2.0 / n as f64),
        "sigmoid_cross_entropy" => (0..n).for_each(|i| {
            let s = 1.0 / (1.0 + (-zv[i]).exp());
            h[i][i] = s * (1.0 - s) / n as f64;
        }),
        other => panic!("no analytic Hessian for {other}"),
    }
    h
}

/// A unit direction: 1 at flat index `k` of the concatenated parameters.
pub fn unit(params: &TensorMap, k: usize) -> TensorMap {
    let mut offset = 0;
    let mut v = TensorMap::new();
    for (name, t) in params.iter() {
        let mut values = vec![0.0; t.len()];
        if (offset..offset + t.len()).contains(&k) {
            values[k - offset] = 1.0;
        }
        offset += t.len();
        v.insert(
            name.to_string(),
            Tensor::from_f64(DType::F64, t.shape(), values).unwrap(),
        );
    }
    v
}

pub fn flatten(map: &TensorMap) -> Vec<f64> {
    map.iter().flat_map(|(_, t)| t.to_f64_vec()).collect()
}

/// A 3-4-`out` net with activation `act` and loss `loss`, in f64, for explicit-G checks.
pub fn small_net(act: &str, loss: &str, out: usize) -> Model {
    let src = format!(
        "model small\ninput x: f64[B, 3]\ntarget y: f64[B, {out}]\n\
         param w1: f64[3, 4] = glorot_uniform\nparam b1: f64[4] = normal(0.5)\n\
         param w2: f64[4, {out}] = glorot_uniform\nparam b2: f64[{out}] = normal(0.5)\n\
         h = {act}(x @ w1 + b1)\noutput z = h @ w2 + b2\nloss {loss}(z, y)\n"
    );
    Model::parse(&src).expect("a valid model")
}

/// `Jᵀ H J v` built explicitly: `J` column by column from `model.jvp` along unit directions,
/// `H` from [`analytic_hessian`] at the model's output.
pub fn explicit_gv(
    model: &CompiledModel,
    loss: &str,
    params: &TensorMap,
    batch: &TensorMap,
    v: &TensorMap,
) -> Vec<f64> {
    let n: usize = params.iter().map(|(_, t)| t.len()).sum();
    let columns: Vec<Vec<f64>> = (0..n)
        .map(|k| {
            model
                .jvp(params, batch, &unit(params, k))
                .unwrap()
                .1
                .to_f64_vec()
        })
        .collect();
    let (z, _) = model.forward(params, batch).unwrap();
    let h = analytic_hessian(loss, &z);
    let m = h.len();
    let vf = flatten(v);
    let jv: Vec<f64> = (0..m)
        .map(|i| (0..n).map(|k| columns[k][i] * vf[k]).sum())
        .collect();
    let hjv: Vec<f64> = (0..m)
        .map(|i| (0..m).map(|j| h[i][j] * jv[j]).sum())
        .collect();
    (0..n)
        .map(|k| (0..m).map(|i| columns[k][i] * hjv[i]).sum())
        .collect()
}

/// Every entry of `got` within 1e-9 of the largest entry of `expected`.
pub fn assert_close_to_explicit(label: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{label}: lengths");
    let scale = expected.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for (k, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= 1e-9 * scale,
            "{label}: Gv[{k}] = {g} but JᵀHJv = {e}"
        );
    }
}

/// A small classifier (2 features, 3 classes, 51 parameters) for training tests.
pub const TINY_MODEL: &str = "model tiny\ninput x: f32[B, 2]\ntarget y: f32[B, 3]\n\
    param w1: f32[2, 8] = glorot_uniform\nparam b1: f32[8] = zeros\n\
    param w2: f32[8, 3] = glorot_uniform\nparam b2: f32[3] = zeros\n\
    h = tanh(x @ w1 + b1)\noutput z = h @ w2 + b2\nloss softmax_cross_entropy(z, y)\n";

/// Three Gaussian-ish blobs in the plane, one class each (deterministic).
pub fn blobs(n: usize, offset: usize) -> Split {
    let mut features = Array2::zeros((n, 2));
    let mut targets = Array2::zeros((n, 3));
    for i in 0..n {
        let class = (i + offset) % 3;
        let angle = class as f32 * 2.094;
        let jitter = ((i * 7919 + offset) % 97) as f32 / 97.0 - 0.5;
        features[[i, 0]] = angle.cos() * 2.0 + jitter;
        features[[i, 1]] = angle.sin() * 2.0 - jitter * 0.5;
        targets[[i, class]] = 1.0;
    }
    Split { features, targets }
}

/// [`TINY_MODEL`]'s dataset: 300 training and 90 test examples of [`blobs`].
pub fn blobs_dataset() -> Dataset {
    Dataset {
        name: "blobs".to_string(),
        train: blobs(300, 0),
        test: blobs(90, 1),
        num_classes: Some(3),
        target_scale: 1.0,
        image: None,
        standardization: None,
    }
}

/// Runs the `sgn` binary in the crate's directory.
pub fn sgn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sgn"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the sgn binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The floor of most comparisons here: relative errors element by element, measured against at
/// least a thousandth of the tensor's largest magnitude, so that values which cancel to nearly
/// zero are not judged by their own size. (Where a comparison needs a larger floor, it says
/// why.)
pub const RELATIVE_FLOOR: Floor = Floor::OfLargest(1e-3);

/// Asserts that `got` is within `tolerance` of `want` by [`Tensor::compare`] with `floor`; the
/// failure names `what`, the worst element and both values.
#[track_caller]
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, floor: Floor, tolerance: f64) {
    let comparison = got.compare(want, floor);
    assert!(
        comparison.within(tolerance),
        "{what}: {comparison} (tolerance {tolerance:e})"
    );
}

/// JIT options that between them take every code path this host supports, by name: the
/// defaults (the narrow GEMM kernels on a host with AVX-512, FMA where the host has it), and the
/// `gemm` crate for every product without FMA. Both split work at every size, so that the
/// threads' paths run on small inputs too.
pub fn jit_variants(threads: usize) -> Vec<(&'static str, JitOptions)> {
    let default = JitOptions {
        parallel_min: ParallelMin::NONE,
        ..JitOptions::default().with_threads(threads)
    };
    let general = JitOptions {
        gemm: GemmKernels::General,
        fma: false,
        ..default.clone()
    };
    vec![("default", default), ("gemm crate, no FMA", general)]
}

/// Bit patterns of the values, so that NaNs compare equal to themselves.
pub fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec().iter().map(|x| x.to_bits()).collect()
}
