//! Training logs (CSV and JSON lines: writing, appending, reading back) and learning-curve plots.

use proptest::prelude::*;
use sgn::Error;
use sgn::optim::report::{LOG_COLUMNS, LogWriter, plot, plot_comparison, plot_seeds, read_log};
use sgn::optim::{Record, RecordKind};
use std::fs;
use std::path::Path;

fn step(iteration: u64, epoch: f64, loss: f64) -> Record {
    Record {
        kind: RecordKind::Step,
        epoch,
        iteration,
        wall_time: 0.05 * iteration as f64,
        train_loss: Some(loss),
        test_loss: None,
        test_accuracy: None,
        rho: Some(1e-4),
        cg_iters: Some(3),
        step_size: Some(1.0),
    }
}

fn eval(iteration: u64, epoch: f64, train: f64, test: f64, accuracy: Option<f64>) -> Record {
    Record {
        kind: RecordKind::Eval,
        epoch,
        iteration,
        wall_time: 0.05 * iteration as f64 + 0.01,
        train_loss: Some(train),
        test_loss: Some(test),
        test_accuracy: accuracy,
        rho: None,
        cg_iters: None,
        step_size: None,
    }
}

/// A plausible run: `epochs` epochs of `steps` steps, the loss decaying from `start` to `end`
/// with step noise, and an evaluation after each epoch (with an accuracy for classification).
fn run(epochs: u64, steps: u64, start: f64, end: f64, classification: bool) -> Vec<Record> {
    let total = (epochs * steps) as f64;
    let loss_at = |i: f64| start * (end / start).powf(i / total);
    let mut records = Vec::new();
    for epoch in 0..epochs {
        let mut sum = 0.0;
        for s in 0..steps {
            let i = epoch * steps + s;
            let noise = 1.0 + 0.3 * ((i as f64) * 1.7).sin();
            let loss = loss_at(i as f64) * noise;
            sum += loss;
            records.push(step(i, i as f64 / steps as f64, loss));
        }
        let done = (epoch + 1) * steps;
        let test = loss_at(done as f64) * 1.2;
        let accuracy = classification.then(|| 1.0 - 0.9 * test / start);
        records.push(eval(
            done,
            (epoch + 1) as f64,
            sum / steps as f64,
            test,
            accuracy,
        ));
    }
    records
}

/// Values that a decimal round trip commonly gets wrong, and the non-finite ones.
fn awkward_records() -> Vec<Record> {
    let values = [
        0.1,
        1.0 / 3.0,
        -0.0,
        5e-324,
        2.2250738585072014e-308,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e16,
        0.1 + 0.2,
        std::f64::consts::PI * 1e-200,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, &x)| Record {
            kind: if i % 2 == 0 {
                RecordKind::Step
            } else {
                RecordKind::Eval
            },
            epoch: x,
            iteration: i as u64,
            wall_time: -x,
            train_loss: Some(x),
            test_loss: (i % 3 != 0).then_some(x),
            test_accuracy: (i % 4 == 0).then_some(x),
            rho: Some(x * 0.5),
            cg_iters: (i % 2 == 0).then_some(i),
            step_size: None,
        })
        .collect();
    records.push(Record {
        kind: RecordKind::Eval,
        epoch: 0.0,
        iteration: u64::MAX,
        wall_time: 0.0,
        train_loss: None,
        test_loss: None,
        test_accuracy: None,
        rho: None,
        cg_iters: None,
        step_size: None,
    });
    records
}

