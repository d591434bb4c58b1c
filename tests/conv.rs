//! Convolution and pooling: the interpreter against direct loops (f64 and f32), finite-difference
//! checks of every JVP and VJP rule of the family over a grid of strides, paddings, dilations,
//! groups and odd sizes, the transpose identity, G v of a tiny CNN against the explicit Jᵀ H J,
//! the DSL builtins and their errors, the IR text, the JIT against the interpreter on every op of
//! the family, and the LeNet end to end on both.

use crate::common;

use common::derivatives::{ANY, check};
use common::{batch_for, direction_like, wavy};
use sgn::codegen::{BackendKind, compile_graph};
use sgn::ir::store::{TensorMap, init_params};
use sgn::ir::tensor::Floor;
use sgn::ir::text::{parse_graph, print_graph};
use sgn::ir::{
    ArgRole, Conv, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, Window, interp,
};
use sgn::{CompileOptions, Model};

const F: DType = DType::F64;

/// One convolution of the grid.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    batch: usize,
    channels: usize,
    input: [usize; 2],
    out_channels: usize,
    kernel: [usize; 2],
    window: Window,
    groups: usize,
}

fn window(stride: [usize; 2], padding: [[usize; 2]; 2], dilation: [usize; 2]) -> Window {
    Window {
        stride,
        padding,
        dilation,
    }
}

/// Strides that leave a ragged border, asymmetric padding, dilation, grouped and depthwise
/// convolutions, 1×1 kernels and odd sizes.
fn conv_cases() -> Vec<ConvCase> {
    let case = |batch, channels, input, out_channels, kernel, window, groups| ConvCase {
        batch,
        channels,
        input,
        out_channels,
        kernel,
        window,
        groups,
    };
    vec![
        case(2, 3, [7, 6], 4, [3, 2], Window::unit(), 1),
        case(
            1,
            4,
            [9, 8],
            6,
            [3, 3],
            window([2, 3], [[1, 1], [2, 0]], [1, 1]),
            2,
        ),
        case(
            2,
            2,
            [8, 7],
            2,
            [2, 3],
            window([1, 2], [[0, 1], [1, 1]], [2, 1]),
            2,
        ),
        case(
            1,
            6,
            [5, 5],
            3,
            [1, 1],
            window([2, 2], [[0, 0], [0, 0]], [1, 1]),
            3,
        ),
        case(
            3,
            1,
            [11, 10],
            2,
            [5, 4],
            window([3, 2], [[2, 2], [1, 3]], [2, 2]),
            1,
        ),
        case(
            1,
            3,
            [4, 5],
            5,
            [4, 5],
            window([1, 1], [[1, 2], [0, 0]], [1, 1]),
            1,
        ),
        // A stride past the padded width: the last tap of a row reads only padding (this read
        // past the input before).
        case(
            2,
            1,
            [4, 4],
            1,
            [1, 1],
            window([1, 6], [[0, 0], [1, 1]], [1, 1]),
            1,
        ),
        case(
            1,
            2,
            [8, 8],
            2,
            [3, 3],
            window([64, 64], [[1, 1], [1, 1]], [1, 1]),
            2,
        ),
    ]
}

impl ConvCase {
    fn x_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.input[0], self.input[1]]
    }

    fn w_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.channels / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    fn op(&self) -> Conv {
        Conv::Conv2d {
            window: self.window,
            groups: self.groups,
        }
    }

    /// The three faces with their operands' shapes: `conv2d(x, w)`, `conv2d_transpose(y, w)`,
    /// `conv2d_correlate(x, y)`.
    fn faces(&self) -> [(Conv, Vec<Vec<usize>>); 3] {
        let (window, groups) = (self.window, self.groups);
        let (xs, ws) = (self.x_shape().to_vec(), self.w_shape().to_vec());
        let ys = result_shape(self.op(), &[&xs, &ws]);
        [
            (self.op(), vec![xs.clone(), ws.clone()]),
            (
                Conv::Conv2dTranspose {
                    window,
                    groups,
                    input: self.input,
                },
                vec![ys.clone(), ws],
            ),
            (
                Conv::Conv2dCorrelate {
                    window,
                    groups,
                    kernel: self.kernel,
                },
                vec![xs, ys],
            ),
        ]
    }
}

