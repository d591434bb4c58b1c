//! The pool of threads that run a program together, and the barrier between its steps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;

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
