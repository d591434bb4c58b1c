//! The optimizer on whole models: every derived graph of every `ir/` model evaluates as before
//! (f64), the optimized prepare + apply stages still give the one-shot G v and the explicit
//! Jᵀ H J v, signatures are unchanged, the dense MLPs meet their FLOP bounds, every phase
//! saturates, and `docs/OPTIMIZATION.md` is what the generator prints.

mod common;

use common::{axpy, batch_for, direction_like, ir_models, wavy};
use sgn::autodiff::{DerivedGraphs, derive};
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::{DType, Graph, Tensor};
use sgn::rewrite::{
    MlpBounds, RewriteOptions, RewriteReport, graph_stats, optimization_table, optimize,
};
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
    let derived = derive(&in_f64(model)).expect("the model differentiates");
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

/// `(diag(p) − p pᵀ) / rows` per row of softmax probabilities `p` of `z`, applied to `u`.
fn softmax_ce_hessian_times(z: &Tensor, u: &[f64]) -> Vec<f64> {
    let (rows, cols) = (z.shape()[0], z.shape()[1]);
    let zv = z.to_f64_vec();
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        let row = &zv[r * cols..(r + 1) * cols];
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|x| x / s).collect();
        let pu: f64 = (0..cols).map(|j| p[j] * u[r * cols + j]).sum();
        for i in 0..cols {
            out[r * cols + i] = p[i] * (u[r * cols + i] - pu) / rows as f64;
        }
    }
    out
}

#[test]
fn optimized_prepare_and_apply_equal_the_explicit_jt_h_j_product() {
    for (loss, act) in [("softmax_cross_entropy", "tanh"), ("mse", "relu")] {
        let src = format!(
            "model small\ninput x: f64[B, 3]\ntarget y: f64[B, 3]\n\
             param w1: f64[3, 4] = glorot_uniform\nparam b1: f64[4] = normal(0.5)\n\
             param w2: f64[4, 3] = glorot_uniform\nparam b2: f64[3] = normal(0.5)\n\
             h = {act}(x @ w1 + b1)\noutput z = h @ w2 + b2\nloss {loss}(z, y)\n"
        );
        let model = Model::parse(&src).unwrap();
        let (_, optimized) = reference_and_optimized(&model);
        let params = params_for(&model, 4);
        let batch = batch_for(&model, F, 4, 2);
        let names: Vec<String> = params.names().map(str::to_string).collect();
        let sizes: Vec<usize> = params.iter().map(|(_, t)| t.len()).collect();
        let n: usize = sizes.iter().sum();
        let unit = |k: usize| -> TensorMap {
            let mut offset = 0;
            names
                .iter()
                .zip(&sizes)
                .map(|(name, &len)| {
                    let mut values = vec![0.0; len];
                    if (offset..offset + len).contains(&k) {
                        values[k - offset] = 1.0;
                    }
                    offset += len;
                    let shape = params.get(name).unwrap().shape().to_vec();
                    (name.clone(), Tensor::from_f64(F, &shape, values).unwrap())
                })
                .collect()
        };
        // J column by column, from the optimized jvp graph.
        let columns: Vec<Vec<f64>> = (0..n)
            .map(|k| {
                let (_, jv) = optimized.jvp(&params, &batch, &unit(k)).unwrap();
                jv.to_f64_vec()
            })
            .collect();
        let (z, _) = optimized.forward(&params, &batch).unwrap();
        let v = direction_like(&params, 8);
        let vf: Vec<f64> = v.iter().flat_map(|(_, t)| t.to_f64_vec()).collect();
        let m = z.len();
        let jv: Vec<f64> = (0..m)
            .map(|i| (0..n).map(|k| columns[k][i] * vf[k]).sum())
            .collect();
        let hjv = match loss {
            "mse" => jv.iter().map(|x| 2.0 * x / m as f64).collect(),
            _ => softmax_ce_hessian_times(&z, &jv),
        };
        let expected: Vec<f64> = (0..n)
            .map(|k| (0..m).map(|i| columns[k][i] * hjv[i]).sum())
            .collect();
        let staged = optimized
            .gv_operator(&params, &batch)
            .unwrap()
            .apply(&v)
            .unwrap();
        let got: Vec<f64> = staged.iter().flat_map(|(_, t)| t.to_f64_vec()).collect();
        let scale = expected.iter().fold(0.0f64, |a, x| a.max(x.abs()));
        for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-9 * scale,
                "{loss}/{act}: optimized Gv[{k}] = {g} but JᵀHJv = {e}"
            );
        }
    }
}

#[test]
fn optimization_keeps_every_signature_and_saturates_every_phase() {
    for (name, model) in ir_models() {
        let graphs = derive(&model).unwrap();
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
        let bounds =
            MlpBounds::of(&model, BATCH).unwrap_or_else(|| panic!("{name} is a dense MLP"));
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
        let graphs = derive(&model).unwrap();
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
    assert_eq!(checked, 5);
}

#[test]
fn docs_optimization_table_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = optimization_table(&root.join("ir"), &RewriteOptions::default()).unwrap();
    let committed = std::fs::read_to_string(root.join("docs/OPTIMIZATION.md")).unwrap();
    assert!(
        generated == committed,
        "docs/OPTIMIZATION.md is stale: regenerate it with \
         `cargo run --release --example optimization_table > docs/OPTIMIZATION.md`"
    );
}
