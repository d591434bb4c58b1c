//! The bf16 products against the f64 products of their rounded operands, on both drivers,
//! and the kept packings.

use super::*;

fn bf16_to_f32(x: u16) -> f32 {
    f32::from_bits(u32::from(x) << 16)
}

#[test]
fn rounding_to_bf16_is_to_nearest_with_ties_to_even() {
    // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa, 1.
    assert_eq!(bf16_to_f32(round_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
    // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to 1 + 2⁻⁶.
    let x = 1.0 + 3.0 / 256.0;
    assert_eq!(bf16_to_f32(round_to_bf16(x)), 1.0 + 1.0 / 64.0);
    assert_eq!(
        bf16_to_f32(round_to_bf16(1.0 + 1.5 / 256.0)),
        1.0 + 1.0 / 128.0
    );
    assert_eq!(bf16_to_f32(round_to_bf16(-3.0)), -3.0);
    assert_eq!(bf16_to_f32(round_to_bf16(f32::INFINITY)), f32::INFINITY);
    assert!(bf16_to_f32(round_to_bf16(f32::NAN)).is_nan());
    // The largest finite f32 rounds up past bf16's largest finite value.
    assert_eq!(bf16_to_f32(round_to_bf16(f32::MAX)), f32::INFINITY);
}

/// How a test operand is laid out: which of its strides is 1, if any.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Rows,
    Columns,
    Strided,
}

/// Which code computes a product in [`check`].
#[derive(Clone, Copy, Debug)]
enum Engine {
    /// [`gemm`], as the JIT calls it: AMX tiles where usable, else `vdpbf16ps`.
    Host,
    /// The `vdpbf16ps` kernel.
    Vectors,
    /// The AMX driver on the software model of the tiles.
    EmulatedTiles,
    /// The AMX driver on `Hardware`'s tile instructions, carried out on the model when they
    /// fault ([`tile_model::emulating_tile_faults`]).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    FaultingTiles,
}

impl Engine {
    /// Runs the product on this engine's driver (not `Host`).
    ///
    /// # Safety
    /// As for [`gemm_on_vectors`].
    unsafe fn run(
        self,
        size: [usize; 3],
        a: &Operand,
        b: &Operand,
        c: &Output,
        kept: [Option<&mut Kept>; 2],
    ) {
        // SAFETY: as the caller guarantees.
        unsafe {
            match self {
                Engine::Host => unreachable!("the host's product takes raw matrices"),
                Engine::Vectors => gemm_on_vectors(size, a, b, c, kept),
                Engine::EmulatedTiles => {
                    amx::gemm_into::<tile_model::Emulated>(size, a, b, c, kept)
                }
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                Engine::FaultingTiles => amx::gemm_into::<amx::Hardware>(size, a, b, c, kept),
            }
        }
    }
}

/// c = a @ b for a[i, p] = f(i, p) (`a` and `c` laid out as `a_layout`), against the same
/// product of the bf16-rounded operands in f64; returns `c`, row-major.
fn check(engine: Engine, [m, k, n]: [usize; 3], a_layout: Layout, b_layout: Layout) -> Vec<f32> {
    let value = |i: usize, j: usize, salt: usize| {
        (((i * 131 + j * 71 + salt * 17) % 97) as f32 - 48.0) / 37.0 + 1.0 / 3.0
    };
    let a_values: Vec<f32> = (0..m * k).map(|x| value(x / k, x % k, 1)).collect();
    let b_values: Vec<f32> = (0..k * n).map(|x| value(x / n, x % n, 2)).collect();
    // The values with their row and column strides; NaN where no element is.
    let layout = |rows: usize, cols: usize, values: &[f32], layout: Layout| {
        let (rs, cs) = match layout {
            Layout::Rows => (cols, 1),
            Layout::Columns => (1, rows),
            Layout::Strided => (2 * cols + 1, 2),
        };
        let mut t = vec![f32::NAN; rows.max(1) * rs + cols.max(1) * cs];
        for i in 0..rows {
            for j in 0..cols {
                t[i * rs + j * cs] = values[i * cols + j];
            }
        }
        (t, rs as isize, cs as isize)
    };
    let (a, rsa, csa) = layout(m, k, &a_values, a_layout);
    let (b, rsb, csb) = layout(k, n, &b_values, b_layout);
    let (mut c, rsc, csc) = layout(m, n, &vec![f32::NAN; m * n], a_layout);
    let operand = |at: &[f32], lane_stride, k_stride| Operand {
        at: at.as_ptr(),
        lane_stride,
        k_stride,
    };
    let (a_operand, b_operand) = (operand(&a, rsa, csa), operand(&b, csb, rsb));
    let output = Output {
        at: c.as_mut_ptr(),
        rs: rsc,
        cs: csc,
    };
    // SAFETY: the host has AVX512-BF16 (checked by the caller); sizes as allocated.
    unsafe {
        match engine {
            Engine::Host => gemm(
                m,
                k,
                n,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                output.at,
                rsc,
                csc,
                None,
            ),
            Engine::Vectors | Engine::EmulatedTiles => {
                engine.run([m, k, n], &a_operand, &b_operand, &output, [None, None])
            }
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Engine::FaultingTiles => {
                engine.run([m, k, n], &a_operand, &b_operand, &output, [None, None])
            }
        }
    };
    let c: Vec<f32> = (0..m * n)
        .map(|x| c[(x / n) * rsc as usize + (x % n) * csc as usize])
        .collect();
    let rounded = |x: f32| f64::from(bf16_to_f32(round_to_bf16(x)));
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut magnitude) = (0.0, 0.0);
            for p in 0..k {
                let t = rounded(a_values[i * k + p]) * rounded(b_values[p * n + j]);
                exact += t;
                magnitude += t.abs();
            }
            let got = f64::from(c[i * n + j]);
            // Products of bf16 are exact in f32; only the f32 sums round.
            let tolerance = magnitude * 1e-6 + 1e-30;
            assert!(
                (got - exact).abs() <= tolerance,
                "{m}x{k}x{n} ({a_layout:?}, {b_layout:?}) at ({i}, {j}): {got} vs {exact}"
            );
        }
    }
    c
}

