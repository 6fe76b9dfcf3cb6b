//! `deploy/nginx.conf`, the file every deployment and test uses, is one nginx
//! accepts, and passes what a push server needs through.

use std::process::Command;

use shared::testing::proxy::{self, Nginx};

#[test]
fn nginx_accepts_the_deployment_configuration() {
    let folder = std::env::temp_dir().join(format!("demo-nginx-t-{}", std::process::id()));
    std::fs::create_dir_all(folder.join("tmp")).unwrap();
    let instances = ["127.0.0.1:8081".parse().unwrap()];
    let listen = [
        "127.0.0.1:9081".parse().unwrap(),
        "127.0.0.1:9080".parse().unwrap(),
    ];
    for (name, text) in proxy::includes(listen, &instances, &instances) {
        std::fs::write(folder.join(name), text).unwrap();
    }
    let _ = std::fs::remove_file(folder.join("nginx.conf"));
    std::os::unix::fs::symlink(proxy::config(), folder.join("nginx.conf")).unwrap();
    let output = Command::new(proxy::nginx())
        .args(["-t", "-e", "stderr", "-p"])
        .arg(&folder)
        .arg("-c")
        .arg(folder.join("nginx.conf"))
        .output()
        .expect("nginx runs (apt-get install nginx)");
    let said = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&folder);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("test is successful"), "{said}");
}

#[tokio::test]
async fn nginx_starts_on_free_ports_and_stops() {
    let mut nginx = Nginx::start(&[], &[]).await;
    assert_ne!(nginx.websocket, nginx.sse);
    nginx.stop().await;
    assert!(std::net::TcpStream::connect(nginx.websocket).is_err());
}
