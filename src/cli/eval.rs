//! `sgn eval MODEL --inputs I --out O [--params P | --seed S] [--vector V]`: loss, output and
//! gradient on one batch; with a direction, also `J v` and `G v`.

use crate::ir::store::{TensorMap, init_params};
use crate::{Error, Model, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model file (`*.sgn`).
    model: PathBuf,
    /// Parameters (safetensors, named as in the model); without it, initialize from --seed.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Seed for parameter initialization when --params is not given.
    #[arg(long, default_value_t = 0)]
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
    let model = Model::from_file(&args.model)?;
    let compiled = model.compile(&args.backend.options())?;
    let params = match &args.params {
        Some(path) => TensorMap::load(path)?,
        None => init_params(&model.params, args.seed)?,
    };
    let batch = TensorMap::load(&args.inputs)?;
    let mut out = TensorMap::new();
    let (z, loss) = compiled.forward(&params, &batch)?;
    out.insert(model.output.clone(), z);
    let (_, grad) = compiled.loss_and_grad(&params, &batch)?;
    out.extend_prefixed("grad.", grad);
    if let Some(path) = &args.vector {
        let v = directions(&TensorMap::load(path)?, path)?;
        let (_, jv) = compiled.jvp(&params, &batch, &v)?;
        out.insert("jv", jv);
        out.extend_prefixed("gv.", compiled.gv_operator(&params, &batch)?.apply(&v)?);
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

/// The direction file's `v.<param>` tensors, renamed to the parameter names.
fn directions(file: &TensorMap, path: &std::path::Path) -> Result<TensorMap> {
    let mut v = TensorMap::new();
    for (name, t) in file.iter() {
        let Some(param) = name.strip_prefix("v.") else {
            return Err(Error::Tensor(format!(
                "{}: tensor '{name}' is not a direction (names are v.<param>)",
                path.display()
            )));
        };
        v.insert(param, t.clone());
    }
    Ok(v)
}
