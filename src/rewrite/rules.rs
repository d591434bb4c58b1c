//! The rewrite rules, by phase.
//!
//! Every rule is an equality of real-valued functions (checked by random evaluation in
//! `tests/rewrite_rules.rs`); where it holds only under a condition — a shape relation, a
//! constant operand, a positive operand — the condition is checked on the e-class analysis before
//! the rule fires. Right-hand sides that need new parameters (a composed permutation, merged
//! axes, a scale factor) are computed, and built through [`add_op`], which refuses any node that
//! does not type-check.
//!
//! Products with a zero operand are not rules: the analysis folds them to zero (see
//! `analysis::fold`), like every other constant expression.

use super::analysis::{
    EGraph, TensorAnalysis, add_broadcast, add_const, add_dim_size, add_op, add_splat, facts,
    params,
};
use super::lang::ENode;
use crate::ir::op::{F64Bits, dim_size};
use crate::ir::{
    BinaryOp, Dim, Elementwise, Layout, MatMul, Op, Reduce, Shape, TensorType, UnaryOp,
};
use egg::{Applier, Id, Pattern, PatternAst, Subst, Symbol, Var};

/// A rule over the IR language.
pub type Rewrite = egg::Rewrite<ENode, TensorAnalysis>;

/// The classes a match bound, by pattern variable name (`"?x"`).
pub struct Bound<'a> {
    subst: &'a Subst,
    vars: &'a [(String, Var)],
}

impl Bound<'_> {
    /// The class bound to `name`.
    ///
    /// # Panics
    /// If the left-hand side has no such variable (a bug in the rule).
    pub fn get(&self, name: &str) -> Id {
        let (_, var) = self
            .vars
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("the pattern binds no {name}"));
        self.subst[*var]
    }
}

type Guard = Box<dyn Fn(&EGraph, &Bound) -> bool + Send + Sync>;
type Build = Box<dyn Fn(&mut EGraph, &Bound) -> Option<Id> + Send + Sync>;

/// What a rule does with a match.
enum Action {
    /// Instantiate a pattern if the guard holds.
    Pattern(Guard, Pattern<ENode>),
    /// Compute the equal class, or `None` to leave the match alone.
    Build(Build),
}

struct Rhs {
    vars: Vec<(String, Var)>,
    action: Action,
}

impl Applier<ENode, TensorAnalysis> for Rhs {
    fn apply_one(
        &self,
        egraph: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        searcher_ast: Option<&PatternAst<ENode>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        let bound = Bound {
            subst,
            vars: &self.vars,
        };
        match &self.action {
            Action::Pattern(guard, rhs) => {
                if guard(egraph, &bound) {
                    rhs.apply_one(egraph, eclass, subst, searcher_ast, rule_name)
                } else {
                    Vec::new()
                }
            }
            Action::Build(build) => match build(egraph, &bound) {
                Some(id) if egraph.union(eclass, id) => vec![eclass],
                _ => Vec::new(),
            },
        }
    }
}

fn pattern(text: &str) -> Pattern<ENode> {
    text.parse()
        .unwrap_or_else(|e| panic!("rule pattern {text}: {e}"))
}

fn make(name: &str, lhs: &str, action: Action) -> Rewrite {
    let lhs = pattern(lhs);
    let vars = lhs.vars().into_iter().map(|v| (v.to_string(), v)).collect();
    Rewrite::new(name, lhs, Rhs { vars, action }).unwrap_or_else(|e| panic!("rule {name}: {e}"))
}

/// `lhs = rhs`, both patterns.
fn rule(name: &str, lhs: &str, rhs: &str) -> Rewrite {
    rule_if(name, lhs, rhs, |_, _| true)
}

/// `lhs = rhs` where `guard` holds.
fn rule_if(
    name: &str,
    lhs: &str,
    rhs: &str,
    guard: impl Fn(&EGraph, &Bound) -> bool + Send + Sync + 'static,
) -> Rewrite {
    make(name, lhs, Action::Pattern(Box::new(guard), pattern(rhs)))
}

