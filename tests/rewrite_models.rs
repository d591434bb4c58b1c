//! The optimizer on whole models: every derived graph of every `ir/` model, simplified as
//! `Model::compile` simplifies it, evaluates like the graph as differentiated (f64; run by the
//! interpreter and by the JIT on both sides), the optimized prepare + apply stages still give
//! the explicit Jᵀ H J v, signatures are unchanged, the dense MLPs meet their FLOP bounds, every
//! phase saturates, and `docs/OPTIMIZATION.md` is what the generator prints.

use crate::common;

use common::{
    RELATIVE_FLOOR, assert_close, assert_close_to_explicit, axpy, batch_for, direction_like,
    explicit_gv, flatten, has_conv, ir_models, small_net, wavy,
};
use sgn::autodiff::DerivedGraphs;
use sgn::codegen::BackendKind;
use sgn::compile::optimization_doc;
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::{ArgRole, DType, Graph, Tensor};
use sgn::rewrite::{MlpBounds, RewriteOptions, RewriteReport, graph_stats, optimize};
use sgn::{CompileOptions, CompiledModel, Model};
use std::path::Path;

const F: DType = DType::F64;

/// Optimized against unoptimized results: the rewrites reassociate sums and products, so values
/// move by rounding, measured against the largest value of each output (sums of terms that
/// size, see `Floor::OfLargest`).
const TOLERANCE: f64 = 1e-10;

fn optimize_all(graphs: &DerivedGraphs) -> (DerivedGraphs, Vec<(&'static str, RewriteReport)>) {
    let mut reports = Vec::new();
    let mut run = |name: &'static str, g: &Graph| {
        let (optimized, report) =
            optimize(g, &RewriteOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        reports.push((name, report));
        optimized
    };
    let optimized = DerivedGraphs {
        signature: graphs.signature.clone(),
        forward: run("forward", &graphs.forward),
        grad: run("grad", &graphs.grad),
        jvp: run("jvp", &graphs.jvp),
        vjp: run("vjp", &graphs.vjp),
        gv: run("gv", &graphs.gv),
        gv_prepare: run("gv-prepare", &graphs.gv_prepare),
        gv_apply: run("gv-apply", &graphs.gv_apply),
        grad_prepare: run("grad-prepare", &graphs.grad_prepare),
    };
    (optimized, reports)
}

/// The model compiled in f64 with simplification on or off, for a backend.
fn compiled(model: &Model, optimize: bool, backend: BackendKind) -> CompiledModel {
    model
        .compile(
            &CompileOptions::default()
                .with_dtype(F)
                .with_optimize(optimize)
                .with_backend(backend),
        )
        .unwrap()
}

/// Parameters in f64, biases moved off zero.
fn params_for(model: &Model, seed: u64) -> TensorMap {
    let params: TensorMap = init_params(&model.params, seed)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone().cast(F)))
        .collect();
    axpy(&params, 0.1, &direction_like(&params, seed + 50))
}

fn assert_maps_close(what: &str, got: &TensorMap, want: &TensorMap) {
    assert_eq!(got.len(), want.len(), "{what}: entries");
    for (name, w) in want.iter() {
        let g = got.get(name).unwrap();
        assert_close(&format!("{what} {name}"), g, w, RELATIVE_FLOOR, TOLERANCE);
    }
}

/// What every graph of a compiled model gives at one point: the API call of each graph, with
/// gv-prepare and gv-apply through the operator (their residuals differ between an optimized
/// and an unoptimized model, so they are compared by what they are for).
struct Results {
    z: Tensor,
    loss: f64,
    grad_loss: f64,
    grad: TensorMap,
    jvp_z: Tensor,
    jv: Tensor,
    vjp: TensorMap,
    gv: TensorMap,
    staged_gv: TensorMap,
}

fn results(model: &CompiledModel, params: &TensorMap, batch: &TensorMap, v: &TensorMap) -> Results {
    let (z, loss) = model.forward(params, batch).unwrap();
    let (grad_loss, grad) = model.loss_and_grad(params, batch).unwrap();
    let (jvp_z, jv) = model.jvp(params, batch, v).unwrap();
    let w = wavy(F, z.shape(), 9, 1.0);
    Results {
        vjp: model.vjp(params, batch, &w).unwrap(),
        gv: model.gv(params, batch, v).unwrap(),
        staged_gv: model.gv_operator(params, batch).unwrap().apply(v).unwrap(),
        z,
        loss,
        grad_loss,
        grad,
        jvp_z,
        jv,
    }
}

