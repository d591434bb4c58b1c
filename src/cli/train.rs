//! `sgn train MODEL --dataset NAME | --train FILE [--test FILE] --optimizer sgn|sgd|adam …`:
//! train end to end, on a built-in dataset or the user's files.

use super::files::{self, Named};
use super::options;
use crate::data::DatasetName;
use crate::optim::checkpoint::is_checkpoint;
use crate::optim::collective::{Collective, SingleProcess};
use crate::optim::report::{LogWriter, plot};
use crate::optim::{
    Adam, AdamOptions, CgOptions, Damping, EarlyCg, Optimizer, Record, RecordKind, Sgd, SgdOptions,
    Sgn, SgnOptions, StopRule, TrainEvent, TrainOptions, Trainer,
};
use crate::{Error, Model, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The model file (`*.sgn`); it must have one input (features) and one target.
    model: PathBuf,
    /// mnist, fashion-mnist, cifar10, boston or sine (fetched on first use; cifar10 the user
    /// provides, see the README). Or your own files: --train (and --test).
    #[arg(long, required_unless_present = "train")]
    dataset: Option<DatasetName>,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Sgn)]
    optimizer: OptimizerName,
    /// Examples per mini-batch: at least 1, at most the training examples.
    #[arg(long, allow_negative_numbers = true, value_parser = options::at_least_one::<usize>)]
    batch: usize,
    /// Stop after this many epochs (at least 1).
    #[arg(long, allow_negative_numbers = true, required_unless_present = "time_limit", value_parser = options::at_least_one::<u64>)]
    epochs: Option<u64>,
    /// Stop after this much training time, longer than 0 (e.g. 25s, 2m). Training time leaves
    /// out compilation, evaluation and checkpoints.
    #[arg(long, value_parser = options::duration)]
    time_limit: Option<Duration>,
    /// Also evaluate on the test split at the first step past each of these training times,
    /// comma-separated (e.g. 25s,50s,100s: the SGN paper's budgets).
    #[arg(long, value_parser = options::duration, value_delimiter = ',')]
    eval_at: Vec<Duration>,
    /// Seeds the parameter initialization and the mini-batch order (a whole number >= 0).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// SGN: conjugate-gradient iterations per step (at least 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 10, value_parser = options::at_least_one::<usize>)]
    cg_iters: usize,
    /// SGN: also stop CG once every residual entry is at most this (‖r‖∞ ≤ TOL; the paper:
    /// 1e-6), a finite number > 0.
    #[arg(long, allow_negative_numbers = true, value_parser = options::positive)]
    cg_tol_inf: Option<f64>,
    /// SGN: the first STEPS steps run up to ITERS CG iterations, written STEPS,ITERS (the paper:
    /// 10,10); --cg-iters applies afterwards.
    #[arg(long, value_parser = options::early_cg)]
    cg_early: Option<EarlyCg>,
    /// SGN: the SGN paper's CG settings: --cg-tol-inf 1e-6 --cg-early 10,10 (with --cg-iters
    /// after the first 10 steps). The damping and line search are the defaults, the paper's.
    #[arg(long, conflicts_with_all = ["cg_tol_inf", "cg_early"])]
    paper: bool,
    /// SGN: the initial damping ρ₀, a finite number > 0.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-4, value_parser = options::positive)]
    rho0: f64,
    /// SGN: keep ρ fixed instead of the Levenberg-Marquardt update.
    #[arg(long)]
    fixed_rho: bool,
    /// SGN: take the full CG step without Armijo backtracking.
    #[arg(long)]
    no_line_search: bool,
    /// SGN: warm-start CG from this multiple of the previous step, in [0, 1] (Martens: 0.95).
    #[arg(long, allow_negative_numbers = true, value_parser = options::unit_interval)]
    warm_start: Option<f64>,
    /// SGN: diagonal preconditioner with this exponent, in [0, 1] (Martens: 0.75).
    #[arg(long, allow_negative_numbers = true, value_parser = options::unit_interval)]
    precondition: Option<f64>,
    /// SGD/Adam: the learning rate, a finite number > 0 (defaults: SGD 0.1, Adam 1e-3).
    #[arg(long, allow_negative_numbers = true, value_parser = options::positive)]
    lr: Option<f64>,
    /// SGD: momentum, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = options::below_one)]
    momentum: f64,
    /// SGD: Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    /// Write a log of every step and evaluation (.csv, or .jsonl for JSON lines).
    #[arg(long, value_parser = options::log_path)]
    log: Option<PathBuf>,
    /// Plot loss and accuracy against epochs and wall time (.svg or .png).
    #[arg(long, value_parser = options::figure_path)]
    plot: Option<PathBuf>,
    /// Write a checkpoint here after every epoch and at the end (safetensors). It may be the
    /// --resume checkpoint; a file that is not an sgn checkpoint is replaced only with --force.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Let --save replace an existing file that is not an sgn checkpoint.
    #[arg(long)]
    force: bool,
    /// Continue from a checkpoint (the same dataset, pixel scaling, optimizer, batch size and
    /// seed).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    data: super::DataArgs,
    /// Parameters to start from (safetensors) instead of initializing from --seed.
    #[arg(long, conflicts_with = "resume")]
    params: Option<PathBuf>,
    #[command(flatten)]
    backend: super::BackendArgs,
    /// SGN: the precision of CG's curvature products G v. f32: the model's own precision. bf16:
    /// the matrix products on bf16 operands with f32 sums (CPUs with AVX512-BF16, on AMX tiles
    /// where the CPU has them; elsewhere f32, with a notice).
    #[arg(long, default_value = "f32", value_parser = options::curvature)]
    curvature: crate::Curvature,
    /// Train data-parallel across the processes of an MPI run: start it as `mpiexec -n N sgn
    /// train … --distributed`; each process holds 1/N of every batch, the first alone prints and
    /// writes the log, plot and checkpoints. Needs a build with `--features mpi`.
    #[arg(long)]
    distributed: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OptimizerName {
    Sgn,
    Sgd,
    Adam,
}

