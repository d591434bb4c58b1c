//! Hostile sizes, thread counts, checkpoints and tensor names through the library: each is an
//! error value that names what is wrong (never an abort, a panic, a wrapped-around size or a
//! silent resume from damaged state).

use crate::common;

use common::{TINY_MODEL, blobs_dataset};
use proptest::prelude::*;
use sgn::codegen::{BackendKind, JitOptions, MAX_THREADS, compile_graph};
use sgn::data::Dataset;
use sgn::ir::interp::bind_dims;
use sgn::ir::memory::tensor_bytes;
use sgn::ir::store::{TensorMap, check_tensors, init_params, sha256_of};
use sgn::ir::{Arg, ArgRole, Bindings, DType, Dim, DimError, Graph, Shape, Tensor, TensorType};
use sgn::optim::checkpoint::{is_checkpoint, load_params};
use sgn::optim::{
    Adam, AdamOptions, Optimizer, OptimizerState, Sgd, SgdOptions, Sgn, SgnOptions, StopRule,
    TrainOptions, Trainer,
};
use sgn::{CompileOptions, CompiledModel, Error, Model, Sources};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

// ----- 1. sizes -----

proptest! {
    /// A symbolic size is the exact product of its factors, an overflow error when that does
    /// not fit in usize, and 0 when any factor is 0 (however large the others).
    #[test]
    fn dim_sizes_are_exact_or_an_overflow(
        coeff in prop_oneof![Just(0u64), 1u64..1 << 48],
        sizes in proptest::collection::vec(
            prop_oneof![Just(0usize), 1usize..1 << 20, (1usize << 20)..usize::MAX],
            1..4,
        ),
    ) {
        let names = ["A", "B", "C"];
        let dim = sizes.iter().zip(names).fold(Dim::fixed(coeff), |d, (_, n)| d.mul(&Dim::sym(n)));
        let bindings: Bindings =
            names.iter().zip(&sizes).map(|(n, &s)| (Arc::from(*n), s)).collect();
        let exact = sizes.iter().try_fold(u128::from(coeff), |p, &s| p.checked_mul(s as u128));
        let expected = if coeff == 0 || sizes.contains(&0) {
            Ok(0)
        } else {
            match exact.and_then(|p| usize::try_from(p).ok()) {
                Some(n) => Ok(n),
                None => Err(DimError::Overflow),
            }
        };
        prop_assert_eq!(dim.eval(&bindings), expected);
    }

    /// Fixed sizes multiply exactly, or saturate into an overflow error: never a wrapped size
    /// (which would let a reshape of a small tensor pass as one of a huge shape).
    #[test]
    fn fixed_products_are_exact_or_an_overflow(
        factors in proptest::collection::vec(prop_oneof![1u64..1 << 20, (1u64 << 20)..u64::MAX], 1..4),
    ) {
        let dim = factors.iter().fold(Dim::fixed(1), |d, &f| d.mul(&Dim::fixed(f)));
        let exact = factors.iter().try_fold(1u128, |p, &f| p.checked_mul(u128::from(f)));
        let expected = match exact.filter(|&p| p < u128::from(u64::MAX)) {
            Some(p) => usize::try_from(p).map_err(|_| DimError::Overflow),
            None => Err(DimError::Overflow),
        };
        prop_assert_eq!(dim.eval(&Bindings::new()), expected);
    }

    /// A tensor's bytes are exact, or `None` past what an array can hold or index
    /// (`isize::MAX` bytes, or as many non-empty elements) — never wrapped around.
    #[test]
    fn tensor_bytes_are_exact_or_none(
        shape in proptest::collection::vec(
            prop_oneof![Just(0usize), 1usize..1000, (1usize << 30)..usize::MAX],
            0..4,
        ),
        f64_type: bool,
    ) {
        let dtype = if f64_type { DType::F64 } else { DType::F32 };
        let limit = isize::MAX as u128;
        let elements = shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1u128, |p, &d| p.checked_mul(d as u128));
        let expected = match elements {
            Some(n) if n <= limit && shape.contains(&0) => Some(0),
            Some(n) if n * dtype.size_bytes() as u128 <= limit => {
                Some((n * dtype.size_bytes() as u128) as u64)
            }
            _ => None,
        };
        prop_assert_eq!(tensor_bytes(dtype, &shape), expected);
    }
}

