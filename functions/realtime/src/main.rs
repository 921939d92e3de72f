//! Entry point of the `realtime` function: a WebSocket server (HTTP mode only).

fn main() -> std::process::ExitCode {
    realtime::main()
}
