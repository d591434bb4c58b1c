//! The graph IR's text form reads back to an equal graph, rejects bad text with a located
//! diagnostic and never panics; the dot printer writes well-formed Graphviz.

use proptest::prelude::*;
use proptest::sample::Index;
use sgn::ir::Diagnostic;
use sgn::ir::Error;
use sgn::ir::op::F64Bits;
use sgn::ir::text::{parse_graph, print_dot, print_graph};
use sgn::ir::{ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, Span, TensorType, UnaryOp};
use sgn::ir::{Elementwise, Leaf, Reduce, ReduceKind};

fn b() -> Dim {
    Dim::sym("B")
}

fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(dims))
}

/// Asserts that `g` prints, reads back equal (origins included) and prints the same again.
fn assert_round_trip(g: &Graph) {
    let text = print_graph(g);
    let back = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n--- text ---\n{text}"));
    assert_eq!(&back, g, "--- text ---\n{text}");
    let origins = |g: &Graph| g.ids().map(|id| g.origin(id)).collect::<Vec<_>>();
    assert_eq!(origins(&back), origins(g));
    assert_eq!(print_graph(&back), text);
}

/// Constants whose bits are easy to lose in text.
const SPECIAL_FLOATS: [f64; 14] = [
    0.1,
    -2.5,
    1e-300,
    1e300,
    5e-324,
    f64::MAX,
    f64::MIN_POSITIVE,
    -0.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    -f64::NAN,
    f64::from_bits(0x7ff0_0000_0000_0001),
    1.0 / 3.0,
];

/// A graph using every op (every unary and binary op, every matmul flag) and every role.
fn every_op_graph(dtype: DType) -> Graph {
    let mut g = Graph::new("every_op");
    let x = g.add_arg("x", ArgRole::Input, ty(dtype, vec![b(), Dim::fixed(3)]));
    let y = g.add_arg("y", ArgRole::Target, ty(dtype, vec![b(), Dim::fixed(3)]));
    g.set_span(Some(Span { line: 4, col: 7 }));
    let w = g.add_arg(
        "w",
        ArgRole::Param,
        ty(dtype, vec![Dim::fixed(3), Dim::fixed(4)]),
    );
    g.set_span(None);
    let mut outputs = Vec::new();
    for u in UnaryOp::ALL {
        outputs.push(g.unary(u, x).expect("elementwise"));
    }
    for op in BinaryOp::ALL {
        outputs.push(g.binary(op, x, y).expect("same shapes"));
    }
    for (flags, a, bb) in [
        ((false, false), x, w),
        ((true, false), x, y),
        ((false, true), x, y),
        ((true, true), w, x),
    ] {
        let op = Op::matmul(flags.0, flags.1);
        outputs.push(g.apply(op, &[a, bb]).expect("matmul shapes fit"));
    }
    let concat = g.apply(Op::concat(0), &[x, y]).expect("concat rows");
    let ops: Vec<(Op, Vec<NodeId>)> = vec![
        (Op::pow(2.5), vec![x]),
        (Op::sum(vec![0]), vec![x]),
        (Op::sum(vec![0, 1]), vec![x]),
        (Op::sum(vec![]), vec![x]),
        (Op::reduce_max(vec![1]), vec![x]),
        (
            Op::broadcast(Shape(vec![Dim::fixed(2), b(), Dim::fixed(3)])),
            vec![x],
        ),
        (Op::reshape(Shape(vec![Dim::fixed(3).mul(&b())])), vec![x]),
        (Op::transpose_axes(vec![1, 0]), vec![x]),
        (Op::concat(1), vec![x, y, x]),
        (Op::slice(1, Dim::fixed(1), Dim::fixed(3)), vec![x]),
        (Op::slice(0, b(), Dim::fixed(2).mul(&b())), vec![concat]),
        (Op::stop_gradient(), vec![x]),
    ];
    for (k, (op, inputs)) in ops.into_iter().enumerate() {
        g.set_span(Some(Span {
            line: 10 + k as u32,
            col: 1,
        }));
        outputs.push(g.apply(op, &inputs).expect("valid op"));
    }
    g.set_span(None);
    for value in SPECIAL_FLOATS {
        let c = g.constant(value, dtype);
        let p = g.apply(Op::pow(value), &[x]).expect("elementwise");
        outputs.extend([c, p]);
    }
    let batch = g.dim_size(&b(), dtype);
    let tokens = g.dim_size(&Dim::fixed(2).mul(&b()).mul(&Dim::sym("T")), dtype);
    let full = g
        .full(0.5, &ty(dtype, vec![b(), Dim::fixed(3)]))
        .expect("broadcast scalar");
    outputs.extend([batch, tokens, full]);
    for (i, node) in outputs.into_iter().enumerate() {
        g.add_output(format!("o{i}"), node);
    }
    g
}

