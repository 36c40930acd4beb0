//! The `sluice` binary: see `sluice --help`.

/// mimalloc instead of glibc's malloc (see the manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