/// The options only SGN uses.
const SGN_OPTIONS: [&str; 10] = [
    "cg_iters",
    "cg_tol_inf",
    "cg_early",
    "paper",
    "rho0",
    "fixed_rho",
    "no_line_search",
    "warm_start",
    "precondition",
    "curvature",
];
/// The options only SGD uses.
const SGD_OPTIONS: [&str; 2] = ["momentum", "nesterov"];

impl TrainArgs {
    /// The first option `given` on the command line that this run would not use (by its clap
    /// id), and why.
    pub(super) fn unused_option(
        &self,
        given: &dyn Fn(&str) -> bool,
    ) -> Option<(&'static str, String)> {
        let optimizer = clap::ValueEnum::to_possible_value(&self.optimizer)
            .expect("every optimizer has a name on the command line");
        let optimizer = optimizer.get_name();
        let not_used_by =
            |users: &str| format!("is not used by --optimizer {optimizer} (only by {users})");
        let unused = |ids: &[&'static str], users: &str| {
            ids.iter()
                .find(|id| given(id))
                .map(|&id| (id, not_used_by(users)))
        };
        let by_optimizer = match self.optimizer {
            OptimizerName::Sgn => {
                unused(&["lr"], "sgd and adam").or_else(|| unused(&SGD_OPTIONS, "sgd"))
            }
            OptimizerName::Sgd => unused(&SGN_OPTIONS, "sgn"),
            OptimizerName::Adam => {
                unused(&SGN_OPTIONS, "sgn").or_else(|| unused(&SGD_OPTIONS, "sgd"))
            }
        };
        let resumed = (given("rho0") && self.resume.is_some()).then(|| {
            let why = "does not apply with --resume: the checkpoint's damping continues";
            ("rho0", why.to_string())
        });
        // As PyTorch: Nesterov's look-ahead is along the momentum.
        let lone_nesterov = (self.nesterov && self.momentum == 0.0).then(|| {
            let why = "needs --momentum > 0 (Nesterov momentum looks ahead along it)";
            ("nesterov", why.to_string())
        });
        by_optimizer
            .or(resumed)
            .or(lone_nesterov)
            .or_else(|| {
                (given("force") && self.save.is_none())
                    .then(|| ("force", "applies only with --save".to_string()))
            })
            .or_else(|| self.data.unused_option(self.dataset, given))
    }
}

