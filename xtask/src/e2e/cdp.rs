//! Just enough of the Chrome DevTools Protocol to drive headless Chromium:
//! open tabs, run script in them, collect their console errors, take
//! screenshots. Commands and events are JSON over one WebSocket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use data_encoding::BASE64;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = Result<Value>;

/// Debian's Chromium, installed by `.ci/run` when missing.
const CHROMIUM: &str = "chromium";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

struct Connection {
    /// `None` until the browser's endpoint is known.
    sink: tokio::sync::Mutex<Option<SplitSink<Socket, Message>>>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    /// Console errors and uncaught exceptions, by session.
    errors: Mutex<HashMap<String, Vec<String>>>,
}

impl Connection {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let (reply, answer) = oneshot::channel();
        lock(&self.pending).insert(id, reply);
        let sent = match self.sink.lock().await.as_mut() {
            Some(sink) => sink.send(Message::text(command.to_string())).await,
            None => bail!("{method}: not connected"),
        };
        sent.with_context(|| format!("{method}: cannot send"))?;
        match timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(reply)) => reply.context(method.to_owned()),
            Ok(Err(_)) => bail!("{method}: the browser went away"),
            Err(_) => bail!("{method}: no answer within {COMMAND_TIMEOUT:?}"),
        }
    }

    /// Routes one message from the browser: a reply, or an event.
    fn dispatch(&self, message: Value) {
        if let Some(id) = message["id"].as_u64() {
            if let Some(reply) = lock(&self.pending).remove(&id) {
                let result = match message.get("error") {
                    Some(error) => Err(anyhow!("{}", error["message"].as_str().unwrap_or("error"))),
                    None => Ok(message["result"].clone()),
                };
                let _ = reply.send(result);
            }
            return;
        }
        let session = message["sessionId"].as_str().unwrap_or_default().to_owned();
        let params = &message["params"];
        let error = match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str());
                Some(format!("uncaught: {}", text.unwrap_or("exception")))
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| {
                        let text = arg["value"].as_str().or(arg["description"].as_str());
                        text.unwrap_or_default().to_owned()
                    })
                    .collect();
                Some(format!("console.error: {}", args.join(" ")))
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let text = params["entry"]["text"].as_str().unwrap_or_default();
                Some(format!("log: {text}"))
            }
            _ => None,
        };
        if let Some(error) = error {
            lock(&self.errors).entry(session).or_default().push(error);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A headless Chromium, with its own fresh profile.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    connection: Arc<Connection>,
}

impl Browser {
    /// Starts Chromium with `extra` options besides its usual ones.
    pub async fn launch(extra: &[String]) -> Result<Browser> {
        let profile = std::env::temp_dir().join(format!("demo-e2e-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).context("cannot create a profile")?;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {CHROMIUM} (apt-get install chromium)"))?;
        let mut browser = Browser {
            child,
            profile,
            connection: Arc::new(Connection {
                sink: tokio::sync::Mutex::new(None),
                next_id: AtomicU64::new(1),
                pending: Mutex::default(),
                errors: Mutex::default(),
            }),
        };
        // From here on, dropping `browser` stops Chromium and removes the profile.
        let endpoint = browser.endpoint().await?;
        let (socket, _) = connect_async(&endpoint)
            .await
            .with_context(|| format!("cannot reach the browser at {endpoint}"))?;
        let (sink, mut stream) = socket.split();
        *browser.connection.sink.lock().await = Some(sink);
        let connection = browser.connection.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Ok(text) = message.to_text()
                    && let Ok(value) = serde_json::from_str(text)
                {
                    connection.dispatch(value);
                }
            }
        });
        Ok(browser)
    }

    /// Chromium writes its port and browser path to `DevToolsActivePort`.
    async fn endpoint(&mut self) -> Result<String> {
        let file = self.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return Ok(format!("ws://127.0.0.1:{port}{path}"));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{CHROMIUM} exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("{CHROMIUM} did not open its DevTools port within 30 s");
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new tab, 1000x800, with console errors collected.
    pub async fn new_tab(&self) -> Result<Tab> {
        let connection = &self.connection;
        let target = connection
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let attached = connection
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .context("Target.attachToTarget gave no session")?
            .to_owned();
        let tab = Tab {
            connection: connection.clone(),
            session,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            tab.call(domain, json!({})).await?;
        }
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(tab)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One tab of the browser.
pub struct Tab {
    connection: Arc<Connection>,
    session: String,
}

impl Tab {
    async fn call(&self, method: &str, params: Value) -> Reply {
        self.connection
            .call(Some(&self.session), method, params)
            .await
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        let loaded = "document.readyState === 'complete' && location.href !== 'about:blank'";
        wait_until(
            &format!("{url} loaded"),
            Duration::from_secs(15),
            async || Ok(self.eval(loaded).await? == true),
        )
        .await
    }

    /// Calls `window.demo.<member>(args)`, the page's API for these tests, or
    /// reads `window.demo.<member>` when it is not a function; awaits a promise.
    /// The member and the arguments go into the page as JSON, never as code.
    pub async fn call_demo(&self, member: &str, args: &[Value]) -> Reply {
        let expression = format!("({CALL_DEMO})({}, {})", json!(member), json!(args));
        self.eval(&expression).await
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Reply {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str());
            bail!("{expression}: {}", text.unwrap_or("exception"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Console errors and uncaught exceptions so far; clears the list.
    pub fn take_errors(&self) -> Vec<String> {
        lock(&self.connection.errors)
            .remove(&self.session)
            .unwrap_or_default()
    }

    /// Saves a PNG of the tab to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let png = BASE64
            .decode(data.as_bytes())
            .context("the screenshot is not base64")?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).with_context(|| folder.display().to_string())?;
        }
        std::fs::write(path, png).with_context(|| path.display().to_string())
    }
}

/// What [`Tab::call_demo`] runs in the page, with its member and arguments.
const CALL_DEMO: &str = "(member, args) => typeof window.demo[member] === 'function' \
     ? window.demo[member](...args) \
     : window.demo[member]";

/// Polls `check` until it holds; fails naming `what` after `limit`.
pub async fn wait_until(
    what: &str,
    limit: Duration,
    check: impl AsyncFn() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}