/// The shape of `op`'s result on operands of `shapes` (f64).
fn result_shape(op: Conv, shapes: &[&[usize]]) -> Vec<usize> {
    let mut g = Graph::new("shape");
    let args: Vec<NodeId> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            g.add_arg(
                format!("a{i}"),
                ArgRole::Input,
                TensorType::new(F, fixed(s)),
            )
        })
        .collect();
    let y = g.apply(Op::Conv(op), &args).unwrap();
    g.ty(y)
        .shape
        .dims()
        .iter()
        .map(|d| d.as_fixed().unwrap() as usize)
        .collect()
}

/// The four pooling ops of one pooling case with their operands' shapes: `max_pool2d(x)`,
/// `max_pool2d_argmax(x)`, `max_pool2d_select(t, a)`, `max_pool2d_scatter(c, a)`.
fn pool_faces(
    shape: [usize; 4],
    kernel: [usize; 2],
    window: Window,
) -> [(Conv, Vec<Vec<usize>>); 4] {
    let x = shape.to_vec();
    let pool = Conv::MaxPool2d { kernel, window };
    let pooled = result_shape(pool, &[&x]);
    let input = [shape[2], shape[3]];
    [
        (pool, vec![x.clone()]),
        (Conv::MaxPool2dArgmax { kernel, window }, vec![x.clone()]),
        (
            Conv::MaxPool2dSelect { kernel, window },
            vec![x, pooled.clone()],
        ),
        (
            Conv::MaxPool2dScatter {
                kernel,
                window,
                input,
            },
            vec![pooled.clone(), pooled],
        ),
    ]
}

/// Spatial output size by the textbook formula.
fn out_size(n: usize, k: usize, axis: usize, w: &Window) -> usize {
    (n + w.padding[axis][0] + w.padding[axis][1] - w.dilation[axis] * (k - 1) - 1) / w.stride[axis]
        + 1
}

/// The input position tap `k` of output `o` reads along `axis`, if it is inside the input.
fn tap(o: usize, k: usize, axis: usize, n: usize, w: &Window) -> Option<usize> {
    (o * w.stride[axis] + k * w.dilation[axis])
        .checked_sub(w.padding[axis][0])
        .filter(|&i| i < n)
}

/// PyTorch's conv2d written as its definition: one sum per output element.
fn naive_conv(c: &ConvCase, x: &[f64], w: &[f64]) -> Vec<f64> {
    let [n, ch, h, wd] = c.x_shape();
    let [o, cg, kh, kw] = c.w_shape();
    let (oh, ow) = (
        out_size(h, kh, 0, &c.window),
        out_size(wd, kw, 1, &c.window),
    );
    let og = o / c.groups;
    let mut y = vec![0.0; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for yo in 0..oh {
                for xo in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        let ic = g * cg + ci;
                        for i in 0..kh {
                            for j in 0..kw {
                                if let (Some(ih), Some(iw)) =
                                    (tap(yo, i, 0, h, &c.window), tap(xo, j, 1, wd, &c.window))
                                {
                                    acc += x[((b * ch + ic) * h + ih) * wd + iw]
                                        * w[((oc * cg + ci) * kh + i) * kw + j];
                                }
                            }
                        }
                    }
                    y[((b * o + oc) * oh + yo) * ow + xo] = acc;
                }
            }
        }
    }
    y
}

/// Each window's maximum (the first on ties), or its mean with padding counted as zeros.
fn naive_pool(x: &[f64], shape: [usize; 4], kernel: [usize; 2], w: &Window, max: bool) -> Vec<f64> {
    let [n, c, h, wd] = shape;
    let (oh, ow) = (out_size(h, kernel[0], 0, w), out_size(wd, kernel[1], 1, w));
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for yo in 0..oh {
            for xo in 0..ow {
                let mut best = f64::NEG_INFINITY;
                let mut sum = 0.0;
                for i in 0..kernel[0] {
                    for j in 0..kernel[1] {
                        if let (Some(ih), Some(iw)) = (tap(yo, i, 0, h, w), tap(xo, j, 1, wd, w)) {
                            let v = x[(plane * h + ih) * wd + iw];
                            best = best.max(v);
                            sum += v;
                        }
                    }
                }
                y.push(if max {
                    best
                } else {
                    sum / (kernel[0] * kernel[1]) as f64
                });
            }
        }
    }
    y
}

