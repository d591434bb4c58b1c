//! E-graph optimization of IR graphs with `egg`: phased equality saturation, then extraction of
//! the cheapest equivalent graph under a shape-aware cost model.
//!
//! A graph is loaded into an e-graph ([`lang`]: one e-node per IR primitive, op parameters as
//! leaf children; [`analysis`]: type, constant value and sign of every class, constants folded
//! as they appear), rewritten in named phases — each run to saturation or to its iteration, node
//! and time limits by [`saturate`], which after a first full search looks for matches only
//! around what the last iteration changed — and extracted back into a graph with the same arguments
//! and outputs ([`extract`]: FLOPs plus bytes moved, each shared node counted once).
//!
//! Phases, in order (rules in [`rules`]):
//! 1. `canonicalize`: identities (x+0, x·1, x·0, −(−x)), structural folds (transpose∘transpose,
//!    reshape∘reshape, broadcast∘broadcast, sum∘broadcast → scale), elementwise ops moved inside
//!    broadcasts, transposes folded into matmul flags;
//! 2. `stabilize`: log∘exp, log∘softmax → log-softmax, log(1+exp x) → softplus, …;
//! 3. `simplify-derivatives`: derivative factors from values the forward pass computed;
//! 4. `factor`: a·b + a·c → a·(b+c) (one multiply fewer, always), and x@A + x@B → x@(A+B),
//!    matmul chains reassociated, scalar factors moved onto the smaller operand, each only where
//!    the cost model says it is cheaper.
//!
//! Every phase after the first also runs the canonicalizing rules, so that what it creates is
//! simplified too. Common subexpressions and dead code need no rules: the e-graph is hash-consed,
//! and extraction keeps only what the outputs need.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod report;
pub mod rules;
pub mod saturate;
pub mod table;

pub use cost::{GraphStats, graph_stats};
pub use report::{PhaseStats, RewriteReport, stats_json, stats_text};
pub use table::{MlpBounds, TableModel, optimization_table};

use crate::autodiff::Derivatives;
use crate::ir::Graph;
use crate::ir::error::{Error, Result};
pub use convert::Loaded;
use egg::StopReason;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Limits for one rewriting phase: it stops at whichever is reached first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseLimits {
    /// Rewriting iterations (search all rules, apply, rebuild).
    pub iterations: usize,
    /// E-graph size, in e-nodes; a graph that loads into more than a [`NODE_GROWTH`]th of this
    /// may grow to [`NODE_GROWTH`] times its loaded size instead.
    pub nodes: usize,
    /// Wall-clock time.
    pub time: Duration,
}

/// How many times its loaded size an e-graph may grow to in each phase, whatever
/// [`PhaseLimits::nodes`] says: so that a deep model gets as much room to rewrite, per node, as a
/// small one.
pub const NODE_GROWTH: usize = 4;

/// Options for [`optimize`].
///
/// The defaults let every phase saturate on the models in `ir/`; a smaller budget stops the
/// phases early, and the report says which limit stopped each:
///
/// ```
/// use sgn::ir::{ArgRole, DType, Graph, Shape, TensorType, UnaryOp};
/// use sgn::rewrite::{PhaseLimits, RewriteOptions, optimize};
///
/// // neg(neg(neg(neg(x)))) → x
/// let mut g = Graph::new("demo");
/// let x = g.add_arg("x", ArgRole::Input, TensorType::new(DType::F64, Shape::fixed(&[3])));
/// let mut y = x;
/// for _ in 0..4 {
///     y = g.unary(UnaryOp::Neg, y)?;
/// }
/// g.add_output("y", y);
///
/// let (optimized, report) = optimize(&g, &RewriteOptions::default())?;
/// assert_eq!(optimized.output("y"), Some(x));
/// let stops: Vec<&str> = report.phases.iter().map(|p| p.stop_reason.as_str()).collect();
/// assert_eq!(stops, ["saturated", "saturated", "saturated", "saturated", "converged"]);
///
/// let tight = RewriteOptions {
///     limits: PhaseLimits { iterations: 1, ..RewriteOptions::default().limits },
///     ..RewriteOptions::default()
/// };
/// let (_, report) = optimize(&g, &tight)?;
/// let stops: Vec<&str> = report.phases.iter().map(|p| p.stop_reason.as_str()).collect();
/// assert_eq!(stops, ["iteration limit", "saturated", "saturated", "saturated", "converged"]);
/// assert_eq!((report.phases[0].name.as_str(), report.phases[0].iterations), ("canonicalize", 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Limits applied to each phase.
    pub limits: PhaseLimits,
    /// Time budget of the DAG-aware improvement of the extracted graph.
    pub extraction_time: Duration,
    /// The size symbolic dimensions (the batch) stand for in the cost model.
    pub batch: usize,
}