/// `lhs = build(match)` wherever `build` gives a class.
fn rule_with(
    name: &str,
    lhs: &str,
    build: impl Fn(&mut EGraph, &Bound) -> Option<Id> + Send + Sync + 'static,
) -> Rewrite {
    make(name, lhs, Action::Build(Box::new(build)))
}

fn ty(egraph: &EGraph, id: Id) -> &TensorType {
    &facts(egraph, id).ty
}

fn shape(egraph: &EGraph, id: Id) -> &Shape {
    &facts(egraph, id).ty.shape
}

fn is_const(egraph: &EGraph, id: Id, value: f64) -> bool {
    facts(egraph, id).constant == Some(F64Bits::new(value))
}

fn is_scalar(egraph: &EGraph, id: Id) -> bool {
    shape(egraph, id).rank() == 0
}

/// A guard: the class bound to `name` is the constant `value` everywhere.
fn constant(name: &'static str, value: f64) -> impl Fn(&EGraph, &Bound) -> bool + Send + Sync {
    move |egraph, m| is_const(egraph, m.get(name), value)
}

/// A guard: every class bound to `names` is positive.
fn positive(names: &'static [&'static str]) -> impl Fn(&EGraph, &Bound) -> bool + Send + Sync {
    move |egraph, m| names.iter().all(|n| facts(egraph, m.get(n)).positive)
}

fn perm(egraph: &EGraph, id: Id) -> Option<&[usize]> {
    match params(egraph, id) {
        Op::Layout(Layout::Transpose { perm }) => Some(perm),
        _ => None,
    }
}

fn shape_param(egraph: &EGraph, id: Id) -> Option<Shape> {
    match params(egraph, id) {
        Op::Layout(Layout::Broadcast { shape } | Layout::Reshape { shape }) => Some(shape.clone()),
        _ => None,
    }
}

fn axes_param(egraph: &EGraph, id: Id) -> Option<Vec<usize>> {
    match params(egraph, id) {
        Op::Reduce(Reduce { axes, .. }) => Some(axes.clone()),
        _ => None,
    }
}

fn exponent(egraph: &EGraph, id: Id) -> Option<F64Bits> {
    match params(egraph, id) {
        Op::Elementwise(Elementwise::Pow(e)) => Some(*e),
        _ => None,
    }
}

/// A matmul's transpose flags.
fn flags(egraph: &EGraph, id: Id) -> Option<MatMul> {
    match params(egraph, id) {
        Op::MatMul(m) => Some(*m),
        _ => None,
    }
}

/// True for the permutation that swaps the two axes of a matrix.
fn is_swap(egraph: &EGraph, id: Id) -> bool {
    perm(egraph, id) == Some(&[1, 0])
}

fn binary(egraph: &mut EGraph, op: BinaryOp, a: Id, b: Id) -> Option<Id> {
    add_op(egraph, Op::binary(op), &[a, b])
}

fn matmul(egraph: &mut EGraph, transpose_a: bool, transpose_b: bool, a: Id, b: Id) -> Option<Id> {
    add_op(egraph, Op::matmul(transpose_a, transpose_b), &[a, b])
}

/// `x` scaled by the scalar class `c`.
fn scale(egraph: &mut EGraph, x: Id, c: Id) -> Option<Id> {
    let target = shape(egraph, x).clone();
    let c = add_broadcast(egraph, c, &target)?;
    binary(egraph, BinaryOp::Mul, x, c)
}

