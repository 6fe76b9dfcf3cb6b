fn main() -> std::process::ExitCode {
    shared::server::main(
        &server_sent_events_demo::DEFAULTS,
        server_sent_events_demo::routes,
    )
}
