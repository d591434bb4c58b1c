//! GEMMs with a narrow right-hand side (at most 32 columns, rows contiguous), the shape of a
//! small network's first layer (`x @ w1` with `w1: [784, 20]`) and of its gradient
//! (`xᵀ @ δ`).
//!
//! A general GEMM (the `gemm` crate here, matrixmultiply before it) packs both operands into
//! panels of its register tiles; with 20 columns most of a tile is padding and packing `a`
//! dominates. Here `a` is never packed: a tile of rows of `c` stays in registers (one to four
//! 512-bit vectors per row, the last masked, or a 128-bit one for a tail of a quarter vector:
//! Zen 4 runs a 512-bit FMA at half the rate of a 128-bit one, so 20 columns as 16 + 4 take 3/4
//! of the time of two 512-bit vectors) while `k` runs, `a` read in place and broadcast,
//! `b`'s row loaded once per `k` for the whole tile; or, when `a`'s rows are adjacent in memory
//! (a transposed `a`), 16 (8) rows of `c` sit in the lanes of one vector per column of `c`
//! (two vectors while more than 16 (8) rows are left).
//! For f32 with 17-20 columns and `a`'s rows contiguous (`split_k.rs`), each row's accumulators
//! hold four columns × four residues of `p` mod 4: one load broadcasts `a[r, p..p+4]` to all four
//! 128-bit lanes for five full-width FMAs with `b` packed once per call. Broadcasting `a[r, p]` alone
//! fed 1.25 FMAs per load, and Zen 5 issues no more vector loads than FMAs; nor does it issue a
//! 128-bit FMA (for columns 17-20) faster than a 512-bit one.
//!
//! Each kernel sums every element of `c` in one order whatever the tile or the first row, so
//! results do not depend on how rows are split between threads. The order does depend on `a`'s
//! layout: with 17-20 columns, four interleaved parts for a row-major `a`, `p` order otherwise.

/// Widest `b` (in columns) this module handles.
pub const MAX_COLUMNS: usize = 32;

/// True if this host can run the narrow kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c = a @ b` for `rows` rows, `k` inner and `n ≤ MAX_COLUMNS` columns, in elements of `T`:
/// `a[i, p]` at `a + i·rsa + p·csa`, `b[p, j]` at `b + p·rsb + j`, `c[i, j]` at `c + i·rsc + j`.
///
/// # Safety
/// The host must have AVX-512 ([`available`]) and the pointers must describe valid matrices of
/// these sizes, `c` not overlapping the others.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<T: Element>(
    rows: usize,
    k: usize,
    n: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    c: *mut T,
    rsc: isize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { T::gemm(rows, k, n, a, rsa, csa, b, rsb, c, rsc) }
}

/// f32 or f64, with their kernels.
pub trait Element: Copy {
    /// See [`gemm`].
    ///
    /// # Safety
    /// As for [`gemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        rows: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        c: *mut Self,
        rsc: isize,
    );
}

