//! The training driver: SGN, SGD and Adam make progress, resuming equals an uninterrupted run,
//! non-finite steps are survived (and, repeated, stop training with the checkpoint intact),
//! and bad checkpoints are clear errors.

use crate::common;

use common::{TINY_MODEL, blobs_dataset};
use ndarray::Array2;
use sgn::data::{Dataset, ImageFormat, PixelScale, Split};
use sgn::ir::DType;
use sgn::ir::store::{TensorMap, init_params};
use sgn::optim::checkpoint::checkpoint_pixels;
use sgn::optim::train::evaluate;
use sgn::optim::{
    Adam, AdamOptions, Damping, ModelObjective, Objective, Optimizer, Record, RecordKind, Sgd,
    SgdOptions, Sgn, SgnOptions, StopRule, TrainEvent, TrainOptions, Trainer,
};
use sgn::{CompileOptions, CompiledModel, Model};
use std::time::Duration;

fn setup() -> (Model, CompiledModel, TensorMap) {
    let model = Model::parse(TINY_MODEL).unwrap();
    let compiled = model.compile(&CompileOptions::default()).unwrap();
    let params = init_params(&model.params, 3).unwrap();
    (model, compiled, params)
}

fn options(epochs: u64) -> TrainOptions {
    TrainOptions {
        batch_size: 50,
        stop: StopRule {
            epochs: Some(epochs),
            time_limit: None,
        },
        seed: 11,
        ..TrainOptions::default()
    }
}

fn sgn() -> Box<dyn Optimizer> {
    Box::new(Sgn::new(SgnOptions::default()))
}

/// One SGN epoch from `params` that leaves a checkpoint at `ckpt`.
fn first_epoch<'a>(
    compiled: &'a CompiledModel,
    data: &'a Dataset,
    params: &TensorMap,
    ckpt: &std::path::Path,
) -> Trainer<'a> {
    let options = TrainOptions {
        checkpoint: Some(ckpt.to_path_buf()),
        ..options(1)
    };
    let mut trainer = Trainer::new(compiled, data, params, sgn(), options).unwrap();
    trainer.run(&mut |_| {}).unwrap();
    trainer
}

fn evals(history: &[Record]) -> Vec<&Record> {
    history
        .iter()
        .filter(|r| r.kind == RecordKind::Eval)
        .collect()
}

#[test]
fn every_optimizer_learns_the_blobs() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        sgn(),
        Box::new(Sgd::new(SgdOptions {
            lr: 0.5,
            ..SgdOptions::default()
        })),
        Box::new(Adam::new(AdamOptions {
            lr: 0.05,
            ..AdamOptions::default()
        })),
    ];
    for optimizer in optimizers {
        let name = optimizer.name();
        let mut trainer = Trainer::new(&compiled, &data, &params, optimizer, options(5)).unwrap();
        let (initial_loss, _) = trainer.test_metrics(&data.test).unwrap();
        trainer.run(&mut |_| {}).unwrap();
        let history = trainer.history();
        let last = evals(history).pop().unwrap();
        assert_eq!(evals(history).len(), 5, "{name}: one evaluation per epoch");
        assert_eq!(last.iteration, 30, "{name}: 6 batches × 5 epochs");
        assert!(
            last.test_loss.unwrap() < 0.5 * initial_loss,
            "{name}: {initial_loss} → {:?}",
            last.test_loss
        );
        assert!(
            last.test_accuracy.unwrap() > 0.95,
            "{name}: accuracy {:?}",
            last.test_accuracy
        );
    }
}

fn without_wall_time(history: &[Record]) -> Vec<Record> {
    history
        .iter()
        .map(|r| Record {
            wall_time: 0.0,
            ..r.clone()
        })
        .collect()
}

#[test]
fn an_output_without_one_score_per_class_is_evaluated_without_accuracy() {
    // A classification dataset, a model with one output value per example and its own loss.
    let model = Model::parse(
        "model r\ninput x: f32[B, 2]\ntarget y: f32[B, 3]\nparam w: f32[2, 3]\n\
         output z = sum(x @ w, axis=1)\nd = z - sum(y, axis=1)\nloss mean(d * d)\n",
    )
    .unwrap();
    let compiled = model.compile(&CompileOptions::default()).unwrap();
    let params = init_params(&model.params, 0).unwrap();
    let data = blobs_dataset();
    assert_eq!(data.num_classes, Some(3));
    let (loss, accuracy) = evaluate(&compiled, &params, &data, &data.test, 7).unwrap();
    assert!(
        loss.is_finite() && accuracy.is_none(),
        "{loss} {accuracy:?}"
    );
}

