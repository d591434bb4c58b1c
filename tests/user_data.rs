//! Training and evaluating on the user's own files (safetensors, CSV, IDX) and on arrays in
//! memory: each format, the round trip through a checkpoint, and every kind of bad input.

use crate::common;

use common::{sgn, stderr, stdout};
use ndarray::Array2;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sgn::data::{Dataset, one_hot};
use sgn::ir::store::{TensorMap, sha256_of};
use sgn::ir::{DType, Tensor};
use sgn::optim::report::read_log;
use sgn::optim::{Record, RecordKind};
use std::path::{Path, PathBuf};

const CLASSIFIER: &str = "model classifier\ninput x: f32[B, 4]\ntarget y: f32[B, 3]\n\
    param w1: f32[4, 8] = glorot_uniform\nparam b1: f32[8] = zeros\n\
    param w2: f32[8, 3] = glorot_uniform\nparam b2: f32[3] = zeros\n\
    output z = tanh(x @ w1 + b1) @ w2 + b2\nloss softmax_cross_entropy(z, y)\n";

/// [`CLASSIFIER`] taking each example as a 1×2×2 image.
const IMAGE_CLASSIFIER: &str = "model images\ninput x: f32[B, 1, 2, 2]\ntarget y: f32[B, 3]\n\
    param w1: f32[4, 8] = glorot_uniform\nparam b1: f32[8] = zeros\n\
    param w2: f32[8, 3] = glorot_uniform\nparam b2: f32[3] = zeros\n\
    output z = tanh(flatten(x) @ w1 + b1) @ w2 + b2\nloss softmax_cross_entropy(z, y)\n";

const REGRESSION: &str = "model regression\ninput x: f32[B, 3]\ntarget y: f32[B, 1]\n\
    param w1: f32[3, 8] = glorot_uniform\nparam b1: f32[8] = zeros\n\
    param w2: f32[8, 1] = glorot_uniform\nparam b2: f32[1] = zeros\n\
    output z = tanh(x @ w1 + b1) @ w2 + b2\nloss mse(z, y)\n";

/// Four features per example and its class (the largest of three sums), deterministic.
fn examples(n: usize, offset: usize) -> (Vec<f32>, Vec<u8>) {
    let mut features = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<f32> = (0..4)
            .map(|j| (((i + offset) * 37 + j * 11) % 23) as f32 / 23.0)
            .collect();
        let scores = [row[0] + row[1], row[2] + row[3], 1.0 - row[0] + row[3]];
        let class = (0..3)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .expect("three classes");
        features.extend(row);
        labels.push(class as u8);
    }
    (features, labels)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A tensor to write: name, dtype, shape and its little-endian bytes.
type Raw<'a> = (&'a str, Dtype, Vec<usize>, Vec<u8>);