fn fixed(dims: &[usize]) -> Shape {
    Shape::fixed(&dims.iter().map(|&d| d as u64).collect::<Vec<_>>())
}

/// Runs `op` on arguments of `values` in the interpreter, in `dtype`.
fn run_op(op: Conv, values: &[Tensor], dtype: DType) -> Tensor {
    let (g, values) = op_graph(op, values, dtype, false);
    interp::run(&g, &values).unwrap().swap_remove(0)
}

/// A graph applying `op` to arguments shaped as `values` (with a batch axis `B` if
/// `symbolic_batch`), and `values` in `dtype`.
fn op_graph(
    op: Conv,
    values: &[Tensor],
    dtype: DType,
    symbolic_batch: bool,
) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("op");
    let args: Vec<NodeId> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut shape = fixed(v.shape());
            let filter = matches!(op, Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. }) && i == 1;
            if symbolic_batch && !filter {
                shape.0[0] = Dim::sym("B");
            }
            g.add_arg(
                format!("a{i}"),
                ArgRole::Input,
                TensorType::new(dtype, shape),
            )
        })
        .collect();
    let y = g.apply(Op::Conv(op), &args).unwrap();
    g.add_output("y", y);
    let values: Vec<Tensor> = values.iter().map(|v| v.clone().cast(dtype)).collect();
    (g, values)
}

fn assert_all_close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}: element {i} is {a}, expected {b}"
        );
    }
}

#[test]
fn the_interpreter_convolves_as_the_definition() {
    for (k, c) in conv_cases().into_iter().enumerate() {
        let x = wavy(F, &c.x_shape(), k as u64, 1.0);
        let w = wavy(F, &c.w_shape(), 40 + k as u64, 1.0);
        let want = naive_conv(&c, &x.to_f64_vec(), &w.to_f64_vec());
        for (dtype, tolerance) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let y = run_op(c.op(), &[x.clone(), w.clone()], dtype);
            assert_eq!(y.dtype(), dtype);
            assert_all_close(&format!("{c:?} {dtype}"), &y.to_f64_vec(), &want, tolerance);
        }
    }
}

/// Pooling windows: ragged borders, padding up to half the kernel, dilation, non-square kernels.
fn pool_cases() -> Vec<([usize; 4], [usize; 2], Window)> {
    vec![
        (
            [2, 3, 7, 7],
            [2, 2],
            window([2, 2], [[0, 0], [0, 0]], [1, 1]),
        ),
        (
            [1, 2, 9, 8],
            [3, 2],
            window([2, 1], [[1, 1], [1, 0]], [1, 1]),
        ),
        (
            [2, 1, 10, 9],
            [3, 3],
            window([1, 2], [[1, 0], [0, 1]], [2, 1]),
        ),
        (
            [1, 2, 5, 6],
            [1, 3],
            window([3, 3], [[0, 0], [1, 1]], [1, 1]),
        ),
        (
            [1, 1, 4, 4],
            [2, 2],
            window([1, 6], [[1, 1], [1, 1]], [1, 1]),
        ),
    ]
}

