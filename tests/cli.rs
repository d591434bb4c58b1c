//! The `sgn` binary end to end: check, eval (safetensors in and out), inspect, and errors.

use crate::common;

use common::{assert_close, batch_for, direction_like, ir_models, sgn, stderr, stdout};
use sgn::codegen::BackendKind;
use sgn::data::{DatasetName, LoadOptions, SineOptions};
use sgn::ir::DType;
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::tensor::Floor;
use sgn::ir::text::parse_graph;
use sgn::optim::report::read_log;
use sgn::optim::{
    CgOptions, Damping, EarlyCg, Optimizer, Record, Sgd, SgdOptions, Sgn, SgnOptions, StopRule,
    TrainOptions, Trainer,
};
use sgn::{CompileOptions, Model};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[test]
fn check_summarizes_every_shipped_model() {
    for (name, model) in ir_models() {
        let out = sgn(&["check", &format!("ir/{name}.sgn")]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("model {name}")), "{text}");
        let total: u64 = model
            .params
            .iter()
            .map(|p| p.ty.shape.numel().as_fixed().unwrap())
            .sum();
        assert!(
            text.contains(&format!("total: {total} parameters")),
            "{text}"
        );
        assert!(text.contains("loss loss: f32[]"), "{text}");
    }
}

#[test]
fn check_reports_a_malformed_model_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sgn");
    std::fs::write(
        &path,
        "model bad\ninput x: f32[B, 3]\ntarget y: f32[B, 2]\nparam w: f32[4, 2]\noutput z = x @ w\nloss mse(z, y)\n",
    )
    .unwrap();
    let out = sgn(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.sgn:5:"), "{err}");
    assert!(err.contains("[B, 3]") && err.contains("[4, 2]"), "{err}");
    assert!(err.contains('^'), "{err}");
}

fn save(map: &TensorMap, path: &Path) {
    map.save(path, &BTreeMap::new()).unwrap();
}

