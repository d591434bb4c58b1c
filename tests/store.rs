//! Named tensors on disk (safetensors), argument checking and seeded parameter initialization.

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};
use sgn::ir::Error;
use sgn::ir::init::{Init, ParamSpec};
use sgn::ir::store::{TensorMap, check_args, init_params};
use sgn::ir::{ArgRole, DType, Dim, Graph, Shape, Tensor, TensorType};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// helpers

fn counting(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|i| i as f64 * 0.25 - 3.0).collect();
    Tensor::from_f64(dtype, shape, values).expect("values fit the shape")
}

fn sample_map() -> TensorMap {
    let mut map = TensorMap::new();
    map.insert("w_f32", counting(DType::F32, &[2, 3, 4]));
    map.insert("w_f64", counting(DType::F64, &[2, 3, 4]));
    map.insert("b", counting(DType::F32, &[5]));
    map.insert("scalar_f32", Tensor::scalar(DType::F32, 1.5));
    map.insert("scalar_f64", Tensor::scalar(DType::F64, -2.0e-300));
    map.insert("empty", Tensor::zeros(DType::F64, &[0, 3]));
    map
}

fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// The file names in `dir`, sorted.
fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn tensor_message(err: Error) -> String {
    match err {
        Error::Tensor(m) => m,
        other => panic!("expected Error::Tensor, got {other:?}"),
    }
}

fn spec(name: &str, dtype: DType, shape: &[u64], init: Init) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        ty: TensorType::new(dtype, Shape::fixed(shape)),
        init,
    }
}

/// Mean and (population) variance.
fn moments(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

// ---------------------------------------------------------------------------------------------
// safetensors round trips

#[test]
fn round_trip_keeps_names_dtypes_shapes_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let map = sample_map();
    map.save(&path, &no_metadata()).unwrap();
    let loaded = TensorMap::load(&path).unwrap();
    assert_eq!(loaded, map);
    assert_eq!(loaded.get("scalar_f32").unwrap().shape(), &[] as &[usize]);
    assert_eq!(loaded.get("scalar_f32").unwrap().dtype(), DType::F32);
    assert_eq!(loaded.get("w_f64").unwrap().shape(), &[2, 3, 4]);
    assert_eq!(loaded.get("w_f64").unwrap().dtype(), DType::F64);
    assert_eq!(
        loaded.names().collect::<Vec<_>>(),
        ["b", "empty", "scalar_f32", "scalar_f64", "w_f32", "w_f64"]
    );
}

#[test]
fn round_trip_is_bit_exact_for_special_values() {
    let values = vec![
        f64::NAN,
        f64::INFINITY,
        -0.0,
        f64::MIN_POSITIVE / 4.0,
        f64::MAX,
        1.0 / 3.0,
    ];
    let mut map = TensorMap::new();
    map.insert(
        "f64",
        Tensor::from_f64(DType::F64, &[6], values.clone()).unwrap(),
    );
    map.insert("f32", Tensor::from_f64(DType::F32, &[6], values).unwrap());
    let bytes = map.to_bytes(&no_metadata()).unwrap();
    let (loaded, _) = TensorMap::from_bytes(&bytes, "mem").unwrap();
    for name in ["f32", "f64"] {
        let bits = |t: &Tensor| -> Vec<u64> {
            match t {
                Tensor::F32(a) => a.iter().map(|x| u64::from(x.to_bits())).collect(),
                Tensor::F64(a) => a.iter().map(|x| x.to_bits()).collect(),
            }
        };
        assert_eq!(
            bits(loaded.get(name).unwrap()),
            bits(map.get(name).unwrap()),
            "{name}"
        );
    }
}

#[test]
fn non_standard_layouts_are_saved_in_row_major_order() {
    let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0f64, 2., 3., 4., 5., 6.]).unwrap();
    let transposed = a.reversed_axes();
    assert!(
        !transposed.is_standard_layout(),
        "the test needs a column-major array"
    );
    let mut map = TensorMap::new();
    map.insert("t", Tensor::F64(transposed.clone()));
    let (loaded, _) = TensorMap::from_bytes(&map.to_bytes(&no_metadata()).unwrap(), "mem").unwrap();
    assert_eq!(loaded.get("t").unwrap(), &Tensor::F64(transposed));
    assert_eq!(
        loaded.get("t").unwrap().to_f64_vec(),
        [1., 4., 2., 5., 3., 6.]
    );
}

