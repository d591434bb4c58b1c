//! Accuracy of the JIT's polynomial `exp`, `log`, `tanh`, `sigmoid`, `softplus` and `pow`
//! against Rust's `f32`/`f64` functions, in units in the last place, over inputs spread evenly in
//! bit space (every exponent, both signs, subnormals) plus the special values, with and without
//! FMA (where the host has it): the bounds docs/JIT.md states, and zero results of the sign Rust
//! gives. Run with `--nocapture` to see the measured maxima.

use sgn::codegen::{JitOptions, compile_graph, host_has_fma};
use sgn::ir::{ArgRole, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp};

const OPS: [UnaryOp; 6] = [
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Softplus,
    UnaryOp::Erf,
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
        let y = g.apply(Op::pow(c), &[x]).unwrap();
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
        UnaryOp::Erf => libm::erf(x),
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

/// The worst error of one function over the inputs.
struct Measured {
    name: String,
    worst_ulps: f64,
    worst_x: f64,
    /// The first input where the result is a zero of the other sign than the reference's.
    zero_sign: Option<(f64, f64, f64)>,
}

fn measure(dtype: DType, fma: bool) -> Vec<Measured> {
    let g = graph(dtype);
    let options = JitOptions {
        fma,
        ..JitOptions::default().with_threads(1)
    };
    let jit = compile_graph(&g, &options).unwrap();
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
            let mut measured = Measured {
                name,
                worst_ulps: 0.0,
                worst_x: 0.0,
                zero_sign: None,
            };
            for (&x, &y) in xs.iter().zip(&got) {
                let expected = match dtype {
                    DType::F32 => f(x) as f32 as f64,
                    DType::F64 => f(x),
                };
                let e = ulps(y, expected, dtype);
                if e > measured.worst_ulps {
                    measured.worst_ulps = e;
                    measured.worst_x = x;
                }
                let zero_sign_differs = y == 0.0
                    && expected == 0.0
                    && y.is_sign_negative() != expected.is_sign_negative();
                if zero_sign_differs && measured.zero_sign.is_none() {
                    measured.zero_sign = Some((x, y, expected));
                }
            }
            println!(
                "{dtype} fma={fma} {:10} max error {} ulp (at x = {:e}){}",
                measured.name,
                measured.worst_ulps,
                measured.worst_x,
                measured
                    .zero_sign
                    .map_or(String::new(), |(x, y, e)| format!(
                        ", at x = {x:e}: {y:e} but Rust gives {e:e}"
                    ))
            );
            measured
        })
        .collect()
}

/// The bounds docs/JIT.md states (its "Accuracy" table), in ulps; f32 against correctly rounded
/// results, f64 against Rust's (libm's) functions.
fn documented_bound(dtype: DType, name: &str) -> f64 {
    match (dtype, name) {
        (_, "exp" | "log") => 1.0,
        (DType::F32, "tanh") => 1.0,
        (DType::F64, "tanh") => 2.0,
        (DType::F32, "sigmoid") => 2.0,
        (DType::F64, "sigmoid") => 3.0,
        (_, "softplus") => 2.0,
        (_, "erf") => 1.0,
        // exp(c·log x) loses about |c·log x| ulps (log x is only accurate to an ulp).
        (DType::F32, "pow 100" | "pow 1.5" | "pow -0.7") => 128.0,
        (DType::F64, "pow 100" | "pow 1.5" | "pow -0.7") => 1024.0,
        (_, n) if n.starts_with("pow") => 4.0,
        (_, n) => panic!("no documented bound for {n}"),
    }
}

