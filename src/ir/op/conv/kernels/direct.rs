//! Convolution of f32 images without unfolding them, for geometries with a unit window and
//! one group (see [`ConvGeometry::direct`]); max-pooling over 2×2 tiles and its select and
//! scatter, 16 windows at a time.

use super::{ConvGeometry, PoolGeometry};
use crate::ir::op::conv::Window;
use std::arch::x86_64::*;

/// f32 lanes of a vector.
pub const LANES: usize = 16;

/// Positions of a tile of [`forward_channels`]: one vector of each channel's row.
const TILE: usize = LANES;

/// The data cache a chunk of images of [`sum_over_images`] should fit in (Zen 4 and recent
/// Intel cores have 32 or 48 KiB).
const L1_BYTES: usize = 24 * 1024;

/// For each output position `(r, col)`, the input element its first tap reads: `r · W +
/// col`; and for each tap `(c, i, j)` how far its element is from there: `(c · H + i) · W +
/// j`.
fn offsets(g: &ConvGeometry) -> (Vec<usize>, Vec<usize>) {
    let ([h, w], [kh, kw], [oh, ow]) = (g.input, g.kernel, g.output);
    let positions = (0..oh).flat_map(|r| (0..ow).map(move |col| r * w + col));
    let taps = (0..g.channels)
        .flat_map(|c| (0..kh).flat_map(move |i| (0..kw).map(move |j| (c * h + i) * w + j)));
    (positions.collect(), taps.collect())
}

/// Lane `k` of the 16 values at `at`, `stride` apart: a column of a row-major matrix.
///
/// # Safety
/// AVX-512F; the 16 values must be readable.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn column(at: *const f32, stride: usize) -> __m512 {
    let step = stride as i32;
    let index = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(step),
    );
    unsafe { _mm512_i32gather_ps::<4>(index, at.cast()) }
}

/// `y = conv2d(x, w)` for the images of `x`, a multiple of 16 output channels: for each 16
/// of them and each tile of 16 positions, 16 accumulators (one per position, its channels
/// in the lanes) while the taps run; each tap's 16 filter values are one load and each
/// input value a broadcast. A tile's accumulators are turned into the output's rows at the
/// end.
///
/// # Safety
/// The host must have AVX-512F, and `g` must be one [`ConvGeometry::direct`] gives
/// [`super::Direct::Channels`]; `x` and `y` hold the same whole images, `w` the filter.
#[target_feature(enable = "avx512f")]
pub unsafe fn forward_channels(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (o, taps, positions) = (g.out_channels, g.patch_len(), g.output_len());
    let (position_at, tap_at) = offsets(g);
    // The filter as [tap, o]: a tap's channels side by side.
    let mut by_tap = vec![0.0; taps * o];
    for (oc, row) in w.chunks_exact(taps).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            by_tap[t * o + oc] = v;
        }
    }
    let mut tile = [0.0f32; TILE * LANES];
    let images = x.chunks_exact(g.image_len());
    for (x, y) in images.zip(y.chunks_exact_mut(g.out_image_len())) {
        for o0 in (0..o).step_by(LANES) {
            for p0 in (0..positions).step_by(TILE) {
                let at: [usize; TILE] =
                    std::array::from_fn(|p| position_at[(p0 + p).min(positions - 1)]);
                let mut acc = [_mm512_setzero_ps(); TILE];
                for (t, &tap) in tap_at.iter().enumerate() {
                    let wv = unsafe { _mm512_loadu_ps(by_tap[t * o + o0..].as_ptr()) };
                    let x = &x[tap..];
                    for (acc, &at) in acc.iter_mut().zip(&at) {
                        // SAFETY: a position's tap reads inside its image.
                        let xv = _mm512_set1_ps(unsafe { *x.get_unchecked(at) });
                        *acc = _mm512_fmadd_ps(wv, xv, *acc);
                    }
                }
                for (p, &acc) in acc.iter().enumerate() {
                    unsafe { _mm512_storeu_ps(tile[p * LANES..].as_mut_ptr(), acc) };
                }
                let live = first_lanes(positions - p0);
                for oo in 0..LANES {
                    let row = &mut y[(o0 + oo) * positions + p0..];
                    unsafe {
                        let channel = column(tile[oo..].as_ptr(), LANES);
                        _mm512_mask_storeu_ps(row.as_mut_ptr(), live, channel);
                    }
                }
            }
        }
    }
}

