//! The optimizer on whole models: every derived graph of every `ir/` model evaluates as before
//! (f64), the optimized prepare + apply stages still give the one-shot G v and the explicit
//! Jᵀ H J v, signatures are unchanged, the dense MLPs meet their FLOP bounds, every phase
//! saturates, and `docs/OPTIMIZATION.md` is what the generator prints.

mod common;

use common::{
    assert_close_to_explicit, axpy, batch_for, direction_like, explicit_gv, flatten, ir_models,
    small_net, wavy,
};
use sgn::autodiff::DerivedGraphs;
use sgn::compile::optimization_doc;
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::{DType, Graph, Tensor};
use sgn::rewrite::{MlpBounds, RewriteOptions, RewriteReport, graph_stats, optimize};
use sgn::{CompileOptions, CompiledModel, Model};
use std::path::Path;

const F: DType = DType::F64;

/// The model with every tensor in f64, as `CompileOptions::dtype` makes it.
fn in_f64(model: &Model) -> Model {
    let mut m = model.clone();
    m.graph = m.graph.with_dtype(F);
    for p in &mut m.params {
        p.ty.dtype = F;
    }
    m
}

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
    };
    (optimized, reports)
}

/// Two f64 compiled models: one running the graphs exactly as differentiated, one running
/// their optimized versions (whatever `compile` itself does).
fn reference_and_optimized(model: &Model) -> (CompiledModel, CompiledModel) {
    // Only the dtype is fixed here, whatever other switches `CompileOptions` grows.
    #[allow(clippy::needless_update)]
    let options = CompileOptions {
        dtype: Some(F),
        ..CompileOptions::default()
    };
    let derived = in_f64(model)
        .derive()
        .expect("the model differentiates")
        .split();
    let mut reference = model.compile(&options).unwrap();
    let mut optimized = model.compile(&options).unwrap();
    optimized.graphs = optimize_all(&derived).0;
    reference.graphs = derived;
    (reference, optimized)
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

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let diff = got.max_rel_diff(want);
    assert!(diff <= 1e-10, "{what}: optimized differs by {diff:e}");
}

fn assert_maps_close(what: &str, got: &TensorMap, want: &TensorMap) {
    assert_eq!(got.len(), want.len(), "{what}: entries");
    for (name, w) in want.iter() {
        assert_close(&format!("{what} {name}"), got.get(name).unwrap(), w);
    }
}

#[test]
fn optimized_graphs_evaluate_like_the_originals_on_every_model() {
    for (name, model) in ir_models() {
        let (reference, optimized) = reference_and_optimized(&model);
        let params = params_for(&model, 5);
        let batch = batch_for(&model, F, 6, 5);
        let v = direction_like(&params, 6);

        let (z, loss) = reference.forward(&params, &batch).unwrap();
        let (oz, oloss) = optimized.forward(&params, &batch).unwrap();
        assert_close(&format!("{name} forward z"), &oz, &z);
        assert_close(
            &format!("{name} forward loss"),
            &Tensor::scalar(F, oloss),
            &Tensor::scalar(F, loss),
        );

        let (loss, grad) = reference.loss_and_grad(&params, &batch).unwrap();
        let (oloss, ograd) = optimized.loss_and_grad(&params, &batch).unwrap();
        assert_close(
            &format!("{name} grad loss"),
            &Tensor::scalar(F, oloss),
            &Tensor::scalar(F, loss),
        );
        assert_maps_close(&format!("{name} grad"), &ograd, &grad);

        let (_, jv) = reference.jvp(&params, &batch, &v).unwrap();
        let (_, ojv) = optimized.jvp(&params, &batch, &v).unwrap();
        assert_close(&format!("{name} jvp"), &ojv, &jv);

        let w = wavy(F, z.shape(), 9, 1.0);
        let vjp = reference.vjp(&params, &batch, &w).unwrap();
        let ovjp = optimized.vjp(&params, &batch, &w).unwrap();
        assert_maps_close(&format!("{name} vjp"), &ovjp, &vjp);

        // The optimized one-shot product, and the optimized prepare + apply stages, against the
        // one-shot product as differentiated.
        let gv = reference.gv(&params, &batch, &v).unwrap();
        let ogv = optimized.gv(&params, &batch, &v).unwrap();
        assert_maps_close(&format!("{name} gv"), &ogv, &gv);
        let staged = optimized
            .gv_operator(&params, &batch)
            .unwrap()
            .apply(&v)
            .unwrap();
        assert_maps_close(&format!("{name} gv-prepare + gv-apply"), &staged, &gv);
    }
}

#[test]
fn optimized_prepare_and_apply_equal_the_explicit_jt_h_j_product() {
    for (loss, act) in [("softmax_cross_entropy", "tanh"), ("mse", "relu")] {
        let model = small_net(act, loss, 3);
        let (_, optimized) = reference_and_optimized(&model);
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
            assert!(
                is.nodes <= was.nodes
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