/// Phase 1: algebraic identities, structural simplification and canonical forms.
pub fn canonicalize() -> Vec<Rewrite> {
    let mut rules = vec![
        rule("add-commute", "(add ?a ?b)", "(add ?b ?a)"),
        rule("mul-commute", "(mul ?a ?b)", "(mul ?b ?a)"),
        rule("max-commute", "(max ?a ?b)", "(max ?b ?a)"),
        rule("min-commute", "(min ?a ?b)", "(min ?b ?a)"),
        rule_if("add-zero", "(add ?x ?z)", "?x", constant("?z", 0.0)),
        rule_if("sub-zero", "(sub ?x ?z)", "?x", constant("?z", 0.0)),
        rule_if("zero-sub", "(sub ?z ?x)", "(neg ?x)", constant("?z", 0.0)),
        rule_with("sub-self", "(sub ?x ?x)", |egraph, m| {
            let ty = ty(egraph, m.get("?x")).clone();
            Some(add_splat(egraph, 0.0, &ty))
        }),
        rule_if("mul-one", "(mul ?x ?one)", "?x", constant("?one", 1.0)),
        rule_if(
            "mul-minus-one",
            "(mul ?x ?m)",
            "(neg ?x)",
            constant("?m", -1.0),
        ),
        rule_if("div-one", "(div ?x ?one)", "?x", constant("?one", 1.0)),
        rule_with("add-self", "(add ?x ?x)", |egraph, m| {
            let x = m.get("?x");
            let two = add_const(egraph, 2.0, ty(egraph, x).dtype);
            scale(egraph, x, two)
        }),
        rule_with(
            "scale-scale",
            "(mul (mul ?x (broadcast ?s ?c)) (broadcast ?s ?d))",
            |egraph, m| {
                let (c, d) = (m.get("?c"), m.get("?d"));
                (is_scalar(egraph, c) && is_scalar(egraph, d)).then_some(())?;
                let cd = binary(egraph, BinaryOp::Mul, c, d)?;
                scale(egraph, m.get("?x"), cd)
            },
        ),
        rule_with(
            "neg-scaled",
            "(neg (mul ?x (broadcast ?s ?c)))",
            |egraph, m| {
                let c = m.get("?c");
                is_scalar(egraph, c).then_some(())?;
                let minus_c = add_op(egraph, Op::unary(UnaryOp::Neg), &[c])?;
                scale(egraph, m.get("?x"), minus_c)
            },
        ),
        rule("neg-neg", "(neg (neg ?x))", "?x"),
        rule("add-neg", "(add ?x (neg ?y))", "(sub ?x ?y)"),
        rule("sub-neg", "(sub ?x (neg ?y))", "(add ?x ?y)"),
        rule("neg-sub", "(neg (sub ?a ?b))", "(sub ?b ?a)"),
        rule("mul-neg", "(mul ?x (neg ?y))", "(neg (mul ?x ?y))"),
        rule("div-neg", "(div (neg ?x) ?y)", "(neg (div ?x ?y))"),
        rule("sum-neg", "(sum ?axes (neg ?x))", "(neg (sum ?axes ?x))"),
        rule_with(
            "transpose-transpose",
            "(transpose ?q (transpose ?p ?x))",
            |egraph, m| {
                let p = perm(egraph, m.get("?p"))?;
                let q = perm(egraph, m.get("?q"))?;
                let composed: Vec<usize> = q.iter().map(|&i| p[i]).collect();
                add_transpose(egraph, m.get("?x"), composed)
            },
        ),
        rule_with(
            "reshape-reshape",
            "(reshape ?t (reshape ?s ?x))",
            |egraph, m| {
                let target = shape_param(egraph, m.get("?t"))?;
                add_reshape(egraph, m.get("?x"), target)
            },
        ),
        rule_with(
            "broadcast-of-reshape",
            "(broadcast ?t (reshape ?s ?x))",
            |egraph, m| {
                let x = m.get("?x");
                let inserted = shape_param(egraph, m.get("?s"))?;
                // Adding or dropping leading unit axes does not change how a broadcast aligns
                // the others.
                (without_leading_ones(shape(egraph, x)) == without_leading_ones(&inserted))
                    .then_some(())?;
                let target = shape_param(egraph, m.get("?t"))?;
                add_broadcast(egraph, x, &target)
            },
        ),
        rule_with(
            "broadcast-broadcast",
            "(broadcast ?t (broadcast ?s ?x))",
            |egraph, m| {
                let target = shape_param(egraph, m.get("?t"))?;
                add_broadcast(egraph, m.get("?x"), &target)
            },
        ),
        rule_with(
            "sum-broadcast",
            "(sum ?axes (broadcast ?s ?x))",
            |egraph, m| {
                let target = shape_param(egraph, m.get("?s"))?;
                let axes = axes_param(egraph, m.get("?axes"))?;
                sum_of_broadcast(egraph, m.get("?x"), &target, &axes)
            },
        ),
        rule_with("sum-sum", "(sum ?b (sum ?a ?x))", |egraph, m| {
            let first = axes_param(egraph, m.get("?a"))?;
            let then = axes_param(egraph, m.get("?b"))?;
            let x = m.get("?x");
            let remaining: Vec<usize> = (0..shape(egraph, x).rank())
                .filter(|i| !first.contains(i))
                .collect();
            let mut axes: Vec<usize> = first
                .iter()
                .copied()
                .chain(then.iter().map(|&j| remaining[j]))
                .collect();
            axes.sort_unstable();
            add_op(egraph, Op::sum(axes), &[x])
        }),
        rule_with(
            "sum-scaled",
            "(sum ?axes (mul ?x (broadcast ?s ?c)))",
            |egraph, m| {
                let c = m.get("?c");
                if !is_scalar(egraph, c) {
                    return None;
                }
                let axes = axes_param(egraph, m.get("?axes"))?;
                let total = add_op(egraph, Op::sum(axes), &[m.get("?x")])?;
                scale(egraph, total, c)
            },
        ),
        rule_with(
            "pow-broadcast",
            "(pow ?e (broadcast ?s ?x))",
            |egraph, m| {
                let e = exponent(egraph, m.get("?e"))?;
                let inner = add_op(egraph, Op::pow(e.get()), &[m.get("?x")])?;
                let target = shape_param(egraph, m.get("?s"))?;
                add_broadcast(egraph, inner, &target)
            },
        ),
    ];
    for op in UnaryOp::ALL {
        rules.push(rule_with(
            &format!("{}-broadcast", op.name()),
            &format!("({} (broadcast ?s ?x))", op.name()),
            move |egraph, m| {
                let inner = add_op(egraph, Op::unary(op), &[m.get("?x")])?;
                let target = shape_param(egraph, m.get("?s"))?;
                add_broadcast(egraph, inner, &target)
            },
        ));
    }
    for op in BinaryOp::ALL {
        rules.push(rule_with(
            &format!("{}-broadcasts", op.name()),
            &format!("({} (broadcast ?s ?x) (broadcast ?s ?y))", op.name()),
            move |egraph, m| {
                let (x, y) = (m.get("?x"), m.get("?y"));
                let target = shape_param(egraph, m.get("?s"))?;
                let common = shape(egraph, x).broadcast(shape(egraph, y))?;
                if common == target {
                    return None;
                }
                let x = add_broadcast(egraph, x, &common)?;
                let y = add_broadcast(egraph, y, &common)?;
                let inner = binary(egraph, op, x, y)?;
                add_broadcast(egraph, inner, &target)
            },
        ));
    }
    rules.extend([
        rule_with(
            "matmul-of-transposed-a",
            "(matmul ?f (transpose ?p ?a) ?b)",
            |egraph, m| {
                is_swap(egraph, m.get("?p")).then_some(())?;
                let f = flags(egraph, m.get("?f"))?;
                matmul(
                    egraph,
                    !f.transpose_a,
                    f.transpose_b,
                    m.get("?a"),
                    m.get("?b"),
                )
            },
        ),
        rule_with(
            "matmul-of-transposed-b",
            "(matmul ?f ?a (transpose ?p ?b))",
            |egraph, m| {
                is_swap(egraph, m.get("?p")).then_some(())?;
                let f = flags(egraph, m.get("?f"))?;
                matmul(
                    egraph,
                    f.transpose_a,
                    !f.transpose_b,
                    m.get("?a"),
                    m.get("?b"),
                )
            },
        ),
        rule_with(
            "transposed-matmul",
            "(transpose ?p (matmul ?f ?a ?b))",
            |egraph, m| {
                is_swap(egraph, m.get("?p")).then_some(())?;
                let f = flags(egraph, m.get("?f"))?;
                matmul(
                    egraph,
                    !f.transpose_b,
                    !f.transpose_a,
                    m.get("?b"),
                    m.get("?a"),
                )
            },
        ),
        rule(
            "matmul-of-neg-a",
            "(matmul ?f (neg ?a) ?b)",
            "(neg (matmul ?f ?a ?b))",
        ),
        rule(
            "matmul-of-neg-b",
            "(matmul ?f ?a (neg ?b))",
            "(neg (matmul ?f ?a ?b))",
        ),
    ]);
    rules
}