#[test]
fn a_dataset_in_column_major_order_trains_as_in_row_major() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let column_major = |a: &Array2<f32>| a.t().as_standard_layout().t().to_owned();
    let mut flipped = blobs_dataset();
    for split in [&mut flipped.train, &mut flipped.test] {
        split.features = column_major(&split.features);
        split.targets = column_major(&split.targets);
        assert!(!split.features.is_standard_layout());
    }
    let history = |data: &Dataset| {
        let mut trainer = Trainer::new(&compiled, data, &params, sgn(), options(1)).unwrap();
        trainer.run(&mut |_| {}).unwrap();
        without_wall_time(trainer.history())
    };
    assert_eq!(history(&flipped), history(&data));
}

#[test]
fn resuming_from_a_checkpoint_equals_an_uninterrupted_run() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");

    let mut straight = Trainer::new(&compiled, &data, &params, sgn(), options(3)).unwrap();
    straight.run(&mut |_| {}).unwrap();

    // Stopped after one epoch, then resumed in a fresh trainer for the remaining two.
    let first = first_epoch(&compiled, &data, &params, &ckpt);
    let mut second = Trainer::new(&compiled, &data, &params, sgn(), options(3)).unwrap();
    second.resume(&ckpt).unwrap();
    second.run(&mut |_| {}).unwrap();

    assert_eq!(second.params(), straight.params(), "parameters bit for bit");
    assert_eq!(
        without_wall_time(second.history()),
        without_wall_time(straight.history())
    );

    // The checkpoint doubles as a parameter file.
    let saved = TensorMap::load(&ckpt).unwrap();
    assert_eq!(saved.get("w1"), first.params().get("w1"));
}

#[test]
fn resuming_mid_epoch_after_a_time_limit_continues_exactly() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    let mut straight = Trainer::new(&compiled, &data, &params, sgn(), options(2)).unwrap();
    straight.run(&mut |_| {}).unwrap();

    // A zero time limit stops after the first step, mid-epoch, with a checkpoint.
    let limited = TrainOptions {
        stop: StopRule {
            epochs: Some(2),
            time_limit: Some(Duration::ZERO),
        },
        checkpoint: Some(ckpt.clone()),
        ..options(2)
    };
    let mut first = Trainer::new(&compiled, &data, &params, sgn(), limited).unwrap();
    first.run(&mut |_| {}).unwrap();
    assert_eq!(
        first
            .history()
            .iter()
            .filter(|r| r.kind == RecordKind::Step)
            .count(),
        1
    );
    let mut second = Trainer::new(&compiled, &data, &params, sgn(), options(2)).unwrap();
    second.resume(&ckpt).unwrap();
    second.run(&mut |_| {}).unwrap();
    assert_eq!(second.params(), straight.params());
    let steps = |h: &[Record]| -> Vec<Record> {
        without_wall_time(h)
            .into_iter()
            .filter(|r| r.kind == RecordKind::Step)
            .collect()
    };
    assert_eq!(steps(second.history()), steps(straight.history()));
}

fn poisoned(rows: std::ops::Range<usize>) -> Dataset {
    let mut data = blobs_dataset();
    for i in rows {
        data.train.features[[i, 0]] = f32::NAN;
    }
    data
}

#[test]
fn non_finite_batches_are_rejected_and_training_goes_on() {
    let (_, compiled, params) = setup();
    // One poisoned example: each epoch one batch has a NaN loss.
    let data = poisoned(0..1);
    let mut rejected = 0;
    let mut trainer = Trainer::new(&compiled, &data, &params, sgn(), options(3)).unwrap();
    trainer
        .run(&mut |e| {
            if let TrainEvent::NonFinite { .. } = e {
                rejected += 1;
            }
        })
        .unwrap();
    assert_eq!(rejected, 3);
    let params = trainer.params();
    assert!(
        params
            .iter()
            .all(|(_, t)| t.to_f64_vec().iter().all(|v| v.is_finite()))
    );
    assert!(
        evals(trainer.history())
            .last()
            .unwrap()
            .test_accuracy
            .unwrap()
            > 0.9
    );
}