#[test]
fn metadata_round_trips_and_is_empty_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let metadata = BTreeMap::from([
        ("model".to_string(), "mnist_mlp".to_string()),
        ("seed".to_string(), "42".to_string()),
        ("note".to_string(), "unicode ✓ and \"quotes\"".to_string()),
    ]);
    sample_map().save(&path, &metadata).unwrap();
    let (map, loaded) = TensorMap::load_with_metadata(&path).unwrap();
    assert_eq!(loaded, metadata);
    assert_eq!(map, sample_map());

    sample_map().save(&path, &no_metadata()).unwrap();
    assert!(TensorMap::load_with_metadata(&path).unwrap().1.is_empty());
}

#[test]
fn an_empty_map_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    TensorMap::new().save(&path, &no_metadata()).unwrap();
    assert!(TensorMap::load(&path).unwrap().is_empty());
}

#[test]
fn files_written_by_the_safetensors_crate_load() {
    let w: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let s: Vec<u8> = 7.0f64.to_le_bytes().to_vec();
    let bytes = serialize(
        [
            ("w", TensorView::new(Dtype::F32, vec![2, 2], &w).unwrap()),
            ("s", TensorView::new(Dtype::F64, vec![], &s).unwrap()),
        ],
        None,
    )
    .unwrap();
    let (map, metadata) = TensorMap::from_bytes(&bytes, "external").unwrap();
    assert!(metadata.is_empty());
    assert_eq!(map.get("w").unwrap().shape(), &[2, 2]);
    assert_eq!(map.get("w").unwrap().to_f64_vec(), [1.0, -2.0, 3.5, 0.25]);
    assert_eq!(map.get("s").unwrap(), &Tensor::scalar(DType::F64, 7.0));
}

