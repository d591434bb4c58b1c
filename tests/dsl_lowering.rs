//! Lowering the DSL to the graph IR: the shipped models, the type of every DSL op (including
//! broadcasting and symbolic dimensions), the primitives each op becomes, fn inlining and
//! hash-consing. (Values are the interpreter's business and are tested there.)

use sgn::Model;
use sgn::ir::init::Init;
use sgn::ir::{ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, UnaryOp};
use sgn::ir::{Layout, Leaf};
use std::path::Path;

fn parse(source: &str) -> Model {
    Model::parse(source).unwrap_or_else(|e| panic!("{e}"))
}

fn output_type(model: &Model) -> String {
    let node = model
        .graph
        .output(&model.output)
        .expect("the output is a graph output");
    model.graph.ty(node).to_string()
}

fn count(graph: &Graph, wanted: impl Fn(&Op) -> bool) -> usize {
    graph.nodes().iter().filter(|n| wanted(&n.op)).count()
}

fn find(graph: &Graph, wanted: impl Fn(&Op) -> bool) -> Option<NodeId> {
    graph.ids().find(|&id| wanted(&graph.node(id).op))
}

// ----- the shipped models -----

/// A model in `ir/`: its file, the type of its output and its params (name, type, init).
type Shipped = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str, Init)>,
);

/// Every model in `ir/`, as it should lower.
fn shipped() -> Vec<Shipped> {
    let (glorot, zeros, he) = (Init::GlorotUniform, Init::Zeros, Init::HeUniform);
    vec![
        (
            "mnist_mlp.sgn",
            "f32[B, 10]",
            vec![
                ("w1", "f32[784, 20]", glorot),
                ("b1", "f32[20]", zeros),
                ("w2", "f32[20, 20]", glorot),
                ("b2", "f32[20]", zeros),
                ("w3", "f32[20, 20]", glorot),
                ("b3", "f32[20]", zeros),
                ("w4", "f32[20, 10]", glorot),
                ("b4", "f32[10]", zeros),
            ],
        ),
        (
            "boston_mlp.sgn",
            "f32[B, 1]",
            vec![
                ("w1", "f32[13, 100]", glorot),
                ("b1", "f32[100]", zeros),
                ("w2", "f32[100, 100]", glorot),
                ("b2", "f32[100]", zeros),
                ("w3", "f32[100, 1]", glorot),
                ("b3", "f32[1]", zeros),
            ],
        ),
        (
            "sine_mlp.sgn",
            "f32[B, 1]",
            vec![
                ("w1", "f32[1, 20]", glorot),
                ("b1", "f32[20]", zeros),
                ("w2", "f32[20, 20]", glorot),
                ("b2", "f32[20]", zeros),
                ("w3", "f32[20, 20]", glorot),
                ("b3", "f32[20]", zeros),
                ("w4", "f32[20, 1]", glorot),
                ("b4", "f32[1]", zeros),
            ],
        ),
        (
            "mlp_tanh_800.sgn",
            "f32[B, 10]",
            vec![
                ("w1", "f32[784, 800]", glorot),
                ("b1", "f32[800]", zeros),
                ("w2", "f32[800, 800]", glorot),
                ("b2", "f32[800]", zeros),
                ("w3", "f32[800, 10]", glorot),
                ("b3", "f32[10]", zeros),
            ],
        ),
        (
            "mlp_relu_256.sgn",
            "f32[B, 10]",
            vec![
                ("w1", "f32[784, 256]", he),
                ("b1", "f32[256]", zeros),
                ("w2", "f32[256, 256]", he),
                ("b2", "f32[256]", zeros),
                ("w3", "f32[256, 10]", he),
                ("b3", "f32[10]", zeros),
            ],
        ),
        (
            "mlp_gelu_silu.sgn",
            "f32[B, 10]",
            vec![
                ("w1", "f32[784, 64]", Init::HeNormal),
                ("b1", "f32[64]", zeros),
                ("w2", "f32[64, 64]", Init::HeNormal),
                ("b2", "f32[64]", zeros),
                ("w3", "f32[64, 10]", glorot),
                ("b3", "f32[10]", zeros),
            ],
        ),
        (
            "fashion_lenet.sgn",
            "f32[B, 10]",
            vec![
                ("c1", "f32[6, 1, 5, 5]", Init::Uniform(-0.2, 0.2)),
                ("d1", "f32[6, 1, 1]", zeros),
                ("c2", "f32[16, 6, 5, 5]", Init::Uniform(-0.05, 0.05)),
                ("d2", "f32[16, 1, 1]", zeros),
                ("w3", "f32[256, 120]", uniform_within(6.0 / 266.0)),
                ("b3", "f32[120]", zeros),
                ("w4", "f32[120, 84]", uniform_within(6.0 / 130.0)),
                ("b4", "f32[84]", zeros),
                ("w5", "f32[84, 10]", uniform_within(6.0 / 94.0)),
                ("b5", "f32[10]", zeros),
            ],
        ),
        (
            "cifar_cnn.sgn",
            "f32[B, 10]",
            vec![
                ("c1", "f32[32, 3, 3, 3]", uniform_within(6.0 / 864.0)),
                ("d1", "f32[32, 1, 1]", zeros),
                ("c2", "f32[64, 32, 3, 3]", uniform_within(6.0 / 18432.0)),
                ("d2", "f32[64, 1, 1]", zeros),
                ("c3", "f32[64, 64, 3, 3]", uniform_within(6.0 / 36864.0)),
                ("d3", "f32[64, 1, 1]", zeros),
                ("w4", "f32[1024, 64]", uniform_within(6.0 / 1034.0)),
                ("b4", "f32[64]", zeros),
                ("w5", "f32[64, 10]", uniform_within(6.0 / 74.0)),
                ("b5", "f32[10]", zeros),
            ],
        ),
    ]
}

