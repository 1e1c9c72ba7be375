//! The connections the broker talks through: one Redis server or a Redis Cluster, behind one
//! type, so that every other part of the broker is written once.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How long a non-blocking command may take before the client gives up on it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the queues live: one server, or a cluster (given as several node URLs). Held once per
/// broker, behind an `Arc`, so the size of its variants does not matter.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Server(redis::Client),
    Cluster(ClusterClients),
}

/// The two clients of a cluster target.
#[derive(Clone)]
pub(crate) struct ClusterClients {
    /// For the shared connection: commands time out.
    shared: ClusterClient,
    /// For blocking connections: no response timeout, a blocking command may wait.
    blocking: ClusterClient,
}

impl Target {
    /// A single server from `client`.
    pub(crate) fn server(client: redis::Client) -> Target {
        Target::Server(client)
    }

    /// A cluster reached through any of `nodes`, trusting `tls_ca` for `rediss://` nodes.
    pub(crate) fn cluster(nodes: &[&str], tls_ca: Option<Vec<u8>>) -> RedisResult<Target> {
        let builder = |timeout: Option<Duration>| {
            let mut builder =
                ClusterClient::builder(nodes.iter().copied()).connection_timeout(CONNECT_TIMEOUT);
            if let Some(timeout) = timeout {
                builder = builder.response_timeout(timeout);
            }
            if let Some(root_cert) = &tls_ca {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert.clone()),
                });
            }
            builder.build()
        };
        Ok(Target::Cluster(ClusterClients {
            shared: builder(Some(RESPONSE_TIMEOUT))?,
            blocking: builder(None)?,
        }))
    }

    /// Whether keys of different hash slots may live on different nodes.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// The shared connection: multiplexed, cheap to clone, reconnecting by itself.
    pub(crate) async fn shared(&self) -> RedisResult<Conn> {
        match self {
            Target::Server(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_max_delay(Duration::from_secs(2));
                Ok(Conn::Server(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            Target::Cluster(clients) => {
                Ok(Conn::Cluster(clients.shared.get_async_connection().await?))
            }
        }
    }

    /// A connection of its own for blocking commands, with no response timeout.
    pub(crate) async fn blocking(&self) -> RedisResult<Conn> {
        match self {
            Target::Server(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(CONNECT_TIMEOUT));
                Ok(Conn::Blocking(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(clients) => Ok(Conn::Cluster(
                clients.blocking.get_async_connection().await?,
            )),
        }
    }
}

/// A connection to a server or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The shared connection to a server.
    Server(ConnectionManager),
    /// A blocking connection to a server.
    Blocking(MultiplexedConnection),
    /// A connection to a cluster, which routes each command by its first key.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(conn) => conn.req_packed_command(cmd),
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
            Conn::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Blocking(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(conn) => conn.get_db(),
            Conn::Blocking(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
