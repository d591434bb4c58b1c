//! Matrix products through the JIT's GEMM shim against a plain triple loop in f64, element by
//! element within the textbook rounding bound: every transpose combination, widths around the
//! narrow kernels' vector sizes (and past their limit, up to sizes where the `gemm` crate packs
//! panels), odd row counts that leave partial tiles; on every GEMM path the host supports (the
//! narrow AVX-512 kernels are forced where the host has them, the `gemm` crate on narrow shapes
//! too) and on 1, 2 and 3 threads with products split at every size, bit-identical; and the
//! bf16 products (where the host has AVX512-BF16) against the exact product of the rounded
//! operands.

use crate::common;

use common::bits;
use sgn::codegen::{
    GemmKernels, JitOptions, ParallelMin, compile_graph, host_has_bf16_products,
    host_has_narrow_kernels,
};
use sgn::ir::{ArgRole, DType, Graph, Op, Shape, Tensor, TensorType, interp};

fn values(dtype: DType, shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| (((i * 37 + seed * 101) % 199) as f64 - 99.0) / 50.0)
        .collect();
    Tensor::from_f64(dtype, shape, v).unwrap()
}

/// `op(a) @ op(b)` in f64 by the definition, and `|op(a)| @ |op(b)|`, the scale of its rounding.
fn reference(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> (Vec<f64>, Vec<f64>) {
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let (a_cols, b_cols) = (a.shape()[1], b.shape()[1]);
    let (m, k) = if ta {
        (a_cols, a.shape()[0])
    } else {
        (a.shape()[0], a_cols)
    };
    let n = if tb { b.shape()[0] } else { b_cols };
    let at = |i: usize, p: usize| {
        if ta {
            av[p * a_cols + i]
        } else {
            av[i * a_cols + p]
        }
    };
    let bt = |p: usize, j: usize| {
        if tb {
            bv[j * b_cols + p]
        } else {
            bv[p * b_cols + j]
        }
    };
    let (mut product, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                product[i * n + j] += at(i, p) * bt(p, j);
                scale[i * n + j] += (at(i, p) * bt(p, j)).abs();
            }
        }
    }
    (product, scale)
}

/// Asserts |got − exact| ≤ 2·γₖ·(|a||b|) element by element, γₖ = k·u/(1 − k·u) for the unit
/// roundoff u of `dtype`: the bound of any summation order, with or without FMA, doubled to
/// cover the f64 reference's own rounding.
fn assert_within_rounding(what: &str, got: &Tensor, exact: &[f64], scale: &[f64], k: usize) {
    let u = match got.dtype() {
        DType::F32 => f64::from(f32::EPSILON) / 2.0,
        DType::F64 => f64::EPSILON / 2.0,
    };
    let gamma = k as f64 * u / (1.0 - k as f64 * u);
    for (i, ((g, e), s)) in got.to_f64_vec().iter().zip(exact).zip(scale).enumerate() {
        assert!(
            (g - e).abs() <= 2.0 * gamma * s,
            "{what}: element {i} is {g:e}, exact {e:e}, bound {:e}",
            2.0 * gamma * s
        );
    }
}