#[test]
fn repeated_non_finite_steps_stop_training_and_keep_the_last_checkpoint() {
    let (_, compiled, params) = setup();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    let clean = blobs_dataset();
    let first = first_epoch(&compiled, &clean, &params, &ckpt);
    let before = std::fs::read(&ckpt).unwrap();

    let mut all_bad = poisoned(0..300);
    all_bad.name = clean.name.clone();
    let mut second = Trainer::new(
        &compiled,
        &all_bad,
        &params,
        sgn(),
        TrainOptions {
            checkpoint: Some(ckpt.clone()),
            ..options(3)
        },
    )
    .unwrap();
    second.resume(&ckpt).unwrap();
    let err = second.run(&mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("5 consecutive") && err.contains("non-finite loss"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "the last good checkpoint is untouched"
    );
    assert_eq!(
        second.params(),
        first.params(),
        "no non-finite step reached the parameters"
    );
}

#[test]
fn options_out_of_range_are_refused_before_training() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let sgn_with = |o: SgnOptions| -> Box<dyn Optimizer> { Box::new(Sgn::new(o)) };
    let cases: Vec<(Box<dyn Optimizer>, &str)> = vec![
        (
            sgn_with(SgnOptions {
                rho0: f64::NAN,
                ..SgnOptions::default()
            }),
            "SGN option rho0 is NaN; it must be finite and > 0",
        ),
        (
            sgn_with(SgnOptions {
                max_tries: 0,
                ..SgnOptions::default()
            }),
            "SGN option max_tries is 0; it must be at least 1",
        ),
        (
            sgn_with(SgnOptions {
                warm_start: Some(2.0),
                ..SgnOptions::default()
            }),
            "SGN option warm_start is 2; it must be in [0, 1]",
        ),
        (
            Box::new(Sgd::new(SgdOptions {
                nesterov: true,
                ..SgdOptions::default()
            })),
            "SGD option momentum is 0; it must be > 0 for Nesterov momentum",
        ),
        (
            Box::new(Adam::new(AdamOptions {
                beta1: 1.0,
                ..AdamOptions::default()
            })),
            "Adam option beta1 is 1; it must be in [0, 1)",
        ),
    ];
    for (optimizer, expected) in cases {
        // A step taken directly refuses too, before it changes anything.
        let mut stepped = optimizer;
        let mut theta = compiled.layout().flatten(&params).unwrap();
        let batch = common::batch_for(&Model::parse(TINY_MODEL).unwrap(), DType::F32, 8, 1);
        let err = stepped
            .step(&mut theta, &mut ModelObjective::new(&compiled, &batch))
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert_eq!(theta, compiled.layout().flatten(&params).unwrap());
        let err = Trainer::new(&compiled, &data, &params, stepped, options(1))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, sgn::Error::Options(_)), "{err}");
        assert_eq!(err.to_string(), expected);
    }
    let never = TrainOptions {
        stop: StopRule {
            epochs: None,
            time_limit: None,
        },
        ..options(1)
    };
    let err = Trainer::new(&compiled, &data, &params, sgn(), never)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("it would never stop"), "{err}");
    let mut untested = blobs_dataset();
    untested.test = Split {
        features: Array2::zeros((0, 2)),
        targets: Array2::zeros((0, 3)),
    };
    let err = Trainer::new(&compiled, &untested, &params, sgn(), options(1))
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("has no test examples"), "{err}");
}

