//! `wss://`: the WebSocket over TLS (HTTP/1.1, chosen by ALPN).

mod common;

use common::next_json;
use serde_json::json;
use shared::testing::PATIENCE;
use shared::testing::tls::Certificate;
use tokio::time::timeout;
use tokio_tungstenite::client_async;

#[tokio::test]
async fn a_wss_client_gets_gotcha_and_ticks() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "100ms"];
    all.extend(options.iter().map(String::as_str));
    let server = common::start(&all).await;
    // As a browser opens a WebSocket on a server that does not offer
    // WebSockets over HTTP/2: a connection of its own, HTTP/1.1 only.
    let tls = certificate.connect(server.addr, &["http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://localhost:{}/", server.addr.port());
    let (mut client, _) = timeout(PATIENCE, client_async(url, tls))
        .await
        .expect("the handshake finishes in time")
        .expect("the handshake succeeds");
    assert_eq!(next_json(&mut client).await, json!({ "message": "Gotcha" }));
    assert_eq!(next_json(&mut client).await["message"], "Hello hello!");
}

#[tokio::test]
async fn certificate_files_that_cannot_serve_are_one_clear_line_and_status_1() {
    let binary = env!("CARGO_BIN_EXE_websocket-demo");
    let certificate = Certificate::localhost();
    let cert = certificate.cert.display().to_string();
    let key = certificate.key.display().to_string();
    for (args, expected) in [
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", &key],
            "--tls-cert /nonexistent.pem",
        ),
        (vec!["--tls-cert", &cert, "--tls-key", &cert], "--tls-key"),
        (vec!["--tls-cert", &cert], "--tls-key"),
    ] {
        let output = tokio::process::Command::new(binary)
            .args(["--port", "0"])
            .args(&args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
