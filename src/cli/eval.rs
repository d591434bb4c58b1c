//! `sgn eval MODEL --inputs I --out O [--params P | --seed S] [--vector V]`: loss, output and
//! gradient on one batch; with a direction, also `J v` and `G v`. Or `sgn eval MODEL --dataset
//! NAME [--split test|train] [--out O]`: loss (and accuracy) over a dataset's split; or over the
//! user's files (`--test FILE`, or `--train FILE` and its held-out split).

use super::files::{self, Named};
use crate::data::{DatasetName, Split};
use crate::ir::store::{TensorMap, check_tensors};
use crate::ir::{Arg, ArgRole, DType, Tensor};
use crate::{Error, Model, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model file (`*.sgn`).
    model: PathBuf,
    /// Parameters (safetensors, named as in the model, or a checkpoint); without it, initialize
    /// from --seed.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Seed for parameter initialization when --params is not given (any whole number >= 0).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// The batch: every `input` and `target` of the model, by name (safetensors).
    #[arg(long, required_unless_present_any = ["dataset", "train", "test"], conflicts_with_all = ["dataset", "train", "test", "pixels"])]
    inputs: Option<PathBuf>,
    /// A direction `v` (safetensors, one tensor `v.<param>` per parameter): adds `jv` (J v, shaped
    /// like the output) and `gv.<param>` (G v) to the results.
    #[arg(long, conflicts_with_all = ["dataset", "train", "test"])]
    vector: Option<PathBuf>,
    /// Instead of --inputs: the mean loss, and for classification the accuracy, over a split of
    /// this dataset (mnist, fashion-mnist, cifar10, boston or sine), fed to the model as
    /// `train` feeds it.
    #[arg(long)]
    dataset: Option<DatasetName>,
    /// With --dataset or your files: the split to evaluate (with --test FILE alone, the test
    /// split is the whole file).
    #[arg(long, value_enum, default_value_t = SplitName::Test)]
    split: SplitName,
    #[command(flatten)]
    data: super::DataArgs,
    /// Where to write `loss` (shape []), the network output and `grad.<param>` (safetensors); with
    /// --dataset, `loss` and (for classification) `accuracy`, and optional.
    #[arg(long, required_unless_present_any = ["dataset", "train", "test"])]
    out: Option<PathBuf>,
    /// Let --out replace an existing file that is not an earlier `sgn eval` result (a
    /// checkpoint, say).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    backend: super::BackendArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SplitName {
    Train,
    Test,
}

impl EvalArgs {
    /// The first option `given` on the command line that this evaluation would not use (by its
    /// clap id), and why.
    pub(super) fn unused_option(
        &self,
        given: &dyn Fn(&str) -> bool,
    ) -> Option<(&'static str, String)> {
        (given("split") && self.inputs.is_some())
            .then(|| {
                (
                    "split",
                    "applies to a dataset or your files, not to --inputs".to_string(),
                )
            })
            .or_else(|| {
                (given("force") && self.out.is_none())
                    .then(|| ("force", "applies only with --out".to_string()))
            })
            .or_else(|| self.data.unused_option(self.dataset, given))
    }
}

/// Whether `path` holds what `sgn eval` writes: a safetensors file with a `loss` tensor, whose
/// metadata names the model, and that is no checkpoint.
fn is_eval_result(path: &Path) -> bool {
    let Some(header) = crate::optim::checkpoint::safetensors_header(path) else {
        return false;
    };
    let metadata = header.get("__metadata__").and_then(|m| m.as_object());
    header.contains_key("loss")
        && metadata.is_some_and(|m| m.contains_key("model") && !m.contains_key("format"))
}

/// Examples per forward pass when evaluating a dataset (as training evaluates its test split).
const EVAL_CHUNK: usize = 1000;

pub fn run(args: &EvalArgs) -> Result<()> {
    let mut inputs: Vec<Named> = vec![("MODEL", &args.model)];
    inputs.extend(args.inputs.as_deref().map(|p| ("--inputs", p)));
    inputs.extend(args.params.as_deref().map(|p| ("--params", p)));
    inputs.extend(args.vector.as_deref().map(|p| ("--vector", p)));
    inputs.extend(args.data.files());
    let dataset_files = args.data.dataset_files(args.dataset);
    inputs.extend(dataset_files.iter().map(|p| ("--dataset", p.as_path())));
    let outputs: Vec<Named> = args
        .out
        .as_deref()
        .map(|p| ("--out", p))
        .into_iter()
        .collect();
    files::check_outputs(&inputs, &outputs, &[])?;
    if let Some(out) = &args.out
        && out.exists()
        && !args.force
        && !is_eval_result(out)
    {
        return Err(Error::Eval(format!(
            "--out {}: this file exists and is not an earlier `sgn eval` result; writing would \
             replace it (choose another path, or pass --force to replace it)",
            out.display()
        )));
    }
    let model = Model::from_file(&args.model)?;
    let params = super::params(&model, args.params.as_deref(), args.seed)?;
    match (&args.inputs, &args.out) {
        (Some(inputs), Some(out)) => on_batch(args, inputs, out, &model, &params),
        (None, out) => on_dataset(args, &model, &params, out.as_deref()),
        (Some(_), None) => unreachable!("clap requires --out with --inputs"),
    }
}