#[test]
fn products_of_every_shape_and_layout_are_within_rounding_of_the_exact_product() {
    // The narrow kernels, forced, exist only on hosts with AVX-512.
    let mut kernels = vec![GemmKernels::General];
    let narrow = JitOptions {
        gemm: GemmKernels::Narrow,
        ..JitOptions::default()
    };
    if host_has_narrow_kernels() {
        kernels.push(GemmKernels::Narrow);
    } else {
        let error = compile_graph(&Graph::new("empty"), &narrow)
            .unwrap_err()
            .to_string();
        assert!(error.contains("AVX-512"), "{error}");
        println!("narrow GEMM kernels: not run, this host has no AVX-512 ({error})");
    }
    const WIDTHS: [usize; 13] = [1, 3, 8, 10, 15, 16, 17, 20, 23, 31, 32, 33, 129];
    for dtype in [DType::F32, DType::F64] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // 100 with n = 129: a product cut by columns into even blocks (the uncut m > 64).
            for m in [1usize, 7, 17, 40, 100, 203] {
                // 32 and 33: a transposed `b` up to 32×32 is copied to rows, a longer one is not;
                // 600: the `gemm` crate sums in two k-blocks, of 512 where m and n are ≤ 64.
                for k in [1usize, 5, 32, 33, 300, 600] {
                    // One graph for every width n: one `a`, one `b` and one product per width.
                    let a_shape = if ta { [k, m] } else { [m, k] };
                    let b_shape = |n: usize| if tb { [n, k] } else { [k, n] };
                    let mut g = Graph::new("products");
                    let ty = |s: [usize; 2]| {
                        TensorType::new(dtype, Shape::fixed(&[s[0] as u64, s[1] as u64]))
                    };
                    let a = g.add_arg("a", ArgRole::Input, ty(a_shape));
                    let mut args = vec![values(dtype, &a_shape, 1)];
                    for n in WIDTHS {
                        let b = g.add_arg(format!("b{n}"), ArgRole::Input, ty(b_shape(n)));
                        let op = Op::matmul(ta, tb);
                        let c = g.apply(op, &[a, b]).unwrap();
                        g.add_output(format!("c{n}"), c);
                        args.push(values(dtype, &b_shape(n), 2));
                    }
                    let references: Vec<(Vec<f64>, Vec<f64>)> = args[1..]
                        .iter()
                        .map(|b| reference(&args[0], b, ta, tb))
                        .collect();
                    let check = |what: &str, outputs: &[Tensor]| {
                        for ((n, got), (exact, scale)) in
                            WIDTHS.iter().zip(outputs).zip(&references)
                        {
                            let what = format!("{dtype} {m}x{k}x{n} ta={ta} tb={tb} {what}");
                            assert_within_rounding(&what, got, exact, scale, k);
                        }
                    };
                    check("interpreter", &interp::run(&g, &args).unwrap());
                    for &gemm in &kernels {
                        let mut one_thread = None;
                        for threads in [1, 2, 3] {
                            let options = JitOptions {
                                gemm,
                                parallel_min: ParallelMin::NONE,
                                ..JitOptions::default().with_threads(threads)
                            };
                            let got = compile_graph(&g, &options).unwrap().run(&args).unwrap();
                            let what = format!("{gemm:?} on {threads} threads");
                            check(&what, &got);
                            let got: Vec<Vec<u64>> = got.iter().map(bits).collect();
                            let first = one_thread.get_or_insert_with(|| got.clone());
                            assert!(
                                *first == got,
                                "{dtype} {m}x{k} ta={ta} tb={tb} {what}: differs from one thread"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f64: the operand a bf16 product sees.
fn to_bf16(x: f64) -> f64 {
    let bits = (x as f32).to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f64::from(f32::from_bits(rounded))
}

#[test]
fn bf16_products_are_products_of_rounded_operands_within_f32_rounding_on_any_thread_count() {
    let bf16 = JitOptions {
        bf16_products: true,
        parallel_min: ParallelMin::NONE,
        ..JitOptions::default()
    };
    if !host_has_bf16_products() {
        let error = compile_graph(&Graph::new("empty"), &bf16)
            .unwrap_err()
            .to_string();
        assert!(error.contains("AVX512-BF16"), "{error}");
        println!("bf16 products: not run, this host has no AVX512-BF16 ({error})");
        return;
    }
    let ty =
        |s: [usize; 2], dtype| TensorType::new(dtype, Shape::fixed(&[s[0] as u64, s[1] as u64]));
    // An f64 graph is refused: bf16 is for f32 graphs.
    let mut g64 = Graph::new("f64");
    let x = g64.add_arg("x", ArgRole::Input, ty([2, 2], DType::F64));
    let y = g64.apply(Op::matmul(false, false), &[x, x]).unwrap();
    g64.add_output("y", y);
    let error = compile_graph(&g64, &bf16).unwrap_err().to_string();
    assert!(error.contains("f64"), "{error}");

    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for m in [7usize, 40, 203] {
            for k in [1usize, 5, 64, 300] {
                for n in [20usize, 33, 129] {
                    let a_shape = if ta { [k, m] } else { [m, k] };
                    let b_shape = if tb { [n, k] } else { [k, n] };
                    let mut g = Graph::new("product");
                    let a = g.add_arg("a", ArgRole::Input, ty(a_shape, DType::F32));
                    let b = g.add_arg("b", ArgRole::Input, ty(b_shape, DType::F32));
                    let c = g.apply(Op::matmul(ta, tb), &[a, b]).unwrap();
                    g.add_output("c", c);
                    let args = [
                        values(DType::F32, &a_shape, 3),
                        values(DType::F32, &b_shape, 4),
                    ];
                    // Products with 32 or fewer rows, columns or inner length stay f32 (see
                    // JitOptions).
                    let rounds = m.min(n).min(k) > 32;
                    let operand = |t: &Tensor| {
                        let v = t.to_f64_vec();
                        let v = if rounds {
                            v.into_iter().map(to_bf16).collect()
                        } else {
                            v
                        };
                        Tensor::from_f64(DType::F64, t.shape(), v).unwrap()
                    };
                    let (exact, scale) = reference(&operand(&args[0]), &operand(&args[1]), ta, tb);
                    let mut one_thread = None;
                    for threads in [1, 2, 3] {
                        let options = bf16.clone().with_threads(threads);
                        let got = compile_graph(&g, &options).unwrap().run(&args).unwrap();
                        let what = format!("bf16 {m}x{k}x{n} ta={ta} tb={tb} {threads} threads");
                        assert_within_rounding(&what, &got[0], &exact, &scale, k);
                        let first = one_thread.get_or_insert_with(|| bits(&got[0]));
                        assert!(*first == bits(&got[0]), "{what}: differs from one thread");
                    }
                }
            }
        }
    }
}