/// Per-block accumulators summed over the images of `x` and `y`, a few images at a time (as
/// many as stay in the L1 cache, with `prepared` elements per image of `prepare`'s): for
/// each chunk, `prepare(y, buffer)`, then for each block (`sums[block]` its accumulators)
/// `add(block, sums, x, y, prepared)` for each image. The order of the sums depends on the
/// images only.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn sum_over_images<A: Copy>(
    g: &ConvGeometry,
    x: &[f32],
    y: &[f32],
    sums: &mut [A],
    prepared: usize,
    mut prepare: impl FnMut(&[f32], &mut [f32]),
    mut add: impl FnMut(usize, &mut A, &[f32], &[f32], &[f32]),
) {
    let (image, out_image) = (g.image_len(), g.out_image_len());
    let chunk = (L1_BYTES / (4 * (image + out_image + prepared))).max(1);
    let mut buffer = vec![0.0; chunk * prepared];
    for (x, y) in x.chunks(chunk * image).zip(y.chunks(chunk * out_image)) {
        prepare(y, &mut buffer);
        for (block, sums) in sums.iter_mut().enumerate() {
            let mut acc = *sums;
            let images = x.chunks_exact(image).zip(y.chunks_exact(out_image));
            for (i, (x, y)) in images.enumerate() {
                add(
                    block,
                    &mut acc,
                    x,
                    y,
                    &buffer[i * prepared..(i + 1) * prepared],
                );
            }
            *sums = acc;
        }
    }
}

/// `w = conv2d_correlate(x, y)`, the sum over the images of `x` and `y`, a multiple of 16
/// output channels: for each 16 of them and each block of `TB` taps, `TB` accumulators (one
/// per tap, its channels in the lanes) while the positions of [`sum_over_images`]'s chunks
/// run; each position's 16 cotangents are one load and each input value a broadcast.
///
/// # Safety
/// As [`forward_channels`].
#[target_feature(enable = "avx512f")]
pub unsafe fn correlate_channels<const TB: usize>(
    g: &ConvGeometry,
    x: &[f32],
    y: &[f32],
    w: &mut [f32],
) {
    let (o, taps, positions) = (g.out_channels, g.patch_len(), g.output_len());
    let (position_at, tap_at) = offsets(g);
    let t_blocks = taps.div_ceil(TB);
    let mut sums = vec![[_mm512_setzero_ps(); TB]; o / LANES * t_blocks];
    // A chunk's cotangents as [image, position, o]: a position's channels side by side.
    let transpose = |y: &[f32], by_position: &mut [f32]| {
        let images = y.chunks_exact(g.out_image_len());
        for (y, out) in images.zip(by_position.chunks_exact_mut(g.out_image_len())) {
            for (p, out) in out.chunks_exact_mut(o).enumerate() {
                for (o0, out) in (0..o).step_by(LANES).zip(out.chunks_exact_mut(LANES)) {
                    unsafe {
                        let channels = column(y[o0 * positions + p..].as_ptr(), positions);
                        _mm512_storeu_ps(out.as_mut_ptr(), channels);
                    }
                }
            }
        }
    };
    let add = |block: usize, acc: &mut [__m512; TB], x: &[f32], _: &[f32], ys: &[f32]| {
        let (o0, t0) = (block / t_blocks * LANES, block % t_blocks * TB);
        let taps_at: [usize; TB] = std::array::from_fn(|t| tap_at[(t0 + t).min(taps - 1)]);
        for (&at, ys) in position_at.iter().zip(ys.chunks_exact(o)) {
            let yv = unsafe { _mm512_loadu_ps(ys[o0..].as_ptr()) };
            let x = &x[at..];
            for (acc, &tap) in acc.iter_mut().zip(&taps_at) {
                // SAFETY: a position's tap reads inside its image.
                let xv = _mm512_set1_ps(unsafe { *x.get_unchecked(tap) });
                *acc = _mm512_fmadd_ps(yv, xv, *acc);
            }
        }
    };
    sum_over_images(g, x, y, &mut sums, g.out_image_len(), transpose, add);
    let mut lanes = [0.0f32; LANES];
    for (block, sums) in sums.iter().enumerate() {
        let (o0, t0) = (block / t_blocks * LANES, block % t_blocks * TB);
        for (t, &sum) in sums.iter().enumerate().take(taps - t0) {
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
            for (oo, &v) in lanes.iter().enumerate() {
                w[(o0 + oo) * taps + t0 + t] = v;
            }
        }
    }
}

