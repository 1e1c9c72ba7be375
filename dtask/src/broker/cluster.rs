//! dtask's own way through a Redis Cluster: a connection per node, the map of which node serves
//! which hash slot, and each command sent straight to the node that serves its first key.
//!
//! Why not redis-rs's cluster connection: it holds every request while it re-reads the
//! cluster's layout, and re-reads it again at each failure, so one master that died stopped
//! every queue for the whole failover (measured on 3 masters + 3 replicas, node timeout 2 s:
//! 5.2 s without a single enqueue or job start on any queue, the failed master's or not; the
//! redis-rs issue is #2092). Here a node that is down fails only the commands bound for it (at
//! once: its connection is refused), while the map is re-read in the background; commands for
//! the other nodes never wait on it.
//!
//! A command a node refuses with `MOVED` (its slot moved, e.g. after a failover by hand) is sent
//! again to the node named, which is safe: the first node did not run it. A command whose node
//! did not answer is not sent again (it may have run): the caller sees the error, as on one
//! server, and the layers above (fetch, acknowledgements, heartbeat) already repeat what is safe
//! to repeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::connection::{CONNECT_TIMEOUT, Conn, Healing, ServerClient, client_of, tcp_settings};

/// How many hash slots a cluster has.
const SLOTS: u16 = 16384;
/// How soon after one reading of the layout another may start.
const REFRESH_EVERY: Duration = Duration::from_millis(100);
/// How long one node may take to tell the layout before the next is asked.
const LAYOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one master may take to load a script (see [`Router::to_every_master`]).
const SCRIPT_LOAD_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times a command is sent again after a `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN`.
const REDIRECTS: usize = 5;

/// The hash slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key when it has none,
/// modulo 16,384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(tagged) % SLOTS
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot a command is bound for: that of its first key; `None` for a command without keys
/// (`TIME`, `CONFIG`, `PUBLISH` reaches every node anyway), which any node may answer.
fn slot_of_command(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[][..],
    });
    let name = args.next()?;
    let upper = name.to_ascii_uppercase();
    match upper.as_slice() {
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" | b"FCALL" | b"FCALL_RO" => {
            let _script = args.next()?;
            let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            (keys > 0).then(|| args.next().map(slot_of))?
        }
        b"TIME" | b"CONFIG" | b"INFO" | b"PING" | b"CLIENT" | b"SCRIPT" | b"CLUSTER" | b"WAIT"
        | b"ASKING" | b"PUBLISH" => None,
        _ => args.next().map(slot_of),
    }
}

/// Whether `cmd` is a `SCRIPT` command (`LOAD`), which every master must get.
fn is_script_command(cmd: &Cmd) -> bool {
    matches!(
        cmd.args_iter().next(),
        Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SCRIPT")
    )
}

/// The slot a pipeline is bound for: that of its first command with a key (dtask's pipelines
/// on a cluster stay within one slot).
fn slot_of_pipeline(pipeline: &Pipeline) -> Option<u16> {
    pipeline.cmd_iter().find_map(slot_of_command)
}