fn same_float(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn same_option(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_float(a, b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// Equal bit for bit, except that any NaN equals any NaN (the payload is not logged).
fn same_record(a: &Record, b: &Record) -> bool {
    a.kind == b.kind
        && same_float(a.epoch, b.epoch)
        && a.iteration == b.iteration
        && same_float(a.wall_time, b.wall_time)
        && same_option(a.train_loss, b.train_loss)
        && same_option(a.test_loss, b.test_loss)
        && same_option(a.test_accuracy, b.test_accuracy)
        && same_option(a.rho, b.rho)
        && a.cg_iters == b.cg_iters
        && same_option(a.step_size, b.step_size)
}

fn assert_same_records(read: &[Record], written: &[Record]) {
    assert_eq!(read.len(), written.len(), "row count");
    for (i, (r, w)) in read.iter().zip(written).enumerate() {
        assert!(same_record(r, w), "row {i}: read {r:?}, wrote {w:?}");
    }
}

fn write_log(path: &Path, records: &[Record]) {
    let mut writer = LogWriter::create(path).unwrap();
    for record in records {
        writer.write(record).unwrap();
    }
}

fn data_error(result: Result<Vec<Record>, Error>) -> String {
    match result {
        Err(Error::Data(message)) => message,
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn csv_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.csv");
    let records = awkward_records();
    write_log(&path, &records);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().next().unwrap(), LOG_COLUMNS.join(","));
    assert!(text.contains(",NaN,"), "NaN is written as NaN:\n{text}");
    assert!(text.contains(",inf,") && text.contains(",-inf,"));
    assert!(text.contains(",,"), "None is an empty cell");
    assert_same_records(&read_log(&path).unwrap(), &records);
}

#[test]
fn json_lines_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["run.jsonl", "run.json"] {
        let path = dir.path().join(name);
        let records = awkward_records();
        write_log(&path, &records);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            records.len(),
            "no header in JSON lines"
        );
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value.is_object(), "each line is a JSON object: {line}");
        }
        assert!(text.contains("\"step_size\":null"));
        assert!(text.contains("\"NaN\"") && text.contains("\"-inf\""));
        assert_same_records(&read_log(&path).unwrap(), &records);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_float_round_trips(x in proptest::num::f64::ANY, iteration in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut record = step(iteration, x, x);
        record.wall_time = x;
        record.rho = Some(x);
        for name in ["run.csv", "run.jsonl"] {
            let path = dir.path().join(name);
            write_log(&path, std::slice::from_ref(&record));
            let read = read_log(&path).unwrap();
            prop_assert_eq!(read.len(), 1);
            prop_assert!(same_record(&read[0], &record), "{}: {:?} != {:?}", name, read[0], record);
        }
    }
}

#[test]
fn append_keeps_old_rows_and_writes_the_header_once() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["run.csv", "run.jsonl"] {
        let path = dir.path().join(name);
        let records = run(2, 3, 2.0, 0.1, true);
        write_log(&path, &records[..5]);
        let mut writer = LogWriter::append_to(&path).unwrap();
        for record in &records[5..] {
            writer.write(record).unwrap();
        }
        drop(writer);
        assert_same_records(&read_log(&path).unwrap(), &records);
        let header_lines = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| line.starts_with("kind,"))
            .count();
        assert_eq!(header_lines, usize::from(name.ends_with(".csv")), "{name}");
    }
}

#[test]
fn append_to_a_new_or_empty_file_starts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.csv");
    let empty = dir.path().join("empty.csv");
    fs::write(&empty, "").unwrap();
    let record = step(0, 0.0, 1.0);
    for path in [&new, &empty] {
        LogWriter::append_to(path).unwrap().write(&record).unwrap();
        let text = fs::read_to_string(path).unwrap();
        assert!(text.starts_with(&LOG_COLUMNS.join(",")), "{text}");
        assert_same_records(&read_log(path).unwrap(), std::slice::from_ref(&record));
    }
}

#[test]
fn append_drops_a_row_torn_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.csv");
    let records = run(1, 4, 1.0, 0.5, false);
    write_log(&path, &records[..2]);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("step,0.5,2,0.1,0.12");
    fs::write(&path, &text).unwrap();
    let torn = data_error(read_log(&path));
    assert!(
        torn.contains("run.csv:4:") && torn.contains("incomplete"),
        "{torn}"
    );

    let mut writer = LogWriter::append_to(&path).unwrap();
    writer.write(&records[2]).unwrap();
    drop(writer);
    assert_same_records(&read_log(&path).unwrap(), &records[..3]);
}

#[test]
fn append_rejects_a_different_header_or_a_malformed_log() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("old.csv");
    fs::write(&csv, "kind,epoch,iteration,loss\nstep,0.0,0,1.0\n").unwrap();
    let message = LogWriter::append_to(&csv).unwrap_err().to_string();
    assert!(
        message.contains("old.csv:1:") && message.contains("header is 'kind,epoch,iteration,loss'"),
        "{message}"
    );
    assert_eq!(
        fs::read_to_string(&csv).unwrap(),
        "kind,epoch,iteration,loss\nstep,0.0,0,1.0\n",
        "a rejected log is left as it was"
    );

    let jsonl = dir.path().join("old.jsonl");
    fs::write(&jsonl, "not json\n").unwrap();
    let message = LogWriter::append_to(&jsonl).unwrap_err().to_string();
    assert!(message.contains("old.jsonl:1: invalid JSON"), "{message}");
}