/// Inputs of zero bytes that bind `B` and `K`: `x: [B, K]`, `y: [B, K]` with `K = 0`; the
/// model's temporaries are `[B, 1]`, so B decides how much a run allocates.
const EMPTY_WIDTH_MODEL: &str = "model wide\ninput x: f32[B, K]\ntarget y: f32[B, K]\n\
    param w: f32[1] = ones\noutput z = x + tanh(sum(x, axis=1, keepdims=true)) * w\n\
    loss mse(z, y)\n";

fn empty_batch(rows: usize) -> TensorMap {
    let empty = Tensor::zeros(DType::F32, &[rows, 0]);
    TensorMap::from_iter([("x", empty.clone()), ("y", empty)])
}

fn assert_memory_error(result: sgn::Result<impl std::fmt::Debug>, rows: usize) {
    match result {
        Err(Error::Memory(message)) => {
            assert!(message.contains(&format!("B = {rows}")), "{message}");
            assert!(
                message.contains("f32[B, 1]"),
                "names the largest value: {message}"
            );
            assert!(message.contains("needs"), "{message}");
        }
        other => panic!("expected a memory error for B = {rows}, got {other:?}"),
    }
}

#[test]
fn a_batch_that_binds_a_huge_dimension_is_refused_before_any_allocation() {
    let model = Model::parse(EMPTY_WIDTH_MODEL).unwrap();
    let params = init_params(&model.params, 0).unwrap();
    for backend in [BackendKind::Jit, BackendKind::Interpreter] {
        let compiled = model
            .compile(&CompileOptions::default().with_backend(backend))
            .unwrap();
        // 2^40 rows: 4 TiB per [B, 1] value; from 2^62 rows on, past what memory can address.
        for rows in [1usize << 40, 1 << 62, isize::MAX as usize] {
            let batch = empty_batch(rows);
            assert_memory_error(compiled.forward(&params, &batch), rows);
            assert_memory_error(compiled.loss_and_grad(&params, &batch), rows);
        }
        // A small batch of the same model still runs, and so does one whose values pass the
        // size from which memory is checked (64 MiB per [B, 1] value).
        for rows in [3, 1 << 24] {
            let (z, loss) = compiled.forward(&params, &empty_batch(rows)).unwrap();
            assert_eq!(z.shape(), &[rows, 0]);
            assert!(loss.is_nan(), "the mean of no elements");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any row count from 2^36 (256 GiB per [B, 1] value) up is refused by both backends.
    #[test]
    fn every_huge_binding_is_a_memory_error(log2 in 36u32..63, extra in 0usize..1 << 20) {
        let rows = (1usize << log2) | extra;
        let model = Model::parse(EMPTY_WIDTH_MODEL).unwrap();
        let params = init_params(&model.params, 0).unwrap();
        let batch = empty_batch(rows);
        for backend in [BackendKind::Jit, BackendKind::Interpreter] {
            let compiled = model
                .compile(&CompileOptions::default().with_backend(backend).with_optimize(false))
                .unwrap();
            assert_memory_error(compiled.forward(&params, &batch), rows);
        }
    }
}

#[test]
fn parameters_too_large_for_memory_are_refused_before_any_is_drawn() {
    let model = Model::parse(
        "model big\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\n\
         param w: f32[2, 1099511627776] = zeros\nparam v: f32[1099511627776, 1] = zeros\n\
         output z = x @ w @ v\nloss mse(z, y)\n",
    )
    .unwrap();
    let err: Error = init_params(&model.params, 0).unwrap_err().into();
    let Error::Memory(message) = &err else {
        panic!("expected a memory error, got {err:?}");
    };
    assert!(
        message.starts_with("initializing 2 parameter(s) (the largest, 'w': f32[2, 1099511627776], 8192.0 GiB) needs 12288.0 GiB"),
        "{message}"
    );
}

#[test]
fn an_argument_whose_monomial_axis_overflows_is_an_error() {
    // x: [B, 3·B] given as [2^63 - 1, 0]: B = 2^63 - 1 and 3·B does not fit in 64 bits.
    let mut graph = Graph::new("square");
    let b = Dim::sym("B");
    let ty = TensorType::new(DType::F32, Shape(vec![b.clone(), Dim::fixed(3).mul(&b)]));
    let x = graph.add_arg("x", ArgRole::Input, ty);
    let total = graph.sum(x, &[0, 1]).unwrap();
    graph.add_output("total", total);
    let rows = isize::MAX as usize;
    let err: Error = bind_dims(&graph, &[Tensor::zeros(DType::F32, &[rows, 0])])
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, Error::Memory(m) if m.contains("argument 'x'")
            && m.contains(&format!("B = {rows}")) && m.contains("does not fit")),
        "{err:?}"
    );
    // With 2^62 rows 3·B fits: the error is then the size of axis 1.
    let err: Error = bind_dims(&graph, &[Tensor::zeros(DType::F32, &[1 << 62, 0])])
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, Error::Tensor(m) if m.contains("axis 1 must be 3*B = 13835058055282163712")),
        "{err:?}"
    );
}

