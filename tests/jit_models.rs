//! The JIT against the interpreter on every graph of every `ir/` model, simplified or not, in f64
//! and f32, at batch sizes that exercise the SIMD tails, on every GEMM path and with and without
//! FMA (as the host allows); results bit-identical on 1, 2 and 3 threads. And bf16 curvature's
//! G v against f64's.

use crate::common;

use common::{assert_close, batch_for, bits, ir_models, jit_variants, wavy};
use sgn::codegen::{BackendKind, JitOptions, ParallelMin, compile_graph, host_has_bf16_products};
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::tensor::Floor;
use sgn::ir::{ArgRole, DType, Graph, Tensor, interp};
use sgn::{CompileOptions, CompiledModel, Curvature, Model};

/// The model's derived graphs in `dtype`, simplified or not; each test here compiles the graphs
/// it runs itself, so the model keeps the interpreter.
fn compile_with(model: &Model, dtype: DType, optimize: bool) -> CompiledModel {
    model
        .compile(&CompileOptions {
            dtype: Some(dtype),
            optimize,
            backend: BackendKind::Interpreter,
            ..CompileOptions::default()
        })
        .unwrap()
}

fn compile(model: &Model, dtype: DType) -> CompiledModel {
    compile_with(model, dtype, true)
}

/// Arguments for `graph`: the batch and parameters by name, wavy directions and cotangents,
/// residuals from `gv-prepare` (as the interpreter computes them).
fn args_for(
    graph: &Graph,
    compiled: &CompiledModel,
    batch: &TensorMap,
    params: &TensorMap,
    rows: usize,
) -> Vec<Tensor> {
    let mut residuals: Option<std::vec::IntoIter<Tensor>> = None;
    graph
        .args()
        .iter()
        .enumerate()
        .map(|(k, arg)| match arg.role {
            ArgRole::Input | ArgRole::Target => batch.get(&arg.name).unwrap().clone(),
            ArgRole::Param => params.get(&arg.name).unwrap().clone(),
            ArgRole::Direction | ArgRole::Cotangent => {
                let shape = arg.ty.shape.eval(&[("B".into(), rows)].into()).unwrap();
                wavy(arg.ty.dtype, &shape, 7 + k as u64, 1.0)
            }
            ArgRole::Residual => residuals
                .get_or_insert_with(|| {
                    let prep = &compiled.graphs.gv_prepare;
                    let prep_args = args_for(prep, compiled, batch, params, rows);
                    interp::run(prep, &prep_args).unwrap().into_iter()
                })
                .next()
                .unwrap(),
        })
        .collect()
}

fn params_for(model: &Model, dtype: DType) -> TensorMap {
    init_params(&model.params, 3)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, (n, t))| {
            // Nonzero biases too: zero is a special point for some ops.
            let jiggle = wavy(DType::F64, t.shape(), 40 + i as u64, 0.1).to_f64();
            let values = t.to_f64() + jiggle;
            (n.to_string(), Tensor::F64(values).cast(dtype))
        })
        .collect()
}

/// The JIT against the interpreter in `dtype`: f64 within 1e-12 of each output's values down to
/// a tenth of its largest (measured: 4.8e-14; with a floor of 1e-3 of the largest, 2.1e-12 —
/// gradients are sums over the batch that cancel). f32 within 1e-5 of the largest value
/// (measured 4.0e-6; 2.7e-5 with a floor of a tenth): the same sums, in f32.
fn floor_and_tolerance(dtype: DType) -> (Floor, f64) {
    match dtype {
        DType::F64 => (Floor::OfLargest(0.1), 1e-12),
        DType::F32 => (Floor::OfLargest(1.0), 1e-5),
    }
}