#[test]
fn malformed_csv_rows_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let header = LOG_COLUMNS.join(",");
    let good = "step,0.5,1,0.2,0.3,,,0.0001,3,1.0";
    let cases = [
        ("step,0.5,1,0.2", "expected 10 fields, found 4"),
        (
            "step,zero,1,0.2,0.3,,,0.0001,3,1.0",
            "field 'epoch': 'zero' is not a number",
        ),
        (
            "step,0.5,-1,0.2,0.3,,,0.0001,3,1.0",
            "field 'iteration': '-1' is not a non-negative integer",
        ),
        (
            "step,0.5,1,0.2,0.3,,,0.0001,2.5,1.0",
            "field 'cg_iters': '2.5' is not a non-negative integer",
        ),
        (
            "walk,0.5,1,0.2,0.3,,,0.0001,3,1.0",
            "unknown record kind 'walk'",
        ),
        (
            "step,,1,0.2,0.3,,,0.0001,3,1.0",
            "field 'epoch' is missing or empty",
        ),
    ];
    for (row, expected) in cases {
        fs::write(&path, format!("{header}\n{good}\n{row}\n")).unwrap();
        let message = data_error(read_log(&path));
        assert!(
            message.contains("bad.csv:3:") && message.contains(expected),
            "{row}: {message}"
        );
    }
    fs::write(&path, "epoch,kind\n").unwrap();
    assert!(data_error(read_log(&path)).contains("bad.csv:1: header is 'epoch,kind'"));
}

#[test]
fn malformed_json_rows_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let good = r#"{"kind":"eval","epoch":1.0,"iteration":10,"wall_time":2.5,"test_loss":0.1}"#;
    let cases = [
        (r#"{"kind":"eval","epoch":1.0"#, "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            r#"{"kind":"eval","epoch":1.0,"iteration":1,"wall_time":1.0,"loss":1.0}"#,
            "unknown field 'loss'",
        ),
        (
            r#"{"kind":"eval","epoch":"1.0","iteration":1,"wall_time":1.0}"#,
            "field 'epoch': expected a number",
        ),
        (
            r#"{"kind":"eval","epoch":1.0,"iteration":1.5,"wall_time":1.0}"#,
            "field 'iteration': expected a non-negative integer",
        ),
        (
            r#"{"kind":3,"epoch":1.0,"iteration":1,"wall_time":1.0}"#,
            "field 'kind': expected a string",
        ),
        (
            r#"{"kind":"eval","epoch":1.0,"iteration":1}"#,
            "field 'wall_time' is missing or empty",
        ),
    ];
    for (row, expected) in cases {
        fs::write(&path, format!("{good}\n\n{row}\n")).unwrap();
        let message = data_error(read_log(&path));
        assert!(
            message.contains("bad.jsonl:3:") && message.contains(expected),
            "{row}: {message}"
        );
    }
    // Absent optional fields read as None; blank lines are skipped.
    fs::write(&path, format!("{good}\n\n")).unwrap();
    let records = read_log(&path).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].test_loss, Some(0.1));
    assert_eq!(records[0].train_loss, None);
}

#[test]
fn logs_with_unknown_extensions_or_missing_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let message = LogWriter::create(dir.path().join("run.txt"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("run.txt") && message.contains(".csv"),
        "{message}"
    );
    let missing = dir.path().join("missing").join("run.csv");
    let error = LogWriter::create(&missing).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("missing/run.csv"), "{error}");
    let error = read_log(&missing).unwrap_err();
    assert!(error.to_string().contains("missing/run.csv"), "{error}");
}

/// The files in `dir`, by name.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn classification_plot_is_an_svg_with_labelled_panels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.svg");
    plot(&run(5, 20, 2.3, 0.2, true), "mnist_mlp, SGN", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for text in [
        "mnist_mlp, SGN",
        "(a) loss against epoch",
        "(b) loss against wall time (s)",
        "(c) test accuracy against epoch",
        "(d) test accuracy against wall time (s)",
        "test accuracy (%)",
        "train loss (per step)",
        "test loss",
    ] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    assert!(
        !svg.contains("log scale"),
        "a loss spanning one decade is drawn linearly"
    );
    assert_eq!(
        file_names(dir.path()),
        ["curves.svg"],
        "no temporary file left"
    );
}

#[test]
fn losses_spanning_more_than_two_decades_get_a_log_axis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.svg");
    plot(&run(5, 20, 2.3, 0.005, true), "t", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    assert_eq!(
        svg.matches("loss (log scale)").count(),
        2,
        "panels (a) and (b)"
    );
    assert!(svg.contains("test accuracy (%)"));
}

