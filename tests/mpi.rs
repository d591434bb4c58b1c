//! Data-parallel training on MPI (`cargo test --release --features mpi --test mpi`, with MPICH's
//! `mpiexec` on the PATH): two processes on loopback against one, each other, a resumed run and
//! a failure on one of them.

mod common;

use common::stderr;
use sgn::ir::store::TensorMap;
use sgn::optim::checkpoint::load_params;
use sgn::optim::report::read_log;
use sgn::optim::{Record, RecordKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The paper's MNIST net in f64, so that the one-process and two-process runs differ by the
/// rounding of f64 sums alone; batch 3000 makes 20 SGN steps an epoch.
fn model(dir: &Path) -> PathBuf {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ir/mnist_mlp.sgn"))
        .unwrap()
        .replace("f32", "f64");
    let path = dir.join("mnist64.sgn");
    std::fs::write(&path, source).unwrap();
    path
}

/// `sgn train` on MNIST (SGN(3), batch 3000, `epochs` epochs) with `extra` arguments.
fn train_args(model: &Path, epochs: &str, extra: &[&str]) -> Vec<String> {
    let data = common::test_data_dir();
    let mut args: Vec<String> = [
        "train",
        model.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--data-dir",
        data.to_str().unwrap(),
        "--batch",
        "3000",
        "--cg-iters",
        "3",
        "--epochs",
        epochs,
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `program args` (for mpiexec, `HYDRA_LAUNCHER=fork`: no ssh to this machine), killing it
/// after two minutes: a hang is a failure, not a stuck test.
fn run(program: &str, args: &[String]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("HYDRA_LAUNCHER", "fork")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} runs (is MPICH installed? apt-get install mpich): {e}")
        });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{program} {args:?} did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `mpiexec -n 2 sgn …args --distributed`.
fn two(args: &[String]) -> Output {
    let mut all = vec![
        "-n".to_string(),
        "2".to_string(),
        env!("CARGO_BIN_EXE_sgn").to_string(),
    ];
    all.extend(args.iter().cloned());
    all.push("--distributed".to_string());
    let out = run("mpiexec", &all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn one(args: &[String]) -> Output {
    let out = run(env!("CARGO_BIN_EXE_sgn"), args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn steps(log: &Path) -> Vec<Record> {
    read_log(log)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == RecordKind::Step)
        .collect()
}

fn flat(params: &TensorMap) -> Vec<f64> {
    params.iter().flat_map(|(_, t)| t.to_f64_vec()).collect()
}

/// The largest difference of `a` and `b` relative to `b`'s largest magnitude.
fn relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn two_processes_match_one_to_rounding_and_repeat_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let with = |name: &str| {
        train_args(
            &model,
            "1",
            &[
                "--log",
                &file(&format!("{name}.csv")),
                "--save",
                &file(&format!("{name}.safetensors")),
            ],
        )
    };
    let out = two(&with("two"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("batch 3000 across 2 processes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    two(&with("again"));
    one(&with("one"));
    let (one_steps, two_steps) = (
        steps(Path::new(&file("one.csv"))),
        steps(Path::new(&file("two.csv"))),
    );
    assert_eq!((one_steps.len(), two_steps.len()), (20, 20));
    // Each step's loss (a sum of the two shards' in place of one sum over the batch) agrees to
    // f64 rounding, grown over 20 steps to at most 1e-12 (measured: ~1e-13).
    for (a, b) in one_steps.iter().zip(&two_steps) {
        let (a, b) = (a.train_loss.unwrap(), b.train_loss.unwrap());
        assert!((a - b).abs() <= 1e-12 * a.abs(), "step losses {a} and {b}");
    }
    let params =
        |name: &str| flat(&load_params(Path::new(&file(&format!("{name}.safetensors")))).unwrap());
    let difference = relative(&params("two"), &params("one"));
    assert!(difference <= 1e-10, "parameters differ by {difference:e}");
    // Two runs on two processes: the same bits.
    assert_eq!(params("two"), params("again"));
    let without_time = |log: &str| {
        steps(Path::new(&file(log)))
            .into_iter()
            .map(|r| Record {
                wall_time: 0.0,
                ..r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_time("two.csv"), without_time("again.csv"));
}

#[test]
fn a_run_on_two_processes_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    two(&train_args(
        &model,
        "2",
        &["--save", &file("straight.safetensors")],
    ));
    two(&train_args(
        &model,
        "1",
        &["--save", &file("resumed.safetensors")],
    ));
    two(&train_args(
        &model,
        "2",
        &[
            "--resume",
            &file("resumed.safetensors"),
            "--save",
            &file("resumed.safetensors"),
        ],
    ));
    let params = |name: &str| flat(&load_params(Path::new(&file(name))).unwrap());
    assert_eq!(
        params("straight.safetensors"),
        params("resumed.safetensors")
    );
}

#[test]
fn an_error_on_one_process_stops_them_all_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let missing = dir.path().join("missing.safetensors");
    let good = train_args(&model, "1", &["--distributed"]);
    let bad = train_args(
        &model,
        "1",
        &["--distributed", "--params", missing.to_str().unwrap()],
    );
    // Two programs in one MPI run: the second process is given parameters that do not exist.
    let mut args = vec![
        "-n".to_string(),
        "1".to_string(),
        env!("CARGO_BIN_EXE_sgn").to_string(),
    ];
    args.extend(good);
    args.extend([":", "-n", "1", env!("CARGO_BIN_EXE_sgn")].map(String::from));
    args.extend(bad);
    let start = Instant::now();
    let out = run("mpiexec", &args);
    assert!(!out.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    let message = stderr(&out);
    assert!(message.contains("error on process 1 of 2:"), "{message}");
    assert!(message.contains("missing.safetensors"), "{message}");
}

#[test]
fn distributed_without_mpiexec_is_a_run_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let out = one(&train_args(&model, "1", &["--distributed"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("batch 3000\n") || stdout.contains("batch 3000 "),
        "{stdout}"
    );
    assert!(!stdout.contains("across"), "{stdout}");
}
