fn main() -> std::process::ExitCode {
    use websocket_demo::{DEFAULTS, frame, routes};
    shared::app::main(&DEFAULTS, frame, routes)
}
