//! The reference interpreter against hand-computed values, op by op (f64), plus its argument
//! checks and a full-size MNIST net.

use crate::common;

use common::{RELATIVE_FLOOR, assert_close};
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sgn::ir::Error;
use sgn::ir::interp::{bind_dims, run};
use sgn::ir::tensor::Floor;
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, ShapeError, Tensor, TensorType,
    UnaryOp,
};
use std::f64::consts::{FRAC_1_SQRT_2, LN_2, SQRT_2};

fn f64_type(dims: Vec<Dim>) -> TensorType {
    TensorType::new(DType::F64, Shape(dims))
}

fn fixed(dims: &[u64]) -> TensorType {
    TensorType::new(DType::F64, Shape::fixed(dims))
}

fn batch_by(n: u64) -> TensorType {
    f64_type(vec![Dim::sym("B"), Dim::fixed(n)])
}

fn tensor(shape: &[usize], values: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F64, shape, values.to_vec()).expect("values fill the shape")
}

/// Asserts shape and values, to 1e-12 relative; NaN matches NaN and infinities match exactly.
fn assert_values(actual: &Tensor, shape: &[usize], expected: &[f64]) {
    assert_eq!(actual.dtype(), DType::F64);
    assert_eq!(actual.shape(), shape, "shape");
    let values = actual.to_f64_vec();
    for (i, (&a, &e)) in values.iter().zip(expected).enumerate() {
        let close = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= 1e-12 * e.abs();
        assert!(
            close,
            "element {i}: got {a}, expected {e} (all: {values:?})"
        );
    }
    assert_eq!(values.len(), expected.len(), "number of elements");
}

/// Evaluates `build(graph, x)` for one f64 argument `x` of the given shape and values.
fn eval_on(
    shape: &[usize],
    values: &[f64],
    build: impl FnOnce(&mut Graph, NodeId) -> Result<NodeId, ShapeError>,
) -> Tensor {
    let mut g = Graph::new("test");
    let dims: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let x = g.add_arg("x", ArgRole::Input, fixed(&dims));
    let out = build(&mut g, x).expect("the test graph is well-typed");
    g.add_output("out", out);
    let mut outputs = run(&g, &[tensor(shape, values)]).expect("the graph runs");
    assert_eq!(outputs.len(), 1);
    outputs.remove(0)
}

/// Evaluates `a op b` elementwise for two f64 vectors.
fn eval_binary(op: BinaryOp, a: &[f64], b: &[f64]) -> Tensor {
    let mut g = Graph::new("binary");
    let n = a.len() as u64;
    let x = g.add_arg("a", ArgRole::Input, fixed(&[n]));
    let y = g.add_arg("b", ArgRole::Input, fixed(&[n]));
    let out = g.binary(op, x, y).expect("operands of one shape");
    g.add_output("out", out);
    let mut outputs = run(&g, &[tensor(&[a.len()], a), tensor(&[b.len()], b)]).expect("runs");
    outputs.remove(0)
}

const UNARY_INPUT: [f64; 5] = [-2.0, -0.5, 0.0, 0.5, 3.0];