#[test]
fn an_operand_from_no_node_of_the_graph_is_a_shape_error() {
    let mut g = Graph::new("g");
    let ty = TensorType::new(DType::F32, Shape::fixed(&[2]));
    let x = g.add_arg("x", ArgRole::Input, ty);
    let err = g
        .binary(sgn::ir::BinaryOp::Add, x, sgn::ir::NodeId(7))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "add of NodeId(7): no such node in graph 'g' (1 nodes)"
    );
    assert_eq!(g.nodes().len(), 1, "nothing was added");
    // `?` turns it into the crate's error.
    let built = |g: &mut Graph| -> sgn::Result<()> {
        g.unary(sgn::ir::UnaryOp::Tanh, sgn::ir::NodeId(9))?;
        Ok(())
    };
    assert!(matches!(built(&mut g), Err(Error::Tensor(_))));
}

#[test]
fn outputs_too_large_for_memory_are_refused_before_they_are_made() {
    let text = "graph g\narg x: f32[B] input\n%0 = arg x : f32[B]\n\
                %1 = reshape[B, 1] %0 : f32[B, 1]\n%2 = broadcast[B, B] %1 : f32[B, B]\n\
                out y = %2\n";
    let g = sgn::ir::text::parse_graph(text).unwrap();
    let jit = compile_graph(&g, &JitOptions::default()).unwrap();
    let huge: Bindings = [(Arc::from("B"), 1usize << 24)].into_iter().collect();
    let err = jit.output_tensors(&huge).unwrap_err().to_string();
    assert!(err.contains("the outputs of graph 'g'"), "{err}");
    let small: Bindings = [(Arc::from("B"), 3usize)].into_iter().collect();
    assert_eq!(jit.output_tensors(&small).unwrap()[0].shape(), &[3, 3]);
}

#[test]
fn a_direction_replaced_by_another_type_is_made_anew_by_the_next_product() {
    let s = setup();
    let batch = common::batch_for(&Model::parse(TINY_MODEL).unwrap(), DType::F32, 8, 2);
    let op = s.compiled.gv_operator(&s.params, &batch).unwrap();
    let expected = op.apply(&s.params).unwrap();
    op.with_directions(|directions, _| *directions[0] = Tensor::zeros(DType::F64, &[1]));
    assert_eq!(op.apply(&s.params).unwrap(), expected);
}

#[test]
fn differentiating_a_graph_without_a_scalar_loss_is_an_error() {
    let text = "graph g\narg x: f32[B, 2] input\n%0 = arg x : f32[B, 2]\n\
                %1 = tanh %0 : f32[B, 2]\nout z = %1\n";
    let g = sgn::ir::text::parse_graph(text).unwrap();
    let err = sgn::autodiff::derive(&g, "z").unwrap_err().to_string();
    assert!(err.contains("graph 'g' has no output 'loss'"), "{err}");
    let err = sgn::autodiff::derive(&g, "y").unwrap_err().to_string();
    assert!(err.contains("no output 'y'"), "{err}");
    let g = sgn::ir::text::parse_graph(&format!("{text}out loss = %1\n")).unwrap();
    let err = sgn::autodiff::derive(&g, "z").unwrap_err().to_string();
    assert!(
        err.contains("the loss must be a scalar, not f32[B, 2]"),
        "{err}"
    );
}