/// Phase 2: numerically stable forms.
pub fn stabilize() -> Vec<Rewrite> {
    vec![
        rule("log-exp", "(log (exp ?x))", "?x"),
        rule_if("exp-log", "(exp (log ?x))", "?x", positive(&["?x"])),
        rule_if(
            "log-one-plus-exp",
            "(log (add ?one (exp ?x)))",
            "(softplus ?x)",
            constant("?one", 1.0),
        ),
        rule(
            "log-sigmoid",
            "(log (sigmoid ?x))",
            "(neg (softplus (neg ?x)))",
        ),
        rule_if(
            "log-div",
            "(log (div ?a ?b))",
            "(sub (log ?a) (log ?b))",
            positive(&["?a", "?b"]),
        ),
        rule_if(
            "log-recip",
            "(log (recip ?x))",
            "(neg (log ?x))",
            positive(&["?x"]),
        ),
    ]
}

/// Phase 3: derivative factors from the values the forward pass already computed.
pub fn derivatives() -> Vec<Rewrite> {
    vec![
        // σ(−a) = 1 − σ(a): reuse σ(a) instead of a second sigmoid.
        rule_with("sigmoid-complement", "(sigmoid (neg ?a))", |egraph, m| {
            let s = add_op(egraph, Op::unary(UnaryOp::Sigmoid), &[m.get("?a")])?;
            let one = add_splat(egraph, 1.0, &ty(egraph, s).clone());
            binary(egraph, BinaryOp::Sub, one, s)
        }),
        // softplus′ = σ, as written out by hand: e^a / (1 + e^a).
        rule_if(
            "sigmoid-of-exp",
            "(div (exp ?a) (add ?one (exp ?a)))",
            "(sigmoid ?a)",
            constant("?one", 1.0),
        ),
        rule_if(
            "sigmoid-of-exp-neg",
            "(div ?one (add ?one (exp (neg ?a))))",
            "(sigmoid ?a)",
            constant("?one", 1.0),
        ),
        // relu′(a) = step(a): the sign is known from relu's input, not from its output.
        rule("step-of-relu", "(step (relu ?a))", "(step ?a)"),
        // x² as a product (tanh′ = 1 − t² written with a power): one multiply, no `powf`.
        rule_with("square", "(pow ?e ?x)", |egraph, m| {
            let x = m.get("?x");
            (exponent(egraph, m.get("?e")) == Some(F64Bits::new(2.0))).then_some(())?;
            binary(egraph, BinaryOp::Mul, x, x)
        }),
    ]
}

