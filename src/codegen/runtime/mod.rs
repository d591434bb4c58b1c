//! What the generated code calls and runs on: the GEMM shim and the image kernels' calls here,
//! the barrier between steps and the pool of threads that run a program together in [`pool`].
//!
//! Every thread runs the whole program (SPMD): each kernel and GEMM gives each thread a disjoint
//! part of its output, and threads meet at a barrier after each step. Since no output element
//! is summed across threads, results do not depend on the number of threads.

use super::bf16::PackCache;
use super::program::{PARTS, Program, Side, Step};
use super::{bf16, narrow};
use crate::ir::Bindings;
use crate::ir::op::{Extent, ImageKernel};
use std::cell::Cell;
use std::mem::MaybeUninit;

mod pool;
pub(crate) use pool::split_mut;
pub use pool::{Pool, SpinBarrier, sgn_barrier};

/// Rows (or columns) of a GEMM part are a multiple of this (the last part also takes the rest):
/// blocks this long keep off the `gemm` crate's GEMV and horizontal kernels.
const GEMM_PART_ALIGN: i64 = 16;

/// The `gemm` crate's products of at least `parallel_min` multiply-adds whose uncut side is at
/// most [`GEMM_SMALL_SIDE`] are cut into at most this many parts, row or column blocks fixed by
/// the shape alone, and threads share out whole parts. The `gemm` crate picks its kernel and
/// blocking by the shape of each call (a horizontal kernel when m·n ≤ 256, GEMV when m or n is
/// 1, other k-blocks when m and n are ≤ 64), so blocks cut by the thread count would give
/// results that depend on the thread count.
const GEMM_PARTS: i64 = 8;

/// The `gemm` crate's products whose uncut side is longer than this take the same kernel and
/// k-blocking for any block of at least [`GEMM_PART_ALIGN`] rows (columns) of the other, so
/// threads take even shares of whole units, one block each: one packing of the shared operand
/// per thread, not one per fixed part (on mlp_tanh_800's 1000×800×800 products, 8 packings of
/// the 800×800 operand on one thread).
const GEMM_SMALL_SIDE: i64 = 64;