// ----- 2. threads -----

#[test]
fn more_threads_than_the_cap_is_an_error_value() {
    let model = Model::parse(EMPTY_WIDTH_MODEL).unwrap();
    let graph = &model.graph;
    let err: Error = compile_graph(graph, &JitOptions::default().with_threads(MAX_THREADS + 1))
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, Error::Jit(m) if m.contains(&format!("the most is {MAX_THREADS}"))),
        "{err:?}"
    );
    let options = CompileOptions::default().with_threads(10_000);
    assert!(matches!(model.compile(&options), Err(Error::Jit(_))));
    assert!(JitOptions::default().with_threads(0).thread_count() <= MAX_THREADS);
}

// ----- 6. checkpoints -----

fn options(epochs: u64, checkpoint: Option<&Path>) -> TrainOptions {
    TrainOptions {
        batch_size: 50,
        stop: StopRule {
            epochs: Some(epochs),
            time_limit: None,
        },
        seed: 5,
        checkpoint: checkpoint.map(Path::to_path_buf),
        ..TrainOptions::default()
    }
}

fn optimizer(name: &str) -> Box<dyn Optimizer> {
    match name {
        "sgn" => Box::new(Sgn::new(SgnOptions {
            warm_start: Some(0.95),
            preconditioner: Some(0.75),
            ..SgnOptions::default()
        })),
        "sgd" => Box::new(Sgd::new(SgdOptions {
            momentum: 0.9,
            ..SgdOptions::default()
        })),
        _ => Box::new(Adam::new(AdamOptions::default())),
    }
}

struct Setup {
    compiled: CompiledModel,
    params: TensorMap,
    data: Dataset,
}

fn setup() -> Setup {
    let model = Model::parse(TINY_MODEL).unwrap();
    Setup {
        compiled: model.compile(&CompileOptions::default()).unwrap(),
        params: init_params(&model.params, 1).unwrap(),
        data: blobs_dataset(),
    }
}

/// One epoch with `optimizer`, checkpointed at `path`.
fn checkpoint(s: &Setup, name: &str, path: &Path) {
    let mut t = Trainer::new(
        &s.compiled,
        &s.data,
        &s.params,
        optimizer(name),
        options(1, Some(path)),
    )
    .unwrap();
    t.run(&mut |_| {}).unwrap();
}

fn resume(s: &Setup, name: &str, path: &Path) -> sgn::Result<()> {
    let mut t = Trainer::new(
        &s.compiled,
        &s.data,
        &s.params,
        optimizer(name),
        options(3, None),
    )?;
    t.resume(path)
}

#[test]
fn training_refuses_to_start_from_a_non_finite_parameter() {
    let s = setup();
    let mut params = s.params.clone();
    let mut b1 = params.get("b1").unwrap().to_f64_vec();
    b1[0] = f64::NEG_INFINITY;
    let shape = params.get("b1").unwrap().shape().to_vec();
    params.insert("b1", Tensor::from_f64(DType::F32, &shape, b1).unwrap());
    let err = Trainer::new(
        &s.compiled,
        &s.data,
        &params,
        optimizer("sgd"),
        options(1, None),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("parameter 'b1' holds a non-finite value"),
        "{err}"
    );
}

/// Rewrites a checkpoint with `edit` applied to its tensors, with checksums that match the edited
/// tensors (so that only the validation of the values can catch the edit).
fn rewrite(path: &Path, edit: impl FnOnce(&mut TensorMap, &mut BTreeMap<String, String>)) {
    let (mut map, mut metadata) = TensorMap::load_with_metadata(path).unwrap();
    edit(&mut map, &mut metadata);
    metadata.retain(|k, _| !k.starts_with("sha256."));
    for (name, t) in map.iter() {
        metadata.insert(format!("sha256.{name}"), sha256_of(t));
    }
    map.save(path, &metadata).unwrap();
}

