//! The connections the broker talks through: one Redis server (at a fixed address, or the master
//! its sentinels name) or a Redis Cluster, behind one type, so that every other part of the
//! broker is written once; and how a connection that went silent, or whose master was failed
//! over, is noticed and replaced.
//!
//! A socket can die without a word (a dead NAT entry, a failed-over load balancer): every
//! command then times out, and redis-rs keeps the socket after a timeout. So sockets carry TCP
//! keepalive and `TCP_USER_TIMEOUT`, and the shared connection to a server is replaced by a new
//! one after [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a row.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;

use super::cluster::{Layout, Router};
use super::sentinel::Sentinels;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How long a non-blocking command may take before the client gives up on it, unless the
/// client is told otherwise.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to Redis may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeouts in a row after which the shared connection is dropped and a new one made.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 2;
/// Unanswered data on a socket for this long closes it (`TCP_USER_TIMEOUT`); idle sockets are
/// probed by keepalive after the same time.
const DEAD_SOCKET_AFTER: Duration = Duration::from_secs(15);

/// The TCP settings of every connection: no Nagle delay, keepalive probes, and a bound on how
/// long sent data may stay unacknowledged before the kernel gives up on the socket.
pub(crate) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(DEAD_SOCKET_AFTER)
        .with_interval(Duration::from_secs(5));
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_retries(3);
    let settings = redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(DEAD_SOCKET_AFTER);
    settings
}

/// A client of the server at `info`, trusting the certificate authority `tls_ca` (PEM) for a
/// `rediss://` one when given, else the system's roots.
pub(crate) fn client_of(
    info: impl redis::IntoConnectionInfo,
    tls_ca: Option<&[u8]>,
) -> RedisResult<redis::Client> {
    match tls_ca {
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert.to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// Where the queues live: one server, or a cluster (given as several node URLs). Held once per
/// broker, behind an `Arc`, so the size of its variants does not matter.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Server(ServerClient),
    Cluster(ClusterClients),
}

/// The client of a server target, and how long its commands may take.
#[derive(Clone)]
pub(crate) struct ServerClient {
    source: ServerSource,
    response_timeout: Duration,
}

/// Where a server is: at a fixed address, or wherever its sentinels say the master is. Cloned
/// only when a connection is made, so the size of its variants does not matter.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum ServerSource {
    Fixed(redis::Client),
    Sentinel(Arc<Sentinels>),
}

impl ServerClient {
    /// The client of a server whose commands may take up to `response_timeout`.
    pub(super) fn new(client: redis::Client, response_timeout: Duration) -> ServerClient {
        ServerClient {
            source: ServerSource::Fixed(client),
            response_timeout,
        }
    }

    /// The same server, its commands allowed up to `response_timeout`.
    fn with_timeout(&self, response_timeout: Duration) -> ServerClient {
        ServerClient {
            source: self.source.clone(),
            response_timeout,
        }
    }

    /// A client of the server now: for a Sentinel-watched master, asked of the sentinels.
    async fn client(&self) -> RedisResult<redis::Client> {
        match &self.source {
            ServerSource::Fixed(client) => Ok(client.clone()),
            // Boxed: the lookup's future is large and deep, and this is awaited by every
            // connect.
            ServerSource::Sentinel(sentinels) => Box::pin(sentinels.find()).await,
        }
    }

    /// Whether the server may move (a failover the sentinels carry out).
    fn may_move(&self) -> bool {
        matches!(self.source, ServerSource::Sentinel(_))
    }
}

/// What a cluster target knows: its nodes as given, and the layout every connection to it
/// shares (see `cluster.rs`).
#[derive(Clone)]
pub(crate) struct ClusterClients {
    layout: Arc<Layout>,
    response_timeout: Duration,
    /// For the sharded subscribers and pub/sub connections.
    nodes: Vec<String>,
    tls_ca: Option<Vec<u8>>,
}

impl Target {
    /// A single server from `client`, whose commands may take up to `response_timeout`.
    pub(crate) fn server(client: redis::Client, response_timeout: Duration) -> Target {
        Target::Server(ServerClient::new(client, response_timeout))
    }