#[test]
fn the_interpreter_max_pools_as_the_definition_first_maximum_on_ties() {
    for (k, (shape, kernel, window)) in pool_cases().into_iter().enumerate() {
        let x = wavy(F, &shape, k as u64, 1.0);
        let want = naive_pool(&x.to_f64_vec(), shape, kernel, &window, true);
        let op = Conv::MaxPool2d { kernel, window };
        for dtype in [DType::F64, DType::F32] {
            let y = run_op(op, std::slice::from_ref(&x), dtype);
            assert_all_close(&format!("{shape:?} {dtype}"), &y.to_f64_vec(), &want, 1e-7);
        }
    }
    // Ties: the argmax is the first maximum of each window (row-major), as in PyTorch, as an
    // index into the plane; the cotangent goes there, and the tangent is read there.
    let x = Tensor::from_f64(F, &[1, 1, 2, 2], vec![1.0, 3.0, 3.0, 3.0]).unwrap();
    let (kernel, window) = ([2, 2], window([2, 2], [[0; 2]; 2], [1, 1]));
    let argmax = run_op(Conv::MaxPool2dArgmax { kernel, window }, &[x], F);
    assert_eq!(argmax.to_f64_vec(), [1.0]);
    let scatter = Conv::MaxPool2dScatter {
        kernel,
        window,
        input: [2, 2],
    };
    let ct = Tensor::from_f64(F, &[1, 1, 1, 1], vec![5.0]).unwrap();
    let spread = run_op(scatter, &[ct, argmax.clone()], F);
    assert_eq!(spread.to_f64_vec(), [0.0, 5.0, 0.0, 0.0]);
    let select = Conv::MaxPool2dSelect { kernel, window };
    let t = Tensor::from_f64(F, &[1, 1, 2, 2], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
    assert_eq!(run_op(select, &[t.clone(), argmax], F).to_f64_vec(), [20.0]);
    // An index outside the plane (never an argmax) selects zero and scatters nothing.
    for bad in [4.0, -1.0, f64::NAN] {
        let a = Tensor::from_f64(F, &[1, 1, 1, 1], vec![bad]).unwrap();
        assert_eq!(
            run_op(select, &[t.clone(), a.clone()], F).to_f64_vec(),
            [0.0]
        );
        let ct = Tensor::from_f64(F, &[1, 1, 1, 1], vec![5.0]).unwrap();
        assert_eq!(run_op(scatter, &[ct, a], F).to_f64_vec(), [0.0; 4]);
    }
}

#[test]
fn the_jit_runs_every_op_of_the_family_as_the_interpreter_on_1_2_and_3_threads() {
    // Bit patterns, any NaN as one: the JIT's maximum yields the machine's NaN, not the input's.
    let bits = |t: &Tensor| -> Vec<u64> {
        let nan_as_one = |x: f64| if x.is_nan() { u64::MAX } else { x.to_bits() };
        t.to_f64_vec().into_iter().map(nan_as_one).collect()
    };
    let convs = conv_cases().into_iter().flat_map(|c| c.faces());
    let pools = pool_cases()
        .into_iter()
        .flat_map(|(shape, kernel, window)| pool_faces(shape, kernel, window));
    for (k, (op, shapes)) in convs.chain(pools).enumerate() {
        let searched = matches!(op, Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. });
        let tapped = matches!(
            op,
            Conv::MaxPool2dSelect { .. } | Conv::MaxPool2dScatter { .. }
        );
        let values: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let mut values = wavy(F, shape, (3 * k + i) as u64, 1.0).to_f64_vec();
                if searched {
                    // A NaN wins its windows; repeated values tie.
                    values[3] = f64::NAN;
                    values[7] = values[8];
                }
                if tapped && i == 1 {
                    // Indices into the input's planes, and one that is none.
                    let plane = match op {
                        Conv::MaxPool2dScatter { input, .. } => input[0] * input[1],
                        _ => shapes[0][2] * shapes[0][3],
                    } as f64;
                    values = values
                        .iter()
                        .map(|v| ((v + 1.0) * 97.0).floor() % plane)
                        .collect();
                    values[2] = plane;
                }
                Tensor::from_f64(F, shape, values).unwrap()
            })
            .collect();
        // A correlation sums over the images in a fixed order of its own; the rest of the
        // family runs the interpreter's own kernels image by image, so the bits agree.
        let summed = matches!(op, Conv::Conv2dCorrelate { .. });
        for (dtype, symbolic_batch) in [(F, false), (DType::F32, false), (F, true)] {
            let (g, args) = op_graph(op, &values, dtype, symbolic_batch);
            let want = interp::run(&g, &args).unwrap().swap_remove(0);
            let mut first: Option<Vec<u64>> = None;
            for threads in 1..=3 {
                for (variant, options) in common::jit_variants(threads) {
                    let jit = compile_graph(&g, &options).unwrap();
                    let got = jit.run(&args).unwrap().swap_remove(0);
                    let what = format!(
                        "{} of {shapes:?} {dtype} B: {symbolic_batch}, {threads} threads, {variant}",
                        Op::Conv(op).name()
                    );
                    if summed {
                        let tolerance = if dtype == F { 1e-13 } else { 1e-5 };
                        common::assert_close(&what, &got, &want, Floor::OfLargest(1e-3), tolerance);
                    } else {
                        assert_eq!(bits(&got), bits(&want), "{what}");
                    }
                    let first = first.get_or_insert_with(|| bits(&got));
                    assert_eq!(&bits(&got), first, "{what}: bits differ from 1 thread's");
                }
            }
        }
    }
}