/// Lanes `0..n` (at most 16).
fn first_lanes(n: usize) -> __mmask16 {
    (((1u32 << n.min(LANES)) - 1) & 0xFFFF) as __mmask16
}

/// Whether a max-pooling's windows tile its planes in 2×2 blocks: kernel 2×2, stride 2, no
/// padding or dilation (the CNNs' pooling; a ragged last row or column is left out).
pub fn tiles_2x2(g: &PoolGeometry) -> bool {
    g.kernel == [2, 2]
        && g.window
            == (Window {
                stride: [2, 2],
                ..Window::unit()
            })
}

/// The four taps of windows `c0..c0 + n` (n ≤ 16) of output row `r` of a [`tiles_2x2`]
/// plane `x` of rows of `w`, in the generic kernels' order: (0, 0), (0, 1), (1, 0), (1, 1).
/// Each input row is loaded in two vectors and split into its even and odd columns.
#[target_feature(enable = "avx512f")]
#[inline]
fn taps_2x2(x: &[f32], w: usize, r: usize, c0: usize, n: usize) -> [__m512; 4] {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let (lo, hi) = (
        first_lanes(2 * n),
        first_lanes((2 * n).saturating_sub(LANES)),
    );
    let row = |i: usize| {
        let at = x[(2 * r + i) * w + 2 * c0..].as_ptr();
        // SAFETY: the lanes loaded are the 2n inputs of the n windows, inside the plane.
        let (a, b) = unsafe {
            let a = _mm512_maskz_loadu_ps(lo, at);
            (a, _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)))
        };
        [
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        ]
    };
    let ([t00, t01], [t10, t11]) = (row(0), row(1));
    [t00, t01, t10, t11]
}

/// The plane index of the first tap of windows `c0..c0 + 16` of output row `r` (rows of
/// `w`), and how far the other three taps are from it.
#[target_feature(enable = "avx512f")]
#[inline]
fn first_tap_2x2(w: usize, r: usize, c0: usize) -> (__m512i, [i32; 4]) {
    let columns = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let first = _mm512_set1_epi32((2 * r * w + 2 * c0) as i32);
    let w = w as i32;
    (_mm512_add_epi32(first, columns), [0, 1, w, w + 1])
}

/// For [`tiles_2x2`] geometries: each window's maximum (`INDEX` false) or its index in its
/// plane (`INDEX` true), the first on ties and NaN counting as the largest, as
/// [`PoolGeometry::argmax`] says; 16 windows of an output row at a time.
///
/// # Safety
/// AVX-512F; `g` a [`tiles_2x2`] geometry, `x` and `out` the same whole planes.
#[target_feature(enable = "avx512f")]
pub unsafe fn pool_2x2<const INDEX: bool>(g: &PoolGeometry, x: &[f32], out: &mut [f32]) {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    for (x, out) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for r in 0..oh {
            for c0 in (0..ow).step_by(LANES) {
                let n = (ow - c0).min(LANES);
                let taps = taps_2x2(x, w, r, c0, n);
                let (first, offsets) = first_tap_2x2(w, r, c0);
                let (mut best, mut at) = (taps[0], first);
                for k in 1..4 {
                    let (v, offset) = (taps[k], offsets[k]);
                    let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
                        & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(best, best);
                    let take = larger | nan;
                    best = _mm512_mask_mov_ps(best, take, v);
                    let index = _mm512_add_epi32(first, _mm512_set1_epi32(offset));
                    at = _mm512_mask_mov_epi32(at, take, index);
                }
                let result = if INDEX { _mm512_cvtepi32_ps(at) } else { best };
                let dst = out[r * ow + c0..].as_mut_ptr();
                unsafe { _mm512_mask_storeu_ps(dst, first_lanes(n), result) };
            }
        }
    }
}