#[test]
fn a_dataset_whose_parts_disagree_is_an_error_not_a_panic() {
    let (_, compiled, params) = setup();
    let mut short_targets = blobs_dataset();
    short_targets.train.targets = Array2::zeros((299, 3));
    let mut wide_image = blobs_dataset();
    wide_image.image = Some(ImageFormat::of_example(&[1, 2, 2], PixelScale::Unit));
    for (data, expected) in [
        (
            &short_targets,
            "the train split has 300 feature rows but 299 target rows",
        ),
        (
            &wide_image,
            "its image format [1, 2, 2] does not hold the 2 values",
        ),
    ] {
        let err = Trainer::new(&compiled, data, &params, sgn(), options(1))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    // A split of another width given to evaluate.
    let data = blobs_dataset();
    let trainer = Trainer::new(&compiled, &data, &params, sgn(), options(1)).unwrap();
    let narrow = Split {
        features: Array2::zeros((5, 1)),
        targets: Array2::zeros((5, 3)),
    };
    let err = trainer.test_metrics(&narrow).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn steps_that_overflow_the_parameters_are_rejected() {
    // SGD with a step so long that f32 parameters overflow, though the gradient is finite.
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    for (optimizer, lr) in [("sgd", 1e300), ("adam", 1e300)] {
        let optimizer: Box<dyn Optimizer> = match optimizer {
            "sgd" => Box::new(Sgd::new(SgdOptions {
                lr,
                ..SgdOptions::default()
            })),
            _ => Box::new(Adam::new(AdamOptions {
                lr,
                ..AdamOptions::default()
            })),
        };
        let mut trainer = Trainer::new(&compiled, &data, &params, optimizer, options(1)).unwrap();
        let err = trainer.run(&mut |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("5 consecutive steps with a non-finite step"),
            "{lr}: {err}"
        );
        assert_eq!(
            trainer.params(),
            params,
            "{lr}: the parameters are the last finite ones"
        );
    }
}

#[test]
fn bad_checkpoints_and_mismatches_are_clear_errors() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    first_epoch(&compiled, &data, &params, &ckpt);

    let mut adam = Trainer::new(
        &compiled,
        &data,
        &params,
        Box::new(Adam::new(AdamOptions::default())),
        options(2),
    )
    .unwrap();
    let err = adam.resume(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("optimizer sgn") && err.contains("adam"),
        "{err}"
    );

    let mut other_batch = Trainer::new(
        &compiled,
        &data,
        &params,
        sgn(),
        TrainOptions {
            batch_size: 30,
            ..options(2)
        },
    )
    .unwrap();
    let err = other_batch.resume(&ckpt).unwrap_err().to_string();
    assert!(err.contains("batch size 50"), "{err}");

    let bytes = std::fs::read(&ckpt).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut trainer = Trainer::new(&compiled, &data, &params, sgn(), options(2)).unwrap();
    let err = trainer.resume(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors"), "{err}");

    let plain = dir.path().join("params.safetensors");
    params.save(&plain, &Default::default()).unwrap();
    let err = trainer.resume(&plain).unwrap_err().to_string();
    assert!(err.contains("not an sgn checkpoint"), "{err}");
}

#[test]
fn a_dataset_that_does_not_fit_the_model_is_a_clear_error() {
    let (_, compiled, params) = setup();
    let mut data = blobs_dataset();
    data.train.features = Array2::zeros((300, 5));
    data.test.features = Array2::zeros((90, 5));
    let err = Trainer::new(&compiled, &data, &params, sgn(), options(1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("5 columns") && err.contains("f32[B, 2]"),
        "{err}"
    );
}

/// 4×4 one-channel "images" in three classes (the bright quadrant: top left, top right or
/// bottom left; plus a pattern), labelled with their pixel scaling; 120 train and 30 test
/// examples.
fn tiles(pixels: PixelScale) -> Dataset {
    let split = |n: usize, offset: usize| {
        let mut features = Array2::zeros((n, 16));
        let mut targets = Array2::zeros((n, 3));
        for i in 0..n {
            let class = (i + offset) % 3;
            for p in 0..16 {
                let quadrant = (p / 8) * 2 + (p % 4) / 2;
                let lit = quadrant == class;
                features[[i, p]] = f32::from(u8::from(lit)) + ((i * 31 + p * 7) % 13) as f32 / 50.0;
            }
            targets[[i, class]] = 1.0;
        }
        Split { features, targets }
    };
    Dataset {
        name: "tiles".to_string(),
        train: split(120, 0),
        test: split(30, 1),
        num_classes: Some(3),
        target_scale: 1.0,
        image: Some(ImageFormat {
            channels: 1,
            height: 4,
            width: 4,
            pixels,
        }),
        standardization: None,
    }
}

/// A softmax regression on [`tiles`], its input declared as `input` and used as `flatten(x)`
/// (`width` values per example), and its initial parameters.
fn tiles_model(input: &str, width: usize) -> (CompiledModel, TensorMap) {
    let model = Model::parse(&format!(
        "model tiles\ninput x: {input}\ntarget y: f32[B, 3]\nparam w: f32[{width}, 3]\nparam b: \
         f32[3]\noutput z = flatten(x) @ w + b\nloss softmax_cross_entropy(z, y)\n"
    ))
    .unwrap();
    let params = init_params(&model.params, 5).unwrap();
    (model.compile(&CompileOptions::default()).unwrap(), params)
}

/// An image dataset feeds a model that declares its input as images `[B, C, H, W]` exactly as
/// one that declares it as rows `[B, C·H·W]`: the same numbers in the same order, so a model
/// that flattens the images trains and evaluates bit for bit like the dense one.
#[test]
fn image_shaped_batches_are_the_dense_ones_reshaped() {
    let data = tiles(PixelScale::Unit);
    // flatten of [B, 16] is the identity.
    let (dense, params) = tiles_model("f32[B, 16]", 16);
    let (image, image_params) = tiles_model("f32[B, 1, 4, 4]", 16);
    assert_eq!(params, image_params);
    let histories: Vec<Vec<Record>> = [&dense, &image]
        .into_iter()
        .map(|compiled| {
            let options = TrainOptions {
                batch_size: 40,
                ..options(3)
            };
            let mut trainer = Trainer::new(compiled, &data, &params, sgn(), options).unwrap();
            trainer.run(&mut |_| {}).unwrap();
            without_wall_time(trainer.history())
        })
        .collect();
    assert_eq!(histories[0], histories[1]);
    let last = evals(&histories[0]).last().unwrap().test_accuracy.unwrap();
    assert!(last > 0.9, "the tiles are learnt: {last}");
    // `evaluate`, with chunks that leave a ragged last one, agrees too.
    let [on_rows, on_images] =
        [&dense, &image].map(|compiled| evaluate(compiled, &params, &data, &data.test, 7).unwrap());
    assert_eq!(on_rows, on_images);
}

#[test]
fn a_model_whose_input_does_not_fit_the_images_is_a_clear_error() {
    let data = tiles(PixelScale::Unit);
    // Three channels where the images have one; the right count in another layout.
    for (input, width) in [("f32[B, 3, 4, 4]", 48), ("f32[B, 4, 4]", 16)] {
        let (compiled, params) = tiles_model(input, width);
        let err = Trainer::new(&compiled, &data, &params, sgn(), options(1))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            format!(
                "the dataset's features have 16 columns (tiles: 1×4×4 images) but the model \
                 declares 'x' as {input}; declare it as f32[B, 16] or f32[B, 1, 4, 4]"
            )
        );
        let err = evaluate(&compiled, &params, &data, &data.test, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("declares 'x' as {input}")), "{err}");
    }
}

/// A checkpoint records how the image dataset's pixels were scaled; resuming on other pixels is
/// refused, and the choice can be read back before loading the data.
#[test]
fn checkpoints_record_the_pixel_scaling() {
    let (dense, params) = tiles_model("f32[B, 16]", 16);
    let standardized = tiles(PixelScale::Standardized);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    let trainer = first_epoch(&dense, &standardized, &params, &ckpt);
    assert_eq!(
        checkpoint_pixels(&ckpt).unwrap(),
        Some(PixelScale::Standardized)
    );

    let mut same = Trainer::new(&dense, &standardized, &params, sgn(), options(2)).unwrap();
    same.resume(&ckpt).unwrap();
    assert_eq!(same.history(), trainer.history());
    let unit = tiles(PixelScale::Unit);
    let mut other = Trainer::new(&dense, &unit, &params, sgn(), options(2)).unwrap();
    assert_eq!(
        other.resume(&ckpt).unwrap_err().to_string(),
        format!(
            "{}: the checkpoint was written with pixel scaling standardized, this run uses unit",
            ckpt.display()
        )
    );

    // No pixels to record: a checkpoint of other data, and a parameter file.
    let (_, compiled, blob_params) = setup();
    let blobs = dir.path().join("blobs.safetensors");
    first_epoch(&compiled, &blobs_dataset(), &blob_params, &blobs);
    assert_eq!(checkpoint_pixels(&blobs).unwrap(), None);
    let plain = dir.path().join("params.safetensors");
    params.save(&plain, &Default::default()).unwrap();
    assert_eq!(checkpoint_pixels(&plain).unwrap(), None);
}

#[test]
fn sgn_trains_the_papers_mnist_net_on_real_mnist() {
    let model = Model::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/ir/mnist_mlp.sgn")).unwrap();
    let compiled = model.compile(&CompileOptions::default()).unwrap();
    let dir = common::test_data_dir();
    let data = sgn::data::load(
        sgn::data::DatasetName::Mnist,
        &Default::default(),
        &dir,
        |reason| {
            eprintln!("fetching mnist into {} ({reason})", dir.display());
        },
    )
    .unwrap();
    let params = init_params(&model.params, 0).unwrap();
    let sgn = Sgn::new(SgnOptions {
        cg: sgn::optim::CgOptions {
            max_iters: 3,
            ..Default::default()
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
    let mut trainer = Trainer::new(&compiled, &data, &params, Box::new(sgn), options).unwrap();
    trainer.run(&mut |_| {}).unwrap();
    let accuracy = evals(trainer.history())
        .last()
        .unwrap()
        .test_accuracy
        .unwrap();
    assert!(accuracy > 0.85, "two SGN epochs reach {accuracy}");
}

#[test]
fn evaluation_marks_evaluate_once_at_the_first_step_past_them() {
    let (_, compiled, params) = setup();
    let data = blobs_dataset();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    // Two marks crossed by the first step (one evaluation), one never reached, and a time limit
    // that ends the run right after the evaluation: the checkpoint is still written.
    let marked = TrainOptions {
        stop: StopRule {
            epochs: Some(2),
            time_limit: Some(Duration::ZERO),
        },
        eval_at: vec![
            Duration::from_secs(3600),
            Duration::from_nanos(2),
            Duration::from_nanos(1),
        ],
        checkpoint: Some(ckpt.clone()),
        ..options(2)
    };
    let mut trainer = Trainer::new(&compiled, &data, &params, sgn(), marked).unwrap();
    trainer.run(&mut |_| {}).unwrap();
    let marked = evals(trainer.history());
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert_eq!(marked[0].iteration, 1);
    assert!(marked[0].test_accuracy.is_some() && marked[0].test_loss.is_some());
    assert!(ckpt.exists(), "the run's end saves a checkpoint");
    // Resumed past the marks, the run evaluates only at the epochs' ends (its history starts
    // with the first run's).
    let mut second = Trainer::new(
        &compiled,
        &data,
        &params,
        sgn(),
        TrainOptions {
            eval_at: vec![Duration::from_nanos(1)],
            ..options(2)
        },
    )
    .unwrap();
    second.resume(&ckpt).unwrap();
    second.run(&mut |_| {}).unwrap();
    let iterations: Vec<u64> = evals(second.history())
        .iter()
        .map(|r| r.iteration)
        .collect();
    let per_epoch = evals(second.history())[1].iteration;
    assert_eq!(iterations, [1, per_epoch, 2 * per_epoch]);

    // A mark crossed by an epoch's last step (one batch an epoch) evaluates it once: the epoch's
    // end does not evaluate the same parameters again.
    let one_batch = TrainOptions {
        batch_size: data.train.len(),
        eval_at: vec![Duration::from_nanos(1)],
        ..options(2)
    };
    let mut trainer = Trainer::new(&compiled, &data, &params, sgn(), one_batch).unwrap();
    trainer.run(&mut |_| {}).unwrap();
    let iterations: Vec<u64> = evals(trainer.history())
        .iter()
        .map(|r| r.iteration)
        .collect();
    assert_eq!(iterations, [1, 2]);
    assert!(evals(trainer.history())[0].train_loss.is_some());
}

/// Two processes of a data-parallel run, played by two threads: sums in rank order through
/// shared slots (what MPI does for them in `tests/mpi.rs`).
struct Twin {
    rank: usize,
    slots: std::sync::Arc<(std::sync::Mutex<[Vec<f64>; 2]>, std::sync::Barrier)>,
}

impl Twin {
    fn exchange(&self, values: &mut [f64], combine: fn(&[Vec<f64>; 2], usize) -> f64) {
        let (slots, barrier) = &*self.slots;
        slots.lock().unwrap()[self.rank] = values.to_vec();
        barrier.wait();
        {
            let slots = slots.lock().unwrap();
            for (i, v) in values.iter_mut().enumerate() {
                *v = combine(&slots, i);
            }
        }
        // Nobody overwrites a slot before both have read it.
        barrier.wait();
    }
}

impl sgn::optim::collective::Collective for Twin {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        2
    }

    fn sum(&self, values: &mut [f64]) -> sgn::Result<()> {
        self.exchange(values, |slots, i| slots[0][i] + slots[1][i]);
        Ok(())
    }

    fn broadcast(&self, values: &mut [f64]) -> sgn::Result<()> {
        self.exchange(values, |slots, i| slots[0][i]);
        Ok(())
    }
}

/// SGN on two shards of every batch (f64, so that only rounding differs) against one process:
/// the same steps to rounding, and both twins end on the same parameters.
#[test]
fn a_batch_shared_by_two_processes_trains_as_one_process_does() {
    // Declared f64: parameters kept in f32 would round the two runs' tiny differences apart.
    let model = Model::parse(&TINY_MODEL.replace("f32", "f64")).unwrap();
    let in_f64 = CompileOptions::default();
    let data = blobs_dataset();
    let params = init_params(&model.params, 3).unwrap();
    let run = |collective: Option<Twin>| {
        let compiled = model.compile(&in_f64).unwrap();
        // Damped enough that CG does not amplify the rounding of the sums' different order
        // (with ρ = 1e-4 on this small, nearly separable set it does, by ~1e9).
        let damped = Sgn::new(SgnOptions {
            rho0: 0.1,
            damping: Damping::Fixed,
            ..SgnOptions::default()
        });
        let mut trainer =
            Trainer::new(&compiled, &data, &params, Box::new(damped), options(4)).unwrap();
        if let Some(twin) = &collective {
            trainer = trainer.distributed(twin).unwrap();
        }
        trainer.run(&mut |_| {}).unwrap();
        let steps: Vec<f64> = trainer
            .history()
            .iter()
            .filter(|r| r.kind == RecordKind::Step)
            .map(|r| r.train_loss.unwrap())
            .collect();
        (steps, compiled.layout().flatten(&trainer.params()).unwrap())
    };
    let (one_steps, one_params) = run(None);
    let slots = std::sync::Arc::new((
        std::sync::Mutex::new([Vec::new(), Vec::new()]),
        std::sync::Barrier::new(2),
    ));
    let [first, second] = std::thread::scope(|scope| {
        [0, 1]
            .map(|rank| {
                let slots = slots.clone();
                let run = &run;
                scope.spawn(move || run(Some(Twin { rank, slots })))
            })
            .map(|handle| handle.join().unwrap())
    });
    assert_eq!(first, second, "the twins took different steps");
    assert_eq!(one_steps.len(), 24);
    // Measured: losses within 9e-12 relative, parameters within 5e-13 of the largest.
    for (step, (a, b)) in one_steps.iter().zip(&first.0).enumerate() {
        assert!(
            (a - b).abs() <= 1e-10 * a.abs(),
            "step {step}: losses {a} and {b}"
        );
    }
    let scale = one_params.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in one_params.iter().zip(&first.1) {
        assert!((a - b).abs() <= 1e-11 * scale, "parameters {a} and {b}");
    }
    // Twins that start from different parameters are stopped before their first step.
    let other = init_params(&model.params, 4).unwrap();
    let disagreement = std::thread::scope(|scope| {
        [0, 1]
            .map(|rank| {
                let (slots, params) = (slots.clone(), if rank == 0 { &params } else { &other });
                let (model, data, in_f64) = (&model, &data, &in_f64);
                scope.spawn(move || {
                    let compiled = model.compile(in_f64).unwrap();
                    let twin = Twin { rank, slots };
                    let trainer = Trainer::new(&compiled, data, params, sgn(), options(1)).unwrap();
                    trainer.distributed(&twin).unwrap().run(&mut |_| {}).err()
                })
            })
            .map(|handle| handle.join().unwrap().map(|e| e.to_string()))
    });
    let [first, second] = disagreement.map(Option::unwrap);
    assert!(
        first.starts_with("1 other process(es) start elsewhere than the first"),
        "{first}"
    );
    assert!(
        second.starts_with("this process (1) starts elsewhere than the first"),
        "{second}"
    );
    // A batch smaller than the processes is refused.
    let compiled = model.compile(&in_f64).unwrap();
    let tiny = TrainOptions {
        batch_size: 1,
        ..options(1)
    };
    let twin = Twin {
        rank: 0,
        slots: slots.clone(),
    };
    let refused = Trainer::new(&compiled, &data, &params, sgn(), tiny)
        .unwrap()
        .distributed(&twin)
        .err()
        .unwrap();
    assert_eq!(
        refused.to_string(),
        "a batch of 1 cannot be shared among 2 processes; each needs an example"
    );
    // A collective whose rank is past its size.
    let third = Twin { rank: 2, slots };
    let refused = Trainer::new(&compiled, &data, &params, sgn(), options(1))
        .unwrap()
        .distributed(&third)
        .err()
        .unwrap();
    assert!(
        refused
            .to_string()
            .contains("says this is process 2: ranks run from 0 to 1"),
        "{refused}"
    );
}

/// A dense net with 3.3 blocks of parameters (`sgn::optim::vector::BLOCK`), so that the vector
/// passes and conversions between the graphs are split over the threads, unevenly.
const WIDE_MODEL: &str = "model wide\ninput x: f32[B, 100]\ntarget y: f32[B, 10]\n\
    param w1: f32[100, 500] = glorot_uniform\nparam b1: f32[500] = zeros\n\
    param w2: f32[500, 10] = glorot_uniform\nparam b2: f32[10] = zeros\n\
    output z = tanh(x @ w1 + b1) @ w2 + b2\nloss softmax_cross_entropy(z, y)\n";

#[test]
fn sgn_steps_are_bit_identical_on_any_thread_count_and_see_each_new_theta() {
    let model = Model::parse(WIDE_MODEL).unwrap();
    let params = init_params(&model.params, 5).unwrap();
    let batch = common::batch_for(&model, sgn::ir::DType::F32, 64, 9);
    let run = |threads: usize| {
        let compiled = model
            .compile(&CompileOptions::default().with_threads(threads))
            .unwrap();
        let mut theta = compiled.layout().flatten(&params).unwrap();
        let dim = theta.len();
        assert!(dim > 3 * sgn::optim::vector::BLOCK, "{dim} parameters");
        let mut sgn = Sgn::new(SgnOptions::default());
        let mut objective = ModelObjective::new(&compiled, &batch);
        let mut losses = Vec::new();
        for _ in 0..3 {
            let report = sgn.step(&mut theta, &mut objective).unwrap();
            assert!(report.accepted, "{report:?}");
            losses.push(report.loss.to_bits());
        }
        // The objective reuses its parameter tensors: after a call at another θ, its loss and
        // gradient at θ are those of a fresh objective; a θ of another length is an error.
        let halved: Vec<f64> = theta.iter().map(|x| 0.5 * x).collect();
        let at_halved = objective.loss(&halved).unwrap();
        let reused = objective.loss_and_grad(&theta).unwrap();
        assert_ne!(at_halved, reused.0);
        let short = objective.loss(&theta[1..]).unwrap_err().to_string();
        assert!(short.contains(&format!("{} values", dim - 1)), "{short}");
        let fresh = ModelObjective::new(&compiled, &batch)
            .loss_and_grad(&theta)
            .unwrap();
        assert_eq!(reused, fresh, "{threads} threads");
        // Products before any were prepared are an error, not a panic.
        let unprepared = ModelObjective::new(&compiled, &batch)
            .gv(&theta, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(unprepared.contains("call prepare_gv first"), "{unprepared}");
        (
            losses,
            theta.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        )
    };
    let one = run(1);
    assert!(
        one.0
            .windows(2)
            .all(|w| f64::from_bits(w[1]) < f64::from_bits(w[0])),
        "{:?}",
        one.0
    );
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
}

/// CG on a compiled model keeps its direction in gv-apply's own tensors, in the model's
/// precision; it solves what CG on flat f64 vectors over `Objective::gv` solves: in f64 to
/// the rounding of sums grouped otherwise (measured 2e-15), in f32 to the rounding of the
/// direction to f32, which gv-apply multiplies either way (measured 5e-7, and not 0: the
/// direction does live in the f32 tensors). Parameters of both element types keep CG on flat
/// vectors (on the interpreter, which runs such models): the same bits. With and without a
/// preconditioner, from a warm start, damped.
#[test]
fn cg_on_the_models_own_direction_tensors_solves_what_flat_cg_solves() {
    use sgn::optim::cg::{self, CgOptions};
    let mixed = WIDE_MODEL.replace(
        "param b2: f32[10] = zeros\n",
        "param b2: f32[10] = zeros\nparam unused: f64[3] = zeros\n",
    );
    let cases = [
        (
            "f64",
            WIDE_MODEL.replace("f32", "f64"),
            Some(DType::F64),
            0.0..=1e-12,
        ),
        (
            "f32",
            WIDE_MODEL.to_string(),
            Some(DType::F32),
            f64::MIN_POSITIVE..=1e-5,
        ),
        ("mixed", mixed, None, 0.0..=0.0),
    ];
    for (name, source, dtype, expected) in cases {
        let model = Model::parse(&source).unwrap();
        let params = init_params(&model.params, 5).unwrap();
        // The mixed model's inputs are f32.
        let batch = common::batch_for(&model, dtype.unwrap_or(DType::F32), 64, 9);
        // The JIT compiles graphs of one element type; the interpreter runs mixed ones.
        let backend = match dtype {
            Some(_) => sgn::codegen::BackendKind::Jit,
            None => sgn::codegen::BackendKind::Interpreter,
        };
        let options = CompileOptions::default().with_threads(2);
        let compiled = model.compile(&options.with_backend(backend)).unwrap();
        let gv = compiled.gv_operator(&params, &batch).unwrap();
        assert_eq!(gv.dtype(), dtype, "{name}");
        let theta = compiled.layout().flatten(&params).unwrap();
        let mut objective = ModelObjective::new(&compiled, &batch);
        let (_, grad) = objective.loss_grad_and_prepare_gv(&theta).unwrap();
        let b: Vec<f64> = grad.iter().map(|g| -g).collect();
        let x0: Vec<f64> = b.iter().map(|b| 0.1 * b).collect();
        let diagonal: Vec<f64> = grad.iter().map(|g| 1.0 + 1e3 * g.abs()).collect();
        let options = CgOptions {
            max_iters: 8,
            tolerance: 0.0,
            residual_max: None,
        };
        let vectors = objective.vectors();
        for precondition in [None, Some(diagonal.as_slice())] {
            let context = format!("{name}, preconditioned: {}", precondition.is_some());
            let solve = |operator: &mut dyn cg::CgOperator| {
                let (shift, start) = (1e-2, Some(x0.clone()));
                cg::solve(operator, shift, &b, start, precondition, &options, &vectors).unwrap()
            };
            let in_place = solve(&mut *objective.cg_operator());
            let flat = solve(&mut cg::FlatOperator::new(
                |v: &[f64], out: &mut Vec<f64>| objective.gv(v, out),
                vectors.clone(),
            ));
            // The warm start's product counts as one of the eight.
            assert_eq!((in_place.iterations, flat.iterations), (8, 8), "{context}");
            let scale = flat.x.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let difference = in_place
                .x
                .iter()
                .zip(&flat.x)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(
                expected.contains(&difference),
                "{context}: x differs by {difference:e}"
            );
            for (a, b) in [
                (in_place.model_value, flat.model_value),
                (in_place.curvature, flat.curvature),
            ] {
                let bound = expected.end() * b.abs();
                assert!((a - b).abs() <= bound, "{context}: {a} against {b}");
            }
            assert!(flat.model_value < 0.0, "{context}: {}", flat.model_value);
        }
    }
}

#[test]
fn flat_vectors_that_do_not_fit_the_parameters_are_errors_naming_what_differs() {
    let (_, compiled, params) = setup();
    let layout = compiled.layout();
    let pool = compiled.pool();
    let theta = layout.flatten(&params).unwrap();
    let mut tensors = params.clone();
    let halved: Vec<f64> = theta.iter().map(|x| 0.5 * x).collect();
    layout.assign(&halved, &mut tensors, pool).unwrap();
    assert_eq!(layout.flatten_on(&tensors, pool).unwrap(), halved);
    let error = |result: sgn::Result<()>| result.unwrap_err().to_string();
    let short = error(layout.assign(&theta[1..], &mut tensors, pool));
    assert!(
        short.contains(&format!("{} values", theta.len() - 1)),
        "{short}"
    );
    let mut missing = params.clone();
    missing.remove("b2");
    let missing = error(layout.assign(&theta, &mut missing, pool));
    assert!(missing.contains("no tensor 'b2'"), "{missing}");
    let mut misshapen = params.clone();
    misshapen.insert("b2", sgn::ir::Tensor::zeros(sgn::ir::DType::F32, &[4]));
    let misshapen = error(layout.assign(&theta, &mut misshapen, pool));
    assert!(
        misshapen.contains("'b2' has shape [4], expected [3]"),
        "{misshapen}"
    );
}