#[test]
fn conv2d_and_its_transposes_pass_the_derivative_checks() {
    for c in conv_cases() {
        for (op, shapes) in c.faces() {
            let shapes: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
            check(
                &format!("{} {c:?}", Op::Conv(op).name()),
                &shapes,
                &[ANY, ANY],
                |g, a| g.apply(Op::Conv(op), &[a[0], a[1]]).unwrap(),
            );
        }
    }
}

#[test]
fn max_pooling_passes_the_derivative_checks() {
    // Select and scatter are checked at the argmax of an input of their own: linear in the first
    // operand; the argmax's tangent is zero away from ties.
    for (shape, kernel, window) in pool_cases() {
        for (op, shapes) in pool_faces(shape, kernel, window) {
            let mut shapes: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
            let tapped = shapes.len() == 2;
            if tapped {
                shapes[1] = &shape;
            }
            check(
                &format!("{} {shape:?} {kernel:?} {window:?}", Op::Conv(op).name()),
                &shapes,
                &vec![ANY; shapes.len()],
                |g, a| {
                    let mut a = a.to_vec();
                    if tapped {
                        let argmax = Op::Conv(Conv::MaxPool2dArgmax { kernel, window });
                        a[1] = g.apply(argmax, &[a[1]]).unwrap();
                    }
                    g.apply(Op::Conv(op), &a).unwrap()
                },
            );
        }
    }
}

/// A model of `body` (which reads `x: f64[B, C, H, W]` and `w`) whose output is `body`.
fn model_of(x: &str, params: &str, body: &str) -> std::result::Result<Model, String> {
    let source = format!(
        "model m\ninput x: f64{x}\ntarget y: f64[B, 1]\n{params}\n\
         output z = reshape({body}, [B, -1])\nloss mse(sum(z, axis=1, keepdims=true), y)\n"
    );
    Model::parse_named("m.sgn", &source).map_err(|e| e.to_string())
}

/// The output of a model on input `x`, parameters by name, on the interpreter in f64.
fn output_of(model: &Model, x: &Tensor, params: &[(&str, Tensor)]) -> Vec<f64> {
    let compiled = model
        .compile(
            &CompileOptions::default()
                .with_dtype(F)
                .with_backend(BackendKind::Interpreter),
        )
        .unwrap();
    let params = params
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let rows = x.shape()[0];
    let mut batch = batch_for(model, F, rows, 1);
    batch.insert("x".to_string(), x.clone());
    compiled.forward(&params, &batch).unwrap().0.to_f64_vec()
}

