//! Soundness of every rewrite rule by random evaluation.
//!
//! Each rule runs alone on seed graphs written to contain its left-hand side (and near misses
//! its conditions must reject). Afterwards every e-node of every e-class must evaluate, on random
//! f64 inputs, to the value of the class (computed from one representative node per class), and
//! the graph extracted from the e-graph must give the seed's outputs. A rule that fires on no
//! seed fails the test, so every rule is exercised. Constant folding is checked the same way: it
//! happens whenever a graph is loaded.

use crate::common;

use common::{RELATIVE_FLOOR, wavy};
use egg::{Id, Runner};
use sgn::ir::Leaf;
use sgn::ir::interp::run;
use sgn::ir::{
    ArgRole, BinaryOp, Conv, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp,
    Window,
};
use sgn::rewrite::analysis::{Data, facts, ir_op};
use sgn::rewrite::extract::extract;
use sgn::rewrite::lang::ENode;
use sgn::rewrite::rules::Rewrite;
use sgn::rewrite::{Loaded, Phase};
use std::collections::HashMap;
use std::time::Duration;

const F: DType = DType::F64;
/// The size the symbolic dimension `B` gets in evaluations.
const B: usize = 3;
const TOLERANCE: f64 = 1e-12;

fn dims(shape: &[Dim]) -> Shape {
    Shape(shape.to_vec())
}

fn fixed(d: &[u64]) -> Vec<Dim> {
    d.iter().map(|&n| Dim::fixed(n)).collect()
}

fn batch(rest: &[u64]) -> Vec<Dim> {
    std::iter::once(Dim::sym("B"))
        .chain(rest.iter().map(|&n| Dim::fixed(n)))
        .collect()
}

/// A seed graph under construction: arguments get wavy values in (−2, 2).
struct Seed {
    g: Graph,
    outputs: usize,
}

impl Seed {
    fn new(name: &str) -> Seed {
        Seed {
            g: Graph::new(name),
            outputs: 0,
        }
    }

    fn arg(&mut self, name: &str, shape: Vec<Dim>) -> NodeId {
        self.g
            .add_arg(name, ArgRole::Input, TensorType::new(F, dims(&shape)))
    }

    fn out(&mut self, node: NodeId) {
        self.outputs += 1;
        self.g.add_output(format!("o{}", self.outputs), node);
    }

    fn op(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        self.g
            .apply(op.clone(), inputs)
            .unwrap_or_else(|e| panic!("seed {}: {op:?}: {e}", self.g.name))
    }

    fn un(&mut self, op: UnaryOp, x: NodeId) -> NodeId {
        self.op(Op::unary(op), &[x])
    }

    fn bin(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        self.op(Op::binary(op), &[a, b])
    }

    fn full(&mut self, value: f64, like: NodeId) -> NodeId {
        let ty = self.g.ty(like).clone();
        self.g.full(value, &ty).expect("a constant fills any shape")
    }

    fn bcast(&mut self, x: NodeId, shape: Vec<Dim>) -> NodeId {
        self.op(Op::broadcast(dims(&shape)), &[x])
    }

    fn reshape(&mut self, x: NodeId, shape: Vec<Dim>) -> NodeId {
        self.op(Op::reshape(dims(&shape)), &[x])
    }

    fn transpose(&mut self, x: NodeId, perm: &[usize]) -> NodeId {
        self.op(Op::transpose_axes(perm.to_vec()), &[x])
    }

    fn sum(&mut self, x: NodeId, axes: &[usize]) -> NodeId {
        self.op(Op::sum(axes.to_vec()), &[x])
    }

    fn matmul(&mut self, ta: bool, tb: bool, a: NodeId, b: NodeId) -> NodeId {
        self.op(Op::matmul(ta, tb), &[a, b])
    }

    fn done(self) -> Graph {
        self.g
    }
}

