//! Malformed models: each error names file:line:col, shows the line with a caret under the
//! offending token, and says what was found and what was expected.

use sgn::Model;

/// A well-formed model that the cases below break one way each.
const BASE: &str = "\
model m
input x: f32[B, 4]
target y: f32[B, 2]
param w: f32[4, 2]
param b: f32[2]
output z = x @ w + b
loss mse(z, y)
";

/// `BASE` with the first `from` replaced by `to`.
fn variant(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in the base model");
    BASE.replacen(from, to, 1)
}

/// Marks the end of the line as the expected caret position.
const END_OF_LINE: &str = "\n";

/// Asserts that `source` fails with an error at `line`, at the first occurrence of `at` in that
/// line (or its end), rendered with the line and a caret, and that the message contains `words`.
#[track_caller]
fn check_named(file: &str, source: &str, line: usize, at: &str, words: &[&str]) {
    let text = source.lines().nth(line - 1).unwrap_or("");
    let col = if at == END_OF_LINE {
        text.chars().count() + 1
    } else {
        let byte = text
            .find(at)
            .unwrap_or_else(|| panic!("{at:?} is not in line {line}: {text:?}"));
        text[..byte].chars().count() + 1
    };
    check_at(file, source, line, col, words);
}

/// Asserts that `source` fails with an error at `line`:`col`, rendered with the line and a
/// caret under that column, and that the message contains `words`.
#[track_caller]
fn check_at(file: &str, source: &str, line: usize, col: usize, words: &[&str]) {
    let err = match Model::parse_named(file, source) {
        Ok(_) => panic!("parsed a malformed model:\n{source}"),
        Err(e) => e.to_string(),
    };
    let text = source.lines().nth(line - 1).unwrap_or("");
    let rendered: Vec<&str> = err.lines().collect();
    assert_eq!(rendered.len(), 3, "{err}");
    let head = format!("{file}:{line}:{col}: error: ");
    assert!(
        rendered[0].starts_with(&head),
        "expected {head:?} in:\n{err}"
    );
    let gutter = " ".repeat(line.to_string().len());
    if text.chars().count() <= 120 {
        assert_eq!(rendered[1], format!("{line} | {text}"), "{err}");
        assert_eq!(
            rendered[2],
            format!("{gutter} | {}^", " ".repeat(col - 1)),
            "{err}"
        );
    } else {
        // A long line is shown as a window of it, cut with '…': the caret is under the same
        // character.
        let shown = rendered[1].strip_prefix(&format!("{line} | ")).unwrap();
        assert!(text.contains(shown.trim_matches('…')), "{err}");
        let caret = rendered[2].strip_prefix(&format!("{gutter} | ")).unwrap();
        assert!(caret.ends_with('^'), "{err}");
        let under = shown.chars().nth(caret.chars().count() - 1);
        assert_eq!(under, text.chars().nth(col - 1), "{err}");
    }
    for word in words {
        assert!(rendered[0].contains(word), "expected {word:?} in:\n{err}");
    }
}

#[track_caller]
fn check(source: &str, line: usize, at: &str, words: &[&str]) {
    check_named("<input>", source, line, at, words);
}

#[test]
fn the_base_model_is_valid() {
    Model::parse(BASE).expect("the base model parses");
}

// ----- syntax -----

#[test]
fn lines_ended_by_cr_alone_are_named_as_such() {
    let err = Model::parse(&BASE.replace('\n', "\r"))
        .unwrap_err()
        .to_string();
    // Only the first line is shown: a CR would return the terminal's cursor.
    assert_eq!(
        err,
        "<input>:1:1: error: the lines end with CR alone (old Mac text); end them with LF or \
         CR LF\n1 | model m\n  | ^"
    );
    // CR LF is read as LF.
    Model::parse(&BASE.replace('\n', "\r\n")).expect("CR LF lines parse");
}

