//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use sgn::Model;
use sgn::ir::store::TensorMap;
use sgn::ir::{DType, Tensor};
use std::path::{Path, PathBuf};

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