/// Identities, negation and scalar factors.
fn algebra() -> Graph {
    use BinaryOp::*;
    use UnaryOp::Neg;
    let mut s = Seed::new("algebra");
    let x = s.arg("x", fixed(&[3, 4]));
    let y = s.arg("y", fixed(&[3, 4]));
    let c = s.arg("c", fixed(&[]));
    let d = s.arg("d", fixed(&[]));
    let (zeros, ones, minus) = (s.full(0.0, x), s.full(1.0, x), s.full(-1.0, x));
    for (op, a, b) in [
        (Add, x, zeros),
        (Sub, x, zeros),
        (Sub, zeros, x),
        (Sub, x, x),
        (Add, x, x),
        (Mul, x, ones),
        (Mul, x, minus),
        (Mul, x, zeros),
        (Div, x, ones),
        (Max, x, y),
        (Min, x, y),
    ] {
        let r = s.bin(op, a, b);
        s.out(r);
    }
    let nn = s.un(Neg, x);
    let nn = s.un(Neg, nn);
    s.out(nn);
    let ny = s.un(Neg, y);
    let nx = s.un(Neg, x);
    for (op, a, b) in [(Add, x, ny), (Sub, x, ny), (Mul, x, ny), (Div, nx, y)] {
        let r = s.bin(op, a, b);
        s.out(r);
    }
    let xy = s.bin(Sub, x, y);
    let r = s.un(Neg, xy);
    s.out(r);
    let r = s.sum(nx, &[1]);
    s.out(r);
    let cb = s.bcast(c, fixed(&[3, 4]));
    let db = s.bcast(d, fixed(&[3, 4]));
    let xc = s.bin(Mul, x, cb);
    let xcd = s.bin(Mul, xc, db);
    s.out(xcd);
    let r = s.un(Neg, xc);
    s.out(r);
    let r = s.sum(xc, &[0]);
    s.out(r);
    let r = s.sum(xc, &[0, 1]);
    s.out(r);
    s.done()
}

/// Transposes, reshapes, broadcasts and sums of them.
fn structure() -> Graph {
    let mut s = Seed::new("structure");
    let t = s.arg("t", fixed(&[2, 3, 4]));
    let r = s.arg("r", fixed(&[2, 6]));
    let c = s.arg("c", fixed(&[]));
    let v = s.arg("v", fixed(&[4]));
    let w = s.arg("w", fixed(&[3]));
    let col = s.arg("col", fixed(&[3, 1]));
    let z = s.arg("z", batch(&[4]));
    let zc = s.arg("zc", batch(&[1]));
    for (p, q) in [([1, 2, 0], [2, 0, 1]), ([1, 0, 2], [0, 2, 1])] {
        let tp = s.transpose(t, &p);
        let tq = s.transpose(tp, &q);
        s.out(tq);
    }
    let r34 = s.reshape(r, fixed(&[3, 4]));
    let flat = s.reshape(r34, fixed(&[12]));
    s.out(flat);
    let flat = s.reshape(r, fixed(&[12]));
    let back = s.reshape(flat, fixed(&[2, 6]));
    s.out(back);
    // Broadcasts of reshapes: leading unit axes (foldable) and a trailing one (not).
    let c11 = s.reshape(c, fixed(&[1, 1]));
    let b = s.bcast(c11, fixed(&[3, 4]));
    s.out(b);
    let v14 = s.reshape(v, fixed(&[1, 4]));
    let b = s.bcast(v14, fixed(&[3, 4]));
    s.out(b);
    let w31 = s.reshape(w, fixed(&[3, 1]));
    for n in [5, 3] {
        let b = s.bcast(w31, fixed(&[3, n]));
        s.out(b);
    }
    let v34 = s.bcast(v, fixed(&[3, 4]));
    let b = s.bcast(v34, fixed(&[2, 3, 4]));
    s.out(b);
    let v14_34 = s.bcast(v14, fixed(&[3, 4]));
    let b = s.bcast(v14_34, fixed(&[2, 3, 4]));
    s.out(b);
    // Sums of broadcasts over added, stretched and real axes, fixed and symbolic counts.
    for axes in [&[0][..], &[1], &[0, 1]] {
        let r = s.sum(v34, axes);
        s.out(r);
    }
    let spread = s.bcast(col, fixed(&[2, 3, 5]));
    for axes in [&[0, 2][..], &[1], &[2], &[0, 1, 2]] {
        let r = s.sum(spread, axes);
        s.out(r);
    }
    let vb = s.bcast(v, batch(&[4]));
    let r = s.sum(vb, &[0]);
    s.out(r);
    let zb = s.bcast(zc, batch(&[4]));
    let r = s.sum(zb, &[1]);
    s.out(r);
    let r = s.bin(BinaryOp::Add, vb, z);
    s.out(r);
    for (first, then) in [(&[1][..], &[1][..]), (&[0], &[0, 1])] {
        let inner = s.sum(t, first);
        let r = s.sum(inner, then);
        s.out(r);
    }
    // Elementwise ops of broadcasts, on values of both signs and on positive ones.
    let positive = s.un(UnaryOp::Exp, v);
    let positive34 = s.bcast(positive, fixed(&[3, 4]));
    let r = s.op(Op::pow(3.0), &[v34]);
    s.out(r);
    for op in UnaryOp::ALL {
        let r = s.un(op, v34);
        s.out(r);
        let r = s.un(op, positive34);
        s.out(r);
    }
    let c34 = s.bcast(c, fixed(&[3, 4]));
    let u34 = s.bcast(positive, fixed(&[3, 4]));
    for op in BinaryOp::ALL {
        let r = s.bin(op, v34, c34);
        s.out(r);
        let r = s.bin(op, v34, u34);
        s.out(r);
    }
    s.done()
}

