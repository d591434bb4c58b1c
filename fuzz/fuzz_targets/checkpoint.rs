//! Checkpoints as `train --resume` reads them: any bytes as the checkpoint of a sine_mlp run on
//! the sine dataset (what `fuzz/seeds.sh` trains), resumed by a trainer with the optimizer the
//! file names. Resuming must succeed or fail with an error; a run that resumed must then train.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgn::data::{Dataset, DatasetName, LoadOptions, Split};
use sgn::ir::store::{TensorMap, init_params};
use sgn::optim::{
    Adam, AdamOptions, Optimizer, Sgd, SgdOptions, Sgn, SgnOptions, StopRule, TrainOptions, Trainer,
};
use sgn::{CompileOptions, CompiledModel, Model};
use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

/// The batch size and seed `fuzz/seeds.sh` trains its checkpoints with.
const BATCH: usize = 100;
const SEED: u64 = 0;

struct Setup {
    compiled: CompiledModel,
    params: TensorMap,
    dataset: Dataset,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let model = Model::parse_named("sine_mlp.sgn", include_str!("../../ir/sine_mlp.sgn"))
        .expect("sine_mlp parses");
    let compiled = model
        .compile(&CompileOptions::default())
        .expect("sine_mlp compiles");
    let params = init_params(&model.params, SEED).expect("initial parameters");
    let sine = sgn::data::load(
        DatasetName::Sine,
        &LoadOptions::default(),
        Path::new("."),
        |_| unreachable!("the sine dataset is generated, never fetched"),
    )
    .expect("the sine dataset");
    // Two batches per epoch, so that a resumed run takes a step or two.
    let head = |split: &Split, n: usize| Split {
        features: split.features.slice(ndarray::s![..n, ..]).to_owned(),
        targets: split.targets.slice(ndarray::s![..n, ..]).to_owned(),
    };
    let dataset = Dataset {
        train: head(&sine.train, 2 * BATCH),
        test: head(&sine.test, BATCH),
        ..sine
    };
    Setup {
        compiled,
        params,
        dataset,
    }
});

fn optimizer(name: Option<&str>) -> Box<dyn Optimizer> {
    match name {
        Some("sgd") => Box::new(Sgd::new(SgdOptions::default())),
        Some("adam") => Box::new(Adam::new(AdamOptions::default())),
        _ => Box::new(Sgn::new(SgnOptions::default())),
    }
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let named = TensorMap::from_bytes(data, "fuzz")
        .ok()
        .and_then(|(_, metadata)| metadata.get("optimizer").cloned());
    let options = TrainOptions {
        batch_size: BATCH,
        seed: SEED,
        stop: StopRule {
            epochs: Some(2),
            time_limit: None,
        },
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(
        &setup.compiled,
        &setup.dataset,
        &setup.params,
        optimizer(named.as_deref()),
        options,
    )
    .expect("a trainer");
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("writable");
    if trainer.resume(file.path()).is_ok() {
        let _ = trainer.run(&mut |_| {});
    }
});
