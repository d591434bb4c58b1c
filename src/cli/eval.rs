//! `sgn eval MODEL --inputs I --out O [--params P | --seed S] [--vector V]`: loss, output and
//! gradient on one batch; with a direction, also `J v` and `G v`.

use super::files::{self, Named};
use crate::ir::store::{TensorMap, check_tensors};
use crate::ir::{Arg, ArgRole};
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
    #[arg(long)]
    inputs: PathBuf,
    /// A direction `v` (safetensors, one tensor `v.<param>` per parameter): adds `jv` (J v, shaped
    /// like the output) and `gv.<param>` (G v) to the results.
    #[arg(long)]
    vector: Option<PathBuf>,
    /// Where to write `loss` (shape []), the network output and `grad.<param>` (safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    backend: super::BackendArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let mut inputs: Vec<Named> = vec![("MODEL", &args.model), ("--inputs", &args.inputs)];
    inputs.extend(args.params.as_deref().map(|p| ("--params", p)));
    inputs.extend(args.vector.as_deref().map(|p| ("--vector", p)));
    files::check_outputs(&inputs, &[("--out", &args.out)])?;
    let model = Model::from_file(&args.model)?;
    let params = super::params(&model, args.params.as_deref(), args.seed)?;
    let batch = TensorMap::load(&args.inputs)?;
    let batch_args = super::declared(&model, &[ArgRole::Input, ArgRole::Target]);
    let inputs_file = args.inputs.display().to_string();
    check_tensors(&batch, &batch_args, &inputs_file)?;
    check_not_empty(&batch, &batch_args, &inputs_file)?;
    let v = match &args.vector {
        Some(path) => Some(directions(&model, &TensorMap::load(path)?, path)?),
        None => None,
    };
    let compiled = model.compile(&args.backend.options())?;
    let mut out = TensorMap::new();
    let (z, loss) = compiled.forward(&params, &batch)?;
    out.insert(model.output.clone(), z);
    let (_, grad) = compiled.loss_and_grad(&params, &batch)?;
    out.extend_prefixed("grad.", grad);
    if let Some(v) = &v {
        let (_, jv) = compiled.jvp(&params, &batch, v)?;
        out.insert("jv", jv);
        out.extend_prefixed("gv.", compiled.gv_operator(&params, &batch)?.apply(v)?);
    }
    out.insert(
        "loss",
        crate::ir::Tensor::scalar(model.graph.ty(model.graph.outputs()[1].node).dtype, loss),
    );
    let metadata = BTreeMap::from([("model".to_string(), model.name.clone())]);
    out.save(&args.out, &metadata)?;
    println!("loss {loss}");
    println!("wrote {}", args.out.display());
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