#[test]
fn every_tensor_of_a_checkpoint_has_a_checksum_and_a_flipped_bit_is_caught() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    checkpoint(&s, "adam", &path);
    assert!(is_checkpoint(&path));
    resume(&s, "adam", &path).unwrap();
    let (map, metadata) = TensorMap::load_with_metadata(&path).unwrap();
    assert_eq!(metadata["format"], "sgn-checkpoint-2");
    for (name, t) in map.iter() {
        assert_eq!(metadata[&format!("sha256.{name}")], sha256_of(t), "{name}");
    }

    // The case: an exponent bit of a weight flipped (a value of about 6.5e37).
    let bytes = std::fs::read(&path).unwrap();
    let mut w1 = map.get("w1").unwrap().to_f64_vec();
    w1[0] = f64::from(f32::from_bits((w1[0] as f32).to_bits() ^ (1 << 30)));
    assert!(w1[0].abs() > 1e30 || w1[0].abs() < 1e-30);
    let damaged = dir.path().join("damaged.safetensors");
    let mut edited = map.clone();
    edited.insert("w1", Tensor::from_f64(DType::F32, &[2, 8], w1).unwrap());
    edited.save(&damaged, &metadata).unwrap();
    let err = resume(&s, "adam", &damaged).unwrap_err().to_string();
    assert!(
        err.contains("damaged.safetensors") && err.contains("'w1'") && err.contains("sha256"),
        "{err}"
    );
    // As --params, a checkpoint is verified too.
    let err = load_params(&damaged).unwrap_err().to_string();
    assert!(err.contains("'w1'"), "{err}");
    assert_eq!(load_params(&path).unwrap().len(), 4, "only the parameters");
    std::fs::write(&damaged, &bytes).unwrap();
    resume(&s, "adam", &damaged).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single bit flipped in the tensor data of a checkpoint is an error naming a tensor.
    #[test]
    fn any_flipped_data_bit_stops_a_resume(position in 0.0f64..1.0, bit in 0u8..8) {
        let s = setup();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        checkpoint(&s, "sgn", &path);
        let mut bytes = std::fs::read(&path).unwrap();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let at = (header + ((bytes.len() - header) as f64 * position) as usize).min(bytes.len() - 1);
        bytes[at] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        let err = resume(&s, "sgn", &path).unwrap_err().to_string();
        prop_assert!(err.contains("does not match its sha256"), "{}", err);
    }
}