fn optimizer(args: &TrainArgs) -> Box<dyn Optimizer> {
    match args.optimizer {
        OptimizerName::Sgn => Box::new(Sgn::new(sgn_options(args))),
        OptimizerName::Sgd => Box::new(Sgd::new(SgdOptions {
            lr: learning_rate(args),
            momentum: args.momentum,
            nesterov: args.nesterov,
        })),
        OptimizerName::Adam => Box::new(Adam::new(AdamOptions {
            lr: learning_rate(args),
            ..AdamOptions::default()
        })),
    }
}

/// SGN's options from the command line: the paper's CG settings with --paper, each flag's
/// otherwise.
fn sgn_options(args: &TrainArgs) -> SgnOptions {
    let base = if args.paper {
        SgnOptions::paper(args.cg_iters)
    } else {
        SgnOptions {
            cg: CgOptions {
                max_iters: args.cg_iters,
                residual_max: args.cg_tol_inf,
                ..CgOptions::default()
            },
            early_cg: args.cg_early,
            ..SgnOptions::default()
        }
    };
    SgnOptions {
        rho0: args.rho0,
        damping: if args.fixed_rho {
            Damping::Fixed
        } else {
            Damping::LevenbergMarquardt
        },
        line_search: !args.no_line_search,
        warm_start: args.warm_start,
        preconditioner: args.precondition,
        ..base
    }
}

/// SGD's or Adam's learning rate: --lr, else the optimizer's default.
fn learning_rate(args: &TrainArgs) -> f64 {
    args.lr.unwrap_or(match args.optimizer {
        OptimizerName::Adam => AdamOptions::default().lr,
        OptimizerName::Sgd | OptimizerName::Sgn => SgdOptions::default().lr,
    })
}

/// The files the run reads and writes, checked before any work: outputs that would replace an
/// input, a directory or an unwritable place, and a --save over a file that is not a checkpoint
/// (unless --force).
fn check_files(args: &TrainArgs) -> Result<()> {
    let mut inputs: Vec<Named> = vec![("MODEL", &args.model)];
    inputs.extend(args.data.files());
    let dataset_files = args.data.dataset_files(args.dataset);
    inputs.extend(dataset_files.iter().map(|p| ("--dataset", p.as_path())));
    if let Some(path) = &args.params {
        inputs.push(("--params", path));
    }
    // Saving over the checkpoint the run resumes from continues it in place (writes are atomic).
    if let Some(path) = &args.resume
        && !args
            .save
            .as_ref()
            .is_some_and(|save| files::same_file(save, path))
    {
        inputs.push(("--resume", path));
    }
    let replaced: Vec<Named> = [("--plot", &args.plot), ("--save", &args.save)]
        .into_iter()
        .filter_map(|(option, path)| Some((option, path.as_deref()?)))
        .collect();
    let streamed: Vec<Named> = args
        .log
        .as_deref()
        .map(|p| ("--log", p))
        .into_iter()
        .collect();
    files::check_outputs(&inputs, &replaced, &streamed)?;
    if let Some(save) = &args.save
        && save.exists()
        && !args.force
        && !is_checkpoint(save)
    {
        return Err(Error::Eval(format!(
            "--save {}: this file exists and is not an sgn checkpoint; saving would replace it \
             (choose another path, or pass --force to replace it)",
            save.display()
        )));
    }
    Ok(())
}