/// Phase 4: factoring, kept only where the cost model says the result is cheaper.
pub fn factor() -> Vec<Rewrite> {
    let mut rules = vec![
        rule(
            "factor-mul-add",
            "(add (mul ?a ?b) (mul ?a ?c))",
            "(mul ?a (add ?b ?c))",
        ),
        rule(
            "factor-mul-sub",
            "(sub (mul ?a ?b) (mul ?a ?c))",
            "(mul ?a (sub ?b ?c))",
        ),
        rule(
            "factor-div-add",
            "(add (div ?a ?c) (div ?b ?c))",
            "(div (add ?a ?b) ?c)",
        ),
        rule(
            "factor-div-sub",
            "(sub (div ?a ?c) (div ?b ?c))",
            "(div (sub ?a ?b) ?c)",
        ),
    ];
    for (op, sum) in [("add", BinaryOp::Add), ("sub", BinaryOp::Sub)] {
        rules.push(rule_with(
            &format!("factor-matmul-{op}-left"),
            &format!("({op} (matmul ?f ?x ?a) (matmul ?f ?x ?b))"),
            move |egraph, m| {
                let (x, a, b) = (m.get("?x"), m.get("?a"), m.get("?b"));
                let f = flags(egraph, m.get("?f"))?;
                factoring_pays(egraph, f, [x, a], [x, b], sum).then_some(())?;
                let summed = binary(egraph, sum, a, b)?;
                matmul(egraph, f.transpose_a, f.transpose_b, x, summed)
            },
        ));
        rules.push(rule_with(
            &format!("factor-matmul-{op}-right"),
            &format!("({op} (matmul ?f ?a ?x) (matmul ?f ?b ?x))"),
            move |egraph, m| {
                let (x, a, b) = (m.get("?x"), m.get("?a"), m.get("?b"));
                let f = flags(egraph, m.get("?f"))?;
                factoring_pays(egraph, f, [a, x], [b, x], sum).then_some(())?;
                let summed = binary(egraph, sum, a, b)?;
                matmul(egraph, f.transpose_a, f.transpose_b, summed, x)
            },
        ));
    }
    // Every face of a convolution is bilinear: an operand both terms share factors out, one
    // convolution in place of two.
    for conv in ["conv2d", "conv2d_transpose", "conv2d_correlate"] {
        for op in ["add", "sub"] {
            rules.push(rule(
                &format!("factor-{conv}-{op}-left"),
                &format!("({op} ({conv} ?p ?x ?a) ({conv} ?p ?x ?b))"),
                &format!("({conv} ?p ?x ({op} ?a ?b))"),
            ));
            rules.push(rule(
                &format!("factor-{conv}-{op}-right"),
                &format!("({op} ({conv} ?p ?a ?x) ({conv} ?p ?b ?x))"),
                &format!("({conv} ?p ({op} ?a ?b) ?x)"),
            ));
        }
    }
    // A max-pooling whose argmax the graph holds anyway (for its derivative) reads its maxima
    // there: a gather in place of a second search of every window. The extraction keeps it only
    // where the argmax is shared.
    rules.push(rule_with(
        "max-pool-at-argmax",
        "(max_pool2d ?p ?x)",
        |egraph, m| {
            let x = m.get("?x");
            let Op::Conv(pool) = params(egraph, m.get("?p")) else {
                return None;
            };
            let [argmax, select] = pool.argmax_faces()?;
            let at = add_op(egraph, Op::Conv(argmax), &[x])?;
            add_op(egraph, Op::Conv(select), &[x, at])
        },
    ));
    // A select gathers one element per window, so it distributes over every elementwise op and
    // reads a tensor constant over each plane (a bias) as it is; a factor of a scatter's result
    // is needed only where the scatter writes. A bias and a ReLU's mask are then applied to the
    // pooled values, a quarter of the image's for 2×2 windows; in a Gauss-Newton product the
    // mask's select is a residual.
    for op in BinaryOp::ALL {
        let op = op.name();
        rules.push(rule(
            &format!("select-of-{op}"),
            &format!("(max_pool2d_select ?p ({op} ?a ?b) ?i)"),
            &format!("({op} (max_pool2d_select ?p ?a ?i) (max_pool2d_select ?p ?b ?i))"),
        ));
    }
    rules.push(rule_with(
        "select-of-broadcast",
        "(max_pool2d_select ?p (broadcast ?s ?x) ?i)",
        |egraph, m| {
            let (x, pooled) = (m.get("?x"), m.get("?i"));
            // The source's dimensions aligned with the image's H and W (the last two) are 1.
            let dims = shape(egraph, x).dims();
            let spatial = &dims[dims.len().saturating_sub(2)..];
            spatial
                .iter()
                .all(|d| d.as_fixed() == Some(1))
                .then_some(())?;
            let target = shape(egraph, pooled).clone();
            add_broadcast(egraph, x, &target)
        },
    ));
    rules.push(rule_with(
        "scale-before-scatter",
        "(mul ?m (max_pool2d_scatter ?p ?c ?a))",
        |egraph, m| {
            let (mask, c, at) = (m.get("?m"), m.get("?c"), m.get("?a"));
            let Op::Conv(scatter) = params(egraph, m.get("?p")) else {
                return None;
            };
            let (scatter, select) = (*scatter, scatter.pool_select()?);
            let mask = add_op(egraph, Op::Conv(select), &[mask, at])?;
            let scaled = binary(egraph, BinaryOp::Mul, mask, c)?;
            add_op(egraph, Op::Conv(scatter), &[scaled, at])
        },
    ));
    rules.push(rule_with(
        "scale-into-matmul",
        "(mul (matmul ?f ?a ?b) (broadcast ?s ?c))",
        |egraph, m| {
            let (a, b, c) = (m.get("?a"), m.get("?b"), m.get("?c"));
            if !is_scalar(egraph, c) {
                return None;
            }
            let f = flags(egraph, m.get("?f"))?;
            // Scale the smaller operand.
            if numel(egraph, a) <= numel(egraph, b) {
                let a = scale(egraph, a, c)?;
                matmul(egraph, f.transpose_a, f.transpose_b, a, b)
            } else {
                let b = scale(egraph, b, c)?;
                matmul(egraph, f.transpose_a, f.transpose_b, a, b)
            }
        },
    ));
    // (op(p) op(q)) op(r) → op(p) (op(q) op(r)), when the outer product does not transpose the
    // inner one.
    rules.push(rule_with(
        "reassociate-matmul-left",
        "(matmul ?g (matmul ?f ?p ?q) ?r)",
        |egraph, m| {
            let (p, q, r) = (m.get("?p"), m.get("?q"), m.get("?r"));
            let (inner, outer) = (flags(egraph, m.get("?f"))?, flags(egraph, m.get("?g"))?);
            (!outer.transpose_a).then_some(())?;
            let [mm, k] = rows_cols(egraph, p, inner.transpose_a);
            let [_, n] = rows_cols(egraph, q, inner.transpose_b);
            let [_, l] = rows_cols(egraph, r, outer.transpose_b);
            (2 * k * n * l + 2 * mm * k * l < 2 * mm * k * n + 2 * mm * n * l).then_some(())?;
            let product = matmul(egraph, inner.transpose_b, outer.transpose_b, q, r)?;
            matmul(egraph, inner.transpose_a, false, p, product)
        },
    ));
    // op(p) (op(q) op(r)) → (op(p) op(q)) op(r), likewise.
    rules.push(rule_with(
        "reassociate-matmul-right",
        "(matmul ?g ?p (matmul ?f ?q ?r))",
        |egraph, m| {
            let (p, q, r) = (m.get("?p"), m.get("?q"), m.get("?r"));
            let (inner, outer) = (flags(egraph, m.get("?f"))?, flags(egraph, m.get("?g"))?);
            (!outer.transpose_b).then_some(())?;
            let [mm, k] = rows_cols(egraph, p, outer.transpose_a);
            let [_, n] = rows_cols(egraph, q, inner.transpose_a);
            let [_, l] = rows_cols(egraph, r, inner.transpose_b);
            (2 * mm * k * n + 2 * mm * n * l < 2 * k * n * l + 2 * mm * k * l).then_some(())?;
            let product = matmul(egraph, outer.transpose_a, inner.transpose_a, p, q)?;
            matmul(egraph, false, inner.transpose_b, product, r)
        },
    ));
    rules
}