impl Default for RewriteOptions {
    /// Every phase of every model in `ir/` saturates within these iteration and node limits
    /// (optimizing all of a model's graphs takes ~10 ms in a release build, see
    /// `benches/rewrite.rs`). The time limits are only a safety net, generous on purpose: a
    /// result that depended on the machine's load would make runs irreproducible.
    fn default() -> RewriteOptions {
        RewriteOptions {
            limits: PhaseLimits {
                iterations: 12,
                nodes: 40_000,
                time: Duration::from_secs(2),
            },
            extraction_time: Duration::from_secs(1),
            batch: 1000,
        }
    }
}

/// The rewriting phases, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Canonicalize,
    Stabilize,
    SimplifyDerivatives,
    Factor,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Canonicalize,
        Phase::Stabilize,
        Phase::SimplifyDerivatives,
        Phase::Factor,
    ];

    /// The name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Canonicalize => "canonicalize",
            Phase::Stabilize => "stabilize",
            Phase::SimplifyDerivatives => "simplify-derivatives",
            Phase::Factor => "factor",
        }
    }

    /// The phase's own rules (without the canonicalizing ones that later phases also run).
    pub fn rules(self) -> &'static [rules::Rewrite] {
        static CANONICALIZE: LazyLock<Vec<rules::Rewrite>> = LazyLock::new(rules::canonicalize);
        static STABILIZE: LazyLock<Vec<rules::Rewrite>> = LazyLock::new(rules::stabilize);
        static DERIVATIVES: LazyLock<Vec<rules::Rewrite>> = LazyLock::new(rules::derivatives);
        static FACTOR: LazyLock<Vec<rules::Rewrite>> = LazyLock::new(rules::factor);
        match self {
            Phase::Canonicalize => &CANONICALIZE,
            Phase::Stabilize => &STABILIZE,
            Phase::SimplifyDerivatives => &DERIVATIVES,
            Phase::Factor => &FACTOR,
        }
    }
}

