fn main() -> std::process::ExitCode {
    use server_sent_events_demo::{DEFAULTS, frame, routes};
    shared::app::main(&DEFAULTS, frame, routes)
}
