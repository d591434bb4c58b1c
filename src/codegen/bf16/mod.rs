//! Matrix products of f32 matrices on bf16 operands with f32 accumulation (AVX512-BF16), for the
//! curvature products of an SGN step: CG needs only a good approximation of `G v`, and the step
//! it finds is checked against the true loss, so the products may trade 16 bits of mantissa for
//! twice the multiply-adds per instruction and half the bytes per operand.
//!
//! Both operands are rounded to bf16 (to nearest, ties to even) while they are packed: a block of
//! `b` into panels of [`NR`] columns in which each 32-bit lane holds the pair
//! `(b[p, j], b[p+1, j])`, a block of `a` into strips of [`MR`] rows of pairs
//! `(a[i, p], a[i, p+1])`. One `vdpbf16ps` then adds `a[i,p]·b[p,j] + a[i,p+1]·b[p+1,j]` to 16
//! f32 lanes of `c`; an `MR × NR` tile of `c` stays in 24 registers while `k` runs (the
//! GotoBLAS loop order: column block, k block, row block, panel, strip). Four vectors across
//! and six rows down take one broadcast of `a` per four dot products: on Zen 4 that ran a
//! 1000×800×800 product at 145–163 GFLOP/s against 130–139 for two across and eight down (the
//! core's `vdpbf16ps` peak ≈ 210, its f32 FMA peak ≈ 112).

use std::cell::RefCell;

pub mod amx;

/// Rows of `c` in one register tile.
const MR: usize = 6;
/// Vectors of 16 f32 lanes across one register tile: MR × VECTORS accumulators, one register
/// per vector of `b`'s panel, one for the broadcast of `a`.
const VECTORS: usize = 4;
/// Columns of `c` in one register tile.
const NR: usize = 16 * VECTORS;
/// `k` per packed block (even: pairs); a panel of `b` is then 16 KiB, half an L1 cache.
const KC: usize = 128;
/// Rows of `a` per packed block (32 KiB of pairs).
const MC: usize = 128;
/// Columns of `b` per packed block (at most 256 KiB of pairs, within L2).
const NC: usize = 1024;

/// True if this host has the bf16 dot products (AVX512-BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bf16 (to nearest, ties to even, as `vcvtneps2bf16`; a NaN stays a NaN).
pub fn round_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let tie_to_even = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(tie_to_even) >> 16) as u16
}

/// Two bf16 in one 32-bit lane, the first in the low half (the order `vdpbf16ps` pairs them in).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(round_to_bf16(lo)) | (u32::from(round_to_bf16(hi)) << 16)
}

