//! What the generated code calls and runs on: the GEMM shim, the barrier between steps, and the
//! pool of threads that run a program together.
//!
//! Every thread runs the whole program (SPMD): each kernel and GEMM gives each thread a disjoint
//! part of its output, and threads meet at a barrier after each step. Since no output element
//! is summed across threads, results do not depend on the number of threads.

use super::bf16::PackCache;
use super::program::{PARTS, Side};
use super::{bf16, narrow};
use crate::ir::op::{Extent, ImageKernel};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;

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
/// in its program and `fixed` says which operand depends on no direction ([`Side::code`]):
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
    // bf16 pays once packing is small beside the product: not for narrow `b`s, which the
    // narrow kernels run unpacked (the bf16 hosts have AVX-512), nor for a short `k`.
    let bf16 = kernels == Kernels::Bf16 as i64 && m.min(n).min(k) as usize > narrow::MAX_COLUMNS;
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
    let split_rows = narrow || m >= n;
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

/// A reusable barrier for a fixed number of threads: spins briefly, then yields, so that it is
/// fast between steps and still fair on a loaded machine.
#[derive(Debug)]
#[repr(C)]
pub struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    threads: usize,
}

impl SpinBarrier {
    pub fn new(threads: usize) -> SpinBarrier {
        SpinBarrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            threads,
        }
    }

    /// Returns once all `threads` threads have called `wait` (for this round).
    pub fn wait(&self) {
        if self.threads <= 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < 4096 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// The barrier entry point the generated code calls between steps.
///
/// # Safety
/// `barrier` must point to a live [`SpinBarrier`].
pub unsafe extern "C" fn sgn_barrier(barrier: *const SpinBarrier) {
    // SAFETY: as documented above.
    unsafe { &*barrier }.wait();
}

/// A job: a closure called once per thread with the thread's index.
type Job = *const (dyn Fn(usize) + Sync);

struct PoolState {
    job: Option<SendJob>,
    generation: u64,
    shutdown: bool,
}

#[derive(Clone, Copy)]
struct SendJob(Job);

// SAFETY: the closure is `Sync`, and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for SendJob {}

struct Shared {
    state: Mutex<PoolState>,
    wake: Condvar,
    /// Mirrors `state.generation`, so idle workers can spin on it without the lock.
    generation: AtomicU64,
    /// Workers still running the current job.
    remaining: AtomicUsize,
    /// The first panic of a worker in the current job, raised again on the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// Worker threads that run a job together with the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held while a job runs: callers on several threads take turns.
    turn: Mutex<()>,
}

/// The pools alive, by thread count (see [`Pool::shared`]).
static POOLS: Mutex<Vec<(usize, Weak<Pool>)>> = Mutex::new(Vec::new());

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads())
    }
}