fn assert_results_close(what: &str, got: &Results, want: &Results) {
    let close = |name: &str, g: &Tensor, w: &Tensor| {
        assert_close(&format!("{what}: {name}"), g, w, RELATIVE_FLOOR, TOLERANCE);
    };
    let scalar = |x: f64| Tensor::scalar(F, x);
    close("forward z", &got.z, &want.z);
    close("forward loss", &scalar(got.loss), &scalar(want.loss));
    close("grad loss", &scalar(got.grad_loss), &scalar(want.grad_loss));
    assert_maps_close(&format!("{what}: grad"), &got.grad, &want.grad);
    close("jvp z", &got.jvp_z, &want.jvp_z);
    close("jvp", &got.jv, &want.jv);
    assert_maps_close(&format!("{what}: vjp"), &got.vjp, &want.vjp);
    assert_maps_close(&format!("{what}: gv"), &got.gv, &want.gv);
    assert_maps_close(
        &format!("{what}: gv-prepare + gv-apply"),
        &got.staged_gv,
        &want.gv,
    );
}

#[test]
fn optimized_models_evaluate_like_the_unoptimized_ones_on_every_model() {
    for (name, model) in ir_models() {
        let params = params_for(&model, 5);
        let batch = batch_for(&model, F, 6, 5);
        let v = direction_like(&params, 6);
        let run = |optimize, backend| {
            let compiled = compiled(&model, optimize, backend);
            // Simplification ran, and changed what runs.
            let simplified = !compiled.rewrite_reports.is_empty();
            assert_eq!(simplified, optimize, "{name}");
            results(&compiled, &params, &batch, &v)
        };
        // The oracle: the graphs as differentiated, run by the interpreter.
        let oracle = run(false, BackendKind::Interpreter);
        let native = BackendKind::Jit;
        let unoptimized_native = run(false, native);
        assert_results_close(
            &format!("{name} unoptimized {}", native.name()),
            &unoptimized_native,
            &oracle,
        );
        for backend in [BackendKind::Interpreter, native] {
            let optimized = run(true, backend);
            let what = format!("{name} optimized {}", backend.name());
            assert_results_close(&format!("{what} vs the interpreter"), &optimized, &oracle);
            assert_results_close(
                &format!("{what} vs unoptimized {}", native.name()),
                &optimized,
                &unoptimized_native,
            );
        }
    }
}

#[test]
fn optimized_prepare_and_apply_equal_the_explicit_jt_h_j_product() {
    for (loss, act) in [("softmax_cross_entropy", "tanh"), ("mse", "relu")] {
        let model = small_net(act, loss, 3);
        let optimized = compiled(&model, true, BackendKind::Jit);
        let params = params_for(&model, 4);
        let batch = batch_for(&model, F, 4, 2);
        let v = direction_like(&params, 8);
        // J from the optimized jvp graph, G v from the optimized two stages.
        let expected = explicit_gv(&optimized, loss, &params, &batch, &v);
        let staged = optimized
            .gv_operator(&params, &batch)
            .unwrap()
            .apply(&v)
            .unwrap();
        assert_close_to_explicit(
            &format!("{loss}/{act} optimized"),
            &flatten(&staged),
            &expected,
        );
    }
}

/// When simplification leaves gv-apply no residual with a batch axis (here `sᵀs`, s the row
/// sums of x, is one) while it still divides by the batch size, the input declaring the batch
/// axis joins its arguments: gv-apply runs, on both backends, and equals the one-shot product.
#[test]
fn gv_apply_without_a_batched_residual_binds_the_batch_from_its_input() {
    let model = Model::parse(
        "model row_sums\ninput x: f64[B, 4]\ntarget y: f64[B, 3]\n\
         param w: f64[1, 3] = glorot_uniform\n\
         output z = sum(x, axis=1, keepdims=true) @ w\nloss mse(z, y)\n",
    )
    .unwrap();
    let params = params_for(&model, 6);
    let batch = batch_for(&model, F, 5, 6);
    let v = direction_like(&params, 7);
    let mut results = Vec::new();
    for backend in [BackendKind::Interpreter, BackendKind::Jit] {
        let compiled = compiled(&model, true, backend);
        let apply = &compiled.graphs.gv_apply;
        let batched: Vec<(&str, ArgRole)> = (apply.args().iter())
            .filter(|a| a.ty.shape.dims().iter().any(|d| d.as_fixed().is_none()))
            .map(|a| (a.name.as_str(), a.role))
            .collect();
        assert_eq!(
            batched,
            [("x", ArgRole::Input)],
            "not the case under test: {apply}"
        );
        let staged = compiled
            .gv_operator(&params, &batch)
            .unwrap()
            .apply(&v)
            .unwrap();
        let one_shot = compiled.gv(&params, &batch, &v).unwrap();
        assert_maps_close(
            &format!("{backend:?} staged vs one-shot"),
            &staged,
            &one_shot,
        );
        results.push(staged);
    }
    assert_maps_close("JIT vs interpreter", &results[1], &results[0]);
}

