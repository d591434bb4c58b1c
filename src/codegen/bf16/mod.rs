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

use crate::codegen::program::Side;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// This thread's scratch for packed blocks of `a` and `b` (both drivers; neither runs
    /// inside the other), kept between calls.
    static PACKED: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c = a @ b` with `a` and `b` rounded to bf16, for `m` rows, `k` inner and `n` columns:
/// `a[i, p]` at `a + i·rsa + p·csa`, `b[p, j]` at `b + p·rsb + j·csb`, `c[i, j]` at
/// `c + i·rsc + j·csc` (strides in elements).
///
/// With `fixed`, that operand's packed blocks are taken from (or, the first time, kept in) its
/// [`Kept`] entry, which must have been filled from the same values if from the same address.
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
    fixed: Option<(Side, &mut Kept)>,
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
        return;
    }
    let tiles = amx::available();
    let unit = if tiles { Unit::Tiles } else { Unit::Vectors };
    let [mut kept_a, mut kept_b] = [None, None];
    match fixed {
        Some((Side::A, kept)) => kept_a = Some(kept.of(&a, [m, k], unit)),
        Some((Side::B, kept)) => kept_b = Some(kept.of(&b, [n, k], unit)),
        None => {}
    }
    let kept = [kept_a, kept_b];
    if tiles {
        // SAFETY: forwarded from the caller; `available` checked the tiles.
        unsafe { amx::gemm_into::<amx::Hardware>([m, k, n], &a, &b, &c, kept) };
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_on_vectors([m, k, n], &a, &b, &c, kept) };
    }
}

/// At most the bytes of the kept bf16 blocks of an operand of `lanes` × `k` packed in `pieces`
/// separate runs of lanes (`None`: past `u64`). Four bytes a pair of `k`, `k` padded to whole
/// tiles of 16 pairs (on AMX); lanes padded to whole strips of [`MR`] in each block of
/// [`MC`] (132 rows for 128), and in a piece's last block to a panel of [`NR`] at most.
pub(crate) fn kept_bytes_bound(lanes: u64, k: u64, pieces: u64) -> Option<u64> {
    let pad = pieces.checked_mul(NR as u64)?;
    let lanes = lanes.checked_add(lanes / 32)?.checked_add(pad)?;
    let pairs = k.div_ceil(2).checked_next_multiple_of(16)?;
    lanes.checked_mul(pairs)?.checked_mul(4)
}

/// The packings of the fixed operands of a graph's bf16 products (`Gemm::fixed`: in
/// gv-apply, the parameters, inputs and residuals side of each), kept from one call to the
/// next: CG multiplies many directions by one `G`, so only the direction side needs packing
/// again. One entry per product and thread; an entry is packed again when its operand's
/// address, strides or sizes change.
///
/// Whoever passes a cache vouches that every argument of the graph but its directions and
/// cotangents holds the same values as in the cache's earlier calls
/// ([`crate::compile::GvOperator`] keeps one while it holds its residuals).
///
/// # Example
/// ```
/// use sgn::autodiff::GraphName;
/// use sgn::codegen::PackCache;
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{ArgRole, DType, Tensor};
/// use sgn::{CompileOptions, Curvature, Model, Sources};
///
/// # fn main() -> sgn::Result<()> {
/// let model = Model::parse(
///     "model wide\ninput x: f32[B, 48]\ntarget y: f32[B, 48]\n\
///      param w: f32[48, 48] = glorot_uniform\noutput z = tanh(x @ w)\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default().with_curvature(Curvature::Bf16))?;
/// let params = init_params(&model.params, 0)?;
/// let mut batch = TensorMap::new();
/// for name in ["x", "y"] {
///     let values = (0..64 * 48).map(|i| (i % 7) as f64 / 7.0).collect();
///     batch.insert(name, Tensor::from_f64(DType::F32, &[64, 48], values).unwrap());
/// }
/// let prepare = compiled.executable(GraphName::GvPrepare);
/// let residuals = prepare.run(&compiled.arguments(GraphName::GvPrepare, &Sources::batch(&params, &batch))?)?;
/// let apply = compiled.executable(GraphName::GvApply);
/// let v = init_params(&model.params, 1)?;
/// let sources = Sources {
///     directions: Some(&v),
///     residuals: Some(&residuals),
///     ..Sources::batch(&params, &batch)
/// };
/// let mut args = compiled.arguments(GraphName::GvApply, &sources)?;
/// let role = |i: &usize| apply.graph().args()[*i].role;
/// let direction = (0..args.len()).find(|i| role(i) == ArgRole::Direction).unwrap();
/// let kept = PackCache::new();
/// let mut packed_in_the_first = 0;
/// for seed in 1..4 {
///     // Only the direction changes between the calls: `x`'s packing is kept from the first.
///     args[direction] = init_params(&model.params, seed)?.get("w").unwrap().clone();
///     let args: Vec<&Tensor> = args.iter().collect();
///     let fresh = apply.run_borrowed(&args)?;
///     let mut gv = fresh.clone();
///     apply.run_into_keeping(&args, &mut gv, &kept)?;
///     assert_eq!(gv, fresh);
///     if seed == 1 {
///         packed_in_the_first = kept.packings();
///     }
/// }
/// assert_eq!(kept.packings(), packed_in_the_first);
/// # assert_eq!(packed_in_the_first > 0, sgn::codegen::host_has_bf16_products());
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct PackCache {
    /// By graph id, product and thread (each thread runs one part of a bf16 product).
    entries: Mutex<HashMap<(u64, usize, usize), Kept>>,
    /// Blocks packed into the entries so far.
    packings: AtomicUsize,
}