impl Pool {
    /// The pool of `threads` threads that every graph compiled for that many threads shares
    /// (started on first use, stopped when the last graph using it is dropped). One pool rather
    /// than one per graph: an SGN step calls five graphs back to back, and a worker per graph,
    /// spinning idle after its graph's call, took the cores from the next graph's threads.
    ///
    /// Errors: the OS refused to start a worker thread.
    pub fn shared(threads: usize) -> std::io::Result<Arc<Pool>> {
        let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|(_, pool)| pool.strong_count() > 0);
        let alive = pools.iter().find(|(t, _)| *t == threads);
        if let Some(pool) = alive.and_then(|(_, pool)| pool.upgrade()) {
            return Ok(pool);
        }
        let pool = Arc::new(Pool::new(threads)?);
        pools.push((threads, Arc::downgrade(&pool)));
        Ok(pool)
    }

    /// A pool of `threads` threads in all: the caller and `threads − 1` workers.
    ///
    /// Errors: the OS refused to start a worker (the ones already started are stopped).
    fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(PoolState {
                job: None,
                generation: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(threads.saturating_sub(1)),
            turn: Mutex::new(()),
        };
        for index in 1..threads.max(1) {
            let shared = pool.shared.clone();
            // On error, dropping `pool` stops and joins the workers started so far.
            let handle = std::thread::Builder::new()
                .name(format!("sgn-jit-{index}"))
                .spawn(move || worker(&shared, index))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `job(i)` for every thread index `i`, index 0 on the calling thread, and returns
    /// when all are done.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            job(0);
            return;
        }
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: only the lifetime is erased; this function waits for every worker before it
        // returns, so the closure outlives its uses.
        let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
        self.shared
            .remaining
            .store(self.workers.len(), Ordering::Release);
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.job = Some(SendJob(erased));
            state.generation += 1;
            self.shared
                .generation
                .store(state.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        // Waits for the workers even if `job(0)` unwinds: they may still be running the
        // closure, and the next caller of this shared pool must find `remaining` at 0.
        let wait = WaitForWorkers(&self.shared.remaining);
        job(0);
        drop(wait);
        let panic = self
            .shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}

/// A part of a split ([`Pool::split`]) is at least this many blocks: waking another thread for
/// less costs more than the pass.
const MIN_BLOCKS_PER_PART: usize = 2;

impl Pool {
    /// `0..n` cut for [`Pool::map_parts`]: runs of whole blocks of `block` elements (so that
    /// sums formed per block do not depend on the cut), as even as can be, at least
    /// `MIN_BLOCKS_PER_PART` (2) blocks a part, at most one part per thread.
    pub fn split(&self, n: usize, block: usize) -> Vec<std::ops::Range<usize>> {
        let blocks = n.div_ceil(block.max(1));
        let parts = (self.threads()).min(blocks / MIN_BLOCKS_PER_PART).max(1);
        let edge = |i: usize| (blocks * i / parts * block).min(n);
        (0..parts).map(|i| edge(i)..edge(i + 1)).collect()
    }

    /// `work` on each of `parts`, part `i` on thread `i` (so at most one part per thread), the
    /// results in the parts' order. For vector passes outside the graphs (the optimizers'
    /// conjugate-gradient updates, conversions of directions), which run on the graphs' threads
    /// between their calls.
    ///
    /// Not to be called from inside a job of the same pool, which would wait for itself.
    ///
    /// # Panics
    /// With more parts than threads; and with the panic of a part, once every part has ended
    /// (the pool stays usable).
    ///
    /// # Example
    /// ```
    /// let pool = sgn::codegen::Pool::shared(2)?;
    /// let sums = pool.map_parts(vec![&[1.0, 2.0][..], &[3.0][..]], |part| part.iter().sum::<f64>());
    /// assert_eq!(sums, [3.0, 3.0]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn map_parts<T: Send, R: Send>(
        &self,
        parts: Vec<T>,
        work: impl Fn(T) -> R + Sync,
    ) -> Vec<R> {
        assert!(parts.len() <= self.threads(), "at most one part per thread");
        if parts.len() <= 1 {
            return parts.into_iter().map(work).collect();
        }
        let slots: Vec<Mutex<(Option<T>, Option<R>)>> = parts
            .into_iter()
            .map(|part| Mutex::new((Some(part), None)))
            .collect();
        let lock = |i: usize| slots[i].lock().unwrap_or_else(|e| e.into_inner());
        self.run(&|thread| {
            if thread < slots.len() {
                let part = lock(thread).0.take();
                let result = part.map(&work);
                lock(thread).1 = result;
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                let (_, result) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
                result.expect("every part ran")
            })
            .collect()
    }
}

/// `v` cut at the edges of `parts` (consecutive ranges from 0, as [`Pool::split`] gives).
pub(crate) fn split_mut<'a, T>(
    mut v: &'a mut [T],
    parts: &[std::ops::Range<usize>],
) -> Vec<&'a mut [T]> {
    parts
        .iter()
        .map(|part| {
            let (head, rest) = std::mem::take(&mut v).split_at_mut(part.len());
            v = rest;
            head
        })
        .collect()
}

/// On drop, waits until every worker has finished the current job.
struct WaitForWorkers<'a>(&'a AtomicUsize);

