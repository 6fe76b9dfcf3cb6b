fn main() -> std::process::ExitCode {
    shared::server::main(&websocket_demo::DEFAULTS, websocket_demo::routes)
}