#[test]
fn unclosed_call() {
    check(
        &variant("x @ w + b", "sigmoid(x @ w + b"),
        6,
        END_OF_LINE,
        &["expected ')' to close the call to 'sigmoid', found end of line"],
    );
}

#[test]
fn unclosed_parenthesis() {
    check(
        &variant("x @ w + b", "(x @ w + b"),
        6,
        END_OF_LINE,
        &["expected ')' to close the '(' at 6:12", "found end of line"],
    );
}

#[test]
fn unterminated_list() {
    check(
        &variant("mse(z, y)", "sum(z, axis=[0, 1)"),
        7,
        ")",
        &[
            "expected ',' or ']' in the list opened at 7:18",
            "found ')'",
        ],
    );
    check(
        &variant("f32[4, 2]", "f32[4, 2"),
        4,
        END_OF_LINE,
        &["expected ']' to close the list", "end of line"],
    );
}

#[test]
fn missing_operand() {
    check(
        &variant("x @ w + b", "x @ w +"),
        6,
        END_OF_LINE,
        &["expected an expression", "found end of line"],
    );
}

#[test]
fn two_statements_on_a_line() {
    check(
        &variant("mse(z, y)", "mse(z, y) sum(z)"),
        7,
        "sum",
        &[
            "expected end of line after the statement",
            "found identifier 'sum'",
        ],
    );
}

#[test]
fn definition_without_equals_suggests_a_keyword() {
    check(
        &variant("param b", "parm b"),
        5,
        "b:",
        &["expected '=' after 'parm'", "did you mean 'param'?"],
    );
}

#[test]
fn statement_cannot_start_with_a_number() {
    check(
        &variant("loss", "3 = x\nloss"),
        7,
        "3",
        &["expected a statement", "found number 3"],
    );
}

#[test]
fn keyword_as_a_name() {
    check(
        &variant("param b", "param loss"),
        5,
        "loss",
        &["found the keyword 'loss'"],
    );
}

#[test]
fn unexpected_character() {
    check(
        &variant("x @ w + b", "x @ w $ b"),
        6,
        "$",
        &["unexpected character '$'"],
    );
}

#[test]
fn bad_numbers() {
    check(
        &variant("x @ w + b", "x @ w + 1.2.3"),
        6,
        ".3",
        &["right after the number '1.2'"],
    );
    check(
        &variant("x @ w + b", "x @ w + 2ab"),
        6,
        "ab",
        &["right after the number '2'"],
    );
    check(
        &variant("x @ w + b", "x @ w + 1e"),
        6,
        END_OF_LINE,
        &["exponent"],
    );
    check(
        &variant("x @ w + b", "x @ w + 123456789012345678901234567890"),
        6,
        "1",
        &["the integer 123456789012345678901234567890 is too large"],
    );
    // Finite in f64, an infinity in f32: refused where it meets an f32 tensor.
    check(
        &variant("x @ w + b", "x @ w + 1e39"),
        6,
        "+ 1e39",
        &["the constant 1e39 is outside f32's range"],
    );
    check(
        &variant("x @ w + b", "-3.5e38 * (x @ w)"),
        6,
        "* (",
        &["the constant -3.5e38 is outside f32's range"],
    );
    Model::parse(&variant("x @ w + b", "x @ w + 3.4e38")).expect("the largest f32 fits");
    // So in initializers of f32 params.
    for init in ["constant(1e39)", "normal(2e38 * 2)", "uniform(-1e39, 0)"] {
        check(
            &variant("param b: f32[2]", &format!("param b: f32[2] = {init}")),
            5,
            init,
            &["is outside f32's range", "this param is f32"],
        );
    }
    // A deviation that fits, but whose draws would not.
    check(
        &variant("param b: f32[2]", "param b: f32[2] = normal(1e38)"),
        5,
        "normal(1e38)",
        &[
            "normal(1e38) would draw values past f32's range",
            "std is at most 2.4",
        ],
    );
    let params = Model::parse(&variant(
        "param b: f32[2]",
        "param b: f32[2] = normal(2.43e37)",
    ))
    .expect("the largest deviation")
    .params;
    for seed in 0..64 {
        let drawn = sgn::ir::store::init_params(&params, seed).unwrap();
        assert!(
            drawn
                .get("b")
                .unwrap()
                .to_f64_vec()
                .iter()
                .all(|v| v.is_finite())
        );
    }
    let wide = BASE
        .replace("f32", "f64")
        .replace("x @ w + b", "x @ w + 1e39");
    Model::parse(&wide).expect("f64 holds 1e39");
}

