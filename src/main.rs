//! The `synthmon` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    synthmon::cli::main()
}
