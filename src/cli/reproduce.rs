//! `sgn reproduce EXPERIMENT… [--seeds N] [--budget-scale X] [--out DIR]`: the SGN paper's
//! experiments (Gargiani et al. 2020) on this machine, each optimizer for N seeds within the
//! paper's time budgets, written as `DIR/report.md` beside the published numbers, with a figure
//! and the logs of every run.
//!
//! The networks, batch sizes, SGN settings (`--paper`: CG to ‖r‖∞ ≤ 1e-6, the first 10 steps up
//! to 10 iterations), SGD learning rates and budgets are the paper's (../shared/PAPER.md); Adam
//! (lr 1e-3) stands beside them as the baseline users pick today. The MLPs start from the
//! paper's initialization, every weight ~ N(0, 1); the CNNs' files already hold the authors'.
//!
//! A run's log is `logs/{experiment}-{optimizer}-seed{seed}-{budget}s.csv`, renamed to that name
//! when the run finishes: a later invocation with the same `--out` reads finished runs back
//! instead of training them again, so an interrupted reproduction continues where it stopped
//! (delete a log to run it again). CIFAR-10, which the user provides, is reported as not run when
//! its files are missing.

use super::options;
use crate::data::{BostonFeatures, Dataset, DatasetName, LoadOptions, PixelScale, SineOptions};
use crate::ir::init::Init;
use crate::ir::store::{init_params, write_atomically};
use crate::optim::report::{LogWriter, plot_seeds, read_log};
use crate::optim::{
    Adam, AdamOptions, Optimizer, Record, RecordKind, Sgd, SgdOptions, Sgn, SgnOptions, StopRule,
    TrainEvent, TrainOptions, Trainer,
};
use crate::{CompiledModel, Error, Model, Result};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// The experiments to run (all by default): mnist, fashion, cifar10, boston, sine10, sine100.
    #[arg(value_enum)]
    experiments: Vec<ExperimentName>,
    /// Runs per optimizer, seeded 0, 1, … (at least 1; the paper averages 5).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = options::at_least_one::<u64>)]
    seeds: u64,
    /// Multiplies every time budget, a number in (0, 1000] (0.1: a quick look).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0, value_parser = options::budget_scale)]
    budget_scale: f64,
    /// Where report.md, the figures and the logs go (created if missing).
    #[arg(long, default_value = "reproduction")]
    out: PathBuf,
    /// Where datasets are cached (default: $SGN_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    backend: super::BackendArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExperimentName {
    Mnist,
    Fashion,
    Cifar10,
    Boston,
    Sine10,
    Sine100,
}

/// What a run is judged by.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// Test accuracy, higher is better.
    Accuracy,
    /// Test mean squared error, lower is better.
    Mse,
}

/// One optimizer setting of an experiment.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setting {
    /// SGN with the paper's CG rules and this iteration cap.
    Sgn(usize),
    Sgd(f64),
    Adam(f64),
}

impl Setting {
    fn label(self) -> String {
        match self {
            Setting::Sgn(k) => format!("SGN({k})"),
            Setting::Sgd(lr) => format!("SGD({lr})"),
            Setting::Adam(lr) => format!("Adam({lr})"),
        }
    }

    /// The label as a file name part.
    fn slug(self) -> String {
        self.label()
            .to_lowercase()
            .replace(['(', ')'], "")
            .replace('.', "_")
    }

    fn optimizer(self) -> Box<dyn Optimizer> {
        match self {
            Setting::Sgn(k) => Box::new(Sgn::new(SgnOptions::paper(k))),
            Setting::Sgd(lr) => Box::new(Sgd::new(SgdOptions {
                lr,
                ..SgdOptions::default()
            })),
            Setting::Adam(lr) => Box::new(Adam::new(AdamOptions {
                lr,
                ..AdamOptions::default()
            })),
        }
    }
}

/// A budget and the paper's numbers at it: its SGN and its best SGD (`None` where it gives
/// none).
#[derive(Clone, Copy, Debug)]
struct Budget {
    seconds: f64,
    paper_sgn: f64,
    paper_sgd: Option<f64>,
}

