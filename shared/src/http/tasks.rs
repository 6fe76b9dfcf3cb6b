//! The server's tasks (connections, sessions, event streams, HTTP/2
//! streams, its own background work), each guarded: a panic in one is a bug,
//! and it must be seen, not end as a silently dropped connection. It is
//! caught, logged once at error level with what the task was serving,
//! counted (`demo_panics_total` in `/metrics`), and the server goes on.
//!
//! What a task serves is a task-local, so that the panic hook can name it,
//! and a task spawned from a connection (its WebSocket session, an HTTP/2
//! stream) names the same connection without being told.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use tokio_util::task::TaskTracker;

tokio::task_local! {
    static SERVING: Serving;
}

/// What a task serves, for the log line of its panic: 32 bytes a task.
#[derive(Debug, Clone, Copy)]
enum Serving {
    Connection(SocketAddr),
    Task(&'static str),
}

impl std::fmt::Display for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Serving::Connection(peer) => write!(f, "the connection from {peer}"),
            Serving::Task(what) => f.write_str(what),
        }
    }
}

/// How many guarded tasks panicked, in this process: counted by the hook,
/// so that a task carries nothing for it.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Where the server's tasks run: shutdown waits for them, and a panic in
/// one is caught and counted.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Tasks {
        install_panic_hook();
        Tasks::default()
    }

    /// Runs the task serving the connection from `peer`.
    pub fn spawn_for(&self, peer: SocketAddr, task: impl Future<Output = ()> + Send + 'static) {
        self.guarded(Serving::Connection(peer), task);
    }

    /// Runs `task`, serving what the task that spawns it serves (a session
    /// spawned by its connection's request), or else `what`.
    pub fn spawn_named(&self, what: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let serving = SERVING.try_with(|serving| *serving);
        self.guarded(serving.unwrap_or(Serving::Task(what)), task);
    }

    /// Runs `task` as part of what the task that spawns it serves.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_named("a task of the server", task);
    }

    fn guarded(&self, serving: Serving, task: impl Future<Output = ()> + Send + 'static) {
        // The hook has logged and counted a panic; its payload is dropped
        // with the task. Combinators, not an `async` block: a block would
        // hold the task twice (as its capture and as the future it awaits),
        // doubling a connection's memory (4.3 to 8.0 KiB a WebSocket
        // client, measured). What this adds to a task: 48 bytes.
        let caught = AssertUnwindSafe(task).catch_unwind();
        self.tracker.spawn(SERVING.scope(serving, caught));
    }

    /// How many guarded tasks panicked, in this process (one server a
    /// process, but tests run several).
    pub fn panics(&self) -> u64 {
        PANICS.load(Ordering::Relaxed)
    }

    /// Refuses no new task, but lets [`Tasks::wait`] finish once the
    /// running ones have.
    pub fn close(&self) {
        self.tracker.close();
    }

    /// Waits for every task, once closed.
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }
}

/// Logs a panic in a guarded task once, through `log`, naming what the task
/// served; any other panic (a test's, the main thread's) goes to the hook
/// that was there before, as does every panic when no logger is set.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let serving = SERVING.try_with(|serving| *serving);
            if serving.is_ok() {
                PANICS.fetch_add(1, Ordering::Relaxed);
            }
            match serving {
                Ok(serving) if log::log_enabled!(log::Level::Error) => {
                    let payload = info.payload();
                    let message = payload
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(no message)");
                    let place = info
                        .location()
                        .map(|at| format!(" at {}:{}", at.file(), at.line()))
                        .unwrap_or_default();
                    log::error!(
                        "A task panicked serving {serving}{place}: {message}; \
                         it was dropped, the server goes on"
                    );
                }
                _ => before(info),
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What was logged at error level, in this test binary.
    static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Errors;

    impl log::Log for Errors {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() == log::Level::Error
        }

        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                let line = record.args().to_string();
                ERRORS.lock().unwrap().push(line);
            }
        }

        fn flush(&self) {}
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[tokio::test]
    async fn a_panic_in_a_task_is_logged_once_counted_and_the_others_go_on() {
        // The only logger of this test binary.
        let _ = log::set_logger(&Errors);
        log::set_max_level(log::LevelFilter::Error);
        let tasks = Tasks::new();
        let before = tasks.panics();
        tasks.spawn_for(peer(), async {
            let parts: Vec<u8> = Vec::new();
            let _ = parts[usize::from(parts.is_empty())];
        });
        let (done, finished) = tokio::sync::oneshot::channel();
        tasks.spawn(async move {
            let _ = done.send(());
        });
        tasks.close();
        tasks.wait().await;
        assert!(finished.await.is_ok(), "the other task ran");
        assert_eq!(tasks.panics(), before + 1);
        let errors = ERRORS.lock().unwrap().clone();
        let ours: Vec<_> = errors
            .iter()
            .filter(|line| line.contains("the connection from 127.0.0.1:9"))
            .collect();
        assert_eq!(ours.len(), 1, "{errors:#?}");
        let line = ours[0];
        assert!(
            line.starts_with("A task panicked serving the connection from 127.0.0.1:9 at "),
            "{line}"
        );
        assert!(line.contains("index out of bounds"), "{line}");
    }

    #[tokio::test]
    async fn a_task_spawned_by_a_connection_serves_that_connection() {
        let tasks = Tasks::new();
        let (seen, named) = tokio::sync::oneshot::channel();
        let inner = tasks.clone();
        tasks.spawn_for(peer(), async move {
            inner.spawn(async move {
                let _ = seen.send(SERVING.try_with(|serving| serving.to_string()));
            });
        });
        let named = named.await.unwrap();
        assert_eq!(
            named.ok().as_deref(),
            Some("the connection from 127.0.0.1:9")
        );
    }
}