#[test]
fn unknown_element_type() {
    check(
        &variant("param b: f32[2]", "param b: f16[2]"),
        5,
        "f16",
        &["unknown element type 'f16'", "f32 or f64"],
    );
}

#[test]
fn positional_after_keyword() {
    check(
        &variant("mse(z, y)", "sum(z, axis=0, true)"),
        7,
        "true",
        &["positional argument after the keyword argument 'axis'"],
    );
}

#[test]
fn deep_nesting() {
    // `loss sum(` puts the operand at column 10 and nesting level 2, so the error is at the
    // start of level 129.
    let deep = format!("{}z{}", "neg(".repeat(300), ")".repeat(300));
    let source = variant("mse(z, y)", &format!("sum({deep})"));
    check_at(
        "<input>",
        &source,
        7,
        10 + 4 * 127,
        &["nested too deeply", "128 levels"],
    );
    let parens = format!("{}z{}", "(".repeat(1000), ")".repeat(1000));
    let source = variant("mse(z, y)", &format!("sum({parens})"));
    check_at("<input>", &source, 7, 10 + 127, &["nested too deeply"]);
    // A chain of binary operators nests one level per operator: the 128th is too many.
    let chain = format!("z{}", " + z".repeat(400));
    let source = variant("mse(z, y)", &format!("sum({chain})"));
    check_at(
        "<input>",
        &source,
        7,
        10 + 4 * 127 + 2,
        &["nested too deeply"],
    );
}

#[test]
fn nesting_just_under_the_limit_lowers() {
    let deep = format!("{}z{}", "neg(".repeat(120), ")".repeat(120));
    Model::parse(&variant("mse(z, y)", &format!("sum({deep})"))).expect("120 levels are allowed");
}

#[test]
fn deep_nesting_through_inlined_fns() {
    // Each body is 101 levels deep; g calls f at its deepest point, so inlining nests them.
    let wrap = |inner: &str| format!("{}{inner}{}", "neg(".repeat(100), ")".repeat(100));
    let source = variant(
        "output z = x @ w + b",
        &format!(
            "fn f(a) = {}\nfn g(a) = {}\noutput z = g(x @ w) + b",
            wrap("a"),
            wrap("f(a)")
        ),
    );
    check(
        &source,
        8,
        "g(",
        &[
            "in fn 'g'",
            "in fn 'f'",
            "nested too deeply once fns are inlined",
        ],
    );
}

// ----- names -----

#[test]
fn unknown_name_suggests_the_closest() {
    check(
        &variant("x @ w + b", "x @ ww + b"),
        6,
        "ww",
        &["unknown name 'ww'", "did you mean 'w'?"],
    );
}

/// `len` pseudo-random lowercase letters (a fixed sequence per `seed`).
fn random_name(len: usize, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + ((state >> 33) % 26) as u8)
        })
        .collect()
}