/// `[rows, cols]` of `op(x)` for a matrix class `x`, with symbols bound to the cost model's
/// batch.
fn rows_cols(egraph: &EGraph, x: Id, transposed: bool) -> [u64; 2] {
    let batch = egraph.analysis.batch;
    let d = shape(egraph, x).dims();
    let [r, c] = [dim_size(&d[0], batch), dim_size(&d[1], batch)];
    if transposed { [c, r] } else { [r, c] }
}

fn numel(egraph: &EGraph, id: Id) -> u64 {
    crate::ir::op::numel(shape(egraph, id), egraph.analysis.batch)
}

/// The axes of `shape` after its leading size-1 axes.
fn without_leading_ones(shape: &Shape) -> &[Dim] {
    let dims = shape.dims();
    let first = dims.iter().position(|d| !d.is_one()).unwrap_or(dims.len());
    &dims[first..]
}

/// `x` transposed by `perm` (`x` itself for the identity).
fn add_transpose(egraph: &mut EGraph, x: Id, perm: Vec<usize>) -> Option<Id> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Some(x);
    }
    add_op(egraph, Op::transpose_axes(perm), &[x])
}

/// `x` reshaped to `target` (`x` itself when it has that shape).
fn add_reshape(egraph: &mut EGraph, x: Id, target: Shape) -> Option<Id> {
    if shape(egraph, x) == &target {
        return Some(x);
    }
    add_op(egraph, Op::reshape(target), &[x])
}

