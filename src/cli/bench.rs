//! `sgn bench MODEL --batch N [--threads T] [--format text|json]`: how fast the compiled graphs
//! run, next to their GEMM roofline and the reference interpreter, all measured in this run.

use crate::autodiff::GraphName;
use crate::codegen::{BackendKind, JitOptions, PackCache, Roofline, run_keeping};
use crate::ir::interp::bind_dims;
use crate::ir::memory;
use crate::ir::store::{TensorMap, init_params};
use crate::ir::{Arg, ArgRole, DType, Tensor};
use crate::optim::{CgOptions, ModelObjective, Optimizer, Sgn, SgnOptions};
use crate::rewrite::graph_stats;
use crate::{CompileOptions, CompiledModel, Curvature, Model, Result, Sources};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The model file (`*.sgn`).
    model: PathBuf,
    /// The batch size the symbolic batch dimension is bound to (at least 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1000, value_parser = super::options::at_least_one::<usize>)]
    batch: usize,
    /// JIT threads per call, 0 to 256; 0 = one per core.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0, value_parser = super::options::threads)]
    threads: usize,
    /// Timed runs per graph, 1 to 1000000 (the median is reported); the interpreter gets a
    /// third as many.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20, value_parser = super::options::repeats)]
    repeats: usize,
    /// text or json.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The precision of gv-apply's products: f32 (the model's own) or bf16 (bf16 operands, f32
    /// sums; CPUs with AVX512-BF16, on AMX tiles where the CPU has them; elsewhere f32 with a
    /// notice). With bf16, the f32 gv-apply is timed in the same rounds.
    #[arg(long, default_value = "f32", value_parser = super::options::curvature)]
    curvature: crate::Curvature,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// One row of the report.