/// Every pair of operand layouts.
const LAYOUTS: [(Layout, Layout); 9] = {
    let [r, c, s] = [Layout::Rows, Layout::Columns, Layout::Strided];
    [
        (r, r),
        (r, c),
        (r, s),
        (c, r),
        (c, c),
        (c, s),
        (s, r),
        (s, c),
        (s, s),
    ]
};

/// Runs [`check`] for each size and pair of layouts.
fn check_all(engine: Engine, sizes: &[[usize; 3]]) {
    for &size in sizes {
        for (a_layout, b_layout) in LAYOUTS {
            check(engine, size, a_layout, b_layout);
        }
    }
}

#[test]
fn products_equal_those_of_the_rounded_operands_over_ragged_and_blocked_sizes() {
    if !available() {
        println!("bf16 products: not run, this host has no AVX512-BF16");
        return;
    }
    let sizes = [
        [1, 1, 1],
        [7, 3, 31],
        [9, 5, 33],
        [17, 257, 20],
        [MC + 3, KC * 2 + 1, 65],
        [5, 11, NC + 7],
    ];
    check_all(Engine::Vectors, &sizes);
    check_all(Engine::Host, &sizes);
    check_all(Engine::Host, &[[3, 0, 5]]);
}

/// One partial tile; two blocks each way; two k blocks (the last 3 pairs) and two column
/// blocks (the last of 3 panels, one of zeros); two row blocks.
const TILE_SIZES: [[usize; 3]; 5] = [
    [1, 1, 1],
    [15, 31, 17],
    [33, 33, 64],
    [40, 2 * amx::KC_PAIRS + 5, amx::NC + 44],
    [amx::MC + 37, 35, 70],
];