#[test]
fn dsl_builtins_lower_as_pytorch_defines_them() {
    let x = wavy(F, &[2, 4, 7, 6], 3, 1.0);
    // padding="same" (stride 1; an even kernel pads one more after), groups, dilation; quoted
    // as in PyTorch or bare.
    let w = wavy(F, &[6, 2, 2, 3], 4, 1.0);
    let model = model_of(
        "[B, 4, 7, 6]",
        "param w: f64[6, 2, 2, 3]",
        "conv2d(x, w, padding=\"same\", dilation=[2, 1], groups=2)",
    )
    .unwrap();
    let same = ConvCase {
        batch: 2,
        channels: 4,
        input: [7, 6],
        out_channels: 6,
        kernel: [2, 3],
        window: window([1, 1], [[1, 1], [1, 1]], [2, 1]),
        groups: 2,
    };
    let want = naive_conv(&same, &x.to_f64_vec(), &w.to_f64_vec());
    assert_eq!(want.len(), 2 * 6 * 7 * 6, "same keeps the spatial size");
    assert_all_close(
        "same",
        &output_of(&model, &x, &[("w", w.clone())]),
        &want,
        1e-12,
    );
    let odd = ConvCase {
        window: window([1, 1], [[0, 1], [1, 1]], [1, 1]),
        ..same
    };
    let model = model_of(
        "[B, 4, 7, 6]",
        "param w: f64[6, 2, 2, 3]",
        "conv2d(x, w, padding=same, groups=2)",
    )
    .unwrap();
    let want = naive_conv(&odd, &x.to_f64_vec(), &w.to_f64_vec());
    assert_all_close(
        "same, even kernel",
        &output_of(&model, &x, &[("w", w.clone())]),
        &want,
        1e-12,
    );
    // stride and padding as pairs, valid.
    let w1 = wavy(F, &[3, 4, 3, 2], 5, 1.0);
    let model = model_of(
        "[B, 4, 7, 6]",
        "param w: f64[3, 4, 3, 2]",
        "conv2d(x, w, stride=[2, 1], padding=[1, 0])",
    )
    .unwrap();
    let strided = ConvCase {
        out_channels: 3,
        kernel: [3, 2],
        window: window([2, 1], [[1, 1], [0, 0]], [1, 1]),
        groups: 1,
        ..same
    };
    let want = naive_conv(&strided, &x.to_f64_vec(), &w1.to_f64_vec());
    assert_all_close(
        "pairs",
        &output_of(&model, &x, &[("w", w1.clone())]),
        &want,
        1e-12,
    );
    let model = model_of(
        "[B, 4, 7, 6]",
        "param w: f64[3, 4, 3, 2]",
        "conv2d(x, w, padding=valid)",
    )
    .unwrap();
    let valid = ConvCase {
        window: Window::unit(),
        ..strided
    };
    let want = naive_conv(&valid, &x.to_f64_vec(), &w1.to_f64_vec());
    assert_all_close("valid", &output_of(&model, &x, &[("w", w1)]), &want, 1e-12);

    // Pools: stride defaults to the kernel; a ragged border is dropped.
    let unit = (
        "param w: f64[1]",
        vec![("w", Tensor::from_f64(F, &[1], vec![1.0]).unwrap())],
    );
    for (body, kernel, win, max) in [
        (
            "max_pool2d(x, 2) * w",
            [2, 2],
            window([2, 2], [[0; 2]; 2], [1, 1]),
            true,
        ),
        (
            "max_pool2d(x, [3, 2], stride=1, padding=[1, 0], dilation=[1, 2]) * w",
            [3, 2],
            window([1, 1], [[1, 1], [0, 0]], [1, 2]),
            true,
        ),
        (
            "avg_pool2d(x, 3) * w",
            [3, 3],
            window([3, 3], [[0; 2]; 2], [1, 1]),
            false,
        ),
        (
            "avg_pool2d(x, [2, 3], stride=[1, 2], padding=1) * w",
            [2, 3],
            window([1, 2], [[1, 1], [1, 1]], [1, 1]),
            false,
        ),
    ] {
        let model = model_of("[B, 4, 7, 6]", unit.0, body).unwrap();
        let want = naive_pool(&x.to_f64_vec(), [2, 4, 7, 6], kernel, &win, max);
        assert_all_close(body, &output_of(&model, &x, &unit.1), &want, 1e-12);
    }
    // flatten keeps the first axis: the same elements in row-major order.
    let model = model_of("[B, 4, 7, 6]", unit.0, "flatten(x) * w").unwrap();
    let z = model.graph.output("z").unwrap();
    assert_eq!(model.graph.ty(z).shape.to_string(), "[B, 168]");
    assert_eq!(output_of(&model, &x, &unit.1), x.to_f64_vec());
}