#[derive(Serialize, Debug)]
struct Timing {
    name: &'static str,
    /// Median milliseconds with the JIT.
    ms: f64,
    gflops: f64,
    /// Median milliseconds of the same matmuls alone through the same GEMM and threads.
    roofline_ms: f64,
    /// roofline_ms / ms.
    efficiency: f64,
    /// Median milliseconds with the reference interpreter.
    interp_ms: f64,
    /// With more than one thread: median milliseconds of the same graph compiled for one
    /// thread, timed in the same rounds (so `one_thread_ms / ms` is the threads' speedup).
    #[serde(skip_serializing_if = "Option::is_none")]
    one_thread_ms: Option<f64>,
    /// For the SGN step: the median milliseconds of its graphs called back to back on prepared
    /// arguments, timed in the same rounds as the step (so `graphs_ms / ms` is how much of the
    /// step is its graphs, not the work between them).
    #[serde(skip_serializing_if = "Option::is_none")]
    graphs_ms: Option<f64>,
    /// For gv-apply with bf16 curvature: the median milliseconds of the full-precision
    /// gv-apply, timed in the same rounds (so `full_precision_ms / ms` is bf16's speedup).
    #[serde(skip_serializing_if = "Option::is_none")]
    full_precision_ms: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Report {
    model: String,
    batch: usize,
    threads: usize,
    /// The precision gv-apply ran in: "f32" (the model's own) or "bf16".
    curvature: &'static str,
    /// With bf16 curvature: what ran its products (AMX tiles or AVX512-BF16, and why not AMX).
    #[serde(skip_serializing_if = "Option::is_none")]
    bf16_unit: Option<String>,
    /// With bf16 curvature: ‖G v − G v in f64‖ / ‖G v in f64‖ on the bench's batch and
    /// parameters, with v = the parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    curvature_error: Option<f64>,
    compile_ms: f64,
    graphs: Vec<Timing>,
}

const TIMED_GRAPHS: [GraphName; 5] = [
    GraphName::Forward,
    GraphName::Grad,
    GraphName::GvPrepare,
    GraphName::GvApply,
    GraphName::GradPrepare,
];
/// CG iterations in the timed SGN step.
const STEP_CG_ITERS: usize = 10;

pub fn run(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    let model = Model::from_file(&args.model)?;
    super::notice_oversubscription(args.threads);
    let options = CompileOptions::default()
        .with_threads(args.threads)
        .with_curvature(args.curvature);
    let jit = model.compile(&options)?;
    let compile_ms = ms_since(started);
    if let Some(notice) = jit.curvature_notice() {
        eprintln!("notice: {notice}");
    }
    let full_precision = match jit.curvature() {
        Curvature::Bf16 => Some(model.compile(&options.clone().with_curvature(Curvature::Full))?),
        Curvature::Full => None,
    };
    let interp = model.compile(&options.clone().with_backend(BackendKind::Interpreter))?;
    let jit_options = &options.jit;
    let one_thread = if jit_options.thread_count() > 1 {
        Some(model.compile(&options.clone().with_threads(1))?)
    } else {
        None
    };

    let params = init_params(&model.params, 0)?;
    let batch = synthetic_batch(&model, args.batch)?;
    let residuals = jit
        .executable(GraphName::GvPrepare)
        .run(&jit.arguments(GraphName::GvPrepare, &Sources::batch(&params, &batch))?)?;
    let v = params.clone();
    let sources = Sources {
        directions: Some(&v),
        residuals: Some(&residuals),
        ..Sources::batch(&params, &batch)
    };
    let interp_repeats = args.repeats.div_ceil(3).max(2);
    // Each graph's timing, and the arguments it was timed on.
    let mut timed: Vec<(Timing, Vec<Tensor>)> = Vec::new();
    for name in TIMED_GRAPHS {
        let values = jit.arguments(name, &sources)?;
        let graph = jit.graphs.get(name);
        let stats = graph_stats(graph, args.batch);
        let bindings = bind_dims(graph, &values)?;
        // The matmuls in the precision the graph runs them in.
        let roofline_options = JitOptions {
            bf16_products: name == GraphName::GvApply && jit.curvature() == Curvature::Bf16,
            ..jit_options.clone()
        };
        let mut roofline = Roofline::new(graph, &bindings, &roofline_options)?;
        // Interleaved, so that the graph and its references see the same machine load.
        let shared = &values;
        let mut runs: Vec<Run> = vec![
            (args.repeats, Box::new(graph_runner(&jit, name, shared))),
            (args.repeats, Box::new(|| Ok(roofline.run()?))),
            (
                interp_repeats,
                Box::new(graph_runner(&interp, name, shared)),
            ),
        ];
        if let Some(one) = &one_thread {
            runs.push((args.repeats, Box::new(graph_runner(one, name, shared))));
        }
        let full_precision = full_precision
            .as_ref()
            .filter(|_| name == GraphName::GvApply);
        if let Some(full) = full_precision {
            runs.push((args.repeats, Box::new(graph_runner(full, name, shared))));
        }
        let medians = interleaved_medians(runs)?;
        let timing = Timing {
            one_thread_ms: one_thread.as_ref().map(|_| medians[3]),
            full_precision_ms: full_precision.map(|_| medians[medians.len() - 1]),
            ..timing(
                name.name(),
                medians[0],
                (stats.matmul_flops + stats.elementwise_flops) as f64,
                medians[1],
                medians[2],
            )
        };
        timed.push((timing, values));
    }
    let step = sgn_step(
        &jit,
        &interp,
        one_thread.as_ref(),
        &params,
        &batch,
        args,
        &timed,
    )?;
    let mut graphs: Vec<Timing> = timed.into_iter().map(|(timing, _)| timing).collect();
    graphs.push(step);
    let report = Report {
        model: model.name.clone(),
        batch: args.batch,
        threads: jit_options.thread_count(),
        curvature: match jit.curvature() {
            Curvature::Full => "f32",
            Curvature::Bf16 => "bf16",
        },
        bf16_unit: full_precision
            .as_ref()
            .map(|_| crate::codegen::bf16_products_unit()),
        curvature_error: match full_precision {
            Some(_) => Some(curvature_error(&model, &jit, &params, &batch, &v)?),
            None => None,
        },
        compile_ms,
        graphs,
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain data")
        ),
        Format::Text => print_text(&report),
    }
    Ok(())
}

/// ‖G v − G v in f64‖ / ‖G v in f64‖ for `jit`'s G v at (params, batch).
fn curvature_error(
    model: &Model,
    jit: &CompiledModel,
    params: &TensorMap,
    batch: &TensorMap,
    v: &TensorMap,
) -> Result<f64> {
    let exact_model = model.compile(&CompileOptions::default().with_dtype(DType::F64))?;
    let in_f64 = |map: &TensorMap| {
        let mut out = TensorMap::new();
        for (name, t) in map.iter() {
            out.insert(name, t.clone().cast(DType::F64));
        }
        out
    };
    let exact = exact_model
        .gv_operator(&in_f64(params), &in_f64(batch))?
        .apply(&in_f64(v))?;
    let approximate = jit.gv_operator(params, batch)?.apply(v)?;
    let (exact, approximate) = (
        jit.layout().flatten(&exact)?,
        jit.layout().flatten(&approximate)?,
    );
    let (mut distance, mut norm) = (0.0, 0.0);
    for (e, a) in exact.iter().zip(&approximate) {
        distance += (a - e) * (a - e);
        norm += e * e;
    }
    Ok((distance / norm).sqrt())
}

