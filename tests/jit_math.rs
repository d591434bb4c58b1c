//! Accuracy of the JIT's polynomial `exp`, `log`, `tanh`, `sigmoid`, `softplus` and `pow`
//! against Rust's `f32`/`f64` functions, in units in the last place, over inputs spread evenly in
//! bit space (every exponent, both signs, subnormals) plus the special values. Run with
//! `--nocapture` to see the measured maxima.

use sgn::codegen::{JitOptions, compile_graph};
use sgn::ir::op::F64Bits;
use sgn::ir::{ArgRole, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp};

const OPS: [UnaryOp; 5] = [
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Softplus,
];

/// Integer powers go by repeated squaring, ½ by `sqrt`, the rest through `exp(c·log x)`.
const POWERS: [f64; 6] = [2.0, -3.0, 0.5, 1.5, -0.7, 100.0];

/// x ↦ (op(x) for each op, then x^c for each power), elementwise over x: dtype[N].
fn graph(dtype: DType) -> Graph {
    let mut g = Graph::new("math");
    let ty = TensorType::new(dtype, Shape(vec![Dim::sym("N")]));
    let x = g.add_arg("x", ArgRole::Input, ty);
    for op in OPS {
        let y = g.unary(op, x).unwrap();
        g.add_output(op.name(), y);
    }
    for c in POWERS {
        let y = g.apply(Op::Pow(F64Bits::new(c)), &[x]).unwrap();
        g.add_output(format!("pow {c}"), y);
    }
    g
}

/// The reference value in f64 (rounded to f32 afterwards for f32).
fn reference(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                x.exp() / (1.0 + x.exp())
            }
        }
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        _ => unreachable!("only the approximated ops"),
    }
}

/// Distance in units in the last place between two floats of one type given as ordered bit
/// patterns; 0 for two NaNs, infinite if only one is NaN.
fn ulps(a: f64, b: f64, dtype: DType) -> f64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if a == b {
        return 0.0;
    }
    let ordered = |x: f64| -> i128 {
        let bits = match dtype {
            DType::F32 => (x as f32).to_bits() as i128,
            DType::F64 => x.to_bits() as i128,
        };
        let sign = match dtype {
            DType::F32 => 1i128 << 31,
            DType::F64 => 1i128 << 63,
        };
        if bits & sign != 0 {
            -(bits & (sign - 1))
        } else {
            bits
        }
    };
    (ordered(a) - ordered(b)).abs() as f64
}

/// Inputs spread evenly over all bit patterns (both signs), plus special values.
fn inputs(dtype: DType, count: u64) -> Vec<f64> {
    let mut xs: Vec<f64> = match dtype {
        DType::F32 => (0..count)
            .map(|i| f32::from_bits((i * (u32::MAX as u64 / count)) as u32) as f64)
            .collect(),
        DType::F64 => (0..count)
            .map(|i| f64::from_bits(i * (u64::MAX / count)))
            .collect(),
    };
    let (tiny, max) = match dtype {
        DType::F32 => (f32::from_bits(1) as f64, f32::MAX as f64),
        DType::F64 => (f64::from_bits(1), f64::MAX),
    };
    xs.extend([
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        1e-8,
        -1e-8,
        tiny,
        -tiny,
        max,
        -max,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        88.7,
        89.0,
        -87.3,
        -103.9,
        709.7,
        -745.1,
        9.0,
        -9.0,
        19.0,
        20.0,
    ]);
    // A dense sweep of the range where these functions are interesting.
    xs.extend((0..20_001).map(|i| (i as f64 - 10_000.0) * 0.01));
    xs.into_iter()
        .map(|x| match dtype {
            DType::F32 => x as f32 as f64,
            DType::F64 => x,
        })
        .collect()
}

fn measure(dtype: DType) -> Vec<(String, f64, f64)> {
    let g = graph(dtype);
    let jit = compile_graph(&g, &JitOptions::default().with_threads(1)).unwrap();
    let xs = inputs(dtype, 1 << 20);
    let n = xs.len();
    let arg = Tensor::from_f64(dtype, &[n], xs.clone()).unwrap();
    let outputs = jit.run(&[arg]).unwrap();
    let functions = OPS
        .iter()
        .map(|&op| {
            (
                op.name().to_string(),
                Box::new(move |x: f64| reference(op, x)) as Box<dyn Fn(f64) -> f64>,
            )
        })
        .chain(POWERS.iter().map(|&c| {
            (
                format!("pow {c}"),
                Box::new(move |x: f64| x.powf(c)) as Box<dyn Fn(f64) -> f64>,
            )
        }));
    functions
        .zip(&outputs)
        .map(|((name, f), out)| {
            let got = out.to_f64_vec();
            let (mut worst, mut worst_x) = (0.0f64, 0.0);
            for (&x, &y) in xs.iter().zip(&got) {
                let expected = match dtype {
                    DType::F32 => f(x) as f32 as f64,
                    DType::F64 => f(x),
                };
                let e = ulps(y, expected, dtype);
                if e > worst {
                    worst = e;
                    worst_x = x;
                }
            }
            println!("{dtype} {name:10} max error {worst} ulp (at x = {worst_x:e})");
            (name, worst, worst_x)
        })
        .collect()
}

#[test]
fn transcendentals_are_accurate_to_a_few_ulps_everywhere() {
    for dtype in [DType::F32, DType::F64] {
        for (name, worst, x) in measure(dtype) {
            // f32 references are correctly rounded (computed in f64); f64 references are libm's
            // (about 1 ulp).
            let bound = match (dtype, name.as_str()) {
                // exp(c·log x) loses about |c·log x| ulps (log x is only accurate to an ulp).
                (DType::F32, "pow 100" | "pow 1.5" | "pow -0.7") => 128.0,
                (DType::F64, "pow 100" | "pow 1.5" | "pow -0.7") => 1024.0,
                (_, n) if n.starts_with("pow") => 8.0,
                (DType::F32, _) => 2.0,
                (DType::F64, _) => 3.0,
            };
            assert!(
                worst <= bound,
                "{dtype} {name}: {worst} ulp at x = {x:e} (bound {bound})"
            );
        }
    }
}
