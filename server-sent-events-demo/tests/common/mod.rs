//! What every test file of the SSE server starts with.

use shared::Server;
use shared::testing;

/// The server, in-process, on 127.0.0.1 and a free port, with `options`.
pub async fn start(options: &[&str]) -> Server {
    testing::start(
        &server_sent_events_demo::DEFAULTS,
        server_sent_events_demo::frame,
        server_sent_events_demo::routes,
        options,
    )
    .await
}