/// Huge names keep the "did you mean" search linear in the source's size: a quadratic edit
/// distance on 1 MiB names takes hours (32 KiB took 7 s), these take well under a second.
#[test]
fn suggestions_for_huge_names_take_linear_time() {
    let started = std::time::Instant::now();
    // The error of a model whose output adds `used` to b after `definitions`; it must say `wanted`.
    let assert_unknown = |definitions: &str, used: &str, wanted: &str| {
        let source = variant(
            "output z = x @ w + b",
            &format!("{definitions}output z = {used} + b"),
        );
        let err = Model::parse(&source)
            .expect_err("an unknown name")
            .to_string();
        assert!(err.contains(wanted), "{}", &err[..200]);
    };
    // One 1 MiB name misspelled in its middle, next to a decoy of the same length.
    let name = random_name(1 << 20, 1);
    let mut typo = name.clone();
    typo.replace_range(1000..1002, "zz");
    let decoy = random_name(1 << 20, 2);
    assert_unknown(
        &format!("{name} = x @ w\n{decoy} = x @ w\n"),
        &typo,
        &format!("did you mean '{name}'?"),
    );
    // 64 names of 16 KiB, all of nearly the same length as the unknown one, none close to it.
    let names: Vec<String> = (0..64)
        .map(|i| random_name((1 << 14) + i % 4, 10 + i as u64))
        .collect();
    let definitions: String = names.iter().map(|n| format!("{n} = x @ w\n")).collect();
    let unknown = random_name(1 << 14, 9);
    assert_unknown(
        &definitions,
        &unknown,
        &format!("unknown name '{unknown}' (known names: "),
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds < 10.0, "the suggestion search took {seconds:.1} s");
}

#[test]
fn unknown_name_lists_what_is_known() {
    check(
        &variant("x @ w + b", "x @ w + bias_vector"),
        6,
        "bias_vector",
        &["unknown name 'bias_vector'", "known names: b, w, x, y"],
    );
}

#[test]
fn unknown_op() {
    check(
        &variant("x @ w + b", "sigmoidd(x @ w + b)"),
        6,
        "sigmoidd",
        &["unknown function 'sigmoidd'", "did you mean 'sigmoid'?"],
    );
}

#[test]
fn unknown_initializer() {
    check(
        &variant("f32[4, 2]", "f32[4, 2] = glorot"),
        4,
        "glorot",
        &[
            "unknown initializer 'glorot'",
            "glorot_uniform",
            "he_normal",
        ],
    );
}

#[test]
fn unknown_keyword_argument() {
    check(
        &variant("mse(z, y)", "sum(z, axes=1)"),
        7,
        "axes",
        &["'sum' has no argument named 'axes'", "did you mean 'axis'?"],
    );
}

#[test]
fn used_before_its_definition() {
    check(
        &variant("output z = x @ w + b", "output z = h\nh = x @ w + b"),
        6,
        "h",
        &["'h' is used before its definition at line 7"],
    );
}

#[test]
fn fn_body_uses_a_later_name() {
    let source = variant(
        "output z = x @ w + b",
        "fn f(a) = a + c\nc = b\noutput z = f(x @ w)",
    );
    check(
        &source,
        8,
        "f(",
        &[
            "in fn 'f' (line 6) called here, at 6:15",
            "'c' is defined at line 7, after fn 'f'",
        ],
    );
}

#[test]
fn fn_cannot_recurse() {
    let source = variant(
        "output z = x @ w + b",
        "fn f(a) = f(a)\noutput z = f(x @ w)",
    );
    check(&source, 7, "f(", &["fn 'f' cannot call itself"]);
}

#[test]
fn fn_cannot_shadow_an_op() {
    check(
        &variant("output z", "fn relu(a) = a\noutput z"),
        6,
        "relu",
        &["fn 'relu' would shadow the built-in op 'relu'"],
    );
}

#[test]
fn value_called_as_a_function() {
    check(
        &variant("x @ w + b", "x(w)"),
        6,
        "x(",
        &["'x' is a value, not a function"],
    );
}

#[test]
fn fn_used_as_a_value() {
    let source = variant("output z = x @ w + b", "fn f(a) = a\noutput z = f + x @ w");
    check(&source, 7, "f +", &["'f' is a fn; call it as f(…)"]);
}

