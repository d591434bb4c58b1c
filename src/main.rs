// Compiling a model allocates and frees millions of small values (graph and e-graph nodes,
// schedules); mimalloc does that in about half the instructions of glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Die quietly on a closed pipe (`sgn inspect … | head`) like other Unix tools, instead of
    // panicking in `println!`: Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(sgn::cli::main());
}