impl Drop for WaitForWorkers<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.0.load(Ordering::Acquire) != 0 {
            if spins < 1 << 14 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.shutdown = true;
            state.generation += 1;
            self.shared
                .generation
                .store(state.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = w.join();
        }
    }
}

/// Marks the worker done even if the job unwinds, so `Pool::run` never waits forever.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Spin a little first: back-to-back calls (CG iterations) then skip the sleep.
        let mut spins = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen && spins < 1 << 14 {
            std::hint::spin_loop();
            spins += 1;
        }
        let job = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.generation == seen && !state.shutdown {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.shutdown {
                return;
            }
            seen = state.generation;
            state.job.expect("a new generation carries a job")
        };
        let _done = Done(&shared.remaining);
        // SAFETY: `Pool::run` keeps the closure alive until `remaining` reaches 0.
        let run = std::panic::AssertUnwindSafe(|| unsafe { (*job.0)(index) });
        // The worker lives on (the pool is shared); the caller raises the panic.
        if let Err(payload) = std::panic::catch_unwind(run) {
            let mut panic = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
            panic.get_or_insert(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_of_one_thread_count_share_a_pool_while_it_lives() {
        // Thread counts no other test uses, so that no other test holds these pools.
        let a = Pool::shared(7).expect("threads start");
        let b = Pool::shared(7).expect("threads start");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &Pool::shared(6).expect("threads start")));
        assert_eq!(a.threads(), 7);
        // Held weakly: the pool (and its workers) go with the last graph that uses it.
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_job_that_panics_on_the_caller_leaves_the_pool_ready_for_the_next() {
        let pool = Pool::shared(4).expect("threads start");
        let worker_done = AtomicUsize::new(0);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&|thread| {
                if thread == 0 {
                    panic!("the caller's part fails");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                worker_done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(unwound.is_err());
        // The workers finished before run unwound past the closure they were running.
        assert_eq!(worker_done.load(Ordering::Relaxed), 3);
        let calls = AtomicUsize::new(0);
        pool.run(&|_| {
            calls.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(calls.into_inner(), 4);
    }

    #[test]
    fn parts_run_one_per_thread_and_come_back_in_order() {
        let pool = Pool::shared(3).expect("threads start");
        for parts in 0..=3 {
            let ran_on = pool.map_parts((0..parts).collect(), |part: usize| {
                (part, std::thread::current().name().map(String::from))
            });
            assert_eq!(ran_on.len(), parts);
            for (i, (part, name)) in ran_on.into_iter().enumerate() {
                assert_eq!(part, i);
                // Part 0 on the caller, the others on the pool's workers.
                assert_eq!(
                    name.is_some_and(|n| n.starts_with("sgn-jit-")),
                    i > 0 && parts > 1
                );
            }
        }
    }

    #[test]
    fn a_part_that_panics_on_a_worker_is_raised_on_the_caller_and_the_pool_lives_on() {
        let pool = Pool::shared(5).expect("threads start");
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_parts(vec![0, 1, 2], |part: usize| {
                assert_ne!(part, 2, "part 2 fails");
                part
            })
        }));
        let message = unwound.expect_err("the worker's panic reaches the caller");
        assert_eq!(
            message
                .downcast_ref::<String>()
                .map(|m| m.contains("part 2 fails")),
            Some(true)
        );
        assert_eq!(
            pool.map_parts(vec![3, 4, 5], |part: usize| part * 2),
            [6, 8, 10]
        );
    }

    #[test]
    fn callers_on_several_threads_take_turns_on_a_shared_pool() {
        let pool = Pool::shared(2).expect("threads start");
        let calls = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        // Both indices run once per job, each job alone on the pool.
                        let seen = [AtomicUsize::new(0), AtomicUsize::new(0)];
                        pool.run(&|thread| {
                            seen[thread].fetch_add(1, Ordering::Relaxed);
                        });
                        assert_eq!(seen.map(|s| s.into_inner()), [1, 1]);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(calls.into_inner(), 800);
    }
}
