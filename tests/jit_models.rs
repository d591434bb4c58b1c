//! The JIT against the interpreter on every graph of every `ir/` model, simplified or not, in f64
//! and f32, at batch sizes that exercise the SIMD tails, on every GEMM path and with and without
//! FMA (as the host allows); results bit-identical on 1, 2 and 3 threads.

mod common;

use common::{assert_close, batch_for, bits, ir_models, jit_variants, wavy};
use sgn::codegen::{BackendKind, JitOptions, ParallelMin, compile_graph};
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::tensor::Floor;
use sgn::ir::{ArgRole, DType, Graph, Tensor, interp};
use sgn::{CompileOptions, CompiledModel, Model};

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

#[test]
fn run_into_reuses_outputs_across_batch_sizes() {
    let models = ir_models();
    let (_, model) = models
        .iter()
        .find(|(n, _)| n == "mnist_mlp")
        .expect("the model ships in ir/");
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