#[cfg(target_arch = "x86_64")]
mod split_k;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Lanes of the mask selecting the first `count` (≤ `lanes`) lanes.
    pub(super) fn mask(n: usize, vector: usize, lanes: usize) -> u16 {
        let count = n.saturating_sub(vector * lanes).min(lanes);
        ((1u32 << count) - 1) as u16
    }

    /// The 16 × 16 matrix with rows `r`, transposed: interleaved 32-bit, then 64-bit pairs, then
    /// 128-bit quarters twice.
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose_f32(r: [__m512; 16]) -> [__m512; 16] {
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            match i % 2 {
                0 => _mm512_unpacklo_ps(x, y),
                _ => _mm512_unpackhi_ps(x, y),
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let base = i & !3;
            let (x, y) = (t[base + (i & 2) / 2], t[base + 2 + (i & 2) / 2]);
            let (x, y) = (_mm512_castps_pd(x), _mm512_castps_pd(y));
            _mm512_castpd_ps(match i % 2 {
                0 => _mm512_unpacklo_pd(x, y),
                _ => _mm512_unpackhi_pd(x, y),
            })
        });
        gather_quarters(u)
    }

    /// The 8 × 8 matrix with rows `r`, transposed: interleaved pairs, then 128-bit quarters
    /// twice.
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose_f64(r: [__m512d; 8]) -> [__m512d; 8] {
        let t: [__m512; 8] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            _mm512_castpd_ps(match i % 2 {
                0 => _mm512_unpacklo_pd(x, y),
                _ => _mm512_unpackhi_pd(x, y),
            })
        });
        gather_quarters(t).map(|v| _mm512_castps_pd(v))
    }

    /// The last two rounds of a transpose of `N` vectors (16 of f32, 8 of f64) whose 128-bit
    /// quarters already hold transposed blocks: the quarters gathered within each half of the
    /// vectors, then across the halves.
    #[target_feature(enable = "avx512f")]
    fn gather_quarters<const N: usize>(v: [__m512; N]) -> [__m512; N] {
        let (half, quarter) = (N / 2, N / 4);
        let w: [__m512; N] = std::array::from_fn(|i| {
            let first = i / half * half + i % quarter;
            let (x, y) = (v[first], v[first + quarter]);
            match i % half < quarter {
                true => _mm512_shuffle_f32x4::<0x88>(x, y),
                false => _mm512_shuffle_f32x4::<0xdd>(x, y),
            }
        });
        std::array::from_fn(|i| {
            let (x, y) = (w[i % half], w[half + i % half]);
            match i < half {
                true => _mm512_shuffle_f32x4::<0x88>(x, y),
                false => _mm512_shuffle_f32x4::<0xdd>(x, y),
            }
        })
    }

    macro_rules! narrow_kernels {
        ($elem:ty, $vec:ty, $lanes:expr, $mask_ty:ty, $zero:ident, $set1:ident, $load:ident,
         $fmadd:ident, $store:ident, $qzero:ident, $qload:ident, $qfmadd:ident,
         $qstore:ident, $qset1:ident, $transpose:ident, $tile:ident, $rows:ident,
         $columns:ident, $transposed:ident) => {
            /// `R` rows of `c` from row `i`, `V` vectors per row, then (if `Q`) a quarter vector.
            #[target_feature(enable = "avx512f,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const V: usize, const Q: bool, const R: usize>(
                i: usize,
                k: usize,
                masks: &[$mask_ty; 4],
                quarter_mask: __mmask8,
                a: *const $elem,
                rsa: isize,
                csa: isize,
                b: *const $elem,
                rsb: isize,
                c: *mut $elem,
                rsc: isize,
            ) {
                let mut acc = [[$zero(); V]; R];
                let mut tail = [$qzero(); R];
                let mut a_rows = [a; R];
                for (r, row) in a_rows.iter_mut().enumerate() {
                    // SAFETY (all accesses): inside the matrices the caller described; masked
                    // lanes are not accessed.
                    // (Wrapping: with k = 0 `a` may be empty.)
                    *row = a.wrapping_offset((i + r) as isize * rsa);
                }
                for p in 0..k as isize {
                    let b_row = unsafe { b.offset(p * rsb) };
                    let mut bv: [$vec; V] = [$zero(); V];
                    for v in 0..V {
                        bv[v] = unsafe { $load(masks[v], b_row.add(v * $lanes)) };
                    }
                    let bq = if Q {
                        unsafe { $qload(quarter_mask, b_row.add(V * $lanes)) }
                    } else {
                        $qzero()
                    };
                    for r in 0..R {
                        let av = $set1(unsafe { *a_rows[r].offset(p * csa) });
                        for v in 0..V {
                            acc[r][v] = $fmadd(av, bv[v], acc[r][v]);
                        }
                        if Q {
                            let aq = $qset1(unsafe { *a_rows[r].offset(p * csa) });
                            tail[r] = $qfmadd(aq, bq, tail[r]);
                        }
                    }
                }
                for r in 0..R {
                    let c_row = unsafe { c.offset((i + r) as isize * rsc) };
                    for v in 0..V {
                        unsafe { $store(c_row.add(v * $lanes), masks[v], acc[r][v]) };
                    }
                    if Q {
                        unsafe { $qstore(c_row.add(V * $lanes), quarter_mask, tail[r]) };
                    }
                }
            }

            /// For `a` with unit row stride (a transposed matrix, `xᵀ @ δ`): `c[i.., j..j+W]` for
            /// `V` vectors of rows from `i` (the first `live` of them real), the rows in the lanes
            /// of one accumulator per vector and column. Each `b[p, j]` broadcast feeds `V` FMAs:
            /// with one vector there are as many broadcast loads as FMAs, which bounds the kernel
            /// by loads (2 vectors of 10 columns measured 1.09× as fast as 1 of 20 on Zen 5).
            #[target_feature(enable = "avx512f,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $columns<const V: usize, const W: usize>(
                i: usize,
                live: usize,
                j: usize,
                k: usize,
                a: *const $elem,
                csa: isize,
                b: *const $elem,
                rsb: isize,
                c: *mut $elem,
                rsc: isize,
            ) {
                let lanes: [$mask_ty; V] =
                    std::array::from_fn(|v| mask(live, v, $lanes) as $mask_ty);
                let mut acc = [[$zero(); W]; V];
                // SAFETY (all accesses): inside the matrices the caller described; masked lanes
                // are not accessed.
                let a_rows = a.wrapping_add(i);
                let b_cols = unsafe { b.add(j) };
                for p in 0..k as isize {
                    // `a`'s rows are far apart (a column of a row-major matrix): without a
                    // prefetch each is a cache miss waited for (measured 1.1-1.2× faster).
                    // Every cache line of the `V` vectors (unaligned, they span one more).
                    let ahead = a_rows.wrapping_offset((p + 16) * csa);
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(v * $lanes).cast());
                    }
                    if V > 1 {
                        let last = ahead.wrapping_add(V * $lanes - 1);
                        _mm_prefetch::<_MM_HINT_T0>(last.cast());
                    }
                    let av: [$vec; V] = std::array::from_fn(|v| unsafe {
                        $load(lanes[v], a_rows.offset(p * csa).add(v * $lanes))
                    });
                    let b_row = unsafe { b_cols.offset(p * rsb) };
                    for w in 0..W {
                        let bv = $set1(unsafe { *b_row.add(w) });
                        for v in 0..V {
                            acc[v][w] = $fmadd(av[v], bv, acc[v][w]);
                        }
                    }
                }
                // Transposed in registers, each row of `c` written by one masked store: lanes
                // stored to memory and read back one by one waited for the store at every read
                // (9.6 µs of a [784 × 1] @ [1 × 20] product, 7% of a [784 × 1000] @ [1000 × 20]).
                for (v, acc) in acc.iter().enumerate() {
                    let rows = live.saturating_sub(v * $lanes).min($lanes);
                    for first in (0..W).step_by($lanes) {
                        let count = (W - first).min($lanes);
                        let block = std::array::from_fn(|w| match w < count {
                            true => acc[first + w],
                            false => $zero(),
                        });
                        let columns = mask(count, 0, $lanes) as $mask_ty;
                        for (r, row) in $transpose(block).iter().take(rows).enumerate() {
                            let at = (i + v * $lanes + r) as isize * rsc;
                            unsafe { $store(c.offset(at).add(j + first), columns, *row) };
                        }
                    }
                }
            }

            /// Column kernels over all rows, in pairs of vectors of rows (then one) and chunks of
            /// 10, 8, 4, 2, 1 columns (24, 20, 16, 12, ... for one vector): few passes over `a`,
            /// each with at most 24 accumulators (2 × 12 measured 0.6× as fast as 2 × 10).
            #[target_feature(enable = "avx512f,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $transposed(
                rows: usize,
                k: usize,
                n: usize,
                a: *const $elem,
                csa: isize,
                b: *const $elem,
                rsb: isize,
                c: *mut $elem,
                rsc: isize,
            ) {
                type Columns = unsafe fn(
                    usize,
                    usize,
                    usize,
                    usize,
                    *const $elem,
                    isize,
                    *const $elem,
                    isize,
                    *mut $elem,
                    isize,
                );
                let mut i = 0;
                while i < rows {
                    let pair = rows - i > $lanes;
                    let live = (rows - i).min(if pair { 2 * $lanes } else { $lanes });
                    let mut j = 0;
                    while j < n {
                        let (width, columns): (usize, Columns) = match (pair, n - j) {
                            (true, 10..) => (10, $columns::<2, 10>),
                            (true, 8..=9) => (8, $columns::<2, 8>),
                            (true, 4..=7) => (4, $columns::<2, 4>),
                            (true, 2..=3) => (2, $columns::<2, 2>),
                            (true, _) => (1, $columns::<2, 1>),
                            (false, 24..) => (24, $columns::<1, 24>),
                            (false, 20..=23) => (20, $columns::<1, 20>),
                            (false, 16..=19) => (16, $columns::<1, 16>),
                            (false, 12..=15) => (12, $columns::<1, 12>),
                            (false, 10..=11) => (10, $columns::<1, 10>),
                            (false, 8..=9) => (8, $columns::<1, 8>),
                            (false, 4..=7) => (4, $columns::<1, 4>),
                            (false, 2..=3) => (2, $columns::<1, 2>),
                            (false, _) => (1, $columns::<1, 1>),
                        };
                        // SAFETY: forwarded from the caller.
                        unsafe { columns(i, live, j, k, a, csa, b, rsb, c, rsc) };
                        j += width;
                    }
                    i += live;
                }
            }

            /// Rows `0..rows` in tiles of `R` rows, the rest in tiles of 8, 4, 2 and 1 (each row
            /// is computed the same way in any tile).
            #[target_feature(enable = "avx512f,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $rows<const V: usize, const Q: bool, const R: usize>(
                rows: usize,
                k: usize,
                n: usize,
                a: *const $elem,
                rsa: isize,
                csa: isize,
                b: *const $elem,
                rsb: isize,
                c: *mut $elem,
                rsc: isize,
            ) {
                let mut masks: [$mask_ty; 4] = [0; 4];
                for (v, m) in masks.iter_mut().enumerate() {
                    *m = mask(n, v, $lanes) as $mask_ty;
                }
                let quarter = mask(n.saturating_sub(V * $lanes), 0, $lanes / 4) as __mmask8;
                let mut i = 0;
                while i + R <= rows {
                    unsafe { $tile::<V, Q, R>(i, k, &masks, quarter, a, rsa, csa, b, rsb, c, rsc) };
                    i += R;
                }
                while i < rows {
                    type Tile = unsafe fn(
                        usize,
                        usize,
                        &[$mask_ty; 4],
                        __mmask8,
                        *const $elem,
                        isize,
                        isize,
                        *const $elem,
                        isize,
                        *mut $elem,
                        isize,
                    );
                    let (height, tile): (usize, Tile) = match rows - i {
                        8.. => (8, $tile::<V, Q, 8>),
                        4..=7 => (4, $tile::<V, Q, 4>),
                        2..=3 => (2, $tile::<V, Q, 2>),
                        _ => (1, $tile::<V, Q, 1>),
                    };
                    unsafe { tile(i, k, &masks, quarter, a, rsa, csa, b, rsb, c, rsc) };
                    i += height;
                }
            }
        };
    }

    narrow_kernels!(
        f32,
        __m512,
        16,
        __mmask16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_maskz_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_mask_storeu_ps,
        _mm_setzero_ps,
        _mm_maskz_loadu_ps,
        _mm_fmadd_ps,
        _mm_mask_storeu_ps,
        _mm_set1_ps,
        transpose_f32,
        tile_f32,
        rows_f32,
        columns_f32,
        transposed_f32
    );
    narrow_kernels!(
        f64,
        __m512d,
        8,
        __mmask8,
        _mm512_setzero_pd,
        _mm512_set1_pd,
        _mm512_maskz_loadu_pd,
        _mm512_fmadd_pd,
        _mm512_mask_storeu_pd,
        _mm_setzero_pd,
        _mm_maskz_loadu_pd,
        _mm_fmadd_pd,
        _mm_mask_storeu_pd,
        _mm_set1_pd,
        transpose_f64,
        tile_f64,
        rows_f64,
        columns_f64,
        transposed_f64
    );

    impl super::Element for f32 {
        unsafe fn gemm(
            rows: usize,
            k: usize,
            n: usize,
            a: *const f32,
            rsa: isize,
            csa: isize,
            b: *const f32,
            rsb: isize,
            c: *mut f32,
            rsc: isize,
        ) {
            // Up to 28 accumulators (of 32 registers; the rest hold b's row and a's broadcast):
            // enough independent FMA chains to hide their latency (16 or 12 rows measured
            // 1.04-1.4× faster than 8). 17-20 columns of a strided `a` as 16 + 4:
            // [1000×784]·[784×20] on one Zen 4 core 0.45 -> 0.37 ms against two 512-bit vectors.
            // SAFETY: forwarded from the caller.
            unsafe {
                if rsa == 1 {
                    transposed_f32(rows, k, n, a, csa, b, rsb, c, rsc)
                } else if n <= 16 {
                    rows_f32::<1, false, 16>(rows, k, n, a, rsa, csa, b, rsb, c, rsc)
                } else if n <= 20 && csa == 1 {
                    super::split_k::split_k_f32(rows, k, n, a, rsa, b, rsb, c, rsc)
                } else if n <= 20 {
                    rows_f32::<1, true, 14>(rows, k, n, a, rsa, csa, b, rsb, c, rsc)
                } else {
                    rows_f32::<2, false, 12>(rows, k, n, a, rsa, csa, b, rsb, c, rsc)
                }
            }
        }
    }

    impl super::Element for f64 {
        unsafe fn gemm(
            rows: usize,
            k: usize,
            n: usize,
            a: *const f64,
            rsa: isize,
            csa: isize,
            b: *const f64,
            rsb: isize,
            c: *mut f64,
            rsc: isize,
        ) {
            // At most 24 accumulators, as for f32.
            // SAFETY: forwarded from the caller.
            unsafe {
                match n {
                    _ if rsa == 1 => transposed_f64(rows, k, n, a, csa, b, rsb, c, rsc),
                    0..=8 => rows_f64::<1, false, 16>(rows, k, n, a, rsa, csa, b, rsb, c, rsc),
                    9..=16 => rows_f64::<2, false, 12>(rows, k, n, a, rsa, csa, b, rsb, c, rsc),
                    17..=24 => rows_f64::<3, false, 8>(rows, k, n, a, rsa, csa, b, rsb, c, rsc),
                    _ => rows_f64::<4, false, 6>(rows, k, n, a, rsa, csa, b, rsb, c, rsc),
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod portable {
    macro_rules! unavailable {
        ($elem:ty) => {
            impl super::Element for $elem {
                unsafe fn gemm(
                    _: usize,
                    _: usize,
                    _: usize,
                    _: *const $elem,
                    _: isize,
                    _: isize,
                    _: *const $elem,
                    _: isize,
                    _: *mut $elem,
                    _: isize,
                ) {
                    unreachable!("`available()` is false off x86_64");
                }
            }
        };
    }
    unavailable!(f32);
    unavailable!(f64);
}

#[cfg(test)]
mod tests {
    /// A transposed `a` (unit row stride) takes the column kernels, whose rows of `c` are written
    /// by masked stores after a transpose: every element within the worst-case rounding of its
    /// sum of the exact one, for row counts around the 16 (8) lanes of a vector and column counts
    /// around the tiles' widths, and `c`'s padding and the rows after it (NaN) never written.
    #[test]
    fn column_kernels_write_only_c() {
        fn case<T: super::Element + From<f32> + Into<f64>>(unit: f64) {
            for rows in [1, 7, 16, 17, 33] {
                for n in [1, 2, 10, 20, 24, 32] {
                    for k in [1, 5, 37] {
                        let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 7.0;
                        let (csa, rsb, rsc) = (rows + 3, n + 5, n + 7);
                        let padded = |count: usize, live: usize, stride: usize| -> Vec<T> {
                            (0..count * stride)
                                .map(|e| match e % stride < live {
                                    true => T::from(value(e)),
                                    false => T::from(f32::NAN),
                                })
                                .collect()
                        };
                        // aᵀ row-major: a[i, p] at i + p·csa.
                        let a = padded(k, rows, csa);
                        let b = padded(k, n, rsb);
                        let mut c = vec![T::from(f32::NAN); (rows + 2) * rsc];
                        // SAFETY: the host has AVX-512; the matrices are as described.
                        unsafe {
                            super::gemm(
                                rows,
                                k,
                                n,
                                a.as_ptr(),
                                1,
                                csa as isize,
                                b.as_ptr(),
                                rsb as isize,
                                c.as_mut_ptr(),
                                rsc as isize,
                            )
                        };
                        let what = format!("{rows}×{k}×{n}");
                        for (e, &x) in c.iter().enumerate() {
                            let inside = e / rsc < rows && e % rsc < n;
                            assert_eq!(x.into().is_nan(), !inside, "{what} at {e}");
                        }
                        for i in 0..rows {
                            for j in 0..n {
                                let terms = (0..k).map(|p| {
                                    let (x, y): (f64, f64) =
                                        (a[i + p * csa].into(), b[p * rsb + j].into());
                                    x * y
                                });
                                let exact: f64 = terms.clone().sum();
                                let bound =
                                    (k as f64 + 1.0) * unit * terms.map(f64::abs).sum::<f64>();
                                let error = (c[i * rsc + j].into() - exact).abs();
                                assert!(error <= bound, "{what} [{i}, {j}]: {error} > {bound}");
                            }
                        }
                    }
                }
            }
        }
        if !super::available() {
            return;
        }
        case::<f32>(2f64.powi(-24));
        case::<f64>(2f64.powi(-53));
    }

    /// The column kernels' register transposes move element (r, c) to (c, r), for both types.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn transposes_swap_rows_and_columns() {
        use std::arch::x86_64::{__m512, __m512d};
        if !super::available() {
            return;
        }
        let rows: [[f32; 16]; 16] =
            std::array::from_fn(|r| std::array::from_fn(|c| (16 * r + c) as f32));
        // SAFETY: the host has AVX-512; [f32; 16] and __m512 have the same size.
        let out: [[f32; 16]; 16] = unsafe {
            let t = super::avx512::transpose_f32(std::mem::transmute::<
                [[f32; 16]; 16],
                [__m512; 16],
            >(rows));
            std::mem::transmute::<[__m512; 16], [[f32; 16]; 16]>(t)
        };
        for (r, row) in out.iter().enumerate() {
            for (c, &value) in row.iter().enumerate() {
                assert_eq!(value, rows[c][r], "f32 ({r}, {c})");
            }
        }
        let rows: [[f64; 8]; 8] =
            std::array::from_fn(|r| std::array::from_fn(|c| (8 * r + c) as f64));
        // SAFETY: as above, for f64.
        let out: [[f64; 8]; 8] = unsafe {
            let t = super::avx512::transpose_f64(
                std::mem::transmute::<[[f64; 8]; 8], [__m512d; 8]>(rows),
            );
            std::mem::transmute::<[__m512d; 8], [[f64; 8]; 8]>(t)
        };
        for (r, row) in out.iter().enumerate() {
            for (c, &value) in row.iter().enumerate() {
                assert_eq!(value, rows[c][r], "f64 ({r}, {c})");
            }
        }
    }
}
