//! The client: a connection to Redis under one key prefix, used to enqueue jobs and read their
//! outcomes; and the process-wide default client that `my_task::enqueue` uses.

use tokio::sync::OnceCell;

use std::sync::Arc;

use crate::broker::Broker;
use crate::error::Error;
use crate::middleware::{EnqueueChain, EnqueueMiddleware};

/// The Redis URL used when `DTASK_REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The key prefix used when `DTASK_PREFIX` is not set.
pub const DEFAULT_PREFIX: &str = "dtask";

/// A connection to the Redis that holds the queues, under one key prefix.
///
/// Cheap to clone: clones share one multiplexed connection, which reconnects by itself after
/// Redis restarts or the network drops.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask::Error> {
/// let client = dtask::Client::connect("redis://127.0.0.1:6379").await?;
/// let staging = dtask::Client::connect_with_prefix("redis://127.0.0.1:6379", "staging").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) broker: Broker,
    pub(crate) max_payload_bytes: usize,
    pub(crate) enqueue_middleware: EnqueueChain,
    /// Its handles' waits, woken over one shared subscription.
    pub(crate) waiters: std::sync::Arc<crate::wait::Waiters>,
    /// The queues whose enqueued events this client does not publish.
    pub(crate) quiet_queues: Arc<std::collections::HashSet<String>>,
    /// How many replicas must confirm each enqueue, if any.
    pub(crate) replicas: Option<crate::broker::Replicas>,
    /// The queues split into partitions.
    pub(crate) partitions: Arc<crate::partition::Partitions>,
    /// A replica the operator's read-only views read from, when one was given.
    pub(crate) reader: Option<Broker>,
}

/// The largest job payload a client enqueues unless told otherwise: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("prefix", &self.broker.prefix())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS), with the default key prefix `dtask`. A Redis Cluster is given as
    /// several node URLs, comma-separated; a master watched by Redis Sentinel as
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/name[/db]` (the sentinels'
    /// addresses and the master's name; the user and password are the master's).
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::builder(url).connect().await
    }

    /// Connects to the Redis at `url`, keeping every key under `prefix`, so that several
    /// applications (or tests) can share one Redis without seeing each other's jobs.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Client, Error> {
        Client::builder(url).prefix(prefix).connect().await
    }

    /// Connects as the environment says: see [`ClientBuilder::from_env`].
    pub async fn from_env() -> Result<Client, Error> {
        ClientBuilder::from_env().connect().await
    }

    /// Options for a connection to the Redis at `url`, for settings beyond the URL: key
    /// prefix, TLS certificate authority, payload limit.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), dtask::Error> {
    /// let ca = std::fs::read("/etc/redis/ca.crt").expect("CA certificate");
    /// let client = dtask::Client::builder("rediss://worker:secret@redis.internal:6380")
    ///     .prefix("billing")
    ///     .tls_ca_pem(ca)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            tls_ca: None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            response_timeout: crate::broker::DEFAULT_RESPONSE_TIMEOUT,
            enqueue_middleware: EnqueueChain::default(),
            quiet_queues: std::collections::HashSet::new(),
            replicas: None,
            partitions: std::collections::HashMap::new(),
            read_replica: None,
        }
    }

    /// This client, refusing to enqueue a job whose serialized payload is larger than `bytes`
    /// (default 16 MiB): big payloads belong in object storage, with their key in the job.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Client {
        self.max_payload_bytes = bytes;
        self
    }

    /// The key prefix of this client.
    pub fn prefix(&self) -> &str {
        self.broker.prefix()
    }

    /// Where the operator's read-only views read: the replica given to
    /// [`ClientBuilder::read_replica`], or the queues' own Redis.
    pub(crate) fn reads(&self) -> &Broker {
        self.reader.as_ref().unwrap_or(&self.broker)
    }

    /// This client reading from the queues' own Redis only: for a view a change is decided on
    /// (a replica may lag behind).
    pub(crate) fn on_primary(&self) -> Client {
        Client {
            reader: None,
            ..self.clone()
        }
    }
}

/// Where a certificate authority for TLS comes from.
#[derive(Clone, Debug)]
enum CaSource {
    Pem(Vec<u8>),
    File(std::path::PathBuf),
}

/// Options for connecting a [`Client`]; from [`Client::builder`] or [`ClientBuilder::from_env`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.connect()` is awaited"]
pub struct ClientBuilder {
    url: String,
    prefix: String,
    tls_ca: Option<CaSource>,
    max_payload_bytes: usize,
    response_timeout: std::time::Duration,
    enqueue_middleware: EnqueueChain,
    quiet_queues: std::collections::HashSet<String>,
    replicas: Option<crate::broker::Replicas>,
    partitions: std::collections::HashMap<String, u16>,
    read_replica: Option<String>,
}

