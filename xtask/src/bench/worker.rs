//! A client process of the bench (`cargo xtask bench --worker`, started by the
//! bench itself): holds its share of the clients, counts what each receives,
//! and says so on stdout (see `wire.rs`).
//!
//! One process cannot hold more clients than its open-file limit, so the
//! bench spreads them over several of these. It exits when its stdin closes
//! (the bench has stopped, however it stopped) or its plan's lifetime ends.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::clients::{self, Dialer, event_seq, next_line, websocket_seq};
use super::system::unix_micros;
use super::wire::{self, FromWorker, Outcome, Plan, ToWorker};
use crate::servers::Kind;

pub fn run() -> Result<()> {
    // Every client holds a descriptor: up to the hard limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // One thread: the bench starts a process per core it gives the clients.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(work())
}

fn tell(message: &FromWorker) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(wire::line(message).as_bytes());
    let _ = stdout.flush();
}

async fn work() -> Result<()> {
    let (commands, mut told) = mpsc::unbounded_channel();
    tokio::spawn(read_commands(commands));
    let plan = match told.recv().await {
        Some(ToWorker::Plan(plan)) => plan,
        other => bail!("expected a plan first, got {other:?}"),
    };
    let lifetime = Duration::from_secs(plan.lifetime_secs);
    tokio::spawn(async move {
        tokio::time::sleep(lifetime).await;
        eprintln!("[bench client process] still running after {lifetime:?}: exiting");
        std::process::exit(2);
    });
    let tally = Arc::new(Tally::new(plan.messages));
    let (finish, finished) = watch::channel(false);
    let mut ready = start_clients(&plan, &tally, &finished)?;
    let mut sent: Vec<Option<u64>> = vec![None; plan.messages + 1];
    let (mut connected, mut reported) = (0, false);
    // Clients greeted in each millisecond since the epoch.
    let mut greeted_at = BTreeMap::new();
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(greeted) = ready.recv(), if connected < plan.count => match greeted {
                Ok(()) => {
                    connected += 1;
                    *greeted_at.entry(unix_micros() / 1000).or_insert(0) += 1;
                    if connected == plan.count {
                        tell(&FromWorker::Connected { greeted: std::mem::take(&mut greeted_at) });
                    }
                }
                Err(error) => {
                    tell(&FromWorker::Failed { error });
                    // Connecting stops here: the bench ends the run.
                    connected = plan.count;
                }
            },
            command = told.recv() => match command {
                Some(ToWorker::Sent { seq, at_us }) => {
                    if let Some(slot) = sent.get_mut(seq) {
                        *slot = Some(at_us);
                    }
                }
                Some(ToWorker::Finish) => {
                    if !reported {
                        tell(&FromWorker::Outcome(tally.outcome(plan.count, &sent)));
                        reported = true;
                    }
                    let _ = finish.send(true);
                }
                Some(ToWorker::Plan(_)) => bail!("a second plan"),
                // The reader exits the process at the end of stdin; this is
                // in case it could not.
                None => std::process::exit(0),
            },
            () = tally.done.notified() => {}
            _ = progress.tick(), if connected == plan.count && !reported => {
                tell(&FromWorker::Progress { received: tally.received() });
            }
        }
        // Everyone has everything, and the bench has said when each left.
        if !reported && tally.complete() == plan.count && sent[1..].iter().all(Option::is_some) {
            tell(&FromWorker::Outcome(tally.outcome(plan.count, &sent)));
            reported = true;
        }
    }
}

/// Forwards the bench's lines; at the end of stdin, ends the process, with
/// every connection it holds.
async fn read_commands(commands: mpsc::UnboundedSender<ToWorker>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match wire::parse(&line) {
            Ok(command) => {
                let _ = commands.send(command);
            }
            Err(error) => eprintln!("[bench client process] {error:#}"),
        }
    }
    std::process::exit(0);
}

/// Spawns every client of the plan, a few connecting at a time; each says on
/// the channel when it is greeted, or why it could not connect.
fn start_clients(
    plan: &Plan,
    tally: &Arc<Tally>,
    finished: &watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<(), String>>> {
    let dialer = Dialer::new(plan.tls.as_deref())?;
    let connecting = Arc::new(Semaphore::new(plan.connecting.max(1)));
    let (ready, readies) = mpsc::channel(plan.count.max(1));
    for client in plan.first..plan.first + plan.count {
        let to = plan.targets[client % plan.targets.len()];
        let from = clients::source(client);
        let (dialer, connecting, ready) = (dialer.clone(), connecting.clone(), ready.clone());
        let (tally, mut finished, kind) = (tally.clone(), finished.clone(), plan.kind);
        tokio::spawn(async move {
            let permit = connecting.acquire_owned().await;
            let mut listener = Listener::new(&tally);
            let ended = match kind {
                Kind::WebSocket => match dialer.websocket(to, from).await {
                    Ok(socket) => {
                        drop(permit);
                        let _ = ready.send(Ok(())).await;
                        listener.websocket(socket, &mut finished).await
                    }
                    Err(error) => Err(error),
                },
                Kind::Sse => match dialer.event_stream(to, from).await {
                    Ok(reader) => {
                        drop(permit);
                        let _ = ready.send(Ok(())).await;
                        listener.event_stream(reader, &mut finished).await
                    }
                    Err(error) => Err(error),
                },
            };
            match ended {
                Ok(()) => {}
                Err(error) if listener.greeted => tally.ended(format!("{error:#}")),
                Err(error) => {
                    let _ =
                        ready.try_send(Err(format!("client {client} ({from} to {to}): {error:#}")));
                }
            }
        });
    }
    Ok(readies)
}

/// One client's receipts.
struct Listener<'a> {
    tally: &'a Tally,
    seen: Vec<bool>,
    count: usize,
    greeted: bool,
}

