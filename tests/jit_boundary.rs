//! The JIT's boundary: arguments and outputs that do not fit are clear errors (never a crash),
//! and the corner cases of sizes (empty batches, empty reductions, broadcasting scalars and
//! size-1 axes) behave like the interpreter.

use crate::common;

use common::{RELATIVE_FLOOR, assert_close};
use sgn::codegen::{BackendKind, JitOptions, compile_backend, compile_graph};
use sgn::ir::tensor::Floor;
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp, interp,
};

fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(dims))
}

/// y = tanh(x @ w + b) summed over the batch; x: [B, 3], w: [3, 2], b: [2].
fn dense() -> Graph {
    let mut g = Graph::new("dense");
    let b_sym = Dim::sym("B");
    let x = g.add_arg(
        "x",
        ArgRole::Input,
        ty(DType::F32, vec![b_sym.clone(), Dim::fixed(3)]),
    );
    let w = g.add_arg(
        "w",
        ArgRole::Param,
        ty(DType::F32, vec![Dim::fixed(3), Dim::fixed(2)]),
    );
    let b = g.add_arg("b", ArgRole::Param, ty(DType::F32, vec![Dim::fixed(2)]));
    let xw = g.matmul(x, w).unwrap();
    let bb = g.broadcast(b, &Shape(vec![b_sym, Dim::fixed(2)])).unwrap();
    let a = g.binary(BinaryOp::Add, xw, bb).unwrap();
    let h = g.unary(UnaryOp::Tanh, a).unwrap();
    let total = g.sum(h, &[0]).unwrap();
    g.add_output("h", h);
    g.add_output("total", total);
    g
}

/// Values in [0.5, 1.5] (positive, so sums do not cancel).
fn filled(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let values = (0..n)
        .map(|i| 1.0 + 0.5 * (i as f64 * 0.37).sin())
        .collect();
    Tensor::from_f64(dtype, shape, values).unwrap()
}

fn dense_args(rows: usize) -> Vec<Tensor> {
    vec![
        filled(DType::F32, &[rows, 3]),
        filled(DType::F32, &[3, 2]),
        filled(DType::F32, &[2]),
    ]
}

fn error_of(result: Result<Vec<Tensor>, sgn::codegen::Error>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_arguments_are_clear_errors() {
    let jit = compile_graph(&dense(), &JitOptions::default().with_threads(2)).unwrap();
    let mut args = dense_args(4);
    args.pop();
    assert!(error_of(jit.run(&args)).contains("takes 3 argument(s)"));

    let mut args = dense_args(4);
    args[1] = filled(DType::F32, &[3, 3]);
    let msg = error_of(jit.run(&args));
    assert!(
        msg.contains("argument 'w'") && msg.contains("[3, 3]"),
        "{msg}"
    );

    let mut args = dense_args(4);
    args[0] = filled(DType::F32, &[4, 3, 1]);
    assert!(error_of(jit.run(&args)).contains("rank"));

    let mut args = dense_args(4);
    args[2] = filled(DType::F64, &[2]);
    assert!(error_of(jit.run(&args)).contains("dtype"));
}

#[test]
fn wrong_output_tensors_are_clear_errors() {
    let jit = compile_graph(&dense(), &JitOptions::default()).unwrap();
    let args = dense_args(5);
    let mut outputs = vec![Tensor::zeros(DType::F32, &[5, 2])];
    let msg = jit.run_into(&args, &mut outputs).unwrap_err().to_string();
    assert!(msg.contains("2 output(s)"), "{msg}");

    let mut outputs = vec![
        Tensor::zeros(DType::F32, &[4, 2]),
        Tensor::zeros(DType::F32, &[2]),
    ];
    let msg = jit.run_into(&args, &mut outputs).unwrap_err().to_string();
    assert!(
        msg.contains("output 'h'") && msg.contains("[4, 2]"),
        "{msg}"
    );

    let mut outputs = vec![
        Tensor::zeros(DType::F32, &[5, 2]),
        Tensor::zeros(DType::F64, &[2]),
    ];
    let msg = jit.run_into(&args, &mut outputs).unwrap_err().to_string();
    assert!(msg.contains("output 'total'"), "{msg}");

    // A transposed view is not row-major.
    let Tensor::F32(h) = Tensor::zeros(DType::F32, &[2, 5]) else {
        unreachable!()
    };
    let mut outputs = vec![
        Tensor::F32(h.reversed_axes()),
        Tensor::zeros(DType::F32, &[2]),
    ];
    let msg = jit.run_into(&args, &mut outputs).unwrap_err().to_string();
    assert!(msg.contains("standard"), "{msg}");
}

#[test]
fn every_backend_agrees_and_non_standard_arguments_are_accepted() {
    let g = dense();
    let mut args = dense_args(9);
    // A column-major copy of x: same values, other layout.
    let Tensor::F32(x) = &args[0] else {
        unreachable!()
    };
    let mut xt = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[3, 9]));
    xt.assign(&x.t());
    args[0] = Tensor::F32(xt.reversed_axes());
    let expected = interp::run(&g, &args).unwrap();
    for kind in [BackendKind::Interpreter, BackendKind::Jit] {
        let backend = compile_backend(&g, kind, &JitOptions::default()).unwrap();
        let got = backend.run(&args).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert_close(backend.name(), a, b, Floor::Absolute(0.0), 1e-6);
        }
        let mut outputs = vec![
            Tensor::zeros(DType::F32, &[9, 2]),
            Tensor::zeros(DType::F32, &[2]),
        ];
        backend.run_into(&args, &mut outputs).unwrap();
        assert_eq!(outputs, got);
    }
}