#[test]
fn optimization_keeps_every_signature_and_saturates_every_phase() {
    for (name, model) in ir_models() {
        let graphs = model.derive().unwrap().split();
        let (optimized, reports) = optimize_all(&graphs);
        for ((graph, before), (after, (_, report))) in graphs
            .named()
            .iter()
            .zip(optimized.named().iter().zip(&reports))
        {
            let (before, after) = (*before, after.1);
            assert_eq!(before.args(), after.args(), "{name} {graph}: arguments");
            let outputs = |g: &Graph| -> Vec<(String, String)> {
                g.outputs()
                    .iter()
                    .map(|o| (o.name.clone(), g.ty(o.node).to_string()))
                    .collect()
            };
            assert_eq!(outputs(before), outputs(after), "{name} {graph}: outputs");
            let (was, is) = (graph_stats(before, 1000), graph_stats(after, 1000));
            // More nodes only for less work (a mask applied after a pooling's select).
            let less_work = is.elementwise_flops + is.bytes < was.elementwise_flops + was.bytes;
            assert!(
                (is.nodes <= was.nodes || less_work)
                    && is.matmul_flops <= was.matmul_flops
                    && is.elementwise_flops + is.bytes <= was.elementwise_flops + was.bytes,
                "{name} {graph}: {was:?} → {is:?}"
            );
            for phase in &report.phases {
                assert!(
                    phase.stop_reason == "saturated" || phase.stop_reason == "converged",
                    "{name} {graph}: phase {} stopped by {}",
                    phase.name,
                    phase.stop_reason
                );
            }
        }
    }
}

#[test]
fn dense_mlps_meet_the_matmul_flop_bounds() {
    const BATCH: usize = 1000;
    let mut checked = 0;
    for (name, model) in ir_models() {
        // A CNN is not a dense MLP: these bounds do not describe it.
        if has_conv(&model) {
            continue;
        }
        let bounds = MlpBounds::of(&model.derive().unwrap().signature, BATCH)
            .unwrap_or_else(|| panic!("{name} is a dense MLP"));
        let n = &bounds.widths;
        let b = BATCH as u64;
        let layer = |l: usize| n[l - 1] * n[l];
        let hidden: u64 = (2..n.len()).map(layer).sum();
        assert_eq!(bounds.gv_apply, 4 * b * layer(1) + 8 * b * hidden, "{name}");
        assert_eq!(
            bounds.grad,
            4 * b * (layer(1) + hidden) + 2 * b * hidden,
            "{name}"
        );
        let graphs = model.derive().unwrap().split();
        for (graph, bound) in [
            (&graphs.gv_apply, bounds.gv_apply),
            (&graphs.grad, bounds.grad),
        ] {
            let (optimized, _) = optimize(graph, &RewriteOptions::default()).unwrap();
            let flops = graph_stats(&optimized, BATCH).matmul_flops;
            assert!(
                flops <= bound,
                "{name} {}: {flops} matmul FLOPs > bound {bound}",
                graph.name
            );
        }
        checked += 1;
        if name == "mnist_mlp" {
            assert_eq!(bounds.widths, [784, 20, 20, 20, 10]);
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn docs_optimization_table_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = optimization_doc(&root.join("ir"), &RewriteOptions::default()).unwrap();
    let committed = std::fs::read_to_string(root.join("docs/OPTIMIZATION.md")).unwrap();
    assert!(
        generated == committed,
        "docs/OPTIMIZATION.md is stale: regenerate it with \
         `cargo run --release --example optimization_table > docs/OPTIMIZATION.md`"
    );
}
