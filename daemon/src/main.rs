#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mcp_multiplayer::cli::main()
}
