fn main() -> std::process::ExitCode {
    mcp_multiplayer::cli::main()
}