/// For windows `c0..` of output row `r` (rows of `w`) whose `index` is `inside` the plane:
/// the lanes whose index is each of their window's four taps, and the lanes whose index is
/// outside their own window (no argmax names one; the generic kernels' rule still holds).
#[target_feature(enable = "avx512f")]
#[inline]
fn own_taps_2x2(
    index: __m512i,
    inside: __mmask16,
    w: usize,
    r: usize,
    c0: usize,
) -> ([__mmask16; 4], __mmask16) {
    let (first, offsets) = first_tap_2x2(w, r, c0);
    let offset = _mm512_sub_epi32(index, first);
    let taps = offsets.map(|t| _mm512_mask_cmpeq_epi32_mask(inside, offset, _mm512_set1_epi32(t)));
    (taps, inside & !(taps[0] | taps[1] | taps[2] | taps[3]))
}

/// Each plane's indices `a` of a vector of windows as i32, and the lanes whose index is one
/// of the plane's (a NaN or out-of-range float converts to a negative integer).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn indices(a: *const f32, live: __mmask16, plane: usize) -> (__m512i, __mmask16) {
    let index = _mm512_cvttps_epi32(unsafe { _mm512_maskz_loadu_ps(live, a) });
    let inside = _mm512_mask_cmpge_epi32_mask(live, index, _mm512_setzero_si512())
        & _mm512_cmplt_epi32_mask(index, _mm512_set1_epi32(plane as i32));
    (index, inside)
}

/// `t`'s plane elements at `index` where `inside`, zero elsewhere.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn gather(t: &[f32], index: __m512i, inside: __mmask16) -> __m512 {
    let zero = _mm512_setzero_ps();
    unsafe { _mm512_mask_i32gather_ps::<4>(zero, inside, index, t.as_ptr().cast()) }
}

/// `out = max_pool2d_select(t, a)` for any geometry: a gather of 16 windows at a time.
///
/// # Safety
/// AVX-512F; planes of fewer than 2²⁴ elements; `t`, `a` and `out` the same whole planes.
#[target_feature(enable = "avx512f")]
pub unsafe fn select(g: &PoolGeometry, t: &[f32], a: &[f32], out: &mut [f32]) {
    let (plane, windows) = (g.input[0] * g.input[1], g.output[0] * g.output[1]);
    let planes = t.chunks_exact(plane).zip(a.chunks_exact(windows));
    for ((t, a), out) in planes.zip(out.chunks_exact_mut(windows)) {
        for w0 in (0..windows).step_by(LANES) {
            let live = first_lanes(windows - w0);
            unsafe {
                let (index, inside) = indices(a[w0..].as_ptr(), live, plane);
                let v = gather(t, index, inside);
                _mm512_mask_storeu_ps(out[w0..].as_mut_ptr(), live, v);
            }
        }
    }
}

/// `out = max_pool2d_select(t, a)` for [`tiles_2x2`] geometries: each window's four taps
/// loaded as [`pool_2x2`] does and the one `a` names kept (a gather only for indices outside
/// their own window).
///
/// # Safety
/// As [`select`], and `g` a [`tiles_2x2`] geometry.
#[target_feature(enable = "avx512f")]
pub unsafe fn select_2x2(g: &PoolGeometry, t: &[f32], a: &[f32], out: &mut [f32]) {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let planes = t.chunks_exact(h * w).zip(a.chunks_exact(oh * ow));
    for ((t, a), out) in planes.zip(out.chunks_exact_mut(oh * ow)) {
        for r in 0..oh {
            for c0 in (0..ow).step_by(LANES) {
                let n = (ow - c0).min(LANES);
                let at = r * ow + c0;
                let (index, inside) = unsafe { indices(a[at..].as_ptr(), first_lanes(n), h * w) };
                let (own, foreign) = own_taps_2x2(index, inside, w, r, c0);
                let mut v = _mm512_setzero_ps();
                for (tap, own) in taps_2x2(t, w, r, c0, n).into_iter().zip(own) {
                    v = _mm512_mask_mov_ps(v, own, tap);
                }
                if foreign != 0 {
                    v = _mm512_mask_mov_ps(v, foreign, unsafe { gather(t, index, foreign) });
                }
                unsafe { _mm512_mask_storeu_ps(out[at..].as_mut_ptr(), first_lanes(n), v) };
            }
        }
    }
}