/// Shapes `(a, b)` whose `op(a) @ op(b)` is `[m, k] @ [k, n]`.
fn operand_shapes(ta: bool, tb: bool, [m, k, n]: [u64; 3]) -> (Vec<Dim>, Vec<Dim>) {
    let a = if ta { [k, m] } else { [m, k] };
    let b = if tb { [n, k] } else { [k, n] };
    (fixed(&a), fixed(&b))
}

/// Matrix products with every transpose-flag combination.
fn products() -> Graph {
    let mut s = Seed::new("products");
    let c = s.arg("c", fixed(&[]));
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let tag = format!("{}{}", u8::from(ta), u8::from(tb));
        let (sa, sb) = operand_shapes(ta, tb, [3, 4, 5]);
        let a = s.arg(&format!("a{tag}"), sa.clone());
        let b = s.arg(&format!("b{tag}"), sb.clone());
        let a2 = s.arg(&format!("a2{tag}"), sa.clone());
        let b2 = s.arg(&format!("b2{tag}"), sb.clone());
        let at = s.arg(&format!("at{tag}"), sa.iter().rev().cloned().collect());
        let bt = s.arg(&format!("bt{tag}"), sb.iter().rev().cloned().collect());
        let att = s.transpose(at, &[1, 0]);
        let r = s.matmul(ta, tb, att, b);
        s.out(r);
        let btt = s.transpose(bt, &[1, 0]);
        let r = s.matmul(ta, tb, a, btt);
        s.out(r);
        let ab = s.matmul(ta, tb, a, b);
        let r = s.transpose(ab, &[1, 0]);
        s.out(r);
        let na = s.un(UnaryOp::Neg, a);
        let r = s.matmul(ta, tb, na, b);
        s.out(r);
        let nb = s.un(UnaryOp::Neg, b);
        let r = s.matmul(ta, tb, a, nb);
        s.out(r);
        let zeros = s.full(0.0, b);
        let r = s.matmul(ta, tb, a, zeros);
        s.out(r);
        let ab2 = s.matmul(ta, tb, a, b2);
        let a2b = s.matmul(ta, tb, a2, b);
        for op in [BinaryOp::Add, BinaryOp::Sub] {
            let r = s.bin(op, ab, ab2);
            s.out(r);
            let r = s.bin(op, ab, a2b);
            s.out(r);
        }
        let ty = s.g.ty(ab).shape.0.clone();
        let cb = s.bcast(c, ty);
        let r = s.bin(BinaryOp::Mul, ab, cb);
        s.out(r);
        // Chains shaped so that reassociating pays: (p q) r → p (q r) for [8,2][2,8][8,2], and
        // p (q r) → (p q) r for [2,8][8,2][2,8].
        for ub in [false, true] {
            let tag = format!("{tag}{}", u8::from(ub));
            let (sp, sq) = operand_shapes(ta, tb, [8, 2, 8]);
            let sr = if ub { fixed(&[2, 8]) } else { fixed(&[8, 2]) };
            let p = s.arg(&format!("p{tag}"), sp);
            let q = s.arg(&format!("q{tag}"), sq);
            let r = s.arg(&format!("r{tag}"), sr);
            let pq = s.matmul(ta, tb, p, q);
            let out = s.matmul(false, ub, pq, r);
            s.out(out);
            let (sq, sr) = operand_shapes(ta, tb, [8, 2, 8]);
            let sp = if ub { fixed(&[8, 2]) } else { fixed(&[2, 8]) };
            let p = s.arg(&format!("pp{tag}"), sp);
            let q = s.arg(&format!("qq{tag}"), sq);
            let r = s.arg(&format!("rr{tag}"), sr);
            let qr = s.matmul(ta, tb, q, r);
            let out = s.matmul(ub, false, p, qr);
            s.out(out);
        }
    }
    s.done()
}