thread_local! {
    /// Packed blocks of `a` and `b` of this thread, kept between calls.
    static PACKED: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c = a @ b` with `a` and `b` rounded to bf16, for `m` rows, `k` inner and `n` columns:
/// `a[i, p]` at `a + i·rsa + p·csa`, `b[p, j]` at `b + p·rsb + j·csb`, `c[i, j]` at
/// `c + i·rsc + j·csc` (strides in elements).
///
/// # Safety
/// The host must have AVX512-BF16 ([`available`]) and the pointers must describe valid matrices
/// of these sizes, `c` not overlapping the others.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    // Both operands as lanes (rows of `c`, columns of `c`) by k.
    let a = Operand {
        at: a,
        lane_stride: rsa,
        k_stride: csa,
    };
    let b = Operand {
        at: b,
        lane_stride: csb,
        k_stride: rsb,
    };
    let c = Output {
        at: c,
        rs: rsc,
        cs: csc,
    };
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: inside c, as the caller guarantees.
                unsafe { *c.at.offset(i as isize * rsc + j as isize * csc) = 0.0 };
            }
        }
    } else if amx::available() {
        // SAFETY: forwarded from the caller; `available` checked the tiles.
        unsafe { amx::gemm_into::<amx::Hardware>([m, k, n], &a, &b, &c) };
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_on_vectors([m, k, n], &a, &b, &c) };
    }
}

/// `c = a @ b` with `vdpbf16ps` on 6 × 64 register tiles (`k > 0`).
///
/// # Safety
/// As for [`gemm`].
unsafe fn gemm_on_vectors([m, k, n]: [usize; 3], a: &Operand, b: &Operand, c: &Output) {
    let (rsc, csc) = (c.rs, c.cs);
    PACKED.with_borrow_mut(|(packed_a, packed_b)| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(NR);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let pairs = kc.div_ceil(2);
                packed_b.resize(panels * pairs * NR, 0);
                // SAFETY: the host has AVX512-BF16; the block is inside b.
                unsafe { kernel::pack::<NR>(b, jc..jc + nc, pc..pc + kc, pairs, packed_b) };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let strips = mc.div_ceil(MR);
                    packed_a.resize(strips * pairs * MR, 0);
                    // SAFETY: the host has AVX512-BF16; the block is inside a.
                    unsafe { kernel::pack::<MR>(a, ic..ic + mc, pc..pc + kc, pairs, packed_a) };
                    for panel in 0..panels {
                        let columns = NR.min(nc - panel * NR);
                        for strip in 0..strips {
                            let rows = MR.min(mc - strip * MR);
                            let i = ic + strip * MR;
                            let j = jc + panel * NR;
                            let tile = Tile {
                                at: c.at.wrapping_offset(i as isize * rsc + j as isize * csc),
                                rs: rsc,
                                cs: csc,
                                rows,
                                columns,
                                accumulate: pc > 0,
                            };
                            // SAFETY: the host has AVX512-BF16; the tile is inside c and the
                            // packed strip and panel hold `pairs` pairs each.
                            unsafe {
                                kernel::tile(
                                    pairs,
                                    &packed_a[strip * pairs * MR..][..pairs * MR],
                                    &packed_b[panel * pairs * NR..][..pairs * NR],
                                    &tile,
                                )
                            };
                        }
                    }
                }
            }
        }
    });
}

/// Where `c` is: its first element and strides (in elements).
struct Output {
    at: *mut f32,
    rs: isize,
    cs: isize,
}

/// An operand seen as lanes by `k`: `a` with its rows as lanes, `b` with its columns.
struct Operand {
    at: *const f32,
    lane_stride: isize,
    k_stride: isize,
}

impl Operand {
    /// Element `(lane, p)`.
    ///
    /// # Safety
    /// `(lane, p)` must be inside the operand.
    unsafe fn at(&self, lane: usize, p: usize) -> *const f32 {
        // SAFETY: as the caller guarantees.
        unsafe {
            self.at
                .offset(lane as isize * self.lane_stride + p as isize * self.k_stride)
        }
    }
}

/// Where a register tile goes in `c`: its first element, strides, the valid rows and columns,
/// and whether it adds to what is there (every k block after the first).
struct Tile {
    at: *mut f32,
    rs: isize,
    cs: isize,
    rows: usize,
    columns: usize,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{MR, NR, Operand, Tile, VECTORS, pair};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Packs the block `lanes × ks` of `x` into groups of `W` lanes of `stride` pairs (at least
    /// the block's): `out[(g·stride + q)·W + l]` is the pair of elements
    /// `(lanes.start + g·W + l, ks.start + 2q)` and `(…, … + 1)`, zero past the block. Loads run
    /// along whichever of `x`'s axes is contiguous, 16 lanes or 16 pairs a time; a matrix
    /// contiguous along neither is packed element by element.
    ///
    /// # Safety
    /// The host must have AVX512-BF16; the block must be inside `x`; `out` holds the groups.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack<const W: usize>(
        x: &Operand,
        lanes: Range<usize>,
        ks: Range<usize>,
        stride: usize,
        out: &mut [u32],
    ) {
        let pairs = ks.len().div_ceil(2);
        let groups = lanes.len().div_ceil(W);
        assert!(stride >= pairs && out.len() >= groups * stride * W);
        // The slot of pair q of lane l (counted from the block's first lane).
        let slot = |l: usize, q: usize| (l / W * stride + q) * W + l % W;
        if x.k_stride == 1 {
            // Along k, 32 elements are 16 pairs in order.
            out.fill(0);
            for l in 0..lanes.len() {
                for q0 in (0..pairs).step_by(16) {
                    let p0 = ks.start + 2 * q0;
                    let count = ks.end - p0;
                    // SAFETY: the masks keep the loads inside the block.
                    let v = unsafe {
                        let at = x.at(lanes.start + l, p0);
                        let low = _mm512_maskz_loadu_ps(first(count), at);
                        let high =
                            _mm512_maskz_loadu_ps(first(count.saturating_sub(16)), at.add(16));
                        _mm512_cvtne2ps_pbh(high, low)
                    };
                    let count = (pairs - q0).min(16);
                    if W == 1 {
                        // A lane's pairs are adjacent: one store.
                        let to = &mut out[slot(l, q0)..][..count];
                        // SAFETY: the mask keeps the store inside `to`.
                        unsafe {
                            _mm512_mask_storeu_epi32(
                                to.as_mut_ptr().cast(),
                                first(count),
                                as_si512(v),
                            )
                        };
                        continue;
                    }
                    let mut values = [0u32; 16];
                    // SAFETY: values holds 64 bytes.
                    unsafe { _mm512_storeu_si512(values.as_mut_ptr().cast(), as_si512(v)) };
                    for (q, &value) in values.iter().enumerate().take(count) {
                        out[slot(l, q0 + q)] = value;
                    }
                }
            }
        } else if x.lane_stride == 1 {
            if stride > pairs {
                out.fill(0);
            }
            // Along the lanes, two elements of k at a time, interleaved into pairs.
            let interleave = _mm512_set_epi16(
                31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
            );
            for q in 0..pairs {
                let p = ks.start + 2 * q;
                for l0 in (0..groups * W).step_by(16) {
                    let mask = first(lanes.len().saturating_sub(l0));
                    let high_mask = if p + 1 < ks.end { mask } else { 0 };
                    // SAFETY: the masks keep the loads inside the block.
                    let v = unsafe {
                        let low = _mm512_maskz_loadu_ps(mask, x.at(lanes.start + l0, p));
                        let high = _mm512_maskz_loadu_ps(high_mask, x.at(lanes.start + l0, p + 1));
                        _mm512_permutexvar_epi16(
                            interleave,
                            as_si512(_mm512_cvtne2ps_pbh(high, low)),
                        )
                    };
                    let mut values = [0u32; 16];
                    // SAFETY: values holds 64 bytes.
                    unsafe { _mm512_storeu_si512(values.as_mut_ptr().cast(), v) };
                    for (l, &value) in values.iter().enumerate().take(groups * W - l0) {
                        out[slot(l0 + l, q)] = value;
                    }
                }
            }
        } else {
            for (g, group) in out.chunks_exact_mut(stride * W).take(groups).enumerate() {
                for (q, slots) in group.chunks_exact_mut(W).enumerate() {
                    for (l, value) in slots.iter_mut().enumerate() {
                        let (lane, p) = (g * W + l, ks.start + 2 * q);
                        // SAFETY: inside the block, as checked.
                        let get = |p: usize| unsafe {
                            if lane < lanes.len() && p < ks.end {
                                *x.at(lanes.start + lane, p)
                            } else {
                                0.0
                            }
                        };
                        *value = pair(get(p), get(p + 1));
                    }
                }
            }
        }
    }

    /// The mask of the first `count` (at most 16) lanes.
    fn first(count: usize) -> u16 {
        ((1u32 << count.min(16)) - 1) as u16
    }

    /// One `MR × NR` tile of `c` from a packed strip of `a` and panel of `b`.
    ///
    /// # Safety
    /// The host must have AVX512-BF16; `a` and `b` hold `pairs` pairs each; the tile's valid
    /// part is inside `c`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(pairs: usize, a: &[u32], b: &[u32], c: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); VECTORS]; MR];
        for q in 0..pairs {
            let mut panel = [as_bf16(_mm512_setzero_si512()); VECTORS];
            for (v, vector) in panel.iter_mut().enumerate() {
                // SAFETY: q < pairs, and the panel holds NR lanes per pair.
                *vector =
                    as_bf16(unsafe { _mm512_loadu_si512(b.as_ptr().add(q * NR + 16 * v).cast()) });
            }
            let lanes = &a[q * MR..][..MR];
            for (row, &lane) in acc.iter_mut().zip(lanes) {
                let a_pair = as_bf16(_mm512_set1_epi32(lane as i32));
                for (sum, &vector) in row.iter_mut().zip(&panel) {
                    *sum = _mm512_dpbf16_ps(*sum, a_pair, vector);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(c.rows) {
            // SAFETY: r is one of the tile's valid rows, inside c.
            unsafe { store_row(c, r, row) };
        }
    }

    /// Writes (or adds, if `c.accumulate`) the rows of a block of sums in memory (`width` f32 a
    /// row, a multiple of 16) to the tile's valid part.
    ///
    /// # Safety
    /// The host must have AVX-512; `sums` holds `c.rows` rows; the tile's valid part is inside
    /// `c`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store_rows(c: &Tile, sums: &[f32], width: usize) {
        for (r, sums) in sums.chunks_exact(width).enumerate().take(c.rows) {
            let mut row = [_mm512_setzero_ps(); VECTORS];
            for (vector, sums) in row.iter_mut().zip(sums.chunks_exact(16)) {
                // SAFETY: 16 floats.
                *vector = unsafe { _mm512_loadu_ps(sums.as_ptr()) };
            }
            // SAFETY: r is one of the tile's valid rows, inside c.
            unsafe { store_row(c, r, &row[..width / 16]) };
        }
    }

    /// Writes (or adds) row `r` of a tile from its vectors of 16 columns. Inlined into its
    /// callers, which enable AVX-512 (a call would cost the vector kernel a fifth of its time).
    ///
    /// # Safety
    /// The host must have AVX-512; row `r`'s valid columns are inside `c`, and `row` covers them.
    #[inline(always)]
    unsafe fn store_row(c: &Tile, r: usize, row: &[__m512]) {
        if c.cs == 1 {
            for (h, &v) in row.iter().enumerate() {
                let mask = first(c.columns.saturating_sub(16 * h));
                // SAFETY: the mask keeps the tile's row inside its valid columns.
                unsafe {
                    let at = c.at.offset(r as isize * c.rs).add(16 * h);
                    let v = if c.accumulate {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), v)
                    } else {
                        v
                    };
                    _mm512_mask_storeu_ps(at, mask, v);
                }
            }
            return;
        }
        let mut values = [0f32; NR];
        for (v, &vector) in row.iter().enumerate() {
            // SAFETY: values holds NR floats.
            unsafe { _mm512_storeu_ps(values.as_mut_ptr().add(16 * v), vector) };
        }
        for (j, &v) in values.iter().enumerate().take(c.columns) {
            // SAFETY: (r, j) is inside the tile's valid part, inside c.
            unsafe {
                let at = c.at.offset(r as isize * c.rs + j as isize * c.cs);
                *at = if c.accumulate { *at + v } else { v };
            }
        }
    }

    /// 16 lanes of bf16 pairs, as `vdpbf16ps` reads them.
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn as_bf16(x: __m512i) -> __m512bh {
        // SAFETY: both are 64 bytes of plain data.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
    }

    /// The bits of 32 bf16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn as_si512(x: __m512bh) -> __m512i {
        // SAFETY: both are 64 bytes of plain data.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(x) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{Operand, Tile};
    use std::ops::Range;

    /// Never called: [`super::available`] is false off x86-64.
    pub unsafe fn pack<const W: usize>(
        _: &Operand,
        _: Range<usize>,
        _: Range<usize>,
        _: usize,
        _: &mut [u32],
    ) {
        unreachable!("bf16 products need AVX512-BF16")
    }

    /// Never called: [`super::available`] is false off x86-64.
    pub unsafe fn tile(_pairs: usize, _a: &[u32], _b: &[u32], _c: &Tile) {
        unreachable!("bf16 products need AVX512-BF16")
    }

    /// Never called: [`super::available`] is false off x86-64.
    pub unsafe fn store_rows(_c: &Tile, _sums: &[f32], _width: usize) {
        unreachable!("bf16 products need AVX512-BF16")
    }
}

#[cfg(test)]
mod tests {
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
    }

    /// c = a @ b for a[i, p] = f(i, p) (`a` and `c` laid out as `a_layout`), against the same
    /// product of the bf16-rounded operands in f64.
    fn check(engine: Engine, [m, k, n]: [usize; 3], a_layout: Layout, b_layout: Layout) {
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
                ),
                Engine::Vectors => gemm_on_vectors([m, k, n], &a_operand, &b_operand, &output),
                Engine::EmulatedTiles => {
                    amx::gemm_into::<amx::Emulated>([m, k, n], &a_operand, &b_operand, &output)
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
    }

    /// Runs [`check`] for each size and pair of layouts.
    fn check_all(engine: Engine, sizes: &[[usize; 3]]) {
        for &size in sizes {
            for a_layout in [Layout::Rows, Layout::Columns, Layout::Strided] {
                for b_layout in [Layout::Rows, Layout::Columns, Layout::Strided] {
                    check(engine, size, a_layout, b_layout);
                }
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

    #[test]
    fn tile_products_equal_those_of_the_rounded_operands_over_ragged_and_blocked_sizes() {
        if !available() {
            println!("bf16 products: not run, this host has no AVX512-BF16 (for the packing)");
            return;
        }
        // One partial tile; two blocks each way; two k blocks (the last 3 pairs) and two
        // column blocks (the last of 3 panels, one of zeros); two row blocks.
        check_all(
            Engine::EmulatedTiles,
            &[
                [1, 1, 1],
                [15, 31, 17],
                [33, 33, 64],
                [40, 2 * amx::KC_PAIRS + 5, amx::NC + 44],
                [amx::MC + 37, 35, 70],
            ],
        );
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
        unsafe { gemm(1, 1, 1, &x, 1, 1, &x, 1, 1, c.as_mut_ptr(), 1, 1) };
        assert_eq!(c[0], 1.0);
    }
}