/// U(−a, a) with a = √`square`: the paper's CNN initialization, written out in the model file.
fn uniform_within(square: f64) -> Init {
    Init::Uniform(-square.sqrt(), square.sqrt())
}

#[test]
fn every_shipped_model_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir("ir")
        .expect("the ir/ directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".sgn"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = shipped().iter().map(|(file, _, _)| *file).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn shipped_models_lower_with_the_right_types() {
    for (file, output, params) in shipped() {
        let path = Path::new("ir").join(file);
        let model = Model::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let source = std::fs::read_to_string(&path).expect("readable model");
        assert!(
            source.starts_with("# "),
            "{file} starts with a comment saying what it is"
        );
        assert_eq!(format!("{}.sgn", model.name), file);
        assert_eq!(model.graph.name, model.name);
        assert_eq!(model.file, path.display().to_string());
        assert_eq!(model.output, "z");
        assert_eq!(output_type(&model), output, "{file}");
        let names: Vec<&str> = model
            .graph
            .outputs()
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["z", "loss"], "{file}");
        let loss = model.graph.output("loss").expect("a loss output");
        assert_eq!(model.graph.ty(loss).to_string(), "f32[]", "{file}");

        let args: Vec<(&str, ArgRole)> = model
            .graph
            .args()
            .iter()
            .map(|a| (a.name.as_str(), a.role))
            .collect();
        let mut expected = vec![("x", ArgRole::Input), ("y", ArgRole::Target)];
        expected.extend(params.iter().map(|(name, _, _)| (*name, ArgRole::Param)));
        assert_eq!(args, expected, "{file}");
        let got: Vec<(String, String, Init)> = model
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.to_string(), p.init))
            .collect();
        let want: Vec<(String, String, Init)> = params
            .iter()
            .map(|(n, t, i)| (n.to_string(), t.to_string(), *i))
            .collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn mnist_mlp_lowers_to_the_expected_primitives() {
    let model = Model::from_file("ir/mnist_mlp.sgn").unwrap_or_else(|e| panic!("{e}"));
    let g = &model.graph;
    assert_eq!(count(g, |op| matches!(op, Op::MatMul(_))), 4);
    assert_eq!(count(g, |op| *op == Op::unary(UnaryOp::Sigmoid)), 3);
    // Each bias is broadcast from [n] to [B, n] before the add; the softmax shift is broadcast too.
    assert_eq!(
        count(g, |op| matches!(op, Op::Layout(Layout::Broadcast { .. }))),
        6
    );
    assert_eq!(count(g, |op| *op == Op::stop_gradient()), 1);
    // The cross-entropy averages over the symbolic batch by dividing by its runtime size.
    let batch = find(g, |op| *op == Op::dim_size(Dim::sym("B"))).expect("a DimSize(B) node");
    let loss = g.output("loss").expect("the loss output");
    assert_eq!(g.node(loss).op, Op::binary(BinaryOp::Div));
    assert_eq!(g.node(loss).inputs[1], batch);
    // The graph is pruned: every node is an argument or feeds an output.
    let mut used = vec![false; g.nodes().len()];
    for id in g.ids() {
        for input in &g.node(id).inputs {
            used[input.index()] = true;
        }
    }
    for output in g.outputs() {
        used[output.node.index()] = true;
    }
    for id in g.ids() {
        assert!(
            used[id.index()] || matches!(g.node(id).op, Op::Leaf(Leaf::Arg(_))),
            "dead node {id}"
        );
    }
}

