//! Finite-difference checks of the JVP and VJP rule of every primitive (f64, central
//! differences, relative error ≤ 1e-6), and the transpose identity ⟨w, J v⟩ = ⟨Jᵀ w, v⟩.

mod common;

use common::{RELATIVE_FLOOR, assert_close, rel_err, wavy};
use sgn::autodiff::{jvp, transpose};
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp, interp,
};

const F: DType = DType::F64;

/// How to draw an operand: values in (lo, hi), kept at least `gap` away from 0 when `gap > 0`.
#[derive(Clone, Copy)]
struct Domain {
    lo: f64,
    hi: f64,
    gap: f64,
}

const ANY: Domain = Domain {
    lo: -2.0,
    hi: 2.0,
    gap: 0.0,
};
const POSITIVE: Domain = Domain {
    lo: 0.2,
    hi: 3.0,
    gap: 0.0,
};
const OFF_ZERO: Domain = Domain {
    lo: -2.0,
    hi: 2.0,
    gap: 0.05,
};

fn draw(shape: &[usize], seed: u64, d: Domain) -> Tensor {
    let base = wavy(F, shape, seed, 1.0).to_f64_vec();
    let values = base
        .iter()
        .map(|u| {
            let x = d.lo + (u + 1.0) / 2.0 * (d.hi - d.lo);
            if d.gap > 0.0 && x.abs() < d.gap {
                x.signum() * d.gap + x
            } else {
                x
            }
        })
        .collect();
    Tensor::from_f64(F, shape, values).unwrap()
}

fn add(t: &Tensor, s: f64, d: &Tensor) -> Tensor {
    let v = t
        .to_f64_vec()
        .iter()
        .zip(d.to_f64_vec())
        .map(|(a, b)| a + s * b)
        .collect();
    Tensor::from_f64(F, t.shape(), v).unwrap()
}

fn inner(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

/// Checks the JVP of `build(xs)` against central differences along a direction, and its
/// transpose against the JVP (⟨w, J v⟩ = Σ⟨Jᵀw, v⟩) and against differences of ⟨w, f⟩.
fn check(
    name: &str,
    shapes: &[&[usize]],
    domains: &[Domain],
    build: impl Fn(&mut Graph, &[NodeId]) -> NodeId,
) {
    let mut g = Graph::new(name);
    let xs: Vec<NodeId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            g.add_arg(
                format!("x{i}"),
                ArgRole::Param,
                TensorType::new(
                    F,
                    Shape::fixed(&s.iter().map(|&d| d as u64).collect::<Vec<_>>()),
                ),
            )
        })
        .collect();
    let vs: Vec<NodeId> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ty = g.ty(x).clone();
            g.add_arg(format!("v{i}"), ArgRole::Direction, ty)
        })
        .collect();
    let y = build(&mut g, &xs);
    let y_ty = g.ty(y).clone();
    let w = g.add_arg("w", ArgRole::Cotangent, y_ty.clone());
    let seeds: Vec<(NodeId, NodeId)> = xs.iter().copied().zip(vs.iter().copied()).collect();
    let tangent = jvp(&mut g, &seeds, &[y]).unwrap()[y.index()];
    g.add_output("y", y);
    let has_tangent = tangent.is_some();
    if let Some(t) = tangent {
        g.add_output("jv", t);
        let cts = transpose(&mut g, &vs, &[(t, w)]).unwrap();
        for (i, ct) in cts.into_iter().enumerate() {
            let ct = ct.unwrap_or_else(|| {
                g.full(0.0, &TensorType::new(F, g.ty(xs[i]).shape.clone()))
                    .unwrap()
            });
            g.add_output(format!("ct{i}"), ct);
        }
    }

    let x_vals: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| draw(s, 11 + i as u64, domains[i]))
        .collect();
    let v_vals: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| wavy(F, s, 101 + i as u64, 1.0))
        .collect();
    let y_shape: Vec<usize> = y_ty
        .shape
        .dims()
        .iter()
        .map(|d| d.as_fixed().unwrap() as usize)
        .collect();
    let w_val = wavy(F, &y_shape, 7, 1.0);
    let run = |x: &[Tensor]| -> Vec<Tensor> {
        let mut args: Vec<Tensor> = x.to_vec();
        args.extend(v_vals.iter().cloned());
        args.push(w_val.clone());
        interp::run(&g, &args).unwrap()
    };
    let out = run(&x_vals);
    let h = 1e-6;
    let shifted = |s: f64| -> Tensor {
        let x: Vec<Tensor> = x_vals
            .iter()
            .zip(&v_vals)
            .map(|(x, v)| add(x, s * h, v))
            .collect();
        run(&x).swap_remove(0)
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let fd = add(&plus, -1.0, &minus)
        .to_f64_vec()
        .iter()
        .map(|d| d / (2.0 * h))
        .collect::<Vec<_>>();
    let fd = Tensor::from_f64(F, plus.shape(), fd).unwrap();
    if !has_tangent {
        assert!(
            fd.to_f64_vec().iter().all(|d| d.abs() < 1e-9),
            "{name}: symbolic-zero tangent but differences {fd:?}"
        );
        return;
    }
    let jv = &out[1];
    assert_close(
        &format!("{name}: JVP vs finite differences"),
        jv,
        &fd,
        RELATIVE_FLOOR,
        1e-6,
    );
    let w_jv = inner(&w_val, jv);
    let ct_v: f64 = out[2..]
        .iter()
        .zip(&v_vals)
        .map(|(ct, v)| inner(ct, v))
        .sum();
    assert!(
        rel_err(w_jv, ct_v) <= 1e-12,
        "{name}: transpose identity {w_jv} vs {ct_v}"
    );
    let w_fd = inner(&w_val, &fd);
    assert!(
        rel_err(ct_v, w_fd) <= 1e-6,
        "{name}: VJP vs finite differences {ct_v} vs {w_fd}"
    );
}

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
