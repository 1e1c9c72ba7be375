//! The client: a connection to Redis under one key prefix, used to enqueue jobs and read their
//! outcomes; and the process-wide default client that `my_task::enqueue` uses.

use tokio::sync::OnceCell;

use crate::broker::Broker;
use crate::error::Error;

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
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`), with the
    /// default key prefix `dtask`.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with_prefix(url, DEFAULT_PREFIX).await
    }

    /// Connects to the Redis at `url`, keeping every key under `prefix`, so that several
    /// applications (or tests) can share one Redis without seeing each other's jobs.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Client, Error> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "key prefix `{prefix}` must be non-empty and hold no `{{` or `}}`"
            )));
        }
        Ok(Client {
            broker: Broker::connect(url, prefix).await?,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        })
    }

    /// Connects as `DTASK_REDIS_URL` (default `redis://127.0.0.1:6379`) and `DTASK_PREFIX`
    /// (default `dtask`) say.
    pub async fn from_env() -> Result<Client, Error> {
        let (url, prefix) = env_settings();
        Client::connect_with_prefix(&url, &prefix).await
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
}

/// Reads `DTASK_REDIS_URL` and `DTASK_PREFIX`, with their defaults.
pub(crate) fn env_settings() -> (String, String) {
    let url = std::env::var("DTASK_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    let prefix = std::env::var("DTASK_PREFIX").unwrap_or_else(|_| DEFAULT_PREFIX.to_owned());
    (url, prefix)
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