#[test]
fn damaged_optimizer_state_is_an_error_naming_the_entry() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let nan_in_b1 = [0.0, 0.0, f64::NAN, 0.0, 0.0, 0.0, 0.0, 0.0];
    // (optimizer, tensor, its new values — None removes it —, what the error says)
    let cases: &[(&str, &str, Option<&[f64]>, &str)] = &[
        // The cases: Adam's first moment cut to 3 values, SGN's ρ set to NaN.
        (
            "adam",
            "optimizer.first_moment",
            Some(&[0.1, 0.2, 0.3]),
            "'optimizer.first_moment' has 3 values, expected 0 or 51",
        ),
        (
            "sgn",
            "optimizer.rho",
            Some(&[f64::NAN]),
            "'optimizer.rho' holds NaN at index 0; its values must be finite and > 0",
        ),
        (
            "sgn",
            "optimizer.rho",
            Some(&[-1.0]),
            "'optimizer.rho' holds -1 at index 0",
        ),
        (
            "sgn",
            "optimizer.squared_grad",
            Some(&[-1.0; 51]),
            "'optimizer.squared_grad' holds -1 at index 0; its values must be finite and >= 0",
        ),
        (
            "sgd",
            "optimizer.momentum_buffer",
            Some(&[f64::INFINITY; 51]),
            "'optimizer.momentum_buffer' holds inf",
        ),
        (
            "adam",
            "optimizer.steps",
            Some(&[2.5]),
            "'optimizer.steps' holds 2.5 at index 0; its values must be a whole number >= 0",
        ),
        ("adam", "optimizer.steps", Some(&[0.0]), "inconsistent"),
        (
            "adam",
            "optimizer.second_moment",
            None,
            "'optimizer.second_moment' is missing",
        ),
        (
            "sgn",
            "optimizer.momentum",
            Some(&[0.5]),
            "'optimizer.momentum' is not part of this optimizer's state",
        ),
        (
            "sgn",
            "b1",
            Some(&nan_in_b1),
            "parameter 'b1' holds a non-finite value",
        ),
        (
            "sgn",
            "w9",
            Some(&[0.0, 0.0]),
            "tensor 'w9' is not a parameter of the model (expected: w1, b1, w2, b2)",
        ),
    ];
    for &(name, tensor, values, expected) in cases {
        checkpoint(&s, name, &path);
        rewrite(&path, |map, _| match values {
            // Optimizer state is saved in f64, parameters in the model's f32.
            Some(values) => {
                let dtype = if tensor.starts_with("optimizer.") {
                    DType::F64
                } else {
                    DType::F32
                };
                let t = Tensor::from_f64(dtype, &[values.len()], values.to_vec()).unwrap();
                map.insert(tensor, t);
            }
            None => {
                map.remove(tensor);
            }
        });
        let err = resume(&s, name, &path).unwrap_err().to_string();
        assert!(
            err.contains("ck.safetensors") && err.contains(expected),
            "{name}: expected '{expected}' in: {err}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Restoring validates every entry: a state with one value made non-finite, or one vector
    /// made the wrong length, is refused and leaves the optimizer as it was.
    #[test]
    fn restore_refuses_any_damaged_entry(
        which in 0usize..3,
        entry in 0usize..4,
        index in 0usize..5,
        damage in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
        truncate: bool,
    ) {
        let dim = 5;
        let mut q: Box<dyn Optimizer> = match which {
            0 => Box::new(Sgn::new(SgnOptions {
                warm_start: Some(0.9),
                preconditioner: Some(0.5),
                ..SgnOptions::default()
            })),
            1 => Box::new(Sgd::new(SgdOptions { momentum: 0.5, ..SgdOptions::default() })),
            _ => Box::new(Adam::new(AdamOptions::default())),
        };
        // A valid state of the optimizer's own shape after steps: every vector of `dim` values.
        let mut state: OptimizerState = q.state();
        for (key, values) in state.iter_mut() {
            if values.is_empty() {
                *values = (0..dim).map(|i| 0.25 + i as f64).collect();
            }
            if key == "steps" {
                *values = vec![3.0];
            }
        }
        q.restore(&state, dim).unwrap();
        let before = q.state();
        let key = state.keys().nth(entry % state.len()).unwrap().clone();
        let values = state.get_mut(&key).unwrap();
        if truncate && values.len() > 1 {
            values.truncate(values.len() - 1);
        } else {
            let i = index % values.len();
            values[i] = damage;
        }
        let err = q.restore(&state, dim).unwrap_err().to_string();
        let named = format!("'optimizer.{key}'");
        prop_assert!(err.contains(&named), "{}", err);
        prop_assert_eq!(q.state(), before);
    }
}

#[test]
fn an_inconsistent_position_or_a_finished_run_names_the_checkpoint() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    checkpoint(&s, "sgn", &path);
    // Past the end of the run: the checkpoint has one epoch, this run stops after one.
    let mut done = Trainer::new(
        &s.compiled,
        &s.data,
        &s.params,
        optimizer("sgn"),
        options(1, None),
    )
    .unwrap();
    let err = done.resume(&path).unwrap_err().to_string();
    assert!(
        err.contains("ck.safetensors") && err.contains("past the end of this run"),
        "{err}"
    );
    // A position past the end of an epoch (6 batches of 50 in 300 examples), an iteration that
    // does not match the position, a time that is not one.
    for (key, value) in [
        ("position", "9"),
        ("iteration", "7"),
        ("elapsed_bits", &f64::NAN.to_bits().to_string()),
    ] {
        checkpoint(&s, "sgn", &path);
        rewrite(&path, |_, metadata| {
            metadata.insert(key.to_string(), value.to_string());
        });
        let err = resume(&s, "sgn", &path).unwrap_err().to_string();
        assert!(err.contains("ck.safetensors"), "{key}: {err}");
    }
}

