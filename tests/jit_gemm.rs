//! Matrix products through the JIT's GEMM shim against the interpreter: every transpose
//! combination, widths around the narrow kernels' vector sizes (and past their limit, where
//! the `gemm` crate takes over, up to sizes where it packs panels), odd row counts that leave
//! partial tiles, one and two threads.

use sgn::codegen::{JitOptions, compile_graph};
use sgn::ir::{ArgRole, DType, Graph, Op, Shape, Tensor, TensorType, interp};

fn values(dtype: DType, shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| (((i * 37 + seed * 101) % 199) as f64 - 99.0) / 50.0)
        .collect();
    Tensor::from_f64(dtype, shape, v).unwrap()
}

#[test]
fn products_of_every_shape_and_layout_match_the_interpreter() {
    for dtype in [DType::F32, DType::F64] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for m in [1usize, 7, 17, 40, 203] {
                for k in [1usize, 5, 64, 300] {
                    for n in [1usize, 3, 8, 10, 15, 16, 17, 20, 23, 31, 32, 33, 129] {
                        let a_shape = if ta { [k, m] } else { [m, k] };
                        let b_shape = if tb { [n, k] } else { [k, n] };
                        let mut g = Graph::new("product");
                        let ty = |s: [usize; 2]| {
                            TensorType::new(dtype, Shape::fixed(&[s[0] as u64, s[1] as u64]))
                        };
                        let a = g.add_arg("a", ArgRole::Input, ty(a_shape));
                        let b = g.add_arg("b", ArgRole::Input, ty(b_shape));
                        let op = Op::MatMul {
                            transpose_a: ta,
                            transpose_b: tb,
                        };
                        let c = g.apply(op, &[a, b]).unwrap();
                        g.add_output("c", c);
                        let args = vec![values(dtype, &a_shape, 1), values(dtype, &b_shape, 2)];
                        let expected = interp::run(&g, &args).unwrap();
                        for threads in [1, 2] {
                            let jit =
                                compile_graph(&g, &JitOptions::default().with_threads(threads))
                                    .unwrap();
                            let got = jit.run(&args).unwrap();
                            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
                            let diff = got[0].max_rel_diff(&expected[0]);
                            assert!(
                                diff <= tolerance,
                                "{dtype} {m}x{k}x{n} ta={ta} tb={tb} on {threads} threads: {diff:e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