/// Which node serves which slots, as the cluster last told it, and how to reach a node.
pub(crate) struct Layout {
    /// The node addresses first given (`host:port`), asked for the layout when no known node
    /// answers.
    seeds: Vec<String>,
    /// Connection settings of the first node (user, password, TLS), used for every node.
    template: ConnectionInfo,
    tls_ca: Option<Vec<u8>>,
    /// Slot ranges by start, each with its master's address.
    ranges: RwLock<Vec<(u16, u16, String)>>,
    /// When the layout was last read (or a reading started).
    refreshed_at: Mutex<Option<Instant>>,
    /// Set while a reading runs, so that only one does.
    refreshing: std::sync::atomic::AtomicBool,
    /// The connections the layout is read through, one per node.
    readers: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl Layout {
    /// The layout of the cluster reached through `nodes` (URLs), not read yet.
    pub(crate) fn new(nodes: &[String], tls_ca: Option<Vec<u8>>) -> RedisResult<Arc<Layout>> {
        let mut seeds = Vec::new();
        let mut template = None;
        for node in nodes {
            let info = redis::IntoConnectionInfo::into_connection_info(node.as_str())?;
            if let Some(address) = address_of(info.addr()) {
                seeds.push(address);
            }
            template.get_or_insert(info);
        }
        let template = template.ok_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no cluster node given"))
        })?;
        Ok(Arc::new(Layout {
            seeds,
            template: template.set_tcp_settings(tcp_settings()),
            tls_ca,
            ranges: RwLock::new(Vec::new()),
            refreshed_at: Mutex::new(None),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
        }))
    }

    /// A layout of the same cluster, knowing what this one knows, with readings and reader
    /// connections of its own.
    pub(crate) fn detached(&self) -> Arc<Layout> {
        let ranges = self
            .ranges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Arc::new(Layout {
            seeds: self.seeds.clone(),
            template: self.template.clone(),
            tls_ca: self.tls_ca.clone(),
            ranges: RwLock::new(ranges),
            refreshed_at: Mutex::new(None),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
        })
    }

    /// A client for the node at `address` (`host:port`), with the first node's settings.
    fn client_for(&self, address: &str) -> RedisResult<redis::Client> {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "a cluster node address without a port",
                    address.to_owned(),
                ))
            })?;
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = self.template.clone().set_addr(addr);
        client_of(info, self.tls_ca.as_deref())
    }

    /// The address of the master serving `slot`, if the layout knows one.
    fn master_of(&self, slot: u16) -> Option<String> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let index = ranges.partition_point(|(start, _, _)| *start <= slot);
        let (start, end, address) = ranges.get(index.checked_sub(1)?)?;
        (*start <= slot && slot <= *end).then(|| address.clone())
    }

    /// Any master (for a command without a key), else a seed.
    fn any_node(&self) -> Option<String> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        if ranges.is_empty() {
            return self.seeds.first().cloned();
        }
        let pick = rand::random_range(0..ranges.len());
        Some(ranges[pick].2.clone())
    }

    /// Every master's address.
    fn masters(&self) -> Vec<String> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let mut masters: Vec<String> = ranges.iter().map(|(_, _, a)| a.clone()).collect();
        masters.sort();
        masters.dedup();
        masters
    }

    /// Notes that `slot` is served by `address` now (a `MOVED`), until the layout is read again.
    fn moved(&self, slot: u16, address: &str) {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        let index = ranges.partition_point(|(start, _, _)| *start <= slot);
        let Some(i) = index.checked_sub(1) else {
            return;
        };
        let (start, end, owner) = ranges[i].clone();
        if !(start <= slot && slot <= end) || owner == address {
            return;
        }
        // Split the range around the slot.
        let mut pieces = Vec::new();
        if start < slot {
            pieces.push((start, slot - 1, owner.clone()));
        }
        pieces.push((slot, slot, address.to_owned()));
        if slot < end {
            pieces.push((slot + 1, end, owner));
        }
        ranges.splice(i..=i, pieces);
    }

    /// Reads the layout again in the background, unless a reading started less than
    /// [`REFRESH_EVERY`] ago.
    fn refresh_soon(self: &Arc<Self>) {
        {
            let mut at = self.refreshed_at.lock().unwrap_or_else(|e| e.into_inner());
            if at.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
                return;
            }
            if self
                .refreshing
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return;
            }
            *at = Some(Instant::now());
        }
        let reading = Reading(self.clone());
        tokio::spawn(async move {
            if let Err(error) = reading.0.refresh().await {
                tracing::debug!(%error, "could not read the cluster's layout; trying again at the next failure");
            }
        });
    }

    /// Reads the layout from the first node that tells it: known masters first, then the
    /// seeds.
    pub(crate) async fn refresh(&self) -> RedisResult<()> {
        let mut candidates = self.masters();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut last_error = None;
        for address in candidates {
            match tokio::time::timeout(LAYOUT_TIMEOUT, self.read_from(&address)).await {
                Ok(Ok(ranges)) if !ranges.is_empty() => {
                    *self.ranges.write().unwrap_or_else(|e| e.into_inner()) = ranges;
                    return Ok(());
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    self.readers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&address);
                    last_error = Some(error);
                }
                Err(_) => {
                    self.readers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&address);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no node of the cluster told its layout in time",
            ))
        }))
    }

    /// The slot ranges `address` knows of, sorted by start.
    async fn read_from(&self, address: &str) -> RedisResult<Vec<(u16, u16, String)>> {
        let existing = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .cloned();
        let mut conn = match existing {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(LAYOUT_TIMEOUT))
                    .set_connection_timeout(Some(LAYOUT_TIMEOUT));
                let conn = self
                    .client_for(address)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.readers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(address.to_owned(), conn.clone());
                conn
            }
        };
        let slots: Vec<Vec<Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        let asked_host = address.rsplit_once(':').map_or("", |(host, _)| host);
        let mut ranges = Vec::new();
        for range in slots {
            let mut fields = range.into_iter();
            let (Some(start), Some(end), Some(master)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let start: u16 = redis::from_redis_value(start)?;
            let end: u16 = redis::from_redis_value(end)?;
            let master: Vec<Value> = redis::from_redis_value(master)?;
            let mut master = master.into_iter();
            let (Some(host), Some(port)) = (master.next(), master.next()) else {
                continue;
            };
            let host: Option<String> = redis::from_redis_value(host)?;
            let port: u16 = redis::from_redis_value(port)?;
            // No host, an empty or unknown one, or a wildcard: the node asked.
            let host = match host.as_deref() {
                None | Some("" | "?" | "0.0.0.0" | "::") => asked_host.to_owned(),
                Some(_) => host.unwrap_or_default(),
            };
            ranges.push((start, end, format!("{host}:{port}")));
        }
        ranges.sort();
        Ok(ranges)
    }
}