#[test]
fn a_checkpoint_without_checksums_from_before_them_still_resumes() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    checkpoint(&s, "sgn", &path);
    let (map, mut metadata) = TensorMap::load_with_metadata(&path).unwrap();
    metadata.retain(|k, _| !k.starts_with("sha256."));
    // Without checksums the current format is refused (they were removed)...
    map.save(&path, &metadata).unwrap();
    let err = resume(&s, "sgn", &path).unwrap_err().to_string();
    assert!(err.contains("has no checksum"), "{err}");
    // ...while the format before checksums is read as it was written.
    metadata.insert("format".to_string(), "sgn-checkpoint-1".to_string());
    map.save(&path, &metadata).unwrap();
    resume(&s, "sgn", &path).unwrap();
    assert!(!is_checkpoint(Path::new("ir/mnist_mlp.sgn")));
}

#[test]
fn a_checkpoint_resumes_only_into_the_model_it_trained() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    checkpoint(&s, "sgn", &path);
    let metadata = TensorMap::load_with_metadata(&path).unwrap().1;
    assert_eq!(metadata["model"], "tiny");
    assert_eq!(metadata["model_sha256"], s.compiled.identity().graph_sha256);
    // Comments and blank lines leave the model what it was.
    let relaid = TINY_MODEL.replace("\nh = ", "\n# the hidden layer\n\nh = ");
    let same = Setup {
        compiled: Model::parse(&relaid)
            .unwrap()
            .compile(&CompileOptions::default())
            .unwrap(),
        ..setup()
    };
    resume(&same, "sgn", &path).unwrap();
    // The same parameters in another network: refused, naming both models.
    let other = Setup {
        compiled: Model::parse(&TINY_MODEL.replace("tanh", "sigmoid"))
            .unwrap()
            .compile(&CompileOptions::default())
            .unwrap(),
        ..setup()
    };
    let err = resume(&other, "sgn", &path).unwrap_err().to_string();
    let short = |c: &CompiledModel| c.identity().graph_sha256[..12].to_string();
    assert!(
        err.contains("ck.safetensors")
            && err.contains("resumes only into its own model")
            && err.contains(&short(&s.compiled))
            && err.contains(&short(&other.compiled)),
        "{err}"
    );
    assert_ne!(short(&s.compiled), short(&other.compiled));
    // A checkpoint from before models were recorded resumes as it did; half a record is damage.
    rewrite(&path, |_, metadata| {
        metadata.remove("model_sha256");
    });
    let err = resume(&other, "sgn", &path).unwrap_err().to_string();
    assert!(err.contains("only one of them is there"), "{err}");
    rewrite(&path, |_, metadata| {
        metadata.remove("model");
    });
    resume(&other, "sgn", &path).unwrap();
}

#[test]
fn a_damaged_history_is_an_error_naming_the_column_and_row() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    // (column, row, new value, what the error says)
    let cases = [
        ("kind", 0, 2.0, "'history.kind' holds 2 at row 0"),
        ("epoch", 1, f64::NAN, "'history.epoch' holds NaN at row 1"),
        (
            "iteration",
            2,
            2.5,
            "'history.iteration' holds 2.5 at row 2",
        ),
        (
            "wall_time",
            0,
            -1.0,
            "'history.wall_time' holds -1 at row 0",
        ),
        (
            "test_accuracy",
            6,
            1.5,
            "'history.test_accuracy' holds 1.5 at row 6",
        ),
        (
            "rho",
            0,
            0.0,
            "'history.rho' holds 0 at row 0; it must be finite and > 0",
        ),
        ("cg_iters", 3, -2.0, "'history.cg_iters' holds -2 at row 3"),
        (
            "step_size",
            1,
            f64::INFINITY,
            "'history.step_size' holds inf at row 1",
        ),
        // Rows out of order: the epoch of row 3 set below row 2's.
        (
            "epoch",
            3,
            0.0,
            "'history.epoch' holds 0 at row 3; it is smaller than the row before",
        ),
        (
            "iteration",
            4,
            1.0,
            "'history.iteration' holds 1 at row 4; it is smaller",
        ),
    ];
    for (column, row, value, expected) in cases {
        checkpoint(&s, "sgn", &path);
        rewrite(&path, |map, _| {
            let name = format!("history.{column}");
            let mut values = map.get(&name).unwrap().to_f64_vec();
            values[row] = value;
            let n = values.len();
            map.insert(name, Tensor::from_f64(DType::F64, &[n], values).unwrap());
        });
        let err = resume(&s, "sgn", &path).unwrap_err().to_string();
        assert!(
            err.contains("ck.safetensors") && err.contains(expected),
            "{column}: expected '{expected}' in: {err}"
        );
    }
    // Absent values (NaN) where a field does not apply are what training writes.
    checkpoint(&s, "sgn", &path);
    resume(&s, "sgn", &path).unwrap();
}