/// A stop on non-finite values, with the option most likely behind it.
fn name_the_option(error: Error, args: &TrainArgs) -> Error {
    let Error::NonFinite {
        message,
        from_the_start,
    } = error
    else {
        return error;
    };
    // Rejected steps leave the parameters as they were: if none of the run was finite, every
    // step failed at the starting point, whatever the step size.
    let hint = match args.optimizer {
        _ if from_the_start => "No step of this run had finite values, all at the parameters it \
             started from, so the step size is not the cause: the model overflows there. Check \
             the starting parameters (--params, --resume, or the model's init scales) and the \
             scale of the data."
            .to_string(),
        OptimizerName::Sgn if args.resume.is_some() => "The model overflows at these \
             parameters even with the checkpoint's damping: start again (from --params, say) \
             with a larger --rho0 for shorter steps; else check the model and the data."
            .to_string(),
        OptimizerName::Sgn => format!(
            "The model overflows at these parameters even with damping: a larger --rho0 (now \
             {}) takes shorter first steps; else check the model and the data.",
            crate::data::shown(args.rho0)
        ),
        OptimizerName::Sgd | OptimizerName::Adam => format!(
            "The learning rate --lr {} is probably too large for this model: try a smaller one.",
            crate::data::shown(learning_rate(args))
        ),
    };
    Error::NonFinite {
        message: format!("{message}. {hint}"),
        from_the_start,
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    if !args.distributed {
        return train(args, &SingleProcess);
    }
    let processes = processes()?;
    // A panic must stop the others too (they may be waiting in a sum for this process).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(args, processes.as_ref())
    }))
    .unwrap_or_else(|_| {
        Err(Error::Eval(
            "this process panicked (its message is above)".to_string(),
        ))
    });
    if let Err(e) = &result
        && processes.size() > 1
    {
        // The others may be waiting in a sum for this one: stop them all, with the reason. The
        // line goes out in one write, and the launcher gets a moment to forward it before the
        // abort tears the run down.
        let line = format!(
            "error on process {} of {}: {e}\n",
            processes.rank(),
            processes.size()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(200));
        processes.stop_all();
    }
    result
}

/// The processes of the MPI run this one belongs to.
#[cfg(feature = "mpi")]
fn processes() -> Result<Box<dyn Collective>> {
    Ok(Box::new(crate::optim::mpi::Mpi::init()?))
}

#[cfg(not(feature = "mpi"))]
fn processes() -> Result<Box<dyn Collective>> {
    Err(Error::Eval(
        "--distributed needs MPI: this sgn was built without it (install an MPI library, e.g. \
         apt-get install mpich libmpich-dev libclang-dev, and build with `cargo build --release \
         --features mpi`)"
            .to_string(),
    ))
}