/// Optimizes every graph differentiation gave, together ([`optimize_together`]). Split the
/// result afterwards ([`Derivatives::split`]): `gv-prepare` and `gv-apply` are then cut from the
/// optimized one-shot `gv`, so that the two stages stay exactly the one-shot product split at
/// its residuals. Returns the graphs and each graph's report.
pub fn optimize_derived(
    graphs: &Derivatives,
    options: &RewriteOptions,
) -> Result<(Derivatives, Vec<(&'static str, RewriteReport)>)> {
    let named = graphs.named();
    let (optimized, reports) = optimize_together(&named.map(|(_, graph)| graph), options)?;
    let [forward, grad, jvp, vjp, gv]: [Graph; 5] = optimized
        .try_into()
        .expect("one optimized graph per source");
    let optimized = Derivatives {
        signature: graphs.signature.clone(),
        forward,
        grad,
        jvp,
        vjp,
        gv,
    };
    Ok((
        optimized,
        named
            .map(|(name, _)| name)
            .into_iter()
            .zip(reports)
            .collect(),
    ))
}

/// Optimizes `graph`: the result computes the same outputs from the same arguments (names,
/// order and types unchanged), with fewer or cheaper nodes.
///
/// ```
/// use sgn::ir::{ArgRole, BinaryOp, DType, Graph, Shape, TensorType, UnaryOp};
/// use sgn::rewrite::{optimize, RewriteOptions};
///
/// // neg(neg(x)) · 1  →  x
/// let mut g = Graph::new("demo");
/// let x = g.add_arg("x", ArgRole::Input, TensorType::new(DType::F64, Shape::fixed(&[3])));
/// let nn = g.unary(UnaryOp::Neg, x)?;
/// let nn = g.unary(UnaryOp::Neg, nn)?;
/// let one = g.full(1.0, &TensorType::new(DType::F64, Shape::fixed(&[3])))?;
/// let y = g.binary(BinaryOp::Mul, nn, one)?;
/// g.add_output("y", y);
/// let (optimized, report) = optimize(&g, &RewriteOptions::default())?;
/// assert_eq!(optimized.output("y"), Some(x));
/// assert_eq!(optimized.nodes().len(), 1);
/// assert_eq!(report.phases.len(), 5); // four rewriting phases and extraction
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Eval`] if the optimized graph's outputs do not have the types of the original
/// ones, which would be a bug in a rule: the caller can keep the unoptimized graph.
pub fn optimize(graph: &Graph, options: &RewriteOptions) -> Result<(Graph, RewriteReport)> {
    let (mut graphs, mut reports) = optimize_together(&[graph], options)?;
    match (graphs.pop(), reports.pop()) {
        (Some(graph), Some(report)) => Ok((graph, report)),
        _ => unreachable!("one optimized graph per source"),
    }
}

/// Optimizes several graphs in one e-graph: the nodes they share (every derivative graph
/// repeats the forward pass) are loaded and rewritten once, then each graph is extracted from
/// its own outputs, reading only its own arguments. Rewriting one graph may prove equalities
/// another can use, so a graph can come out differently (usually smaller) than [`optimize`]
/// makes it alone.
/// Each report holds the shared rewriting phases (their e-graph holds all the graphs) and the
/// graph's own extraction.
///
/// # Errors
/// As [`optimize`].
pub fn optimize_together(
    graphs: &[&Graph],
    options: &RewriteOptions,
) -> Result<(Vec<Graph>, Vec<RewriteReport>)> {
    let batch = options.batch as u64;
    let mut loaded = Loaded::together(graphs, batch);
    let loaded_nodes = loaded.egraph.total_number_of_nodes();
    let node_limit = options.limits.nodes.max(NODE_GROWTH * loaded_nodes);
    let limits = saturate::Limits {
        iterations: options.limits.iterations,
        nodes: node_limit,
        time: options.limits.time,
    };
    let mut phases = Vec::with_capacity(Phase::ALL.len());
    // Whether the last run of the canonicalizing rules saturated: later phases then search them
    // only where their own rules change the e-graph.
    let mut canonical_saturated = false;
    for phase in Phase::ALL {
        let canonical = match phase {
            Phase::Canonicalize => &[][..],
            _ => Phase::Canonicalize.rules(),
        };
        let (saturated, fresh) = match canonical_saturated {
            true => (canonical, &[][..]),
            false => (&[][..], canonical),
        };
        let start = Instant::now();
        let outcome = saturate::saturate(
            &mut loaded.egraph,
            saturate::RuleSet {
                saturated,
                fresh: &[phase.rules(), fresh].concat(),
            },
            limits,
        );
        canonical_saturated = matches!(outcome.stop_reason, StopReason::Saturated);
        phases.push(PhaseStats {
            name: phase.name().to_string(),
            iterations: outcome.iterations,
            egraph_nodes: loaded.egraph.total_number_of_nodes(),
            stop_reason: stop_reason(Some(&outcome.stop_reason)),
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    let extractor = extract::Extractor::new(&loaded.egraph, batch);
    let which: Vec<usize> = (0..graphs.len()).collect();
    // Each graph is extracted and rebuilt on its own: several at once on a multi-core machine.
    let results = crate::ir::parallel::map(
        &which,
        |&k| graphs[k].nodes().len(),
        |&k| -> Result<(Graph, RewriteReport)> {
            let graph = graphs[k];
            let start = Instant::now();
            let extraction = extractor.extract(
                &loaded.graph_roots(k),
                &loaded.args_of(k),
                options.extraction_time,
            );
            let result = loaded.to_graph(k, graph, |class| &extraction.choice[&class]);
            let mut report = RewriteReport {
                phases: phases.clone(),
            };
            report.phases.push(PhaseStats {
                name: "extract".to_string(),
                iterations: extraction.passes,
                egraph_nodes: loaded.egraph.total_number_of_nodes(),
                stop_reason: if extraction.converged {
                    "converged".to_string()
                } else {
                    "time limit".to_string()
                },
                ms: start.elapsed().as_secs_f64() * 1e3,
            });
            for (before, after) in graph.outputs().iter().zip(result.outputs()) {
                let (was, is) = (graph.ty(before.node), result.ty(after.node));
                if was != is {
                    return Err(Error::Eval(format!(
                        "optimizing graph '{}' changed output '{}' from {was} to {is} (a bug in a rewrite rule)",
                        graph.name, before.name
                    )));
                }
            }
            Ok((result, report))
        },
    );
    let (optimized, reports) = results
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    Ok((optimized, reports))
}

fn stop_reason(reason: Option<&StopReason>) -> String {
    match reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(_)) => "iteration limit".to_string(),
        Some(StopReason::NodeLimit(_)) => "node limit".to_string(),
        Some(StopReason::TimeLimit(_)) => "time limit".to_string(),
        Some(StopReason::Other(why)) => why.clone(),
        None => "not run".to_string(),
    }
}
