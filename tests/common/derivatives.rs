//! Finite-difference checks of a primitive's JVP and VJP rules (f64, central differences,
//! relative error ≤ 1e-6) and the transpose identity ⟨w, J v⟩ = ⟨Jᵀ w, v⟩.

use super::{RELATIVE_FLOOR, assert_close, rel_err, wavy};
use sgn::autodiff::{jvp, transpose};
use sgn::ir::{ArgRole, DType, Graph, NodeId, Shape, Tensor, TensorType, interp};

const F: DType = DType::F64;

/// How to draw an operand: values in (lo, hi), kept at least `gap` away from 0 when `gap > 0`.
#[derive(Clone, Copy)]
pub struct Domain {
    pub lo: f64,
    pub hi: f64,
    pub gap: f64,
}

pub const ANY: Domain = Domain {
    lo: -2.0,
    hi: 2.0,
    gap: 0.0,
};
pub const POSITIVE: Domain = Domain {
    lo: 0.2,
    hi: 3.0,
    gap: 0.0,
};
pub const OFF_ZERO: Domain = Domain {
    lo: -2.0,
    hi: 2.0,
    gap: 0.05,
};

pub fn draw(shape: &[usize], seed: u64, d: Domain) -> Tensor {
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

pub fn add(t: &Tensor, s: f64, d: &Tensor) -> Tensor {
    let v = t
        .to_f64_vec()
        .iter()
        .zip(d.to_f64_vec())
        .map(|(a, b)| a + s * b)
        .collect();
    Tensor::from_f64(F, t.shape(), v).unwrap()
}

pub fn inner(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

/// Checks the JVP of `build(xs)` against central differences along a direction, and its
/// transpose against the JVP (⟨w, J v⟩ = Σ⟨Jᵀw, v⟩) and against differences of ⟨w, f⟩.
pub fn check(
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
