//! The optimizer's public pieces on hand-built graphs: the cost model's counts, DAG-aware
//! extraction against tree extraction, limits, and the `--stats` text and JSON.

use crate::common;

use common::{RELATIVE_FLOOR, assert_close};
use egg::Runner;
use sgn::ir::interp::run;
use sgn::ir::{ArgRole, BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType};
use sgn::rewrite::extract::extract;
use sgn::rewrite::{
    GraphStats, Loaded, Phase, PhaseLimits, RewriteOptions, graph_stats, optimize,
    optimize_together, stats_json, stats_text,
};
use std::time::Duration;

const F: DType = DType::F64;

fn ty(dims: Vec<Dim>) -> TensorType {
    TensorType::new(F, Shape(dims))
}

fn fixed(d: &[u64]) -> Vec<Dim> {
    d.iter().map(|&n| Dim::fixed(n)).collect()
}

fn count_matmuls(g: &Graph) -> usize {
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::MatMul(_)))
        .count()
}

fn values(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.args()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let shape: Vec<usize> =
                a.ty.shape
                    .dims()
                    .iter()
                    .map(|d| d.as_fixed().unwrap_or(5) as usize)
                    .collect();
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|k| ((k as f64 + 1.0) * 0.37 + (seed + i as u64) as f64).sin())
                .collect();
            Tensor::from_f64(F, &shape, data).unwrap()
        })
        .collect()
}

fn assert_same_values(a: &Graph, b: &Graph) {
    let args = values(a, 3);
    for (x, y) in run(a, &args).unwrap().iter().zip(run(b, &args).unwrap()) {
        assert_close("values", x, &y, RELATIVE_FLOOR, 1e-12);
    }
}

#[test]
fn stats_count_matmul_flops_elementwise_flops_bytes_and_nodes() {
    // y = tanh(x @ w) with x: [B, 3], w: [3, 4]; B bound to 10.
    let mut g = Graph::new("stats");
    let x = g.add_arg("x", ArgRole::Input, ty(vec![Dim::sym("B"), Dim::fixed(3)]));
    let w = g.add_arg("w", ArgRole::Param, ty(fixed(&[3, 4])));
    let xw = g.matmul(x, w).unwrap();
    let y = g.unary(sgn::ir::UnaryOp::Tanh, xw).unwrap();
    let s = g.sum(y, &[0, 1]).unwrap();
    g.add_output("s", s);
    let stats = graph_stats(&g, 10);
    let bytes = 8 * ((30 + 12 + 40) + (40 + 40) + (40 + 1));
    assert_eq!(
        stats,
        GraphStats {
            nodes: 5,
            matmul_flops: 2 * 10 * 3 * 4,
            elementwise_flops: 40 + 40,
            bytes,
        }
    );
    // Transposed operands count by the product's shape.
    let mut g = Graph::new("transposed");
    let a = g.add_arg("a", ArgRole::Input, ty(fixed(&[7, 2])));
    let b = g.add_arg("b", ArgRole::Input, ty(fixed(&[7, 5])));
    let ab = g.apply(Op::matmul(true, false), &[a, b]).unwrap();
    g.add_output("ab", ab);
    assert_eq!(graph_stats(&g, 1).matmul_flops, 2 * 2 * 7 * 5);
}

/// Outputs x@A + x@B, after x@A and x@B when `all` (then the sum should reuse both products).
fn shared_products(all: bool) -> Graph {
    let mut g = Graph::new("shared");
    let x = g.add_arg("x", ArgRole::Input, ty(fixed(&[64, 32])));
    let a = g.add_arg("a", ArgRole::Param, ty(fixed(&[32, 16])));
    let b = g.add_arg("b", ArgRole::Param, ty(fixed(&[32, 16])));
    let xa = g.matmul(x, a).unwrap();
    let xb = g.matmul(x, b).unwrap();
    let sum = g.binary(BinaryOp::Add, xa, xb).unwrap();
    if all {
        g.add_output("xa", xa);
        g.add_output("xb", xb);
    }
    g.add_output("sum", sum);
    g
}

