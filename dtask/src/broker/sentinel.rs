//! Finding the master (or a replica) of a Redis watched by Sentinel, for `redis+sentinel://`
//! URLs: the sentinels to ask, the address most of them give, and a check with that server
//! itself. Every sentinel is asked at once and each question is bounded in time, so that frozen
//! or lost sentinels cost a second, not a hang, and one sentinel with a stale view is outvoted.
//!
//! The URL: `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`
//! (`rediss+sentinel://` for TLS to the sentinels and the servers), with optional
//! `?sentinel_username=..&sentinel_password=..` for sentinels that require them. The user and
//! password before the hosts are the servers'. A port left out is 26379.

use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, Value};

use super::connection::{client_of, tcp_settings};

/// How long a sentinel, or the server being checked, may take to connect, and to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// The sentinels' port when the URL leaves it out.
const DEFAULT_PORT: u16 = 26379;

/// Which server of the watched set is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The master: every state change goes there.
    Master,
    /// A replica in sync: for reading views.
    Replica,
}

/// The sentinels of one master.
pub(crate) struct Sentinels {
    /// `redis` or `rediss`.
    scheme: &'static str,
    /// `user:password@` for the servers, as written in the URL, or empty.
    user_info: String,
    /// `user:password@` for the sentinels, or empty.
    sentinel_user_info: String,
    /// `host:port` of each sentinel.
    sentinels: Vec<String>,
    /// The master's name, as the sentinels know it.
    service: String,
    /// `/db`, or empty.
    db: String,
    tls_ca: Option<Vec<u8>>,
    wanted: Wanted,
}

/// Whether `url` names a master through its sentinels.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

fn invalid(detail: &str) -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "invalid Sentinel URL",
        detail.to_owned(),
    ))
}

