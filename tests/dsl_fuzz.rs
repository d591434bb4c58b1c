//! Property tests: no input makes the model parser panic, and every error points inside the
//! source it was given.

use proptest::prelude::*;
use proptest::sample::Index;
use sgn::{Error, Model};
use std::sync::OnceLock;

/// Parses `source`; on an error, checks that it renders and points at a real position:
/// a line of the source (or the one just after it) and a column at most one past its end.
fn parse_checked(source: &str) {
    match Model::parse(source) {
        Ok(model) => {
            assert_eq!(model.graph.outputs().len(), 2);
        }
        Err(Error::Dsl(diagnostic)) => {
            let rendered = diagnostic.to_string();
            assert!(rendered.starts_with("<input>:"), "{rendered}");
            let line = diagnostic.span.line as usize;
            let line_count = source.lines().count();
            assert!(
                line >= 1 && line <= line_count + 1,
                "line {line} of {line_count}: {rendered}"
            );
            let text = source.lines().nth(line - 1).unwrap_or("");
            let col = diagnostic.span.col as usize;
            assert!(
                col >= 1 && col <= text.chars().count() + 1,
                "col {col} of {text:?}: {rendered}"
            );
        }
        Err(other) => panic!("a parse error that is not a diagnostic: {other}"),
    }
}

/// The pieces of expressions in token soups: names, ops, numbers and punctuation.
const EXPRESSION_TOKENS: &[&str] = &[
    "x",
    "y",
    "w",
    "b",
    "z",
    "h",
    "a",
    "B",
    "f",
    "g",
    "true",
    "false",
    "zeros",
    "glorot_uniform",
    "normal",
    "uniform",
    "constant",
    "sigmoid",
    "relu",
    "tanh",
    "exp",
    "log",
    "square",
    "pow",
    "maximum",
    "sum",
    "mean",
    "max",
    "reshape",
    "transpose",
    "concat",
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_cross_entropy",
    "mse",
    "sigmoid_cross_entropy",
    "axis",
    "keepdims",
    "perm",
    "0",
    "1",
    "2",
    "-1",
    "4",
    "784",
    "0.5",
    "1e-3",
    "(",
    ")",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    "@",
    "*",
    "/",
    "+",
    "-",
];

/// Tokens that only matter at the start of a statement, and comments.
const STATEMENT_TOKENS: &[&str] = &[
    "model",
    "input",
    "target",
    "param",
    "fn",
    "output",
    "loss",
    "f32",
    "f64",
    ":",
    "\n",
    "\n",
    "\n",
    "# comment\n",
];

/// Text the lexer rejects: at most one is put in a soup, so that most soups reach the parser.
const LEXICAL_ERRORS: &[&str] = &["é", "$", "1e400", "99999999999999999999999", "1.", "2x"];

/// A model prefix that declares names, so soups that follow it reach the lowering.
const HEADER: &str =
    "model m\ninput x: f32[B, 4]\ntarget y: f32[B, 2]\nparam w: f32[4, 2]\nparam b: f32[2]\n";

/// Tokens in any order, optionally after `HEADER`, with at most one lexical error.
fn soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        3 => prop::sample::select(EXPRESSION_TOKENS),
        1 => prop::sample::select(STATEMENT_TOKENS),
    ];
    (
        any::<bool>(),
        prop::collection::vec(token, 0..80),
        prop::option::weighted(0.2, (prop::sample::select(LEXICAL_ERRORS), any::<Index>())),
    )
        .prop_map(|(with_header, mut tokens, error)| {
            if let Some((bad, at)) = error {
                tokens.insert(at.index(tokens.len() + 1), bad);
            }
            let body = tokens.join(" ");
            if with_header {
                format!("{HEADER}{body}")
            } else {
                body
            }
        })
}