/// The loss (and accuracy) of the model over a split of a dataset.
fn on_dataset(
    args: &EvalArgs,
    model: &Model,
    params: &TensorMap,
    out: Option<&Path>,
) -> Result<()> {
    let dataset = args
        .data
        .load(args.dataset, args.params.as_deref(), model)?;
    // Another dataset is a fair question (how does it transfer?), but easily a mistake: other
    // pixels, another held-out fraction, Boston's raw features. Say so.
    if let Some(path) = &args.params
        && let Some(trained) = crate::optim::checkpoint::checkpoint_dataset(path)
        && trained != dataset.name
        && args.data.trained_on_a_split()
    {
        eprintln!(
            "note: {} was trained on '{trained}'; evaluating on '{}'",
            path.display(),
            dataset.name
        );
    }
    let compiled = model.compile(&args.backend.options())?;
    let split: &Split = match args.split {
        SplitName::Train if dataset.train.is_empty() => {
            return Err(Error::Data(format!(
                "--split train: {} has no train examples (evaluate a train file with --train)",
                dataset.name
            )));
        }
        SplitName::Train => &dataset.train,
        SplitName::Test => &dataset.test,
    };
    let (loss, accuracy) =
        crate::optim::train::evaluate(&compiled, params, &dataset, split, EVAL_CHUNK)?;
    let what = match args.split {
        SplitName::Train => "train",
        SplitName::Test => "test",
    };
    println!(
        "{} on {}, {what} split ({} examples)",
        model.name,
        dataset.title(),
        split.len()
    );
    println!("loss {loss}");
    if let Some(accuracy) = accuracy {
        println!("accuracy {accuracy} ({:.2}%)", 100.0 * accuracy);
    }
    if let Some(out) = out {
        let mut results = TensorMap::new();
        results.insert("loss", Tensor::scalar(DType::F64, loss));
        if let Some(accuracy) = accuracy {
            results.insert("accuracy", Tensor::scalar(DType::F64, accuracy));
        }
        let mut metadata = BTreeMap::from([
            ("model".to_string(), model.name.clone()),
            ("dataset".to_string(), dataset.name.clone()),
            ("split".to_string(), what.to_string()),
        ]);
        if let Some(image) = dataset.image {
            metadata.insert("pixels".to_string(), image.pixels.to_string());
        }
        results.save(out, &metadata)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Loss, output and gradient (and with a direction J v and G v) on the batch in `inputs`.
fn on_batch(
    args: &EvalArgs,
    inputs: &Path,
    out: &Path,
    model: &Model,
    params: &TensorMap,
) -> Result<()> {
    let batch = TensorMap::load(inputs)?;
    let batch_args = super::declared(model, &[ArgRole::Input, ArgRole::Target]);
    let inputs_file = inputs.display().to_string();
    check_tensors(&batch, &batch_args, &inputs_file)?;
    check_not_empty(&batch, &batch_args, &inputs_file)?;
    super::check_finite(&batch, inputs, "inputs and targets")?;
    // The sizes the batch's tensors share (the batch size), checked here to name the file.
    let by_declaration: Option<Vec<&Tensor>> = (model.graph.args().iter())
        .map(|arg| batch.get(&arg.name).or_else(|| params.get(&arg.name)))
        .collect();
    if let Some(all) = by_declaration
        && let Err(e) = crate::ir::interp::bind_dims(&model.graph, &all)
    {
        return Err(Error::Tensor(format!("{inputs_file}: {e}")));
    }
    let v = match &args.vector {
        Some(path) => {
            let map = TensorMap::load(path)?;
            super::check_finite(&map, path, "directions")?;
            Some(directions(model, &map, path)?)
        }
        None => None,
    };
    let compiled = model.compile(&args.backend.options())?;
    let mut results = TensorMap::new();
    let (z, loss) = compiled.forward(params, &batch)?;
    results.insert(model.output.clone(), z);
    match &v {
        None => results.extend_prefixed("grad.", compiled.loss_and_grad(params, &batch)?.1),
        Some(v) => {
            // The gradient and G's preparation from one graph, as an SGN step runs them.
            let (_, grad, gv) = compiled.loss_grad_and_gv_operator(params, &batch)?;
            results.extend_prefixed("grad.", grad);
            results.extend_prefixed("gv.", gv.apply(v)?);
            results.insert("jv", compiled.jvp(params, &batch, v)?.1);
        }
    }
    results.insert(
        "loss",
        Tensor::scalar(model.graph.ty(model.graph.outputs()[1].node).dtype, loss),
    );
    let metadata = BTreeMap::from([("model".to_string(), model.name.clone())]);
    results.save(out, &metadata)?;
    println!("loss {loss}");
    println!("wrote {}", out.display());
    Ok(())
}

/// Errors if the batch has no examples (a symbolic first axis of size 0): the loss of no
/// examples is not defined.
fn check_not_empty(batch: &TensorMap, args: &[&Arg], file: &str) -> Result<()> {
    for arg in args {
        let tensor = batch.get(&arg.name).expect("checked above");
        let rows = arg.ty.shape.dims().first().zip(tensor.shape().first());
        if let Some((dim, 0)) = rows
            && !dim.symbols().is_empty()
        {
            return Err(Error::Tensor(format!(
                "'{file}': tensor '{}' has shape {:?}, no rows ({dim} = 0); eval needs a batch \
                 of at least one example",
                arg.name,
                tensor.shape()
            )));
        }
    }
    Ok(())
}

/// The direction file's `v.<param>` tensors, checked to be one per parameter with its type and
/// nothing else, renamed to the parameter names.
fn directions(model: &Model, file: &TensorMap, path: &Path) -> Result<TensorMap> {
    let expected: Vec<Arg> = super::declared(model, &[ArgRole::Param])
        .into_iter()
        .map(|a| Arg {
            name: format!("v.{}", a.name),
            ..a.clone()
        })
        .collect();
    let expected: Vec<&Arg> = expected.iter().collect();
    check_tensors(file, &expected, &path.display().to_string())?;
    let mut v = TensorMap::new();
    for (name, t) in file.iter() {
        let param = name
            .strip_prefix("v.")
            .expect("checked: every name is v.<param>");
        v.insert(param, t.clone());
    }
    Ok(v)
}