/// Runs graph `name` of `model` on `values` each call, into new outputs, its bf16 products'
/// fixed operands packed in the first call only, as CG runs gv-apply.
fn graph_runner<'a>(
    model: &'a CompiledModel,
    name: GraphName,
    values: &'a [Tensor],
) -> impl FnMut() -> Result<()> + 'a {
    let kept = PackCache::new();
    move || {
        let values: Vec<&Tensor> = values.iter().collect();
        run_keeping(model.executable(name), &values, &mut Vec::new(), &kept)?;
        Ok(())
    }
}

fn timing(name: &'static str, ms: f64, flops: f64, roofline_ms: f64, interp_ms: f64) -> Timing {
    Timing {
        name,
        ms,
        gflops: flops / (ms * 1e6),
        roofline_ms,
        efficiency: roofline_ms / ms,
        interp_ms,
        one_thread_ms: None,
        graphs_ms: None,
        full_precision_ms: None,
    }
}

/// One SGN step — grad-prepare (gradient and gv-prepare in one graph), 10 CG iterations of
/// gv-apply, the update (no line search) — through the optimizer as training runs it, timed in
/// the same rounds as the same graphs called back to back on the arguments they were timed on
/// (`timed`, in `TIMED_GRAPHS` order): their ratio is what the optimizer adds. Its roofline is
/// the sum of its graphs'.
fn sgn_step(
    jit: &CompiledModel,
    interp: &CompiledModel,
    one_thread: Option<&CompiledModel>,
    params: &TensorMap,
    batch: &TensorMap,
    args: &BenchArgs,
    timed: &[(Timing, Vec<Tensor>)],
) -> Result<Timing> {
    let theta0 = jit.layout().flatten(params)?;
    let options = SgnOptions {
        cg: CgOptions {
            max_iters: STEP_CG_ITERS,
            tolerance: 0.0,
            residual_max: None,
        },
        line_search: false,
        ..SgnOptions::default()
    };
    let step = |objective: &mut ModelObjective| -> Result<()> {
        let mut theta = theta0.clone();
        Sgn::new(options.clone())
            .step(&mut theta, objective)
            .map(drop)
    };
    let step = &step;
    // The graphs an SGN step runs: grad and gv-prepare as the one grad-prepare.
    let calls = |name: GraphName| match name {
        GraphName::GvApply => STEP_CG_ITERS,
        GraphName::Grad | GraphName::GvPrepare => 0,
        _ => 1,
    };
    let graphs_back_to_back = || -> Result<()> {
        for (&name, (_, values)) in TIMED_GRAPHS.iter().zip(timed) {
            if calls(name) == 0 {
                continue;
            }
            // As CG calls gv-apply: new outputs and packed operands in the first call, reused
            // in the others.
            let (mut outputs, kept) = (Vec::new(), PackCache::new());
            let values: Vec<&Tensor> = values.iter().collect();
            for _ in 0..calls(name) {
                run_keeping(jit.executable(name), &values, &mut outputs, &kept)?;
            }
        }
        Ok(())
    };
    let objective = |model| ModelObjective::new(model, batch);
    let (mut on_jit, mut on_interp) = (objective(jit), objective(interp));
    let mut runs: Vec<Run> = vec![
        (args.repeats, Box::new(|| step(&mut on_jit))),
        (args.repeats, Box::new(graphs_back_to_back)),
        (
            args.repeats.div_ceil(3).max(2),
            Box::new(|| step(&mut on_interp)),
        ),
    ];
    if let Some(one) = one_thread {
        let mut on_one = objective(one);
        runs.push((args.repeats, Box::new(move || step(&mut on_one))));
    }
    let medians = interleaved_medians(runs)?;
    let (ms, graphs_ms, interp_ms) = (medians[0], medians[1], medians[2]);
    let sum = |field: fn(&Timing) -> f64| {
        TIMED_GRAPHS
            .iter()
            .zip(timed)
            .map(|(&name, (timing, _))| calls(name) as f64 * field(timing))
            .sum::<f64>()
    };
    let roofline = sum(|t| t.roofline_ms);
    let flops = sum(|t| t.gflops * t.ms * 1e6);
    Ok(Timing {
        one_thread_ms: medians.get(3).copied(),
        graphs_ms: Some(graphs_ms),
        ..timing("sgn-step", ms, flops, roofline, interp_ms)
    })
}

