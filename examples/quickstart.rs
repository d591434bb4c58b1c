//! Fit y = sin(10·x) with the paper's 1-20-20-20-1 sigmoid net and SGN — no download needed.
//!
//! Run with `cargo run --release --example quickstart`.

use sgn::data::{self, DatasetName, LoadOptions};
use sgn::ir::store::init_params;
use sgn::optim::{CgOptions, Sgn, SgnOptions, StopRule, TrainEvent, TrainOptions, Trainer};
use sgn::{CompileOptions, Model};

fn main() -> sgn::Result<()> {
    let model = Model::from_file("ir/sine_mlp.sgn")?;
    let compiled = model.compile(&CompileOptions::default())?;
    // The sine set is generated from a seed: no data directory is touched.
    let dataset = data::load(
        DatasetName::Sine,
        &LoadOptions::default(),
        &data::default_data_dir(),
        |_| {},
    )?;
    let params = init_params(&model.params, 0)?;
    let sgn = Sgn::new(SgnOptions {
        cg: CgOptions {
            max_iters: 10,
            ..CgOptions::default()
        },
        ..SgnOptions::default()
    });
    let options = TrainOptions {
        batch_size: 100,
        stop: StopRule {
            epochs: Some(5),
            time_limit: None,
        },
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(&compiled, &dataset, &params, Box::new(sgn), options)?;
    trainer.run(&mut |event| {
        if let TrainEvent::Recorded(r) = event
            && let Some(test) = r.test_loss
        {
            println!(
                "epoch {:.0}: train mse {:.2e}, test mse {test:.2e}",
                r.epoch,
                r.train_loss.unwrap_or(f64::NAN)
            );
        }
    })?;
    Ok(())
}
