//! The `synthmon` binary: everything lives in the library.

/// mimalloc rather than glibc's malloc: a run allocates and frees many
/// small objects on whichever worker thread it lands, and glibc's
/// per-thread arenas keep freed memory apart, so the daemon's resident
/// size grew with its threads; mimalloc's free lists return it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    synthmon::cli::main()
}