/// A benchmark run: how many timed repetitions, and what to run.
type Run<'a> = (usize, Box<dyn FnMut() -> Result<()> + 'a>);

/// Median milliseconds of each run, timed round-robin (one repetition of each in turn, a run
/// dropping out after its repetitions) after one warm-up repetition of each.
fn interleaved_medians(mut runs: Vec<Run>) -> Result<Vec<f64>> {
    for (_, run) in runs.iter_mut() {
        run()?; // warm-up: plans, caches, pages
    }
    let rounds = runs.iter().map(|(n, _)| (*n).max(1)).max().unwrap_or(1);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    for round in 0..rounds {
        for ((repeats, run), times) in runs.iter_mut().zip(&mut times) {
            if round < (*repeats).max(1) {
                let start = Instant::now();
                run()?;
                times.push(ms_since(start));
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Inputs with values in [0, 1) and one-hot rows for multi-column targets; symbolic dimensions
/// bound to `rows`. Errors ([`crate::Error::Memory`]) if they do not fit in memory.
fn synthetic_batch(model: &Model, rows: usize) -> Result<TensorMap> {
    let args: Vec<(&Arg, Vec<usize>)> = model
        .graph
        .args()
        .iter()
        .filter(|a| matches!(a.role, ArgRole::Input | ArgRole::Target))
        .map(|arg| {
            let shape = arg
                .ty
                .shape
                .dims()
                .iter()
                .map(|d| d.as_fixed().map_or(rows, |n| n as usize))
                .collect();
            (arg, shape)
        })
        .collect();
    let bytes = args.iter().try_fold(0u64, |n, (arg, shape)| {
        n.checked_add(memory::tensor_bytes(arg.ty.dtype, shape)?)
    });
    memory::ensure_available(bytes, || {
        let shapes: Vec<String> = args
            .iter()
            .map(|(arg, shape)| format!("'{}': {} = {shape:?}", arg.name, arg.ty))
            .collect();
        format!("a batch of {rows} ({})", shapes.join(", "))
    })?;
    let mut batch = TensorMap::new();
    for (arg, shape) in args {
        let n: usize = shape.iter().product();
        let width = *shape.last().unwrap_or(&1);
        let values = (0..n)
            .map(|i| match arg.role {
                ArgRole::Target if width > 1 => {
                    f64::from(u8::from(i % width == (i / width) % width))
                }
                _ => ((i * 7919) % 1000) as f64 / 1000.0,
            })
            .collect();
        batch.insert(
            arg.name.clone(),
            Tensor::from_f64(arg.ty.dtype, &shape, values).expect("length matches the shape"),
        );
    }
    Ok(batch)
}

fn print_text(r: &Report) {
    println!(
        "model {}, batch {}, {} thread(s), {} curvature, compile {:.0} ms",
        r.model, r.batch, r.threads, r.curvature, r.compile_ms
    );
    let scaling = r.graphs.iter().any(|t| t.one_thread_ms.is_some());
    print!(
        "{:<12}{:>10}{:>10}{:>13}{:>12}{:>12}{:>10}",
        "graph", "ms", "GFLOP/s", "roofline ms", "efficiency", "interp ms", "speedup"
    );
    if scaling {
        print!("{:>13}{:>9}", "1-thread ms", "scaling");
    }
    println!("{:>11}{:>11}", "graphs ms", "of graphs");
    for t in &r.graphs {
        print!(
            "{:<12}{:>10.3}{:>10.1}{:>13.3}{:>12.2}{:>12.3}{:>9.1}×",
            t.name,
            t.ms,
            t.gflops,
            t.roofline_ms,
            t.efficiency,
            t.interp_ms,
            t.interp_ms / t.ms
        );
        match t.one_thread_ms {
            Some(one) => print!("{:>13.3}{:>8.2}×", one, one / t.ms),
            None if scaling => print!("{:>22}", ""),
            None => {}
        }
        if let Some(graphs) = t.graphs_ms {
            print!("{:>11.3}{:>11.2}", graphs, graphs / t.ms);
        }
        println!();
    }
    if let Some(unit) = &r.bf16_unit {
        println!("bf16 products on {unit}");
    }
    if let Some(error) = r.curvature_error {
        println!("bf16 G v against f64's: relative error {error:.2e}");
    }
    for t in &r.graphs {
        if let Some(full) = t.full_precision_ms {
            println!(
                "{} in f32, same rounds: {full:.3} ms; bf16 is {:.2}× faster",
                t.name,
                full / t.ms
            );
        }
    }
}
