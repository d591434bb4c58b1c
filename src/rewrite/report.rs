//! What the optimizer reports: per-phase statistics, and the `--stats` text and JSON.

use super::cost::GraphStats;
use serde::Serialize;
use std::fmt::Write;

/// How one phase went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseStats {
    /// The phase's name (`canonicalize`, …, `extract`).
    pub name: String,
    /// Rewriting iterations (for `extract`: local-search passes).
    pub iterations: usize,
    /// E-nodes in the e-graph when the phase ended.
    pub egraph_nodes: usize,
    /// Why the phase stopped: `saturated`, `iteration limit`, `node limit`, `time limit`,
    /// `match limit` (a rule's matches were cut: nothing changed, but not everything was tried;
    /// `converged` or `time limit` for `extract`).
    pub stop_reason: String,
    /// Wall-clock milliseconds.
    pub ms: f64,
}

/// The statistics of one optimization, phase by phase (extraction last).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RewriteReport {
    pub phases: Vec<PhaseStats>,
}

impl RewriteReport {
    /// Total wall-clock milliseconds over all phases.
    pub fn total_ms(&self) -> f64 {
        self.phases.iter().map(|p| p.ms).sum()
    }
}

/// The `--stats` text: before and after, then the phases.
///
/// ```text
/// graph gv-apply (symbolic dimensions = 1000)
///                          before           after    change
/// nodes                        84              61    -27.4%
/// …
/// ```
pub fn stats_text(
    graph: &str,
    batch: usize,
    before: &GraphStats,
    after: &GraphStats,
    report: &RewriteReport,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "graph {graph} (symbolic dimensions = {batch})").expect("writing to a String");
    writeln!(
        w,
        "{:<20}{:>16}{:>16}{:>10}",
        "", "before", "after", "change"
    )
    .expect("String");
    let rows = [
        ("nodes", before.nodes as u64, after.nodes as u64),
        ("matmul FLOPs", before.matmul_flops, after.matmul_flops),
        (
            "elementwise FLOPs",
            before.elementwise_flops,
            after.elementwise_flops,
        ),
        ("bytes", before.bytes, after.bytes),
    ];
    for (name, was, is) in rows {
        let (change, was, is) = (change(was, is), count(was), count(is));
        writeln!(w, "{name:<20}{was:>16}{is:>16}{change:>10}").expect("String");
    }
    writeln!(w).expect("String");
    writeln!(
        w,
        "{:<22}{:>11}{:>15}  {:<17}{:>10}",
        "phase", "iterations", "e-graph nodes", "stop reason", "ms"
    )
    .expect("String");
    for p in &report.phases {
        writeln!(
            w,
            "{:<22}{:>11}{:>15}  {:<17}{:>10.1}",
            p.name, p.iterations, p.egraph_nodes, p.stop_reason, p.ms
        )
        .expect("String");
    }
    writeln!(w, "{:<65}{:>10.1}", "total", report.total_ms()).expect("String");
    out
}

/// A count for the table; the costs saturate at `u64::MAX`, which stands for "at least that".
fn count(n: u64) -> String {
    match n {
        u64::MAX => ">=2^64".to_string(),
        n => n.to_string(),
    }
}

/// The relative change from `was` to `is`, as `-12.5%` (or `±0%`; `?` if a count saturated).
pub fn change(was: u64, is: u64) -> String {
    if was == u64::MAX || is == u64::MAX {
        return "?".to_string();
    }
    if was == is {
        return "±0%".to_string();
    }
    if was == 0 {
        return "new".to_string();
    }
    format!("{:+.2}%", (is as f64 - was as f64) / was as f64 * 100.0)
}

/// The `--stats --format json` document: keys `graph`, `before`, `after` (each with `nodes`,
/// `matmul_flops`, `elementwise_flops`, `bytes`; a count of 18446744073709551615, `u64::MAX`,
/// saturated and means at least that) and `phases` (each with `name`, `iterations`,
/// `egraph_nodes`, `stop_reason`, `ms`).
pub fn stats_json(
    graph: &str,
    before: &GraphStats,
    after: &GraphStats,
    report: &RewriteReport,
) -> String {
    #[derive(Serialize)]
    struct Stats<'a> {
        graph: &'a str,
        before: &'a GraphStats,
        after: &'a GraphStats,
        phases: &'a [PhaseStats],
    }
    serde_json::to_string_pretty(&Stats {
        graph,
        before,
        after,
        phases: &report.phases,
    })
    .expect("plain data serializes")
}
