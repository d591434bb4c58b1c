//! The JIT against the interpreter on every graph of every `ir/` model, simplified or not, in f64
//! and f32, at batch sizes that exercise the SIMD tails; results independent of the thread count.

mod common;

use common::{batch_for, ir_models, wavy};
use sgn::codegen::{BackendKind, JitOptions, compile_graph};
use sgn::ir::store::{TensorMap, init_params};
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

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
    }
}

#[test]
fn jit_equals_the_interpreter_on_every_graph_of_every_model() {
    let options = JitOptions::default().with_threads(1);
    for (name, model) in ir_models() {
        for (dtype, optimize) in [
            (DType::F64, true),
            (DType::F32, true),
            (DType::F64, false),
            (DType::F32, false),
        ] {
            let compiled = compile_with(&model, dtype, optimize);
            let params = params_for(&model, dtype);
            for (graph_name, graph) in compiled.graphs.named() {
                let jit = compile_graph(graph, &options)
                    .unwrap_or_else(|e| panic!("{name}/{graph_name}: {e}"));
                for rows in [1, 7, 64] {
                    let batch = batch_for(&model, dtype, rows, 5);
                    let args = args_for(graph, &compiled, &batch, &params, rows);
                    let expected = interp::run(graph, &args).unwrap();
                    let got = jit.run(&args).unwrap();
                    assert_eq!(got.len(), expected.len());
                    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                        assert_eq!(g.shape(), e.shape(), "{name}/{graph_name} output {k}");
                        let diff = g.max_rel_diff(e);
                        assert!(
                            diff <= tolerance(dtype),
                            "{name}/{graph_name} {dtype} (optimized: {optimize}) B={rows} output '{}': rel diff {diff:e}",
                            graph.outputs()[k].name
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let models = ir_models();
    let (_, model) = models
        .iter()
        .find(|(n, _)| n == "mlp_relu_256")
        .expect("the model ships in ir/");
    let compiled = compile(model, DType::F32);
    let params = params_for(model, DType::F32);
    let batch = batch_for(model, DType::F32, 67, 1);
    for (graph_name, graph) in compiled.graphs.named() {
        let args = args_for(graph, &compiled, &batch, &params, 67);
        let one = compile_graph(graph, &JitOptions::default().with_threads(1)).unwrap();
        let two = compile_graph(graph, &JitOptions::default().with_threads(2)).unwrap();
        let three = compile_graph(graph, &JitOptions::default().with_threads(3)).unwrap();
        let reference = one.run(&args).unwrap();
        // Repeated runs would expose a missing barrier as an occasional difference.
        for _ in 0..5 {
            for jit in [&two, &three] {
                let got = jit.run(&args).unwrap();
                assert_eq!(got, reference, "{graph_name} on {} threads", jit.threads());
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
            assert!(g.max_rel_diff(e) <= 1e-12);
        }
    }
}