/// `c = a @ b` for the parts of `c` that belong to `thread` of `threads`: blocks of whole rows if
/// `m ≥ n` or `b` is narrow, else of whole columns (see [`GEMM_PARTS`]; the narrow and bf16
/// kernels, and the `gemm` crate's products with a long uncut side ([`GEMM_SMALL_SIDE`]), whose
/// results do not depend on the blocks, take even shares); products of fewer than
/// `parallel_min` multiply-adds run whole, on thread 0. Strides are in elements; `is_f64`
/// selects the element type. `kernels` is a [`Kernels`]: with `Narrow`, narrow `b`s (see
/// [`narrow`]) go to this crate's kernels, the rest to the `gemm` crate; with `Bf16` (f32 only)
/// the products that gain from it run on bf16 operands ([`bf16`]). `site` numbers the product
/// among its program's products with a fixed operand (0 for the others) and `fixed` says
/// which operand depends on no direction ([`Side::code`]):
/// with bf16, that one's packing is kept in the call's [`PackCache`], if any.
///
/// # Safety
/// The pointers and strides must describe valid, non-overlapping (for `c`) matrices of the given
/// sizes; the generated code derives them from buffers validated and planned before the call.
/// `kernels` must be `Narrow` only if [`narrow::available`], `Bf16` only for f32 and if
/// [`bf16::available`].
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sgn_gemm(
    is_f64: i64,
    m: i64,
    k: i64,
    n: i64,
    a: *const u8,
    rsa: i64,
    csa: i64,
    b: *const u8,
    rsb: i64,
    csb: i64,
    c: *mut u8,
    rsc: i64,
    csc: i64,
    thread: i64,
    threads: i64,
    parallel_min: i64,
    kernels: i64,
    site: i64,
    fixed: i64,
) {
    let work = m.saturating_mul(n).saturating_mul(k.max(1));
    let bf16 = kernels == Kernels::Bf16 as i64 && runs_bf16([m, k, n].map(|s| s as u64));
    // A `b` read across its rows (`h @ wᵀ` in a backward pass) is copied to rows when small.
    let narrow = (kernels == Kernels::Narrow as i64 || kernels == Kernels::Bf16 as i64)
        && n as usize <= narrow::MAX_COLUMNS
        && (csb == 1 || k as usize <= narrow::MAX_COLUMNS)
        && csc == 1;
    let product = Product {
        m: m as usize,
        k: k as usize,
        n: n as usize,
        a,
        rsa: rsa as isize,
        csa: csa as isize,
        b,
        rsb: rsb as isize,
        csb: csb as isize,
        c,
        rsc: rsc as isize,
        csc: csc as isize,
    };
    let run = |part: &Product| {
        // SAFETY: as documented above; a part is a block of the product.
        unsafe {
            if is_f64 != 0 {
                part.run::<f64>(narrow)
            } else if bf16 {
                part.run_bf16(site as usize, fixed, thread as usize)
            } else {
                part.run::<f32>(narrow)
            }
        }
    };
    if work < parallel_min {
        if thread == 0 {
            run(&product);
        }
        return;
    }
    let split_rows = splits_rows(narrow, m as u64, n as u64);
    let total = if split_rows { m } else { n };
    let esize = if is_f64 != 0 { 8 } else { 4 };
    // The narrow kernels compute each row of `c` the same way in any tile (the bf16 kernel each
    // element in any block, the `gemm` crate each element of a product with a long uncut side
    // in any block of whole units), so a thread takes an even share of aligned rows as one
    // block, the last also the rows short of a unit; fixed parts of 8 would split 784 rows 3:4
    // between two threads.
    let uncut = if split_rows { n } else { m };
    let merged = (narrow || bf16 || uncut > GEMM_SMALL_SIDE).then(|| {
        let units = (total / GEMM_PART_ALIGN).max(1);
        let edge = |t: i64| match t == threads {
            true => total,
            false => (units * t / threads * GEMM_PART_ALIGN).min(total),
        };
        (edge(thread), edge(thread + 1))
    });
    let per = (total + GEMM_PARTS - 1) / GEMM_PARTS;
    let per = ((per + GEMM_PART_ALIGN - 1) / GEMM_PART_ALIGN * GEMM_PART_ALIGN).max(1);
    let parts = (total + per - 1) / per;
    let apart = (thread * parts / threads..(thread + 1) * parts / threads)
        .filter(|_| merged.is_none())
        .map(|part| (part * per, ((part + 1) * per).min(total)));
    for (lo, end) in merged.into_iter().chain(apart) {
        if lo >= end {
            continue;
        }
        let len = (end - lo) as usize;
        // SAFETY: lo < total, so the offsets stay inside the matrices.
        let block = unsafe {
            if split_rows {
                Product {
                    m: len,
                    a: a.offset((lo * rsa * esize) as isize),
                    c: c.offset((lo * rsc * esize) as isize),
                    ..product
                }
            } else {
                Product {
                    n: len,
                    b: b.offset((lo * csb * esize) as isize),
                    c: c.offset((lo * csc * esize) as isize),
                    ..product
                }
            }
        };
        run(&block);
    }
}

/// True if a product of `[m, k, n]` runs on bf16 operands under [`Kernels::Bf16`]: bf16 pays
/// once packing is small beside the product; not for narrow `b`s, which the narrow kernels run
/// unpacked (the bf16 hosts have AVX-512), nor for a short `k`.
fn runs_bf16([m, k, n]: [u64; 3]) -> bool {
    m.min(n).min(k) > narrow::MAX_COLUMNS as u64
}

/// True if [`sgn_gemm`] gives threads blocks of rows of `c`, false if of columns.
fn splits_rows(narrow: bool, m: u64, n: u64) -> bool {
    narrow || m >= n
}

/// At most the bytes a [`PackCache`] keeps for `program`'s bf16 products under `bindings` on
/// `threads` threads (`None`: past `u64`): a bf16 copy of each fixed operand for each thread
/// that reads all of it (`b` when threads take rows of `c`, `a` when they take columns), one
/// in all for an operand they share out.
pub(crate) fn kept_bytes_bound(
    program: &Program,
    bindings: &Bindings,
    threads: u64,
) -> Option<u64> {
    let mut products = program.steps.iter().filter_map(|step| match step {
        Step::Gemm(gemm) => Some(gemm),
        Step::Kernel(_) | Step::Image(_) => None,
    });
    products.try_fold(0u64, |total, gemm| {
        let Some(fixed) = gemm.fixed else {
            return Some(total);
        };
        // Sizes past u64 saturate, as the arena's do.
        let [m, k, n] = [&gemm.m, &gemm.k, &gemm.n].map(|s| s.eval(bindings).unwrap_or(u64::MAX));
        if !runs_bf16([m, k, n]) {
            return Some(total);
        }
        // bf16 products are never narrow.
        let rows = splits_rows(false, m, n);
        let (lanes, whole) = match fixed {
            Side::A => (m, !rows),
            Side::B => (n, rows),
        };
        let bytes = if whole {
            bf16::kept_bytes_bound(lanes, k, 1)?.checked_mul(threads)?
        } else {
            bf16::kept_bytes_bound(lanes, k, threads)?
        };
        total.checked_add(bytes)
    })
}