/// Well-formed expressions over the names of `HEADER` and the statement soups, combining
/// every kind of op with random operands, so that the type checks and lowerings run.
fn expression() -> impl Strategy<Value = String> {
    let leaf =
        prop::sample::select(&["x", "y", "w", "b", "z", "h", "h2", "a", "1", "0.5", "-2"][..])
            .prop_map(String::from);
    leaf.prop_recursive(4, 32, 3, |inner| {
        let select = |options: &'static [&'static str]| prop::sample::select(options);
        prop_oneof![
            (
                inner.clone(),
                select(&["+", "-", "*", "/", "@"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (
                select(&[
                    "neg", "exp", "log", "tanh", "sigmoid", "relu", "softplus", "sqrt", "abs",
                    "square", "g"
                ]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (
                select(&["sum", "mean", "max", "softmax", "log_softmax", "logsumexp"]),
                inner.clone(),
                select(&[
                    "",
                    ", axis=0",
                    ", axis=-1",
                    ", axis=[0, 1]",
                    ", keepdims=true",
                    ", axis=1, keepdims=true"
                ]),
            )
                .prop_map(|(f, a, rest)| format!("{f}({a}{rest})")),
            (
                select(&[
                    "maximum",
                    "minimum",
                    "pow",
                    "f",
                    "mse",
                    "softmax_cross_entropy",
                    "sigmoid_cross_entropy"
                ]),
                inner.clone(),
                inner.clone(),
            )
                .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
            (
                inner.clone(),
                select(&["[B, 8]", "[-1]", "[2, -1]", "[B*4, -1]", "[4, B]", "[B, 2]"])
            )
                .prop_map(|(a, shape)| format!("reshape({a}, {shape})")),
            (inner.clone(), select(&["", ", [1, 0]", ", [0]"]))
                .prop_map(|(a, perm)| format!("transpose({a}{perm})")),
            (inner.clone(), inner, select(&["", ", axis=1", ", axis=-1"]))
                .prop_map(|(a, b, axis)| format!("concat([{a}, {b}]{axis})")),
        ]
    })
}

/// `HEADER`, then fns, definitions, the output and the loss, each with a random expression.
fn statement_soup() -> impl Strategy<Value = String> {
    let statements = [
        "fn f(a, b) =",
        "fn g(a) =",
        "h =",
        "h2 =",
        "output z =",
        "loss",
    ];
    (
        prop::collection::vec(expression(), statements.len()),
        any::<bool>(),
    )
        .prop_map(move |(exprs, with_fns)| {
            let skip = if with_fns { 0 } else { 2 };
            let lines: Vec<String> = statements
                .iter()
                .zip(exprs)
                .skip(skip)
                .map(|(start, e)| format!("{start} {e}"))
                .collect();
            format!("{HEADER}{}\n", lines.join("\n"))
        })
}

/// The sources of the models in `ir/`, read once.
fn shipped_models() -> &'static [String] {
    static MODELS: OnceLock<Vec<String>> = OnceLock::new();
    MODELS.get_or_init(read_shipped_models)
}

fn read_shipped_models() -> Vec<String> {
    let mut models: Vec<String> = std::fs::read_dir("ir")
        .expect("the ir/ directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sgn"))
        .map(|p| std::fs::read_to_string(p).expect("a readable model"))
        .collect();
    models.sort();
    assert!(!models.is_empty());
    models
}

/// Splits source into pieces that rejoin to it: names/numbers, single symbols and whitespace.
fn pieces(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in source.chars() {
        let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
        match out.last_mut() {
            Some(last) if word(c) && last.chars().all(word) => last.push(c),
            Some(last) if c == ' ' && last.chars().all(|d| d == ' ') => last.push(c),
            _ => out.push(c.to_string()),
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Delete,
    Duplicate,
    Swap,
}

fn mutate<T: Clone>(items: &mut Vec<T>, mutation: Mutation, i: Index, j: Index) {
    if items.is_empty() {
        return;
    }
    let (i, j) = (i.index(items.len()), j.index(items.len()));
    match mutation {
        Mutation::Delete => {
            items.remove(i);
        }
        Mutation::Duplicate => items.insert(i, items[i].clone()),
        Mutation::Swap => items.swap(i, j),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Delete),
        Just(Mutation::Duplicate),
        Just(Mutation::Swap)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        parse_checked(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\n\t]{0,300}") {
        parse_checked(&text);
    }

    #[test]
    fn token_soups_never_panic(source in soup()) {
        parse_checked(&source);
    }

    #[test]
    fn statement_soups_never_panic(source in statement_soup()) {
        parse_checked(&source);
    }

    #[test]
    fn mutated_models_never_panic(
        model in any::<Index>(),
        by_line in any::<bool>(),
        mutations in prop::collection::vec((mutation(), any::<Index>(), any::<Index>()), 1..4),
    ) {
        let models = shipped_models();
        let source = &models[model.index(models.len())];
        let mutated = if by_line {
            let mut lines: Vec<&str> = source.lines().collect();
            for (m, i, j) in mutations {
                mutate(&mut lines, m, i, j);
            }
            lines.join("\n")
        } else {
            let mut tokens = pieces(source);
            assert_eq!(tokens.concat(), *source);
            for (m, i, j) in mutations {
                mutate(&mut tokens, m, i, j);
            }
            tokens.concat()
        };
        parse_checked(&mutated);
    }
}

#[test]
fn unmutated_models_parse() {
    for source in shipped_models() {
        Model::parse(source).unwrap_or_else(|e| panic!("{e}"));
    }
}