/// Hand-computed values of each unary op on [`UNARY_INPUT`].
fn unary_expected(op: UnaryOp) -> [f64; 5] {
    let nan = f64::NAN;
    match op {
        UnaryOp::Neg => [2.0, 0.5, 0.0, -0.5, -3.0],
        UnaryOp::Exp => [
            0.1353352832366127,
            0.6065306597126334,
            1.0,
            1.6487212707001282,
            20.085536923187668,
        ],
        UnaryOp::Log => [nan, nan, f64::NEG_INFINITY, -LN_2, 1.0986122886681098],
        UnaryOp::Tanh => [
            -0.9640275800758169,
            -0.46211715726000974,
            0.0,
            0.46211715726000974,
            0.9950547536867305,
        ],
        UnaryOp::Sigmoid => [
            0.11920292202211755,
            0.3775406687981454,
            0.5,
            0.6224593312018546,
            0.9525741268224334,
        ],
        UnaryOp::Relu => [0.0, 0.0, 0.0, 0.5, 3.0],
        UnaryOp::Softplus => [
            0.1269280110429725,
            0.4740769841801067,
            LN_2,
            0.9740769841801067,
            3.048587351573742,
        ],
        UnaryOp::Sqrt => [nan, nan, 0.0, FRAC_1_SQRT_2, 1.7320508075688772],
        UnaryOp::Abs => [2.0, 0.5, 0.0, 0.5, 3.0],
        UnaryOp::Sign => [-1.0, -1.0, 0.0, 1.0, 1.0],
        UnaryOp::Step => [0.0, 0.0, 0.0, 1.0, 1.0],
        UnaryOp::Recip => [-0.5, -2.0, f64::INFINITY, 2.0, 1.0 / 3.0],
        // mpmath.erf at 40 digits.
        UnaryOp::Erf => [
            -0.9953222650189527,
            -0.5204998778130465,
            0.0,
            0.5204998778130465,
            0.9999779095030014,
        ],
    }
}

#[test]
fn every_unary_op_matches_hand_computed_values() {
    for op in UnaryOp::ALL {
        let out = eval_on(&[5], &UNARY_INPUT, |g, x| g.unary(op, x));
        println!("{}", op.name());
        assert_values(&out, &[5], &unary_expected(op));
    }
}

#[test]
fn softplus_and_sigmoid_are_stable_at_large_magnitudes() {
    let input = [-1000.0, -30.0, 30.0, 1000.0];
    let softplus = eval_on(&[4], &input, |g, x| g.unary(UnaryOp::Softplus, x));
    // softplus(-30) = log1p(e^-30) = e^-30 - e^-60/2; a naive log(1 + e^-30) loses digits.
    assert_values(
        &softplus,
        &[4],
        &[0.0, 9.357622968839737e-14, 30.000000000000092, 1000.0],
    );
    let sigmoid = eval_on(&[4], &input, |g, x| g.unary(UnaryOp::Sigmoid, x));
    assert_values(
        &sigmoid,
        &[4],
        &[0.0, 9.357622968839299e-14, 0.9999999999999065, 1.0],
    );
}

#[test]
fn pow_raises_to_a_constant() {
    let cube = eval_on(&[3], &[-2.0, 0.5, 3.0], |g, x| g.apply(Op::pow(3.0), &[x]));
    assert_values(&cube, &[3], &[-8.0, 0.125, 27.0]);
    let root = eval_on(&[3], &[4.0, 2.0, 9.0], |g, x| g.apply(Op::pow(0.5), &[x]));
    assert_values(&root, &[3], &[2.0, SQRT_2, 3.0]);
}

#[test]
fn every_binary_op_matches_hand_computed_values() {
    let a = [1.0, -2.0, 3.5, 0.0];
    let b = [4.0, 5.0, -0.5, 2.0];
    for op in BinaryOp::ALL {
        let expected = match op {
            BinaryOp::Add => [5.0, 3.0, 3.0, 2.0],
            BinaryOp::Sub => [-3.0, -7.0, 4.0, -2.0],
            BinaryOp::Mul => [4.0, -10.0, -1.75, 0.0],
            BinaryOp::Div => [0.25, -0.4, -7.0, 0.0],
            BinaryOp::Max => [4.0, 5.0, 3.5, 2.0],
            BinaryOp::Min => [1.0, -2.0, -0.5, 0.0],
        };
        println!("{}", op.name());
        assert_values(&eval_binary(op, &a, &b), &[4], &expected);
    }
}

