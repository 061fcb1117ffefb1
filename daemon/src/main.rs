#![forbid(unsafe_code)]

/// mimalloc rather than the C library's allocator: a request allocates and
/// frees many small buffers across threads, where glibc's allocator spent a
/// large share of the daemon's CPU and musl's is slower still.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcp_multiplayer::cli::main()
}
