//! Train on arrays built in memory: a model compiled from a string, a two-class problem made
//! with ndarray, SGN for a few epochs, and the trained parameters read back.
//!
//! Run with `cargo run --release --example arrays`.

use ndarray::Array2;
use sgn::data::{Dataset, one_hot};
use sgn::ir::store::init_params;
use sgn::optim::{Sgn, SgnOptions, StopRule, TrainOptions, Trainer};
use sgn::{CompileOptions, Model};

const MODEL: &str = "
model circle
input  x: f32[B, 2]
target y: f32[B, 2]
param w1: f32[2, 16] = glorot_uniform
param b1: f32[16]    = zeros
param w2: f32[16, 2] = glorot_uniform
param b2: f32[2]     = zeros
h = tanh(x @ w1 + b1)
output z = h @ w2 + b2
loss softmax_cross_entropy(z, y)
";

/// `n` points on a grid over [-1, 1]², labelled 1 inside the circle of radius 0.6.
fn points(n: usize, shift: f32) -> (Array2<f32>, Array2<f32>) {
    let side = (n as f64).sqrt().ceil() as usize;
    let x = Array2::from_shape_fn((n, 2), |(i, axis)| {
        let at = if axis == 0 { i % side } else { i / side };
        2.0 * (at as f32 + shift) / side as f32 - 1.0
    });
    let labels = x.rows().into_iter().map(|p| usize::from(p.dot(&p) < 0.36));
    (x.clone(), one_hot(labels, 2))
}

fn main() -> sgn::Result<()> {
    let model = Model::parse(MODEL)?;
    let compiled = model.compile(&CompileOptions::default())?;
    let (train_x, train_y) = points(900, 0.0);
    let (test_x, test_y) = points(400, 0.5);
    let data = Dataset::from_arrays(&train_x, &train_y, &test_x, &test_y)?;
    let options = TrainOptions {
        batch_size: 100,
        stop: StopRule {
            epochs: Some(20),
            time_limit: None,
        },
        ..TrainOptions::default()
    };
    let params = init_params(&model.params, 0)?;
    let sgn = Box::new(Sgn::new(SgnOptions::default()));
    let mut trainer = Trainer::new(&compiled, &data, &params, sgn, options)?;
    trainer.run(&mut |_| {})?;
    let (loss, accuracy) = trainer.test_metrics(&data.test)?;
    println!(
        "test loss {loss:.4}, accuracy {:.1}%",
        100.0 * accuracy.unwrap_or(0.0)
    );
    let trained = trainer.params();
    let w1 = trained.get("w1").expect("the model declares w1");
    println!(
        "w1 {:?}, first row {:?}",
        w1.shape(),
        &w1.to_f64_vec()[..16]
    );
    Ok(())
}
