//! Criterion benches of the JIT: per model, the graphs `forward`, `grad`, `gv-prepare` and
//! `gv-apply` at batch 1000 on 1 and 2 threads, each next to its GEMM roofline (its matmuls
//! alone) and the interpreter; and the time to JIT-compile all of a model's graphs.
//!
//! `cargo bench --bench jit` (all), or e.g. `cargo bench --bench jit -- mlp_tanh_800/grad`.

use criterion::{Criterion, criterion_group, criterion_main};
use sgn::codegen::{JitOptions, compile_graph, roofline_graph};
use sgn::ir::store::init_params;
use sgn::ir::{Arg, ArgRole, Bindings, DType, Graph, Tensor, interp};
use sgn::{CompileOptions, CompiledModel, Model};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

const BATCH: usize = 1000;

/// Deterministic values in (-1, 1).
fn values(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 2000) as f64 / 1000.0 - 1.0)
        .collect();
    Tensor::from_f64(DType::F32, shape, v).expect("length matches the shape")
}

/// Arguments of `graph` for the model's parameters and a batch; residuals from `gv-prepare`.
fn args_for(compiled: &CompiledModel, model: &Model, graph: &Graph) -> Vec<Tensor> {
    let params = init_params(&model.params, 0).expect("the model's initializers work");
    let bindings: Bindings = [("B".into(), BATCH)].into();
    // Seeded by name: an input has the same values in every graph that reads it.
    let named = |a: &Arg| {
        let seed = (a.name.bytes()).fold(0, |h: usize, b| (h * 31 + usize::from(b)) % 1000);
        values(&a.ty.shape.eval(&bindings).expect("only B"), seed)
    };
    let plain = |g: &Graph| -> Vec<Tensor> {
        g.args()
            .iter()
            .map(|a| match a.role {
                ArgRole::Param => params.get(&a.name).expect("a parameter").clone(),
                _ => named(a),
            })
            .collect()
    };
    if graph.args().iter().any(|a| a.role == ArgRole::Residual) {
        let prep = &compiled.graphs.gv_prepare;
        let mut residuals = interp::run(prep, &plain(prep))
            .expect("gv-prepare runs")
            .into_iter();
        graph
            .args()
            .iter()
            .map(|a| match a.role {
                ArgRole::Residual => residuals.next().expect("one residual per argument"),
                _ => named(a),
            })
            .collect()
    } else {
        plain(graph)
    }
}

fn bench_model(c: &mut Criterion, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("ir/{name}.sgn"));
    let model = Model::from_file(&path).expect("the model parses");
    let compiled = model
        .compile(&CompileOptions::default())
        .expect("the model differentiates");
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("compile-all-graphs", |b| {
        b.iter(|| {
            for (_, g) in compiled.graphs.named() {
                black_box(
                    compile_graph(g, &JitOptions::default().with_threads(1)).expect("compiles"),
                );
            }
        })
    });
    for graph_name in ["forward", "grad", "gv-prepare", "gv-apply", "grad-prepare"] {
        let graph = compiled
            .graphs
            .named()
            .into_iter()
            .find(|(n, _)| *n == graph_name)
            .expect("a derived graph")
            .1;
        let args = args_for(&compiled, &model, graph);
        let matmuls = roofline_graph(graph);
        let matmul_args: Vec<Tensor> = matmuls
            .args()
            .iter()
            .enumerate()
            .map(|(k, a)| {
                values(
                    &a.ty
                        .shape
                        .eval(&[("B".into(), BATCH)].into())
                        .expect("only B"),
                    k,
                )
            })
            .collect();
        for threads in [1, 2] {
            let options = JitOptions::default().with_threads(threads);
            let jit = compile_graph(graph, &options).expect("compiles");
            let mut outputs = jit.run(&args).expect("runs");
            group.bench_function(format!("{graph_name}/jit/{threads}t"), |b| {
                b.iter(|| jit.run_into(&args, &mut outputs).expect("runs"))
            });
            let roofline = compile_graph(&matmuls, &options).expect("compiles");
            let mut matmul_outputs = roofline.run(&matmul_args).expect("runs");
            group.bench_function(format!("{graph_name}/roofline/{threads}t"), |b| {
                b.iter(|| {
                    roofline
                        .run_into(&matmul_args, &mut matmul_outputs)
                        .expect("runs")
                })
            });
        }
        group.bench_function(format!("{graph_name}/interp"), |b| {
            b.iter(|| black_box(interp::run(graph, &args).expect("runs")))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_model(c, "mlp_tanh_800");
    bench_model(c, "mnist_mlp");
}

// No HTML plots: criterion's plotters backend needs a system font that CI machines lack (it
// panicked after the first benchmark); the figures we report are in the text output.
criterion_group! {
    name = jit;
    config = Criterion::default().without_plots();
    targets = benches
}
criterion_main!(jit);
