//! Split-k tiles for f32 products of 17-20 columns with `a`'s rows contiguous (`x @ w1` of a
//! small net): each row's accumulators hold four columns × four residues of `p` mod 4, fed by one
//! 128-bit broadcast of `a[r, p..p+4]` per five FMAs, `b` packed once per call (see the parent
//! module's doc).

use super::avx512::mask;
use std::arch::x86_64::*;

/// Rows of a tile of [`split_k_f32`].
const SPLIT_K_ROWS: usize = 5;

/// `c[i..i+R, ..n]`, `4(M − 1) < n ≤ 4M`, for `a` with unit column stride, each element
/// summed in four parts, `p ≡ q (mod 4)` in lane `4j + q` of the accumulator of columns
/// `4m..4m+4`: per row and four `p`, one load broadcasts `a[r, p..p+4]` to the four 128-bit
/// lanes, for `M` FMAs with `packed`'s next `M` vectors (see [`pack_split_k`]).
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn split_k_tile_f32<const M: usize, const R: usize>(
    i: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    packed: *const f32,
    c: *mut f32,
    rsc: isize,
) {
    debug_assert!(
        4 * (M - 1) < n && n <= 4 * M,
        "{n} columns in {M} groups of 4"
    );
    // SAFETY (all accesses): inside the matrices the caller described, `packed` holding
    // `16·M·⌈k/4⌉` floats; masked lanes are not accessed. (Row pointers wrap: with k = 0
    // `a` may be empty.)
    let rows: [*const f32; R] = std::array::from_fn(|r| a.wrapping_offset((i + r) as isize * rsa));
    let mut acc = [[_mm512_setzero_ps(); M]; R];
    let step = |acc: &mut [[__m512; M]; R], g: usize, a4: &dyn Fn(*const f32) -> __m128| {
        let bv: [__m512; M] =
            std::array::from_fn(|m| unsafe { _mm512_loadu_ps(packed.add(16 * (g * M + m))) });
        for (acc, &row) in acc.iter_mut().zip(&rows) {
            let a4 = _mm512_broadcast_f32x4(a4(unsafe { row.add(4 * g) }));
            for (acc, bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(a4, *bv, *acc);
            }
        }
    };
    let whole = k / 4;
    for g in 0..whole {
        step(&mut acc, g, &|at| unsafe { _mm_loadu_ps(at) });
    }
    if 4 * whole < k {
        let left = ((1u32 << (k - 4 * whole)) - 1) as __mmask8;
        step(&mut acc, whole, &|at| unsafe {
            _mm_maskz_loadu_ps(left, at)
        });
    }
    // Each column's sum is (q0 + q1) + (q2 + q3). Four accumulators at a time: sums of
    // adjacent lanes of two of them side by side, twice (lane 4j + e: accumulator e's column
    // j), then one permutation to column order: 11 instructions where one at a time took 24,
    // which counted for small `k` (20: as many as the FMAs).
    let halves = |x: __m512, y: __m512| {
        let even = _mm512_shuffle_ps::<0b10_00_10_00>(x, y);
        let odd = _mm512_shuffle_ps::<0b11_01_11_01>(x, y);
        _mm512_add_ps(even, odd)
    };
    for (r, acc) in acc.iter().enumerate() {
        let c_row = unsafe { c.offset((i + r) as isize * rsc) };
        let mut m = 0;
        while m + 4 <= M {
            let pairs = [halves(acc[m], acc[m + 1]), halves(acc[m + 2], acc[m + 3])];
            let sums = _mm512_permutexvar_ps(lane_transpose(), halves(pairs[0], pairs[1]));
            let columns = mask(n, m / 4, 16) as __mmask16;
            unsafe { _mm512_mask_storeu_ps(c_row.add(4 * m), columns, sums) };
            m += 4;
        }
        for (m, &acc) in acc.iter().enumerate().skip(m) {
            // The same sums with the accumulator as both halves: column j in lane 4j.
            let pairs = halves(acc, acc);
            let sums = halves(pairs, pairs);
            let four = _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, sums));
            let columns = mask(n, m, 4) as __mmask8;
            unsafe { _mm_mask_storeu_ps(c_row.add(4 * m), columns, four) };
        }
    }
}