/// One of the paper's experiments.
struct Experiment {
    name: ExperimentName,
    title: &'static str,
    model: &'static str,
    /// Every weight ~ N(0, 1), biases 0 (the paper's MLPs), instead of the file's initializers.
    paper_init: bool,
    dataset: DatasetName,
    pixels: PixelScale,
    boston: BostonFeatures,
    /// The sine dataset's frequency.
    frequency: Option<f64>,
    batch: usize,
    metric: Metric,
    budgets: &'static [Budget],
    settings: &'static [Setting],
    /// Levels whose first crossing time the report gives.
    levels: &'static [f64],
}

const fn budget(seconds: f64, paper_sgn: f64, paper_sgd: Option<f64>) -> Budget {
    Budget {
        seconds,
        paper_sgn,
        paper_sgd,
    }
}

/// The paper's experiments (../shared/PAPER.md). The regressions' numbers are final test MSEs
/// of runs of about the budget's length; SGD's for f = 100 is its "near 0.50".
static EXPERIMENTS: [Experiment; 6] = [
    Experiment {
        name: ExperimentName::Mnist,
        title: "MNIST, MLP 784-20-20-20-10 (sigmoid), batch 1000",
        model: "ir/mnist_mlp.sgn",
        paper_init: true,
        dataset: DatasetName::Mnist,
        pixels: PixelScale::Unit,
        boston: BostonFeatures::Standardized,
        frequency: None,
        batch: 1000,
        metric: Metric::Accuracy,
        budgets: &[
            budget(25.0, 0.929, Some(0.898)),
            budget(100.0, 0.940, Some(0.930)),
        ],
        settings: &[
            Setting::Sgn(3),
            Setting::Sgd(1.0),
            Setting::Sgd(10.0),
            Setting::Adam(1e-3),
        ],
        levels: &[0.90, 0.92, 0.94],
    },
    Experiment {
        name: ExperimentName::Fashion,
        title: "Fashion-MNIST, LeNet (the authors' initialization), batch 1000",
        model: "ir/fashion_lenet.sgn",
        paper_init: false,
        dataset: DatasetName::FashionMnist,
        pixels: PixelScale::Standardized,
        boston: BostonFeatures::Standardized,
        frequency: None,
        batch: 1000,
        metric: Metric::Accuracy,
        budgets: &[
            budget(50.0, 0.856, Some(0.867)),
            budget(150.0, 0.878, Some(0.885)),
        ],
        settings: &[Setting::Sgn(5), Setting::Sgd(0.1), Setting::Adam(1e-3)],
        levels: &[0.85, 0.88],
    },
    Experiment {
        name: ExperimentName::Cifar10,
        title: "CIFAR-10, convnet (the authors' initialization), batch 1000",
        model: "ir/cifar_cnn.sgn",
        paper_init: false,
        dataset: DatasetName::Cifar10,
        pixels: PixelScale::Standardized,
        boston: BostonFeatures::Standardized,
        frequency: None,
        batch: 1000,
        metric: Metric::Accuracy,
        budgets: &[
            budget(650.0, 0.647, Some(0.631)),
            budget(2000.0, 0.710, Some(0.609)),
        ],
        settings: &[Setting::Sgn(10), Setting::Sgd(0.1), Setting::Adam(1e-3)],
        levels: &[0.6, 0.65, 0.7],
    },
    Experiment {
        name: ExperimentName::Boston,
        title: "Boston housing (raw features), MLP 13-100-100-1 (sigmoid), batch 101",
        model: "ir/boston_mlp.sgn",
        paper_init: true,
        dataset: DatasetName::Boston,
        pixels: PixelScale::Unit,
        // The authors' setup (their SGN's MSE is reached only this way, docs/PAPER.md).
        boston: BostonFeatures::Raw,
        frequency: None,
        batch: 101,
        metric: Metric::Mse,
        budgets: &[budget(10.0, 0.0097, Some(0.0260))],
        settings: &[
            Setting::Sgn(10),
            Setting::Sgd(0.01),
            Setting::Sgd(0.1),
            Setting::Adam(1e-3),
        ],
        levels: &[0.02, 0.01],
    },
    Experiment {
        name: ExperimentName::Sine10,
        title: "sine, f = 10, MLP 1-20-20-20-1 (sigmoid), batch 1000",
        model: "ir/sine_mlp.sgn",
        paper_init: true,
        dataset: DatasetName::Sine,
        pixels: PixelScale::Unit,
        boston: BostonFeatures::Standardized,
        frequency: Some(10.0),
        batch: 1000,
        metric: Metric::Mse,
        budgets: &[budget(100.0, 1.0e-4, Some(0.146))],
        settings: &[Setting::Sgn(20), Setting::Sgd(0.1), Setting::Adam(1e-3)],
        levels: &[1e-2, 1e-3, 1e-4],
    },
    Experiment {
        name: ExperimentName::Sine100,
        title: "sine, f = 100, MLP 1-20-20-20-1 (sigmoid), batch 1000",
        model: "ir/sine_mlp.sgn",
        paper_init: true,
        dataset: DatasetName::Sine,
        pixels: PixelScale::Unit,
        boston: BostonFeatures::Standardized,
        frequency: Some(100.0),
        batch: 1000,
        metric: Metric::Mse,
        budgets: &[budget(100.0, 0.353, Some(0.50))],
        settings: &[Setting::Sgn(30), Setting::Sgd(0.1), Setting::Adam(1e-3)],
        levels: &[0.45, 0.4, 0.353],
    },
];

