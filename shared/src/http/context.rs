//! What routes share: the hub, the inbox, the options, and the server's lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::connections::Slot;
use super::tasks::Tasks;
use crate::config::Config;
use crate::core::Hub;
use crate::policy::{Inbox, Origins, Rejections, TrustedProxies};

/// The connection a request came on; routes get it with [`conn`], which says
/// who the client is behind a trusted proxy.
#[derive(Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// Cancel to drop the connection at once, whatever it is doing.
    pub close: CancellationToken,
    /// The connection's place among the server's connections, held for as
    /// long as any part of it lives: an upgraded WebSocket outlives the
    /// HTTP connection it came from.
    pub(crate) _slot: Arc<Slot>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish()
    }
}

/// What routes share.
#[derive(Clone)]
pub struct Context {
    pub hub: Arc<Hub>,
    /// Where client messages go to be broadcast.
    pub inbox: Arc<Inbox>,
    pub config: Arc<Config>,
    /// The origins whose pages may connect.
    pub origins: Arc<Origins>,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub proxies: Arc<TrustedProxies>,
    /// Counts of what the server refused.
    pub rejections: Arc<Rejections>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Tasks the server waits for before it exits (connections, sessions),
    /// each guarded against panics.
    pub tasks: Tasks,
}

/// The request's [`Conn`], with `peer` the client the request is for: the
/// address `X-Forwarded-For` names when the connection comes from a trusted
/// proxy, else the connection's own.
pub fn conn(
    proxies: Arc<TrustedProxies>,
) -> impl warp::Filter<Extract = (Conn,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::ext::get::<Conn>()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(move |mut conn: Conn, forwarded_for: Option<String>| {
            conn.peer = proxies.client(conn.peer, forwarded_for.as_deref());
            conn
        })
}