#[test]
fn a_chain_whose_tree_cost_passes_f64s_range_is_extracted() {
    // h ← h·sigmoid(h), 1100 times: each level uses h twice, so its tree cost doubles a level
    // and passes f64's range near 1024 levels (this was a panic: "every root is extractable").
    let mut g = Graph::new("doubling");
    let mut h = g.add_arg("x", ArgRole::Input, ty(fixed(&[3, 2])));
    for _ in 0..1100 {
        let gate = g.unary(sgn::ir::UnaryOp::Sigmoid, h).unwrap();
        h = g.binary(BinaryOp::Mul, h, gate).unwrap();
    }
    g.add_output("h", h);
    let (optimized, _) = optimize(&g, &RewriteOptions::default()).unwrap();
    assert_same_values(&g, &optimized);
}

#[test]
fn a_doubling_chain_rewrites_within_bounded_matches() {
    // h ← h + h, 130 times: every class holds ever more equal forms (x·2^k, (x·2^a)·2^b, …) and
    // associativity's matches grow by the cube of the depth; unbounded, the search of one
    // iteration took 8 GB and the process aborted.
    let mut g = Graph::new("doubling sums");
    let mut h = g.add_arg("x", ArgRole::Input, ty(fixed(&[3, 2])));
    for _ in 0..130 {
        h = g.binary(BinaryOp::Add, h, h).unwrap();
    }
    g.add_output("h", h);
    let (optimized, report) = optimize(&g, &RewriteOptions::default()).unwrap();
    assert!(optimized.nodes().len() < g.nodes().len(), "{report:?}");
    // Cut matches never count as saturation.
    assert!(
        report.phases.iter().all(|p| p.stop_reason != "saturated"),
        "{report:?}"
    );
    assert_same_values(&g, &optimized);
}

#[test]
fn dag_aware_extraction_counts_shared_products_once() {
    let g = shared_products(true);
    // Factoring gives x@(A+B), which tree extraction prefers for `sum` in isolation…
    let mut loaded = Loaded::new(&g, 1);
    let runner = Runner::default()
        .with_egraph(std::mem::take(&mut loaded.egraph))
        .run(Phase::Factor.rules());
    loaded.egraph = runner.egraph;
    let roots = loaded.canonical_roots();
    let tree = extract(&loaded.egraph, &roots, 1, Duration::ZERO);
    let dag = extract(&loaded.egraph, &roots, 1, Duration::from_secs(1));
    assert_eq!(
        count_matmuls(&loaded.to_graph(0, &g, |c| &tree.choice[&c])),
        3,
        "the tree seed recomputes a product for the factored sum"
    );
    // …but both products are computed anyway, so the DAG cost says: add them.
    let extracted = loaded.to_graph(0, &g, |c| &dag.choice[&c]);
    assert_eq!(count_matmuls(&extracted), 2);
    assert!(
        dag.cost < tree.seed_cost,
        "{} vs {}",
        dag.cost,
        tree.seed_cost
    );
    assert!(dag.converged);
    assert_same_values(&g, &extracted);

    let (optimized, _) = optimize(&g, &RewriteOptions::default()).unwrap();
    assert_eq!(count_matmuls(&optimized), 2);
}

#[test]
fn factoring_applies_when_nothing_else_needs_the_products() {
    let g = shared_products(false);
    let (optimized, _) = optimize(&g, &RewriteOptions::default()).unwrap();
    assert_eq!(count_matmuls(&optimized), 1, "x@A + x@B becomes x@(A+B)");
    assert_same_values(&g, &optimized);
}

