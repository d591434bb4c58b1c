//! `sgn eval MODEL --inputs I --out O [--params P | --seed S]`: one forward pass on a batch.

use crate::ir::store::{TensorMap, check_args, init_params};
use crate::ir::{ArgRole, interp};
use crate::{Model, Result};
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
    /// Where to write `loss` (shape []) and the network output (safetensors).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let model = Model::from_file(&args.model)?;
    let params = match &args.params {
        Some(path) => TensorMap::load(path)?,
        None => init_params(&model.params, args.seed)?,
    };
    let batch = TensorMap::load(&args.inputs)?;
    let values = gather_args(&model, &params, args.params.as_ref(), &batch, &args.inputs)?;
    let results = interp::run(&model.graph, &values)?;
    let mut out = TensorMap::new();
    for (o, value) in model.graph.outputs().iter().zip(results) {
        out.insert(o.name.clone(), value);
    }
    let metadata = BTreeMap::from([("model".to_string(), model.name.clone())]);
    out.save(&args.out, &metadata)?;
    let loss = out
        .get("loss")
        .and_then(|t| t.scalar_value())
        .unwrap_or(f64::NAN);
    println!("loss {loss}");
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The graph's arguments in order: params from the parameter map, inputs and targets from the
/// batch, each checked against its declaration.
fn gather_args(
    model: &Model,
    params: &TensorMap,
    params_path: Option<&PathBuf>,
    batch: &TensorMap,
    batch_path: &std::path::Path,
) -> Result<Vec<crate::ir::Tensor>> {
    let params_file = params_path.map_or("initialized parameters".to_string(), |p| {
        p.display().to_string()
    });
    let batch_file = batch_path.display().to_string();
    let mut values = Vec::with_capacity(model.graph.args().len());
    for arg in model.graph.args() {
        let (map, file) = match arg.role {
            ArgRole::Param => (params, params_file.as_str()),
            _ => (batch, batch_file.as_str()),
        };
        values.extend(check_args(map, &[arg], file)?);
    }
    Ok(values)
}