fn experiment(name: ExperimentName) -> &'static Experiment {
    EXPERIMENTS
        .iter()
        .find(|e| e.name == name)
        .expect("every name has an experiment")
}

impl ExperimentName {
    fn slug(self) -> &'static str {
        match self {
            ExperimentName::Mnist => "mnist",
            ExperimentName::Fashion => "fashion",
            ExperimentName::Cifar10 => "cifar10",
            ExperimentName::Boston => "boston",
            ExperimentName::Sine10 => "sine10",
            ExperimentName::Sine100 => "sine100",
        }
    }
}

/// The runs of one setting: each seed's history.
struct Runs {
    setting: Setting,
    histories: Vec<Vec<Record>>,
}

/// What became of an experiment.
enum Outcome {
    /// Each setting's runs.
    Ran(Vec<Runs>),
    /// Its data is the user's to provide and could not be read: why.
    NoData(Error),
}

/// How many runs an invocation trained and how many it read back from finished logs.
#[derive(Default)]
struct RunCounts {
    trained: usize,
    read_back: usize,
}

pub fn run(args: &ReproduceArgs) -> Result<()> {
    let started = Instant::now();
    let names = if args.experiments.is_empty() {
        EXPERIMENTS.iter().map(|e| e.name).collect()
    } else {
        args.experiments.clone()
    };
    let logs = args.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let mut report = String::new();
    let mut counts = RunCounts::default();
    for name in names {
        let experiment = experiment(name);
        match run_experiment(experiment, args, &logs, &mut counts)? {
            Outcome::Ran(runs) => {
                let figure = args.out.join(format!("{}.png", name.slug()));
                let groups: Vec<(String, Vec<&[Record]>)> = runs
                    .iter()
                    .map(|r| {
                        (
                            r.setting.label(),
                            r.histories.iter().map(|h| &h[..]).collect(),
                        )
                    })
                    .collect();
                let groups: Vec<(&str, Vec<&[Record]>)> =
                    groups.iter().map(|(n, h)| (&n[..], h.clone())).collect();
                plot_seeds(&groups, experiment.title, &figure)?;
                write_section(&mut report, experiment, &runs, args.budget_scale);
            }
            Outcome::NoData(why) => {
                eprintln!("{}: not run: {why}", name.slug());
                let _ = writeln!(
                    report,
                    "## {}: {}\n\nNot run: {why}\n",
                    name.slug(),
                    experiment.title
                );
            }
        }
        // After every experiment, so that a long reproduction shows what it has so far.
        write_report(args, &report, started, &counts)?;
    }
    println!("wrote {}", args.out.join("report.md").display());
    Ok(())
}

fn write_report(
    args: &ReproduceArgs,
    sections: &str,
    started: Instant,
    counts: &RunCounts,
) -> Result<()> {
    let header = format!(
        "# The SGN paper on this machine\n\n`sgn reproduce` with {} seed(s) per optimizer, \
         budget scale {}; this invocation took {:.0} s, trained {} run(s) and read {} finished \
         run(s) back from their logs. Times are training time (compilation, evaluation and \
         checkpoints left out), as the paper measures its budgets; the paper's numbers are from \
         ../shared/PAPER.md (GPU for the classifications, a laptop CPU for the regressions). \
         Logs: `logs/`.\n\n",
        args.seeds,
        args.budget_scale,
        started.elapsed().as_secs_f64(),
        counts.trained,
        counts.read_back,
    );
    write_atomically(&args.out.join("report.md"), |file, _| {
        file.write_all(header.as_bytes())?;
        file.write_all(sections.as_bytes())
    })?;
    Ok(())
}

