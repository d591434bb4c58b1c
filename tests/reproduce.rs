//! `sgn reproduce` at a tiny budget: the report's structure, and its numbers recomputed from
//! the logs it leaves.

use crate::common;

use common::{sgn, stderr};
use sgn::optim::report::read_log;
use sgn::optim::{Record, RecordKind};

/// The test MSE of a run's first evaluation at or after training time `t`.
fn mse_at(log: &[Record], t: f64) -> f64 {
    log.iter()
        .filter(|r| r.kind == RecordKind::Eval)
        .find(|r| r.wall_time >= t)
        .and_then(|r| r.test_loss)
        .expect("an evaluation past the budget")
}

#[test]
fn reproduce_writes_a_report_whose_numbers_come_from_its_logs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let scale = 0.005;
    let run = sgn(&[
        "reproduce",
        "sine10",
        "--seeds",
        "2",
        "--budget-scale",
        &scale.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.starts_with("# The SGN paper on this machine"),
        "{report}"
    );
    assert!(report.contains("with 2 seed(s) per optimizer, budget scale 0.005"));
    assert!(report.contains("## sine10: sine, f = 10"));
    // The paper's rows, then one row per optimizer, at the scaled 100 s budget.
    let budget = 100.0 * scale;
    assert!(report.contains(&format!("| optimizer | test MSE at {budget} s | epochs |")));
    assert!(report.contains("| paper: SGN | 1.000e-4 |"));
    assert!(report.contains("| paper: best SGD | 1.460e-1 |"));
    assert!(out.join("sine10.png").exists());
    let mut sgn_mean = None;
    let mut means = Vec::new();
    for (label, slug) in [
        ("SGN(20)", "sgn20"),
        ("SGD(0.1)", "sgd0_1"),
        ("Adam(0.001)", "adam0_001"),
    ] {
        let at: Vec<f64> = (0..2)
            .map(|seed| {
                let log =
                    read_log(out.join(format!("logs/sine10-{slug}-seed{seed}-500ms.csv"))).unwrap();
                mse_at(&log, budget)
            })
            .collect();
        let mean = (at[0] + at[1]) / 2.0;
        let std = ((at[0] - mean).powi(2) + (at[1] - mean).powi(2)).sqrt();
        let cell = format!("| {label} | {mean:.3e} ± {std:.3e} |");
        assert!(report.contains(&cell), "{cell} in\n{report}");
        sgn_mean.get_or_insert(mean);
        means.push((label, mean));
    }
    let mean = sgn_mean.unwrap();
    let verdict = if mean <= 1e-4 {
        "meets"
    } else {
        "does not meet"
    };
    let line = format!("SGN(20)'s mean {mean:.3e} {verdict} the paper's SGN (1.000e-4) and ");
    assert!(report.contains(&line), "{line} in\n{report}");
    // Against the better of SGD and Adam (lower MSE), as the logs have them.
    let (label, other) = means[1..]
        .iter()
        .copied()
        .reduce(|x, y| if x.1 <= y.1 { x } else { y })
        .unwrap();
    let beats = if mean <= other {
        "beats"
    } else {
        "does not beat"
    };
    let line = format!("{beats} the best other optimizer of this run, {label} ({other:.3e}).");
    assert!(report.contains(&line), "{line} in\n{report}");
}

#[test]
fn reproduce_reads_finished_runs_back_and_reports_missing_cifar() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let empty = dir.path().join("no-data");
    let args = [
        "reproduce",
        "sine100",
        "cifar10",
        "--seeds",
        "1",
        "--budget-scale",
        "0.002",
        "--out",
        out.to_str().unwrap(),
        "--data-dir",
        empty.to_str().unwrap(),
    ];
    let first = sgn(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("cifar10: not run:"),
        "{}",
        stderr(&first)
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("trained 3 run(s) and read 0 finished run(s) back"),
        "{report}"
    );
    let cifar = &report[report
        .find("## cifar10: CIFAR-10")
        .expect("a CIFAR-10 section")..];
    assert!(
        cifar.contains("Not run: ") && cifar.contains("data_batch_1.bin"),
        "{cifar}"
    );
    let logs: Vec<String> = std::fs::read_dir(out.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert!(
        logs.contains(&"sine100-sgn30-seed0-200ms.csv".to_string()),
        "{logs:?}"
    );
    // Run again: every finished run is read back, the section is the same.
    let section = |report: &str| {
        let start = report.find("## sine100").unwrap();
        report[start..report.find("## cifar10").unwrap()].to_string()
    };
    let second = sgn(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    let again = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        again.contains("trained 0 run(s) and read 3 finished run(s) back"),
        "{again}"
    );
    assert_eq!(section(&again), section(&report));
    // A deleted log is run again; another budget scale does not read the old ones.
    std::fs::remove_file(out.join("logs/sine100-adam0_001-seed0-200ms.csv")).unwrap();
    let third = sgn(&args);
    assert!(third.status.success(), "{}", stderr(&third));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("trained 1 run(s) and read 2 finished run(s) back"),
        "{report}"
    );
    // A log cut short is no finished run: an error naming it, not a short run in the report.
    let cut = out.join("logs/sine100-sgn30-seed0-200ms.csv");
    let text = std::fs::read_to_string(&cut).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    std::fs::write(&cut, rows[..rows.len() / 2].join("\n") + "\n").unwrap();
    let fourth = sgn(&args);
    assert_eq!(fourth.status.code(), Some(1), "{}", stderr(&fourth));
    let err = stderr(&fourth);
    assert!(
        err.contains("sine100-sgn30-seed0-200ms.csv: not the log of a finished run"),
        "{err}"
    );
}

#[test]
fn reproduce_refuses_unknown_experiments_and_bad_scales() {
    for (args, needle) in [
        (&["reproduce", "cifar"][..], "invalid value 'cifar'"),
        (
            &["reproduce", "sine10", "--budget-scale", "0"],
            "--budget-scale",
        ),
        (&["reproduce", "sine10", "--seeds", "0"], "--seeds"),
        // Budgets past a Duration once panicked.
        (
            &["reproduce", "sine10", "--budget-scale", "1e18"],
            "(0, 1000]",
        ),
    ] {
        let run = sgn(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        assert!(stderr(&run).contains(needle), "{args:?}: {}", stderr(&run));
    }
}
