// Compiling a model allocates and frees millions of small values (graph and e-graph nodes,
// schedules); mimalloc does that in about half the instructions of glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` in mimalloc.h, which libmimalloc-sys
/// names by number only).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the process for reuse. Training frees and allocates again the same tens
/// of megabytes every step (graph outputs and residuals, CG's vectors); mimalloc by default purges
/// freed memory (gives it back to the OS), so every step faulted it in and zeroed it again:
/// `sgn bench` on a 1.3M-parameter MLP took 50,000 page faults where it now takes 550, which
/// were a third of an SGN step's time outside its graphs. The process then holds its peak.
/// A user's `MIMALLOC_PURGE_DELAY` is left to rule.
#[cfg(feature = "mimalloc")]
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

fn main() {
    // Die quietly on a closed pipe (`sgn inspect … | head`) like other Unix tools, instead of
    // panicking in `println!`: Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    #[cfg(feature = "mimalloc")]
    keep_freed_memory();
    std::process::exit(sgn::cli::main());
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// The option number is mimalloc's purge delay, whose default (in the mimalloc 3 that
    /// libmimalloc-sys builds) is 1000 ms: a mimalloc whose options were renumbered fails here
    /// rather than setting another option.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment's value, not the default, is what mimalloc reports
        }
        // SAFETY: reads an option.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(default, 1000);
    }
}