#[test]
fn jit_equals_the_interpreter_on_every_graph_of_every_model() {
    for (name, model) in ir_models() {
        for (dtype, optimize) in [
            (DType::F64, true),
            (DType::F32, true),
            (DType::F64, false),
            (DType::F32, false),
        ] {
            let compiled = compile_with(&model, dtype, optimize);
            let params = params_for(&model, dtype);
            let (floor, tolerance) = floor_and_tolerance(dtype);
            for (graph_name, graph) in compiled.graphs.named() {
                for (variant, options) in jit_variants(1) {
                    let jit = compile_graph(graph, &options)
                        .unwrap_or_else(|e| panic!("{name}/{graph_name} ({variant}): {e}"));
                    for rows in [1, 7, 64] {
                        let batch = batch_for(&model, dtype, rows, 5);
                        let args = args_for(graph, &compiled, &batch, &params, rows);
                        let expected = interp::run(graph, &args).unwrap();
                        let got = jit.run(&args).unwrap();
                        assert_eq!(got.len(), expected.len());
                        for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                            let what = format!(
                                "{name}/{graph_name} {dtype} (optimized: {optimize}, {variant}) \
                                 B={rows} output '{}'",
                                graph.outputs()[k].name
                            );
                            assert_close(&what, g, e, floor, tolerance);
                        }
                    }
                }
            }
        }
    }
}