/// A reading of the layout under way: when it ends, or is dropped with the runtime it ran on
/// (the heartbeat's, at shutdown), the next one may start.
struct Reading(Arc<Layout>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0
            .refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The address of a redirection (`host:port`), with the host of `from` (the node that
/// answered) when it names none (`:port`).
fn with_host_of(to: &str, from: &str) -> String {
    match to.strip_prefix(':') {
        Some(port) => {
            let host = from.rsplit_once(':').map_or("", |(host, _)| host);
            format!("{host}:{port}")
        }
        None => to.to_owned(),
    }
}

/// `host:port` of a TCP address.
fn address_of(addr: &ConnectionAddr) -> Option<String> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some(format!("{host}:{port}"))
        }
        _ => None,
    }
}

/// What kind of connection a [`Router`] keeps to each node.
#[derive(Clone, Copy)]
enum NodeKind {
    /// Multiplexed, shared by every part of the process, replaced when it goes silent.
    Shared,
    /// Of its own for blocking commands (one `BLMOVE` at a time).
    Blocking,
}

/// A connection to every node of a cluster, made as needed, through which each command goes
/// to the node serving its slot. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub(crate) struct Router {
    layout: Arc<Layout>,
    kind: NodeKind,
    response_timeout: Duration,
    nodes: Arc<Mutex<HashMap<String, Conn>>>,
}

impl Router {
    /// Shared connections to the nodes of `layout`, whose commands may take `response_timeout`.
    pub(crate) fn shared(layout: Arc<Layout>, response_timeout: Duration) -> Router {
        Router::new(layout, NodeKind::Shared, response_timeout)
    }

    /// Connections of its own to the nodes of `layout`, for blocking commands whose replies may
    /// take `response_timeout`.
    pub(crate) fn blocking(layout: Arc<Layout>, response_timeout: Duration) -> Router {
        Router::new(layout, NodeKind::Blocking, response_timeout)
    }

