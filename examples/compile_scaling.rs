//! Compile time against depth: a chain of `tanh(h @ w + b)` layers of width 16, at several
//! depths, through every stage of [`Model::compile`] (parse and type-check, derive, simplify,
//! JIT of all seven graphs), then a first call of the forward and gradient graphs (which plans
//! their memory for the batch):
//!
//! ```text
//! cargo run --release --example compile_scaling             # depths 100 500 1000 2000 5000
//! cargo run --release --example compile_scaling -- 100 1000  # other depths
//! ```
//!
//! Times are milliseconds of CPU time of the compiling thread in one run (compilation is
//! single-threaded), so that other work on the machine does not inflate them; `compile wall ms`
//! is the elapsed time of the same compile. `µs/layer` is the compile's CPU time over the depth,
//! which stays flat when compile time grows linearly.

use sgn::Model;
use sgn::autodiff::GraphName;
use sgn::codegen::{BackendKind, JitOptions, compile_backend};
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

/// CPU time of the calling thread, in milliseconds.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(status, 0, "the thread CPU clock is available");
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 * 1e-6
}

/// CPU milliseconds since `start` (a [`cpu_ms`] reading).
fn ms_since(start: f64) -> f64 {
    cpu_ms() - start
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
    println!(
        "| layers | graph nodes | parse ms | derive ms | e-graph ms | extract ms | JIT ms | compile ms | compile wall ms | µs/layer | first call ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for depth in depths {
        let source = chain_source(depth);
        let wall = Instant::now();
        let start = cpu_ms();
        let model = Model::parse(&source)?;
        let parse_ms = ms_since(start);
        let stage = cpu_ms();
        let derived = model.derive()?;
        let derive_ms = ms_since(stage);
        let stage = cpu_ms();
        let (optimized, reports) = optimize_derived(&derived, &RewriteOptions::default())?;
        let graphs = optimized.split();
        let simplify_ms = ms_since(stage);
        let extract_ms: f64 = reports
            .iter()
            .flat_map(|(_, r)| &r.phases)
            .filter(|p| p.name == "extract")
            .map(|p| p.ms)
            .sum();
        let stage = cpu_ms();
        let jit = JitOptions::default().with_threads(1);
        let executables = GraphName::ALL
            .iter()
            .map(|&name| compile_backend(graphs.get(name), BackendKind::Jit, &jit))
            .collect::<sgn::codegen::Result<Vec<_>>>()?;
        let jit_ms = ms_since(stage);
        let compile_ms = ms_since(start);
        let compile_wall_ms = wall.elapsed().as_secs_f64() * 1e3;
        let nodes: usize = GraphName::ALL
            .iter()
            .map(|&name| graphs.get(name).nodes().len())
            .sum();
        drop(executables);
        // The same compile through the public entry point, then a first call of two graphs.
        let compiled = model.compile(&sgn::CompileOptions::default().with_threads(1))?;
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
        let stage = cpu_ms();
        compiled.loss_and_grad(&params, &batch)?;
        compiled.loss(&params, &batch)?;
        let first_call_ms = ms_since(stage);
        println!(
            "| {depth} | {nodes} | {parse_ms:.0} | {derive_ms:.0} | {:.0} | {extract_ms:.0} | {jit_ms:.0} | {compile_ms:.0} | {compile_wall_ms:.0} | {:.0} | {first_call_ms:.0} |",
            simplify_ms - extract_ms,
            compile_ms * 1e3 / depth as f64
        );
    }
    Ok(())
}