/// Stable forms, derivative factors and factoring of elementwise products.
fn functions() -> Graph {
    use BinaryOp::*;
    use UnaryOp::*;
    let mut s = Seed::new("functions");
    let x = s.arg("x", fixed(&[3, 4]));
    let y = s.arg("y", fixed(&[3, 4]));
    let z = s.arg("z", fixed(&[3, 4]));
    let ones = s.full(1.0, x);
    let ex = s.un(Exp, x);
    let ey = s.un(Exp, y);
    let sx = s.un(Sigmoid, x);
    let r = s.un(Log, ex);
    s.out(r);
    // exp∘log only folds on positive values: sigmoid(x) is, x is not.
    for v in [sx, x] {
        let l = s.un(Log, v);
        let r = s.un(Exp, l);
        s.out(r);
    }
    let one_plus = s.bin(Add, ones, ex);
    let r = s.un(Log, one_plus);
    s.out(r);
    let r = s.un(Log, sx);
    s.out(r);
    let q = s.bin(Div, ex, ey);
    let r = s.un(Log, q);
    s.out(r);
    let q = s.bin(Div, x, y);
    let r = s.un(Log, q);
    s.out(r);
    let rec = s.un(Recip, ex);
    let r = s.un(Log, rec);
    s.out(r);
    let nx = s.un(Neg, x);
    let r = s.un(Sigmoid, nx);
    s.out(r);
    let r = s.bin(Div, ex, one_plus);
    s.out(r);
    let enx = s.un(Exp, nx);
    let d = s.bin(Add, ones, enx);
    let r = s.bin(Div, ones, d);
    s.out(r);
    let rx = s.un(Relu, x);
    let r = s.un(Step, rx);
    s.out(r);
    for e in [2.0, 3.0] {
        let r = s.op(Op::pow(e), &[x]);
        s.out(r);
    }
    let xy = s.bin(Mul, x, y);
    let xz = s.bin(Mul, x, z);
    let xw = s.bin(Div, x, z);
    let yw = s.bin(Div, y, z);
    for (op, a, b) in [(Add, xy, xz), (Sub, xy, xz), (Add, xw, yw), (Sub, xw, yw)] {
        let r = s.bin(op, a, b);
        s.out(r);
    }
    s.done()
}