#[test]
fn nodes_carry_their_source_positions() {
    let model = Model::from_file("ir/mnist_mlp.sgn").unwrap_or_else(|e| panic!("{e}"));
    let g = &model.graph;
    let z = g.output("z").expect("the output");
    // `output z = h3 @ w4 + b4` is line 21; the add is at column 20.
    let origin = g.origin(z).expect("the output has an origin");
    assert_eq!((origin.line, origin.col), (21, 20));
    let w1 = g.arg("w1").expect("w1").node;
    let origin = g.origin(w1).expect("arguments have origins");
    assert_eq!((origin.line, origin.col), (7, 7));
    // The first sigmoid is the call on line 18; the add inside it comes from the fn body (line 16).
    let sigmoid = find(g, |op| *op == Op::unary(UnaryOp::Sigmoid)).expect("a sigmoid");
    assert_eq!(g.origin(sigmoid).map(|s| s.line), Some(18));
    assert_eq!(
        g.origin(g.node(sigmoid).inputs[0]).map(|s| s.line),
        Some(16)
    );
}

/// The node labelled `label`, which must be the only one.
fn labelled(graph: &Graph, label: &str) -> NodeId {
    let found: Vec<NodeId> = graph
        .ids()
        .filter(|&id| graph.label(id) == Some(label))
        .collect();
    assert_eq!(found.len(), 1, "nodes labelled {label:?}: {found:?}");
    found[0]
}

#[test]
fn nodes_are_labelled_with_the_names_they_have_in_the_source() {
    let model = parse(
        "model t\ninput x: f32[B, 3]\ntarget y: f32[B, 2]\nparam w: f32[3, 2]\nparam b: f32[2]\n\
         h = x @ w + b\na = tanh(h)\nc = tanh(h)\np = softmax(h)\noutput z = a + c * p\n\
         loss softmax_cross_entropy(z, y)\n",
    );
    let g = &model.graph;
    for arg in g.args() {
        assert_eq!(g.label(arg.node), Some(arg.name.as_str()));
    }
    assert_eq!(g.node(labelled(g, "h")).op, Op::binary(BinaryOp::Add));
    // `c` is the same node as `a` (hash-consing): the first name wins.
    assert_eq!(g.node(labelled(g, "a")).op, Op::unary(UnaryOp::Tanh));
    assert!(g.ids().all(|id| g.label(id) != Some("c")));
    // A composite's result keeps the composite's label: it is given first.
    let p = labelled(g, "softmax(h)");
    assert_eq!(g.node(p).op, Op::binary(BinaryOp::Div));
    assert!(g.ids().all(|id| g.label(id) != Some("p")));
    assert_eq!(labelled(g, "z"), g.output("z").expect("the output"));
    assert_eq!(labelled(g, "loss"), g.output("loss").expect("the loss"));
    // The loss's softmax pieces over z, shared by log_softmax and logsumexp.
    let log_p = labelled(g, "log_softmax(z)");
    assert_eq!(g.node(log_p).op, Op::binary(BinaryOp::Sub));
    assert_eq!(g.node(log_p).inputs[0], labelled(g, "z"));
    let lse = labelled(g, "logsumexp(z)");
    assert_eq!(g.node(lse).op, Op::binary(BinaryOp::Add));
    assert_eq!(g.node(labelled(g, "max(z)")).op, Op::stop_gradient());
    let exp = labelled(g, "exp(z - max(z))");
    assert_eq!(g.node(exp).op, Op::unary(UnaryOp::Exp));
    let sum = labelled(g, "sum(exp(z - max(z)))");
    assert_eq!(g.node(sum).inputs, [exp]);
    assert_eq!(
        g.node(labelled(g, "exp(h - max(h))")).op,
        Op::unary(UnaryOp::Exp)
    );

    // An argument without a name is shown as `…`; the logistic loss labels its softplus.
    let model = parse(
        "model t\ninput x: f32[B, 3]\ntarget y: f32[B, 2]\nparam w: f32[3, 2]\n\
         output z = x @ w\nloss sum(logsumexp(2 * z)) + sigmoid_cross_entropy(z, y)\n",
    );
    let g = &model.graph;
    assert_eq!(
        g.node(labelled(g, "logsumexp(…)")).op,
        Op::binary(BinaryOp::Add)
    );
    assert_eq!(
        g.node(labelled(g, "softplus(z)")).op,
        Op::unary(UnaryOp::Softplus)
    );
}