#[test]
fn tile_products_equal_those_of_the_rounded_operands_over_ragged_and_blocked_sizes() {
    if !available() {
        println!("bf16 products: not run, this host has no AVX512-BF16 (for the packing)");
        return;
    }
    check_all(Engine::EmulatedTiles, &TILE_SIZES);
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn the_tile_instructions_as_assembled_give_the_products_of_the_model() {
    if !available() {
        println!("tile faults: not run, this host has no AVX512-BF16 (for the packing)");
        return;
    }
    if amx::host_has_tiles().is_ok() {
        println!("tile faults: not run, this CPU has AMX (its self-check runs the tiles)");
        return;
    }
    // `Hardware`'s instructions, carried out on the model as they fault: the same bits as the
    // model's restatement of them, for every size and layout.
    let ((), faults) = tile_model::emulating_tile_faults(|| {
        for size in TILE_SIZES {
            for (a_layout, b_layout) in LAYOUTS {
                let bits = |c: Vec<f32>| c.into_iter().map(f32::to_bits).collect::<Vec<_>>();
                let as_assembled = check(Engine::FaultingTiles, size, a_layout, b_layout);
                let on_model = check(Engine::EmulatedTiles, size, a_layout, b_layout);
                assert!(
                    bits(as_assembled) == bits(on_model),
                    "{size:?} ({a_layout:?}, {b_layout:?})"
                );
            }
        }
        // The self-check an AMX host runs before using the tiles passes on them.
        assert_eq!(amx::agrees_with_avx512_bf16(), Ok(()));
    });
    assert!(faults > 0, "no tile instruction faulted");
    println!("{faults} tile instructions carried out on the model");
}

#[test]
fn operands_are_rounded_to_bf16() {
    if !available() {
        println!("bf16 products: not run, this host has no AVX512-BF16");
        return;
    }
    // 1 + 2⁻¹⁰ is 1 in bf16, so (1 + 2⁻¹⁰)² = 1 exactly; in f32 it would be 1 + 2⁻⁹.
    let x = 1.0 + 1.0 / 1024.0;
    let mut c = [0f32];
    // SAFETY: one element each.
    unsafe { gemm(1, 1, 1, &x, 1, 1, &x, 1, 1, c.as_mut_ptr(), 1, 1, None) };
    assert_eq!(c[0], 1.0);
}

#[test]
fn kept_packings_give_the_same_products_and_follow_their_operand() {
    if !available() {
        println!("bf16 products: not run, this host has no AVX512-BF16");
        return;
    }
    // Each driver's blocks: two of rows, two or three of k, two of columns.
    for (engine, unit, [m, k, n]) in [
        (
            Engine::Vectors,
            Unit::Vectors,
            [MC + 9, 2 * KC + 7, NC + 70],
        ),
        (
            Engine::EmulatedTiles,
            Unit::Tiles,
            [amx::MC + 9, 2 * amx::KC_PAIRS + 7, amx::NC + 40],
        ),
    ] {
        let values = |len: usize, salt: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 37 + salt) % 101) as f32 / 64.0 - 0.75)
                .collect()
        };
        let (a, b) = (values(m * k, 1), values(k * n, 2));
        let rows = |x: &[f32]| Operand {
            at: x.as_ptr(),
            lane_stride: k as isize,
            k_stride: 1,
        };
        let columns = |x: &[f32]| Operand {
            at: x.as_ptr(),
            lane_stride: 1,
            k_stride: n as isize,
        };
        let product = |a: &[f32], b: &[f32], kept: [Option<&mut Kept>; 2]| {
            let mut c = vec![f32::NAN; m * n];
            let output = Output {
                at: c.as_mut_ptr(),
                rs: n as isize,
                cs: 1,
            };
            // SAFETY: the host has AVX512-BF16; sizes as allocated.
            unsafe { engine.run([m, k, n], &rows(a), &columns(b), &output, kept) };
            c
        };
        let fresh = product(&a, &b, [None, None]);
        // Doubling an operand doubles the product exactly.
        let doubled: Vec<f32> = fresh.iter().map(|x| 2.0 * x).collect();
        let double = |x: &[f32]| -> Vec<f32> { x.iter().map(|x| 2.0 * x).collect() };
        for side in [Side::A, Side::B] {
            let mut kept = Kept::default();
            let mut run = |fixed: &[f32], other: &[f32]| match side {
                Side::A => {
                    let kept = kept.of(&rows(fixed), [m, k], unit);
                    product(fixed, other, [Some(kept), None])
                }
                Side::B => {
                    let kept = kept.of(&columns(fixed), [n, k], unit);
                    product(other, fixed, [None, Some(kept)])
                }
            };
            let (mut fixed, other) = match side {
                Side::A => (a.clone(), b.clone()),
                Side::B => (b.clone(), a.clone()),
            };
            let what = format!("{engine:?}, {side:?} fixed");
            // Packed and kept, then taken as kept: the bits of packing every time.
            assert_eq!(run(&fixed, &other), fresh, "{what}");
            assert_eq!(run(&fixed, &other), fresh, "{what}");
            // The other operand is packed every time.
            assert_eq!(run(&fixed, &double(&other)), doubled, "{what}");
            // Changed in place, the fixed operand is still taken as kept (the cache's
            // contract: its user vouches that it does not change).
            fixed.iter_mut().for_each(|x| *x *= 2.0);
            assert_eq!(run(&fixed, &other), fresh, "{what}");
            // Elsewhere in memory, it is packed again.
            assert_eq!(run(&fixed.clone(), &other), doubled, "{what}");
            // Every block packed once per address: 2 × blocks in all.
            let blocks = match (side, unit) {
                (Side::A, Unit::Vectors) => k.div_ceil(KC) * m.div_ceil(MC),
                (Side::B, Unit::Vectors) => k.div_ceil(KC) * n.div_ceil(NC),
                (Side::A, Unit::Tiles) => k.div_ceil(2 * amx::KC_PAIRS) * m.div_ceil(amx::MC),
                (Side::B, Unit::Tiles) => k.div_ceil(2 * amx::KC_PAIRS) * n.div_ceil(amx::NC),
            };
            assert_eq!(kept.packings, 2 * blocks, "{what}");
        }
    }
}

