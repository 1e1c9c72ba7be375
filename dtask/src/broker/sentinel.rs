//! Finding the master of a Redis watched by Sentinel, for `redis+sentinel://` URLs: the
//! sentinels to ask, the master's address as they know it, and a check with the master itself.
//! Every step is bounded in time, so that a frozen sentinel or master costs a second, not a hang.
//!
//! The URL: `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`
//! (`rediss+sentinel://` for TLS to the sentinels and the master). The user and password are the
//! master's; the sentinels are asked without credentials. A port left out is 26379.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult};

use super::connection::{CONNECT_TIMEOUT, tcp_settings};

/// How long a sentinel, or the master being checked, may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// The sentinels' port when the URL leaves it out.
const DEFAULT_PORT: u16 = 26379;

/// The sentinels of one master, and what was learnt from them.
pub(crate) struct Sentinels {
    /// `redis` or `rediss`.
    scheme: &'static str,
    /// `user:password@` for the master, as written in the URL, or empty.
    user_info: String,
    /// `host:port` of each sentinel.
    sentinels: Vec<String>,
    /// The master's name, as the sentinels know it.
    service: String,
    /// `/db`, or empty.
    db: String,
    tls_ca: Option<Vec<u8>>,
    /// The sentinel that answered last, asked first next time.
    preferred: AtomicUsize,
    /// The master found last (`host:port`): tried when no sentinel answers.
    last_master: Mutex<Option<String>>,
}

/// Whether `url` names a master through its sentinels.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

impl Sentinels {
    /// Reads a `redis+sentinel://` URL; the error says what is wrong with it.
    pub(crate) fn parse(url: &str, tls_ca: Option<Vec<u8>>) -> RedisResult<Sentinels> {
        let invalid = |detail: &str| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "invalid Sentinel URL",
                detail.to_owned(),
            ))
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            ("redis", rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            ("rediss", rest)
        } else {
            return Err(invalid(
                "a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://",
            ));
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            invalid("the master's name is missing: redis+sentinel://host:port/name")
        })?;
        let (user_info, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => (format!("{user_info}@"), hosts),
            None => (String::new(), authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',').map(str::trim) {
            if host.is_empty() {
                return Err(invalid("an empty sentinel address"));
            }
            let has_port = match host.rsplit_once(':') {
                // `[::1]` alone has a colon but no port.
                Some((_, port)) if !port.ends_with(']') => {
                    port.parse::<u16>().map_err(|_| {
                        invalid(&format!("a sentinel's port is not a number: {host}"))
                    })?;
                    true
                }
                _ => false,
            };
            sentinels.push(if has_port {
                host.to_owned()
            } else {
                format!("{host}:{DEFAULT_PORT}")
            });
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let (service, db) = match path.split_once('/') {
            Some((service, db)) if !db.is_empty() => {
                db.parse::<i64>()
                    .map_err(|_| invalid(&format!("the database is not a number: {db}")))?;
                (service, format!("/{db}"))
            }
            Some((service, _)) => (service, String::new()),
            None => (path, String::new()),
        };
        if service.is_empty() {
            return Err(invalid(
                "the master's name is missing: redis+sentinel://host:port/name",
            ));
        }
        Ok(Sentinels {
            scheme,
            user_info,
            sentinels,
            service: service.to_owned(),
            db,
            tls_ca,
            preferred: AtomicUsize::new(0),
            last_master: Mutex::new(None),
        })
    }

    /// A client of the master: the address the first sentinel that knows it gives, once the
    /// server there does not say it is a replica. When no sentinel answers, the master found
    /// last, if it still says it is one.
    pub(crate) async fn master(&self) -> RedisResult<redis::Client> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.sentinels.len() {
            let index = (start + step) % self.sentinels.len();
            let found = match self.ask(&self.sentinels[index]).await {
                Ok(address) => self.checked(&address).await.map(|client| (client, address)),
                Err(error) => Err(error),
            };
            match found {
                Ok((client, address)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    *self.last_master.lock().unwrap_or_else(|e| e.into_inner()) = Some(address);
                    return Ok(client);
                }
                Err(error) => {
                    tracing::debug!(%error, sentinel = &*self.sentinels[index], "no master from this sentinel");
                    last_error = Some(error);
                }
            }
        }
        let known = self
            .last_master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(address) = known
            && let Ok(client) = self.checked(&address).await
        {
            return Ok(client);
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no sentinel to ask"))
        }))
    }

    /// The master's `host:port` as the sentinel at `sentinel` knows it.
    async fn ask(&self, sentinel: &str) -> RedisResult<String> {
        let client = self.client(sentinel, false)?;
        let asked = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&bounded())
                .await?;
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.service)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, asked)
            .await
            .map_err(|_| timed_out("asking a sentinel for the master timed out"))??;
        let (host, port) = answer.ok_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know this master",
                self.service.clone(),
            ))
        })?;
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// A client of the server at `address`, once it does not say it is a replica (a server that
    /// does not let this user ask, `NOPERM`, is taken at the sentinels' word).
    async fn checked(&self, address: &str) -> RedisResult<redis::Client> {
        let client = self.client(address, true)?;
        let role = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&bounded())
                .await?;
            let reply: RedisResult<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await;
            Ok::<_, RedisError>(reply)
        };
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, role)
            .await
            .map_err(|_| timed_out("asking the master its role timed out"))??;
        match reply {
            Ok(redis::Value::Array(parts)) => match parts.first() {
                Some(redis::Value::BulkString(role)) if role.as_slice() == b"master" => Ok(client),
                _ => Err(RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                    "the server the sentinels name is not a master (yet)",
                    address.to_owned(),
                ))),
            },
            Ok(_) => Ok(client),
            Err(error) if error.code() == Some("NOPERM") => Ok(client),
            Err(error) => Err(error),
        }
    }

    /// A client of `address`, with the master's user, password and database when `master`.
    fn client(&self, address: &str, master: bool) -> RedisResult<redis::Client> {
        let url = if master {
            format!("{}://{}{address}{}", self.scheme, self.user_info, self.db)
        } else {
            format!("{}://{address}", self.scheme)
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?
            .set_tcp_settings(tcp_settings());
        match &self.tls_ca {
            Some(root_cert) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
    }
}

/// The settings of the short connections to a sentinel or a master being checked.
fn bounded() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT))
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sentinel_urls() {
        let s = Sentinels::parse("redis+sentinel://u:p%40ss@h1:1,h2,[::1]:3/mymaster/2", None)
            .expect("valid");
        assert_eq!(s.scheme, "redis");
        assert_eq!(s.user_info, "u:p%40ss@");
        assert_eq!(s.sentinels, ["h1:1", "h2:26379", "[::1]:3"]);
        assert_eq!(s.service, "mymaster");
        assert_eq!(s.db, "/2");
        let s = Sentinels::parse("rediss+sentinel://h:5/m", None).expect("valid");
        assert_eq!(
            (s.scheme, s.db.as_str(), s.user_info.as_str()),
            ("rediss", "", "")
        );
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1,/m",
            "redis+sentinel://h:1/m/db",
            "redis://h:1/m",
        ] {
            assert!(
                Sentinels::parse(bad, None).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn hides_the_password_of_a_sentinel_url() {
        let shown = crate::redact::redis_url("redis+sentinel://app:s3cret@h1:1,h2:2/dtask/0");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("h2:2/dtask/0"), "{shown}");
    }
}