// ----- every op's type -----

/// A model with the declarations `decls` whose output is `expr` (times a scalar param, so that
/// the output depends on a param), lowered.
fn lower_expr(decls: &str, expr: &str) -> Model {
    parse(&format!(
        "model t\n{decls}\nparam p: f32[]\nh = {expr}\noutput z = h * p\nloss sum(z)\n"
    ))
}

/// The type of `expr` over the standard inputs: x: f32[B, 3, 4], m: f32[3, 4], v: f32[4],
/// c: f32[3, 1], r: f32[1, 4], w: f32[4, 5], d: f64[B, 4].
fn type_of(expr: &str) -> String {
    output_type(&lower_expr(STANDARD, expr))
}

const STANDARD: &str = "input x: f32[B, 3, 4]\ninput m: f32[3, 4]\ninput v: f32[4]\n\
                        input c: f32[3, 1]\ninput r: f32[1, 4]\ninput w: f32[4, 5]\n\
                        input d: f64[B, 4]";

#[test]
fn elementwise_ops_broadcast_like_numpy() {
    for op in ["+", "-", "*", "/"] {
        assert_eq!(type_of(&format!("x {op} v")), "f32[B, 3, 4]", "{op}");
        assert_eq!(type_of(&format!("c {op} r")), "f32[3, 4]", "{op}");
    }
    assert_eq!(type_of("maximum(x, m)"), "f32[B, 3, 4]");
    assert_eq!(type_of("minimum(c, v)"), "f32[3, 4]");
    assert_eq!(type_of("x * 2"), "f32[B, 3, 4]");
    assert_eq!(type_of("1 - v"), "f32[4]");
}

#[test]
fn broadcasting_is_explicit() {
    let model = lower_expr(STANDARD, "c + r");
    let g = &model.graph;
    let add = find(g, |op| *op == Op::binary(BinaryOp::Add)).expect("an add");
    for &operand in &g.node(add).inputs {
        assert_eq!(
            g.node(operand).op,
            Op::broadcast(sgn::ir::Shape::fixed(&[3, 4]))
        );
        assert_eq!(g.ty(operand).to_string(), "f32[3, 4]");
    }
}

#[test]
fn literals_take_the_tensors_type_and_fold() {
    let g = parse(
        "model t\ninput d: f64[B, 4]\nparam q: f64[]\noutput z = d * (2 * 3) + q\nloss sum(z)\n",
    )
    .graph;
    let six = find(&g, |op| *op == Op::constant(6.0)).expect("the folded 6");
    assert_eq!(g.ty(six).dtype, DType::F64);
    assert_eq!(
        count(&g, |op| matches!(op, Op::Leaf(Leaf::Const(_)))),
        1,
        "2 and 3 are folded away"
    );
    let g = lower_expr(STANDARD, "v - -exp(0) * square(3)").graph;
    assert!(find(&g, |op| *op == Op::constant(-9.0)).is_some());
}