#[test]
fn max_min_and_sign_propagate_nan() {
    let nan = f64::NAN;
    let a = [nan, 1.0, nan];
    let b = [1.0, nan, nan];
    assert_values(&eval_binary(BinaryOp::Max, &a, &b), &[3], &[nan, nan, nan]);
    assert_values(&eval_binary(BinaryOp::Min, &a, &b), &[3], &[nan, nan, nan]);
    let sign = eval_on(&[3], &[nan, -0.0, 0.0], |g, x| g.unary(UnaryOp::Sign, x));
    assert_values(&sign, &[3], &[nan, 0.0, 0.0]);
    let max = eval_on(&[3], &[1.0, nan, 2.0], |g, x| {
        g.apply(Op::reduce_max(vec![0]), &[x])
    });
    assert_values(&max, &[], &[nan]);
}

#[test]
fn const_is_a_scalar_of_the_node_dtype() {
    let mut g = Graph::new("consts");
    let c64 = g.constant(2.5, DType::F64);
    let c32 = g.constant(0.1, DType::F32);
    g.add_output("c64", c64);
    g.add_output("c32", c32);
    let out = run(&g, &[]).expect("no arguments needed");
    assert_values(&out[0], &[], &[2.5]);
    assert_eq!(out[1], Tensor::F32(ndarray::arr0(0.1f32).into_dyn()));
}

#[test]
fn dim_size_reads_the_batch_bound_from_an_input() {
    let mut g = Graph::new("mean");
    let x = g.add_arg("x", ArgRole::Input, batch_by(2));
    let b = Dim::sym("B");
    let batch = g.dim_size(&b, DType::F64);
    let three_batches = g.dim_size(&b.mul(&Dim::fixed(3)), DType::F64);
    let total = g.sum(x, &[0]).unwrap();
    let count = g.broadcast(batch, &Shape::fixed(&[2])).unwrap();
    let mean = g.binary(BinaryOp::Div, total, count).unwrap();
    g.add_output("batch", batch);
    g.add_output("three_batches", three_batches);
    g.add_output("mean", mean);
    let x_value = tensor(&[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 9.0]);
    let out = run(&g, &[x_value]).unwrap();
    assert_values(&out[0], &[], &[4.0]);
    assert_values(&out[1], &[], &[12.0]);
    assert_values(&out[2], &[2], &[4.0, 5.25]);
}

#[test]
fn dim_size_of_an_unbound_symbol_is_an_error_only_when_needed() {
    let mut g = Graph::new("unbound");
    let x = g.add_arg("x", ArgRole::Input, batch_by(1));
    let steps = g.dim_size(&Dim::sym("T"), DType::F64);
    g.add_output("x", x);
    // `steps` is dead: the graph runs.
    let x_value = tensor(&[2, 1], &[1.0, 2.0]);
    let out = run(&g, std::slice::from_ref(&x_value)).unwrap();
    assert_values(&out[0], &[2, 1], &[1.0, 2.0]);

    g.add_output("steps", steps);
    let err = run(&g, &[x_value]).unwrap_err();
    assert!(matches!(err, Error::Eval(_)), "{err:?}");
    assert!(err.to_string().contains("symbol T"), "{err}");
}