#[test]
fn dsl_shape_errors_name_the_op_the_shapes_and_the_position() {
    for (x, params, body, expected) in [
        (
            "[B, 3, 8, 8]",
            "param w: f64[4, 1, 3, 3]",
            "conv2d(x, w, groups=2)",
            "m.sgn:5:20: error: conv2d of [B, 3, 8, 8] and [4, 1, 3, 3]: 3 input and 4 output channels are not both divisible by groups = 2",
        ),
        (
            "[B, 3, 4, 4]",
            "param w: f64[2, 3, 5, 5]",
            "conv2d(x, w)",
            "m.sgn:5:20: error: conv2d of [B, 3, 4, 4] and [2, 3, 5, 5]: a kernel of [5, 5] taps",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[2, 2, 3, 3]",
            "conv2d(x, w)",
            "the filter has 2 input channels, but the input has 3 channels in 1 group(s), 3 each",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[2, 3, 3, 3]",
            "conv2d(x, w, stride=2, padding=same)",
            "m.sgn:5:51: error: padding=\"same\" needs stride 1",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[2, 3, 3, 3]",
            "conv2d(x, w, padding=\"full\")",
            "m.sgn:5:41: error: conv2d's padding is an integer, a pair [h, w], \"same\" or \"valid\", not \"full\"",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[2, 3, 3, 3]",
            "conv2d(x, w, padding=\"same)",
            "m.sgn:5:41: error: a string that does not end on its line",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "w * \"same\"",
            "m.sgn:5:24: error: \"same\" is a string; strings are allowed only as padding=\"same\" or \"valid\"",
        ),
        (
            "[B, 3, 8]",
            "param w: f64[2, 3, 3, 3]",
            "conv2d(x, w)",
            "conv2d needs a rank-4 input [N, C, H, W], got [B, 3, 8]",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "max_pool2d(x, 2, padding=2) * w",
            "m.sgn:5:45: error: max_pool2d: padding 2 is more than half the kernel's extent 2",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "max_pool2d(x, 9) * w",
            "m.sgn:5:20: error: max_pool2d of [B, 3, 8, 8]: a kernel of [9, 9] taps",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "avg_pool2d(x, 9) * w",
            "m.sgn:5:20: error: avg_pool2d of [B, 3, 8, 8]: a kernel of [9, 9] taps",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "max_pool2d(x, [2, 2, 2]) * w",
            "the kernel size must be an integer or a pair [h, w] of integers, found a list",
        ),
        (
            "[B, 3, 8, 8]",
            "param w: f64[1]",
            "max_pool2d(x, 0) * w",
            "the kernel size must be an integer from 1 to 2^32, found 0",
        ),
        (
            "[B]",
            "param w: f64[1]",
            "flatten(x) * w",
            "flatten needs a tensor of rank 2 or more, got shape [B]",
        ),
    ] {
        let err = model_of(x, params, body).unwrap_err();
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn ir_text_round_trips_the_family() {
    let model = Model::from_file("ir/fashion_lenet.sgn").unwrap();
    let graphs = model.derive().unwrap();
    for (name, graph) in graphs.named() {
        let text = print_graph(graph);
        let read = parse_graph(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(&read, graph, "{name}");
    }
    let vjp = print_graph(&graphs.vjp);
    for op in [
        "max_pool2d_scatter[[2, 2], [2, 2], [0, 0, 0, 0], [1, 1], [8, 8]]",
        "conv2d_correlate[[1, 1], [0, 0, 0, 0], [1, 1], 1, [5, 5]]",
        "conv2d_transpose[[1, 1], [0, 0, 0, 0], [1, 1], 1, [12, 12]]",
    ] {
        assert!(vjp.contains(op), "{op} in\n{vjp}");
    }
    // A malformed window is an error at its position.
    let bad = "graph \"g\"\narg x: f64[1, 1, 4, 4] input\n%0 = arg x : f64[1, 1, 4, 4]\n\
               %1 = max_pool2d[[2, 2], [2], [0, 0, 0, 0], [1, 1]] %0 : f64[1, 1, 2, 2]\n";
    let err = parse_graph(bad).unwrap_err().to_string();
    assert!(
        err.contains(":4:") && err.contains("the stride of `max_pool2d`"),
        "{err}"
    );
}

#[test]
fn the_lenet_runs_on_the_jit_as_on_the_interpreter() {
    // In f64, so that the comparison is tight; tests/jit_models.rs holds f32 to its bound.
    let model = Model::from_file("ir/fashion_lenet.sgn").unwrap();
    let params: TensorMap = init_params(&model.params, 1)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone().cast(F)))
        .collect();
    let batch = batch_for(&model, F, 5, 2);
    let v = direction_like(&params, 3);
    let run = |backend| {
        let options = CompileOptions::default().with_dtype(F);
        let compiled = model.compile(&options.with_backend(backend)).unwrap();
        let (z, loss) = compiled.forward(&params, &batch).unwrap();
        let (_, grad) = compiled.loss_and_grad(&params, &batch).unwrap();
        let gv = compiled.gv(&params, &batch, &v).unwrap();
        (z, loss, grad, gv)
    };
    let (z, loss, grad, gv) = run(BackendKind::Jit);
    let (z_ref, loss_ref, grad_ref, gv_ref) = run(BackendKind::Interpreter);
    assert_eq!(z.shape(), &[5, 10]);
    assert!(loss.is_finite() && loss > 0.0);
    assert!(
        (loss - loss_ref).abs() <= 1e-5 * loss_ref.abs(),
        "{loss} vs {loss_ref}"
    );
    let close = |what: &str, got: &Tensor, want: &Tensor| {
        common::assert_close(what, got, want, common::RELATIVE_FLOOR, 1e-10)
    };
    close("z", &z, &z_ref);
    for (name, g) in grad.iter() {
        close(&format!("grad {name}"), g, grad_ref.get(name).unwrap());
        close(
            &format!("gv {name}"),
            gv.get(name).unwrap(),
            gv_ref.get(name).unwrap(),
        );
    }
    assert!(
        grad.get("c1")
            .unwrap()
            .to_f64_vec()
            .iter()
            .any(|g| *g != 0.0)
    );
    // G is positive semidefinite: vᵀ G v ≥ 0.
    let vgv = common::dot(&v, &gv);
    assert!(vgv >= 0.0 && vgv.is_finite(), "vᵀGv = {vgv}");
    // The paper's initialization: conv1 within ±0.2 and using most of it.
    let c1 = params.get("c1").unwrap().to_f64_vec();
    assert!(c1.iter().all(|w| w.abs() <= 0.2) && c1.iter().any(|w| w.abs() > 0.18));
}

#[test]
fn gv_on_a_tiny_cnn_equals_the_explicit_jt_h_j() {
    let source = "model tiny\ninput x: f64[B, 2, 6, 5]\ntarget y: f64[B, 3]\n\
                  param c: f64[4, 1, 3, 2] = glorot_uniform\nparam d: f64[4, 1, 1] = normal(0.3)\n\
                  param w: f64[12, 3] = glorot_uniform\nparam b: f64[3] = normal(0.3)\n\
                  h = max_pool2d(relu(conv2d(x, c, padding=[1, 0], groups=2) + d), 2, stride=[2, 3])\n\
                  a = avg_pool2d(h, [1, 1])\n\
                  output z = flatten(a) @ w + b\nloss softmax_cross_entropy(z, y)\n";
    let model = Model::parse(source).unwrap();
    let compiled = model
        .compile(
            &CompileOptions::default()
                .with_dtype(F)
                .with_backend(BackendKind::Interpreter),
        )
        .unwrap();
    let params = init_params(&model.params, 4).unwrap();
    let batch = batch_for(&model, F, 3, 2);
    let v = direction_like(&params, 8);
    let loss = "softmax_cross_entropy";
    let expected = common::explicit_gv(&compiled, loss, &params, &batch, &v);
    let got = common::flatten(&compiled.gv(&params, &batch, &v).unwrap());
    common::assert_close_to_explicit("tiny CNN", &got, &expected);
    let staged = compiled
        .gv_operator(&params, &batch)
        .unwrap()
        .apply(&v)
        .unwrap();
    common::assert_close_to_explicit(
        "tiny CNN, prepare + apply",
        &common::flatten(&staged),
        &expected,
    );
}

#[test]
fn an_f32_plane_too_large_for_exact_argmax_indices_is_a_shape_error() {
    let mut g = Graph::new("huge");
    let (kernel, window) = ([2, 2], window([2, 2], [[0; 2]; 2], [1, 1]));
    for (side, dtype, fits) in [
        (4096, F, true),
        (4097, DType::F32, false),
        (4096, DType::F32, true),
    ] {
        let x = g.add_arg(
            format!("x{side}{}", dtype.name()),
            ArgRole::Input,
            TensorType::new(dtype, fixed(&[1, 1, side, side])),
        );
        let pooled = g.apply(Op::Conv(Conv::MaxPool2d { kernel, window }), &[x]);
        assert_eq!(pooled.is_ok(), fits, "{side}² {}", dtype.name());
        if let Err(e) = pooled {
            let e = e.to_string();
            assert!(
                e.contains("max_pool2d") && e.contains("f32 holds exactly"),
                "{e}"
            );
        }
    }
}