#[test]
fn unary_ops_keep_the_shape() {
    for op in [
        "neg", "exp", "log", "tanh", "sigmoid", "relu", "softplus", "sqrt", "abs", "erf",
    ] {
        let model = lower_expr(STANDARD, &format!("{op}(x)"));
        assert_eq!(output_type(&model), "f32[B, 3, 4]", "{op}");
        let unary = UnaryOp::from_name(op).expect("a unary op");
        assert_eq!(count(&model.graph, |o| *o == Op::unary(unary)), 1, "{op}");
    }
    assert_eq!(type_of("-x"), "f32[B, 3, 4]");
}

#[test]
fn gelu_and_silu_are_composites_of_erf_and_sigmoid() {
    let g = lower_expr(STANDARD, "gelu(x)").graph;
    assert_eq!(count(&g, |op| *op == Op::unary(UnaryOp::Erf)), 1);
    let g = lower_expr(STANDARD, "silu(x)").graph;
    assert_eq!(count(&g, |op| *op == Op::unary(UnaryOp::Sigmoid)), 1);
    assert_eq!(type_of("gelu(x)"), "f32[B, 3, 4]");
    assert_eq!(type_of("silu(m)"), "f32[3, 4]");
    // Numbers fold: gelu(1) = Φ(1) = 0.841344746…, silu(2) = 2σ(2).
    let g = lower_expr(STANDARD, "v + (gelu(1) + silu(2))").graph;
    let folded =
        0.5 * (1.0 + erf_series(std::f64::consts::FRAC_1_SQRT_2)) + 2.0 / (1.0 + (-2.0f64).exp());
    let constant = find(
        &g,
        |op| matches!(op, Op::Leaf(Leaf::Const(c)) if (c.get() - folded).abs() < 1e-15),
    );
    assert!(constant.is_some(), "{g}");
}