    fn new(layout: Arc<Layout>, kind: NodeKind, response_timeout: Duration) -> Router {
        Router {
            layout,
            kind,
            response_timeout,
            nodes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Reads the layout if it was never read, so that a first command knows where to go.
    pub(crate) async fn ready(&self) -> RedisResult<()> {
        let empty = self
            .layout
            .ranges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if empty {
            self.layout.refresh().await?;
        }
        Ok(())
    }

    /// The node a command for `slot` goes to.
    fn node_for(&self, slot: Option<u16>) -> RedisResult<String> {
        match slot {
            Some(slot) => self.layout.master_of(slot),
            None => self.layout.any_node(),
        }
        .ok_or_else(|| {
            self.layout.refresh_soon();
            RedisError::from((
                ErrorKind::Server(ServerErrorKind::ClusterDown),
                "no node of the cluster is known to serve this slot",
            ))
        })
    }

    /// The connection to the node at `address`, made if there is none.
    async fn conn_to(&self, address: &str) -> RedisResult<Conn> {
        let existing = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .cloned();
        if let Some(conn) = existing {
            return Ok(conn);
        }
        let client = self.layout.client_for(address)?;
        let conn = match self.kind {
            NodeKind::Shared => Conn::Server(
                Healing::connect(ServerClient::new(client, self.response_timeout)).await?,
            ),
            NodeKind::Blocking => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(self.response_timeout))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT));
                Conn::Blocking(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
        };
        Ok(self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(address.to_owned())
            .or_insert(conn)
            .clone())
    }

    /// Forgets a connection that failed at the socket (a blocking one does not mend itself),
    /// and has the layout read again: the node may be down and its slots served elsewhere.
    fn on_failure(&self, address: &str, error: &RedisError) {
        if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
            if matches!(self.kind, NodeKind::Blocking) {
                self.nodes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(address);
            }
            self.layout.refresh_soon();
        }
    }

    /// Sends `cmd` to every master at once (`SCRIPT LOAD`: a script must be known wherever
    /// its keys live), each given at most [`SCRIPT_LOAD_TIMEOUT`] (a master frozen or down
    /// does not hold the others' scripts up for long); the first answer that is not an error is
    /// the answer.
    async fn to_every_master(&self, cmd: &Cmd) -> RedisResult<Value> {
        let masters = self.layout.masters();
        let sends = masters.iter().map(|address| async move {
            let send = async {
                let mut conn = self.conn_to(address).await?;
                conn.req_packed_command(cmd).await
            };
            let reply = tokio::time::timeout(SCRIPT_LOAD_TIMEOUT, send)
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from((
                        ErrorKind::Io,
                        "a cluster node did not load a script in time",
                    )))
                });
            if let Err(error) = &reply {
                self.on_failure(address, error);
            }
            reply
        });
        let replies = futures_util::future::join_all(sends).await;
        let mut first_error = None;
        for reply in replies {
            match reply {
                Ok(value) => return Ok(value),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no master of the cluster is known",
            ))
        }))
    }

    /// Sends `request` to the node serving its slot, following redirections.
    async fn route(&self, request: Request<'_>) -> RedisResult<Reply> {
        if let Request::One(cmd) = request
            && is_script_command(cmd)
        {
            return self.to_every_master(cmd).await.map(Reply::One);
        }
        let slot = match request {
            Request::One(cmd) => slot_of_command(cmd),
            Request::Many(pipeline, _, _) => slot_of_pipeline(pipeline),
        };
        let mut redirect: Option<(String, bool)> = None;
        let mut attempt = 0;
        loop {
            let (address, asking) = match redirect.take() {
                Some(redirect) => redirect,
                None => (self.node_for(slot)?, false),
            };
            let mut conn = match self.conn_to(&address).await {
                Ok(conn) => conn,
                Err(error) => {
                    self.on_failure(&address, &error);
                    return Err(error);
                }
            };
            let result = request.send(&mut conn, asking).await;
            let refused = match &result {
                Ok(reply) => reply.redirection(),
                Err(error) => Some(error.clone()),
            };
            let Some(error) = refused else {
                return result;
            };
            attempt += 1;
            if attempt > REDIRECTS {
                return result;
            }
            match error.kind() {
                ErrorKind::Server(ServerErrorKind::Moved) => {
                    if let Some((to, moved_slot)) = error.redirect_node() {
                        let to = with_host_of(to, &address);
                        self.layout.moved(moved_slot, &to);
                        redirect = Some((to, false));
                    }
                    self.layout.refresh_soon();
                }
                ErrorKind::Server(ServerErrorKind::Ask) => {
                    if let Some((to, _)) = error.redirect_node() {
                        redirect = Some((with_host_of(to, &address), true));
                    }
                }
                ErrorKind::Server(ServerErrorKind::TryAgain)
                | ErrorKind::Server(ServerErrorKind::ClusterDown) => {
                    self.layout.refresh_soon();
                    tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                }
                _ => {
                    self.on_failure(&address, &error);
                    return result;
                }
            }
        }
    }
}

