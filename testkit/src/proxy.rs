//! A TCP proxy between dtask and the scenario's redis-server that can make the network go
//! silent: 127.0.0.1:<its port> forwards every connection to Redis, both ways, until
//! [`Proxy::blackhole`] turns every connection established so far into a dead one.
//!
//! A blackholed connection is what a dead NAT entry or a silently dropped firewall state looks
//! like to both ends: the sockets stay open, writes succeed, nothing ever arrives. The proxy
//! keeps reading from both sides and drops what it reads; it passes on no end of stream either
//! (a client that gives up does not close the server's side, which stays as it was, maybe
//! blocked in a command). Connections made after the switch are forwarded normally: the proxy
//! is always forwarding new connections, and a blackholed connection never comes back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How much one read takes at most.
const CHUNK: usize = 16 * 1024;

/// What the proxy and its connections share.
#[derive(Debug, Default)]
struct Shared {
    /// The id the next accepted connection gets.
    next_id: AtomicU64,
    /// Connections with an id below this one are blackholed.
    muted_below: AtomicU64,
    /// The ids of the connections being relayed.
    live: Mutex<BTreeSet<u64>>,
}

impl Shared {
    /// Whether connection `id` is blackholed.
    fn muted(&self, id: u64) -> bool {
        id < self.muted_below.load(Ordering::SeqCst)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy; stops, and drops every connection, when dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 that forwards to `127.0.0.1:<upstream_port>`.
    pub async fn start(upstream_port: u16) -> Result<Proxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind the proxy: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("the proxy's address: {e}"))?
            .port();
        let shared = Arc::new(Shared::default());
        let upstream = format!("127.0.0.1:{upstream_port}");
        let task = tokio::spawn(serve(listener, upstream, shared.clone()));
        Ok(Proxy { port, shared, task })
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`: Redis, through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Blackholes every connection established so far, for good; returns how many of those
    /// were still open and forwarding.
    pub fn blackhole(&self) -> usize {
        let below = self.shared.next_id.load(Ordering::SeqCst);
        let before = self.shared.muted_below.swap(below, Ordering::SeqCst);
        self.shared.live().range(before..below).count()
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.next_id.load(Ordering::SeqCst)
    }

    /// How many connections are open (forwarding or blackholed).
    pub fn open(&self) -> usize {
        self.shared.live().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its set of connections, which aborts each.
        self.task.abort();
    }
}

/// Accepts connections and relays each in a task of its own, until aborted.
async fn serve(listener: TcpListener, upstream: String, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(relay(client, upstream.clone(), id, shared.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "the proxy could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Relays one client connection to a new connection to `upstream`, both ways, until both
/// directions have ended.
async fn relay(client: TcpStream, upstream: String, id: u64, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        // The client sees its connection closed, as when Redis is down.
        return;
    };
    // Small writes must not wait for Nagle's algorithm: every command is a small write.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.live().insert(id);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    // The write halves come back when a direction ends, so that a blackholed connection's
    // sockets stay open until both sides are done with it.
    let _halves = tokio::join!(
        pump(from_client, to_server, id, &shared),
        pump(from_server, to_client, id, &shared)
    );
    shared.live().remove(&id);
}

/// Copies `from` to `to` until `from` ends; drops what it reads once connection `id` is
/// blackholed. Passes the end of `from` on (shuts `to` down) only while still forwarding, and
/// returns `to`, still open otherwise.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    id: u64,
    shared: &Shared,
) -> OwnedWriteHalf {
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if shared.muted(id) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    if !shared.muted(id) {
        let _ = to.shutdown().await;
    }
    to
}
