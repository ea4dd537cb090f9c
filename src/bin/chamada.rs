//! The local server: `cargo run`.
fn main() -> std::process::ExitCode {
    chamada::entry::local::main()
}