/// `out = max_pool2d_scatter(c, a)` for [`tiles_2x2`] geometries, written densely: each
/// window's four outputs are its `c` where `a` names that tap, zero elsewhere, interleaved
/// back into the plane's rows. An index outside its own window (no argmax gives one) is
/// added afterwards, as the generic kernel would.
///
/// # Safety
/// As [`select`], and `g` a [`tiles_2x2`] geometry.
#[target_feature(enable = "avx512f")]
pub unsafe fn scatter_2x2(g: &PoolGeometry, c: &[f32], a: &[f32], out: &mut [f32]) {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let (plane, windows) = (h * w, oh * ow);
    if 2 * oh != h || 2 * ow != w {
        out.fill(0.0); // the ragged border no window reads
    }
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
    let planes = c.chunks_exact(windows).zip(a.chunks_exact(windows));
    for ((c, a), out) in planes.zip(out.chunks_exact_mut(plane)) {
        let mut foreign = false;
        for r in 0..oh {
            for c0 in (0..ow).step_by(LANES) {
                let n = (ow - c0).min(LANES);
                let live = first_lanes(n);
                let at = r * ow + c0;
                let (index, inside) = unsafe { indices(a[at..].as_ptr(), live, plane) };
                // + 0 turns -0 into +0, as 0 + c does in the generic kernel.
                let cv = _mm512_add_ps(
                    unsafe { _mm512_maskz_loadu_ps(live, c[at..].as_ptr()) },
                    _mm512_setzero_ps(),
                );
                let (tap, outside) = own_taps_2x2(index, inside, w, r, c0);
                foreign |= outside != 0;
                let [t00, t01, t10, t11] = tap.map(|k| _mm512_maskz_mov_ps(k, cv));
                let (lo, hi) = (first_lanes(2 * n), first_lanes((2 * n).saturating_sub(16)));
                for (i, [left, right]) in [[t00, t01], [t10, t11]].into_iter().enumerate() {
                    let dst = out[(2 * r + i) * w + 2 * c0..].as_mut_ptr();
                    unsafe {
                        _mm512_mask_storeu_ps(dst, lo, _mm512_permutex2var_ps(left, low, right));
                        let v = _mm512_permutex2var_ps(left, high, right);
                        _mm512_mask_storeu_ps(dst.wrapping_add(LANES), hi, v);
                    }
                }
            }
        }
        if foreign {
            add_foreign(g, c, a, out);
        }
    }
}

/// The indices of one plane's windows that name a tap outside their own window, added.
fn add_foreign(g: &PoolGeometry, c: &[f32], a: &[f32], out: &mut [f32]) {
    let ([h, w], [_, ow]) = (g.input, g.output);
    for (window, (&c, &a)) in c.iter().zip(a).enumerate() {
        let (r, col) = (window / ow, window % ow);
        // As the vector conversion: truncation, and no index where it would not fit.
        let index = (a > -1.0 && a < (h * w) as f32).then_some(a as usize);
        if let Some(at) = index
            && (at / w / 2, at % w / 2) != (r, col)
        {
            out[at] += c;
        }
    }
}