/// The permutation of a 4×4 block of lanes: lane `4j + q` takes lane `4q + j`.
#[target_feature(enable = "avx512f")]
fn lane_transpose() -> __m512i {
    _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
}

/// `b` (`k × n`, `4(M − 1) < n ≤ 4M`) for [`split_k_tile_f32`]: per group `g` of four `p`
/// and group `m` of four columns, 16 floats with `b[4g + q, 4m + j]` at `4j + q`, zero past
/// `k` and `n`. Each a 4×4 block: four 128-bit loads and one permutation (a scalar loop took
/// 8 µs for 784×20, as long as 96 rows of the product).
///
/// # Safety
/// The host must have AVX-512; `b` must hold a `k × n` matrix with row stride `rsb`.
#[target_feature(enable = "avx512f,avx512vl")]
pub(super) unsafe fn pack_split_k<const M: usize>(
    k: usize,
    n: usize,
    b: *const f32,
    rsb: isize,
) -> Vec<f32> {
    debug_assert!(
        4 * (M - 1) < n && n <= 4 * M,
        "{n} columns in {M} groups of 4"
    );
    let groups = k.div_ceil(4);
    let len = 16 * M * groups;
    // Every block is stored below, so nothing is zeroed first (62.7 KB for 784×20).
    let mut packed: Vec<f32> = Vec::with_capacity(len);
    let out = packed.spare_capacity_mut().as_mut_ptr().cast::<f32>();
    // Lane 4j + q takes lane 4q + j of the four rows stacked.
    let transpose = lane_transpose();
    for g in 0..groups {
        // SAFETY (all accesses): rows of `b` below `k`, columns below `n` (masked);
        // `packed` has room for every group.
        let row = |q: usize, m: usize| unsafe {
            if 4 * g + q < k {
                let columns = mask(n, m, 4) as __mmask8;
                _mm_maskz_loadu_ps(columns, b.offset((4 * g + q) as isize * rsb).add(4 * m))
            } else {
                _mm_setzero_ps()
            }
        };
        for m in 0..M {
            let stacked = _mm512_castps128_ps512(row(0, m));
            let stacked = _mm512_insertf32x4::<1>(stacked, row(1, m));
            let stacked = _mm512_insertf32x4::<2>(stacked, row(2, m));
            let stacked = _mm512_insertf32x4::<3>(stacked, row(3, m));
            let block = _mm512_permutexvar_ps(transpose, stacked);
            unsafe { _mm512_storeu_ps(out.add(16 * (g * M + m)), block) };
        }
    }
    // SAFETY: the loops above wrote all `len` floats.
    unsafe { packed.set_len(len) };
    packed
}

/// 17-20 columns for `a` with unit column stride: tiles of [`split_k_tile_f32`] over `b`
/// packed once per call, the rows left over in smaller tiles (each row the same bits in any
/// tile, so in any split between threads).
#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn split_k_f32(
    rows: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    b: *const f32,
    rsb: isize,
    c: *mut f32,
    rsc: isize,
) {
    // SAFETY: forwarded from the caller.
    let packed = unsafe { pack_split_k::<5>(k, n, b, rsb) };
    let packed = packed.as_ptr();
    let mut i = 0;
    while i + SPLIT_K_ROWS <= rows {
        // SAFETY: forwarded from the caller.
        unsafe { split_k_tile_f32::<5, SPLIT_K_ROWS>(i, k, n, a, rsa, packed, c, rsc) };
        i += SPLIT_K_ROWS;
    }
    // The 1-4 rows left in tiles of 2 and 1: a row alone has only five FMA chains.
    while i < rows {
        type Tile = unsafe fn(usize, usize, usize, *const f32, isize, *const f32, *mut f32, isize);
        let (height, tile): (usize, Tile) = match rows - i {
            2.. => (2, split_k_tile_f32::<5, 2>),
            _ => (1, split_k_tile_f32::<5, 1>),
        };
        // SAFETY: as above.
        unsafe { tile(i, k, n, a, rsa, packed, c, rsc) };
        i += height;
    }
}

#[cfg(test)]
mod tests {
    use crate::codegen::narrow;