#[test]
fn tight_limits_stop_phases_early_and_still_give_an_equal_graph() {
    let g = shared_products(true);
    let options = RewriteOptions {
        limits: PhaseLimits {
            iterations: 1,
            nodes: 1_000,
            time: Duration::from_secs(1),
        },
        extraction_time: Duration::ZERO,
        batch: 1000,
    };
    let (optimized, report) = optimize(&g, &options).unwrap();
    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "canonicalize",
            "stabilize",
            "simplify-derivatives",
            "factor",
            "extract"
        ]
    );
    assert!(
        report
            .phases
            .iter()
            .any(|p| p.stop_reason == "iteration limit"),
        "{report:?}"
    );
    assert_same_values(&g, &optimized);
}

#[test]
fn stats_text_and_json_report_before_after_and_phases() {
    let g = shared_products(true);
    let (optimized, report) = optimize(&g, &RewriteOptions::default()).unwrap();
    let (before, after) = (graph_stats(&g, 1000), graph_stats(&optimized, 1000));

    let text = stats_text("shared", 1000, &before, &after, &report);
    assert!(
        text.starts_with("graph shared (symbolic dimensions = 1000)\n"),
        "{text}"
    );
    for row in ["nodes", "matmul FLOPs", "elementwise FLOPs", "bytes"] {
        assert!(text.lines().any(|l| l.starts_with(row)), "{row} in\n{text}");
    }
    for phase in &report.phases {
        assert!(text.lines().any(|l| l.starts_with(&phase.name)), "{text}");
    }
    // A batch so large that the counts saturate: shown as a bound, with no change claimed.
    let src = "model t\ninput x: f32[B, 3]\ntarget y: f32[B, 4]\nparam w: f32[3, 4]\n\
               output z = x @ w\nloss mse(z, y)\n";
    let forward = &sgn::Model::parse(src).unwrap().derive().unwrap().forward;
    let huge = usize::MAX;
    let (saturated, small) = (graph_stats(forward, huge), graph_stats(forward, 1));
    let text = stats_text("forward", huge, &saturated, &small, &report);
    let flops = text
        .lines()
        .find(|l| l.starts_with("matmul FLOPs"))
        .unwrap();
    let cells: Vec<&str> = flops.split_whitespace().skip(2).collect();
    assert_eq!(
        cells,
        [">=2^64", &small.matmul_flops.to_string(), "?"],
        "{text}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&stats_json("shared", &before, &after, &report)).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["after", "before", "graph", "phases"]);
    assert_eq!(json["graph"], "shared");
    for side in ["before", "after"] {
        assert_eq!(
            keys(&json[side]),
            ["bytes", "elementwise_flops", "matmul_flops", "nodes"]
        );
    }
    assert_eq!(json["before"]["matmul_flops"], before.matmul_flops);
    assert_eq!(json["after"]["nodes"], after.nodes);
    let phases = json["phases"].as_array().unwrap();
    assert_eq!(phases.len(), report.phases.len());
    for (p, stats) in phases.iter().zip(&report.phases) {
        assert_eq!(
            keys(p),
            ["egraph_nodes", "iterations", "ms", "name", "stop_reason"]
        );
        assert_eq!(p["name"], stats.name.as_str());
        assert_eq!(p["stop_reason"], stats.stop_reason.as_str());
    }
}

#[test]
fn log_of_softmax_becomes_log_softmax_and_stays_finite() {
    let src = "model t\ninput x: f64[B, 3]\ntarget y: f64[B, 4]\n\
               param w: f64[3, 4] = glorot_uniform\noutput z = x @ w\n\
               loss -mean(sum(y * log(softmax(z)), axis=1))\n";
    let model = sgn::Model::parse(src).unwrap();
    let forward = &model.derive().unwrap().forward;
    let (optimized, _) = optimize(forward, &RewriteOptions::default()).unwrap();
    assert!(
        !optimized
            .nodes()
            .iter()
            .any(|n| n.op == Op::binary(BinaryOp::Div) && n.ty.shape.rank() > 0),
        "no probabilities e / Σe are formed (only the mean's scalar division is left):\n{}",
        sgn::ir::text::print_graph(&optimized)
    );
    // Logits far apart: exp(z − max z) underflows to 0 for the small ones, so log(softmax)
    // is −inf there and the loss NaN; log-softmax stays finite.
    let x = Tensor::from_f64(F, &[2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
    let y = Tensor::from_f64(F, &[2, 4], vec![0.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0]).unwrap();
    let w = Tensor::from_f64(
        F,
        &[3, 4],
        vec![
            900.0, 0.0, 0.0, -900.0, 0.0, 800.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0,
        ],
    )
    .unwrap();
    let args = [x, y, w];
    let loss = |g: &Graph| run(g, &args).unwrap()[1].scalar_value().unwrap();
    assert!(loss(forward).is_nan(), "the unstable form overflows");
    // Row 1: −log p₃ = 1800; row 2: −(log p₀ + log p₁)/2 = (800 + 0)/2 = 400; mean 1100.
    let stable = loss(&optimized);
    assert!((stable - 1100.0).abs() <= 1e-9, "loss {stable}");
}

/// The equivalences an e-graph holds between the classes of its first `n` ids (the loaded
/// graph's nodes), as each id's smallest equal id.
fn partition(egraph: &sgn::rewrite::analysis::EGraph, n: usize) -> Vec<usize> {
    let mut first_of_class = std::collections::HashMap::new();
    (0..n)
        .map(|i| {
            *first_of_class
                .entry(egraph.find(egg::Id::from(i)))
                .or_insert(i)
        })
        .collect()
}

#[test]
fn incremental_saturation_reaches_the_fixpoint_of_a_full_search_every_iteration() {
    let mut models: Vec<(String, sgn::Model)> = common::ir_models();
    for (act, loss) in [
        ("sigmoid", "sigmoid_cross_entropy"),
        ("softplus", "mse"),
        ("tanh", "mse"),
    ] {
        models.push((format!("{act}/{loss}"), common::small_net(act, loss, 1)));
    }
    let limits = sgn::rewrite::saturate::Limits {
        iterations: 100,
        nodes: 1_000_000,
        time: Duration::from_secs(60),
    };
    for (name, model) in models {
        for (graph_name, graph) in model.derive().unwrap().named() {
            for phase in Phase::ALL {
                let rules = [phase.rules(), Phase::Canonicalize.rules()].concat();
                let mut full = Loaded::new(graph, 1000);
                let loaded_ids = full.egraph.number_of_classes();
                let mut incremental = Loaded::new(graph, 1000);
                let runner = Runner::default()
                    .with_scheduler(egg::SimpleScheduler)
                    .with_iter_limit(limits.iterations)
                    .with_node_limit(limits.nodes)
                    .with_egraph(std::mem::take(&mut full.egraph))
                    .run(&rules);
                let outcome = sgn::rewrite::saturate::saturate(
                    &mut incremental.egraph,
                    sgn::rewrite::saturate::RuleSet {
                        saturated: &[],
                        fresh: &rules,
                    },
                    limits,
                );
                let what = format!("{name} {graph_name} {}", phase.name());
                assert!(
                    matches!(runner.stop_reason, Some(egg::StopReason::Saturated)),
                    "{what}: {:?}",
                    runner.stop_reason
                );
                assert!(
                    matches!(outcome.stop_reason, egg::StopReason::Saturated),
                    "{what}: {:?}",
                    outcome.stop_reason
                );
                assert_eq!(outcome.iterations, runner.iterations.len(), "{what}");
                let (a, b) = (&runner.egraph, &incremental.egraph);
                assert_eq!(a.number_of_classes(), b.number_of_classes(), "{what}");
                assert_eq!(
                    a.total_number_of_nodes(),
                    b.total_number_of_nodes(),
                    "{what}"
                );
                assert_eq!(partition(a, loaded_ids), partition(b, loaded_ids), "{what}");
            }
        }
    }
}

/// Graphs optimized together share one e-graph, where rewriting one can merge its classes with
/// the other's: here `b`'s output `(z − z) + tanh(x @ w)` becomes `tanh(x @ w)`, the class of
/// `a`'s output, which then also holds an e-node reading `z`, an argument `a` does not have.
/// Each graph must come back with its own signature, reading only its own arguments, with the
/// values it had, and the shared value computed once in each.
#[test]
fn graphs_optimized_together_keep_their_own_arguments_and_values() {
    let mut a = Graph::new("a");
    let x = a.add_arg("x", ArgRole::Input, ty(fixed(&[3, 4])));
    let w = a.add_arg("w", ArgRole::Param, ty(fixed(&[4, 2])));
    let h = a.matmul(x, w).unwrap();
    let t = a.unary(sgn::ir::UnaryOp::Tanh, h).unwrap();
    a.add_output("t", t);
    let mut b = Graph::new("b");
    let z = b.add_arg("z", ArgRole::Input, ty(fixed(&[3, 2])));
    let w = b.add_arg("w", ArgRole::Param, ty(fixed(&[4, 2])));
    let x = b.add_arg("x", ArgRole::Input, ty(fixed(&[3, 4])));
    let h = b.matmul(x, w).unwrap();
    let t = b.unary(sgn::ir::UnaryOp::Tanh, h).unwrap();
    let zero = b.binary(BinaryOp::Sub, z, z).unwrap();
    let out = b.binary(BinaryOp::Add, zero, t).unwrap();
    let doubled = b.binary(BinaryOp::Add, out, t).unwrap();
    b.add_output("out", out);
    b.add_output("doubled", doubled);
    let (optimized, reports) = optimize_together(&[&a, &b], &RewriteOptions::default()).unwrap();
    assert_eq!(reports.len(), 2);
    for (before, after) in [&a, &b].into_iter().zip(&optimized) {
        assert_eq!(
            before.args(),
            after.args(),
            "{}: the arguments",
            before.name
        );
        let names = |g: &Graph| {
            g.outputs()
                .iter()
                .map(|o| o.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(before), names(after), "{}: the outputs", before.name);
        assert_same_values(before, after);
        assert_eq!(count_matmuls(after), 1, "{}: one product", before.name);
    }
    let reads_z = optimized[1]
        .nodes()
        .iter()
        .any(|n| n.inputs.contains(&optimized[1].args()[0].node));
    assert!(!reads_z, "z − z folded away: {}", optimized[1]);
    // Alone, each graph optimizes to the same size.
    for (graph, together) in [&a, &b].into_iter().zip(&optimized) {
        let (alone, _) = optimize(graph, &RewriteOptions::default()).unwrap();
        assert_eq!(
            alone.nodes().len(),
            together.nodes().len(),
            "{}",
            graph.name
        );
    }
}

/// Two arguments of one graph with the same name and type are still two arguments: loading must
/// not merge them (a hand-built graph can have them; `x − x'` is not zero).
#[test]
fn arguments_of_one_graph_are_never_merged() {
    let mut g = Graph::new("twins");
    let a = g.add_arg("x", ArgRole::Input, ty(fixed(&[3])));
    let b = g.add_arg("x", ArgRole::Input, ty(fixed(&[3])));
    let d = g.binary(BinaryOp::Sub, a, b).unwrap();
    g.add_output("d", d);
    let (optimized, _) = optimize(&g, &RewriteOptions::default()).unwrap();
    assert_eq!(optimized.args(), g.args());
    assert_same_values(&g, &optimized);
    let (together, _) = optimize_together(&[&g, &g], &RewriteOptions::default()).unwrap();
    for graph in &together {
        assert_same_values(&g, graph);
    }
}
