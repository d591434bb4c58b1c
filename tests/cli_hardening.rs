//! Hostile command lines: huge sizes, thread counts and numbers out of range, outputs that would
//! replace inputs, files with unknown names. Each must end with a clear error (exit code 2 for
//! a usage error, 1 for the rest) that names the option, the file and the tensor — never a
//! panic, an abort, or an input replaced.

use crate::common;

use common::{batch_for, direction_like, sgn, stderr, stdout};
use sgn::Model;
use sgn::codegen::MAX_THREADS;
use sgn::ir::DType;
use sgn::ir::Tensor;
use sgn::ir::store::{TensorMap, init_params};
use sgn::optim::checkpoint::is_checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The command failed with `code` and a message that contains every one of `needles`.
#[track_caller]
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "'{needle}' is not in: {err}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sgn eval MODEL --inputs I --out O`, then `extra` options.
fn eval(model: &Path, inputs: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = [
        "eval",
        path(model),
        "--inputs",
        path(inputs),
        "--out",
        path(out),
    ];
    sgn(&[&args[..], extra].concat())
}

fn save(map: &TensorMap, p: &Path) {
    map.save(p, &BTreeMap::new()).unwrap();
}

// ----- 1. sizes -----

#[test]
fn sizes_too_large_for_memory_are_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.sgn");
    std::fs::write(
        &big,
        "model big\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\n\
         param w: f32[2, 1099511627776] = zeros\nparam v: f32[1099511627776, 1] = zeros\n\
         output z = x @ w @ v\nloss mse(z, y)\n",
    )
    .unwrap();
    let small = batch_for(
        &Model::from_file("ir/sine_mlp.sgn").unwrap(),
        DType::F32,
        4,
        0,
    );
    let inputs = dir.path().join("in.safetensors");
    save(&small, &inputs);
    let out = dir.path().join("out.safetensors");
    let run = eval(&big, &inputs, &out, &[]);
    assert_fails(
        &run,
        1,
        &["'w': f32[2, 1099511627776], 8192.0 GiB", "needs"],
    );

    // Zero bytes of input that bind B = 2^40: the model's [B, 1] temporaries would be 4 TiB.
    let wide = dir.path().join("wide.sgn");
    std::fs::write(
        &wide,
        "model wide\ninput x: f32[B, K]\ntarget y: f32[B, K]\nparam w: f32[1] = ones\n\
         output z = x + tanh(sum(x, axis=1, keepdims=true)) * w\nloss mse(z, y)\n",
    )
    .unwrap();
    for rows in [1usize << 40, 1 << 62] {
        let empty = Tensor::zeros(DType::F32, &[rows, 0]);
        save(
            &TensorMap::from_iter([("x", empty.clone()), ("y", empty)]),
            &inputs,
        );
        for backend in ["jit", "interp"] {
            let run = eval(&wide, &inputs, &out, &["--backend", backend]);
            assert_fails(&run, 1, &[&format!("B = {rows}"), "f32[B, 1]", "needs"]);
        }
    }
    assert!(!out.exists(), "nothing written");

    // bench: a batch the machine cannot hold, and one whose batch × width overflowed before.
    for (model, batch) in [
        ("ir/sine_mlp.sgn", "1000000000000"),
        ("ir/mnist_mlp.sgn", "16777216"),
    ] {
        let run = sgn(&["bench", model, "--batch", batch, "--repeats", "1"]);
        assert_fails(
            &run,
            1,
            &[&format!("a batch of {batch}"), "'x': f32[B, ", "GiB"],
        );
    }
}

// ----- 2. threads -----

#[test]
fn thread_counts_outside_their_range_are_usage_errors() {
    let range = format!("from 0 to {MAX_THREADS}");
    let over = (MAX_THREADS + 1).to_string();
    for threads in ["10000", over.as_str(), "-1"] {
        for command in [
            &["eval", "ir/sine_mlp.sgn", "--inputs", "x", "--out", "y"][..],
            &[
                "train",
                "ir/sine_mlp.sgn",
                "--dataset",
                "sine",
                "--batch",
                "10",
                "--epochs",
                "1",
            ],
            &["bench", "ir/sine_mlp.sgn"],
        ] {
            let run = sgn(&[command, &[&format!("--threads={threads}")]].concat());
            assert_fails(&run, 2, &["--threads", &range]);
        }
    }
    for command in ["eval", "train", "bench"] {
        let help = stdout(&sgn(&[command, "--help"]));
        assert!(
            help.contains(&format!("0 to {MAX_THREADS}")),
            "{command}: {help}"
        );
    }
}