/// `w = conv2d_correlate(x, y)` for [`super::Direct::Rows`] geometries, the sum over the
/// images: for each block of `OB` output channels and `TB` taps, `OB · TB` accumulators
/// while the output rows of [`sum_over_images`]'s chunks run, each row (16 + up to 16
/// columns) in two vectors; each cotangent row loaded once for the `TB` taps and each
/// input row once for the `OB` channels. The lanes are added at the end.
///
/// # Safety
/// As [`forward_rows`], with `x` and `y` the same whole images.
#[target_feature(enable = "avx512f")]
pub unsafe fn correlate_rows<const OB: usize, const TB: usize>(
    g: &ConvGeometry,
    x: &[f32],
    y: &[f32],
    w: &mut [f32],
) {
    let (o, taps, [oh, ow], width) = (g.out_channels, g.patch_len(), g.output, g.input[1]);
    let (_, tap_at) = offsets(g);
    let (lo, hi) = (first_lanes(ow), first_lanes(ow - LANES));
    let t_blocks = taps.div_ceil(TB);
    let mut sums = vec![[[_mm512_setzero_ps(); TB]; OB]; o.div_ceil(OB) * t_blocks];
    let add = |block: usize, acc: &mut [[__m512; TB]; OB], x: &[f32], y: &[f32], _: &[f32]| {
        let (o0, t0) = (block / t_blocks * OB, block % t_blocks * TB);
        let taps_at: [usize; TB] = std::array::from_fn(|t| tap_at[(t0 + t).min(taps - 1)]);
        let planes: [usize; OB] = std::array::from_fn(|oo| (o0 + oo).min(o - 1) * oh * ow);
        for r in 0..oh {
            // SAFETY: rows of `ow` columns of the cotangent; an output row's taps read
            // inside the input row (a unit window).
            let ys: [[__m512; 2]; OB] = std::array::from_fn(|oo| unsafe {
                let at = y[planes[oo] + r * ow..].as_ptr();
                [
                    _mm512_maskz_loadu_ps(lo, at),
                    _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)),
                ]
            });
            let row = x[r * width..].as_ptr();
            for (t, &tap) in taps_at.iter().enumerate() {
                let at = row.wrapping_add(tap);
                let (x0, x1) = unsafe {
                    (
                        _mm512_maskz_loadu_ps(lo, at),
                        _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)),
                    )
                };
                for (acc, [y0, y1]) in acc.iter_mut().zip(&ys) {
                    acc[t] = _mm512_fmadd_ps(*y1, x1, _mm512_fmadd_ps(*y0, x0, acc[t]));
                }
            }
        }
    };
    sum_over_images(g, x, y, &mut sums, 0, |_, _| {}, add);
    for (block, sums) in sums.iter().enumerate() {
        let (o0, t0) = (block / t_blocks * OB, block % t_blocks * TB);
        for (oo, sums) in sums.iter().enumerate().take(o - o0) {
            for (t, &sum) in sums.iter().enumerate().take(taps - t0) {
                w[(o0 + oo) * taps + t0 + t] = _mm512_reduce_add_ps(sum);
            }
        }
    }
}

/// `y = conv2d(x, w)` for one image, stride and dilation 1, no padding, one group, an output
/// row of 17..=32 columns: each output row of `OC` channels in `2·OC` accumulators while the
/// taps run, `x`'s row segment loaded once per tap for all of them.
///
/// # Safety
/// The host must have AVX-512F, and `g` must be one [`ConvGeometry::direct`] gives
/// [`super::Direct::Rows`] (then every masked load stays inside `x`'s row, as the output row
/// and the filter span the input row exactly); `x`, `w` and `y` hold one image, the filter and one output image.
#[target_feature(enable = "avx512f")]
pub unsafe fn forward_rows<const OC: usize>(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (c, [h, wd], o) = (g.channels, g.input, g.out_channels);
    let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
    let lo: __mmask16 = 0xFFFF;
    let hi: __mmask16 = ((1u32 << (ow - 16)) - 1) as __mmask16;
    let taps = c * kh * kw;
    let mut o0 = 0;
    while o0 < o {
        let live = (o - o0).min(OC);
        for r in 0..oh {
            let mut acc = [[_mm512_setzero_ps(); 2]; OC];
            for ci in 0..c {
                for i in 0..kh {
                    let row = x[(ci * h + r + i) * wd..].as_ptr();
                    for j in 0..kw {
                        let a0 = unsafe { _mm512_maskz_loadu_ps(lo, row.add(j)) };
                        let a1 = unsafe { _mm512_maskz_loadu_ps(hi, row.add(j + 16)) };
                        let tap = (ci * kh + i) * kw + j;
                        for (oo, acc) in acc.iter_mut().enumerate() {
                            let oc = (o0 + oo).min(o - 1);
                            let wv = _mm512_set1_ps(w[oc * taps + tap]);
                            acc[0] = _mm512_fmadd_ps(a0, wv, acc[0]);
                            acc[1] = _mm512_fmadd_ps(a1, wv, acc[1]);
                        }
                    }
                }
            }
            for (oo, acc) in acc.iter().enumerate().take(live) {
                let out = y[((o0 + oo) * oh + r) * ow..].as_mut_ptr();
                unsafe {
                    _mm512_mask_storeu_ps(out, lo, acc[0]);
                    _mm512_mask_storeu_ps(out.add(16), hi, acc[1]);
                }
            }
        }
        o0 += OC;
    }
}