#[test]
fn map_operations() {
    let mut map: TensorMap = [
        ("b", Tensor::scalar(DType::F32, 1.0)),
        ("a", Tensor::scalar(DType::F32, 2.0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(map.len(), 2);
    assert!(!map.is_empty());
    assert_eq!(map.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["a", "b"]);
    let old = map.insert("a", Tensor::scalar(DType::F64, 3.0));
    assert_eq!(old, Some(Tensor::scalar(DType::F32, 2.0)));
    assert_eq!(map.remove("a"), Some(Tensor::scalar(DType::F64, 3.0)));
    assert_eq!(map.remove("a"), None);
    assert_eq!(map.get("a"), None);
    assert_eq!(map.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// atomic writes

#[test]
fn saving_over_an_existing_file_replaces_it_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    sample_map().save(&path, &no_metadata()).unwrap();
    let mut replacement = TensorMap::new();
    replacement.insert("only", Tensor::scalar(DType::F64, 9.0));
    replacement.save(&path, &no_metadata()).unwrap();
    assert_eq!(TensorMap::load(&path).unwrap(), replacement);
    assert_eq!(dir_listing(dir.path()), ["p.safetensors"]);
}

#[test]
fn saving_into_a_missing_directory_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_such_dir").join("p.safetensors");
    let err = sample_map().save(&path, &no_metadata()).unwrap_err();
    match &err {
        Error::Io { path: p, .. } => {
            assert!(p.starts_with(dir.path().join("no_such_dir")), "{p:?}")
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(err.to_string().contains("no_such_dir"), "{err}");
    assert!(dir_listing(dir.path()).is_empty());
}

#[test]
fn a_failed_save_over_a_directory_leaves_it_unchanged_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("p.safetensors");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), b"precious").unwrap();
    let err = sample_map().save(&target, &no_metadata()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("p.safetensors"), "{err}");
    assert_eq!(dir_listing(dir.path()), ["p.safetensors"]);
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"precious");
}

#[test]
fn a_failed_save_leaves_an_existing_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    sample_map().save(&path, &no_metadata()).unwrap();
    let before = fs::read(&path).unwrap();

    // safetensors reserves `__metadata__`: such a map cannot be written.
    let mut unwritable = TensorMap::new();
    unwritable.insert("__metadata__", Tensor::scalar(DType::F32, 1.0));
    let msg = tensor_message(unwritable.save(&path, &no_metadata()).unwrap_err());
    assert!(
        msg.contains("p.safetensors") && msg.contains("'__metadata__'"),
        "{msg}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(dir_listing(dir.path()), ["p.safetensors"]);

    // A target below a regular file cannot be created.
    let mut writable = TensorMap::new();
    writable.insert("x", Tensor::scalar(DType::F32, 1.0));
    let err = writable
        .save(&path.join("below_a_file"), &no_metadata())
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(dir_listing(dir.path()), ["p.safetensors"]);
}

#[test]
fn a_path_without_a_file_name_is_an_error() {
    let err = sample_map()
        .save(Path::new("/"), &no_metadata())
        .unwrap_err();
    match err {
        Error::Io { path, source } => {
            assert_eq!(path, Path::new("/"));
            assert!(source.to_string().contains("not a file path"), "{source}");
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// bad files

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let err = TensorMap::load(&path).unwrap_err();
    match &err {
        Error::Io { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(err.to_string().contains("absent.safetensors"));
}

#[test]
fn random_bytes_are_a_tensor_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0u32..300)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = write_bytes(dir.path(), "garbage.safetensors", &garbage);
    let msg = tensor_message(TensorMap::load(&path).unwrap_err());
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a valid safetensors file"), "{msg}");
}

#[test]
fn short_files_are_tensor_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in [&b""[..], b"\x01\x02\x03"].iter().enumerate() {
        let path = write_bytes(dir.path(), &format!("short{i}.safetensors"), bytes);
        let msg = tensor_message(TensorMap::load(&path).unwrap_err());
        assert!(msg.contains(&format!("short{i}.safetensors")), "{msg}");
        assert!(msg.contains("header too small"), "{msg}");
    }
}

#[test]
fn every_truncation_of_a_valid_file_is_a_tensor_error_naming_the_file() {
    let bytes = sample_map()
        .to_bytes(&BTreeMap::from([("k".to_string(), "v".to_string())]))
        .unwrap();
    for len in 0..bytes.len() {
        let msg =
            tensor_message(TensorMap::from_bytes(&bytes[..len], "cut.safetensors").unwrap_err());
        assert!(
            msg.starts_with("cut.safetensors: not a valid safetensors file: "),
            "{len}: {msg}"
        );
    }
}

#[test]
fn a_truncated_file_on_disk_reports_the_safetensors_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample_map().to_bytes(&no_metadata()).unwrap();
    let path = write_bytes(dir.path(), "cut.safetensors", &bytes[..bytes.len() - 3]);
    let msg = tensor_message(TensorMap::load(&path).unwrap_err());
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("incomplete metadata"), "{msg}");
}

#[test]
fn a_header_claiming_more_bytes_than_present_is_a_tensor_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 1_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    let path = write_bytes(dir.path(), "long_header.safetensors", &bytes);
    let msg = tensor_message(TensorMap::load(&path).unwrap_err());
    assert!(msg.contains("long_header.safetensors"), "{msg}");
    assert!(msg.contains("invalid header length"), "{msg}");
}

#[test]
fn data_offsets_past_the_end_are_a_tensor_error() {
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]); // 8 of the 16 data bytes the header promises
    let msg = tensor_message(TensorMap::from_bytes(&bytes, "short_data.safetensors").unwrap_err());
    assert!(msg.contains("short_data.safetensors"), "{msg}");
}