    /// 17-20 columns with `a`'s rows contiguous take the split-`k` tiles: every element within
    /// the worst-case rounding of its sum (`(k + 1)·2⁻²⁴·Σ|a·b|`) of the exact one, and every row
    /// with the same bits whether computed with all rows or from a later row on (a split between
    /// threads), for row counts around the tiles', `k` in every residue mod 4 (below 4 too), and
    /// padded rows of `a`, `b` and `c` whose padding (NaN) is neither read into `c` nor written.
    #[test]
    fn split_k_keeps_each_rows_bits() {
        if !narrow::available() {
            return;
        }
        for (rows, k, n) in [
            (5, 16, 20),
            (13, 5, 17),
            (29, 37, 19),
            (64, 300, 20),
            (3, 1, 18),
            (7, 2, 17),
            (6, 3, 19),
            (9, 6, 18),
            (4, 1, 20),
            (17, 0, 20),
            (11, 787, 20),
        ] {
            let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 7.0;
            let (rsa, rsb, rsc) = (k + 3, n + 5, n + 7);
            let padded = |rows: usize, columns: usize, stride: usize, seed: usize| -> Vec<f32> {
                (0..rows * stride)
                    .map(|e| match e % stride < columns {
                        true => value(e + seed),
                        false => f32::NAN,
                    })
                    .collect()
            };
            let a = padded(rows, k, rsa, 0);
            let b = padded(k, n, rsb, 3);
            let from_row = |from: usize| {
                let mut c = vec![f32::NAN; (rows - from) * rsc];
                // SAFETY: the host has AVX-512; the matrices are as described.
                unsafe {
                    let a = a.as_ptr().add(from * rsa);
                    let (b, c_ptr) = (b.as_ptr(), c.as_mut_ptr());
                    narrow::gemm(
                        rows - from,
                        k,
                        n,
                        a,
                        rsa as isize,
                        1,
                        b,
                        rsb as isize,
                        c_ptr,
                        rsc as isize,
                    )
                };
                assert!(
                    c.iter()
                        .enumerate()
                        .all(|(e, x)| (e % rsc < n) != x.is_nan()),
                    "{rows}×{k}×{n}"
                );
                c
            };
            let all = from_row(0);
            for i in 0..rows {
                for j in 0..n {
                    let terms = (0..k).map(|p| a[i * rsa + p] as f64 * b[p * rsb + j] as f64);
                    let exact: f64 = terms.clone().sum();
                    let bound =
                        (k as f64 + 1.0) * 2f64.powi(-24) * terms.map(f64::abs).sum::<f64>();
                    let error = (all[i * rsc + j] as f64 - exact).abs();
                    assert!(
                        error <= bound,
                        "{rows}×{k}×{n} [{i}, {j}]: {error} > {bound}"
                    );
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for from in [1, 4, 5, 6, rows / 2, rows - 1] {
                let from = from.min(rows - 1);
                assert_eq!(
                    bits(&from_row(from)),
                    bits(&all[from * rsc..]),
                    "{rows}×{k}×{n} from {from}"
                );
            }
        }
    }

    /// The pack reads no column past `n` and no row past `k` (NaN there) and leaves their
    /// lanes +0, for every `n` the split-k tiles take and `k` in every residue mod 4.
    #[test]
    fn pack_split_k_zeroes_past_the_matrix() {
        if !narrow::available() {
            return;
        }
        for n in 17..=20 {
            for k in [1, 2, 3, 4, 5, 9] {
                let rsb = n + 3;
                let b: Vec<f32> = (0..(k + 1) * rsb)
                    .map(|e| match (e / rsb < k, e % rsb < n) {
                        (true, true) => e as f32 + 1.0,
                        _ => f32::NAN,
                    })
                    .collect();
                // SAFETY: the host has AVX-512; `b` holds k rows of n columns, stride rsb.
                let packed = unsafe { super::pack_split_k::<5>(k, n, b.as_ptr(), rsb as isize) };
                for (at, &value) in packed.iter().enumerate() {
                    let (g, m, lane) = (at / 80, at / 16 % 5, at % 16);
                    let (p, j) = (4 * g + lane % 4, 4 * m + lane / 4);
                    let expected = if p < k && j < n { b[p * rsb + j] } else { 0.0 };
                    assert_eq!(value.to_bits(), expected.to_bits(), "n {n} k {k} at {at}");
                }
            }
        }
    }
}