#[test]
fn bool_outside_keepdims() {
    check(
        &variant("x @ w + b", "x @ w + true"),
        6,
        "true",
        &["'true' is a bool", "keepdims"],
    );
    check(
        &variant("mse(z, y)", "sum(z, keepdims=1)"),
        7,
        "1",
        &["expected keepdims=true or keepdims=false", "the number 1"],
    );
}

// ----- duplicates and structure -----

#[test]
fn duplicate_definition() {
    check(
        &variant("param b: f32[2]", "param b: f32[2]\nparam w: f32[2]"),
        6,
        "w",
        &["'w' is already defined at line 4"],
    );
}

#[test]
fn duplicate_fn_parameter() {
    check(
        &variant("output z", "fn f(a, a) = a\noutput z"),
        6,
        "a)",
        &["fn 'f' has two parameters named 'a'"],
    );
}

#[test]
fn duplicate_output_and_loss() {
    check(
        &variant("loss", "output q = z\nloss"),
        7,
        "output",
        &["a second 'output' statement", "'z' is defined at line 6"],
    );
    check(
        &format!("{BASE}loss mse(z, y)\n"),
        8,
        "loss",
        &["a second 'loss' statement", "line 7"],
    );
    check(
        &format!("{BASE}model n\n"),
        8,
        "model",
        &["a second 'model' statement", "'m' at line 1"],
    );
}

#[test]
fn missing_model() {
    check(
        &variant("model m\n", ""),
        1,
        "input",
        &[
            "expected 'model NAME' as the first statement",
            "the input 'x'",
        ],
    );
    check("", 1, END_OF_LINE, &["expected 'model NAME'", "empty file"]);
    check("# only a comment\n", 1, "#", &["empty file"]);
}

#[test]
fn missing_output() {
    let source = variant(
        "output z = x @ w + b\nloss mse(z, y)",
        "loss mse(x @ w + b, y)",
    );
    check_at(
        "<input>",
        &source,
        1,
        7,
        &["model 'm' has no output", "output NAME = expr"],
    );
}

#[test]
fn missing_loss() {
    check_at(
        "<input>",
        &variant("loss mse(z, y)\n", ""),
        1,
        7,
        &["model 'm' has no loss", "loss expr"],
    );
}

#[test]
fn missing_param() {
    let source = "model m\ninput x: f32[B, 2]\noutput z = x\nloss sum(z)\n";
    check_at("<input>", source, 1, 7, &["model 'm' has no param"]);
}

#[test]
fn initializer_on_an_input() {
    check(
        &variant("input x: f32[B, 4]", "input x: f32[B, 4] = zeros"),
        2,
        "=",
        &["only a param takes an initializer", "'x' is an input"],
    );
}

// ----- arity -----

#[test]
fn too_many_arguments() {
    check(
        &variant("x @ w + b", "sigmoid(x @ w, b)"),
        6,
        "sigmoid",
        &["too many arguments to 'sigmoid': expected sigmoid(x), found 2 arguments"],
    );
}

#[test]
fn missing_argument_to_a_fn() {
    let source = variant(
        "output z = x @ w + b",
        "fn dense(a, w, b) = a @ w + b\noutput z = dense(x, w)",
    );
    check(
        &source,
        7,
        "dense",
        &["missing argument 'b' in the call to 'dense': expected dense(a, w, b)"],
    );
}

#[test]
fn argument_given_twice() {
    check(
        &variant("mse(z, y)", "mse(z, y, z=z)"),
        7,
        "z=z",
        &["argument 'z' of 'mse' is given twice"],
    );
}

#[test]
fn initializer_arity_and_arguments() {
    check(
        &variant("f32[4, 2]", "f32[4, 2] = normal"),
        4,
        "normal",
        &["missing argument 'std' in the call to 'normal': expected normal(std)"],
    );
    check(
        &variant("f32[4, 2]", "f32[4, 2] = uniform(0, x)"),
        4,
        "x)",
        &["expected a constant number, found the name 'x'"],
    );
    check(
        &variant("f32[4, 2]", "f32[4, 2] = uniform(1, -1)"),
        4,
        "uniform",
        &["lo ≤ hi"],
    );
}