    /// The master that `sentinels` watch, whose commands may take up to `response_timeout`.
    pub(crate) fn sentinel(sentinels: Sentinels, response_timeout: Duration) -> Target {
        Target::Server(ServerClient {
            source: ServerSource::Sentinel(Arc::new(sentinels)),
            response_timeout,
        })
    }

    /// A cluster reached through any of `nodes`, trusting `tls_ca` for `rediss://` nodes, whose
    /// commands may take up to `response_timeout`.
    pub(crate) fn cluster(
        nodes: &[&str],
        tls_ca: Option<Vec<u8>>,
        response_timeout: Duration,
    ) -> RedisResult<Target> {
        let nodes: Vec<String> = nodes.iter().map(|node| (*node).to_owned()).collect();
        Ok(Target::Cluster(ClusterClients {
            layout: Layout::new(&nodes, tls_ca.clone())?,
            response_timeout,
            nodes,
            tls_ca,
        }))
    }

    /// Whether keys of different hash slots may live on different nodes.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// The shared connection: multiplexed, cheap to clone, reconnecting by itself, and
    /// replaced when it stops answering.
    pub(crate) async fn shared(&self) -> RedisResult<Conn> {
        match self {
            Target::Server(server) => Ok(Conn::Server(Healing::connect(server.clone()).await?)),
            Target::Cluster(clients) => {
                let router = Router::shared(clients.layout.clone(), clients.response_timeout);
                router.ready().await?;
                Ok(Conn::Cluster(router))
            }
        }
    }

    /// The same target, with a slot map of its own on a cluster (read again, from what this one
    /// knows, by whichever runtime uses it first): for a part that runs on a runtime of its own
    /// and must not wait on the readings of another.
    pub(crate) fn detached(&self) -> Target {
        match self {
            Target::Server(server) => Target::Server(server.clone()),
            Target::Cluster(clients) => Target::Cluster(ClusterClients {
                layout: clients.layout.detached(),
                ..clients.clone()
            }),
        }
    }

    /// A shared-kind connection of its own whose commands may take up to `response_timeout`
    /// (for `WAIT`, which blocks the connection it is sent on).
    pub(crate) async fn with_timeout(&self, response_timeout: Duration) -> RedisResult<Conn> {
        match self {
            Target::Server(server) => Ok(Conn::Server(
                Healing::connect(server.with_timeout(response_timeout)).await?,
            )),
            Target::Cluster(clients) => {
                let router = Router::shared(clients.layout.clone(), response_timeout);
                router.ready().await?;
                Ok(Conn::Cluster(router))
            }
        }
    }

    /// A connection of its own for blocking commands, whose replies may take up to
    /// `response_timeout` (the longest block plus a margin).
    pub(crate) async fn blocking(&self, response_timeout: Duration) -> RedisResult<Conn> {
        match self {
            Target::Server(server) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT));
                Ok(Conn::Blocking(
                    server
                        .client()
                        .await?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(clients) => {
                let router = Router::blocking(clients.layout.clone(), response_timeout);
                router.ready().await?;
                Ok(Conn::Cluster(router))
            }
        }
    }
}

impl Target {
    /// On a cluster, a connection that follows sharded channels (`SSUBSCRIBE`, RESP3): its
    /// messages, and a `Disconnection` when a node's connection drops, come on the receiver;
    /// it follows a channel to whichever node holds its slot. None on a single server.
    pub(crate) async fn sharded_subscriber(
        &self,
        response_timeout: Duration,
    ) -> Option<
        RedisResult<(
            ClusterConnection,
            tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
        )>,
    > {
        let Target::Cluster(clients) = self else {
            return None;
        };
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let mut builder = ClusterClient::builder(clients.nodes.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(response_timeout)
            .tcp_settings(tcp_settings())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
        if let Some(root_cert) = &clients.tls_ca {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert.clone()),
            });
        }
        let connected = async {
            let client = builder.build()?;
            let connection = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connecting a sharded subscriber timed out",
                    ))
                })??;
            Ok((connection, received))
        };
        Some(connected.await)
    }

    /// A pub/sub connection: to the server, or to one of the cluster's nodes (the
    /// `attempt`-th, round robin, so that a node that is down is passed over on the next
    /// attempt). A message published on any node of a cluster reaches every node.
    pub(crate) async fn subscriber(&self, attempt: usize) -> RedisResult<redis::aio::PubSub> {
        let client = match self {
            Target::Server(server) => server.client().await?,
            Target::Cluster(clients) => {
                let node = &clients.nodes[attempt % clients.nodes.len().max(1)];
                client_of(node.as_str(), clients.tls_ca.as_deref())?
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(connected) => connected,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting a subscriber timed out",
            ))),
        }
    }
}