/// erf by its series (fine for |x| ≤ 1), independent of the implementation under test.
fn erf_series(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    for n in 1..40 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn square_and_pow() {
    let g = lower_expr(STANDARD, "square(x)").graph;
    let mul = find(&g, |op| *op == Op::binary(BinaryOp::Mul)).expect("square is a mul");
    let x = g.arg("x").expect("x").node;
    assert_eq!(g.node(mul).inputs, [x, x]);
    let g = lower_expr(STANDARD, "pow(x, -1/2)").graph;
    assert!(find(&g, |op| *op == Op::pow(-0.5)).is_some());
    assert_eq!(type_of("pow(m, c=3)"), "f32[3, 4]");
}

#[test]
fn reductions() {
    assert_eq!(type_of("sum(x)"), "f32[]");
    assert_eq!(type_of("sum(x, axis=1)"), "f32[B, 4]");
    assert_eq!(type_of("sum(x, axis=-1)"), "f32[B, 3]");
    assert_eq!(type_of("sum(x, axis=[0, -1])"), "f32[3]");
    assert_eq!(
        type_of("sum(x, axis=[2, 0], keepdims=true)"),
        "f32[1, 3, 1]"
    );
    assert_eq!(type_of("max(x, axis=1, keepdims=true)"), "f32[B, 1, 4]");
    assert_eq!(type_of("mean(x, axis=0)"), "f32[3, 4]");
    assert_eq!(type_of("mean(m, keepdims=true)"), "f32[1, 1]");
    let g = lower_expr(STANDARD, "max(x, axis=[1, 2])").graph;
    assert!(find(&g, |op| *op == Op::reduce_max(vec![1, 2])).is_some());
    let g = lower_expr(STANDARD, "sum(x, axis=[2, 0])").graph;
    assert!(find(&g, |op| *op == Op::sum(vec![0, 2])).is_some());
}

#[test]
fn mean_over_fixed_axes_multiplies_by_the_reciprocal() {
    let g = lower_expr(STANDARD, "mean(x, axis=[1, 2])").graph;
    assert!(find(&g, |op| *op == Op::constant(1.0 / 12.0)).is_some());
    assert_eq!(count(&g, |op| matches!(op, Op::Leaf(Leaf::DimSize(_)))), 0);
}

#[test]
fn mean_over_a_symbolic_axis_divides_by_its_size() {
    let g = lower_expr(STANDARD, "mean(x, axis=[0, 1])").graph;
    let size = find(&g, |op| {
        *op == Op::dim_size(Dim::sym("B").mul(&Dim::fixed(3)))
    })
    .expect("DimSize(3*B)");
    let div = find(&g, |op| *op == Op::binary(BinaryOp::Div)).expect("a div");
    let divisor = g.node(div).inputs[1];
    assert_eq!(
        g.node(divisor).op,
        Op::broadcast(sgn::ir::Shape::fixed(&[4]))
    );
    assert_eq!(g.node(divisor).inputs, [size]);
}

#[test]
fn matmul_of_rank_2_and_rank_n() {
    assert_eq!(type_of("m @ w"), "f32[3, 5]");
    let model = lower_expr(STANDARD, "x @ w");
    assert_eq!(output_type(&model), "f32[B, 3, 5]");
    let g = &model.graph;
    let matmul = find(g, |op| matches!(op, Op::MatMul(_))).expect("a matmul");
    assert_eq!(g.ty(matmul).to_string(), "f32[3*B, 5]");
    assert_eq!(g.ty(g.node(matmul).inputs[0]).to_string(), "f32[3*B, 4]");
    assert!(matches!(
        g.node(g.node(matmul).inputs[0]).op,
        Op::Layout(Layout::Reshape { .. })
    ));
    assert_eq!(type_of("sigmoid(x @ w) @ transpose(w)"), "f32[B, 3, 4]");
}

#[test]
fn reshape_with_inferred_and_symbolic_dims() {
    assert_eq!(type_of("reshape(x, [B, 12])"), "f32[B, 12]");
    assert_eq!(type_of("reshape(x, [-1, 12])"), "f32[B, 12]");
    assert_eq!(type_of("reshape(x, [B*3, -1])"), "f32[3*B, 4]");
    assert_eq!(type_of("reshape(x, [-1])"), "f32[12*B]");
    assert_eq!(type_of("reshape(x, [2, -1, 6])"), "f32[2, B, 6]");
    assert_eq!(type_of("reshape(m, [2, 2, 3])"), "f32[2, 2, 3]");
    let g = lower_expr(STANDARD, "reshape(x, [B, 3, 4])").graph;
    assert_eq!(
        count(&g, |op| matches!(op, Op::Layout(Layout::Reshape { .. }))),
        0,
        "a reshape to the same shape is x"
    );
}

#[test]
fn transpose_and_concat() {
    assert_eq!(type_of("transpose(x)"), "f32[4, 3, B]");
    assert_eq!(type_of("transpose(x, [0, 2, 1])"), "f32[B, 4, 3]");
    assert_eq!(type_of("transpose(x, perm=[-3, -1, -2])"), "f32[B, 4, 3]");
    assert_eq!(type_of("concat([x, x], axis=-1)"), "f32[B, 3, 8]");
    assert_eq!(type_of("concat([m, m, m])"), "f32[9, 4]");
    assert_eq!(type_of("concat([x, x], axis=0)"), "f32[2*B, 3, 4]");
    let g = lower_expr(STANDARD, "concat([m, r], axis=0)").graph;
    assert!(find(&g, |op| *op == Op::concat(0)).is_some());
}

#[test]
fn softmax_family_is_stable() {
    assert_eq!(type_of("softmax(x)"), "f32[B, 3, 4]");
    assert_eq!(type_of("log_softmax(x, axis=1)"), "f32[B, 3, 4]");
    assert_eq!(type_of("logsumexp(x)"), "f32[B, 3]");
    assert_eq!(
        type_of("logsumexp(x, axis=1, keepdims=true)"),
        "f32[B, 1, 4]"
    );
    for expr in ["softmax(x)", "log_softmax(x)", "logsumexp(x)"] {
        let g = lower_expr(STANDARD, expr).graph;
        // The shift is the max over the axis, with no gradient.
        let max = find(&g, |op| *op == Op::reduce_max(vec![2])).expect("a max");
        let stop = find(&g, |op| *op == Op::stop_gradient()).expect("a stop_gradient");
        assert_eq!(g.node(stop).inputs, [max], "{expr}");
        assert_eq!(count(&g, |op| *op == Op::unary(UnaryOp::Exp)), 1, "{expr}");
    }
    let g = lower_expr(STANDARD, "softmax(x)").graph;
    assert_eq!(count(&g, |op| *op == Op::unary(UnaryOp::Log)), 0);
    let g = lower_expr(STANDARD, "log_softmax(x)").graph;
    assert_eq!(count(&g, |op| *op == Op::unary(UnaryOp::Log)), 1);
}

#[test]
fn losses_are_scalars() {
    let decls = "input x: f32[B, 3, 4]\ntarget y: f32[B, 3, 4]\nparam p: f32[4]";
    for (loss, divisor) in [
        (
            "softmax_cross_entropy",
            Op::dim_size(Dim::sym("B").mul(&Dim::fixed(3))),
        ),
        ("mse", Op::dim_size(Dim::sym("B").mul(&Dim::fixed(12)))),
        (
            "sigmoid_cross_entropy",
            Op::dim_size(Dim::sym("B").mul(&Dim::fixed(12))),
        ),
    ] {
        let model = parse(&format!(
            "model t\n{decls}\noutput z = x * p\nloss {loss}(z, y)\n"
        ));
        let g = &model.graph;
        let node = g.output("loss").expect("the loss");
        assert_eq!(g.ty(node).to_string(), "f32[]", "{loss}");
        assert_eq!(g.node(node).op, Op::binary(BinaryOp::Div), "{loss}");
        assert_eq!(g.node(g.node(node).inputs[1]).op, divisor, "{loss}");
    }
    let model = parse(&format!(
        "model t\n{decls}\noutput z = x * p\nloss sigmoid_cross_entropy(z, y)\n"
    ));
    assert_eq!(
        count(&model.graph, |op| *op == Op::unary(UnaryOp::Softplus)),
        1
    );
    let model = parse(
        "model t\ninput x: f32[2, 5]\ntarget y: f32[2, 5]\nparam p: f32[5]\noutput z = x * p\nloss mse(z, y)\n",
    );
    let g = &model.graph;
    let loss = g.output("loss").expect("the loss");
    assert_eq!(g.node(loss).op, Op::binary(BinaryOp::Mul));
    assert_eq!(g.node(g.node(loss).inputs[1]).op, Op::constant(0.1));
}

#[test]
fn custom_loss_expression() {
    let model = parse(
        "model t\ninput x: f32[B, 2]\ntarget y: f32[B, 2]\nparam w: f32[2, 2]\n\
         output z = x @ w\nloss mean(square(z - y)) + 0.5 * mean(abs(z - y))\n",
    );
    assert_eq!(
        model
            .graph
            .ty(model.graph.output("loss").expect("loss"))
            .to_string(),
        "f32[]"
    );
}

#[test]
fn f64_models() {
    let model = parse(
        "model t\ninput x: f64[B, 2]\ntarget y: f64[B, 2]\nparam w: f64[2, 2]\noutput z = x @ w + 1\nloss mse(z, y)\n",
    );
    assert_eq!(output_type(&model), "f64[B, 2]");
    assert_eq!(model.params[0].ty.dtype, DType::F64);
    assert!(model.graph.nodes().iter().all(|n| n.ty.dtype == DType::F64));
}

// ----- params, fns, sharing -----

#[test]
fn initializers_and_defaults() {
    let model = parse(
        "model t\ninput x: f32[B, 2]\ntarget y: f32[B, 2]\n\
         param a: f32[2, 2]\nparam b: f32[2]\nparam c: f32[]\n\
         param d: f32[2, 2] = constant(0.5)\nparam e: f32[2, 2] = normal(std=1/4)\n\
         param f: f32[2] = uniform(-0.1, 0.1)\nparam g: f32[2, 2] = glorot_normal\n\
         param h: f32[2, 2] = he_normal\nparam i: f32[2] = ones()\nparam j: f32[2] = zeros\n\
         output z = (x @ a @ d @ e @ g @ h + b + f + i + j) * c\nloss mse(z, y)\n",
    );
    let inits: Vec<(&str, Init)> = model
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.init))
        .collect();
    assert_eq!(
        inits,
        [
            ("a", Init::GlorotUniform),
            ("b", Init::Zeros),
            ("c", Init::Zeros),
            ("d", Init::Constant(0.5)),
            ("e", Init::Normal(0.25)),
            ("f", Init::Uniform(-0.1, 0.1)),
            ("g", Init::GlorotNormal),
            ("h", Init::HeNormal),
            ("i", Init::Ones),
            ("j", Init::Zeros),
        ]
    );
}