// ----- shapes and types -----

#[test]
fn broadcast_mismatch_shows_both_shapes() {
    check(
        &variant("param b: f32[2]", "param b: f32[3]"),
        6,
        "+",
        &["'+' cannot broadcast shapes [B, 2] and [3]"],
    );
}

#[test]
fn matmul_mismatch_shows_both_shapes() {
    check(
        &variant("param w: f32[4, 2]", "param w: f32[5, 2]"),
        6,
        "@",
        &["[B, 4] @ [5, 2]", "(4 vs 5)"],
    );
    check(
        &variant("x @ w + b", "x @ b"),
        6,
        "@",
        &["rank-2 matrix", "[B, 4] @ [2]"],
    );
}

#[test]
fn shape_error_inside_an_inlined_fn() {
    let source = variant(
        "output z = x @ w + b",
        "fn dense(a, w, b) = a @ w + b\noutput z = dense(x, b, w)",
    );
    check(
        &source,
        7,
        "dense(x",
        &[
            "in fn 'dense' (line 6) called here, at 6:23",
            "[B, 4] @ [2]",
        ],
    );
}

#[test]
fn loss_arguments_of_different_types() {
    check(
        &variant("mse(z, y)", "mse(z, x)"),
        7,
        "mse",
        &["mse needs", "f32[B, 2] and f32[B, 4]"],
    );
}

#[test]
fn dtype_mix_names_both_types() {
    check(
        &variant("param b: f32[2]", "param b: f64[2]"),
        6,
        "+",
        &[
            "'+' mixes element types f32 and f64",
            "f32[B, 2] and f64[2]",
        ],
    );
}

#[test]
fn symbolic_param_shape() {
    check(
        &variant("param w: f32[4, 2]", "param w: f32[B, 2]"),
        4,
        "B",
        &["param 'w' needs a fixed shape", "B is symbolic"],
    );
}

#[test]
fn bad_axis() {
    check(
        &variant("mse(z, y)", "sum(z, axis=2)"),
        7,
        "2",
        &["axis 2 is out of range for shape [B, 2]", "from -2 to 1"],
    );
    check(
        &variant("mse(z, y)", "sum(z, axis=[0, -2])"),
        7,
        "-2",
        &["axis 0 is listed twice"],
    );
    check(
        &variant("mse(z, y)", "sum(z, axis=x)"),
        7,
        "x)",
        &["expected an axis (an integer), found the name 'x'"],
    );
}

#[test]
fn bad_reshape() {
    check(
        &variant("x @ w + b", "reshape(x, [B, 3]) @ w"),
        6,
        "reshape",
        &["cannot reshape f32[B, 4] (4*B elements) to [B, 3] (3*B elements)"],
    );
    check(
        &variant("x @ w + b", "reshape(x, [-1, 3]) @ w"),
        6,
        "[",
        &[
            "cannot infer the -1 in reshape",
            "4*B elements",
            "not a multiple of 3",
        ],
    );
    check(
        &variant("x @ w + b", "reshape(x, [-1, -1]) @ w"),
        6,
        "-1]",
        &["only one dimension of a reshape may be -1"],
    );
    check(
        &variant("x @ w + b", "reshape(x, [B, 0]) @ w"),
        6,
        "0",
        &["at least 1, found 0"],
    );
}

#[test]
fn bad_transpose_and_concat() {
    check(
        &variant("x @ w + b", "transpose(x, [0, 0]) @ w"),
        6,
        "[",
        &["transpose needs a permutation of the 2 axes of [B, 4], found [0, 0]"],
    );
    check(
        &variant("x @ w + b", "concat([x @ w, x], axis=0)"),
        6,
        "concat",
        &[
            "concat along axis 0 needs equal sizes on the other axes",
            "[B, 2] and [B, 4]",
        ],
    );
}