// ----- 7. names -----

fn declared_params(model: &Model) -> Vec<&Arg> {
    model
        .graph
        .args()
        .iter()
        .filter(|a| a.role == ArgRole::Param)
        .collect()
}

#[test]
fn an_unknown_tensor_name_is_an_error_listing_the_expected_ones() {
    let model = Model::parse(TINY_MODEL).unwrap();
    let params = declared_params(&model);
    let mut file = init_params(&model.params, 0).unwrap();
    check_tensors(&file, &params, "p.safetensors").unwrap();
    file.insert("w9", Tensor::zeros(DType::F32, &[1]));
    let err = check_tensors(&file, &params, "p.safetensors")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "'p.safetensors' has a tensor 'w9' that the model does not declare (expected: w1, b1, w2, b2)"
    );
    file.remove("w9");
    file.remove("b2");
    let err = check_tensors(&file, &params, "p.safetensors")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tensor 'b2'"), "{err}");
}

/// A declared tensor replaced by one of the wrong rank or shape is refused, naming it (the branch
/// of the property below that its random names rarely reach).
#[test]
fn a_declared_tensor_of_the_wrong_shape_is_refused_by_name() {
    let model = Model::parse(TINY_MODEL).unwrap();
    let params = declared_params(&model);
    for arg in &params {
        for shape in [vec![1], vec![2, 1]] {
            let mut file = init_params(&model.params, 0).unwrap();
            file.insert(arg.name.clone(), Tensor::zeros(DType::F32, &shape));
            let err = check_tensors(&file, &params, "f").unwrap_err().to_string();
            assert!(
                err.contains(&format!("tensor '{}' in 'f'", arg.name))
                    && err.contains("but the model declares"),
                "{err}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever name is added to a valid set of tensors, it is refused unless it is declared.
    #[test]
    fn any_undeclared_name_is_refused(name in "[a-z][a-z0-9_.]{0,8}") {
        let model = Model::parse(TINY_MODEL).unwrap();
        let params = declared_params(&model);
        let mut file = init_params(&model.params, 0).unwrap();
        let declared = file.get(&name).is_some();
        file.insert(name.clone(), Tensor::zeros(DType::F32, &[1]));
        let result = check_tensors(&file, &params, "f");
        if declared {
            // A declared name with the wrong shape is a rank or shape error instead.
            let err = result.unwrap_err().to_string();
            prop_assert!(
                err.contains(&format!("tensor '{name}'")) && err.contains("but the model declares"),
                "{}", err
            );
        } else {
            let err = result.unwrap_err().to_string();
            let expected = format!("tensor '{name}' that the model does not declare");
            prop_assert!(err.contains(&expected), "{}", err);
        }
    }
}

#[test]
fn graphs_still_run_on_sources_holding_more_than_they_read() {
    // The library's maps may hold more than a graph reads (a batch map shared between models);
    // only files are held to exactly the declared names.
    let s = setup();
    let mut batch = TensorMap::new();
    batch.insert("x", Tensor::zeros(DType::F32, &[2, 2]));
    batch.insert("y", Tensor::zeros(DType::F32, &[2, 3]));
    batch.insert("unused", Tensor::zeros(DType::F32, &[1]));
    let args = s
        .compiled
        .arguments(
            sgn::autodiff::GraphName::Forward,
            &Sources::batch(&s.params, &batch),
        )
        .unwrap();
    assert_eq!(args.len(), 6);
}