#[test]
fn fns_are_inlined() {
    let header =
        "model t\ninput x: f32[B, 4]\ntarget y: f32[B, 2]\nparam w: f32[4, 2]\nparam b: f32[2]\n";
    let with_fns = parse(&format!(
        "{header}fn dense(x, w, b) = x @ w + b\nfn layer(a) = sigmoid(dense(a, w, b=b))\n\
         output z = layer(x) * 2\nloss mse(z, y)\n"
    ));
    let written_out = parse(&format!(
        "{header}output z = sigmoid(x @ w + b) * 2\nloss mse(z, y)\n"
    ));
    assert_eq!(with_fns.graph, written_out.graph);
}

#[test]
fn fn_parameters_shadow_top_level_names() {
    let model = parse(
        "model t\ninput x: f32[B, 4]\ntarget y: f32[B, 4]\nparam w: f32[4]\nk = 3\n\
         fn f(w) = w * k\noutput z = f(x) * w\nloss sum(z)\n",
    );
    let g = &model.graph;
    assert!(find(g, |op| *op == Op::constant(3.0)).is_some());
    assert_eq!(count(g, |op| *op == Op::binary(BinaryOp::Mul)), 2);
}

#[test]
fn repeated_inlining_is_shared_not_exponential() {
    // f40 would inline f0 2^40 times if each call were lowered afresh.
    let mut source = String::from(
        "model t\ninput x: f32[B, 4]\ntarget y: f32[B, 4]\nparam w: f32[4]\nfn f0(a) = a * w\n",
    );
    for i in 1..=40 {
        source.push_str(&format!("fn f{i}(a) = f{}(a) + f{}(a)\n", i - 1, i - 1));
    }
    source.push_str("output z = f40(x)\nloss mse(z, y)\n");
    let model = parse(&source);
    assert_eq!(
        count(&model.graph, |op| *op == Op::binary(BinaryOp::Add)),
        40
    );
}