#[test]
fn the_memory_check_bounds_the_packings_a_call_keeps() {
    use crate::codegen::{Backend, JitOptions, compile_graph, runtime};
    use crate::ir::{ArgRole, DType, Dim, Graph, Shape, Tensor, TensorType, interp};
    if !available() {
        println!("bf16 products: not run, this host has no AVX512-BF16");
        return;
    }
    // Each way a fixed operand is kept: shared out among the threads, or read whole by each.
    let input = ArgRole::Input;
    let direction = ArgRole::Direction;
    for (what, [m, k, n], roles) in [
        ("a shared out by rows", [320, 256, 150], [input, direction]),
        (
            "a whole, threads take columns",
            [200, 320, 300],
            [input, direction],
        ),
        (
            "b whole, threads take rows",
            [400, 256, 100],
            [direction, input],
        ),
        (
            "b shared out by columns",
            [150, 256, 300],
            [direction, input],
        ),
    ] {
        let mut graph = Graph::new("kept");
        let mut arg = |name: &str, role, rows, columns| {
            let dims = vec![Dim::fixed(rows), Dim::fixed(columns)];
            graph.add_arg(name, role, TensorType::new(DType::F32, Shape(dims)))
        };
        let (a, b) = (arg("a", roles[0], m, k), arg("b", roles[1], k, n));
        let c = graph.matmul(a, b).unwrap();
        graph.add_output("c", c);
        let value = |rows, columns| {
            let values = (0..rows * columns).map(|i| (i % 7) as f64 / 7.0).collect();
            Tensor::from_f64(DType::F32, &[rows as usize, columns as usize], values).unwrap()
        };
        let args = [value(m, k), value(k, n)];
        let args: Vec<&Tensor> = args.iter().collect();
        let bindings = interp::bind_dims(&graph, &args).unwrap();
        for threads in [1, 2] {
            let options = JitOptions {
                bf16_products: true,
                ..JitOptions::default()
            };
            let jit = compile_graph(&graph, &options.with_threads(threads)).unwrap();
            let kept = PackCache::new();
            let mut outputs = jit.output_tensors(&bindings).unwrap();
            jit.run_into_keeping(&args, &mut outputs, &kept).unwrap();
            let bound = runtime::kept_bytes_bound(&jit.program, &bindings, threads as u64);
            let (bound, bytes) = (bound.unwrap(), kept.bytes() as u64);
            let what = format!("{what}, {threads} thread(s): {bytes} bytes kept, bound {bound}");
            assert!(kept.packings() >= threads, "{what}");
            assert!(bytes <= bound && 2 * bound <= 3 * bytes, "{what}");
        }
    }
}