/// Which kernels a GEMM may run in, as the generated code passes it to [`sgn_gemm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Kernels {
    /// The `gemm` crate for every product.
    General = 0,
    /// The [`narrow`] kernels for a narrow `b`, the `gemm` crate for the rest.
    Narrow = 1,
    /// Products on bf16 operands with f32 sums ([`bf16`]) where `m`, `k` and `n` all exceed
    /// [`narrow::MAX_COLUMNS`]; the smaller ones as with `Narrow` (bf16 hosts have AVX-512).
    Bf16 = 2,
}

/// One thread's part of a GEMM: sizes, untyped pointers and strides in elements.
#[derive(Clone, Copy)]
struct Product {
    m: usize,
    k: usize,
    n: usize,
    a: *const u8,
    rsa: isize,
    csa: isize,
    b: *const u8,
    rsb: isize,
    csb: isize,
    c: *mut u8,
    rsc: isize,
    csc: isize,
}

impl Product {
    /// `c = a @ b` in elements of `T` on this thread alone: through the [`narrow`] kernels when
    /// `narrow`, else through the `gemm` crate.
    ///
    /// # Safety
    /// As for [`sgn_gemm`]; `narrow` only if [`narrow::available`], `n ≤ MAX_COLUMNS`, `c`'s
    /// columns are contiguous, and `b`'s are or `k ≤ MAX_COLUMNS`.
    unsafe fn run<T: narrow::Element + num_traits::Float + 'static>(&self, narrow: bool) {
        let Product {
            m,
            k,
            n,
            rsa,
            csa,
            rsb,
            csb,
            rsc,
            csc,
            ..
        } = *self;
        let (a, b, c) = (self.a.cast::<T>(), self.b.cast::<T>(), self.c.cast::<T>());
        // SAFETY: forwarded from the caller. `gemm` computes dst = alpha·dst + beta·lhs·rhs
        // and takes column strides first; with read_dst false, alpha is ignored.
        unsafe {
            if narrow && csb != 1 {
                // At most 32×32 (checked by `sgn_gemm`): for a product this small the gemm
                // crate's set-up costs more than the copy (mnist_mlp's `δ @ wᵀ`: ~10 µs each
                // there, 4-6 µs here).
                // Uninitialized past `k·n`, which the kernels do not read.
                let mut rows = [const { MaybeUninit::<T>::uninit() };
                    narrow::MAX_COLUMNS * narrow::MAX_COLUMNS];
                for p in 0..k {
                    for j in 0..n {
                        rows[p * n + j].write(*b.offset(p as isize * rsb + j as isize * csb));
                    }
                }
                let rows = rows.as_ptr().cast::<T>();
                narrow::gemm(m, k, n, a, rsa, csa, rows, n as isize, c, rsc);
            } else if narrow {
                narrow::gemm(m, k, n, a, rsa, csa, b, rsb, c, rsc);
            } else {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c,
                    csc,
                    rsc,
                    false,
                    a,
                    csa,
                    rsa,
                    b,
                    csb,
                    rsb,
                    T::zero(),
                    T::one(),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

impl Product {
    /// `c = a @ b` in f32 on bf16-rounded operands, on this thread alone; product `site`'s
    /// `fixed` operand ([`Side::code`]) packed once per [`PackCache`] when
    /// the call runs with one ([`with_pack_cache`]). One entry per thread: bf16 products give
    /// each thread one block (`merged` in [`sgn_gemm`]), the same in every call.
    ///
    /// # Safety
    /// As for [`sgn_gemm`]; the matrices are f32 and the host has AVX512-BF16.
    unsafe fn run_bf16(&self, site: usize, fixed: i64, thread: usize) {
        let p = *self;
        // SAFETY: forwarded from the caller.
        let run = |fixed: Option<(Side, &mut bf16::Kept)>| unsafe {
            bf16::gemm(
                p.m,
                p.k,
                p.n,
                p.a.cast(),
                p.rsa,
                p.csa,
                p.b.cast(),
                p.rsb,
                p.csb,
                p.c.cast(),
                p.rsc,
                p.csc,
                fixed,
            )
        };
        PACK_CACHE.with(|cache| match (cache.get(), Side::from_code(fixed)) {
            (Some((cache, graph)), Some(side)) => {
                // SAFETY: `with_pack_cache` keeps the cache alive while it is set.
                let cache = unsafe { &*cache };
                cache.with_entry((graph, site, thread), |kept| run(Some((side, kept))));
            }
            _ => run(None),
        });
    }
}

thread_local! {
    /// The cache of the call this thread is running, and the graph's id ([`with_pack_cache`]).
    static PACK_CACHE: Cell<Option<(*const PackCache, u64)>> = const { Cell::new(None) };
}

/// Runs `f` (one thread's part of a call of graph `graph`) with `cache` for its bf16 products'
/// fixed operands.
pub fn with_pack_cache<R>(cache: Option<&PackCache>, graph: u64, f: impl FnOnce() -> R) -> R {
    /// Puts the previous cache back, also if `f` unwinds.
    struct Restore(Option<(*const PackCache, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PACK_CACHE.set(self.0);
        }
    }
    let _restore = Restore(PACK_CACHE.replace(cache.map(|c| (c as *const PackCache, graph))));
    f()
}

/// A runtime integer of a compiled program: a constant, or a slot of the sizes table.
#[derive(Clone, Copy, Debug)]
pub enum SizeValue {
    Fixed(i64),
    Slot(usize),
}

impl SizeValue {
    /// # Safety
    /// `sizes` must be the program's sizes table, which has every slot.
    unsafe fn get(self, sizes: *const i64) -> usize {
        match self {
            SizeValue::Fixed(n) => n as usize,
            // SAFETY: as documented above.
            SizeValue::Slot(i) => unsafe { *sizes.add(i) as usize },
        }
    }
}

/// A convolution or pooling step (see [`super::program::ImageStep`]) as the program runs it:
/// buffers are the step's own numbers, at element offsets.
#[derive(Debug)]
pub struct ImageCall {
    pub kernel: ImageKernel,
    pub is_f64: bool,
    pub images: SizeValue,
    pub operands: Vec<(usize, SizeValue)>,
    pub out: (usize, SizeValue),
}

impl ImageCall {
    /// Runs `thread`'s share: a run of whole images, or for a result summed over the images,
    /// whole parts (each part's images fixed by the image count alone).
    ///
    /// # Safety
    /// `buffers`, `sizes` and `ids` must be the program's, valid for the step's extents; the
    /// threads of one call must run disjoint `thread` indices.
    pub unsafe fn run(
        &self,
        buffers: *const *mut u8,
        sizes: *const i64,
        thread: i64,
        threads: i64,
        ids: &[i64],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if self.is_f64 {
                self.run_typed::<f64>(buffers, sizes, thread as usize, threads as usize, ids)
            } else {
                self.run_typed::<f32>(buffers, sizes, thread as usize, threads as usize, ids)
            }
        }
    }

    unsafe fn run_typed<T: crate::ir::tensor::Element>(
        &self,
        buffers: *const *mut u8,
        sizes: *const i64,
        thread: usize,
        threads: usize,
        ids: &[i64],
    ) {
        // SAFETY: the caller passes the program's tables; buffer `ids[b]` is planned to hold
        // the step's extents from the given offset on.
        let base = |(buffer, offset): (usize, SizeValue)| unsafe {
            let start = *buffers.add(ids[buffer] as usize) as *mut T;
            start.add(offset.get(sizes))
        };
        // SAFETY: as above.
        let images = unsafe { self.images.get(sizes) };
        // The elements of images `range` of an operand or result of extent `extent`.
        let span = |extent: Extent, range: &std::ops::Range<usize>| match extent {
            Extent::PerImage(n) => (range.start * n, range.len() * n),
            Extent::Whole(n) => (0, n),
        };
        let run = |range: std::ops::Range<usize>, out: *mut T, out_len: usize| {
            let operands: Vec<&[T]> = self
                .operands
                .iter()
                .zip(self.kernel.operands())
                .map(|(&operand, extent)| {
                    let (start, len) = span(extent, &range);
                    // SAFETY: the operand holds every image of the call; no thread writes it
                    // during this step.
                    unsafe { std::slice::from_raw_parts(base(operand).add(start), len) }
                })
                .collect();
            // SAFETY: each thread writes its own images (or parts) of the result.
            let out = unsafe { std::slice::from_raw_parts_mut(out, out_len) };
            self.kernel.run(&operands, out);
        };
        let out = base(self.out);
        match self.kernel.output() {
            Extent::PerImage(n) => {
                let range = images * thread / threads..images * (thread + 1) / threads;
                if !range.is_empty() {
                    // SAFETY: the run's images lie inside the result.
                    run(
                        range.clone(),
                        unsafe { out.add(range.start * n) },
                        range.len() * n,
                    );
                }
            }
            Extent::Whole(n) => {
                let parts = PARTS as usize;
                for part in parts * thread / threads..parts * (thread + 1) / threads {
                    let range = images * part / parts..images * (part + 1) / parts;
                    // SAFETY: the result holds `PARTS` partial sums of `n` elements each.
                    run(range, unsafe { out.add(part * n) }, n);
                }
            }
        }
    }
}