fn train(args: &TrainArgs, processes: &dyn Collective) -> Result<()> {
    // The first process speaks for the run: the others print, log and plot nothing.
    let first = processes.rank() == 0;
    check_files(args)?;
    let model = Model::from_file(&args.model)?;
    let mut options = args.backend.options().with_curvature(args.curvature);
    if args.backend.threads == 0 && processes.size() > 1 {
        // One thread per core, the machine's cores shared among its processes.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = (cores / processes.local_size()).clamp(1, crate::codegen::MAX_THREADS);
        options = options.with_threads(threads);
    }
    let compiled = model.compile(&options)?;
    if first && let Some(notice) = compiled.curvature_notice() {
        eprintln!("notice: {notice}");
    }
    let dataset = args
        .data
        .load(args.dataset, args.resume.as_deref(), &model)?;
    let params = super::params(&model, args.params.as_deref(), args.seed)?;
    let train_options = TrainOptions {
        batch_size: args.batch,
        stop: StopRule {
            epochs: args.epochs,
            time_limit: args.time_limit,
        },
        seed: args.seed,
        checkpoint: args.save.clone(),
        eval_at: args.eval_at.clone(),
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(&compiled, &dataset, &params, optimizer(args), train_options)?
        .distributed(processes)?;
    if let Some(path) = &args.resume {
        trainer.resume(path)?;
    }
    let mut log = match &args.log {
        _ if !first => None,
        Some(path) if args.resume.is_some() => Some(LogWriter::append_to(path)?),
        Some(path) => Some(LogWriter::create(path)?),
        None => None,
    };
    if !first {
        return trainer
            .run(&mut |_| {})
            .map_err(|e| name_the_option(e, args));
    }
    let among = match processes.size() {
        1 => String::new(),
        n => format!(" across {n} processes"),
    };
    let curvature = match compiled.curvature() {
        crate::Curvature::Bf16 => format!(
            ", bf16 curvature on {}",
            crate::codegen::bf16_products_unit()
        ),
        crate::Curvature::Full => String::new(),
    };
    println!(
        "training {} on {} ({} train / {} test) with {:?}, batch {}{among}{curvature}",
        model.name,
        dataset.title(),
        dataset.train.len(),
        dataset.test.len(),
        args.optimizer,
        args.batch
    );
    let bar = progress_bar(args, dataset.train.len());
    let started = Instant::now();
    let mut log_error = None;
    let result = trainer.run(&mut |event| match event {
        TrainEvent::Recorded(record) => {
            if let Some(log) = &mut log
                && let Err(e) = log.write(record)
            {
                log_error.get_or_insert(e);
            }
            show(&bar, record);
        }
        TrainEvent::NonFinite { iteration, what } => {
            say(
                &bar,
                format!("iteration {iteration}: {what}; step rejected, parameters unchanged"),
            );
        }
        TrainEvent::Checkpoint(_) => {}
    });
    bar.finish_and_clear();
    result.map_err(|e| name_the_option(e, args))?;
    if let Some(e) = log_error {
        return Err(e);
    }
    summary(trainer.history(), started.elapsed());
    if let Some(path) = &args.plot {
        plot(
            trainer.history(),
            &format!(
                "{} on {} ({:?})",
                model.name,
                dataset.title(),
                args.optimizer
            ),
            path,
        )?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.save {
        println!("checkpoint {}", path.display());
    }
    Ok(())
}

fn progress_bar(args: &TrainArgs, examples: usize) -> ProgressBar {
    let per_epoch = (examples / args.batch).max(1) as u64;
    let bar = match args.epochs {
        Some(epochs) => ProgressBar::new(epochs * per_epoch),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn show(bar: &ProgressBar, record: &Record) {
    let loss = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    match record.kind {
        RecordKind::Step => {
            bar.set_position(record.iteration);
            let mut msg = format!("loss {}", loss(record.train_loss));
            if let (Some(rho), Some(cg)) = (record.rho, record.cg_iters) {
                msg.push_str(&format!(" ρ {rho:.2e} cg {cg}"));
            }
            bar.set_message(msg);
        }
        RecordKind::Eval => {
            let accuracy = record.test_accuracy.map_or(String::new(), |a| {
                format!(", test accuracy {:.2}%", 100.0 * a)
            });
            say(
                bar,
                format!(
                    "epoch {:.2}: train loss {}, test loss {}{accuracy} ({:.1} s)",
                    record.epoch,
                    loss(record.train_loss),
                    loss(record.test_loss),
                    record.wall_time
                ),
            );
        }
    }
}

/// A line above the progress bar, or on stdout when there is no bar (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// The run's last line. Training time (accumulated over resumed runs, as the log's wall_time)
/// and this process's time (with evaluation and checkpoints) are told apart.
fn summary(history: &[Record], elapsed: Duration) {
    let Some(last) = history.iter().rev().find(|r| r.kind == RecordKind::Eval) else {
        return;
    };
    let epochs = last.epoch.max(f64::MIN_POSITIVE);
    let accuracy = last.test_accuracy.map_or(String::new(), |a| {
        format!(", test accuracy {:.2}%", 100.0 * a)
    });
    println!(
        "done: {} steps, {:.2} epochs, {:.1} s of training ({:.2} s/epoch), test loss \
         {:.5}{accuracy}; this process: {:.1} s with evaluation and checkpoints",
        last.iteration,
        last.epoch,
        last.wall_time,
        last.wall_time / epochs,
        last.test_loss.unwrap_or(f64::NAN),
        elapsed.as_secs_f64(),
    );
}