/// The three faces of a convolution, each summed with itself at one shared operand, and a
/// max-pooling with its argmax and masked derivatives.
fn convolutions() -> Graph {
    let mut s = Seed::new("convolutions");
    let window = Window {
        stride: [2, 1],
        padding: [[1, 0], [0, 1]],
        dilation: [1, 1],
    };
    let faces = [
        Conv::Conv2d { window, groups: 1 },
        Conv::Conv2dTranspose {
            window,
            groups: 1,
            input: [5, 4],
        },
        Conv::Conv2dCorrelate {
            window,
            groups: 1,
            kernel: [3, 2],
        },
    ];
    // x: [B, 2, 5, 4], w: [3, 2, 3, 2], y: [B, 3, 2, 4].
    let operands = [
        (batch(&[2, 5, 4]), fixed(&[3, 2, 3, 2])),
        (batch(&[3, 2, 4]), fixed(&[3, 2, 3, 2])),
        (batch(&[2, 5, 4]), batch(&[3, 2, 4])),
    ];
    // A max-pooling beside its argmax (as in a gradient).
    let pooling = Window {
        stride: [2, 1],
        padding: [[1, 0], [0, 1]],
        dilation: [1, 2],
    };
    let x = s.arg("x", batch(&[2, 5, 4]));
    let kernel = [2, 2];
    let pool = s.op(
        Op::Conv(Conv::MaxPool2d {
            kernel,
            window: pooling,
        }),
        &[x],
    );
    s.out(pool);
    let argmax = Conv::MaxPool2dArgmax {
        kernel,
        window: pooling,
    };
    let at = s.op(Op::Conv(argmax), &[x]);
    s.out(at);
    // A mask and a tangent through the select, a mask after the scatter (pooled: [B, 2, 3, 3]).
    let (m, t) = (s.arg("m", batch(&[2, 5, 4])), s.arg("t", batch(&[2, 5, 4])));
    let select = Conv::MaxPool2dSelect {
        kernel,
        window: pooling,
    };
    for op in BinaryOp::ALL {
        let combined = s.bin(op, m, t);
        let selected = s.op(Op::Conv(select), &[combined, at]);
        s.out(selected);
    }
    // A bias per channel, and (not constant over the planes) a row per image.
    for source in [fixed(&[2, 1, 1]), fixed(&[4])] {
        let bias = s.arg(&format!("bias{}", source.len()), source);
        let spread = s.op(Op::broadcast(Shape(batch(&[2, 5, 4]))), &[bias]);
        let selected = s.op(Op::Conv(select), &[spread, at]);
        s.out(selected);
    }
    let c = s.arg("c", batch(&[2, 3, 3]));
    let scatter = Conv::MaxPool2dScatter {
        kernel,
        window: pooling,
        input: [5, 4],
    };
    let scattered = s.op(Op::Conv(scatter), &[c, at]);
    let masked = s.bin(BinaryOp::Mul, m, scattered);
    s.out(masked);
    for (k, (face, (first, second))) in faces.into_iter().zip(operands).enumerate() {
        let a = s.arg(&format!("a{k}"), first.clone());
        let a2 = s.arg(&format!("a2{k}"), first);
        let b = s.arg(&format!("b{k}"), second.clone());
        let b2 = s.arg(&format!("b2{k}"), second);
        let ab = s.op(Op::Conv(face), &[a, b]);
        let ab2 = s.op(Op::Conv(face), &[a, b2]);
        let a2b = s.op(Op::Conv(face), &[a2, b]);
        for op in [BinaryOp::Add, BinaryOp::Sub] {
            let r = s.bin(op, ab, ab2);
            s.out(r);
            let r = s.bin(op, ab, a2b);
            s.out(r);
        }
    }
    s.done()
}

fn seeds() -> Vec<Graph> {
    vec![
        algebra(),
        structure(),
        products(),
        functions(),
        convolutions(),
    ]
}

/// Wavy inputs in (−2, 2) for the seed's arguments, with `B` = [`B`].
fn inputs(g: &Graph) -> Vec<Tensor> {
    g.args()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let shape: Vec<usize> = a.ty.shape.dims().iter().map(eval).collect();
            wavy(F, &shape, 7 + i as u64, 2.0)
        })
        .collect()
}

fn eval(d: &Dim) -> usize {
    d.as_fixed().map_or_else(
        || d.coeff() as usize * B.pow(d.symbols().len() as u32),
        |n| n as usize,
    )
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    common::assert_close(what, got, want, RELATIVE_FLOOR, TOLERANCE);
}