#[test]
fn equal_expressions_share_nodes() {
    let model = lower_expr(STANDARD, "sigmoid(x @ w) + sigmoid(x @ w)");
    let g = &model.graph;
    assert_eq!(count(g, |op| matches!(op, Op::MatMul(_))), 1);
    assert_eq!(count(g, |op| *op == Op::unary(UnaryOp::Sigmoid)), 1);
    let add = find(g, |op| *op == Op::binary(BinaryOp::Add)).expect("an add");
    assert_eq!(g.node(add).inputs[0], g.node(add).inputs[1]);
    let named = lower_expr(
        &format!("{STANDARD}\ns1 = tanh(m)\ns2 = tanh(m)"),
        "s1 * s2",
    )
    .graph;
    assert_eq!(count(&named, |op| *op == Op::unary(UnaryOp::Tanh)), 1);
}

#[test]
fn names_may_hold_numbers_and_declarations_come_in_any_order() {
    let model = parse(
        "model t\nscale = 0.5\noutput z = x @ w * scale\ninput x: f32[B, 4]\nparam w: f32[4, 2]\n\
         loss mse(z, y)\ntarget y: f32[B, 2]\n",
    );
    let roles: Vec<ArgRole> = model.graph.args().iter().map(|a| a.role).collect();
    assert_eq!(roles, [ArgRole::Input, ArgRole::Param, ArgRole::Target]);
    assert!(find(&model.graph, |op| *op == Op::constant(0.5)).is_some());
}

#[test]
fn crlf_tabs_comments_and_blank_lines() {
    let model = parse(
        "# header\r\n\r\nmodel t   # the name\r\n\tinput x: f32[B, 2]\r\ntarget y: f32[B, 2]\r\n\
         param w: f32[2, 2]\r\noutput z = x @ w\r\nloss mse(z, y)",
    );
    assert_eq!(model.name, "t");
    assert_eq!(model.source.lines().count(), 8);
}