/// `sum(broadcast(x, target), axes)` without materializing the broadcast: sum `x` over the
/// axes it has, broadcast that to the result, and scale by the number of copies the broadcast
/// made along the summed axes it added or stretched.
fn sum_of_broadcast(egraph: &mut EGraph, x: Id, target: &Shape, axes: &[usize]) -> Option<Id> {
    let x_shape = shape(egraph, x).clone();
    let dtype = ty(egraph, x).dtype;
    let added = target.rank().checked_sub(x_shape.rank())?;
    let mut x_axes = Vec::new();
    let mut copies = Dim::fixed(1);
    for &a in axes {
        if a < added {
            copies = copies.mul(&target.dims()[a]);
        } else {
            if x_shape.dims()[a - added].is_one() {
                copies = copies.mul(&target.dims()[a]);
            }
            x_axes.push(a - added);
        }
    }
    let result = Shape(
        (0..target.rank())
            .filter(|a| !axes.contains(a))
            .map(|a| target.dims()[a].clone())
            .collect(),
    );
    let summed = match x_axes.is_empty() {
        true => x,
        false => add_op(egraph, Op::sum(x_axes), &[x])?,
    };
    let spread = add_broadcast(egraph, summed, &result)?;
    if copies.is_one() {
        return Some(spread);
    }
    let count = add_dim_size(egraph, &copies, dtype);
    scale(egraph, spread, count)
}