#[test]
fn eval_writes_loss_output_gradient_and_gauss_newton_products() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::from_file("ir/mnist_mlp.sgn").unwrap();
    let params = init_params(&model.params, 7).unwrap();
    let batch = batch_for(&model, DType::F32, 5, 1);
    let v = direction_like(&params, 2);
    let mut v_file = TensorMap::new();
    v_file.extend_prefixed("v.", v.clone());
    let (p, b, vf, o) = (
        dir.path().join("p.safetensors"),
        dir.path().join("b.safetensors"),
        dir.path().join("v.safetensors"),
        dir.path().join("o.safetensors"),
    );
    save(&params, &p);
    save(&batch, &b);
    save(&v_file, &vf);
    let args = [
        "eval",
        "ir/mnist_mlp.sgn",
        "--params",
        p.to_str().unwrap(),
        "--inputs",
        b.to_str().unwrap(),
    ];
    let out = sgn(&[
        &args[..],
        &[
            "--vector",
            vf.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));

    let written = TensorMap::load(&o).unwrap();
    let compiled = model.compile(&CompileOptions::default()).unwrap();
    let (z, loss) = compiled.forward(&params, &batch).unwrap();
    assert_eq!(written.get("loss").unwrap().shape(), &[] as &[usize]);
    assert_eq!(
        written.get("loss").unwrap().scalar_value().unwrap() as f32,
        loss as f32
    );
    assert_eq!(written.get("z").unwrap(), &z);
    let (_, grad) = compiled.loss_and_grad(&params, &batch).unwrap();
    let (_, jv) = compiled.jvp(&params, &batch, &v).unwrap();
    let gv = compiled.gv(&params, &batch, &v).unwrap();
    assert_eq!(written.get("jv").unwrap(), &jv);
    for p in &model.params {
        assert_eq!(
            written.get(&format!("grad.{}", p.name)).unwrap(),
            grad.get(&p.name).unwrap()
        );
        assert_eq!(
            written.get(&format!("gv.{}", p.name)).unwrap(),
            gv.get(&p.name).unwrap()
        );
    }

    // --backend interp writes what the interpreter computes, and the JIT's file holds the
    // same values up to f32 rounding (sums in another order): the values themselves are checked
    // against the reference, not only against the library's JIT path.
    let interp_out = dir.path().join("interp.safetensors");
    let out = sgn(&[
        &args[..],
        &[
            "--vector",
            vf.to_str().unwrap(),
            "--out",
            interp_out.to_str().unwrap(),
            "--backend",
            "interp",
        ],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let by_interpreter = TensorMap::load(&interp_out).unwrap();
    let interp = model
        .compile(&CompileOptions::default().with_backend(BackendKind::Interpreter))
        .unwrap();
    assert_eq!(
        by_interpreter.get("z").unwrap(),
        &interp.forward(&params, &batch).unwrap().0
    );
    assert_eq!(
        by_interpreter.get("jv").unwrap(),
        &interp.jvp(&params, &batch, &v).unwrap().1
    );
    let interp_gv = interp.gv(&params, &batch, &v).unwrap();
    for p in &model.params {
        let name = format!("gv.{}", p.name);
        assert_eq!(by_interpreter.get(&name), interp_gv.get(&p.name), "{name}");
    }
    assert_eq!(by_interpreter.len(), written.len());
    for (name, reference) in by_interpreter.iter() {
        let jit = written.get(name).unwrap();
        assert_close(name, jit, reference, Floor::OfLargest(1.0), 1e-5);
    }

    // Without --params the seed initializes: the same seed gives the same file.
    let seeded = |seed: &str, out: &Path| {
        let r = sgn(&[
            "eval",
            "ir/mnist_mlp.sgn",
            "--seed",
            seed,
            "--inputs",
            b.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        TensorMap::load(out).unwrap()
    };
    let seven = seeded("7", &dir.path().join("s7.safetensors"));
    assert_eq!(seven.get("z"), written.get("z"));
    assert_ne!(
        seeded("8", &dir.path().join("s8.safetensors")).get("z"),
        written.get("z")
    );
}

#[test]
fn eval_names_a_missing_or_misshapen_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::from_file("ir/sine_mlp.sgn").unwrap();
    let mut batch = batch_for(&model, DType::F32, 4, 0);
    batch.remove("y");
    let b = dir.path().join("b.safetensors");
    save(&batch, &b);
    let o = dir.path().join("o.safetensors");
    let out = sgn(&[
        "eval",
        "ir/sine_mlp.sgn",
        "--inputs",
        b.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no tensor 'y'"), "{}", stderr(&out));
    assert!(!o.exists(), "no output on failure");

    let wrong = batch_for(
        &Model::from_file("ir/boston_mlp.sgn").unwrap(),
        DType::F32,
        4,
        0,
    );
    save(&wrong, &b);
    let out = sgn(&[
        "eval",
        "ir/sine_mlp.sgn",
        "--inputs",
        b.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("'x'") && err.contains("[B, 1]"), "{err}");

    let out = sgn(&[
        "eval",
        "ir/sine_mlp.sgn",
        "--inputs",
        "no/such/file.safetensors",
        "--out",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no/such/file.safetensors"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_prints_every_graph_as_readable_text_and_dot() {
    for graph in [
        "forward",
        "grad",
        "jvp",
        "vjp",
        "gv",
        "gv-prepare",
        "gv-apply",
        "grad-prepare",
    ] {
        let out = sgn(&["inspect", "ir/mnist_mlp.sgn", "--graph", graph]);
        assert!(out.status.success(), "{graph}: {}", stderr(&out));
        let parsed = parse_graph(&stdout(&out)).unwrap_or_else(|e| panic!("{graph}: {e}"));
        assert!(!parsed.outputs().is_empty());
        let dot = sgn(&[
            "inspect",
            "ir/mnist_mlp.sgn",
            "--graph",
            graph,
            "--format",
            "dot",
        ]);
        assert!(dot.status.success());
        assert!(stdout(&dot).starts_with("digraph"), "{}", stdout(&dot));
    }
    let out = sgn(&["inspect", "ir/mnist_mlp.sgn", "--graph", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gv-apply"), "{}", stderr(&out));
}

/// sine_mlp on sine in mini-batches of 500 (14 steps an epoch), seed 3.
const SINE_TRAINING: [&str; 8] = [
    "train",
    "ir/sine_mlp.sgn",
    "--dataset",
    "sine",
    "--batch",
    "500",
    "--seed",
    "3",
];

#[test]
fn train_logs_plots_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common = [&SINE_TRAINING[..], &["--cg-iters", "4"]].concat();
    let first = sgn(&[
        &common[..],
        &[
            "--epochs",
            "1",
            "--log",
            &path("run.csv"),
            "--save",
            &path("ck.safetensors"),
        ],
    ]
    .concat());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("epoch 1.00"), "{}", stdout(&first));
    let resumed = sgn(&[
        &common[..],
        &[
            "--epochs",
            "2",
            "--log",
            &path("run.csv"),
            "--resume",
            &path("ck.safetensors"),
            "--plot",
            &path("curves.png"),
        ],
    ]
    .concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let log = sgn::optim::report::read_log(path("run.csv")).unwrap();
    // 7000 examples / 500 = 14 steps an epoch, one evaluation after each of the two epochs.
    assert_eq!(log.len(), 2 * 14 + 2);
    assert_eq!(log.last().unwrap().iteration, 28);
    assert!(
        std::fs::read(path("curves.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );

    let wrong = sgn(&[
        &SINE_TRAINING[..],
        &[
            "--epochs",
            "2",
            "--optimizer",
            "adam",
            "--resume",
            &path("ck.safetensors"),
        ],
    ]
    .concat());
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("optimizer sgn"),
        "{}",
        stderr(&wrong)
    );
    let unknown = sgn(&[
        "train",
        "ir/sine_mlp.sgn",
        "--dataset",
        "cifar",
        "--batch",
        "10",
        "--epochs",
        "1",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("mnist"), "{}", stderr(&unknown));
}

#[test]
fn inspect_shows_the_optimized_graph_and_what_simplification_did() {
    let out = sgn(&[
        "inspect",
        "ir/mnist_mlp.sgn",
        "--graph",
        "gv-prepare",
        "--opt",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let optimized = parse_graph(&stdout(&out)).unwrap();
    let plain = parse_graph(&stdout(&sgn(&[
        "inspect",
        "ir/mnist_mlp.sgn",
        "--graph",
        "gv-prepare",
    ])))
    .unwrap();
    assert!(optimized.pruned().nodes().len() < plain.pruned().nodes().len());

    let out = sgn(&[
        "inspect",
        "ir/mnist_mlp.sgn",
        "--graph",
        "grad",
        "--stats",
        "--format",
        "json",
        "--batch",
        "10",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["graph"], "grad");
    for side in ["before", "after"] {
        for key in ["nodes", "matmul_flops", "elementwise_flops", "bytes"] {
            assert!(json[side][key].is_u64(), "{side}.{key} in {json}");
        }
    }
    // Batch 10: the first layer's forward matmul alone is 2·10·784·20 FLOPs.
    assert!(json["after"]["matmul_flops"].as_u64().unwrap() > 2 * 10 * 784 * 20);
    let phases = json["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "canonicalize",
            "stabilize",
            "simplify-derivatives",
            "factor",
            "extract"
        ]
    );
    for p in phases {
        for key in ["iterations", "egraph_nodes", "stop_reason", "ms"] {
            assert!(!p[key].is_null(), "{key} in {p}");
        }
    }
    let text = stdout(&sgn(&[
        "inspect",
        "ir/mnist_mlp.sgn",
        "--graph",
        "grad",
        "--stats",
    ]));
    assert!(
        text.contains("matmul FLOPs") && text.contains("canonicalize"),
        "{text}"
    );
    let json_without_stats = sgn(&["inspect", "ir/mnist_mlp.sgn", "--format", "json"]);
    assert_eq!(json_without_stats.status.code(), Some(1));
}

#[test]
fn bench_reports_every_graph_against_its_roofline_and_the_interpreter() {
    for threads in [1, 2] {
        let threads_arg = threads.to_string();
        let out = sgn(&[
            "bench",
            "ir/sine_mlp.sgn",
            "--batch",
            "64",
            "--threads",
            &threads_arg,
            "--repeats",
            "2",
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["model"], "sine_mlp");
        assert_eq!(json["batch"], 64);
        assert_eq!(json["threads"], threads);
        assert!(json["compile_ms"].as_f64().unwrap() > 0.0);
        let graphs = json["graphs"].as_array().unwrap();
        let names: Vec<&str> = graphs.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "forward",
                "grad",
                "gv-prepare",
                "gv-apply",
                "grad-prepare",
                "sgn-step"
            ]
        );
        for g in graphs {
            for key in ["ms", "gflops", "roofline_ms", "efficiency", "interp_ms"] {
                let value = g[key].as_f64().unwrap_or_else(|| panic!("{key} in {g}"));
                assert!(value.is_finite() && value > 0.0, "{key} = {value} in {g}");
            }
            // Several threads are timed against one thread in the same rounds.
            let one_thread = g.get("one_thread_ms").and_then(|v| v.as_f64());
            assert_eq!(one_thread.is_some(), threads > 1, "{g}");
            assert!(
                one_thread.is_none_or(|ms| ms.is_finite() && ms > 0.0),
                "{g}"
            );
            let value = |key: &str| g[key].as_f64().unwrap();
            let efficiency = value("roofline_ms") / value("ms");
            assert!(close(value("efficiency"), efficiency), "{g}");
        }
        // The rates are the graphs' FLOPs (as `inspect --stats` counts them) over their times,
        // and one SGN step is grad-prepare, forward and 10 gv-applies (bench's CG iterations).
        let flops =
            |g: &serde_json::Value| g["gflops"].as_f64().unwrap() * g["ms"].as_f64().unwrap() * 1e6;
        for g in &graphs[..5] {
            let name = g["name"].as_str().unwrap();
            let stats = sgn(&[
                "inspect",
                "ir/sine_mlp.sgn",
                "--graph",
                name,
                "--stats",
                "--format",
                "json",
                "--batch",
                "64",
            ]);
            let stats: serde_json::Value = serde_json::from_str(&stdout(&stats)).unwrap();
            let counted = stats["after"]["matmul_flops"].as_u64().unwrap()
                + stats["after"]["elementwise_flops"].as_u64().unwrap();
            assert!(close(flops(g), counted as f64), "{name}: {counted} in {g}");
        }
        let step = &graphs[5];
        let of = |name: &str| graphs.iter().find(|g| g["name"] == name).unwrap();
        let parts = |f: &dyn Fn(&serde_json::Value) -> f64| {
            f(of("grad-prepare")) + f(of("forward")) + 10.0 * f(of("gv-apply"))
        };
        assert!(close(flops(step), parts(&flops)), "{step}");
        let roofline = |g: &serde_json::Value| g["roofline_ms"].as_f64().unwrap();
        assert!(close(roofline(step), parts(&roofline)), "{step}");
        // The step against its graphs called back to back, only on the step's row, timed in
        // the same rounds as the step, which runs those graphs and more (not against the
        // graphs' own rows: on a model this small those pay a thread pool's wake-up per call,
        // which back-to-back calls do not). The bounds only catch a wrong unit (1000×): with
        // other tests on both cores, a median of two steps can take a scheduler's wake-up
        // latency many times over (72× the graphs was seen), and the graphs' median a few
        // times (over 1.5× the step was seen); how close they are is the benchmark's business.
        let ms = |g: &serde_json::Value| g["ms"].as_f64().unwrap();
        let back_to_back = step["graphs_ms"].as_f64().unwrap();
        assert!(
            back_to_back > ms(step) / 500.0 && back_to_back < 50.0 * ms(step),
            "{step}"
        );
        assert!(graphs[..5].iter().all(|g| g.get("graphs_ms").is_none()));
    }
}

/// A training log without its wall times, which differ from run to run.
fn without_wall_time(mut log: Vec<Record>) -> Vec<Record> {
    for record in &mut log {
        record.wall_time = 0.0;
    }
    log
}

/// What `sgn train` with one set of options should do, done through the library.
struct LibraryRun {
    optimizer: Box<dyn Optimizer>,
    frequency: f64,
    params: Option<TensorMap>,
    backend: BackendKind,
    eval_at: Vec<Duration>,
}

/// SGN as the CLI configures it by default (`--cg-iters 10`).
fn cli_sgn(options: SgnOptions) -> Box<dyn Optimizer> {
    Box::new(Sgn::new(SgnOptions {
        cg: CgOptions {
            max_iters: 10,
            ..CgOptions::default()
        },
        ..options
    }))
}

impl LibraryRun {
    fn sgn(options: SgnOptions) -> LibraryRun {
        LibraryRun {
            optimizer: cli_sgn(options),
            frequency: SineOptions::default().frequency,
            params: None,
            backend: BackendKind::Jit,
            eval_at: Vec::new(),
        }
    }

    fn log(self) -> Vec<Record> {
        let model = Model::from_file("ir/sine_mlp.sgn").unwrap();
        let compiled = model
            .compile(&CompileOptions::default().with_backend(self.backend))
            .unwrap();
        let options = LoadOptions {
            sine: SineOptions {
                frequency: self.frequency,
                ..SineOptions::default()
            },
            ..LoadOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let dataset = sgn::data::load(DatasetName::Sine, &options, dir.path(), |_| {}).unwrap();
        let params = self
            .params
            .unwrap_or_else(|| init_params(&model.params, 3).unwrap());
        let train_options = TrainOptions {
            batch_size: 500,
            stop: StopRule {
                epochs: Some(1),
                time_limit: None,
            },
            seed: 3,
            eval_at: self.eval_at,
            ..TrainOptions::default()
        };
        let mut trainer =
            Trainer::new(&compiled, &dataset, &params, self.optimizer, train_options).unwrap();
        trainer.run(&mut |_| {}).unwrap();
        without_wall_time(trainer.history().to_vec())
    }
}

#[test]
fn train_options_do_what_the_library_does() {
    let dir = tempfile::tempdir().unwrap();
    let cli_log = |name: &str, extra: &[&str]| {
        let log = dir.path().join(format!("{name}.csv"));
        let log_arg = ["--epochs", "1", "--log", log.to_str().unwrap()];
        let out = sgn(&[&SINE_TRAINING[..], extra, &log_arg].concat());
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        without_wall_time(read_log(&log).unwrap())
    };
    let baseline = cli_log("baseline", &[]);
    assert_eq!(baseline, LibraryRun::sgn(SgnOptions::default()).log());

    let start = init_params(&Model::from_file("ir/sine_mlp.sgn").unwrap().params, 11).unwrap();
    let params_file = dir.path().join("start.safetensors");
    save(&start, &params_file);
    let sgd = |momentum| -> Box<dyn Optimizer> {
        Box::new(Sgd::new(SgdOptions {
            momentum,
            ..SgdOptions::default()
        }))
    };
    let cases: Vec<(&str, Vec<&str>, LibraryRun)> = vec![
        (
            "fixed-rho",
            vec!["--fixed-rho"],
            LibraryRun::sgn(SgnOptions {
                damping: Damping::Fixed,
                ..SgnOptions::default()
            }),
        ),
        (
            "no-line-search",
            vec!["--no-line-search"],
            LibraryRun::sgn(SgnOptions {
                line_search: false,
                ..SgnOptions::default()
            }),
        ),
        (
            "warm-start",
            vec!["--warm-start", "0.95"],
            LibraryRun::sgn(SgnOptions {
                warm_start: Some(0.95),
                ..SgnOptions::default()
            }),
        ),
        (
            "precondition",
            vec!["--precondition", "0.75"],
            LibraryRun::sgn(SgnOptions {
                preconditioner: Some(0.75),
                ..SgnOptions::default()
            }),
        ),
        (
            "frequency",
            vec!["--frequency", "100"],
            LibraryRun {
                frequency: 100.0,
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "params",
            vec!["--params", params_file.to_str().unwrap()],
            LibraryRun {
                params: Some(start.clone()),
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "interpreter",
            vec!["--backend", "interp"],
            LibraryRun {
                backend: BackendKind::Interpreter,
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "paper",
            vec!["--paper", "--cg-iters", "3"],
            LibraryRun {
                optimizer: Box::new(Sgn::new(SgnOptions::paper(3))),
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "cg-early",
            vec!["--cg-early", "5,2"],
            LibraryRun::sgn(SgnOptions {
                early_cg: Some(EarlyCg {
                    steps: 5,
                    max_iters: 2,
                }),
                ..SgnOptions::default()
            }),
        ),
        (
            "cg-tol-inf",
            vec!["--cg-tol-inf", "0.05"],
            LibraryRun {
                optimizer: Box::new(Sgn::new(SgnOptions {
                    cg: CgOptions {
                        max_iters: 10,
                        residual_max: Some(0.05),
                        ..CgOptions::default()
                    },
                    ..SgnOptions::default()
                })),
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "eval-at",
            vec!["--eval-at", "1ns,1h"],
            LibraryRun {
                eval_at: vec![Duration::from_nanos(1), Duration::from_secs(3600)],
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "sgd",
            vec!["--optimizer", "sgd"],
            LibraryRun {
                optimizer: sgd(0.0),
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
        (
            "momentum",
            vec!["--optimizer", "sgd", "--momentum", "0.9"],
            LibraryRun {
                optimizer: sgd(0.9),
                ..LibraryRun::sgn(SgnOptions::default())
            },
        ),
    ];
    let mut logs = vec![("baseline", baseline)];
    for (name, args, library) in cases {
        let log = cli_log(name, &args);
        assert_eq!(log, library.log(), "{name}: the CLI against the library");
        // Each option changes the run (so that neither side can ignore it unnoticed).
        for (other, other_log) in &logs {
            assert_ne!(&log, other_log, "{name} trains like {other}");
        }
        logs.push((name, log));
    }
}

/// Equal up to the rounding of a few arithmetic operations.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `sgn data fetch` on the cache the tests share (the MNIST training test fetches into it
/// too; nothing is downloaded when it is complete): the files are verified and listed, a second
/// fetch only verifies, and a generated dataset is a clear error.
#[test]
fn data_fetch_verifies_and_lists_the_cached_files() {
    let dir = common::test_data_dir();
    let fetch = || {
        sgn(&[
            "data",
            "fetch",
            "mnist",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
    };
    let first = fetch();
    assert!(first.status.success(), "{}", stderr(&first));
    let again = fetch();
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    assert!(
        text.starts_with("mnist: already cached, verified\n"),
        "{text}"
    );
    let files: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    assert_eq!(files.len(), 4, "{text}");
    for file in files {
        assert!(Path::new(file).is_file(), "{file} is listed but absent");
    }

    let generated = sgn(&["data", "fetch", "sine", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(generated.status.code(), Some(1));
    assert!(
        stderr(&generated).contains("sine is generated, there is nothing to fetch"),
        "{}",
        stderr(&generated)
    );
}

/// The value after `key ` on the line of stdout that starts with it (`loss 0.123`).
fn printed(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no '{key}' line in:\n{text}"))
        .parse()
        .unwrap()
}

/// `sgn eval MODEL --params CHECKPOINT --dataset DATASET` with `extra` arguments.
fn eval_on_dataset(
    model: &str,
    checkpoint: &str,
    dataset: &str,
    extra: &[&str],
) -> std::process::Output {
    let args = [
        &["eval", model, "--params", checkpoint, "--dataset", dataset][..],
        extra,
    ]
    .concat();
    sgn(&args)
}

/// `eval --dataset` measures a checkpoint as the training run measured it at its end: the same
/// test loss, to the bit; `--split train` too; `--out` holds the numbers.
#[test]
fn eval_on_a_dataset_repeats_the_training_runs_last_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let trained = sgn(&[
        &SINE_TRAINING[..],
        &[
            "--epochs",
            "1",
            "--frequency",
            "20",
            "--log",
            &path("run.csv"),
            "--save",
            &path("ck.safetensors"),
        ],
    ]
    .concat());
    assert!(trained.status.success(), "{}", stderr(&trained));
    let last = read_log(path("run.csv")).unwrap().pop().unwrap();

    let checkpoint = path("ck.safetensors");
    let eval = |extra: &[&str]| {
        let args = [&["--frequency", "20"][..], extra].concat();
        let out = eval_on_dataset("ir/sine_mlp.sgn", &checkpoint, "sine", &args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let text = eval(&["--out", &path("eval.safetensors")]);
    assert!(
        text.starts_with("sine_mlp on sine (f = 20), test split (3000 examples)\n"),
        "{text}"
    );
    assert_eq!(printed(&text, "loss"), last.test_loss.unwrap(), "{text}");
    assert!(
        !text.contains("accuracy"),
        "regression has no accuracy: {text}"
    );
    let written = TensorMap::load(Path::new(&path("eval.safetensors"))).unwrap();
    assert_eq!(
        written.get("loss").unwrap().scalar_value(),
        Some(last.test_loss.unwrap())
    );
    assert_eq!(written.names().count(), 1);
    // The train split is another number; the data must be the training run's (f = 20), not the
    // default f = 10.
    let train = printed(&eval(&["--split", "train"]), "loss");
    assert_ne!(train, last.test_loss.unwrap());
    let default_frequency = eval_on_dataset("ir/sine_mlp.sgn", &checkpoint, "sine", &[]);
    assert_ne!(
        printed(&stdout(&default_frequency), "loss"),
        last.test_loss.unwrap()
    );
}

/// The dataset options' usage errors: --pixels for data without pixels, an unknown scaling, a
/// batch and a dataset at once, and data options without a dataset.
#[test]
fn dataset_options_are_checked() {
    let with_pixels =
        |pixels: &str| sgn(&[&SINE_TRAINING[..], &["--epochs", "1", "--pixels", pixels]].concat());
    let out = with_pixels("standardized");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: --pixels standardized: sine is not an image dataset (the pixel scaling applies \
         to mnist, fashion-mnist and cifar10)\n"
    );
    let out = with_pixels("per-image");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "unknown pixel scaling 'per-image'; the pixel scalings are unit, standardized"
        ),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("batch.safetensors");
    save(&TensorMap::new(), &inputs);
    for (args, complaint) in [
        (
            vec!["--inputs", inputs.to_str().unwrap(), "--dataset", "sine"],
            "cannot be used with",
        ),
        // Data options with neither a dataset nor files: a batch is then required.
        (
            vec!["--pixels", "unit", "--out", "x.safetensors"],
            "--inputs",
        ),
        (vec!["--split", "train"], "--inputs"),
        (vec![], "--inputs"),
    ] {
        let out = sgn(&[&["eval", "ir/sine_mlp.sgn"][..], &args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(complaint),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// The Fashion-MNIST LeNet end to end on the real data, briefly: it trains on standardized
/// images, `eval` reuses the checkpoint's pixel scaling and repeats the last evaluation, refuses
/// other pixels; the CIFAR-10 net does not fit Fashion-MNIST's images.
#[test]
fn the_lenet_trains_on_standardized_fashion_mnist_and_eval_reuses_the_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data_dir = common::test_data_dir();
    let data_dir = data_dir.to_str().unwrap();
    let standardized_fashion = [
        "--dataset",
        "fashion-mnist",
        "--pixels",
        "standardized",
        "--data-dir",
        data_dir,
    ];
    let trained = sgn(&[
        &["train", "ir/fashion_lenet.sgn"][..],
        &standardized_fashion,
        &["--optimizer", "sgd", "--batch", "100", "--time-limit", "1s"],
        &["--log", &path("run.csv"), "--save", &path("ck.safetensors")],
    ]
    .concat());
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(
        stdout(&trained).starts_with(
            "training fashion_lenet on fashion-mnist, standardized pixels (60000 train / 10000 \
             test) with Sgd, batch 100\n"
        ),
        "{}",
        stdout(&trained)
    );
    let last = read_log(path("run.csv")).unwrap().pop().unwrap();
    let accuracy = last.test_accuracy.unwrap();

    let checkpoint = path("ck.safetensors");
    let eval = |extra: &[&str]| {
        let args = [&["--data-dir", data_dir][..], extra].concat();
        eval_on_dataset("ir/fashion_lenet.sgn", &checkpoint, "fashion-mnist", &args)
    };
    let out = eval(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "fashion_lenet on fashion-mnist, standardized pixels, test split (10000 examples)\n"
        ),
        "{text}"
    );
    assert_eq!(printed(&text, "loss"), last.test_loss.unwrap(), "{text}");
    assert_eq!(printed(&text, "accuracy"), accuracy, "{text}");
    // The run learnt: its test loss is below that of its starting point (--seed 0, the default
    // of both commands). How far it got depends on how many steps fit in the second.
    let start = sgn(&[&["eval", "ir/fashion_lenet.sgn"][..], &standardized_fashion].concat());
    assert!(start.status.success(), "{}", stderr(&start));
    let initial = printed(&stdout(&start), "loss");
    assert!(
        last.test_loss.unwrap() < initial,
        "{} SGD steps: test loss {} from {initial}",
        last.iteration,
        last.test_loss.unwrap()
    );

    let out = eval(&["--pixels", "unit"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: --pixels unit: {} comes from a run on standardized pixels; use the same \
             (leave --pixels out to take the checkpoint's)\n",
            path("ck.safetensors")
        )
    );

    let out = sgn(&[
        "eval",
        "ir/cifar_cnn.sgn",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: the dataset's features have 784 columns (fashion-mnist: 1×28×28 images) but the \
         model declares 'x' as f32[B, 3, 32, 32]; declare it as f32[B, 784] or f32[B, 1, 28, \
         28]\n"
    );
}

#[test]
fn bench_and_train_run_bf16_curvature_or_say_why_not() {
    let bf16 = sgn::codegen::host_has_bf16_products();
    let out = sgn(&[
        "bench",
        "ir/mlp_relu_256.sgn",
        "--batch",
        "64",
        "--threads",
        "1",
        "--repeats",
        "2",
        "--curvature",
        "bf16",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["curvature"], if bf16 { "bf16" } else { "f32" });
    // With bf16, the f32 gv-apply is timed beside it.
    let graphs = json["graphs"].as_array().unwrap();
    let apply = graphs.iter().find(|g| g["name"] == "gv-apply").unwrap();
    assert_eq!(apply.get("full_precision_ms").is_some(), bf16, "{apply}");
    // With bf16, which unit ran the products, as the library decided it.
    assert_eq!(json.get("bf16_unit").is_some(), bf16, "{json}");
    if bf16 {
        assert_eq!(json["bf16_unit"], sgn::codegen::bf16_products_unit());
        let error = json["curvature_error"].as_f64().unwrap();
        assert!(
            (1e-5..2e-2).contains(&error),
            "G v's relative error {error}"
        );
    }
    let notice = "notice: bf16 curvature not used: this CPU has no AVX512-BF16";
    assert_eq!(stderr(&out).contains(notice), !bf16, "{}", stderr(&out));

    let train = sgn(&[
        "train",
        "ir/sine_mlp.sgn",
        "--dataset",
        "sine",
        "--epochs",
        "1",
        "--batch",
        "100",
        "--curvature",
        "bf16",
    ]);
    assert!(train.status.success(), "{}", stderr(&train));
    assert_eq!(stderr(&train).contains(notice), !bf16, "{}", stderr(&train));
    let unit = format!(
        ", bf16 curvature on {}\n",
        sgn::codegen::bf16_products_unit()
    );
    assert_eq!(stdout(&train).contains(&unit), bf16, "{}", stdout(&train));
}