impl<'a> Listener<'a> {
    fn new(tally: &'a Tally) -> Listener<'a> {
        Listener {
            tally,
            seen: vec![false; tally.messages + 1],
            count: 0,
            greeted: false,
        }
    }

    fn receive(&mut self, seq: Option<usize>) {
        let Some(seq) = seq else { return };
        let at = unix_micros();
        match self.seen.get_mut(seq) {
            Some(seen) if seq > 0 && !*seen => {
                *seen = true;
                self.count += 1;
                self.tally
                    .receive(seq, at, self.count == self.tally.messages);
            }
            _ => self.tally.unexpected(),
        }
    }

    /// Reads until told to finish (answering pings as it reads).
    async fn websocket(
        &mut self,
        mut socket: tokio_tungstenite::WebSocketStream<clients::Connection>,
        finished: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        self.greeted = true;
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = finished.wait_for(|finished| *finished) => return Ok(()),
            };
            match message.context("closed by the server")?? {
                Message::Text(text) => self.receive(websocket_seq(&text)),
                Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                _ => {}
            }
        }
    }

    async fn event_stream(
        &mut self,
        mut reader: tokio::io::BufReader<clients::Connection>,
        finished: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        self.greeted = true;
        let mut line = String::new();
        loop {
            tokio::select! {
                read = next_line(&mut reader, &mut line) => read?,
                _ = finished.wait_for(|finished| *finished) => return Ok(()),
            }
            self.receive(event_seq(&line));
        }
    }
}

/// What every client of this process received, together.
struct Tally {
    messages: usize,
    receipts: Mutex<Receipts>,
    /// Rings when a client has received every broadcast.
    done: Notify,
}

#[derive(Default)]
struct Receipts {
    /// By seq: when each client got it (µs since the epoch).
    at: Vec<Vec<u64>>,
    received: u64,
    complete: usize,
    ended: BTreeMap<String, usize>,
    unexpected: u64,
}

impl Tally {
    fn new(messages: usize) -> Tally {
        let receipts = Receipts {
            at: vec![Vec::new(); messages + 1],
            ..Receipts::default()
        };
        Tally {
            messages,
            receipts: Mutex::new(receipts),
            done: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Receipts> {
        self.receipts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn receive(&self, seq: usize, at: u64, last: bool) {
        let mut receipts = self.lock();
        receipts.at[seq].push(at);
        receipts.received += 1;
        if last {
            receipts.complete += 1;
            self.done.notify_one();
        }
    }

    fn unexpected(&self) {
        self.lock().unexpected += 1;
    }

    /// A client stopped listening before it was told to, for this reason.
    fn ended(&self, why: String) {
        // The same reason for many clients, without their addresses.
        let why: String = why.chars().take(200).collect();
        *self.lock().ended.entry(why).or_default() += 1;
    }

    fn received(&self) -> u64 {
        self.lock().received
    }

    fn complete(&self) -> usize {
        self.lock().complete
    }

    /// What `clients` clients received, with latencies from `sent` (µs since
    /// the epoch, by seq).
    fn outcome(&self, clients: usize, sent: &[Option<u64>]) -> Outcome {
        let receipts = self.lock();
        let mut outcome = Outcome {
            clients,
            received: receipts.received,
            short: clients - receipts.complete,
            ended: receipts.ended.clone(),
            unexpected: receipts.unexpected,
            ..Outcome::default()
        };
        for (seq, at) in receipts.at.iter().enumerate().skip(1) {
            outcome.missing.push((clients - at.len()) as u64);
            outcome
                .last_by_seq
                .push(at.iter().copied().max().unwrap_or(0));
            let Some(Some(sent)) = sent.get(seq) else {
                continue;
            };
            for at in at {
                outcome.latencies.record(at.saturating_sub(*sent));
                outcome.last_receipt_us = outcome.last_receipt_us.max(*at);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_counts_each_broadcast_once_and_says_when_it_has_all() {
        let tally = Tally::new(2);
        let mut one = Listener::new(&tally);
        for seq in [Some(1), None, Some(1), Some(3), Some(0)] {
            one.receive(seq);
        }
        assert_eq!((tally.received(), tally.complete()), (1, 0));
        one.receive(Some(2));
        assert_eq!((tally.received(), tally.complete()), (2, 1));
        let outcome = tally.outcome(2, &[None, Some(0), Some(0)]);
        assert_eq!((outcome.missing, outcome.short), (vec![1, 1], 1));
        assert_eq!(outcome.unexpected, 3);
    }
}