/// True if `op(p) @ op(q) ± op(r) @ op(s)` (with `p = r` or `q = s`) costs more than the one
/// product of the shared operand and the summed other ones.
fn factoring_pays(
    egraph: &EGraph,
    flags: MatMul,
    first: [Id; 2],
    second: [Id; 2],
    sum: BinaryOp,
) -> bool {
    let batch = egraph.analysis.batch;
    let product = Op::MatMul(flags);
    let work = |op: &Op, operands: &[&TensorType]| -> Option<f64> {
        let output = op.infer_type(operands).ok()?;
        Some(op.work(operands, &output, batch).total())
    };
    let types = |[a, b]: [Id; 2]| [ty(egraph, a), ty(egraph, b)];
    let (t1, t2) = (types(first), types(second));
    let cost = || -> Option<(f64, f64)> {
        let p1 = work(&product, &t1)?;
        let p2 = work(&product, &t2)?;
        let out = product.infer_type(&t1).ok()?;
        let separate = p1 + p2 + work(&Op::binary(sum), &[&out, &out])?;
        // The summed operands are the ones that differ.
        let differing = if first[0] == second[0] { 1 } else { 0 };
        let summed = work(&Op::binary(sum), &[t1[differing], t2[differing]])?;
        Some((separate, summed + p1))
    };
    cost().is_some_and(|(separate, factored)| factored < separate)
}
