//! Finite-difference checks of the JVP and VJP rule of every primitive (f64, central
//! differences, relative error ≤ 1e-6), and the transpose identity ⟨w, J v⟩ = ⟨Jᵀ w, v⟩.

use crate::common;

use common::derivatives::{ANY, OFF_ZERO, POSITIVE, check};
use sgn::autodiff::{jvp, transpose};
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp, interp,
};

const F: DType = DType::F64;

#[test]
fn every_unary_op() {
    for op in UnaryOp::ALL {
        let domain = match op {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip => POSITIVE,
            UnaryOp::Relu | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Step => OFF_ZERO,
            _ => ANY,
        };
        check(op.name(), &[&[2, 3]], &[domain], |g, xs| {
            g.unary(op, xs[0]).unwrap()
        });
    }
}

#[test]
fn pow_with_several_exponents() {
    for c in [2.0, 3.0, 0.5, -1.5, 1.0, 0.0] {
        check(&format!("pow {c}"), &[&[4]], &[POSITIVE], |g, xs| {
            g.apply(Op::pow(c), &[xs[0]]).unwrap()
        });
    }
}

#[test]
fn every_binary_op() {
    for op in BinaryOp::ALL {
        let domains = match op {
            BinaryOp::Div => [ANY, POSITIVE],
            _ => [ANY, ANY],
        };
        check(op.name(), &[&[2, 3], &[2, 3]], &domains, |g, xs| {
            g.binary(op, xs[0], xs[1]).unwrap()
        });
        // The same operand twice: both tangent terms land on one input.
        check(
            &format!("{} self", op.name()),
            &[&[3]],
            &[POSITIVE],
            |g, xs| g.binary(op, xs[0], xs[0]).unwrap(),
        );
    }
}

#[test]
fn matmul_with_every_transpose_flag() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a: &[usize] = if ta { &[3, 2] } else { &[2, 3] };
        let b: &[usize] = if tb { &[4, 3] } else { &[3, 4] };
        check(
            &format!("matmul {ta} {tb}"),
            &[a, b],
            &[ANY, ANY],
            |g, xs| g.apply(Op::matmul(ta, tb), xs).unwrap(),
        );
    }
}

#[test]
fn reductions() {
    check("sum [1]", &[&[2, 3, 4]], &[ANY], |g, xs| {
        g.sum(xs[0], &[1]).unwrap()
    });
    check("sum [0, 2]", &[&[2, 3, 4]], &[ANY], |g, xs| {
        g.sum(xs[0], &[0, 2]).unwrap()
    });
    check("sum all", &[&[2, 3]], &[ANY], |g, xs| {
        g.sum(xs[0], &[0, 1]).unwrap()
    });
    check("reduce_max [1]", &[&[3, 5]], &[ANY], |g, xs| {
        g.apply(Op::reduce_max(vec![1]), &[xs[0]]).unwrap()
    });
    check("reduce_max all", &[&[2, 3]], &[ANY], |g, xs| {
        g.apply(Op::reduce_max(vec![0, 1]), &[xs[0]]).unwrap()
    });
}

#[test]
fn structural_ops() {
    check("broadcast [3]->[2,3]", &[&[3]], &[ANY], |g, xs| {
        g.broadcast(xs[0], &Shape::fixed(&[2, 3])).unwrap()
    });
    check("broadcast [2,1]->[2,3]", &[&[2, 1]], &[ANY], |g, xs| {
        g.broadcast(xs[0], &Shape::fixed(&[2, 3])).unwrap()
    });
    check("broadcast []->[4,2]", &[&[]], &[ANY], |g, xs| {
        g.broadcast(xs[0], &Shape::fixed(&[4, 2])).unwrap()
    });
    check("reshape", &[&[2, 3]], &[ANY], |g, xs| {
        g.reshape(xs[0], &Shape::fixed(&[3, 2])).unwrap()
    });
    check("transpose", &[&[2, 3, 4]], &[ANY], |g, xs| {
        g.transpose(xs[0], &[2, 0, 1]).unwrap()
    });
    check(
        "concat",
        &[&[2, 1], &[2, 3], &[2, 2]],
        &[ANY, ANY, ANY],
        |g, xs| g.apply(Op::concat(1), xs).unwrap(),
    );
    check("slice middle", &[&[2, 5]], &[ANY], |g, xs| {
        g.apply(Op::slice(1, Dim::fixed(1), Dim::fixed(3)), &[xs[0]])
            .unwrap()
    });
    check("slice head", &[&[4, 2]], &[ANY], |g, xs| {
        g.apply(Op::slice(0, Dim::fixed(0), Dim::fixed(2)), &[xs[0]])
            .unwrap()
    });
}

#[test]
fn stop_gradient_has_no_tangent_by_definition() {
    let mut g = Graph::new("stop");
    let ty = TensorType::new(F, Shape::fixed(&[3]));
    let x = g.add_arg("x", ArgRole::Param, ty.clone());
    let v = g.add_arg("v", ArgRole::Direction, ty);
    let stopped = g.apply(Op::stop_gradient(), &[x]).unwrap();
    let y = g.binary(BinaryOp::Mul, stopped, x).unwrap();
    let tangents = jvp(&mut g, &[(x, v)], &[y]).unwrap();
    assert_eq!(tangents[stopped.index()], None);
    // d(sg(x)·x) = sg(x)·dx: only the second factor carries a tangent.
    let t = tangents[y.index()].unwrap();
    g.add_output("t", t);
    let x_val = Tensor::from_f64(F, &[3], vec![1.0, -2.0, 3.0]).unwrap();
    let v_val = Tensor::from_f64(F, &[3], vec![0.5, 0.5, 0.5]).unwrap();
    let out = interp::run(&g, &[x_val, v_val]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.5, -1.0, 1.5]);
}

#[test]
fn composites_with_constants() {
    // A tangent that meets constants and shared subexpressions (softmax-like).
    check("softmax", &[&[2, 4]], &[ANY], |g, xs| {
        let e = g.unary(UnaryOp::Exp, xs[0]).unwrap();
        let s = g.sum(e, &[1]).unwrap();
        let s = g.reshape(s, &Shape::fixed(&[2, 1])).unwrap();
        let s = g.broadcast(s, &Shape::fixed(&[2, 4])).unwrap();
        g.binary(BinaryOp::Div, e, s).unwrap()
    });
    check("scaled", &[&[3]], &[ANY], |g, xs| {
        let c = g
            .full(2.5, &TensorType::new(F, Shape::fixed(&[3])))
            .unwrap();
        let y = g.binary(BinaryOp::Mul, xs[0], c).unwrap();
        g.unary(UnaryOp::Tanh, y).unwrap()
    });
}

#[test]
fn transposing_a_nonlinear_op_names_it_and_its_line() {
    let model = sgn::Model::parse(
        "model bad\ninput x: f64[B, 2]\ntarget y: f64[B, 2]\nparam w: f64[2, 2]\n\
         output z = exp(x @ w)\nloss mse(z, y)\n",
    )
    .unwrap();
    let mut g = model.graph.clone();
    let w = g.arg("w").unwrap().node;
    let z = g.output("z").unwrap();
    let ct = g.add_arg("ct", ArgRole::Cotangent, g.ty(z).clone());
    // Treating w as the linear input of z = exp(x @ w) is wrong: exp is not linear.
    let err = transpose(&mut g, &[w], &[(z, ct)]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`exp`"), "{text}");
    assert!(text.starts_with("5:"), "{text}");
    let both = transpose(&mut g, &[w], &[(z, ct)]);
    assert!(both.is_err());
}