/// The model (with the paper's initialization where it asks for it), compiled, and its data.
struct Prepared {
    model: Model,
    compiled: CompiledModel,
    dataset: Dataset,
}

/// Compiles `experiment`'s model and loads its data; `Ok(Err(why))` when files the user
/// provides are missing.
fn prepare(
    experiment: &Experiment,
    args: &ReproduceArgs,
) -> Result<std::result::Result<Prepared, Error>> {
    let mut model = Model::from_file(Path::new(experiment.model))?;
    if experiment.paper_init {
        for param in &mut model.params {
            param.init = if param.ty.shape.dims().len() >= 2 {
                Init::Normal(1.0)
            } else {
                Init::Zeros
            };
        }
    }
    let compiled = model.compile(&args.backend.options())?;
    let options = LoadOptions {
        sine: SineOptions {
            frequency: experiment
                .frequency
                .unwrap_or(SineOptions::default().frequency),
            ..SineOptions::default()
        },
        pixels: experiment.pixels,
        boston: experiment.boston,
    };
    let data_dir = crate::data::resolve_data_dir(args.data_dir.as_deref());
    let loaded = crate::data::load(experiment.dataset, &options, &data_dir, |reason| {
        eprintln!(
            "fetching {} into {} ({reason}) ...",
            experiment.dataset,
            data_dir.display()
        );
    });
    Ok(match loaded {
        Ok(dataset) => Ok(Prepared {
            model,
            compiled,
            dataset,
        }),
        // Files the user did not provide make the experiment "not run"; files that are there but
        // damaged are an error like any other.
        Err(why) if !experiment.dataset.files_present(&data_dir) => Err(why),
        Err(e) => return Err(e),
    })
}

