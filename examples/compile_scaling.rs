//! Compile time against depth: a chain of `tanh(h @ w + b)` layers of width 16, at several
//! depths, through every stage of [`Model::compile`] (parse and type-check, derive, simplify,
//! JIT of all eight graphs, several at once on a multi-core machine), then a first call of the
//! forward and gradient graphs (which plans their memory for the batch):
//!
//! ```text
//! cargo run --release --example compile_scaling             # depths 100 500 1000 2000 5000
//! cargo run --release --example compile_scaling -- 100 1000  # other depths
//! SGN_REPEATS=9 cargo run --release --example compile_scaling -- 1000
//! ```
//!
//! `compile ms` is the wall time of parsing the source and [`Model::compile`], the median of
//! `SGN_REPEATS` runs (default 5; `min` is the fastest, the one least disturbed by other work on
//! a shared machine); `µs/layer` is that median over the depth, flat when compile time grows
//! linearly. The stage columns come from one more run, stage by stage: wall milliseconds of
//! parsing, derivation, simplification (loading the five derived graphs into one e-graph, the
//! rewriting phases, then each graph's extraction, in parallel) and the JIT (all eight graphs,
//! in parallel).

// As the `sgn` binary does (see src/main.rs); `--no-default-features` measures glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sgn::Model;
use sgn::autodiff::GraphName;
use sgn::codegen::{BackendKind, JitOptions, compile_backends};
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::{DType, Tensor};
use sgn::rewrite::{RewriteOptions, optimize_derived};
use std::fmt::Write;
use std::time::Instant;

const WIDTH: usize = 16;
const BATCH: usize = 4;
const DEFAULT_DEPTHS: [usize; 5] = [100, 500, 1000, 2000, 5000];

/// The model source of a chain of `depth` tanh layers.
fn chain_source(depth: usize) -> String {
    let mut s = String::new();
    writeln!(s, "model chain{depth}").unwrap();
    writeln!(s, "input x: f32[B, {WIDTH}]").unwrap();
    writeln!(s, "target y: f32[B, {WIDTH}]").unwrap();
    for i in 1..=depth {
        writeln!(s, "param w{i}: f32[{WIDTH}, {WIDTH}] = glorot_uniform").unwrap();
        writeln!(s, "param b{i}: f32[{WIDTH}] = zeros").unwrap();
    }
    let mut previous = "x".to_string();
    for i in 1..depth {
        writeln!(s, "h{i} = tanh({previous} @ w{i} + b{i})").unwrap();
        previous = format!("h{i}");
    }
    writeln!(s, "output z = tanh({previous} @ w{depth} + b{depth})").unwrap();
    writeln!(s, "loss mse(z, y)").unwrap();
    s
}

fn main() -> sgn::Result<()> {
    let depths: Vec<usize> = match std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<Vec<usize>, _>>()
    {
        Ok(depths) if !depths.is_empty() => depths,
        Ok(_) => DEFAULT_DEPTHS.to_vec(),
        Err(e) => panic!("depths must be positive integers: {e}"),
    };
    let repeats: usize = std::env::var("SGN_REPEATS")
        .ok()
        .map(|r| r.parse().expect("SGN_REPEATS is a positive integer"))
        .unwrap_or(5)
        .max(1);
    println!(
        "| layers | graph nodes | parse ms | derive ms | simplify ms | JIT ms | compile ms | min ms | µs/layer | first call ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for depth in depths {
        let source = chain_source(depth);
        let options = sgn::CompileOptions::default().with_threads(1);
        let mut times = Vec::with_capacity(repeats);
        let mut compiled = None;
        for _ in 0..repeats {
            let start = Instant::now();
            let model = Model::parse(&source)?;
            let done = model.compile(&options)?;
            times.push(ms_since(start));
            compiled = Some((model, done));
        }
        times.sort_by(f64::total_cmp);
        let (model, compiled) = compiled.expect("at least one run");
        let params = init_params(&model.params, 0)?;
        let mut batch = TensorMap::new();
        for name in ["x", "y"] {
            let values = vec![0.5; BATCH * WIDTH];
            batch.insert(
                name,
                Tensor::from_f64(DType::F32, &[BATCH, WIDTH], values)
                    .expect("the shape holds the values"),
            );
        }
        let stage = Instant::now();
        compiled.loss_and_grad(&params, &batch)?;
        compiled.loss(&params, &batch)?;
        let first_call_ms = ms_since(stage);
        drop(compiled);
        let stages = staged(&source)?;
        let median = times[times.len() / 2];
        println!(
            "| {depth} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {median:.0} | {:.0} | {:.0} | {first_call_ms:.0} |",
            stages.nodes,
            stages.parse,
            stages.derive,
            stages.simplify,
            stages.jit,
            times[0],
            median * 1e3 / depth as f64
        );
    }
    Ok(())
}

/// Wall milliseconds of each stage of one compile, and the nodes of the graphs it JITs.
struct Stages {
    nodes: usize,
    parse: f64,
    derive: f64,
    simplify: f64,
    jit: f64,
}

/// The stages of [`Model::compile`], run one by one.
fn staged(source: &str) -> sgn::Result<Stages> {
    let stage = Instant::now();
    let model = Model::parse(source)?;
    let parse = ms_since(stage);
    let stage = Instant::now();
    let derived = model.derive()?;
    let derive = ms_since(stage);
    let stage = Instant::now();
    let (optimized, _) = optimize_derived(&derived, &RewriteOptions::default())?;
    let graphs = optimized.split();
    let simplify = ms_since(stage);
    let stage = Instant::now();
    let options = JitOptions::default().with_threads(1);
    let all = GraphName::ALL.map(|name| (graphs.get(name), &options));
    let executables = compile_backends(&all, BackendKind::Jit)?;
    let jit = ms_since(stage);
    drop(executables);
    Ok(Stages {
        nodes: all.iter().map(|(g, _)| g.nodes().len()).sum(),
        parse,
        derive,
        simplify,
        jit,
    })
}

/// Milliseconds since `start`.
fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