#[test]
fn a_long_elementwise_chain_is_cut_into_kernels_and_agrees_with_the_interpreter() {
    // 315 unary ops on one value: fused whole, this was one kernel whose register allocation
    // took seconds; cut, it is five (each a load and 63 ops, the last one full). Then six
    // siblings of the chain's end share one new kernel, not one each.
    const LENGTH: usize = 315;
    let mut g = Graph::new("chain");
    let rows = Dim::sym("B");
    let x = g.add_arg(
        "x",
        ArgRole::Input,
        ty(DType::F32, vec![rows, Dim::fixed(5)]),
    );
    let mut h = x;
    for i in 0..LENGTH {
        let op = [UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Erf][i % 3];
        h = g.unary(op, h).unwrap();
    }
    let siblings = [
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Erf,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Softplus,
    ];
    let mut joined = g.unary(siblings[0], h).unwrap();
    for op in &siblings[1..] {
        let sibling = g.unary(*op, h).unwrap();
        joined = g.binary(BinaryOp::Add, joined, sibling).unwrap();
    }
    let total = g.sum(joined, &[0, 1]).unwrap();
    g.add_output("h", h);
    g.add_output("joined", joined);
    g.add_output("total", total);
    let jit = compile_graph(&g, &JitOptions::default().with_threads(2)).unwrap();
    let schedule = jit.schedule_text();
    let kernels = schedule.matches(": kernel [").count();
    let most = sgn::codegen::MAX_FUSED_EXPRS;
    assert!(
        (LENGTH.div_ceil(most)..=LENGTH.div_ceil(most - 1) + 2).contains(&kernels),
        "{kernels} kernels:\n{schedule}"
    );
    let args = [filled(DType::F32, &[37, 5])];
    let expected = interp::run(&g, &args).unwrap();
    for (got, want) in jit.run(&args).unwrap().iter().zip(&expected) {
        assert_close("chain", got, want, Floor::Absolute(1e-6), 1e-5);
    }
}

#[test]
fn an_empty_batch_gives_empty_and_zero_results() {
    let jit = compile_graph(&dense(), &JitOptions::default().with_threads(2)).unwrap();
    let out = jit.run(&dense_args(0)).unwrap();
    assert_eq!(out[0].shape(), &[0, 2]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 0.0]);
}

#[test]
fn reduce_max_over_an_empty_axis_is_an_error_like_the_interpreter() {
    let mut g = Graph::new("max");
    let x = g.add_arg(
        "x",
        ArgRole::Input,
        ty(DType::F64, vec![Dim::fixed(2), Dim::sym("B")]),
    );
    let m = g.apply(Op::reduce_max(vec![1]), &[x]).unwrap();
    g.add_output("m", m);
    let jit = compile_graph(&g, &JitOptions::default()).unwrap();
    let args = vec![filled(DType::F64, &[2, 0])];
    let expected = interp::run(&g, &args).unwrap_err().to_string();
    let got = jit.run(&args).unwrap_err().to_string();
    assert!(expected.contains("empty") && got.contains("empty"), "{got}");
    let args = vec![filled(DType::F64, &[2, 3])];
    assert_eq!(jit.run(&args).unwrap(), interp::run(&g, &args).unwrap());
}