/// Trains every setting of `experiment` for every seed, or reads a finished run's log back; logs
/// go to `logs`.
fn run_experiment(
    experiment: &Experiment,
    args: &ReproduceArgs,
    logs: &Path,
    counts: &mut RunCounts,
) -> Result<Outcome> {
    let last = experiment.budgets.iter().fold(0.0, |m, b| b.seconds.max(m)) * args.budget_scale;
    let mut prepared = None;
    let mut all = Vec::new();
    for &setting in experiment.settings {
        let mut histories = Vec::new();
        for seed in 0..args.seeds {
            let run = format!(
                "{}: {} seed {seed}",
                experiment.name.slug(),
                setting.label()
            );
            // The budget in whole milliseconds: a product like 100 × 0.1 prints with rounding
            // noise as seconds.
            let log_path = logs.join(format!(
                "{}-{}-seed{seed}-{}ms.csv",
                experiment.name.slug(),
                setting.slug(),
                (last * 1000.0).round() as u64
            ));
            if log_path.exists() {
                eprintln!("{run}: read back from {}", log_path.display());
                histories.push(finished_run(&log_path, last)?);
                counts.read_back += 1;
                continue;
            }
            let Prepared {
                model,
                compiled,
                dataset,
            } = match prepared {
                Some(ref p) => p,
                None => match prepare(experiment, args)? {
                    Ok(p) => &*prepared.insert(p),
                    Err(why) => return Ok(Outcome::NoData(why)),
                },
            };
            eprintln!("{run}, {last:.1} s ...");
            let params = init_params(&model.params, seed)?;
            let train_options = TrainOptions {
                batch_size: experiment.batch,
                stop: StopRule {
                    epochs: None,
                    time_limit: Some(Duration::from_secs_f64(last)),
                },
                seed,
                eval_at: experiment
                    .budgets
                    .iter()
                    .map(|b| Duration::from_secs_f64(b.seconds * args.budget_scale))
                    .collect(),
                ..TrainOptions::default()
            };
            // Under a temporary name until the run finishes, so that only finished runs are
            // read back.
            let running = log_path.with_extension("running.csv");
            let mut log = LogWriter::create(&running)?;
            let mut trainer = Trainer::new(
                compiled,
                dataset,
                &params,
                setting.optimizer(),
                train_options,
            )?;
            let mut failed = None;
            trainer.run(&mut |event| {
                if let (TrainEvent::Recorded(record), None) = (event, &failed) {
                    failed = log.write(record).err();
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            std::fs::rename(&running, &log_path).map_err(|e| Error::io(&log_path, e))?;
            counts.trained += 1;
            histories.push(trainer.history().to_vec());
        }
        all.push(Runs { setting, histories });
    }
    Ok(Outcome::Ran(all))
}

/// The history in the log of a run finished at its `budget` (seconds of training): steps, and
/// last the evaluation a run ends with, past the budget. A log cut short (or emptied) would
/// otherwise enter the report as a run of its length.
fn finished_run(path: &std::path::Path, budget: f64) -> Result<Vec<Record>> {
    let history = read_log(path)?;
    let has_steps = history.iter().any(|r| r.kind == RecordKind::Step);
    let ended =
        (history.last()).is_some_and(|r| r.kind == RecordKind::Eval && r.wall_time >= budget);
    if !(has_steps && ended) {
        return Err(Error::Data(format!(
            "{}: not the log of a finished run (it should end with the evaluation after {budget} \
             s of training); delete it to run that training again",
            path.display()
        )));
    }
    Ok(history)
}

/// The value a run is judged by in an evaluation record.
fn value(metric: Metric, record: &Record) -> Option<f64> {
    match metric {
        Metric::Accuracy => record.test_accuracy,
        Metric::Mse => record.test_loss,
    }
}

/// The mean over the seeds of the runs' values at training time `t` (`None` if none has one).
fn mean_at(metric: Metric, runs: &Runs, t: f64) -> Option<f64> {
    let values: Vec<f64> = runs
        .histories
        .iter()
        .filter_map(|h| at_time(metric, h, t))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A run's value at training time `t`: its first evaluation at or after `t`.
fn at_time(metric: Metric, history: &[Record], t: f64) -> Option<f64> {
    history
        .iter()
        .filter(|r| r.kind == RecordKind::Eval)
        .find(|r| r.wall_time >= t)
        .and_then(|r| value(metric, r))
}

/// The training time of a run's first evaluation that reaches `level`.
fn time_to(metric: Metric, history: &[Record], level: f64) -> Option<f64> {
    history
        .iter()
        .filter(|r| r.kind == RecordKind::Eval)
        .find(|r| {
            value(metric, r).is_some_and(|v| match metric {
                Metric::Accuracy => v >= level,
                Metric::Mse => v <= level,
            })
        })
        .map(|r| r.wall_time)
}

/// `mean ± std` (sample standard deviation) of `values`, each shown by `show`; the count of
/// runs that have no value is said.
fn summary(values: &[Option<f64>], show: impl Fn(f64) -> String) -> String {
    let got: Vec<f64> = values.iter().flatten().copied().collect();
    if got.is_empty() {
        return "—".to_string();
    }
    let n = got.len() as f64;
    let mean = got.iter().sum::<f64>() / n;
    let std = if got.len() > 1 {
        (got.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let missing = values.len() - got.len();
    let note = if missing > 0 {
        format!(" ({missing} of {} not reached)", values.len())
    } else {
        String::new()
    };
    format!("{} ± {}{note}", show(mean), show(std))
}

fn show_metric(metric: Metric) -> impl Fn(f64) -> String {
    move |v| match metric {
        Metric::Accuracy => format!("{:.2}%", 100.0 * v),
        Metric::Mse => format!("{v:.3e}"),
    }
}

/// One experiment's section of the report.
fn write_section(out: &mut String, experiment: &Experiment, runs: &[Runs], scale: f64) {
    let metric = experiment.metric;
    let show = show_metric(metric);
    let what = match metric {
        Metric::Accuracy => "test accuracy",
        Metric::Mse => "test MSE",
    };
    let _ = writeln!(out, "## {}: {}\n", experiment.name.slug(), experiment.title);
    let budgets: Vec<String> = experiment
        .budgets
        .iter()
        .map(|b| format!("{what} at {} s", b.seconds * scale))
        .collect();
    let levels: Vec<String> = experiment
        .levels
        .iter()
        .map(|&l| format!("time to {}", show(l)))
        .collect();
    let _ = writeln!(
        out,
        "| optimizer | {} | epochs | {} |",
        budgets.join(" | "),
        levels.join(" | ")
    );
    let columns = 2 + budgets.len() + levels.len();
    let _ = writeln!(out, "|{}", "---|".repeat(columns));
    for b in [false, true] {
        let cells: Vec<String> = experiment
            .budgets
            .iter()
            .map(|budget| match (b, budget.paper_sgd) {
                (false, _) => show(budget.paper_sgn),
                (true, Some(sgd)) => show(sgd),
                (true, None) => "—".to_string(),
            })
            .collect();
        let name = if b { "paper: best SGD" } else { "paper: SGN" };
        let _ = writeln!(
            out,
            "| {name} | {} | | {} |",
            cells.join(" | "),
            vec![""; levels.len()].join(" | ")
        );
    }
    for r in runs {
        let cells: Vec<String> = experiment
            .budgets
            .iter()
            .map(|b| {
                let values: Vec<Option<f64>> = r
                    .histories
                    .iter()
                    .map(|h| at_time(metric, h, b.seconds * scale))
                    .collect();
                summary(&values, &show)
            })
            .collect();
        let epochs: Vec<Option<f64>> = r
            .histories
            .iter()
            .map(|h| h.last().map(|r| r.epoch))
            .collect();
        let times: Vec<String> = experiment
            .levels
            .iter()
            .map(|&level| {
                let t: Vec<Option<f64>> = r
                    .histories
                    .iter()
                    .map(|h| time_to(metric, h, level))
                    .collect();
                summary(&t, |s| format!("{s:.1} s"))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.setting.label(),
            cells.join(" | "),
            summary(&epochs, |e| format!("{e:.1}")),
            times.join(" | ")
        );
    }
    for r in runs.iter().filter(|r| matches!(r.setting, Setting::Sgn(_))) {
        let steps: Vec<&Record> = r
            .histories
            .iter()
            .flatten()
            .filter(|s| s.kind == RecordKind::Step)
            .collect();
        let rejected = steps.iter().filter(|s| s.step_size == Some(0.0)).count();
        let rho: Vec<f64> = steps.iter().filter_map(|s| s.rho).collect();
        let cg: Vec<f64> = steps
            .iter()
            .filter_map(|s| s.cg_iters.map(|c| c as f64))
            .collect();
        let mean_cg = cg.iter().sum::<f64>() / cg.len().max(1) as f64;
        let _ = writeln!(
            out,
            "\n{}: {} steps over the seeds, {rejected} rejected; ρ from {:.2e} to {:.2e}; {mean_cg:.2} \
             CG iterations per step on average.",
            r.setting.label(),
            steps.len(),
            rho.iter().copied().fold(f64::INFINITY, f64::min),
            rho.iter().copied().fold(0.0, f64::max),
        );
    }
    let better = |a: f64, b: f64| match metric {
        Metric::Accuracy => a >= b,
        Metric::Mse => a <= b,
    };
    let sgn = runs.iter().find(|r| matches!(r.setting, Setting::Sgn(_)));
    if let Some(sgn) = sgn {
        for b in experiment.budgets {
            let t = b.seconds * scale;
            let Some(mean) = mean_at(metric, sgn, t) else {
                let _ = writeln!(
                    out,
                    "\nAt {t} s, {} has no evaluation.",
                    sgn.setting.label()
                );
                continue;
            };
            let verdict = if better(mean, b.paper_sgn) {
                "meets"
            } else {
                "does not meet"
            };
            let _ = write!(
                out,
                "\nAt {t} s, {}'s mean {} {verdict} the paper's SGN ({})",
                sgn.setting.label(),
                show(mean),
                show(b.paper_sgn)
            );
            let best_other = runs
                .iter()
                .filter(|r| !matches!(r.setting, Setting::Sgn(_)))
                .filter_map(|r| Some((mean_at(metric, r, t)?, r.setting.label())))
                .reduce(|x, y| if better(x.0, y.0) { x } else { y });
            match best_other {
                Some((other, label)) => {
                    let beats = if better(mean, other) {
                        "beats"
                    } else {
                        "does not beat"
                    };
                    let _ = writeln!(
                        out,
                        " and {beats} the best other optimizer of this run, {label} ({}).",
                        show(other)
                    );
                }
                None => {
                    let _ = writeln!(out, ".");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n![{}]({}.png)\n",
        experiment.title,
        experiment.name.slug()
    );
}