#[test]
fn unsupported_dtypes_are_errors_naming_the_tensor_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let half = [0u8; 6];
    let ints: Vec<u8> = [1i32, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    for (dtype, data, shape) in [
        (Dtype::F16, &half[..], vec![3]),
        (Dtype::I32, &ints[..], vec![2]),
    ] {
        let bytes = serialize([("h", TensorView::new(dtype, shape, data).unwrap())], None).unwrap();
        let path = write_bytes(dir.path(), "odd.safetensors", &bytes);
        let msg = tensor_message(TensorMap::load(&path).unwrap_err());
        assert!(msg.contains("odd.safetensors"), "{msg}");
        assert!(msg.contains("tensor 'h'"), "{msg}");
        assert!(msg.contains(&format!("dtype {dtype}")), "{msg}");
        assert!(msg.contains("F32 and F64"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// check_args

/// A graph with `x: f32[B, 784]`, `w1: f32[784, 20]`, `s: f64[]`, `r: f32[2*B, 3]`.
fn declared_args() -> Graph {
    let b = Dim::sym("B");
    let mut g = Graph::new("m");
    g.add_arg(
        "x",
        ArgRole::Input,
        TensorType::new(DType::F32, Shape(vec![b.clone(), Dim::fixed(784)])),
    );
    g.add_arg(
        "w1",
        ArgRole::Param,
        TensorType::new(DType::F32, Shape::fixed(&[784, 20])),
    );
    g.add_arg(
        "s",
        ArgRole::Param,
        TensorType::new(DType::F64, Shape::scalar()),
    );
    g.add_arg(
        "r",
        ArgRole::Input,
        TensorType::new(
            DType::F32,
            Shape(vec![Dim::fixed(2).mul(&b), Dim::fixed(3)]),
        ),
    );
    g
}

fn arg<'g>(g: &'g Graph, name: &str) -> &'g sgn::ir::Arg {
    g.args().iter().find(|a| a.name == name).expect("declared")
}

#[test]
fn check_args_picks_tensors_in_argument_order() {
    let g = declared_args();
    let mut map = TensorMap::new();
    map.insert("w1", counting(DType::F32, &[784, 20]));
    map.insert("x", counting(DType::F32, &[7, 784]));
    map.insert("s", Tensor::scalar(DType::F64, 2.0));
    map.insert("r", counting(DType::F32, &[10, 3]));
    map.insert("unused", Tensor::scalar(DType::F32, 0.0));
    let args: Vec<_> = g.args().iter().collect();
    let got = check_args(&map, &args, "p.safetensors").unwrap();
    let expected: Vec<Tensor> = ["x", "w1", "s", "r"]
        .iter()
        .map(|n| map.get(n).unwrap().clone())
        .collect();
    assert_eq!(got, expected);
    let reversed = check_args(&map, &[arg(&g, "s"), arg(&g, "x")], "p.safetensors").unwrap();
    assert_eq!(
        reversed,
        [map.get("s").unwrap().clone(), map.get("x").unwrap().clone()]
    );
}

#[test]
fn check_args_names_a_missing_tensor_and_what_the_file_has() {
    let g = declared_args();
    let mut map = TensorMap::new();
    map.insert("w2", counting(DType::F32, &[2]));
    map.insert("b1", counting(DType::F32, &[2]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "w1")], "params.safetensors").unwrap_err());
    assert_eq!(
        msg,
        "'params.safetensors' has no tensor 'w1' (it has: b1, w2)"
    );

    let msg = tensor_message(
        check_args(&TensorMap::new(), &[arg(&g, "w1")], "e.safetensors").unwrap_err(),
    );
    assert_eq!(msg, "'e.safetensors' has no tensor 'w1' (it has none)");
}

#[test]
fn check_args_shortens_a_long_list_of_available_names() {
    let g = declared_args();
    let map: TensorMap = (0..30)
        .map(|i| (format!("t{i:02}"), Tensor::scalar(DType::F32, 0.0)))
        .collect();
    let msg = tensor_message(check_args(&map, &[arg(&g, "x")], "big.safetensors").unwrap_err());
    assert!(msg.contains("it has: t00, t01,"), "{msg}");
    assert!(msg.contains("and 18 more"), "{msg}");
    assert!(!msg.contains("t29"), "{msg}");
}

#[test]
fn check_args_reports_a_wrong_dtype() {
    let g = declared_args();
    let mut map = TensorMap::new();
    map.insert("w1", counting(DType::F64, &[784, 20]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "w1")], "p.safetensors").unwrap_err());
    assert_eq!(
        msg,
        "tensor 'w1' in 'p.safetensors' is f64 but the model declares f32[784, 20]"
    );
}

#[test]
fn check_args_reports_a_wrong_fixed_size() {
    let g = declared_args();
    let mut map = TensorMap::new();
    map.insert("w1", counting(DType::F32, &[784, 10]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "w1")], "p.safetensors").unwrap_err());
    assert_eq!(
        msg,
        "tensor 'w1' in 'p.safetensors' has shape [784, 10] (axis 1 is 10, not 20) \
         but the model declares f32[784, 20]"
    );
}