#[test]
fn broadcasting_corner_cases_match_the_interpreter() {
    // (operand shape, target shape)
    let cases: Vec<(Vec<Dim>, Vec<Dim>)> = vec![
        (vec![], vec![Dim::sym("B"), Dim::fixed(5)]),
        (vec![Dim::fixed(1)], vec![Dim::sym("B")]),
        (
            vec![Dim::fixed(3), Dim::fixed(1)],
            vec![Dim::fixed(2), Dim::fixed(3), Dim::sym("B")],
        ),
        (
            vec![Dim::fixed(1), Dim::sym("B")],
            vec![Dim::fixed(7), Dim::sym("B")],
        ),
        (
            vec![Dim::sym("B"), Dim::fixed(1), Dim::fixed(1)],
            vec![Dim::sym("B"), Dim::fixed(3), Dim::fixed(5)],
        ),
    ];
    for (from, to) in cases {
        for dtype in [DType::F32, DType::F64] {
            let mut g = Graph::new("bcast");
            // `z` fixes B; `x` is broadcast against it.
            let z = g.add_arg("z", ArgRole::Input, ty(dtype, to.clone()));
            let x = g.add_arg("x", ArgRole::Input, ty(dtype, from.clone()));
            let xb = g.broadcast(x, &Shape(to.clone())).unwrap();
            let e = g.unary(UnaryOp::Exp, xb).unwrap();
            let p = g.binary(BinaryOp::Mul, e, z).unwrap();
            let axes: Vec<usize> = (0..to.len()).collect();
            let s = g.sum(p, &axes).unwrap();
            g.add_output("p", p);
            g.add_output("s", s);
            let jit = compile_graph(&g, &JitOptions::default()).unwrap();
            for batch in [1, 2, 5, 13] {
                let bindings = [("B".into(), batch)].into();
                let zs = Shape(to.clone()).eval(&bindings).unwrap();
                let xs = Shape(from.clone()).eval(&bindings).unwrap();
                let args = vec![filled(dtype, &zs), filled(dtype, &xs)];
                let expected = interp::run(&g, &args).unwrap();
                let got = jit.run(&args).unwrap();
                for (a, b) in got.iter().zip(&expected) {
                    let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
                    assert_close(
                        &format!("{from:?} → {to:?}, B = {batch}"),
                        a,
                        b,
                        RELATIVE_FLOOR,
                        tolerance,
                    );
                }
            }
        }
    }
}

#[test]
fn graphs_mixing_element_types_are_rejected() {
    let mut g = Graph::new("mixed");
    let x = g.add_arg("x", ArgRole::Input, ty(DType::F32, vec![Dim::fixed(2)]));
    let y = g.add_arg("y", ArgRole::Input, ty(DType::F64, vec![Dim::fixed(2)]));
    g.add_output("x", x);
    g.add_output("y", y);
    let msg = compile_graph(&g, &JitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("mixes f32 and f64"), "{msg}");
}

/// Reductions over every outer axis of a short inner one (bias gradients: `[B, 20]` summed over
/// `B`) run in registers carried across the rows when the inner axis is straight-line code, in
/// memory otherwise, and past 8 registers some in each: for row widths around the vector width
/// and the straight-line limit, batches 1 to 1000 (fewer rows than parts included), ranks 2 and
/// 3, sums and maxima, with and without a row sum in the same kernel (which unrolls a wide
/// row), and more reductions than registers, the JIT gives the same bits on 1, 2 and 3 threads
/// and the interpreter's values.
#[test]
fn column_reductions_agree_across_threads_and_with_the_interpreter() {
    for dtype in [DType::F32, DType::F64] {
        for n in [1usize, 2, 3, 5, 9, 10, 16, 17, 20, 32, 33] {
            for (outer, with_rows) in [(vec![], false), (vec![], true), (vec![2usize], false)] {
                let mut g = Graph::new("columns");
                let mut dims = vec![Dim::sym("B")];
                dims.extend(outer.iter().map(|&d| Dim::fixed(d as u64)));
                dims.push(Dim::fixed(n as u64));
                let x = g.add_arg("x", ArgRole::Input, ty(dtype, dims));
                let h = g.unary(UnaryOp::Tanh, x).unwrap();
                let rank = outer.len() + 2;
                let outer_axes: Vec<usize> = (0..rank - 1).collect();
                let sum = g.sum(h, &outer_axes).unwrap();
                let max = g.apply(Op::reduce_max(outer_axes.clone()), &[h]).unwrap();
                g.add_output("sum", sum);
                g.add_output("max", max);
                if with_rows {
                    let rows = g.sum(h, &[rank - 1]).unwrap();
                    g.add_output("rows", rows);
                }
                // Nine more sums of scaled copies: more reductions than carried registers.
                for k in 0..9 {
                    let h_ty = g.ty(h).clone();
                    let scale = g.full(k as f64 + 2.0, &h_ty).unwrap();
                    let scaled = g.binary(BinaryOp::Mul, h, scale).unwrap();
                    let total = g.sum(scaled, &outer_axes).unwrap();
                    g.add_output(format!("sum{k}"), total);
                }
                for batch in [1, 3, 9, 1000] {
                    let mut shape = vec![batch];
                    shape.extend(&outer);
                    shape.push(n);
                    let args = vec![filled(dtype, &shape)];
                    let expected = interp::run(&g, &args).unwrap();
                    let what =
                        format!("{dtype} n {n} outer {outer:?} rows {with_rows} batch {batch}");
                    let mut first: Option<Vec<Tensor>> = None;
                    for threads in [1, 2, 3] {
                        let options = JitOptions::default().with_threads(threads);
                        let got = compile_graph(&g, &options).unwrap().run(&args).unwrap();
                        for (a, b) in got.iter().zip(&expected) {
                            assert_close(&what, a, b, Floor::Absolute(0.0), 1e-5);
                        }
                        match &first {
                            Some(one) => assert_eq!(&got, one, "{what}: {threads} threads"),
                            None => first = Some(got),
                        }
                    }
                }
            }
        }
    }
}