/// Every graph of every model on 1, 2 and 3 threads gives the same bits, with work split at
/// every size and with the default thresholds, at batch sizes that leave ragged parts.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    for (name, model) in ir_models() {
        let compiled = compile(&model, DType::F32);
        let params = params_for(&model, DType::F32);
        for (graph_name, graph) in compiled.graphs.named() {
            let cases: Vec<(usize, Vec<Tensor>)> = [7, 100]
                .into_iter()
                .map(|rows| {
                    let batch = batch_for(&model, DType::F32, rows, 1);
                    (rows, args_for(graph, &compiled, &batch, &params, rows))
                })
                .collect();
            for parallel_min in [ParallelMin::NONE, ParallelMin::default()] {
                let mut one_thread: Option<Vec<Vec<Vec<u64>>>> = None;
                for threads in [1, 2, 3] {
                    let options = JitOptions {
                        parallel_min,
                        ..JitOptions::default().with_threads(threads)
                    };
                    let jit = compile_graph(graph, &options).unwrap();
                    let run = || -> Vec<Vec<Vec<u64>>> {
                        cases
                            .iter()
                            .map(|(_, args)| jit.run(args).unwrap().iter().map(bits).collect())
                            .collect()
                    };
                    let reference = one_thread.get_or_insert_with(run);
                    // A repeated run would expose a missing barrier as an occasional difference.
                    for _ in 0..2 {
                        for (got, ((rows, _), want)) in
                            run().iter().zip(cases.iter().zip(&*reference))
                        {
                            assert!(
                                got == want,
                                "{name}/{graph_name} B={rows} on {threads} threads ({parallel_min:?})"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The fused grad-prepare gives grad's outputs followed by gv-prepare's, bit for bit: an SGN step
/// runs it in their place, so fusing must not move a single result.
#[test]
fn grad_prepare_is_grad_then_gv_prepare_bit_for_bit() {
    for (name, model) in ir_models() {
        let compiled = compile(&model, DType::F32);
        let params = params_for(&model, DType::F32);
        let graphs = &compiled.graphs;
        let options = JitOptions::default().with_threads(2);
        let run = |graph: &Graph, batch: &TensorMap, rows: usize| -> Vec<Vec<u64>> {
            let args = args_for(graph, &compiled, batch, &params, rows);
            let jit = compile_graph(graph, &options).unwrap();
            jit.run(&args).unwrap().iter().map(bits).collect()
        };
        for rows in [7, 100] {
            let batch = batch_for(&model, DType::F32, rows, 4);
            let mut separate = run(&graphs.grad, &batch, rows);
            separate.extend(run(&graphs.gv_prepare, &batch, rows));
            let fused = run(&graphs.grad_prepare, &batch, rows);
            assert_eq!(fused.len(), separate.len(), "{name}: output count");
            for (k, (f, s)) in fused.iter().zip(&separate).enumerate() {
                let output = &graphs.grad_prepare.outputs()[k].name;
                assert!(
                    f == s,
                    "{name} B={rows}: grad-prepare output '{output}' differs"
                );
            }
        }
    }
}

/// The paper's MNIST net, from `ir/`.
fn mnist_mlp() -> Model {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ir/mnist_mlp.sgn");
    Model::from_file(path).expect("the model ships in ir/")
}

#[test]
fn run_into_reuses_outputs_across_batch_sizes() {
    let model = &mnist_mlp();
    let compiled = compile(model, DType::F64);
    let params = params_for(model, DType::F64);
    let graph = &compiled.graphs.grad;
    let jit = compile_graph(graph, &JitOptions::default().with_threads(2)).unwrap();
    for rows in [5, 300, 5] {
        let batch = batch_for(model, DType::F64, rows, 2);
        let args = args_for(graph, &compiled, &batch, &params, rows);
        let bindings = interp::bind_dims(graph, &args).unwrap();
        let mut outputs = jit.output_tensors(&bindings).unwrap();
        for _ in 0..3 {
            jit.run_into(&args, &mut outputs).unwrap();
        }
        let expected = interp::run(graph, &args).unwrap();
        for (g, e) in outputs.iter().zip(&expected) {
            let (floor, tolerance) = floor_and_tolerance(DType::F64);
            assert_close("grad", g, e, floor, tolerance);
        }
    }
}

#[test]
fn gv_operator_reads_a_batch_in_any_layout() {
    // gv-apply reads the batch's `x` in place (a residual of the first layer); the same values
    // laid out column-major give the same products, bit for bit.
    let model = &mnist_mlp();
    let compiled = model.compile(&CompileOptions::default()).unwrap();
    let params = init_params(&model.params, 0).unwrap();
    let batch = batch_for(model, DType::F32, 37, 3);
    let mut transposed = batch.clone();
    let Some(Tensor::F32(x)) = batch.get("x") else {
        panic!("mnist_mlp's input x is f32")
    };
    let column_major = x.t().as_standard_layout().into_owned().reversed_axes();
    assert!(!column_major.is_standard_layout());
    transposed.insert("x", Tensor::F32(column_major));
    let v = common::direction_like(&params, 4);
    let products = |batch: &TensorMap| {
        let gv = compiled
            .gv_operator(&params, batch)
            .unwrap()
            .apply(&v)
            .unwrap();
        params
            .names()
            .map(|p| bits(gv.get(p).unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(products(&transposed), products(&batch));
}

/// `map` with every tensor in `dtype`.
fn cast(map: &TensorMap, dtype: DType) -> TensorMap {
    let mut out = TensorMap::new();
    for (name, t) in map.iter() {
        out.insert(name, t.clone().cast(dtype));
    }
    out
}

/// ‖a − b‖ / ‖b‖ over all entries.
fn relative_distance(a: &TensorMap, b: &TensorMap) -> f64 {
    let (mut diff, mut norm) = (0.0, 0.0);
    for (name, tb) in b.iter() {
        let ta = a.get(name).unwrap().to_f64_vec();
        for (x, y) in ta.iter().zip(tb.to_f64_vec()) {
            diff += (x - y) * (x - y);
            norm += y * y;
        }
    }
    (diff / norm).sqrt()
}

/// The 64-96-10 tanh net of the bf16 tests: its first layer's products are wide enough for bf16.
fn wide_tanh_net() -> Model {
    Model::parse(
        "model wide\ninput x: f32[B, 64]\ntarget y: f32[B, 10]\n\
         param w1: f32[64, 96] = glorot_uniform\nparam b1: f32[96] = zeros\n\
         param w2: f32[96, 10] = glorot_uniform\nparam b2: f32[10] = zeros\n\
         output z = tanh(x @ w1 + b1) @ w2 + b2\nloss softmax_cross_entropy(z, y)\n",
    )
    .unwrap()
}

#[test]
fn a_gv_operator_keeping_its_packed_operands_gives_the_bits_of_fresh_products() {
    // With bf16 curvature an operator packs the direction-free operand of each product once
    // (`PackCache`); every product must still be the one a fresh operator computes.
    let model = wide_tanh_net();
    let params = init_params(&model.params, 0).unwrap();
    let batch = common::batch_for(&model, DType::F32, 100, 1);
    let directions: Vec<TensorMap> = (2..5).map(|s| common::direction_like(&params, s)).collect();
    for threads in [1, 2] {
        let options = CompileOptions::default()
            .with_curvature(Curvature::Bf16)
            .with_threads(threads);
        let compiled = model.compile(&options).unwrap();
        let kept = compiled.gv_operator(&params, &batch).unwrap();
        let mut packed_in_the_first = None;
        for v in directions.iter().chain(&directions) {
            let fresh = compiled
                .gv_operator(&params, &batch)
                .unwrap()
                .apply(v)
                .unwrap();
            assert_eq!(kept.apply(v).unwrap(), fresh, "{threads} thread(s)");
            packed_in_the_first.get_or_insert(kept.packings());
        }
        // Packed in the first product only (x and xᵀ, the first layer's), where bf16 runs.
        let packed = packed_in_the_first.unwrap();
        assert_eq!(kept.packings(), packed, "{threads} thread(s)");
        assert_eq!(packed > 0, host_has_bf16_products(), "{threads} thread(s)");
    }
}

#[test]
fn bf16_curvature_approximates_g_v_and_falls_back_to_full_precision_where_it_cannot_run() {
    // Wide enough that gv-apply's first-layer products run in bf16 (more than 32 rows, columns
    // and inner length); the 10-column products stay f32.
    let model = wide_tanh_net();
    let params = init_params(&model.params, 0).unwrap();
    let batch = common::batch_for(&model, DType::F32, 100, 1);
    let v = common::direction_like(&params, 2);
    let gv = |options: CompileOptions, dtype: DType| {
        let compiled = model.compile(&options.with_dtype(dtype)).unwrap();
        let (p, b, v) = (cast(&params, dtype), cast(&batch, dtype), cast(&v, dtype));
        let gv = compiled.gv_operator(&p, &b).unwrap().apply(&v).unwrap();
        (compiled, gv)
    };
    let bf16 = CompileOptions::default().with_curvature(Curvature::Bf16);
    let (_, exact) = gv(CompileOptions::default(), DType::F64);
    let (_, full) = gv(CompileOptions::default(), DType::F32);
    let (compiled, approximate) = gv(bf16.clone(), DType::F32);
    let full_error = relative_distance(&full, &exact);
    assert!(full_error < 1e-5, "f32 G v is {full_error:e} from f64's");
    if host_has_bf16_products() {
        assert_eq!(compiled.curvature(), Curvature::Bf16);
        assert_eq!(compiled.curvature_notice(), None);
        // bf16 keeps 8 bits of mantissa: an error near 2⁻⁹ per operand, far above f32's.
        let error = relative_distance(&approximate, &exact);
        println!("G v relative error: bf16 {error:e}, f32 {full_error:e}");
        assert!(
            (1e-5..2e-2).contains(&error),
            "bf16 G v is {error:e} from f64's"
        );
    } else {
        assert_eq!(compiled.curvature(), Curvature::Full);
        let notice = compiled.curvature_notice().unwrap();
        assert!(notice.contains("AVX512-BF16"), "{notice}");
        assert_eq!(relative_distance(&approximate, &full), 0.0);
    }
    // Where bf16 cannot run, the curvature is computed in full, and the notice says why.
    let (interpreted, _) = gv(
        bf16.clone().with_backend(BackendKind::Interpreter),
        DType::F32,
    );
    assert_eq!(interpreted.curvature(), Curvature::Full);
    assert!(
        interpreted
            .curvature_notice()
            .unwrap()
            .contains("interpreter")
    );
    let (wide, _) = gv(bf16, DType::F64);
    assert_eq!(wide.curvature(), Curvature::Full);
    assert!(wide.curvature_notice().unwrap().contains("f64"));
}