#[test]
fn transcendentals_are_as_accurate_as_documented_with_and_without_fma() {
    let mut variants = vec![false];
    if host_has_fma() {
        variants.push(true);
    } else {
        println!("FMA: not run, this host does not have it");
    }
    let mut failures = Vec::new();
    for fma in variants {
        for dtype in [DType::F32, DType::F64] {
            for m in measure(dtype, fma) {
                let bound = documented_bound(dtype, &m.name);
                if m.worst_ulps > bound {
                    failures.push(format!(
                        "{dtype} fma={fma} {}: {} ulp at x = {:e} (documented: {bound})",
                        m.name, m.worst_ulps, m.worst_x
                    ));
                }
                if let Some((x, y, e)) = m.zero_sign {
                    failures.push(format!(
                        "{dtype} fma={fma} {}({x:e}) = {y:e}, but Rust gives {e:e}",
                        m.name
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The FMA option reaches the generated code: on a host with FMA, the approximations round
/// differently with and without it (both within the documented bounds, above).
#[test]
fn fma_on_and_off_compile_different_code() {
    if !host_has_fma() {
        println!("FMA: not run, this host does not have it");
        return;
    }
    for dtype in [DType::F32, DType::F64] {
        let xs = inputs(dtype, 1 << 12);
        let arg = Tensor::from_f64(dtype, &[xs.len()], xs).unwrap();
        let run = |fma: bool| -> Vec<Vec<u64>> {
            let options = JitOptions {
                fma,
                ..JitOptions::default().with_threads(1)
            };
            let jit = compile_graph(&graph(dtype), &options).unwrap();
            let outputs = jit.run(std::slice::from_ref(&arg)).unwrap();
            outputs
                .iter()
                .map(|t| t.to_f64_vec().iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        let (with, without) = (run(true), run(false));
        let differing: usize = with
            .iter()
            .zip(&without)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum();
        println!("{dtype}: {differing} results differ with and without FMA");
        assert!(differing > 0, "{dtype}: the FMA option changed nothing");
    }
}

/// `erf` against correctly rounded f32 values (libm's f64 erf, rounded) and libm's f64 erf, over
/// the spread inputs plus a dense sweep of [−6, 6]: in SIMD lanes, and in scalar code by reading
/// the input transposed (a strided access, which is not vectorized).
#[test]
fn erf_is_as_accurate_as_documented_in_simd_and_scalar_code() {
    let fma_settings = if host_has_fma() {
        vec![false, true]
    } else {
        vec![false]
    };
    for (dtype, fma) in [DType::F32, DType::F64]
        .into_iter()
        .flat_map(|d| fma_settings.iter().map(move |&f| (d, f)))
    {
        let mut xs = inputs(dtype, 1 << 20);
        xs.extend((0..1_200_001).map(|i| (i as f64 - 600_000.0) * 1e-5));
        xs.truncate(xs.len() / 2 * 2);
        let xs: Vec<f64> = xs
            .into_iter()
            .map(|x| match dtype {
                DType::F32 => x as f32 as f64,
                DType::F64 => x,
            })
            .collect();
        let rows = xs.len() / 2;
        let mut g = Graph::new("erf");
        let ty = TensorType::new(dtype, Shape(vec![Dim::sym("N"), Dim::fixed(2)]));
        let x = g.add_arg("x", ArgRole::Input, ty);
        let simd = g.unary(UnaryOp::Erf, x).unwrap();
        g.add_output("simd", simd);
        let xt = g.transpose(x, &[1, 0]).unwrap();
        let scalar = g.unary(UnaryOp::Erf, xt).unwrap();
        g.add_output("scalar", scalar);
        let options = JitOptions {
            fma,
            ..JitOptions::default().with_threads(1)
        };
        let jit = compile_graph(&g, &options).unwrap();
        let arg = Tensor::from_f64(dtype, &[rows, 2], xs.clone()).unwrap();
        let outputs = jit.run(&[arg]).unwrap();
        let simd = outputs[0].to_f64_vec();
        let transposed = outputs[1].to_f64_vec();
        let scalar: Vec<f64> = (0..xs.len())
            .map(|i| transposed[(i % 2) * rows + i / 2])
            .collect();
        for (code, got) in [("SIMD", &simd), ("scalar", &scalar)] {
            let (mut worst, mut worst_x) = (0.0f64, 0.0);
            for (&x, &y) in xs.iter().zip(got) {
                let expected = match dtype {
                    DType::F32 => libm::erf(x) as f32 as f64,
                    DType::F64 => libm::erf(x),
                };
                let e = ulps(y, expected, dtype);
                if e > worst {
                    worst = e;
                    worst_x = x;
                }
            }
            println!("{dtype} fma={fma} erf ({code}) max error {worst} ulp (at x = {worst_x:e})");
            let bound = documented_bound(dtype, "erf");
            assert!(
                worst <= bound,
                "{dtype} fma={fma} erf ({code}): {worst} ulp at x = {worst_x:e} (documented: {bound})"
            );
        }
    }
}