#[test]
fn check_args_reports_a_wrong_rank() {
    let g = declared_args();
    let mut map = TensorMap::new();
    map.insert("x", counting(DType::F32, &[784]));
    map.insert("s", counting(DType::F64, &[1]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "x")], "i.safetensors").unwrap_err());
    assert_eq!(
        msg,
        "tensor 'x' in 'i.safetensors' has rank 1 (shape [784]) but the model declares f32[B, 784]"
    );
    let msg = tensor_message(check_args(&map, &[arg(&g, "s")], "p.safetensors").unwrap_err());
    assert_eq!(
        msg,
        "tensor 's' in 'p.safetensors' has rank 1 (shape [1]) but the model declares f64[]"
    );
}

#[test]
fn check_args_checks_fixed_parts_of_symbolic_shapes() {
    let g = declared_args();
    let mut map = TensorMap::new();
    for batch in [0, 1, 1000] {
        map.insert("x", counting(DType::F32, &[batch, 784]));
        assert!(
            check_args(&map, &[arg(&g, "x")], "i.safetensors").is_ok(),
            "B = {batch}"
        );
    }
    map.insert("x", counting(DType::F32, &[5, 783]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "x")], "i.safetensors").unwrap_err());
    assert!(msg.contains("(axis 1 is 783, not 784)"), "{msg}");

    map.insert("r", counting(DType::F32, &[7, 3]));
    let msg = tensor_message(check_args(&map, &[arg(&g, "r")], "i.safetensors").unwrap_err());
    assert!(
        msg.contains("axis 0 is 7, not a multiple of 2 as 2*B needs"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// init_params

fn mlp_specs(dtype: DType) -> Vec<ParamSpec> {
    vec![
        spec("w1", dtype, &[784, 20], Init::GlorotUniform),
        spec("b1", dtype, &[20], Init::Zeros),
        spec("w2", dtype, &[20, 10], Init::HeNormal),
        spec("b2", dtype, &[10], Init::Normal(0.1)),
    ]
}

#[test]
fn init_is_deterministic_per_seed_and_respects_dtype_and_shape() {
    let a = init_params(&mlp_specs(DType::F32), 7).unwrap();
    let b = init_params(&mlp_specs(DType::F32), 7).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 4);
    for s in mlp_specs(DType::F32) {
        let t = a.get(&s.name).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        let shape: Vec<usize> =
            s.ty.shape
                .dims()
                .iter()
                .map(|d| d.as_fixed().unwrap() as usize)
                .collect();
        assert_eq!(t.shape(), shape.as_slice());
    }
}

#[test]
fn different_seeds_give_different_values() {
    let a = init_params(&mlp_specs(DType::F64), 1).unwrap();
    let b = init_params(&mlp_specs(DType::F64), 2).unwrap();
    for name in ["w1", "w2", "b2"] {
        let (x, y) = (
            a.get(name).unwrap().to_f64_vec(),
            b.get(name).unwrap().to_f64_vec(),
        );
        let equal = x.iter().zip(&y).filter(|(p, q)| p == q).count();
        assert_eq!(equal, 0, "{name}: {equal} equal values across seeds");
    }
    assert_eq!(a.get("b1"), b.get("b1"));
}

#[test]
fn parameters_with_one_init_but_different_names_differ() {
    let specs = [
        spec("u", DType::F64, &[50], Init::HeUniform),
        spec("v", DType::F64, &[50], Init::HeUniform),
    ];
    let m = init_params(&specs, 3).unwrap();
    assert_ne!(m.get("u"), m.get("v"));
}

#[test]
fn a_parameter_does_not_depend_on_the_others() {
    let alone = init_params(&[spec("w2", DType::F64, &[20, 10], Init::HeNormal)], 11).unwrap();
    let mut specs = mlp_specs(DType::F64);
    specs.insert(0, spec("extra", DType::F64, &[300], Init::GlorotNormal));
    specs.reverse();
    let with_others = init_params(&specs, 11).unwrap();
    assert_eq!(with_others.get("w2"), alone.get("w2"));
}

#[test]
fn f32_and_f64_models_start_from_the_same_values_up_to_rounding() {
    let single = init_params(&mlp_specs(DType::F32), 5).unwrap();
    let double = init_params(&mlp_specs(DType::F64), 5).unwrap();
    for (name, t) in double.iter() {
        assert_eq!(
            single.get(name).unwrap(),
            &t.clone().cast(DType::F32),
            "{name}"
        );
    }
}

#[test]
fn zeros_ones_and_constant_are_exact() {
    let specs = [
        spec("z", DType::F32, &[3, 4], Init::Zeros),
        spec("o", DType::F64, &[5], Init::Ones),
        spec("c", DType::F64, &[2, 2], Init::Constant(-0.3)),
        spec("s", DType::F32, &[], Init::Constant(2.5)),
    ];
    let m = init_params(&specs, 0).unwrap();
    assert_eq!(m.get("z").unwrap(), &Tensor::zeros(DType::F32, &[3, 4]));
    assert_eq!(m.get("o").unwrap().to_f64_vec(), [1.0; 5]);
    assert_eq!(m.get("c").unwrap().to_f64_vec(), [-0.3; 4]);
    assert_eq!(m.get("s").unwrap(), &Tensor::scalar(DType::F32, 2.5));
}

/// Checks that `values` lie in [lo, hi], spread over the whole interval, with the mean and
/// variance of U(lo, hi).
fn assert_uniform(values: &[f64], lo: f64, hi: f64, what: &str) {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    assert!(
        min >= lo && max <= hi,
        "{what}: [{min}, {max}] outside [{lo}, {hi}]"
    );
    let width = hi - lo;
    assert!(
        min < lo + 0.001 * width && max > hi - 0.001 * width,
        "{what}: [{min}, {max}] does not fill [{lo}, {hi}]"
    );
    let (mean, var) = moments(values);
    let expected_var = width * width / 12.0;
    let mean_tol = 5.0 * (expected_var / values.len() as f64).sqrt();
    assert!(
        (mean - (lo + hi) / 2.0).abs() < mean_tol,
        "{what}: mean {mean}"
    );
    assert!(
        (var / expected_var - 1.0).abs() < 0.05,
        "{what}: variance {var}, expected {expected_var}"
    );
}

/// Checks that `values` have mean ≈ 0 and variance within 5% of `expected_var`, and the normal
/// distribution's share within one standard deviation.
fn assert_centered_normal(values: &[f64], expected_var: f64, what: &str) {
    let (mean, var) = moments(values);
    let std = expected_var.sqrt();
    assert!(
        mean.abs() < 5.0 * std / (values.len() as f64).sqrt(),
        "{what}: mean {mean}"
    );
    assert!(
        (var / expected_var - 1.0).abs() < 0.05,
        "{what}: variance {var}, expected {expected_var}"
    );
    let within_one_std =
        values.iter().filter(|x| x.abs() < std).count() as f64 / values.len() as f64;
    assert!(
        (within_one_std - 0.6827).abs() < 0.01,
        "{what}: {within_one_std} within one std"
    );
}

#[test]
fn uniform_initializers_have_the_right_bounds_and_variance() {
    let (fan_in, fan_out) = (400.0, 300.0);
    let specs = [
        spec("glorot", DType::F64, &[400, 300], Init::GlorotUniform),
        spec("he", DType::F32, &[400, 300], Init::HeUniform),
        spec("plain", DType::F64, &[400, 300], Init::Uniform(-0.5, 2.0)),
    ];
    let m = init_params(&specs, 2024).unwrap();
    let glorot = (6.0f64 / (fan_in + fan_out)).sqrt();
    assert_uniform(
        &m.get("glorot").unwrap().to_f64_vec(),
        -glorot,
        glorot,
        "glorot_uniform",
    );
    // f32 values are rounded: allow the bound itself after rounding.
    let he = f64::from((6.0f64 / fan_in).sqrt() as f32);
    assert_uniform(&m.get("he").unwrap().to_f64_vec(), -he, he, "he_uniform");
    assert_uniform(
        &m.get("plain").unwrap().to_f64_vec(),
        -0.5,
        2.0,
        "uniform(-0.5, 2)",
    );
}

#[test]
fn normal_initializers_have_mean_zero_and_the_right_variance() {
    let (fan_in, fan_out) = (400.0, 300.0);
    let specs = [
        spec("glorot", DType::F64, &[400, 300], Init::GlorotNormal),
        spec("he", DType::F32, &[400, 300], Init::HeNormal),
        spec("plain", DType::F64, &[400, 300], Init::Normal(0.05)),
    ];
    let m = init_params(&specs, 99).unwrap();
    assert_centered_normal(
        &m.get("glorot").unwrap().to_f64_vec(),
        2.0 / (fan_in + fan_out),
        "glorot_normal",
    );
    assert_centered_normal(
        &m.get("he").unwrap().to_f64_vec(),
        2.0 / fan_in,
        "he_normal",
    );
    assert_centered_normal(
        &m.get("plain").unwrap().to_f64_vec(),
        0.05 * 0.05,
        "normal(0.05)",
    );
}

#[test]
fn fans_of_conv_filters_follow_pytorch_oihw() {
    // [O, C, kH, kW] = [32, 16, 3, 3]: fan_in = 16·9 = 144, fan_out = 32·9 = 288.
    assert_eq!(sgn::ir::init::fans(&[32, 16, 3, 3]), (144, 288));
    for (init, bound) in [
        (Init::HeUniform, (6.0f64 / 144.0).sqrt()),
        (Init::GlorotUniform, (6.0f64 / (144.0 + 288.0)).sqrt()),
    ] {
        let m = init_params(&[spec("k", DType::F64, &[32, 16, 3, 3], init)], 1).unwrap();
        let values = m.get("k").unwrap().to_f64_vec();
        assert!(values.iter().all(|x| x.abs() <= bound), "{init:?}");
        assert!(values.iter().any(|x| x.abs() > 0.99 * bound), "{init:?}");
    }
}

#[test]
fn empty_parameters_initialize_without_drawing() {
    let m = init_params(&[spec("e", DType::F32, &[0, 5], Init::GlorotNormal)], 1).unwrap();
    assert_eq!(m.get("e").unwrap().shape(), &[0, 5]);
}

#[test]
fn a_symbolic_parameter_shape_is_an_error() {
    let bad = ParamSpec {
        name: "w".to_string(),
        ty: TensorType::new(DType::F32, Shape(vec![Dim::sym("B"), Dim::fixed(10)])),
        init: Init::GlorotUniform,
    };
    let msg = tensor_message(init_params(&[bad], 0).unwrap_err());
    assert!(
        msg.contains("parameter 'w'") && msg.contains("[B, 10]") && msg.contains("fixed sizes"),
        "{msg}"
    );
}

#[test]
fn invalid_initializer_arguments_are_errors() {
    for init in [
        Init::Normal(-1.0),
        Init::Normal(f64::NAN),
        Init::Uniform(1.0, 0.0),
        Init::Uniform(0.0, f64::INFINITY),
    ] {
        let msg = tensor_message(init_params(&[spec("p", DType::F64, &[4], init)], 0).unwrap_err());
        assert!(
            msg.contains("parameter 'p'") && msg.contains(&init.to_string()),
            "{msg}"
        );
    }
}

#[test]
fn a_duplicate_parameter_is_an_error() {
    let specs = [
        spec("w", DType::F32, &[2], Init::Zeros),
        spec("w", DType::F32, &[3], Init::Ones),
    ];
    let msg = tensor_message(init_params(&specs, 0).unwrap_err());
    assert_eq!(msg, "parameter 'w' is declared twice");
}

#[test]
fn initialized_parameters_round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.safetensors");
    let params = init_params(&mlp_specs(DType::F32), 123).unwrap();
    params.save(&path, &no_metadata()).unwrap();
    let loaded = TensorMap::load(&path).unwrap();
    assert_eq!(loaded, params);
    let g = {
        let mut g = Graph::new("m");
        for s in mlp_specs(DType::F32) {
            g.add_arg(s.name, ArgRole::Param, s.ty);
        }
        g
    };
    let args: Vec<_> = g.args().iter().collect();
    assert_eq!(
        check_args(&loaded, &args, "init.safetensors")
            .unwrap()
            .len(),
        4
    );
}

// ---------------------------------------------------------------------------------------------
// robustness

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = TensorMap::from_bytes(&bytes, "fuzz");
        }

        #[test]
        fn on_corrupted_valid_files(at in 0usize..4096, byte in any::<u8>()) {
            let mut bytes = sample_map().to_bytes(&no_metadata()).unwrap();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Err(e) = TensorMap::from_bytes(&bytes, "fuzz") {
                prop_assert!(matches!(e, Error::Tensor(_)));
            }
        }
    }
}
