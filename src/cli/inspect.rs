//! `sgn inspect MODEL --graph NAME [--opt] [--stats] [--format text|dot|json] [--batch N]`:
//! print one of a model's graphs, before or after simplification, or what simplification did.

use crate::autodiff::GraphName;
use crate::ir::text::{print_dot, print_graph};
use crate::rewrite::{RewriteOptions, graph_stats, optimize_derived, stats_json, stats_text};
use crate::{Error, Model, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model file (`*.sgn`).
    model: PathBuf,
    /// Which graph: forward, grad, jvp, vjp, gv, gv-prepare, gv-apply or grad-prepare (grad and
    /// gv-prepare in one graph, as an SGN step runs them).
    #[arg(long, default_value = "forward")]
    graph: String,
    /// Show the graph after e-graph simplification (as `train` and `eval` run it).
    #[arg(long)]
    opt: bool,
    /// Print node count, matmul and elementwise FLOPs and bytes before and after simplification,
    /// with the e-graph size, stop reason and time of each phase.
    #[arg(long)]
    stats: bool,
    /// text (the IR's readable form), dot (Graphviz: `| dot -Tsvg > g.svg`), or json (--stats).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The size the symbolic batch dimension stands for in the statistics and the cost model
    /// (at least 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1000, value_parser = super::options::at_least_one::<usize>)]
    batch: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Dot,
    Json,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let model = Model::from_file(&args.model)?;
    let which = GraphName::from_name(&args.graph).ok_or_else(|| {
        let known: Vec<&str> = GraphName::ALL.iter().map(|g| g.name()).collect();
        Error::Eval(format!(
            "unknown graph '{}' (known: {})",
            args.graph,
            known.join(", ")
        ))
    })?;
    if args.format == Format::Json && !args.stats {
        return Err(Error::Eval("--format json goes with --stats".to_string()));
    }
    if args.format == Format::Dot && args.stats {
        return Err(Error::Eval(
            "--stats prints text or json, not dot (leave out --stats to draw the graph)"
                .to_string(),
        ));
    }
    let derivatives = model.derive()?;
    let unoptimized = derivatives.clone().split();
    let before = unoptimized.get(which);
    if !(args.opt || args.stats) {
        print_as(args.format, before);
        return Ok(());
    }
    let options = RewriteOptions {
        batch: args.batch,
        ..RewriteOptions::default()
    };
    let (optimized, reports) = optimize_derived(&derivatives, &options)?;
    let optimized = optimized.split();
    let after = optimized.get(which);
    if args.stats {
        // The two stages are cut from the optimized one-shot product: its phases are theirs.
        let phases_of = match which {
            GraphName::GvPrepare | GraphName::GvApply => GraphName::Gv,
            // grad-prepare is grad with gv-prepare's nodes added after rewriting.
            GraphName::GradPrepare => GraphName::Grad,
            other => other,
        };
        let report = &reports
            .iter()
            .find(|(name, _)| *name == phases_of.name())
            .expect("every graph has a report")
            .1;
        let (was, is) = (
            graph_stats(before, args.batch),
            graph_stats(after, args.batch),
        );
        match args.format {
            Format::Json => println!("{}", stats_json(&args.graph, &was, &is, report)),
            _ => print!("{}", stats_text(&args.graph, args.batch, &was, &is, report)),
        }
    } else {
        print_as(args.format, after);
    }
    Ok(())
}

fn print_as(format: Format, graph: &crate::ir::Graph) {
    match format {
        Format::Dot => print!("{}", print_dot(graph)),
        _ => print!("{}", print_graph(graph)),
    }
}