#[test]
fn broadcast_follows_numpy_broadcast_to() {
    let row = eval_on(&[3], &[1.0, 2.0, 3.0], |g, x| {
        g.broadcast(x, &Shape::fixed(&[2, 3]))
    });
    assert_values(&row, &[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let column = eval_on(&[2, 1], &[1.0, 2.0], |g, x| {
        g.broadcast(x, &Shape::fixed(&[2, 3]))
    });
    assert_values(&column, &[2, 3], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    let scalar = eval_on(&[], &[7.0], |g, x| g.broadcast(x, &Shape::fixed(&[2, 2])));
    assert_values(&scalar, &[2, 2], &[7.0; 4]);
}

#[test]
fn broadcast_to_a_symbolic_shape_uses_the_bindings() {
    let mut g = Graph::new("bias");
    let x = g.add_arg("x", ArgRole::Input, batch_by(2));
    let bias = g.add_arg("b", ArgRole::Param, fixed(&[2]));
    let wide = g.broadcast(bias, &batch_by(2).shape).unwrap();
    let out = g.binary(BinaryOp::Add, x, wide).unwrap();
    g.add_output("out", out);
    let args = [
        tensor(&[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
        tensor(&[2], &[10.0, 20.0]),
    ];
    let out = run(&g, &args).unwrap();
    assert_values(&out[0], &[3, 2], &[10.0, 21.0, 12.0, 23.0, 14.0, 25.0]);
}

/// x[i, j, k] = 6i + 2j + k + 1 for shape [2, 3, 2].
const ONE_TO_TWELVE: [f64; 12] = [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.];

#[test]
fn sum_over_one_several_and_all_axes() {
    let one = eval_on(&[2, 3, 2], &ONE_TO_TWELVE, |g, x| g.sum(x, &[1]));
    assert_values(&one, &[2, 2], &[9.0, 12.0, 27.0, 30.0]);
    let several = eval_on(&[2, 3, 2], &ONE_TO_TWELVE, |g, x| g.sum(x, &[2, 0]));
    assert_values(&several, &[3], &[18.0, 26.0, 34.0]);
    let all = eval_on(&[2, 3, 2], &ONE_TO_TWELVE, |g, x| g.sum(x, &[0, 1, 2]));
    assert_values(&all, &[], &[78.0]);
}

#[test]
fn reduce_max_over_axes() {
    let x = [1.0, 5.0, -2.0, 4.0, -1.0, 3.0];
    let reduce_max = |axes: Vec<usize>| move |g: &mut Graph, x| g.apply(Op::reduce_max(axes), &[x]);
    assert_values(
        &eval_on(&[2, 3], &x, reduce_max(vec![1])),
        &[2],
        &[5.0, 4.0],
    );
    assert_values(
        &eval_on(&[2, 3], &x, reduce_max(vec![0])),
        &[3],
        &[4.0, 5.0, 3.0],
    );
    assert_values(&eval_on(&[2, 3], &x, reduce_max(vec![0, 1])), &[], &[5.0]);
}

#[test]
fn reduce_max_over_an_empty_axis_is_an_error() {
    let mut g = Graph::new("empty");
    let x = g.add_arg("x", ArgRole::Input, fixed(&[2, 0]));
    let max = g.apply(Op::reduce_max(vec![1]), &[x]).unwrap();
    g.add_output("max", max);
    let err = run(&g, &[Tensor::zeros(DType::F64, &[2, 0])]).unwrap_err();
    assert!(matches!(err, Error::Eval(_)), "{err:?}");
    assert!(err.to_string().contains("axis 1 is empty"), "{err}");
}

#[test]
fn reshape_is_row_major() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let out = eval_on(&[2, 3], &x, |g, x| g.reshape(x, &Shape::fixed(&[3, 2])));
    assert_values(&out, &[3, 2], &x);
    let flat = eval_on(&[2, 3], &x, |g, x| g.reshape(x, &Shape::fixed(&[6])));
    assert_values(&flat, &[6], &x);
    // Reshaping a transpose reads the transposed (logical) order, not memory order.
    let transposed_flat = eval_on(&[2, 3], &x, |g, x| {
        let t = g.transpose(x, &[1, 0])?;
        g.reshape(t, &Shape::fixed(&[6]))
    });
    assert_values(&transposed_flat, &[6], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn arguments_in_any_memory_layout_give_row_major_results() {
    let mut g = Graph::new("layout");
    let x = g.add_arg("x", ArgRole::Input, fixed(&[3, 2]));
    let flat = g.reshape(x, &Shape::fixed(&[6])).unwrap();
    g.add_output("flat", flat);
    g.add_output("x", x);
    // A column-major [3, 2] array: logically [[1, 4], [2, 5], [3, 6]].
    let column_major = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap()
        .reversed_axes();
    let out = run(&g, &[Tensor::F64(column_major)]).unwrap();
    assert_values(&out[0], &[6], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_values(&out[1], &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    for t in &out {
        let Tensor::F64(a) = t else {
            panic!("f64 graph")
        };
        assert!(a.is_standard_layout());
    }
}

#[test]
fn transpose_of_rank_three() {
    let x: Vec<f64> = (0..24).map(f64::from).collect();
    let out = eval_on(&[2, 3, 4], &x, |g, x| g.transpose(x, &[2, 0, 1]));
    // out[i, j, k] = x[j, k, i] = 12j + 4k + i
    let expected = [
        0., 4., 8., 12., 16., 20., 1., 5., 9., 13., 17., 21., 2., 6., 10., 14., 18., 22., 3., 7.,
        11., 15., 19., 23.,
    ];
    assert_values(&out, &[4, 2, 3], &expected);
}

#[test]
fn concat_of_three_operands() {
    let mut g = Graph::new("concat");
    let a = g.add_arg("a", ArgRole::Input, fixed(&[2, 1]));
    let b = g.add_arg("b", ArgRole::Input, fixed(&[2, 2]));
    let c = g.add_arg("c", ArgRole::Input, fixed(&[2, 1]));
    let columns = g.apply(Op::concat(1), &[a, b, c]).unwrap();
    let rows = g.apply(Op::concat(0), &[b, b, b]).unwrap();
    g.add_output("columns", columns);
    g.add_output("rows", rows);
    let args = [
        tensor(&[2, 1], &[1.0, 2.0]),
        tensor(&[2, 2], &[3.0, 4.0, 5.0, 6.0]),
        tensor(&[2, 1], &[7.0, 8.0]),
    ];
    let out = run(&g, &args).unwrap();
    assert_values(&out[0], &[2, 4], &[1.0, 3.0, 4.0, 7.0, 2.0, 5.0, 6.0, 8.0]);
    assert_values(
        &out[1],
        &[6, 2],
        &[3., 4., 5., 6., 3., 4., 5., 6., 3., 4., 5., 6.],
    );
}

#[test]
fn slice_along_an_axis() {
    let x: Vec<f64> = (0..10).map(f64::from).collect();
    let out = eval_on(&[2, 5], &x, |g, x| {
        g.apply(Op::slice(1, Dim::fixed(1), Dim::fixed(4)), &[x])
    });
    assert_values(&out, &[2, 3], &[1.0, 2.0, 3.0, 6.0, 7.0, 8.0]);
}

#[test]
fn slice_with_symbolic_bounds_takes_the_second_half_of_a_batch() {
    let mut g = Graph::new("halves");
    let b = Dim::sym("B");
    let x = g.add_arg("x", ArgRole::Input, f64_type(vec![b.mul(&Dim::fixed(2))]));
    let batch = g.add_arg("scale", ArgRole::Input, f64_type(vec![b.clone()]));
    let second = g
        .apply(Op::slice(0, b.clone(), b.mul(&Dim::fixed(2))), &[x])
        .unwrap();
    let out = g.binary(BinaryOp::Mul, second, batch).unwrap();
    g.add_output("out", out);
    let args = [
        tensor(&[6], &[1., 2., 3., 4., 5., 6.]),
        tensor(&[3], &[1., 10., 100.]),
    ];
    let out = run(&g, &args).unwrap();
    assert_values(&out[0], &[3], &[4.0, 50.0, 600.0]);
}

#[test]
fn matmul_with_every_combination_of_transpose_flags() {
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1, 2, 3], [4, 5, 6]]
    let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]; // [[7, 8], [9, 10], [11, 12]]
    let b_t = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0];
    let product = [58.0, 64.0, 139.0, 154.0];
    for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let (a_shape, a_values) = if transpose_a {
            ([3, 2], a_t)
        } else {
            ([2, 3], a)
        };
        let (b_shape, b_values) = if transpose_b {
            ([2, 3], b_t)
        } else {
            ([3, 2], b)
        };
        let mut g = Graph::new("matmul");
        let x = g.add_arg(
            "a",
            ArgRole::Input,
            fixed(&[a_shape[0] as u64, a_shape[1] as u64]),
        );
        let y = g.add_arg(
            "b",
            ArgRole::Input,
            fixed(&[b_shape[0] as u64, b_shape[1] as u64]),
        );
        let op = Op::matmul(transpose_a, transpose_b);
        let out = g.apply(op, &[x, y]).unwrap();
        g.add_output("out", out);
        let out = run(
            &g,
            &[tensor(&a_shape, &a_values), tensor(&b_shape, &b_values)],
        )
        .unwrap();
        println!("transpose_a {transpose_a}, transpose_b {transpose_b}");
        assert_values(&out[0], &[2, 2], &product);
    }
}

#[test]
fn stop_gradient_is_the_identity() {
    let out = eval_on(&[3], &[1.0, -2.0, 3.0], |g, x| {
        g.apply(Op::stop_gradient(), &[x])
    });
    assert_values(&out, &[3], &[1.0, -2.0, 3.0]);
}

#[test]
fn outputs_come_in_declared_order_and_may_repeat() {
    let mut g = Graph::new("outputs");
    let x = g.add_arg("x", ArgRole::Input, fixed(&[2]));
    let y = g.unary(UnaryOp::Neg, x).unwrap();
    g.add_output("y", y);
    g.add_output("x", x);
    g.add_output("y_again", y);
    let out = run(&g, &[tensor(&[2], &[1.0, 2.0])]).unwrap();
    assert_eq!(out.len(), 3);
    assert_values(&out[0], &[2], &[-1.0, -2.0]);
    assert_values(&out[1], &[2], &[1.0, 2.0]);
    assert_values(&out[2], &[2], &[-1.0, -2.0]);
}

#[test]
fn bind_dims_fixes_symbols_and_checks_monomials() {
    let mut g = Graph::new("bind");
    let b = Dim::sym("B");
    g.add_arg("x", ArgRole::Input, batch_by(3));
    g.add_arg(
        "pairs",
        ArgRole::Input,
        f64_type(vec![b.mul(&Dim::fixed(2))]),
    );
    let x = Tensor::zeros(DType::F64, &[4, 3]);
    let bindings = bind_dims(&g, &[x.clone(), Tensor::zeros(DType::F64, &[8])]).unwrap();
    assert_eq!(bindings.get("B"), Some(&4));

    let err = bind_dims(&g, &[x, Tensor::zeros(DType::F64, &[7])]).unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "argument 'pairs' has shape [7] but the model declares f64[2*B] (axis 0 must be 2*B = 8)"
    );
}

/// A graph with inputs x: f32[B, 784] and y: f32[B, 10].
fn two_input_graph() -> Graph {
    let mut g = Graph::new("two_inputs");
    let b = Dim::sym("B");
    g.add_arg(
        "x",
        ArgRole::Input,
        TensorType::new(DType::F32, Shape(vec![b.clone(), Dim::fixed(784)])),
    );
    g.add_arg(
        "y",
        ArgRole::Target,
        TensorType::new(DType::F32, Shape(vec![b, Dim::fixed(10)])),
    );
    g
}

#[test]
fn wrong_number_of_arguments_is_an_error() {
    let g = two_input_graph();
    let err = run(&g, &[Tensor::zeros(DType::F32, &[2, 784])]).unwrap_err();
    assert!(matches!(err, Error::Eval(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("takes 2 argument(s) (x, y) but was given 1"),
        "{msg}"
    );
}

#[test]
fn wrong_dtype_is_an_error_naming_the_argument() {
    let g = two_input_graph();
    let args = [
        Tensor::zeros(DType::F32, &[2, 784]),
        Tensor::zeros(DType::F64, &[2, 10]),
    ];
    let err = run(&g, &args).unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "argument 'y' has dtype f64 but the model declares f32[B, 10]"
    );
}

#[test]
fn wrong_rank_is_an_error_naming_the_argument() {
    let g = two_input_graph();
    let args = [
        Tensor::zeros(DType::F32, &[784]),
        Tensor::zeros(DType::F32, &[2, 10]),
    ];
    let err = run(&g, &args).unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("argument 'x' has shape [784] (rank 1)"),
        "{msg}"
    );
    assert!(msg.contains("f32[B, 784] (rank 2)"), "{msg}");
}

#[test]
fn wrong_fixed_size_is_an_error_naming_the_argument() {
    let g = two_input_graph();
    let args = [
        Tensor::zeros(DType::F32, &[32, 783]),
        Tensor::zeros(DType::F32, &[32, 10]),
    ];
    let err = run(&g, &args).unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("argument 'x' has shape [32, 783] but the model declares f32[B, 784]"),
        "{msg}"
    );
    assert!(msg.contains("axis 1 must be 784"), "{msg}");
}

#[test]
fn inconsistent_symbol_is_an_error_naming_both_arguments() {
    let g = two_input_graph();
    let args = [
        Tensor::zeros(DType::F32, &[32, 784]),
        Tensor::zeros(DType::F32, &[16, 10]),
    ];
    let err = run(&g, &args).unwrap_err();
    assert!(matches!(err, Error::Eval(_)), "{err:?}");
    assert_eq!(err.to_string(), "symbol B is 32 from 'x' but 16 from 'y'");
}

#[test]
fn symbol_no_argument_fixes_is_an_error_naming_the_argument() {
    let mut g = Graph::new("unfixed");
    g.add_arg(
        "pairs",
        ArgRole::Input,
        f64_type(vec![Dim::sym("B").mul(&Dim::fixed(2))]),
    );
    let err = run(&g, &[Tensor::zeros(DType::F64, &[8])]).unwrap_err();
    assert!(matches!(err, Error::Eval(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("argument 'pairs'") && msg.contains("symbol B"),
        "{msg}"
    );
}

/// Builds `sigmoid(x @ w + b)` (or without the sigmoid) layer by layer.
fn dense(g: &mut Graph, h: NodeId, w: NodeId, b: NodeId) -> Result<NodeId, ShapeError> {
    let product = g.matmul(h, w)?;
    let shape = g.ty(product).shape.clone();
    let bias = g.broadcast(b, &shape)?;
    g.binary(BinaryOp::Add, product, bias)
}

/// The SGN paper's MNIST net, 784-20-20-20-10 with sigmoids, in f64; arguments x, w1, b1, …
fn mnist_mlp() -> Graph {
    let mut g = Graph::new("mnist_mlp");
    let widths = [784u64, 20, 20, 20, 10];
    let mut h = g.add_arg("x", ArgRole::Input, batch_by(784));
    for (layer, pair) in widths.windows(2).enumerate() {
        let w = g.add_arg(
            format!("w{}", layer + 1),
            ArgRole::Param,
            fixed(&[pair[0], pair[1]]),
        );
        let b = g.add_arg(format!("b{}", layer + 1), ArgRole::Param, fixed(&[pair[1]]));
        let z = dense(&mut g, h, w, b).unwrap();
        h = if layer + 2 < widths.len() {
            g.unary(UnaryOp::Sigmoid, z).unwrap()
        } else {
            z
        };
    }
    g.add_output("z", h);
    g
}

/// Arguments for `graph` with batch `batch`, uniform in [-1, 1), rounded to f32 so that f32 and
/// f64 runs see the same numbers.
fn random_args(graph: &Graph, batch: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bindings = sgn::ir::Bindings::new();
    bindings.insert("B".into(), batch);
    graph
        .args()
        .iter()
        .map(|a| {
            let shape = a.ty.shape.eval(&bindings).expect("only B is symbolic");
            let n = shape.iter().product();
            let values = (0..n)
                .map(|_| f64::from(rng.random_range(-1.0f32..1.0)))
                .collect();
            Tensor::from_f64(a.ty.dtype, &shape, values).expect("n fills the shape")
        })
        .collect()
}

#[test]
fn mnist_net_runs_at_batch_1000() {
    let g = mnist_mlp().with_dtype(DType::F32);
    let args = random_args(&g, 1000, 1);
    let out = run(&g, &args).unwrap();
    assert_eq!(out[0].dtype(), DType::F32);
    assert_eq!(out[0].shape(), &[1000, 10]);
    // The same net written out with ndarray in f64: x·w + b per layer, sigmoids between.
    let array = |t: &Tensor| {
        let shape = t.shape().to_vec();
        ArrayD::from_shape_vec(IxDyn(&shape), t.to_f64_vec()).unwrap()
    };
    let matrix = |t: &Tensor| array(t).into_dimensionality::<ndarray::Ix2>().unwrap();
    let mut h = matrix(&args[0]);
    for layer in 0..4 {
        let (w, b) = (matrix(&args[1 + 2 * layer]), array(&args[2 + 2 * layer]));
        let z = h.dot(&w) + &b.into_dimensionality::<ndarray::Ix1>().unwrap();
        h = if layer < 3 {
            z.mapv(|v| 1.0 / (1.0 + (-v).exp()))
        } else {
            z
        };
    }
    let expected = Tensor::F64(h.into_dyn());
    // f32 sums of 784 products of values in [-1, 1): relative to the output's largest value.
    assert_close("z", &out[0], &expected, Floor::OfLargest(1.0), 1e-5);
}

#[test]
fn f32_matches_f64_on_a_random_mlp() {
    // An 8-16-4 MLP with several activations, then log_softmax and its batch mean.
    let mut g = Graph::new("mlp");
    let x = g.add_arg("x", ArgRole::Input, batch_by(8));
    let w1 = g.add_arg("w1", ArgRole::Param, fixed(&[8, 16]));
    let b1 = g.add_arg("b1", ArgRole::Param, fixed(&[16]));
    let w2 = g.add_arg("w2", ArgRole::Param, fixed(&[16, 4]));
    let b2 = g.add_arg("b2", ArgRole::Param, fixed(&[4]));
    let z1 = dense(&mut g, x, w1, b1).unwrap();
    let t = g.unary(UnaryOp::Tanh, z1).unwrap();
    let s = g.unary(UnaryOp::Softplus, t).unwrap();
    let h = g.unary(UnaryOp::Sigmoid, s).unwrap();
    let z = dense(&mut g, h, w2, b2).unwrap();
    let z_shape = g.ty(z).shape.clone();
    let max = g.apply(Op::reduce_max(vec![1]), &[z]).unwrap();
    let max = g.apply(Op::stop_gradient(), &[max]).unwrap();
    let max = g.reshape(max, &batch_by(1).shape).unwrap();
    let max = g.broadcast(max, &z_shape).unwrap();
    let shifted = g.binary(BinaryOp::Sub, z, max).unwrap();
    let exp = g.unary(UnaryOp::Exp, shifted).unwrap();
    let total = g.sum(exp, &[1]).unwrap();
    let log_total = g.unary(UnaryOp::Log, total).unwrap();
    let log_total = g.reshape(log_total, &batch_by(1).shape).unwrap();
    let log_total = g.broadcast(log_total, &z_shape).unwrap();
    let log_softmax = g.binary(BinaryOp::Sub, shifted, log_total).unwrap();
    let sum = g.sum(log_softmax, &[0, 1]).unwrap();
    let batch = g.dim_size(&Dim::sym("B"), DType::F64);
    let mean = g.binary(BinaryOp::Div, sum, batch).unwrap();
    g.add_output("log_softmax", log_softmax);
    g.add_output("mean", mean);

    let args64 = random_args(&g, 32, 7);
    let out64 = run(&g, &args64).unwrap();
    let g32 = g.with_dtype(DType::F32);
    let args32: Vec<Tensor> = args64.iter().map(|t| t.clone().cast(DType::F32)).collect();
    let out32 = run(&g32, &args32).unwrap();
    for (a, b) in out64.iter().zip(&out32) {
        assert_eq!(b.dtype(), DType::F32);
        assert_close("f32 against f64", b, a, RELATIVE_FLOOR, 1e-6);
    }
}