#[test]
fn non_constant_pow_exponent() {
    check(
        &variant("x @ w + b", "pow(x @ w, b)"),
        6,
        "b)",
        &["the exponent of pow must be a constant number"],
    );
}

#[test]
fn non_finite_constant() {
    check(
        &variant("x @ w + b", "x @ w + log(0)"),
        6,
        "log",
        &["evaluates to -inf"],
    );
}

// ----- the loss and the output -----

#[test]
fn non_scalar_loss() {
    check(
        &variant("mse(z, y)", "square(z - y)"),
        7,
        "loss",
        &[
            "the loss must be a scalar, found f32[B, 2]",
            "sum(…) or mean(…)",
        ],
    );
}

#[test]
fn loss_not_through_the_output() {
    check(
        &variant("mse(z, y)", "mean(square(x @ w - y))"),
        7,
        "loss",
        &["the loss does not depend on the output 'z'"],
    );
}

#[test]
fn loss_uses_a_param_directly() {
    check(
        &variant("mse(z, y)", "mse(z, y) + sum(square(w))"),
        7,
        "loss",
        &[
            "the loss uses the param 'w' directly",
            "not only through the output 'z'",
        ],
    );
}

#[test]
fn constant_loss() {
    check(
        &variant("mse(z, y)", "3"),
        7,
        "loss",
        &["the loss is a constant"],
    );
}

#[test]
fn output_depending_on_a_target() {
    check(
        &variant("x @ w + b", "x @ w + b + y"),
        6,
        "z",
        &["the output 'z' depends on the target 'y'"],
    );
}

#[test]
fn output_without_params() {
    check(
        &variant("x @ w + b", "x"),
        6,
        "z",
        &["the output 'z' does not depend on any param"],
    );
}

// ----- files -----

#[test]
fn errors_name_the_file() {
    check_named(
        "nets/m.sgn",
        &variant("x @ w + b", "x @ w + c"),
        6,
        "c",
        &["unknown name 'c'"],
    );
}

#[test]
fn non_utf8_file_is_an_error_at_the_bad_byte() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bad.sgn");
    let mut bytes = b"model m\nparam w: f32[2] # caf".to_vec();
    bytes.push(0xff);
    std::fs::write(&path, &bytes).expect("write the model file");
    let err = Model::from_file(&path).expect_err("not UTF-8").to_string();
    let head = format!(
        "{}:2:22: error: the file is not UTF-8 text: invalid byte 0xff",
        path.display()
    );
    assert!(err.starts_with(&head), "{err}");
    let missing = Model::from_file(dir.path().join("none.sgn"))
        .expect_err("no such file")
        .to_string();
    assert!(missing.contains("none.sgn"), "{missing}");
}

#[test]
fn oversized_tensors() {
    let huge = "4294967296";
    check(
        &variant("param b: f32[2]", &format!("param b: f32[{huge}, {huge}]")),
        5,
        "f32",
        &["too large", "2^48"],
    );
    check(
        &variant("f32[B, 4]", &format!("f32[B*{huge}*{huge}, 4]")),
        2,
        &format!("*{huge}, "),
        &["this dimension is too large"],
    );
    // Each operand fits, but their broadcast would have 2^64 elements.
    let source = variant(
        "output z = x @ w + b",
        &format!(
            "input p: f32[{huge}, 1]\ninput q: f32[1, {huge}]\noutput z = x @ w + b + sum(p + q)"
        ),
    );
    check(
        &source,
        8,
        "+ q",
        &["[4294967296, 4294967296] is too large"],
    );
    check(
        &variant("x @ w + b", "reshape(x, [-1, 18446744073709551615])"),
        6,
        "[",
        &["too large"],
    );
}

#[test]
fn matmul_dtype_mix_names_both_types() {
    check(
        &variant("param w: f32[4, 2]", "param w: f64[4, 2]"),
        6,
        "@",
        &[
            "'@' mixes element types f32 and f64",
            "f32[B, 4] and f64[4, 2]",
        ],
    );
}