impl ClientBuilder {
    /// Makes every enqueue wait until `replicas` replicas of the queue's Redis have the jobs
    /// (`WAIT`, one per enqueue, after the write), for at most `timeout` (up to 60 s): fewer
    /// in time is [`Error::NotReplicated`]. Redis replicates asynchronously, so without this an
    /// enqueue that returned Ok can vanish if the master fails before its replicas have it;
    /// with it, that window closes for all but a master failing between the write and the
    /// `WAIT` (the caller then sees an error). `replicas(0, _)` is the default: no wait. An
    /// enqueue can ask otherwise with [`Enqueue::replicas`](crate::Enqueue::replicas).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), dtask::Error> {
    /// let client = dtask::Client::builder("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
    ///     .replicas(1, std::time::Duration::from_millis(500))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn replicas(mut self, replicas: u32, timeout: std::time::Duration) -> ClientBuilder {
        self.replicas = crate::broker::Replicas::asked(replicas, timeout);
        self
    }

    /// Options read from the environment: `DTASK_REDIS_URL` (default
    /// `redis://127.0.0.1:6379`), `DTASK_PREFIX` (default `dtask`), and `DTASK_REDIS_CA_FILE`
    /// (a PEM file of the certificate authority that signed the server's TLS certificate, for
    /// `rediss://` URLs; default: the system's trusted roots).
    pub fn from_env() -> ClientBuilder {
        let url = std::env::var("DTASK_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        let mut builder = Client::builder(&url);
        if let Ok(prefix) = std::env::var("DTASK_PREFIX") {
            builder = builder.prefix(&prefix);
        }
        if let Ok(path) = std::env::var("DTASK_REDIS_CA_FILE") {
            builder.tls_ca = Some(CaSource::File(path.into()));
        }
        builder
    }

    /// Keeps every key under `prefix` (default `dtask`).
    pub fn prefix(mut self, prefix: &str) -> ClientBuilder {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Trusts the certificate authority in `pem` (instead of the system's roots) for a
    /// `rediss://` URL.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.tls_ca = Some(CaSource::Pem(pem.into()));
        self
    }

    /// Runs `middleware` on every job this client enqueues, before it leaves (see
    /// [`EnqueueMiddleware`]): to add headers, or refuse jobs. Run in the order added.
    pub fn enqueue_middleware(mut self, middleware: impl EnqueueMiddleware) -> ClientBuilder {
        self.enqueue_middleware.0.push(Arc::new(middleware));
        self
    }

    /// Refuses to enqueue jobs whose payload is larger than `bytes` (default 16 MiB).
    pub fn max_payload_bytes(mut self, bytes: usize) -> ClientBuilder {
        self.max_payload_bytes = bytes;
        self
    }

    /// How long a command may wait for Redis's answer before it fails (default 10 s). A
    /// connection whose commands time out twice in a row is taken for dead (a silently dropped
    /// socket: a dead NAT entry, a failed-over load balancer) and replaced by a new one, so
    /// enqueues and workers resume within about twice this after the network heals. Blocking
    /// waits have a bound of their own.
    pub fn response_timeout(mut self, timeout: std::time::Duration) -> ClientBuilder {
        self.response_timeout = timeout.max(std::time::Duration::from_millis(10));
        self
    }

    /// Splits `queue` into `count` partitions (at most [`MAX_PARTITIONS`](crate::MAX_PARTITIONS)),
    /// as `#[task(queue = "..", partitions = ..)]` does for a task's queue: Redis queues
    /// `queue#0` to `queue#{count-1}` (a suffix added where needed so that their hash slots
    /// spread evenly, and on a Redis Cluster their masters), for a queue too busy for one
    /// master. Enqueues go to the partitions in turn, or by
    /// [`partition_key`](crate::Enqueue::partition_key); a worker serving `queue` serves every
    /// partition, from a different one each round; `client.queue(queue)` adds them up. Give
    /// producers and workers the same count: jobs of a partition no worker knows wait.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), dtask::Error> {
    /// let client = dtask::Client::builder("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
    ///     .partitions("emails", 8)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn partitions(mut self, queue: impl Into<String>, count: u16) -> ClientBuilder {
        self.partitions.insert(queue.into(), count);
        self
    }

    /// Reads the operator's read-only views (`client.queues()`, and a queue's stats, workers,
    /// jobs, job, dead jobs, periodic schedules, rate limit and throughput: what the dashboard
    /// and the CLI show) from the replica at `url`, so that watching the queues costs their
    /// master nothing and still answers while the master is busy or frozen. The views lag the
    /// master by the replica's replication delay (milliseconds, usually). Enqueues, workers and
    /// every change an operator makes (retry, delete, purge, cancel, pause, rate limits) go to
    /// the master; a cancel looks the job up there too. A replica of one server, or a
    /// `redis+sentinel://` URL (a replica in sync that the sentinels name, found again when
    /// it goes); not a cluster's replicas.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), dtask::Error> {
    /// let client = dtask::Client::builder("redis://10.0.0.1:6379")
    ///     .read_replica("redis://10.0.0.2:6379")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn read_replica(mut self, url: impl Into<String>) -> ClientBuilder {
        self.read_replica = Some(url.into());
        self
    }

    /// Publishes no `enqueued` events for `queue`'s jobs (see [`Client::events`]; a worker
    /// has [`Worker::without_events`](crate::Worker::without_events) for the others).
    pub fn without_events(mut self, queue: impl Into<String>) -> ClientBuilder {
        self.quiet_queues.insert(queue.into());
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<Client, Error> {
        let prefix = &self.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "key prefix `{prefix}` must be non-empty and hold no `{{` or `}}`"
            )));
        }
        let ca = match self.tls_ca {
            None => None,
            Some(CaSource::Pem(pem)) => Some(pem),
            Some(CaSource::File(path)) => Some(std::fs::read(&path).map_err(|e| {
                Error::Config(format!(
                    "cannot read the TLS certificate authority {}: {e}",
                    path.display()
                ))
            })?),
        };
        let partitions = Arc::new(crate::partition::Partitions::new(&self.partitions)?);
        let reader = match &self.read_replica {
            Some(url) => {
                Some(Broker::connect_reader(url, prefix, ca.clone(), self.response_timeout).await?)
            }
            None => None,
        };
        let broker = Broker::connect(&self.url, prefix, ca, self.response_timeout).await?;
        Ok(Client {
            waiters: std::sync::Arc::new(crate::wait::Waiters::new(broker.clone())),
            broker,
            max_payload_bytes: self.max_payload_bytes,
            enqueue_middleware: self.enqueue_middleware,
            quiet_queues: Arc::new(self.quiet_queues),
            replicas: self.replicas,
            partitions,
            reader,
        })
    }
}

static DEFAULT_CLIENT: OnceCell<Client> = OnceCell::const_new();

/// Sets the process-wide default client, used by `my_task::enqueue` and friends, to a
/// connection to `url`. Call it once, at start-up, before the first enqueue; without it, the
/// first enqueue connects as `DTASK_REDIS_URL` and `DTASK_PREFIX` say.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask::Error> {
/// dtask::init("redis://127.0.0.1:6379").await?;
/// # Ok(()) }
/// ```
pub async fn init(url: &str) -> Result<(), Error> {
    init_with(Client::connect(url).await?)
}

/// Sets the process-wide default client to `client`.
pub fn init_with(client: Client) -> Result<(), Error> {
    DEFAULT_CLIENT
        .set(client)
        .map_err(|_| Error::AlreadyInitialized)
}

/// The process-wide default client, connecting from the environment on first use.
pub(crate) async fn default_client() -> Result<&'static Client, Error> {
    DEFAULT_CLIENT.get_or_try_init(Client::from_env).await
}