#[test]
fn more_threads_than_cores_run_with_a_notice() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let bench = [
        "bench",
        "ir/sine_mlp.sgn",
        "--repeats",
        "1",
        "--batch",
        "10",
    ];
    let run = sgn(&[&bench[..], &["--threads", &(cores + 1).to_string()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let notice = format!(
        "notice: --threads {} is more than this machine's {cores} cores",
        cores + 1
    );
    assert!(stderr(&run).contains(&notice), "{}", stderr(&run));
    let run = sgn(&[&bench[..], &["--threads", &cores.to_string()]].concat());
    assert!(
        !stderr(&run).contains("notice: --threads"),
        "{}",
        stderr(&run)
    );
}

// ----- 3. outputs that would destroy inputs -----

/// A model, a batch, parameters and a direction in a fresh directory.
struct Files {
    dir: tempfile::TempDir,
    model: PathBuf,
    inputs: PathBuf,
    params: PathBuf,
    vector: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.sgn");
    std::fs::copy("ir/sine_mlp.sgn", &model).unwrap();
    let parsed = Model::from_file(&model).unwrap();
    let params = init_params(&parsed.params, 1).unwrap();
    let mut v = TensorMap::new();
    v.extend_prefixed("v.", direction_like(&params, 3));
    let f = Files {
        inputs: dir.path().join("in.safetensors"),
        params: dir.path().join("p.safetensors"),
        vector: dir.path().join("v.safetensors"),
        model,
        dir,
    };
    save(&batch_for(&parsed, DType::F32, 8, 2), &f.inputs);
    save(&params, &f.params);
    save(&v, &f.vector);
    f
}

impl Files {
    fn eval(&self, out: &Path, extra: &[&str]) -> Output {
        let files = [
            "--params",
            path(&self.params),
            "--vector",
            path(&self.vector),
        ];
        eval(
            &self.model,
            &self.inputs,
            out,
            &[&files[..], extra].concat(),
        )
    }

    fn contents(&self) -> Vec<Vec<u8>> {
        [&self.model, &self.inputs, &self.params, &self.vector]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// `sgn train` on the sine data, with 2 CG iterations a step when the optimizer is SGN.
    fn train(&self, extra: &[&str]) -> Output {
        let args = [
            "train",
            path(&self.model),
            "--dataset",
            "sine",
            "--batch",
            "1000",
            "--seed",
            "1",
        ];
        let sgn_steps: &[&str] = if extra
            .windows(2)
            .any(|w| w[0] == "--optimizer" && w[1] != "sgn")
        {
            &[]
        } else {
            &["--cg-iters", "2"]
        };
        sgn(&[&args[..], sgn_steps, extra].concat())
    }
}

#[test]
fn eval_never_writes_over_one_of_its_inputs() {
    let f = files();
    let before = f.contents();
    let dotted = |p: &Path| f.dir.path().join(".").join(p.file_name().unwrap());
    let hard_link = f.dir.path().join("linked.safetensors");
    std::fs::hard_link(&f.params, &hard_link).unwrap();
    let symlink = f.dir.path().join("symlink.safetensors");
    std::os::unix::fs::symlink(&f.vector, &symlink).unwrap();
    for (out, input) in [
        (f.inputs.clone(), "--inputs"),
        (f.params.clone(), "--params"),
        (f.vector.clone(), "--vector"),
        (f.model.clone(), "MODEL"),
        (dotted(&f.inputs), "--inputs"),
        (hard_link, "--params"),
        (symlink, "--vector"),
    ] {
        let run = f.eval(&out, &[]);
        assert_fails(&run, 1, &["--out", &format!("the {input} file")]);
    }
    assert_eq!(f.contents(), before, "every input unchanged");
    let out = f.dir.path().join("out.safetensors");
    let run = f.eval(&out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn train_never_writes_over_its_model_parameters_or_a_foreign_file() {
    let f = files();
    let before = f.contents();
    let run = f.train(&["--epochs", "1", "--save", path(&f.model)]);
    assert_fails(&run, 1, &["--save", "the MODEL file"]);
    let run = f.train(&[
        "--epochs",
        "1",
        "--params",
        path(&f.params),
        "--save",
        path(&f.params),
    ]);
    assert_fails(&run, 1, &["--save", "the --params file"]);
    let shared = f.dir.path().join("run.csv");
    let run = f.train(&[
        "--epochs",
        "1",
        "--log",
        path(&shared),
        "--save",
        path(&shared),
    ]);
    assert_fails(&run, 1, &["--save", "--log writes this file too"]);
    assert_eq!(f.contents(), before);

    // A file that is not a checkpoint is replaced only with --force.
    let notes = f.dir.path().join("notes.safetensors");
    std::fs::write(&notes, "my notes").unwrap();
    let run = f.train(&["--epochs", "1", "--save", path(&notes)]);
    assert_fails(&run, 1, &["--save", "not an sgn checkpoint", "--force"]);
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");
    let run = f.train(&["--epochs", "1", "--save", path(&notes), "--force"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(is_checkpoint(&notes));
    // A checkpoint may be continued in place, and written over by another run.
    let run = f.train(&[
        "--epochs",
        "2",
        "--resume",
        path(&notes),
        "--save",
        path(&notes),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run = f.train(&["--epochs", "1", "--save", path(&notes)]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn no_output_replaces_a_cached_dataset_file() {
    // The checks come before any load: a data directory holding the files' names is enough.
    let dir = tempfile::tempdir().unwrap();
    let boston = dir.path().join("boston/boston_house_prices.csv");
    let cifar = dir.path().join("cifar-10-batches-bin/test_batch.bin");
    for file in [&boston, &cifar] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "cached").unwrap();
    }
    let data_dir = ["--data-dir", path(dir.path())];
    let run = sgn(&[
        &[
            "eval",
            "ir/cifar_cnn.sgn",
            "--dataset",
            "cifar10",
            "--out",
            path(&cifar),
        ][..],
        &data_dir,
    ]
    .concat());
    assert_fails(&run, 1, &["--out", "the --dataset file"]);
    let boston_run = [
        "train",
        "ir/boston_mlp.sgn",
        "--dataset",
        "boston",
        "--batch",
        "10",
        "--epochs",
        "1",
    ];
    let run = sgn(&[&boston_run[..], &data_dir, &["--log", path(&boston)]].concat());
    assert_fails(&run, 1, &["--log", "the --dataset file"]);
    for file in [&boston, &cifar] {
        assert_eq!(std::fs::read(file).unwrap(), b"cached");
    }
}

#[test]
fn eval_replaces_only_its_own_results_without_force() {
    let f = files();
    let out = f.dir.path().join("out.safetensors");
    let run = f.eval(&out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    // An earlier result is replaced; a checkpoint or a note is not, unless --force.
    let run = f.eval(&out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ck = f.dir.path().join("ck.safetensors");
    let run = f.train(&["--epochs", "1", "--save", path(&ck)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let notes = f.dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes").unwrap();
    // Parameters saved with the model's name, as a library user may: not a result either.
    let named = f.dir.path().join("named.safetensors");
    let params = TensorMap::load(&f.params).unwrap();
    let metadata = BTreeMap::from([("model".to_string(), "sine_mlp".to_string())]);
    params.save(&named, &metadata).unwrap();
    for precious in [&ck, &notes, &named] {
        let before = std::fs::read(precious).unwrap();
        let run = f.eval(precious, &[]);
        assert_fails(
            &run,
            1,
            &["--out", "not an earlier `sgn eval` result", "--force"],
        );
        assert_eq!(std::fs::read(precious).unwrap(), before);
    }
    let run = f.eval(&notes, &["--force"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(TensorMap::load(&notes).is_ok());
}

#[test]
fn plot_never_writes_over_a_log() {
    let f = files();
    let log = f.dir.path().join("run.csv");
    let run = f.train(&["--epochs", "1", "--log", path(&log)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let figure = f.dir.path().join("run.svg");
    std::fs::hard_link(&log, &figure).unwrap();
    let before = std::fs::read(&log).unwrap();
    let run = sgn(&["plot", path(&log), "--out", path(&figure)]);
    assert_fails(&run, 1, &["--out", "the LOG file"]);
    assert_eq!(std::fs::read(&log).unwrap(), before);
}

#[test]
fn outputs_written_whole_never_replace_a_fifo_and_a_log_streams_into_one() {
    let f = files();
    let fifo = f.dir.path().join("pipe.safetensors");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    // Each is refused at once (nothing opens the FIFO, which would wait for a reader), and the
    // FIFO stays one: a rename would have put a regular file in its place, as it would have put
    // one in place of /dev/null.
    let run = f.train(&["--epochs", "1", "--save", path(&fifo), "--force"]);
    assert_fails(&run, 1, &["--save", "not a regular file"]);
    let figure = f.dir.path().join("pipe.svg");
    let made = std::process::Command::new("mkfifo").arg(&figure).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let log = f.dir.path().join("run.csv");
    std::fs::write(&log, "").unwrap();
    let run = sgn(&["plot", path(&log), "--out", path(&figure)]);
    assert_fails(&run, 1, &["--out", "not a regular file"]);
    for special in [&fifo, &figure] {
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::metadata(special).unwrap().file_type();
        assert!(kind.is_fifo(), "{} is still a FIFO", special.display());
    }
    // A log is written into the file as it is: here a reader at the FIFO's other end gets it.
    let stream = f.dir.path().join("stream.csv");
    let made = std::process::Command::new("mkfifo").arg(&stream).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let rows = read_while(&stream, || {
        f.train(&["--epochs", "1", "--log", path(&stream)])
    });
    assert!(
        rows.starts_with("kind,") && rows.contains("\nstep,"),
        "{rows}"
    );
    // So does a resumed run's log: a FIFO holds no rows to continue.
    let ck = f.dir.path().join("ck.safetensors");
    let run = f.train(&["--epochs", "1", "--save", path(&ck)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let resumed = [
        "--epochs",
        "2",
        "--resume",
        path(&ck),
        "--log",
        path(&stream),
    ];
    let rows = read_while(&stream, || f.train(&resumed));
    assert!(
        rows.starts_with("kind,") && rows.contains("\nstep,2.0,14,"),
        "{rows}"
    );
}

/// What a reader at the other end of the FIFO `fifo` gets while `run` succeeds.
fn read_while(fifo: &Path, run: impl FnOnce() -> Output) -> String {
    let reader = {
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let run = run();
    if !run.status.success() {
        // Ends the reader's wait, in case the run failed before it opened the FIFO (without
        // waiting in turn if the reader is gone).
        use std::os::unix::fs::OpenOptionsExt;
        let mut writer = std::fs::OpenOptions::new();
        drop(writer.write(true).custom_flags(libc::O_NONBLOCK).open(fifo));
    }
    assert!(run.status.success(), "{}", stderr(&run));
    reader.join().unwrap()
}

// ----- 4. options that make no sense -----

#[test]
fn numbers_out_of_range_are_usage_errors_that_state_the_range() {
    let train = ["train", "ir/sine_mlp.sgn", "--dataset", "sine"];
    let cases: &[(&[&str], &str)] = &[
        (&["--epochs", "0"], "a whole number >= 1"),
        (&["--cg-iters", "0"], "a whole number >= 1"),
        (&["--batch", "0"], "a whole number >= 1"),
        (&["--lr", "-1"], "a finite number > 0"),
        (&["--lr", "0"], "a finite number > 0"),
        (&["--lr", "NaN"], "a finite number > 0"),
        (&["--lr", "inf"], "a finite number > 0"),
        (&["--rho0", "NaN"], "a finite number > 0"),
        (&["--rho0", "-1"], "a finite number > 0"),
        (&["--momentum", "-1"], "a number in [0, 1)"),
        (&["--momentum", "1"], "a number in [0, 1)"),
        (&["--precondition", "-3"], "a number in [0, 1]"),
        (&["--warm-start", "2"], "a number in [0, 1]"),
        (&["--frequency", "0"], "a finite number > 0"),
        (&["--time-limit", "0s"], "longer than 0"),
        (&["--eval-at", "25s,0s"], "longer than 0"),
        (&["--seed", "-1"], "--seed"),
        (&["--cg-tol-inf", "0"], "a finite number > 0"),
        (&["--cg-early", "10"], "STEPS,ITERS"),
        (
            &["--cg-early", "0,5"],
            "STEPS '0' must be a whole number >= 1",
        ),
        (
            &["--cg-early", "10,x"],
            "ITERS 'x' must be a whole number >= 1",
        ),
        (&["--paper", "--cg-early", "5,5"], "cannot be used with"),
        (&["--curvature", "fp8"], "f32 or bf16"),
    ];
    for (extra, range) in cases {
        let mut args = [&train[..], extra].concat();
        for (option, value) in [("--batch", "10"), ("--epochs", "1")] {
            if extra[0] != option {
                args.extend([option, value]);
            }
        }
        let run = sgn(&args);
        assert_fails(&run, 2, &[extra[0], range]);
    }
    let help = stdout(&sgn(&["train", "--help"]));
    for range in [
        "a finite number > 0",
        "in [0, 1)",
        "in [0, 1]",
        "at least 1",
        "longer than 0",
    ] {
        assert!(help.contains(range), "'{range}' in: {help}");
    }
    for (command, option, range) in [
        ("bench", "--batch", "a whole number >= 1"),
        ("bench", "--repeats", "a whole number from 1 to 1000000"),
        ("inspect", "--batch", "a whole number >= 1"),
    ] {
        let run = sgn(&[command, "ir/sine_mlp.sgn", option, "0"]);
        assert_fails(&run, 2, &[option, range]);
    }
}

#[test]
fn output_paths_are_checked_before_training_starts() {
    let f = files();
    let run = f.train(&["--epochs", "1", "--plot", "curves.pdf"]);
    assert_fails(&run, 2, &["--plot", ".svg or .png"]);
    let run = f.train(&["--epochs", "1", "--log", "run.txt"]);
    assert_fails(&run, 2, &["--log", ".csv"]);
    let directory = f.dir.path().join("logs.csv");
    std::fs::create_dir(&directory).unwrap();
    let missing = f.dir.path().join("no/such/dir/ck.safetensors");
    for (option, target, why) in [
        ("--log", &directory, "is a directory"),
        ("--save", &f.dir.path().to_path_buf(), "is a directory"),
        ("--save", &missing, "cannot create files in"),
        (
            "--plot",
            &f.dir.path().join("no/curves.svg"),
            "cannot create files in",
        ),
    ] {
        let run = f.train(&["--epochs", "1", option, path(target)]);
        assert_fails(&run, 1, &[option, why]);
        assert!(
            !stdout(&run).contains("training"),
            "refused before training"
        );
    }
}

#[test]
fn errors_quote_huge_input_only_in_part() {
    let huge = "7".repeat(100_000);
    let run = sgn(&[
        "train",
        "ir/sine_mlp.sgn",
        "--dataset",
        "sine",
        "--epochs",
        &huge,
    ]);
    assert_fails(&run, 2, &["--epochs", "characters left out"]);
    assert!(stderr(&run).len() < 5000, "{} bytes", stderr(&run).len());
    // A model whose one line is a 100,000-character name: a window of the line around the
    // caret, and the name cut in the message.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("long.sgn");
    let source = std::fs::read_to_string("ir/sine_mlp.sgn").unwrap();
    let name = "h".repeat(100_000);
    let source = source.replace(
        "output z = dense(h3, w4, b4)",
        &format!("output z = {name}"),
    );
    std::fs::write(&model, source).unwrap();
    let run = sgn(&["check", path(&model)]);
    assert_fails(&run, 1, &[&format!("{}:21:12", path(&model)), "…"]);
    assert!(stderr(&run).len() < 5000, "{} bytes", stderr(&run).len());
}

/// One epoch of sine_mlp on the sine data in batches of 100.
const ONE_SINE_EPOCH: [&str; 8] = [
    "train",
    "ir/sine_mlp.sgn",
    "--dataset",
    "sine",
    "--batch",
    "100",
    "--epochs",
    "1",
];

#[test]
fn an_option_the_run_would_not_use_is_a_usage_error() {
    let sine = ONE_SINE_EPOCH;
    let cases: &[(&[&str], &str)] = &[
        (
            &["--lr", "0.1"],
            "--lr is not used by --optimizer sgn (only by sgd and adam)",
        ),
        (
            &["--nesterov"],
            "--nesterov is not used by --optimizer sgn (only by sgd)",
        ),
        (
            &["--optimizer", "sgd", "--rho0", "1"],
            "--rho0 is not used by --optimizer sgd",
        ),
        (
            &["--optimizer", "adam", "--paper"],
            "--paper is not used by --optimizer adam",
        ),
        (
            &["--optimizer", "sgd", "--curvature", "bf16"],
            "--curvature is not used by",
        ),
        (
            &["--optimizer", "adam", "--momentum", "0.5"],
            "--momentum is not used by",
        ),
        (
            &["--optimizer", "sgd", "--nesterov"],
            "--nesterov needs --momentum > 0",
        ),
        (&["--force"], "--force applies only with --save"),
        (
            &["--raw-features"],
            "--raw-features applies only to --dataset boston",
        ),
        (
            &["--test-fraction", "0.5"],
            "--test-fraction applies only to --train without --test",
        ),
        (
            &["--resume", "ck.safetensors", "--rho0", "1"],
            "--rho0 does not apply with --resume",
        ),
        (
            &["--resume", "ck.safetensors", "--params", "p.safetensors"],
            "cannot be used with",
        ),
    ];
    for (extra, why) in cases {
        let run = sgn(&[&sine[..], extra].concat());
        assert_fails(&run, 2, &[why]);
        assert!(
            !stdout(&run).contains("training"),
            "refused before training"
        );
    }
    let run = sgn(&[
        "train",
        "ir/mnist_mlp.sgn",
        "--dataset",
        "mnist",
        "--batch",
        "10",
        "--epochs",
        "1",
        "--frequency",
        "3",
    ]);
    assert_fails(&run, 2, &["--frequency applies only to --dataset sine"]);
    let stats = ["inspect", "ir/sine_mlp.sgn", "--graph", "grad", "--stats"];
    let run = sgn(&[&stats[..], &["--format", "dot"]].concat());
    assert_fails(&run, 1, &["--stats prints text or json, not dot"]);
    let f = files();
    let out = f.dir.path().join("out.safetensors");
    let run = eval(&f.model, &f.inputs, &out, &["--split", "train"]);
    assert_fails(
        &run,
        2,
        &["--split applies to a dataset or your files, not to --inputs"],
    );
    // The options each optimizer does use are accepted, also when they equal the defaults.
    let run = sgn(&[
        &sine[..],
        &["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0"],
    ]
    .concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let run = sgn(&[&sine[..], &["--cg-iters", "10", "--rho0", "1e-4"]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
}

// ----- 5. errors that name the cause -----

/// A copy of the tensor file `from` at `to`, with element `at` (row-major) of `tensor` a NaN.
fn with_nan(from: &Path, tensor: &str, at: usize, to: PathBuf) -> PathBuf {
    let mut map = TensorMap::load(from).unwrap();
    let original = map.get(tensor).unwrap();
    let (dtype, shape) = (original.dtype(), original.shape().to_vec());
    let mut values = original.to_f64_vec();
    values[at] = f64::NAN;
    map.insert(tensor, Tensor::from_f64(dtype, &shape, values).unwrap());
    save(&map, &to);
    to
}

#[test]
fn errors_name_the_option_the_file_and_the_tensor() {
    let f = files();
    // A learning rate that makes every step overflow names --lr, as written.
    let run = f.train(&["--epochs", "2", "--optimizer", "sgd", "--lr", "1e30"]);
    assert_fails(&run, 1, &["non-finite", "--lr 1e30 is probably too large"]);
    // Parameters at which the loss overflows before any step: the learning rate is not named.
    let mut params = TensorMap::load(&f.params).unwrap();
    let huge = Tensor::from_f64(DType::F32, &[20, 1], vec![1e30; 20]).unwrap();
    params.insert("w4", huge);
    let overflowing = f.dir.path().join("huge.safetensors");
    save(&params, &overflowing);
    for optimizer in ["sgd", "sgn"] {
        let options = ["--epochs", "2", "--optimizer", optimizer, "--params"];
        let run = f.train(&[&options[..], &[path(&overflowing)]].concat());
        assert_fails(
            &run,
            1,
            &["non-finite", "at the parameters it started from"],
        );
        assert!(!stderr(&run).contains("--lr ") && !stderr(&run).contains("--rho0"));
    }
    // A NaN in a parameter file: refused before training, with the file, tensor and index.
    let poisoned = with_nan(&f.params, "w2", 21, f.dir.path().join("nan.safetensors"));
    let run = f.train(&["--epochs", "1", "--params", path(&poisoned)]);
    assert_fails(
        &run,
        1,
        &[path(&poisoned), "'w2'", "non-finite value at [1, 1]"],
    );

    // A direction without v.b1: the file and the prefixed name.
    let mut v = TensorMap::load(&f.vector).unwrap();
    v.remove("v.b1");
    save(&v, &f.vector);
    let out = f.dir.path().join("out.safetensors");
    let run = f.eval(&out, &[]);
    assert_fails(&run, 1, &[path(&f.vector), "no tensor 'v.b1'"]);

    // A parameter of the wrong dtype: the parameter file, not 'parameters'.
    let mut params = TensorMap::load(&f.params).unwrap();
    let w1 = params.get("w1").unwrap().clone().cast(DType::F64);
    params.insert("w1", w1);
    let wrong = f.dir.path().join("f64.safetensors");
    save(&params, &wrong);
    let run = eval(&f.model, &f.inputs, &out, &["--params", path(&wrong)]);
    assert_fails(&run, 1, &[path(&wrong), "'w1'", "is f64"]);

    // A device as a tensor file: refused at once, not read forever.
    let run = eval(&f.model, &f.inputs, &out, &["--params", "/dev/zero"]);
    assert_fails(&run, 1, &["/dev/zero", "not a regular file"]);

    // Tensors that disagree on the batch size: the file is named.
    let mut batch = TensorMap::load(&f.inputs).unwrap();
    batch.insert("y", Tensor::zeros(DType::F32, &[7, 1]));
    let uneven = f.dir.path().join("uneven.safetensors");
    save(&batch, &uneven);
    let run = eval(&f.model, &uneven, &out, &[]);
    assert_fails(
        &run,
        1,
        &[path(&uneven), "symbol B is 8 from 'x' but 7 from 'y'"],
    );

    // A NaN in the batch: refused, with the file, the tensor and the index.
    let poisoned = with_nan(
        &f.inputs,
        "x",
        3,
        f.dir.path().join("nan-batch.safetensors"),
    );
    let run = eval(&f.model, &poisoned, &out, &[]);
    assert_fails(
        &run,
        1,
        &[path(&poisoned), "'x'", "non-finite value at [3, 0]"],
    );

    // A batch of no examples would give a NaN loss.
    let batch = TensorMap::from_iter([
        ("x", Tensor::zeros(DType::F32, &[0, 1])),
        ("y", Tensor::zeros(DType::F32, &[0, 1])),
    ]);
    save(&batch, &f.inputs);
    let run = eval(&f.model, &f.inputs, &out, &[]);
    assert_fails(&run, 1, &[path(&f.inputs), "'x'", "at least one"]);
    assert!(!out.exists());

    // A resume past the end of the run names the checkpoint.
    let ck = f.dir.path().join("ck.safetensors");
    let run = f.train(&["--epochs", "2", "--save", path(&ck)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run = f.train(&["--epochs", "1", "--resume", path(&ck)]);
    assert_fails(&run, 1, &[path(&ck), "past the end"]);
}

// ----- 6. checkpoints (see tests/hardening.rs for the library's checks) -----

#[test]
fn a_damaged_checkpoint_is_refused_by_train_and_eval() {
    let f = files();
    let ck = f.dir.path().join("ck.safetensors");
    let run = f.train(&["--epochs", "1", "--optimizer", "adam", "--save", path(&ck)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let out = f.dir.path().join("out.safetensors");
    let with_params = |params: &Path| eval(&f.model, &f.inputs, &out, &["--params", path(params)]);
    let run = with_params(&ck);
    assert!(
        run.status.success(),
        "a checkpoint works as --params: {}",
        stderr(&run)
    );

    // One exponent bit of w2 flipped, written back with the original metadata.
    let (mut map, metadata) = TensorMap::load_with_metadata(&ck).unwrap();
    let mut w2 = map.get("w2").unwrap().to_f64_vec();
    w2[5] = f64::from(f32::from_bits((w2[5] as f32).to_bits() ^ (1 << 29)));
    map.insert("w2", Tensor::from_f64(DType::F32, &[20, 20], w2).unwrap());
    map.save(&ck, &metadata).unwrap();
    let run = f.train(&[
        "--epochs",
        "2",
        "--optimizer",
        "adam",
        "--resume",
        path(&ck),
    ]);
    assert_fails(&run, 1, &[path(&ck), "'w2'", "sha256"]);
    let run = with_params(&ck);
    assert_fails(&run, 1, &[path(&ck), "'w2'", "sha256"]);
}

// ----- 7. unknown names -----

#[test]
fn a_tensor_the_model_does_not_declare_is_an_error_listing_the_expected_names() {
    let f = files();
    let out = f.dir.path().join("out.safetensors");
    let expect_refused = |file: &Path, extra: &str, expected: &str| {
        let mut map = TensorMap::load(file).unwrap();
        let original = map.clone();
        map.insert(extra, Tensor::zeros(DType::F32, &[1]));
        save(&map, file);
        let run = f.eval(&out, &[]);
        assert_fails(&run, 1, &[path(file), &format!("'{extra}'"), expected]);
        save(&original, file);
    };
    expect_refused(&f.inputs, "xx", "(expected: x, y)");
    expect_refused(
        &f.params,
        "w9",
        "(expected: w1, b1, w2, b2, w3, b3, w4, b4)",
    );
    expect_refused(&f.vector, "v.w9", "(expected: v.w1, v.b1, v.w2");
    expect_refused(&f.vector, "w1", "(expected: v.w1, v.b1, v.w2");
    let run = f.eval(&out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    // A model with many parameters lists the first twelve and counts the rest.
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let source = format!(
        "model many\ninput x: f32[B, 1]\ntarget y: f32[B, 1]\n{}output z = x * (p0{})\nloss mse(z, y)\n",
        names
            .iter()
            .map(|n| format!("param {n}: f32[1] = ones\n"))
            .collect::<String>(),
        names[1..]
            .iter()
            .map(|n| format!(" + {n}"))
            .collect::<String>()
    );
    std::fs::write(&f.model, source).unwrap();
    let model = Model::from_file(&f.model).unwrap();
    let mut params = init_params(&model.params, 0).unwrap();
    params.insert("q", Tensor::zeros(DType::F32, &[1]));
    save(&params, &f.params);
    let run = eval(&f.model, &f.inputs, &out, &["--params", path(&f.params)]);
    assert_fails(&run, 1, &["'q'", "p0, p1", "and 8 more"]);
}

/// Without the `mpi` feature, `--distributed` says how to get it instead of training alone.
#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_training_without_mpi_says_how_to_build_it() {
    let out = sgn(&[&ONE_SINE_EPOCH[..], &["--distributed"]].concat());
    assert_fails(
        &out,
        1,
        &["--distributed needs MPI", "--features mpi", "libmpich-dev"],
    );
}

#[test]
fn a_model_path_that_is_no_text_file_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    // A pipe no one writes to would block the read; /dev/zero would never end.
    let fifo = dir.path().join("model.sgn");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let mut special = vec![PathBuf::from("/dev/zero"), dir.path().to_path_buf()];
    if made.is_ok_and(|s| s.success()) {
        special.push(fifo);
    }
    for p in &special {
        assert_fails(
            &sgn(&["check", path(p)]),
            1,
            &[path(p), "not a regular file"],
        );
    }
    // Past the limit (a run of comment lines): refused before it is parsed.
    let long = dir.path().join("long.sgn");
    let line = format!("# {}\n", "x".repeat(1022));
    let lines = (sgn::model::MAX_MODEL_BYTES / 1024 + 1) as usize;
    std::fs::write(&long, line.repeat(lines)).unwrap();
    assert_fails(
        &sgn(&["check", path(&long)]),
        1,
        &[path(&long), "longer than 16 MiB"],
    );
}