impl PackCache {
    /// An empty cache.
    pub fn new() -> PackCache {
        PackCache::default()
    }

    /// Runs `f` on the entry `key` — graph id, product, thread — taken out of the map while
    /// `f` runs, so threads do not wait on each other.
    pub(crate) fn with_entry<R>(
        &self,
        key: (u64, usize, usize),
        f: impl FnOnce(&mut Kept) -> R,
    ) -> R {
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = lock().remove(&key).unwrap_or_default();
        let before = kept.packings;
        let result = f(&mut kept);
        self.packings
            .fetch_add(kept.packings - before, Ordering::Relaxed);
        lock().insert(key, kept);
        result
    }

    /// How many blocks the products have packed into this cache: it stops growing once every
    /// product takes its fixed operand as kept.
    pub fn packings(&self) -> usize {
        self.packings.load(Ordering::Relaxed)
    }

    /// The bytes the kept blocks take: a bf16 copy of each fixed operand, about half its f32
    /// size, for each thread that reads all of it.
    pub fn bytes(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let words = entries
            .values()
            .flat_map(|kept| kept.blocks.iter().flatten());
        words.map(|block| 4 * block.len()).sum()
    }
}

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackCache")
            .field("packings", &self.packings())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// What runs the products: the packed layouts differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Vectors,
    Tiles,
}

/// One fixed operand's packed blocks, each packed when a call first needs it.
#[derive(Default)]
pub struct Kept {
    /// The operand (address, strides, lanes × k) and unit the blocks were packed for.
    source: Option<(usize, isize, isize, [usize; 2], Unit)>,
    blocks: Vec<Option<Vec<u32>>>,
    /// Blocks packed into this entry so far.
    packings: usize,
}

impl Kept {
    /// This entry, emptied unless it was packed from `x` (lanes × k) for `unit`.
    fn of(&mut self, x: &Operand, size: [usize; 2], unit: Unit) -> &mut Kept {
        let source = Some((x.at as usize, x.lane_stride, x.k_stride, size, unit));
        if self.source != source {
            self.blocks.clear();
            self.source = source;
        }
        self
    }
}

/// Block `index` (of an operand's blocks in the driver's order) of `len` words, packed by
/// `pack`: as kept from an earlier call, or packed now and kept; or, for an operand not kept,
/// packed into `scratch`. `pack` writes every word of the block it is given.
fn packed_block<'s>(
    kept: Option<&'s mut Kept>,
    scratch: &'s mut Vec<u32>,
    index: usize,
    len: usize,
    pack: impl FnOnce(&mut [u32]),
) -> &'s [u32] {
    let Some(kept) = kept else {
        scratch.resize(len, 0);
        pack(&mut scratch[..len]);
        return &scratch[..len];
    };
    if kept.blocks.len() <= index {
        kept.blocks.resize_with(index + 1, || None);
    }
    let block = kept.blocks[index].get_or_insert_with(|| {
        kept.packings += 1;
        let mut block = vec![0; len];
        pack(&mut block);
        block
    });
    debug_assert_eq!(block.len(), len, "a kept block of another size");
    block
}

/// `c = a @ b` with `vdpbf16ps` on 6 × 64 register tiles (`k > 0`).
///
/// # Safety
/// As for [`gemm`].
unsafe fn gemm_on_vectors(
    [m, k, n]: [usize; 3],
    a: &Operand,
    b: &Operand,
    c: &Output,
    [mut kept_a, mut kept_b]: [Option<&mut Kept>; 2],
) {
    let (rsc, csc) = (c.rs, c.cs);
    let (k_blocks, row_blocks) = (k.div_ceil(KC), m.div_ceil(MC));
    PACKED.with_borrow_mut(|(scratch_a, scratch_b)| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(NR);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let pairs = kc.div_ceil(2);
                let index = jc / NC * k_blocks + pc / KC;
                let len = panels * pairs * NR;
                let packed_b = packed_block(kept_b.as_deref_mut(), scratch_b, index, len, |out| {
                    // SAFETY: the host has AVX512-BF16; the block is inside b.
                    unsafe { kernel::pack::<NR>(b, jc..jc + nc, pc..pc + kc, pairs, out) }
                });
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let strips = mc.div_ceil(MR);
                    let index = pc / KC * row_blocks + ic / MC;
                    let len = strips * pairs * MR;
                    let packed_a =
                        packed_block(kept_a.as_deref_mut(), scratch_a, index, len, |out| {
                            // SAFETY: the host has AVX512-BF16; the block is inside a.
                            unsafe { kernel::pack::<MR>(a, ic..ic + mc, pc..pc + kc, pairs, out) }
                        });
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

/// Where a block of `c` (a register tile, or 32 × 32 AMX sums) goes: its first element,
/// strides, the valid rows and columns, and whether it adds to what is there (every k block
/// after the first).
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
                        let high = _mm512_maskz_loadu_ps(
                            first(count.saturating_sub(16)),
                            at.wrapping_add(16),
                        );
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
    /// row, a multiple of 16 up to 64) to the tile's valid part.
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
                    let at = c.at.wrapping_offset(r as isize * c.rs).wrapping_add(16 * h);
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
mod tests;
#[cfg(test)]
mod tile_model;