/// The value of one e-node from the values of its operand classes.
fn eval_node(
    loaded: &Loaded,
    node: &ENode,
    values: &HashMap<Id, Tensor>,
    args: &[Tensor],
) -> Tensor {
    let egraph = &loaded.egraph;
    let (op, operands) = ir_op(egraph, node).expect("a tensor node");
    match op {
        Op::Leaf(Leaf::Arg(i)) => return args[i].clone(),
        Op::Leaf(Leaf::Const(c)) => return Tensor::scalar(F, c.get()),
        Op::Leaf(Leaf::DimSize(d)) => return Tensor::scalar(F, eval(&d) as f64),
        _ => {}
    }
    // A one-node graph over the operand values; the first argument only binds B.
    let mut g = Graph::new("node");
    g.add_arg(
        "bind",
        ArgRole::Input,
        TensorType::new(F, Shape(vec![Dim::sym("B")])),
    );
    let inputs: Vec<NodeId> = operands
        .iter()
        .enumerate()
        .map(|(i, &x)| g.add_arg(format!("x{i}"), ArgRole::Input, facts(egraph, x).ty.clone()))
        .collect();
    let out = g.apply(op, &inputs).expect("e-nodes type-check");
    g.add_output("out", out);
    let mut given = vec![Tensor::zeros(F, &[B])];
    given.extend(operands.iter().map(|x| values[&egraph.find(*x)].clone()));
    run(&g, &given).expect("the node evaluates").remove(0)
}

/// Runs `rule` alone on `seed`; checks every class and the extracted outputs. Returns how often
/// the rule fired.
fn check(rule: &Rewrite, seed: &Graph) -> usize {
    let args = inputs(seed);
    let mut loaded = Loaded::new(seed, B as u64);
    let runner = Runner::default()
        .with_egraph(std::mem::take(&mut loaded.egraph))
        .with_iter_limit(4)
        .with_node_limit(20_000)
        .run([rule]);
    let applied: usize = runner
        .iterations
        .iter()
        .filter_map(|it| it.applied.get(&rule.name))
        .sum();
    loaded.egraph = runner.egraph;
    let egraph = &loaded.egraph;
    let classes: Vec<Id> = egraph
        .classes()
        .filter(|c| matches!(c.data, Data::Tensor(_)))
        .map(|c| c.id)
        .collect();
    let choice = extract(egraph, &classes, B as u64, Duration::ZERO).choice;
    let outputs: Vec<(String, Id)> = classes.iter().map(|c| (format!("c{c}"), *c)).collect();
    let representatives = loaded.build(0, seed, &outputs, |c| &choice[&c]);
    let values: HashMap<Id, Tensor> = classes
        .iter()
        .copied()
        .zip(run(&representatives, &args).expect("the representatives evaluate"))
        .collect();
    for &class in &classes {
        for node in &egraph[class].nodes {
            let got = eval_node(&loaded, node, &values, &args);
            assert_close(
                &format!(
                    "rule {} on {}: e-node {node} of class {class}",
                    rule.name, seed.name
                ),
                &got,
                &values[&class],
            );
        }
    }
    let extracted = loaded.to_graph(0, seed, |c| &choice[&c]);
    let want = run(seed, &args).expect("the seed evaluates");
    let got = run(&extracted, &args).expect("the extracted graph evaluates");
    for ((o, g), w) in seed.outputs().iter().zip(&got).zip(&want) {
        assert_close(
            &format!("rule {} on {}: output {}", rule.name, seed.name, o.name),
            g,
            w,
        );
    }
    applied
}

#[test]
fn every_rule_is_sound_and_fires_on_some_seed() {
    let seeds = seeds();
    for phase in Phase::ALL {
        for rule in phase.rules() {
            let fired: usize = seeds.iter().map(|seed| check(rule, seed)).sum();
            assert!(
                fired > 0,
                "rule {} ({}) fires on no seed graph",
                rule.name,
                phase.name()
            );
        }
    }
}

#[test]
fn loading_folds_constants_and_keeps_the_values() {
    // x·0, 0 @ x and constant arithmetic fold as the graph is loaded; the checker above then
    // sees only the folded classes, so compare the whole graphs here.
    let seed = algebra();
    let loaded = Loaded::new(&seed, B as u64);
    let zero_classes = loaded
        .egraph
        .classes()
        .filter(
            |c| matches!(&c.data, Data::Tensor(f) if f.constant.is_some_and(|v| v.get() == 0.0)),
        )
        .count();
    assert!(zero_classes > 0, "x·0 folds to a zero constant");
    let roots = loaded.canonical_roots();
    let choice = extract(&loaded.egraph, &roots, B as u64, Duration::ZERO).choice;
    let args = inputs(&seed);
    let got = run(&loaded.to_graph(0, &seed, |c| &choice[&c]), &args).unwrap();
    let want = run(&seed, &args).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_close("folded graph", g, w);
    }
}