impl Sentinels {
    /// Reads a `redis+sentinel://` URL, for the server `wanted`; the error says what is wrong
    /// with it (never quoting what comes before an `@`).
    pub(crate) fn parse(
        url: &str,
        tls_ca: Option<Vec<u8>>,
        wanted: Wanted,
    ) -> RedisResult<Sentinels> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            ("redis", rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            ("rediss", rest)
        } else {
            return Err(invalid(
                "a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://",
            ));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, query),
            None => (rest, ""),
        };
        // The user info ends at the last `@` (a password may hold `/` or `@`).
        let (user_info, rest) = match rest.rsplit_once('@') {
            Some((user_info, rest)) => (format!("{user_info}@"), rest),
            None => (String::new(), rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| {
            invalid("the master's name is missing: redis+sentinel://host:port/name")
        })?;
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
        let (mut sentinel_user, mut sentinel_password) = (String::new(), String::new());
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_username", value)) => sentinel_user = value.to_owned(),
                Some(("sentinel_password", value)) => sentinel_password = value.to_owned(),
                _ => {
                    let name = pair.split('=').next().unwrap_or_default();
                    return Err(invalid(&format!(
                        "unknown parameter `{name}` (known: sentinel_username, sentinel_password)"
                    )));
                }
            }
        }
        let sentinel_user_info = match (sentinel_user.is_empty(), sentinel_password.is_empty()) {
            (true, true) => String::new(),
            (_, true) => format!("{sentinel_user}@"),
            _ => format!("{sentinel_user}:{sentinel_password}@"),
        };
        Ok(Sentinels {
            scheme,
            user_info,
            sentinel_user_info,
            sentinels,
            service: service.to_owned(),
            db,
            tls_ca,
            wanted,
        })
    }

    /// A client of the server wanted: the address most of the sentinels that answer give
    /// (asked all at once), once the server there says it is what is wanted.
    pub(crate) async fn find(&self) -> RedisResult<redis::Client> {
        let asked = self.sentinels.iter().map(|sentinel| self.ask(sentinel));
        let answers = futures_util::future::join_all(asked).await;
        let mut votes: Vec<(String, usize)> = Vec::new();
        let mut last_error = None;
        for answer in answers {
            match answer {
                Ok(addresses) => {
                    for address in addresses {
                        match votes.iter_mut().find(|(seen, _)| *seen == address) {
                            Some((_, count)) => *count += 1,
                            None => votes.push((address, 1)),
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "a sentinel did not answer");
                    last_error = Some(error);
                }
            }
        }
        // The most named first; a replica stays in the order the sentinels gave.
        votes.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        for (address, _) in votes {
            match self.checked(&address).await {
                Ok(client) => return Ok(client),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| match self.wanted {
            Wanted::Master => {
                RedisError::from((ErrorKind::EmptySentinelList, "no sentinel to ask"))
            }
            Wanted::Replica => RedisError::from((
                ErrorKind::NoValidReplicasFoundBySentinel,
                "the sentinels name no replica that is up",
            )),
        }))
    }

    /// What the sentinel at `sentinel` says: the master's `host:port`, or its replicas' in
    /// sync.
    async fn ask(&self, sentinel: &str) -> RedisResult<Vec<String>> {
        let client = self.client(sentinel, &self.sentinel_user_info, "")?;
        let asked = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&bounded())
                .await?;
            match self.wanted {
                Wanted::Master => {
                    let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(&self.service)
                        .query_async(&mut conn)
                        .await?;
                    let (host, port) = answer.ok_or_else(|| {
                        RedisError::from((
                            ErrorKind::MasterNameNotFoundBySentinel,
                            "the sentinel does not know this master",
                            self.service.clone(),
                        ))
                    })?;
                    Ok(vec![address(&host, port)])
                }
                Wanted::Replica => {
                    let replicas: Vec<std::collections::HashMap<String, String>> =
                        redis::cmd("SENTINEL")
                            .arg("REPLICAS")
                            .arg(&self.service)
                            .query_async(&mut conn)
                            .await?;
                    Ok(replicas
                        .iter()
                        .filter(|replica| {
                            let flags = replica.get("flags").map_or("", String::as_str);
                            !["s_down", "o_down", "disconnected"]
                                .iter()
                                .any(|bad| flags.contains(bad))
                        })
                        .filter_map(|replica| {
                            let port = replica.get("port")?.parse().ok()?;
                            Some(address(replica.get("ip")?, port))
                        })
                        .collect())
                }
            }
        };
        tokio::time::timeout(ASK_TIMEOUT * 2, asked)
            .await
            .map_err(|_| timed_out("asking a sentinel timed out"))?
    }

    /// A client of the server at `address`, once it says it is what is wanted (a server that
    /// does not let this user ask, `NOPERM`, is taken at the sentinels' word).
    async fn checked(&self, address: &str) -> RedisResult<redis::Client> {
        let client = self.client(address, &self.user_info, &self.db)?;
        let role = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&bounded())
                .await?;
            let reply: RedisResult<Value> = redis::cmd("ROLE").query_async(&mut conn).await;
            Ok::<_, RedisError>(reply)
        };
        let reply = tokio::time::timeout(ASK_TIMEOUT * 2, role)
            .await
            .map_err(|_| timed_out("asking a server its role timed out"))??;
        let expected: &[u8] = match self.wanted {
            Wanted::Master => b"master",
            Wanted::Replica => b"slave",
        };
        match reply {
            Ok(Value::Array(parts)) => match parts.first() {
                Some(Value::BulkString(role)) if role.as_slice() == expected => Ok(client),
                _ => Err(RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                    "the server the sentinels name is not (or no longer) what was asked for",
                    address.to_owned(),
                ))),
            },
            Ok(_) => Ok(client),
            Err(error) if error.code() == Some("NOPERM") => Ok(client),
            Err(error) => Err(error),
        }
    }

    /// A client of `address`, as `user_info` (`user:password@` or empty), on database `db`.
    fn client(&self, address: &str, user_info: &str, db: &str) -> RedisResult<redis::Client> {
        let url = format!("{}://{user_info}{address}{db}", self.scheme);
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?
            .set_tcp_settings(tcp_settings());
        client_of(info, self.tls_ca.as_deref())
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The settings of the short connections to a sentinel or a server being checked.
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
        let s = Sentinels::parse(
            "redis+sentinel://u:p%40ss@h1:1,h2,[::1]:3/mymaster/2",
            None,
            Wanted::Master,
        )
        .expect("valid");
        assert_eq!(s.scheme, "redis");
        assert_eq!(s.user_info, "u:p%40ss@");
        assert_eq!(s.sentinels, ["h1:1", "h2:26379", "[::1]:3"]);
        assert_eq!(s.service, "mymaster");
        assert_eq!(s.db, "/2");
        assert_eq!(s.sentinel_user_info, "");
        let s = Sentinels::parse(
            "rediss+sentinel://h:5/m?sentinel_password=x",
            None,
            Wanted::Replica,
        )
        .expect("valid");
        assert_eq!(
            (s.scheme, s.db.as_str(), s.user_info.as_str()),
            ("rediss", "", "")
        );
        assert_eq!(s.sentinel_user_info, ":x@");
        // A password holding `/` and `@`.
        let s = Sentinels::parse("redis+sentinel://u:a/b@c@h:1/m", None, Wanted::Master)
            .expect("valid");
        assert_eq!(
            (s.user_info.as_str(), s.sentinels[0].as_str()),
            ("u:a/b@c@", "h:1")
        );
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1,/m",
            "redis+sentinel://h:1/m/db",
            "redis+sentinel://h:1/m?password=x",
            "redis://h:1/m",
        ] {
            assert!(
                Sentinels::parse(bad, None, Wanted::Master).is_err(),
                "{bad} should be refused"
            );
        }
        // An error never quotes the user info.
        let error = Sentinels::parse("redis+sentinel://u:s3cret@h:x/m", None, Wanted::Master)
            .err()
            .expect("refused");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn hides_the_password_of_a_sentinel_url() {
        let shown = crate::redact::redis_url("redis+sentinel://app:s3cret@h1:1,h2:2/dtask/0");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("h2:2/dtask/0"), "{shown}");
        let shown =
            crate::redact::redis_url("redis+sentinel://h1:1/dtask?sentinel_password=s3cret");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