#[test]
fn regression_plot_shows_epoch_mean_losses_on_a_log_scale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sine.svg");
    plot(&run(10, 30, 0.5, 1e-4, false), "sine", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    for text in [
        "(c) epoch-mean train and test loss against epoch",
        "train loss (epoch mean)",
        "loss (log scale)",
    ] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    assert!(
        !svg.contains("accuracy"),
        "no accuracy panel for regression"
    );
}

#[test]
fn png_plot_has_png_magic_and_the_figure_size() {
    let dir = tempfile::tempdir().unwrap();
    for (name, classification) in [("mnist.png", true), ("sine.PNG", false)] {
        let path = dir.path().join(name);
        plot(&run(4, 25, 2.0, 0.05, classification), name, &path).unwrap();
        let png = fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        // The IHDR chunk comes first: width and height, big-endian, at bytes 16..24.
        assert_eq!(&png[12..16], b"IHDR");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((width, height), (1200, 900));
        assert!(
            png.len() > 20_000,
            "a drawn figure, not a blank one: {} bytes",
            png.len()
        );
    }
    assert_eq!(file_names(dir.path()), ["mnist.png", "sine.PNG"]);
}

#[test]
fn comparison_plot_names_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let sgn = run(5, 20, 2.3, 0.1, true);
    let sgd = run(5, 20, 2.3, 0.6, true);
    let path = dir.path().join("compare.svg");
    plot_comparison(&[("SGN", &sgn), ("SGD", &sgd)], "SGN vs SGD", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    for text in [
        "SGN vs SGD",
        "SGN: train loss (per step)",
        "SGD: test loss",
        "SGN: test accuracy",
        "SGD: test accuracy",
    ] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    let png = dir.path().join("compare.png");
    plot_comparison(&[("SGN", &sgn), ("SGD", &sgd)], "SGN vs SGD", &png).unwrap();
    assert_eq!(&fs::read(&png).unwrap()[..4], b"\x89PNG");
}

#[test]
fn seed_plot_draws_each_groups_mean_over_a_band() {
    let dir = tempfile::tempdir().unwrap();
    let sgn: Vec<Vec<Record>> = [0.1, 0.15, 0.12]
        .iter()
        .map(|&end| run(5, 20, 2.3, end, true))
        .collect();
    let sgd: Vec<Vec<Record>> = [0.6, 0.5]
        .iter()
        .map(|&end| run(5, 20, 2.3, end, true))
        .collect();
    let groups = [
        ("SGN", sgn.iter().map(|r| &r[..]).collect()),
        ("SGD", sgd.iter().map(|r| &r[..]).collect()),
    ];
    let path = dir.path().join("seeds.svg");
    plot_seeds(&groups, "over seeds", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    for text in [
        "over seeds",
        "(a) test loss against epoch, mean and range over seeds",
        "(d) test accuracy against wall time (s), mean and range over seeds",
        "SGN: test loss (3 runs)",
        "SGD: test accuracy (2 runs)",
    ] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    // One shaded band per group and panel.
    assert_eq!(svg.matches("<polygon").count(), 8, "bands");
    let regression: Vec<Vec<Record>> = (0..2).map(|_| run(5, 20, 0.5, 1e-3, false)).collect();
    let groups = [("SGN", regression.iter().map(|r| &r[..]).collect())];
    plot_seeds(&groups, "sine", &path).unwrap();
    let svg = fs::read_to_string(&path).unwrap();
    assert!(svg.contains("train loss (epoch mean) against epoch") && !svg.contains("accuracy"));
}

#[test]
fn plots_survive_empty_and_non_finite_data() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.svg");
    plot(&[], "nothing yet", &empty).unwrap();
    assert!(fs::read_to_string(&empty).unwrap().contains("no data"));

    let mut records = run(2, 5, 1.0, 0.5, true);
    records[3].train_loss = Some(f64::NAN);
    records[4].train_loss = Some(f64::INFINITY);
    records[5].train_loss = Some(0.0);
    let path = dir.path().join("nan.png");
    plot(&records, "with NaN", &path).unwrap();
    assert_eq!(&fs::read(&path).unwrap()[..4], b"\x89PNG");

    // Extreme but finite values, as a diverging run or a hand-edited log may hold.
    for (name, extremes) in [
        ("tiny.svg", [5e-324, 1e-310, 1.0]),
        ("huge.svg", [f64::MAX, 1e300, 1.0]),
        ("signed.svg", [-f64::MAX, -1.0, 1e-300]),
    ] {
        let mut records = run(1, 6, 1.0, 0.5, false);
        for (record, value) in records.iter_mut().zip(extremes) {
            record.train_loss = Some(value);
            record.epoch = value;
            record.wall_time = value;
        }
        let path = dir.path().join(name);
        plot(&records, name, &path).unwrap();
        // The figure is drawn: titled, with every line inside it (no NaN or overflowed
        // coordinates from scaling extreme values).
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.contains(name), "{name}: no title");
        let (width, height) = svg_size(&svg);
        let points = polyline_points(&svg);
        assert!(points.len() >= 6, "{name}: {} points drawn", points.len());
        for (x, y) in points {
            assert!(
                (0.0..=width).contains(&x) && (0.0..=height).contains(&y),
                "{name}: point ({x}, {y}) outside the {width}x{height} figure"
            );
        }
    }
}

