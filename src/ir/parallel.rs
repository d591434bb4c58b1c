//! Independent jobs on all cores: what compiling several graphs at once needs, and no more.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `job` applied to every item of `items`, the items shared out among the machine's cores,
/// largest `size` first (so that the last job a core starts is a small one). The results are in
/// the order of `items`. A helper thread the OS refuses to start only leaves more work to the
/// others; the calling thread works too.
///
/// ```
/// let squares = sgn::ir::parallel::map(&[3u64, 1, 2], |&n| n as usize, |&n| n * n);
/// assert_eq!(squares, vec![9, 1, 4]);
/// ```
pub fn map<T: Sync, R: Send>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    job: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let result = job(&items[i]);
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..cores.min(items.len()) {
            if std::thread::Builder::new()
                .spawn_scoped(scope, work)
                .is_err()
            {
                break;
            }
        }
        work();
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every job ran")
        })
        .collect()
}