/// A shared connection to one server that replaces itself when it goes silent: after
/// [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a row, the next command finds a new connection. A
/// Sentinel-watched master's connection is also replaced, after asking the sentinels again, when
/// the server is gone or says it is a replica now (a failover).
#[derive(Clone)]
pub(crate) struct Healing {
    inner: Arc<HealingInner>,
}

struct HealingInner {
    server: ServerClient,
    /// The connection in use, and its generation (how many times it was replaced).
    current: RwLock<(u64, ConnectionManager)>,
    /// Timeouts in a row on the current connection.
    timeouts: AtomicU32,
    /// Set while a replacement is being made, so that only one is.
    replacing: std::sync::atomic::AtomicBool,
    /// Held while the master is looked for again after a failover, so that one command does it
    /// and the others use what it found.
    following: tokio::sync::Mutex<()>,
    /// When the master was last looked for, in ms since `born` (0: never).
    followed_at_ms: std::sync::atomic::AtomicU64,
    born: std::time::Instant,
}

/// The least time between two looks for the master of a connection whose master may have moved.
const MOVE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

impl Healing {
    pub(super) async fn connect(server: ServerClient) -> RedisResult<Healing> {
        let conn = Healing::new_manager(&server).await?;
        Ok(Healing {
            inner: Arc::new(HealingInner {
                server,
                current: RwLock::new((0, conn)),
                timeouts: AtomicU32::new(0),
                replacing: std::sync::atomic::AtomicBool::new(false),
                following: tokio::sync::Mutex::new(()),
                followed_at_ms: std::sync::atomic::AtomicU64::new(0),
                born: std::time::Instant::now(),
            }),
        })
    }