/// Writes a safetensors file of `tensors`.
fn write_safetensors(path: &Path, tensors: &[Raw]) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A classification set of `n` examples: f32 features `[n, 4]` and i64 labels `[n]`.
fn write_classes(path: &Path, n: usize, offset: usize) {
    let (features, labels) = examples(n, offset);
    let labels: Vec<u8> = labels
        .iter()
        .flat_map(|&l| i64::from(l).to_le_bytes())
        .collect();
    write_safetensors(
        path,
        &[
            ("x", Dtype::F32, vec![n, 4], f32_bytes(&features)),
            ("y", Dtype::I64, vec![n], labels),
        ],
    );
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name`'s path as an argument.
    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).unwrap();
        self.arg(name)
    }
}

/// Runs sgn with `args`, expecting success; returns stdout.
fn ok(args: &[&str]) -> String {
    let run = sgn(args);
    assert!(
        run.status.success(),
        "sgn {args:?} failed: {}",
        stderr(&run)
    );
    stdout(&run)
}

/// The value after `key ` on the line of `output` that starts with it.
fn printed(output: &str, key: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no '{key}' in\n{output}"))
        .parse()
        .unwrap()
}

fn last_eval(log: &str) -> Record {
    read_log(log)
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| r.kind == RecordKind::Eval)
        .expect("an evaluation")
}

#[test]
fn safetensors_labels_train_and_eval_of_the_checkpoint_matches_the_log() {
    let dir = Dir::new();
    let model = dir.write("m.sgn", CLASSIFIER);
    write_classes(&dir.path("train.safetensors"), 150, 0);
    write_classes(&dir.path("test.safetensors"), 60, 1000);
    let (train, test, ck, log) = (
        dir.arg("train.safetensors"),
        dir.arg("test.safetensors"),
        dir.arg("ck.safetensors"),
        dir.arg("log.csv"),
    );
    let out = ok(&[
        "train", &model, "--train", &train, "--test", &test, "--batch", "25", "--epochs", "4",
        "--save", &ck, "--log", &log,
    ]);
    assert!(
        out.contains("on train.safetensors + test.safetensors (150 train / 60 test)"),
        "{out}"
    );
    let trained = last_eval(&log);
    let accuracy = trained
        .test_accuracy
        .expect("integer labels make a classification");
    assert!(accuracy > 0.5, "{accuracy}");
    let out = ok(&["eval", &model, "--params", &ck, "--test", &test]);
    assert_eq!(printed(&out, "loss"), trained.test_loss.unwrap());
    assert_eq!(printed(&out, "accuracy"), accuracy);
    // A model that takes another number of values per example is refused, naming the tensor.
    let wide = dir.write(
        "wide.sgn",
        &CLASSIFIER
            .replace("f32[B, 4]", "f32[B, 5]")
            .replace("[4, 8]", "[5, 8]"),
    );
    let run = sgn(&["eval", &wide, "--test", &test]);
    assert!(
        stderr(&run).contains("tensor 'x' has 4 values per example (example shape [4]) but the model's input 'x' takes 5"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_file_whose_name_has_a_comma_is_that_file_not_an_idx_pair() {
    let dir = Dir::new();
    let model = dir.write("m.sgn", CLASSIFIER);
    write_classes(&dir.path("train,2026.safetensors"), 100, 0);
    let train = dir.arg("train,2026.safetensors");
    let out = ok(&[
        "train", &model, "--train", &train, "--batch", "25", "--epochs", "1",
    ]);
    assert!(
        out.contains("on train,2026.safetensors, 0.1 held out"),
        "{out}"
    );
    // A name with a comma that is no file is still a pair, and its files are looked for.
    let missing = dir.arg("images,labels");
    let run = sgn(&[
        "train", &model, "--train", &missing, "--pixels", "unit", "--batch", "25", "--epochs", "1",
    ]);
    let images = dir.arg("images");
    assert!(
        stderr(&run).contains(&format!("{images}: No such file")),
        "{}",
        stderr(&run)
    );
}

#[test]
fn csv_with_standardization_and_a_held_out_split_round_trips() {
    let dir = Dir::new();
    let model = dir.write("m.sgn", REGRESSION);
    let mut csv = "size,rooms,price,age\n".to_string();
    for i in 0..200 {
        let (size, rooms, age) = (
            50.0 + (i * 7 % 90) as f32,
            (i % 5 + 1) as f32,
            (i * 3 % 40) as f32,
        );
        let price = 0.01 * size + 0.1 * rooms - 0.005 * age;
        csv.push_str(&format!("{size},{rooms},{price},{age}\n"));
    }
    let data = dir.write("houses.csv", &csv);
    let (ck, log) = (dir.arg("ck.safetensors"), dir.arg("log.csv"));
    let common = [
        "--train",
        &data,
        "--target-columns",
        "price",
        "--standardize",
    ];
    let mut args = vec![
        "train", &model, "--batch", "20", "--epochs", "5", "--save", &ck, "--log", &log,
    ];
    args.extend(common);
    let out = ok(&args);
    assert!(
        out.contains("on houses.csv, 0.1 held out (180 train / 20 test)"),
        "{out}"
    );
    let trained = last_eval(&log);
    assert_eq!(trained.test_accuracy, None);
    // Evaluating the held-out split from the checkpoint: its standardization, the same split.
    let out = ok(&[
        "eval",
        &model,
        "--params",
        &ck,
        "--train",
        &data,
        "--target-columns",
        "price",
    ]);
    assert_eq!(printed(&out, "loss"), trained.test_loss.unwrap());
    assert!(out.contains("test split (20 examples)"), "{out}");
    // A deviation of 0 in a copy of the checkpoint (its checksum made to match) is refused,
    // never a loss of NaN.
    let damaged = dir.arg("damaged.safetensors");
    let (mut map, mut metadata) = TensorMap::load_with_metadata(Path::new(&ck)).unwrap();
    let mut std = map.get("data.std").unwrap().to_f64_vec();
    std[1] = 0.0;
    let std = Tensor::from_f64(DType::F32, &[std.len()], std).unwrap();
    metadata.insert("sha256.data.std".to_string(), sha256_of(&std));
    map.insert("data.std", std);
    map.save(Path::new(&damaged), &metadata).unwrap();
    let run = sgn(&[
        "eval",
        &model,
        "--params",
        &damaged,
        "--train",
        &data,
        "--target-columns",
        "price",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains(
            "damaged.safetensors: not an sgn checkpoint: 'data.mean' and \
             'data.std': column 1's standard deviation is 0, not finite and > 0"
        ),
        "{}",
        stderr(&run)
    );
    // Resuming takes the checkpoint's standardization (--standardize or not); a run without
    // one cannot continue with one.
    ok(&[
        "train",
        &model,
        "--batch",
        "20",
        "--epochs",
        "6",
        "--resume",
        &ck,
        "--save",
        &ck,
        "--train",
        &data,
        "--target-columns",
        "price",
    ]);
    let plain = dir.arg("plain.safetensors");
    ok(&[
        "train",
        &model,
        "--batch",
        "20",
        "--epochs",
        "1",
        "--save",
        &plain,
        "--train",
        &data,
        "--target-columns",
        "price",
    ]);
    let mut resumed = vec![
        "train", &model, "--batch", "20", "--epochs", "2", "--resume", &plain,
    ];
    resumed.extend(common);
    let run = sgn(&resumed);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains(
            "plain.safetensors: the checkpoint's run standardized its features differently"
        ),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_test_csv_is_matched_to_the_train_csv_by_column_name() {
    let dir = Dir::new();
    let model = dir.write("m.sgn", REGRESSION);
    let rows: Vec<[f32; 4]> = (0..60)
        .map(|i| {
            let (size, rooms, age) = ((i * 7 % 90) as f32 / 90.0, (i % 5) as f32, (i % 4) as f32);
            [size, rooms, size + 0.1 * rooms - 0.2 * age, age]
        })
        .collect();
    // The same examples under the same header, under its columns reordered, and under a header
    // naming another feature.
    let csv = |header: &str, order: [usize; 4]| {
        let mut text = format!("{header}\n");
        for row in &rows {
            let cells: Vec<String> = order.iter().map(|&c| row[c].to_string()).collect();
            text.push_str(&format!("{}\n", cells.join(",")));
        }
        text
    };
    let train = dir.write("train.csv", &csv("size,rooms,price,age", [0, 1, 2, 3]));
    let same = dir.write("same.csv", &csv("size,rooms,price,age", [0, 1, 2, 3]));
    let reordered = dir.write("reordered.csv", &csv("age,price,rooms,size", [3, 2, 1, 0]));
    let other = dir.write("other.csv", &csv("size,rooms,price,year", [0, 1, 2, 3]));
    let ck = dir.arg("ck.safetensors");
    let files = |test: &str| {
        let args = [
            "--train",
            &train,
            "--test",
            test,
            "--target-columns",
            "price",
        ];
        args.map(str::to_string)
    };
    let mut args: Vec<String> = [
        "train", &model, "--batch", "20", "--epochs", "2", "--save", &ck,
    ]
    .map(str::to_string)
    .to_vec();
    args.extend(files(&reordered));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let eval = |test: &str| {
        let mut args = ["eval", &model, "--params", &ck]
            .map(str::to_string)
            .to_vec();
        args.extend(files(test));
        sgn(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let loss = |run: std::process::Output| printed(&stdout(&run), "loss");
    assert_eq!(loss(eval(&reordered)), loss(eval(&same)));
    let run = eval(&other);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run)
            .contains("other.csv: its feature columns (size, rooms, year) are not those of")
            && stderr(&run).contains("train.csv (size, rooms, age)"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn u8_images_need_a_pixel_scaling_and_fit_either_layout() {
    let dir = Dir::new();
    let (features, labels) = examples(90, 0);
    let pixels: Vec<u8> = features.iter().map(|v| (v * 255.0) as u8).collect();
    write_safetensors(
        &dir.path("images.safetensors"),
        &[
            ("x", Dtype::U8, vec![90, 2, 2], pixels.clone()),
            ("y", Dtype::U8, vec![90], labels.clone()),
        ],
    );
    let data = dir.arg("images.safetensors");
    for source in [CLASSIFIER, IMAGE_CLASSIFIER] {
        let model = dir.write("m.sgn", source);
        let run = sgn(&[
            "train", &model, "--train", &data, "--batch", "9", "--epochs", "1",
        ]);
        assert_eq!(run.status.code(), Some(1));
        assert!(
            stderr(&run).contains(
                "tensor 'x' holds u8 values (pixels): say how to scale them with --pixels"
            ),
            "{}",
            stderr(&run)
        );
        let ck = dir.arg("pixels.safetensors");
        for pixels in ["unit", "standardized"] {
            let out = ok(&[
                "train", &model, "--train", &data, "--pixels", pixels, "--batch", "9", "--epochs",
                "1", "--save", &ck,
            ]);
            assert!(
                out.contains(&format!(
                    "images.safetensors, 0.1 held out, {pixels} pixels (81 train / 9 test)"
                )),
                "{out}"
            );
        }
        // The checkpoint's pixel scaling is not forced onto a file of floats.
        write_classes(&dir.path("floats.safetensors"), 12, 0);
        ok(&[
            "eval",
            &model,
            "--params",
            &ck,
            "--test",
            &dir.arg("floats.safetensors"),
        ]);
    }
    // IDX files of the same images, as MNIST ships them.
    let idx = |dims: &[u32], data: &[u8]| -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        bytes
    };
    std::fs::write(dir.path("images.idx"), idx(&[90, 2, 2], &pixels)).unwrap();
    std::fs::write(dir.path("labels.idx"), idx(&[90], &labels)).unwrap();
    let pair = format!("{},{}", dir.arg("images.idx"), dir.arg("labels.idx"));
    let model = dir.write("m.sgn", IMAGE_CLASSIFIER);
    let out = ok(&[
        "train", &model, "--train", &pair, "--pixels", "unit", "--batch", "9", "--epochs", "2",
    ]);
    assert!(
        out.contains("images.idx,labels.idx, 0.1 held out, unit pixels (81 train / 9 test)"),
        "{out}"
    );
    assert!(out.contains("test accuracy"), "{out}");
}

#[test]
fn bad_files_are_errors_naming_the_file_and_what_was_expected() {
    let dir = Dir::new();
    let model = dir.write("m.sgn", CLASSIFIER);
    let (features, labels) = examples(20, 0);
    let i64s = |labels: &[u8]| -> Vec<u8> {
        labels
            .iter()
            .flat_map(|&l| i64::from(l).to_le_bytes())
            .collect()
    };
    let mut with_nan = features.clone();
    with_nan[4 * 7 + 2] = f32::NAN;
    let mut out_of_range = labels.clone();
    out_of_range[5] = 3;
    let file = |x_name, x: &[f32], y: Raw<'static>| -> Vec<Raw> {
        vec![(x_name, Dtype::F32, vec![20, 4], f32_bytes(x)), y]
    };
    let classes = |l: &[u8]| ("y", Dtype::I64, vec![l.len()], i64s(l));
    let float_labels: Vec<f32> = labels.iter().map(|&l| f32::from(l)).collect();
    let files = [
        (
            "renamed.safetensors",
            file("inputs", &features, classes(&labels)),
        ),
        ("nan.safetensors", file("x", &with_nan, classes(&labels))),
        (
            "range.safetensors",
            file("x", &features, classes(&out_of_range)),
        ),
        (
            "counts.safetensors",
            file("x", &features, classes(&labels[..19])),
        ),
        (
            "float-labels.safetensors",
            file(
                "x",
                &features,
                ("y", Dtype::F32, vec![20], f32_bytes(&float_labels)),
            ),
        ),
    ];
    for (name, tensors) in &files {
        write_safetensors(&dir.path(name), tensors);
    }
    let csv_header = "a,b,c,d,label\n";
    let ragged = dir.write("ragged.csv", &format!("{csv_header}1,2,3,4,0\n1,2,3,0\n"));
    let words = dir.write("words.csv", &format!("{csv_header}1,2,abc,4,0\n"));
    let label = dir.write(
        "label.csv",
        &format!("{csv_header}1,2,3,4,0\n1,2,3,4,1.5\n"),
    );
    let csv_nan = dir.write("nan.csv", &format!("{csv_header}1,2,3,4,0\n1,NaN,3,4,1\n"));
    let two_targets = dir.write("two.csv", "a,b,c,d,t1,t2\n1,2,3,4,0,1\n");
    // Lines ended by CR LF and by CR alone are counted as lines too.
    let lines = |end: &str| ["a,b,c,d,label", "1,2,3,4,0", "1,2,3,4,1", "1,2,x,4,0", ""].join(end);
    let crlf = dir.write("crlf.csv", &lines("\r\n"));
    let huge = dir.write(
        "huge.csv",
        &format!("{csv_header}1,2,3,4,0\n1,1e39,3,4,1\n"),
    );
    let cr = dir.write("cr.csv", &lines("\r"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![dir.arg("renamed.safetensors")],
            "renamed.safetensors: no tensor 'x' (the model's input); the file has inputs, y",
        ),
        (
            vec![dir.arg("nan.safetensors")],
            "nan.safetensors: tensor 'x', example 7: holds NaN (data must be finite)",
        ),
        (
            vec![dir.arg("range.safetensors")],
            "range.safetensors: tensor 'y', example 5: label 3 is not one of the 3 classes 0 to 2",
        ),
        (
            vec![dir.arg("counts.safetensors")],
            "counts.safetensors: tensor 'x' holds 20 examples but tensor 'y' holds 19",
        ),
        (
            vec![dir.arg("float-labels.safetensors")],
            "tensor 'y' has 1 values per example but the model's target 'y' takes 3 (class labels: store them as integers)",
        ),
        (
            vec![ragged.clone(), "--target-columns".into(), "label".into()],
            "ragged.csv:3: 4 fields, but the header has 5",
        ),
        (
            vec![words, "--target-columns".into(), "label".into()],
            "words.csv:2: column 'c': 'abc' is not a number",
        ),
        (
            vec![label, "--target-columns".into(), "label".into()],
            "label.csv:3: column 'label': label 1.5 is not one of the 3 classes 0 to 2",
        ),
        (
            vec![huge, "--target-columns".into(), "label".into()],
            "huge.csv:3: column 'b' holds 1e39 (past f32's range",
        ),
        (
            vec![crlf, "--target-columns".into(), "label".into()],
            "crlf.csv:4: column 'c': 'x' is not a number",
        ),
        (
            vec![cr, "--target-columns".into(), "label".into()],
            "cr.csv:4: column 'c': 'x' is not a number",
        ),
        (
            vec![csv_nan, "--target-columns".into(), "label".into()],
            "nan.csv:3: column 'b' holds NaN (data must be finite)",
        ),
        (
            vec![ragged, "--target-columns".into(), "price".into()],
            "ragged.csv: no column 'price' in the header (it has a, b, c, d, label)",
        ),
        (
            vec![two_targets, "--target-columns".into(), "t1,t2".into()],
            "two.csv: 2 target column(s) but the model's target 'y' takes 3 values per example",
        ),
        (
            vec![dir.arg("notes.txt")],
            "notes.txt': unknown data file format; give a .safetensors or a .csv file, or two IDX files as IMAGES,LABELS",
        ),
        (vec![dir.arg("missing.safetensors")], "missing.safetensors"),
    ];
    for (args, needle) in &cases {
        let mut all = vec!["train", &model, "--batch", "5", "--epochs", "1", "--train"];
        all.extend(args.iter().map(String::as_str));
        let run = sgn(&all);
        assert!(
            matches!(run.status.code(), Some(1 | 2)),
            "{args:?}: {:?}",
            run.status
        );
        assert!(
            stderr(&run).contains(needle),
            "{args:?}: expected '{needle}' in {}",
            stderr(&run)
        );
        assert!(!stderr(&run).contains("panicked"), "{}", stderr(&run));
    }
    // Options out of range, and standardization with nothing to fit it on.
    write_classes(&dir.path("valid.safetensors"), 20, 0);
    let test = dir.arg("valid.safetensors");
    for (args, needle) in [
        (
            vec![
                "train",
                &model,
                "--batch",
                "5",
                "--epochs",
                "1",
                "--train",
                &test,
                "--test-fraction",
                "1",
            ],
            "(0, 1)",
        ),
        (
            vec!["eval", &model, "--test", &test, "--standardize"],
            "standardizing needs the train split's statistics",
        ),
        (
            vec![
                "train",
                &model,
                "--batch",
                "5",
                "--epochs",
                "1",
                "--dataset",
                "sine",
                "--standardize",
            ],
            "cannot be used with",
        ),
    ] {
        let run = sgn(&args);
        assert!(
            stderr(&run).contains(needle),
            "{args:?}: expected '{needle}' in {}",
            stderr(&run)
        );
    }
    // An empty test file, a header naming the target twice, a fraction beside a test file, and
    // examples in another layout than the model's (the same count of values).
    write_classes(&dir.path("empty.safetensors"), 0, 0);
    let twice = dir.write("twice.csv", "a,label,b,c,label\n1,0,2,3,1\n");
    let wide = dir.write(
        "wide.sgn",
        &CLASSIFIER
            .replace("input x: f32[B, 4]", "input x: f32[B, 2, 3]")
            .replace("[4, 8]", "[6, 8]")
            .replace("tanh(x @ w1", "tanh(flatten(x) @ w1"),
    );
    write_safetensors(
        &dir.path("columns.safetensors"),
        &[
            ("x", Dtype::F32, vec![2, 3, 2], f32_bytes(&[0.5; 12])),
            ("y", Dtype::I64, vec![2], i64s(&[0, 1])),
        ],
    );
    let valid = dir.arg("valid.safetensors");
    let one_epoch = |rest: &[&str]| -> Vec<String> {
        let start = ["train", &model, "--batch", "1", "--epochs", "1"];
        start.iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let empty = dir.arg("empty.safetensors");
    for (args, needle) in [
        (
            ["eval", &model, "--test", &empty]
                .map(String::from)
                .to_vec(),
            "empty.safetensors: tensor 'x' holds no examples",
        ),
        (
            one_epoch(&["--train", &twice, "--target-columns", "label"]),
            "twice.csv: the header has two columns named 'label'",
        ),
        (
            one_epoch(&[
                "--train",
                &valid,
                "--test",
                &valid,
                "--test-fraction",
                "0.2",
            ]),
            "cannot be used with",
        ),
        (
            ["eval", &wide, "--test", &dir.arg("columns.safetensors")]
                .map(String::from)
                .to_vec(),
            "columns.safetensors: tensor 'x' holds examples of shape [3, 2], but the model's input 'x' takes [2, 3]",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = sgn(&args);
        assert!(!run.status.success(), "{args:?}");
        assert!(
            stderr(&run).contains(needle),
            "{args:?}: expected '{needle}' in {}",
            stderr(&run)
        );
    }
    // A one-example file leaves nothing to hold out.
    write_classes(&dir.path("one.safetensors"), 1, 0);
    let run = sgn(&[
        "train",
        &model,
        "--batch",
        "1",
        "--epochs",
        "1",
        "--train",
        &dir.arg("one.safetensors"),
    ]);
    assert!(
        stderr(&run)
            .contains("one.safetensors: 1 example(s); holding out a test split needs at least 2"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn arrays_in_memory_make_a_dataset_of_any_rank() {
    let x = Array2::from_shape_fn((6, 4), |(i, j)| (i * 4 + j) as f32)
        .into_shape_with_order((6, 2, 2))
        .unwrap();
    let y = one_hot([0, 1, 2, 0, 1, 2], 3);
    let data = Dataset::from_arrays(&x, &y, &x, &y).unwrap();
    assert_eq!(data.train.features.row(1).to_vec(), [4.0, 5.0, 6.0, 7.0]);
    assert_eq!(data.num_classes, Some(3));
    // Targets of values are a regression; [N] is one target per example.
    let values = ndarray::Array1::from_vec(vec![0.5f32, 1.0, 0.0, 2.0, 1.0, 0.0]);
    let regression = Dataset::from_arrays(&x, &values, &x, &values).unwrap();
    assert_eq!(
        (regression.num_classes, regression.train.targets.dim()),
        (None, (6, 1))
    );
    let errors = [
        Dataset::from_arrays(&x, &y.slice(ndarray::s![..5, ..]), &x, &y).unwrap_err(),
        Dataset::from_arrays(&x, &y, &x.slice(ndarray::s![.., ..1, ..]), &y).unwrap_err(),
        Dataset::from_arrays(
            &x.map(|&v| if v == 9.0 { f32::INFINITY } else { v }),
            &y,
            &x,
            &y,
        )
        .unwrap_err(),
    ];
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        messages[0].contains("train_x holds 6 examples but train_y holds 5"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("train examples have 4 feature values each, test examples 2"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].contains("train_x: example 2 holds inf"),
        "{}",
        messages[2]
    );
}