/// What a [`Router`] sends: one command, or a pipeline (with the part of its replies wanted).
#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

/// The answer to a [`Request`].
enum Reply {
    One(Value),
    Many(Vec<Value>),
}

impl Request<'_> {
    /// Sends the request on `conn`, after `ASKING` when `asking` (an `ASK` redirection).
    async fn send(self, conn: &mut Conn, asking: bool) -> RedisResult<Reply> {
        match self {
            Request::One(cmd) if asking => {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore().add_command(cmd.clone());
                let mut replies = conn.req_packed_commands(&pipe, 1, 1).await?;
                let reply = replies
                    .pop()
                    .ok_or_else(|| RedisError::from((ErrorKind::Parse, "no reply after ASKING")))?;
                Ok(Reply::One(reply))
            }
            Request::One(cmd) => conn.req_packed_command(cmd).await.map(Reply::One),
            Request::Many(pipeline, offset, count) => conn
                .req_packed_commands(pipeline, offset, count)
                .await
                .map(Reply::Many),
        }
    }
}

impl Reply {
    /// The redirection this reply is, if it is one: a reply of `MOVED`, `ASK`, `TRYAGAIN` or
    /// `CLUSTERDOWN` means the node ran nothing (a pipeline within one slot is refused whole:
    /// its first reply tells).
    fn redirection(&self) -> Option<RedisError> {
        let value = match self {
            Reply::One(value) => value,
            Reply::Many(values) => values.first()?,
        };
        let Value::ServerError(error) = value else {
            return None;
        };
        let error: RedisError = error.clone().into();
        matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
        .then_some(error)
    }
}

impl ConnectionLike for Router {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.route(Request::One(cmd)).await? {
                Reply::One(value) => Ok(value),
                Reply::Many(_) => unreachable_reply(),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.route(Request::Many(pipeline, offset, count)).await? {
                Reply::Many(values) => Ok(values),
                Reply::One(_) => unreachable_reply(),
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A reply of the other shape than its request's: never made, answered as an error.
fn unreachable_reply<T>() -> RedisResult<T> {
    Err(RedisError::from((
        ErrorKind::Client,
        "a cluster reply did not match its request",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster_hashing() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        // An empty first tag: the whole key is hashed.
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"dtask:{emails}:pending"), slot_of(b"emails"));
    }

    #[test]
    fn commands_go_by_their_first_key() {
        let mut rpush = redis::cmd("RPUSH");
        rpush.arg("p:{q}:pending").arg("x");
        assert_eq!(slot_of_command(&rpush), Some(slot_of(b"q")));
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg("abc")
            .arg(2)
            .arg("p:{w}:active")
            .arg("k2")
            .arg("arg");
        assert_eq!(slot_of_command(&evalsha), Some(slot_of(b"w")));
        let mut no_keys = redis::cmd("EVALSHA");
        no_keys.arg("abc").arg(0);
        assert_eq!(slot_of_command(&no_keys), None);
        assert_eq!(slot_of_command(&redis::cmd("TIME")), None);
    }
}