    async fn new_manager(server: &ServerClient) -> RedisResult<ConnectionManager> {
        // One connection attempt, bounded: a replacement that cannot connect now is tried
        // again after the next timeouts.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(server.response_timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT.min(server.response_timeout * 2)))
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_secs(2));
        server
            .client()
            .await?
            .get_connection_manager_with_config(config)
            .await
    }

    fn current(&self) -> (u64, ConnectionManager) {
        let current = self.inner.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    /// Notes how a command on connection `generation` ended; after too many timeouts in a row,
    /// starts replacing the connection in the background (the command that noticed it fails at
    /// once, as it would have).
    fn observe<T>(&self, generation: u64, result: &RedisResult<T>) {
        match result {
            Ok(_) => self.inner.timeouts.store(0, Ordering::Relaxed),
            Err(error) if error.is_timeout() => {
                let timeouts = self.inner.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if timeouts >= TIMEOUTS_BEFORE_RECONNECT {
                    self.replace_soon(generation);
                }
            }
            Err(_) => {}
        }
    }

    /// Starts replacing connection `generation` in the background, unless a replacement is
    /// under way.
    fn replace_soon(&self, generation: u64) {
        if self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let healing = self.clone();
        tokio::spawn(async move {
            healing.replace(generation).await;
            healing.inner.timeouts.store(0, Ordering::Relaxed);
            healing.inner.replacing.store(false, Ordering::Release);
        });
    }

    /// Sends a request with `send` on the current connection and notes how it ended. On a
    /// Sentinel-watched master, a failure that says the master died or was demoted (or a reply
    /// `refused` finds refused by a replica) has the master looked for again, and the request
    /// is sent once more to the new one when it surely did not run.
    async fn request<T, F>(
        &self,
        send: impl Fn(ConnectionManager) -> F,
        refused: impl Fn(&T) -> bool,
    ) -> RedisResult<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.current();
        let result = send(conn).await;
        self.observe(generation, &result);
        if !self.inner.server.may_move() {
            return result;
        }
        let (follow, resend) = match &result {
            Err(error) => (master_moved(error), did_not_run(error)),
            Ok(reply) => (refused(reply), refused(reply)),
        };
        if !follow {
            return result;
        }
        match self.follow_master(generation).await {
            Some((generation, conn)) if resend => {
                let result = send(conn).await;
                self.observe(generation, &result);
                result
            }
            _ => result,
        }
    }

    /// After a command on connection `generation` failed as it would on a master that died or
    /// was demoted: looks for the master again (one command at a time, at most every
    /// [`MOVE_CHECK_INTERVAL`]) and returns the connection to use now, when there is a new one.
    async fn follow_master(&self, generation: u64) -> Option<(u64, ConnectionManager)> {
        let wait = self.inner.server.response_timeout;
        let _one_at_a_time = tokio::time::timeout(wait, self.inner.following.lock())
            .await
            .ok()?;
        if self.current().0 != generation {
            return Some(self.current()); // another command found it
        }
        let now_ms = (self.inner.born.elapsed().as_millis() as u64).max(1);
        let last_ms = self.inner.followed_at_ms.load(Ordering::Relaxed);
        if last_ms != 0 && now_ms.saturating_sub(last_ms) < MOVE_CHECK_INTERVAL.as_millis() as u64 {
            return None; // looked a moment ago: the master is not back yet
        }
        self.inner.followed_at_ms.store(now_ms, Ordering::Relaxed);
        self.replace(generation).await;
        let current = self.current();
        (current.0 != generation).then_some(current)
    }

    async fn replace(&self, generation: u64) {
        if self.current().0 != generation {
            return; // replaced already
        }
        match Healing::new_manager(&self.inner.server).await {
            Ok(conn) => {
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = (generation + 1, conn);
                tracing::warn!(
                    "replaced a Redis connection (it stopped answering, or its master moved)"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "a Redis connection stopped answering, or its master moved, and a new one could not be made yet");
            }
        }
    }
}

/// Whether `error` says the server is gone or no longer the master: what a failover looks like
/// from a connection to the old master (the master is then looked for again).
fn master_moved(error: &redis::RedisError) -> bool {
    error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

/// Whether the command that failed with `error` surely did not run, so that sending it again
/// runs it once: refused before it was sent (the connection could not be made, or was known
/// closed: redis-rs's "broken pipe" when its connection's driver is gone), or refused by a
/// replica (READONLY). A connection dropped after the command was sent is not such a case: it
/// may have run, and the caller is told.
fn did_not_run(error: &redis::RedisError) -> bool {
    error.is_connection_refusal()
        || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error
            .to_string()
            .to_ascii_lowercase()
            .contains("broken pipe")
}

/// Whether `reply` is a replica's refusal of a write.
fn is_read_only(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(error) if error.kind() == Some(redis::ServerErrorKind::ReadOnly))
}

/// A connection to a server or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The shared connection to a server.
    Server(Healing),
    /// A blocking connection to a server.
    Blocking(MultiplexedConnection),
    /// Connections to a cluster's nodes, each command sent to the node serving its first key.
    Cluster(Router),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(healing) => Box::pin(healing.request(
                move |mut conn| async move { conn.req_packed_command(cmd).await },
                |_| false,
            )),
            Conn::Blocking(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            // A pipeline's refused writes come as its replies: a demoted master answers
            // READONLY to each (running none of its writes).
            Conn::Server(healing) => {
                Box::pin(healing.request(
                    move |mut conn| async move {
                        conn.req_packed_commands(pipeline, offset, count).await
                    },
                    |replies: &Vec<Value>| replies.iter().any(is_read_only),
                ))
            }
            Conn::Blocking(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(healing) => healing.current().1.get_db(),
            Conn::Blocking(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