#[test]
fn every_op_round_trips_in_both_dtypes() {
    for dtype in [DType::F32, DType::F64] {
        let g = every_op_graph(dtype);
        assert_round_trip(&g);
        let text = print_graph(&g);
        for needle in [
            "arg x: ",
            "arg y: ",
            "arg w: ",
            " input\n",
            " target\n",
            " param\n",
            "matmul[ta, tb] %2, %0",
            "slice[0, B..2*B]",
            "reshape[3*B] %0",
            "dim_size 2*B*T",
            "const NaN : ",
            "const NaN(0xfff8000000000000)",
            "const NaN(0x7ff0000000000001)",
            "const 1e-300",
            "const -inf",
            "const 5e-324",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let sum_nodes = g
            .nodes()
            .iter()
            .filter(|n| {
                matches!(
                    n.op,
                    Op::Reduce(Reduce {
                        kind: ReduceKind::Sum,
                        ..
                    })
                )
            })
            .count();
        assert_eq!(sum_nodes, 3);
    }
}

#[test]
fn constants_read_back_bit_exactly() {
    let g = every_op_graph(DType::F64);
    let back = parse_graph(&print_graph(&g)).expect("printed text parses");
    let bits = |g: &Graph| -> Vec<u64> {
        g.nodes()
            .iter()
            .filter_map(|n| match n.op {
                Op::Leaf(Leaf::Const(c)) | Op::Elementwise(Elementwise::Pow(c)) => {
                    Some(c.get().to_bits())
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(bits(&back), bits(&g));
    for value in SPECIAL_FLOATS {
        let want = F64Bits::new(value).get().to_bits();
        assert!(bits(&back).contains(&want), "{value:?} lost");
    }
    // -0.0 is the same constant as 0.0 (F64Bits normalizes it), and prints as such.
    assert!(print_graph(&back).contains("const 0.0 : f64[]"));
}

#[test]
fn prints_the_documented_format() {
    let mut g = Graph::new("mlp");
    let f32_ = DType::F32;
    let x = g.add_arg("x", ArgRole::Input, ty(f32_, vec![b(), Dim::fixed(784)]));
    let w = g.add_arg(
        "w",
        ArgRole::Param,
        ty(f32_, vec![Dim::fixed(784), Dim::fixed(20)]),
    );
    let bias = g.add_arg("b", ArgRole::Param, ty(f32_, vec![Dim::fixed(20)]));
    g.set_span(Some(Span { line: 7, col: 9 }));
    let xw = g.matmul(x, w).expect("shapes fit");
    g.set_span(None);
    let wide = g
        .broadcast(bias, &Shape(vec![b(), Dim::fixed(20)]))
        .expect("broadcasts");
    let z = g.binary(BinaryOp::Add, xw, wide).expect("same shape");
    let half = g.constant(0.5, f32_);
    g.add_output("z", z);
    g.add_output("half", half);
    let expected = "\
graph mlp
arg x: f32[B, 784] input
arg w: f32[784, 20] param
arg b: f32[20] param
%0 = arg x : f32[B, 784]
%1 = arg w : f32[784, 20]
%2 = arg b : f32[20]
%3 = matmul %0, %1 : f32[B, 20] @7:9
%4 = broadcast[B, 20] %2 : f32[B, 20]
%5 = add %3, %4 : f32[B, 20]
%6 = const 0.5 : f32[]
out z = %5
out half = %6
";
    assert_eq!(print_graph(&g), expected);
    assert_eq!(g.to_string(), expected);
    assert_round_trip(&g);
}

#[test]
fn printing_is_deterministic() {
    let g = every_op_graph(DType::F32);
    let text = print_graph(&g);
    assert_eq!(print_graph(&g), text);
    assert_eq!(print_graph(&every_op_graph(DType::F32)), text);
    assert_eq!(print_dot(&g), print_dot(&every_op_graph(DType::F32)));
}

#[test]
fn names_that_are_not_identifiers_are_quoted() {
    let weird = "we\"ird \\ name\n\t\u{1}é #";
    let mut g = Graph::new(weird);
    let sym = Dim::sym("batch size").mul(&Dim::fixed(2));
    let x = g.add_arg(weird, ArgRole::Input, ty(DType::F64, vec![sym.clone()]));
    let y = g.add_arg("", ArgRole::Target, ty(DType::F64, vec![]));
    let n = g.dim_size(&sym, DType::F64);
    g.add_output("2nd", x);
    g.add_output("out", y);
    g.add_output("graph", n);
    let text = print_graph(&g);
    assert!(
        text.starts_with("graph \"we\\\"ird \\\\ name\\n\\t\\u{1}é #\"\n"),
        "{text}"
    );
    assert!(text.contains("f64[2*\"batch size\"]"), "{text}");
    assert!(text.contains("arg \"\": f64[] target"), "{text}");
    assert!(text.contains("out \"2nd\" = %0"), "{text}");
    assert!(text.contains("out out = %1"), "{text}");
    assert_round_trip(&g);
}

#[test]
fn reader_accepts_sparse_ids_comments_and_hand_spacing() {
    let g = parse_graph(
        "# a comment line\n\
         \n\
         graph   g   # trailing comment\n\
         arg x : f64[ 2*B ,3 ] input\n\
         %10 = arg x : f64[2*B, 3]\r\n\
         %7=exp %10:f64[2*B,3]\n\
         %42 = exp %10 : f64[2*B, 3]\n\
         %3 = const -1e-3 : f64[] @ 1 : 2\n\
         out y = %42\n",
    )
    .expect("valid text");
    // Ids are renumbered densely, and the repeated `exp` is the same node.
    assert_eq!(g.nodes().len(), 3);
    assert_eq!(g.output("y"), Some(NodeId(1)));
    assert_eq!(g.origin(NodeId(2)), Some(Span { line: 1, col: 2 }));
    assert_eq!(g.node(NodeId(2)).op, Op::constant(-1e-3));
    assert_eq!(g.arg("x").map(|a| a.node), Some(NodeId(0)));
}

/// The diagnostic `parse_graph` gives for `text`.
fn error_in(text: &str) -> Diagnostic {
    match parse_graph(text) {
        Err(Error::Syntax(d)) => *d,
        other => panic!("expected a diagnostic for\n{text}\ngot {other:?}"),
    }
}

/// Asserts that `text` fails at `line:col` with a message containing `needle`.
fn assert_error(text: &str, line: u32, col: u32, needle: &str) {
    let d = error_in(text);
    assert_eq!(d.file, "<ir>");
    assert_eq!((d.span.line, d.span.col), (line, col), "{d}");
    assert!(d.message.contains(needle), "{needle:?} not in {d}");
    let rendered = d.to_string();
    assert!(
        rendered.starts_with(&format!("<ir>:{line}:{col}: error: ")),
        "{rendered}"
    );
    assert!(rendered.ends_with('^'), "{rendered}");
}

const HEAD: &str = "graph g\narg x: f32[3] input\n%0 = arg x : f32[3]\n";

#[test]
fn unknown_op() {
    assert_error(
        &format!("{HEAD}%1 = frobnicate %0 : f32[3]\n"),
        4,
        6,
        "unknown op `frobnicate`; expected one of arg, const",
    );
}

#[test]
fn bad_type() {
    assert_error(
        "graph g\narg x: f33[3] input\n",
        2,
        8,
        "expected a type `f32[…]` or `f64[…]`, found `f33`",
    );
    assert_error(
        &format!("{HEAD}%1 = exp %0 : f32[3,]\n"),
        4,
        21,
        "expected a dimension",
    );
    assert_error(
        &format!("{HEAD}%1 = exp %0 : f32[3 4]\n"),
        4,
        21,
        "expected `,` or `]`",
    );
    assert_error(
        "graph g\narg x: f32[1.5] input\n",
        2,
        12,
        "expected a dimension (a non-negative integer",
    );
}

#[test]
fn undefined_node() {
    assert_error(
        &format!("{HEAD}%1 = exp %7 : f32[3]\n"),
        4,
        10,
        "node %7 is not defined",
    );
    assert_error(
        &format!("{HEAD}out y = %9\n"),
        4,
        9,
        "node %9 is not defined",
    );
}

#[test]
fn forward_reference() {
    assert_error(
        &format!("{HEAD}%1 = exp %2 : f32[3]\n%2 = neg %0 : f32[3]\n"),
        4,
        10,
        "node %2 is used before its definition on line 5",
    );
    assert_error(
        &format!("{HEAD}%1 = exp %1 : f32[3]\n"),
        4,
        10,
        "used before its definition on line 4",
    );
}

#[test]
fn declared_type_differs_from_the_shape_rule() {
    assert_error(
        &format!("{HEAD}%1 = sum[0] %0 : f32[3]\n"),
        4,
        18,
        "declared type f32[3] differs from f32[], the type `sum` gives",
    );
    assert_error(
        &format!("{HEAD}%1 = exp %0 : f64[3]\n"),
        4,
        15,
        "declared type f64[3] differs from f32[3]",
    );
    assert_error(
        "graph g\narg x: f32[3] input\n%0 = arg x : f32[B]\n",
        3,
        14,
        "argument x has type f32[3], but this node declares f32[B]",
    );
    assert_error(
        &format!("{HEAD}%1 = const 1.0 : f32[3]\n"),
        4,
        18,
        "`const` makes a scalar",
    );
}

#[test]
fn operands_that_break_the_shape_rule() {
    assert_error(
        "graph g\narg x: f32[3] input\narg y: f32[4] input\n%0 = arg x : f32[3]\n%1 = arg y : f32[4]\n\
         %2 = add %0, %1 : f32[3]\n",
        6,
        6,
        "shape rule of `add`: add needs operands of one shape, got [3] and [4]",
    );
    assert_error(
        &format!("{HEAD}%1 = add %0 : f32[3]\n"),
        4,
        6,
        "add cannot take 1 operand(s)",
    );
    assert_error(
        &format!("{HEAD}%1 = exp : f32[3]\n"),
        4,
        6,
        "exp cannot take 0 operand(s)",
    );
}

#[test]
fn duplicate_names() {
    assert_error(
        &format!("{HEAD}out y = %0\nout y = %0\n"),
        5,
        5,
        "output y is already defined on line 4",
    );
    assert_error(
        "graph g\narg x: f32[3] input\narg x: f32[3] param\n",
        3,
        5,
        "argument x is already declared on line 2",
    );
    assert_error(
        &format!("{HEAD}%0 = exp %0 : f32[3]\n"),
        4,
        1,
        "node %0 is already defined on line 3",
    );
    assert_error(
        &format!("{HEAD}%1 = arg x : f32[3]\n"),
        4,
        10,
        "argument x is already read by the node on line 3",
    );
}

#[test]
fn missing_or_repeated_graph_header() {
    assert_error(
        "arg x: f32[3] input\n",
        1,
        1,
        "expected the header `graph NAME` first, found `arg`",
    );
    assert_error(
        "",
        1,
        1,
        "expected the header `graph NAME` first, found the end of the text",
    );
    assert_error("# only a comment\n\n", 3, 1, "found the end of the text");
    assert_error("graph\n", 1, 6, "expected the graph's name");
    assert_error(&format!("{HEAD}graph h\n"), 4, 1, "a second `graph` header");
}

#[test]
fn garbage_after_an_item() {
    assert_error(
        &format!("{HEAD}%1 = exp %0 : f32[3] junk\n"),
        4,
        22,
        "expected the end of the line after the node's type (and optional `@line:col`), found `junk`",
    );
    assert_error(
        "graph g h\n",
        1,
        9,
        "expected the end of the line after the graph's name, found `h`",
    );
    assert_error(
        &format!("{HEAD}out y = %0 %0\n"),
        4,
        12,
        "after the output's node",
    );
    assert_error(
        "graph g\narg x: f32[3] input extra\n",
        2,
        21,
        "after the argument's role",
    );
}

#[test]
fn malformed_lines() {
    assert_error(
        &format!("{HEAD}exp %0\n"),
        4,
        1,
        "expected a line `arg NAME: TYPE ROLE`",
    );
    assert_error(
        "graph g\narg x: f32[3] weight\n",
        2,
        15,
        "expected the argument's role `input`, `target` or `param`, found `weight`",
    );
    assert_error(
        "graph g\narg x: f32[3] input\n",
        2,
        5,
        "argument x is declared but no node reads it",
    );
    assert_error("graph \"open\n", 1, 7, "unterminated string");
    assert_error("graph \"a\\qb\"\n", 1, 9, "bad escape");
    assert_error(
        "graph g\n%0 = const 1.0 : f32[] $\n",
        2,
        24,
        "unexpected character '$'",
    );
    assert_error(
        "graph g\n% = const 1.0 : f32[]\n",
        2,
        1,
        "expected a node id such as `%3`",
    );
    assert_error(
        "graph g\n%0 = const 1.2.3 : f32[]\n",
        2,
        12,
        "expected a number such as `0.5`",
    );
    assert_error(
        "graph g\n%0 = const NaN(0x3ff0000000000000) : f64[]\n",
        2,
        16,
        "expected the bits of a NaN",
    );
    assert_error(
        &format!("{HEAD}%1 = matmul[ta, ta] %0, %0 : f32[3]\n"),
        4,
        17,
        "matmul flag `ta` is given twice",
    );
    assert_error(
        &format!("{HEAD}%1 = slice[0, 0 2] %0 : f32[2]\n"),
        4,
        17,
        "expected `..`",
    );
    assert_error(
        &format!("{HEAD}%1 = const 1.0 %0 : f32[]\n"),
        4,
        16,
        "expected `:` before the node's type, found `%0`",
    );
}

#[test]
fn sizes_that_overflow_are_errors_not_panics() {
    let big = "18446744073709551615";
    assert_error(
        &format!("graph g\narg x: f32[{big}*2] input\n"),
        2,
        12,
        "larger than 2^64",
    );
    assert_error(
        &format!("graph g\narg x: f32[{big}, 2] input\n"),
        2,
        11,
        "more than 2^64 elements",
    );
    assert_error(
        &format!("graph g\narg x: f32[{big}0] input\n"),
        2,
        12,
        "a non-negative integer that fits",
    );
    let text = format!(
        "graph g\narg x: f32[{big}] input\n%0 = arg x : f32[{big}]\n%1 = concat[0] %0, %0 : f32[1]\n"
    );
    assert_error(&text, 4, 6, "add up to more than 2^64");
}

#[test]
fn dot_has_one_line_per_node_edge_and_output() {
    let g = every_op_graph(DType::F32);
    let dot = print_dot(&g);
    let lines: Vec<&str> = dot.lines().collect();
    assert_eq!(lines.first(), Some(&"digraph \"every_op\" {"));
    assert_eq!(lines.last(), Some(&"}"));
    let node_lines = lines
        .iter()
        .filter(|l| l.starts_with("  n") && l.contains(" [label=") && !l.contains(" -> "))
        .count();
    assert_eq!(node_lines, g.nodes().len());
    let out_lines = lines
        .iter()
        .filter(|l| l.starts_with("  out") && l.contains("shape=house"))
        .count();
    assert_eq!(out_lines, g.outputs().len());
    let edges = lines.iter().filter(|l| l.contains(" -> ")).count();
    let operands: usize = g.nodes().iter().map(|n| n.inputs.len()).sum();
    assert_eq!(edges, operands + g.outputs().len());
    // Arguments are ellipses coloured by role; op labels show parameters and type.
    assert!(dot.contains(
        "n0 [label=\"input x\\nf32[B, 3]\", shape=ellipse, style=filled, fillcolor=lightblue];"
    ));
    assert!(dot.contains(
        "n1 [label=\"target y\\nf32[B, 3]\", shape=ellipse, style=filled, fillcolor=lightyellow];"
    ));
    assert!(dot.contains("fillcolor=palegreen"));
    assert!(dot.contains("[label=\"matmul[ta, tb]\\nf32[4, B]\"]"));
    assert!(dot.contains("[label=\"const NaN\\nf32[]\"]"));
}

#[test]
fn dot_labels_operand_order_only_where_it_matters() {
    let mut g = Graph::new("g");
    let x = g.add_arg("x", ArgRole::Input, ty(DType::F32, vec![Dim::fixed(2)]));
    let y = g.add_arg("y", ArgRole::Input, ty(DType::F32, vec![Dim::fixed(2)]));
    let sub = g.binary(BinaryOp::Sub, x, y).expect("same shape");
    let mul = g.binary(BinaryOp::Mul, y, x).expect("same shape");
    g.add_output("d", sub);
    g.add_output("p", mul);
    let dot = print_dot(&g);
    assert!(
        dot.contains("  n0 -> n2 [label=\"0\"];\n  n1 -> n2 [label=\"1\"];\n"),
        "{dot}"
    );
    assert!(dot.contains("  n1 -> n3;\n  n0 -> n3;\n"), "{dot}");
    assert!(
        dot.contains("  out0 [label=\"out d\", shape=house"),
        "{dot}"
    );
    assert!(
        dot.contains("  n2 -> out0;\n  out1 [label=\"out p\""),
        "{dot}"
    );
}

/// True if every double-quoted string in `dot` closes on its line (escapes skipped) and braces
/// balance outside strings: what Graphviz needs to read the labels as written.
fn dot_is_well_quoted(dot: &str) -> bool {
    let mut depth = 0i32;
    for line in dot.lines() {
        let mut in_string = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (in_string, c) {
                (true, '\\') => {
                    chars.next();
                }
                (_, '"') => in_string = !in_string,
                (false, '{') => depth += 1,
                (false, '}') => depth -= 1,
                _ => {}
            }
        }
        if in_string || depth < 0 {
            return false;
        }
    }
    depth == 0
}

#[test]
fn dot_escapes_names() {
    let name = "a\"b\\c{\n}";
    let mut g = Graph::new(name);
    let x = g.add_arg(
        name,
        ArgRole::Param,
        ty(DType::F64, vec![Dim::sym("odd \"sym\"")]),
    );
    g.add_output(name, x);
    let dot = print_dot(&g);
    assert!(dot.starts_with("digraph \"a\\\"b\\\\c{\\n}\" {\n"), "{dot}");
    // The arg label holds the text-form name (quoted, escaped), escaped again for dot.
    assert!(dot.contains("[label=\"param \\\"a\\\\\\\"b\\\\\\\\c{\\\\n}\\\"\\nf64[\\\"odd \\\\\\\"sym\\\\\\\"\\\"]\""), "{dot}");
    assert!(dot_is_well_quoted(&dot), "{dot}");
    assert!(dot_is_well_quoted(&print_dot(&every_op_graph(DType::F64))));
    assert!(!dot_is_well_quoted("digraph \"a\" { n0 [label=\"x\\\"]; }"));
}

// ─── Random graphs ───────────────────────────────────────────────────────────────────────────

/// One attempted builder call: which op, on which nodes, with which parameters.
#[derive(Clone, Debug)]
struct Step {
    kind: u8,
    a: Index,
    b: Index,
    k: u8,
    value: f64,
    span: Option<(u32, u32)>,
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::ANY,
        prop::sample::select(SPECIAL_FLOATS.to_vec()),
        (-4i32..5).prop_map(f64::from),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..15,
        any::<Index>(),
        any::<Index>(),
        any::<u8>(),
        float(),
        prop::option::of((0u32..1000, 0u32..200)),
    )
        .prop_map(|(kind, a, b, k, value, span)| Step {
            kind,
            a,
            b,
            k,
            value,
            span,
        })
}

/// A name: mostly identifiers, sometimes anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_][a-z0-9_]{0,5}", 1 => any::<String>()]
}

fn arg_shapes() -> Vec<Shape> {
    let t = Dim::sym("T");
    vec![
        Shape::scalar(),
        Shape::fixed(&[3]),
        Shape(vec![b(), Dim::fixed(3)]),
        Shape(vec![Dim::fixed(3), b()]),
        Shape::fixed(&[3, 3]),
        Shape::fixed(&[1, 3]),
        Shape(vec![b(), Dim::fixed(3), Dim::fixed(2)]),
        Shape(vec![Dim::fixed(2).mul(&b()).mul(&t)]),
    ]
}

/// The op `step` asks for, applied if its shape rule allows (else skipped).
fn apply_step(g: &mut Graph, step: &Step, late_args: &mut usize) {
    let count = g.nodes().len();
    let a = NodeId(step.a.index(count) as u32);
    let other = NodeId(step.b.index(count) as u32);
    let x = g.ty(a).clone();
    let rank = x.shape.rank();
    let k = step.k as usize;
    let axes: Vec<usize> = (0..rank).filter(|i| k & (1 << i) != 0).collect();
    g.set_span(step.span.map(|(line, col)| Span { line, col }));
    let (op, inputs) = match step.kind {
        0 => {
            g.constant(step.value, x.dtype);
            return g.set_span(None);
        }
        1 => {
            let dim = Dim::fixed(k as u64 % 4).mul(&[b(), Dim::sym("T")][k % 2]);
            g.dim_size(&dim, x.dtype);
            return g.set_span(None);
        }
        2 => (Op::unary(UnaryOp::ALL[k % UnaryOp::ALL.len()]), vec![a]),
        3 => (Op::pow(step.value), vec![a]),
        4 => (
            Op::binary(BinaryOp::ALL[k % BinaryOp::ALL.len()]),
            vec![a, other],
        ),
        5 => (Op::matmul(k & 1 != 0, k & 2 != 0), vec![a, other]),
        6 => (Op::sum(axes), vec![a]),
        7 => (Op::reduce_max(axes), vec![a]),
        8 => {
            let lead = [b(), Dim::fixed(2), Dim::fixed(1)][k % 3].clone();
            let dims = std::iter::once(lead)
                .chain(x.shape.dims().iter().cloned())
                .collect();
            (Op::broadcast(Shape(dims)), vec![a])
        }
        9 => {
            let flat = [x.shape.numel(), Dim::fixed(1)];
            let shape = Shape(flat[..1 + k % 2].to_vec());
            (Op::reshape(shape), vec![a])
        }
        10 => {
            let perm = (0..rank).map(|i| (i + k) % rank.max(1)).collect();
            (Op::transpose_axes(perm), vec![a])
        }
        11 => {
            let operands = if k & 4 != 0 {
                vec![a, other, a]
            } else {
                vec![a, other]
            };
            (Op::concat(k % rank.max(1)), operands)
        }
        12 => {
            let axis = k % rank.max(1);
            let size = x.shape.dims().get(axis).cloned().unwrap_or(Dim::fixed(0));
            let start = if size.as_fixed().is_some_and(|n| n > 0) && k & 8 != 0 {
                Dim::fixed(1)
            } else {
                Dim::fixed(0)
            };
            (Op::slice(axis, start, size), vec![a])
        }
        13 => {
            *late_args += 1;
            let role = [ArgRole::Input, ArgRole::Target, ArgRole::Param][k % 3];
            g.add_arg(format!("late#{late_args}"), role, x);
            return g.set_span(None);
        }
        _ => (Op::stop_gradient(), vec![a]),
    };
    // Shape-rule failures are part of the search: such a step just adds nothing.
    let _ = g.apply(op, &inputs);
    g.set_span(None);
}

fn random_graph() -> impl Strategy<Value = Graph> {
    (
        name(),
        prop::collection::vec((name(), 0usize..3, any::<bool>(), 0usize..8), 1..4),
        prop::collection::vec(step(), 0..40),
        prop::collection::vec((name(), any::<Index>()), 0..4),
    )
        .prop_map(|(graph_name, args, steps, outputs)| {
            let mut g = Graph::new(graph_name);
            let shapes = arg_shapes();
            for (i, (name, role, wide, shape)) in args.into_iter().enumerate() {
                let role = [ArgRole::Input, ArgRole::Target, ArgRole::Param][role];
                let dtype = if wide { DType::F64 } else { DType::F32 };
                // Argument names are distinct in a graph; the index keeps them so.
                g.add_arg(
                    format!("{name}{i}"),
                    role,
                    TensorType::new(dtype, shapes[shape].clone()),
                );
            }
            let mut late_args = 0;
            for step in &steps {
                apply_step(&mut g, step, &mut late_args);
            }
            let count = g.nodes().len();
            for (i, (name, node)) in outputs.into_iter().enumerate() {
                g.add_output(format!("{name}{i}"), NodeId(node.index(count) as u32));
            }
            g
        })
}

/// Text fragments that make up IR text, for token soups.
const TOKENS: &[&str] = &[
    "graph",
    "arg",
    "out",
    "%0",
    "%1",
    "%2",
    "%99",
    "=",
    ":",
    ",",
    "[",
    "]",
    "(",
    ")",
    "*",
    "@",
    "-",
    "..",
    "f32",
    "f64",
    "B",
    "T",
    "3",
    "0",
    "1.5",
    "1e-300",
    "inf",
    "NaN",
    "0x7ff8000000000001",
    "input",
    "param",
    "target",
    "const",
    "dim_size",
    "matmul",
    "ta",
    "tb",
    "sum",
    "reduce_max",
    "broadcast",
    "reshape",
    "transpose",
    "concat",
    "slice",
    "pow",
    "exp",
    "add",
    "stop_gradient",
    "\"q\\\"\"",
    "\"",
    "#",
    "\n",
    "\n",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_graphs_round_trip(g in random_graph()) {
        assert_round_trip(&g);
    }

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        let _ = parse_graph(&text);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        let _ = parse_graph(&tokens.join(" "));
        let _ = parse_graph(&tokens.concat());
    }

    /// Edits of a valid text either fail with a diagnostic or give a graph that round-trips.
    #[test]
    fn mutated_graphs_never_panic(
        edits in prop::collection::vec((0u8..5, any::<Index>(), any::<Index>(), "\\PC{0,3}|[\\[\\]%:,*.\n-]"), 1..4),
        wide in any::<bool>(),
    ) {
        let dtype = if wide { DType::F64 } else { DType::F32 };
        let mut text = print_graph(&every_op_graph(dtype));
        for (kind, at, to, insert) in edits {
            let mut chars: Vec<char> = text.chars().collect();
            let (i, j) = (at.index(chars.len() + 1), to.index(chars.len() + 1));
            let (lo, hi) = (i.min(j), i.max(j));
            match kind {
                0 => { chars.drain(lo..hi.min(lo + 8)); }
                1 => { chars.splice(lo..lo, insert.chars()); }
                2 => { chars.splice(lo..hi.min(lo + 1), insert.chars()); }
                _ => {
                    let mut lines: Vec<String> = text.lines().map(String::from).collect();
                    let (a, b) = (at.index(lines.len()), to.index(lines.len()));
                    if kind == 3 { lines.swap(a, b) } else { let line = lines[a].clone(); lines.insert(b, line) }
                    chars = lines.join("\n").chars().collect();
                }
            }
            text = chars.into_iter().collect();
        }
        if let Ok(g) = parse_graph(&text) {
            assert_round_trip(&g);
        }
    }
}

/// A copy of a graph starts without the hash-consing table and rebuilds it when a node is
/// added: adding a node equal to one the original had gives that node back, in the copy and in
/// a dtype-converted copy, and a new node is still new.
#[test]
fn copies_hash_cons_like_the_original() {
    let mut g = Graph::new("g");
    let x = g.add_arg(
        "x",
        ArgRole::Input,
        ty(DType::F32, vec![b(), Dim::fixed(3)]),
    );
    let e = g.unary(UnaryOp::Exp, x).unwrap();
    let s = g.binary(BinaryOp::Add, e, x).unwrap();
    let one = g.constant(1.0, DType::F32);
    g.add_output("s", s);
    for mut copy in [g.clone(), g.with_dtype(DType::F64)] {
        let dtype = copy.ty(x).dtype;
        assert_eq!(copy.unary(UnaryOp::Exp, x).unwrap(), e);
        assert_eq!(copy.binary(BinaryOp::Add, e, x).unwrap(), s);
        assert_eq!(copy.constant(1.0, dtype), one);
        let len = copy.nodes().len();
        let t = copy.unary(UnaryOp::Tanh, x).unwrap();
        assert_eq!(t.index(), len, "a new node is appended");
        assert_eq!(copy.unary(UnaryOp::Tanh, x).unwrap(), t, "and found again");
        // An f64 constant is not the f32 one.
        let other = if dtype == DType::F32 {
            DType::F64
        } else {
            DType::F32
        };
        assert_ne!(copy.constant(1.0, other), one);
    }
}
