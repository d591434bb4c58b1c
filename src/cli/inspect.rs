//! `sgn inspect MODEL --graph NAME [--format text|dot]`: print one of a model's graphs.

use crate::ir::text::{print_dot, print_graph};
use crate::{CompileOptions, Error, Model, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model file (`*.sgn`).
    model: PathBuf,
    /// Which graph: forward, grad, jvp, vjp, gv, gv-prepare or gv-apply.
    #[arg(long, default_value = "forward")]
    graph: String,
    /// Text (the IR's readable form) or dot (Graphviz, for `dot -Tsvg`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Dot,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let model = Model::from_file(&args.model)?;
    let compiled = model.compile(&CompileOptions::default())?;
    let named = compiled.graphs.named();
    let Some((_, graph)) = named.iter().find(|(name, _)| *name == args.graph) else {
        let known: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        return Err(Error::Eval(format!(
            "unknown graph '{}' (known: {})",
            args.graph,
            known.join(", ")
        )));
    };
    match args.format {
        Format::Text => print!("{}", print_graph(graph)),
        Format::Dot => print!("{}", print_dot(graph)),
    }
    Ok(())
}