/// The width and height an SVG declares.
fn svg_size(svg: &str) -> (f64, f64) {
    let attribute = |name: &str| -> f64 {
        let start = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + svg[start..].find('"').unwrap();
        svg[start..end].parse().unwrap()
    };
    (attribute("width"), attribute("height"))
}

/// The coordinates of every polyline an SVG draws.
fn polyline_points(svg: &str) -> Vec<(f64, f64)> {
    svg.split("points=\"")
        .skip(1)
        .flat_map(|rest| {
            let list = &rest[..rest.find('"').unwrap()];
            list.split_whitespace()
                .map(|pair| {
                    let (x, y) = pair.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn plot_paths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let records = run(1, 5, 1.0, 0.5, true);
    let missing = dir.path().join("missing").join("curves.svg");
    let error = plot(&records, "t", &missing).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("missing/curves.svg") && message.contains("does not exist"),
        "{message}"
    );

    let message = plot(&records, "t", &dir.path().join("curves.pdf"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("curves.pdf") && message.contains(".svg or .png"),
        "{message}"
    );
    assert!(file_names(dir.path()).is_empty(), "nothing written");
}

#[test]
fn a_plot_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.svg");
    fs::write(&path, "old").unwrap();
    plot(&run(1, 5, 1.0, 0.5, true), "replacement figure", &path).unwrap();
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("replacement figure")
    );
    assert_eq!(file_names(dir.path()), ["curves.svg"]);
}

/// `sgn plot`: the logs' runs in one figure, labelled by --labels or by file name, and clear
/// errors for a wrong label count or a missing log.
#[test]
fn the_plot_command_overlays_the_logs_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, records: &[Record]| {
        let path = dir.path().join(name);
        let mut log = LogWriter::create(&path).unwrap();
        for r in records {
            log.write(r).unwrap();
        }
        path.to_str().unwrap().to_string()
    };
    let fast = write("fast.csv", &run(3, 10, 2.3, 0.1, true));
    let slow = write("slow.jsonl", &run(3, 10, 2.3, 0.9, true));
    let out_path = dir.path().join("both.svg");
    let out = out_path.to_str().unwrap();
    let sgn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sgn"))
            .args(args)
            .output()
            .unwrap()
    };
    let done = sgn(&[
        "plot", &fast, &slow, "--labels", "SGN,SGD", "--title", "two runs", "--out", out,
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let svg = fs::read_to_string(&out_path).unwrap();
    for text in ["two runs", "SGN: train loss (per step)", "SGD: test loss"] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    // The same figure as the library draws.
    let reference = dir.path().join("reference.svg");
    let (a, b) = (read_log(&fast).unwrap(), read_log(&slow).unwrap());
    plot_comparison(&[("SGN", &a), ("SGD", &b)], "two runs", &reference).unwrap();
    assert_eq!(svg, fs::read_to_string(&reference).unwrap());

    let done = sgn(&["plot", &fast, &slow, "--out", out]);
    assert!(done.status.success());
    let svg = fs::read_to_string(&out_path).unwrap();
    assert!(svg.contains("fast: test loss") && svg.contains("slow: test loss"));

    let failed = sgn(&["plot", &fast, &slow, "--labels", "one", "--out", out]);
    assert_eq!(failed.status.code(), Some(1));
    let message = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(message.contains("1 labels for 2 logs"), "{message}");
    let missing = dir.path().join("missing.csv");
    let failed = sgn(&["plot", missing.to_str().unwrap(), "--out", out]);
    assert_eq!(failed.status.code(), Some(1));
    let message = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(message.contains("missing.csv"), "{message}");
}
