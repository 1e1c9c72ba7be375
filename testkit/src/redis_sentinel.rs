//! A master watched by Redis Sentinel, of a test's own: a master, its replicas and three
//! sentinels (quorum 2) on free ports of 127.0.0.1, that a test can fail over by crashing the
//! master (SIGKILL) or by asking a sentinel (`SENTINEL FAILOVER`). Every process is stopped by
//! its pid when dropped.

use std::time::{Duration, Instant};

use crate::redis_cluster::cli;
use crate::redis_server::RedisServer;

/// The name the sentinels know the master by.
pub const SERVICE: &str = "dtask";

/// How to start a [`RedisSentinels`]; [`RedisSentinels::start`] takes the defaults.
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    replicas: usize,
    down_after: Duration,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            replicas: 1,
            down_after: Duration::from_secs(1),
        }
    }
}

impl SentinelOptions {
    /// Replicas of the master (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// How long the master may not answer before the sentinels take it for down
    /// (`down-after-milliseconds`, default 1 s).
    pub fn down_after(mut self, down_after: Duration) -> Self {
        self.down_after = down_after;
        self
    }

    /// Starts the master, its replicas and three sentinels, and waits until every sentinel
    /// knows every replica and the other sentinels.
    pub fn start(self) -> Result<RedisSentinels, String> {
        let master = RedisServer::start()?;
        let mut servers = vec![Some(master)];
        let master_port = servers[0].as_ref().map(RedisServer::port).unwrap_or(0);
        for _ in 0..self.replicas {
            servers.push(Some(
                RedisServer::options()
                    .args(&["--replicaof", "127.0.0.1", &master_port.to_string()])
                    .start()?,
            ));
        }
        let config = format!(
            "sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {SERVICE} {}\n\
             sentinel failover-timeout {SERVICE} 10000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            self.down_after.as_millis()
        );
        let mut sentinels = Vec::with_capacity(3);
        for _ in 0..3 {
            sentinels.push(
                RedisServer::options()
                    .config(config.clone())
                    .args(&["--sentinel"])
                    .start()?,
            );
        }
        let set = RedisSentinels {
            servers,
            sentinels,
            options: self,
        };
        set.wait_settled()?;
        Ok(set)
    }
}

/// A Sentinel-watched master with its replicas and three sentinels.
#[derive(Debug)]
pub struct RedisSentinels {
    /// The master as started, then its replicas; None while killed.
    servers: Vec<Option<RedisServer>>,
    sentinels: Vec<RedisServer>,
    options: SentinelOptions,
}

impl RedisSentinels {
    /// A master, one replica and three sentinels, the master taken for down after 1 s.
    pub fn start() -> Result<RedisSentinels, String> {
        SentinelOptions::default().start()
    }

    /// Options for a set started differently.
    pub fn options() -> SentinelOptions {
        SentinelOptions::default()
    }

    /// `redis+sentinel://127.0.0.1:<port>,...,127.0.0.1:<port>/dtask`: the URL dtask connects
    /// with.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port()))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", sentinels.join(","))
    }

    /// The ports of the sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(RedisServer::port).collect()
    }

    /// The ports of the data servers (master and replicas as started), killed ones included.
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .flatten()
            .map(RedisServer::port)
            .collect()
    }

    /// The port of the master, as the first sentinel that answers knows it.
    pub fn master_port(&self) -> Result<u16, String> {
        let mut last = String::new();
        for sentinel in &self.sentinels {
            match named_master(sentinel.port()) {
                Ok(port) => return Ok(port),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// SIGKILLs the data server on `port` (the master or a replica).
    pub fn kill(&mut self, port: u16) -> Result<(), String> {
        let server = self
            .servers
            .iter_mut()
            .flatten()
            .find(|server| server.port() == port)
            .ok_or_else(|| format!("no server on port {port}"))?;
        server.kill();
        Ok(())
    }

    /// Starts the data server on `port` again (empty: it has no persistence); the sentinels
    /// make it a replica of the current master.
    pub fn restart(&mut self, port: u16) -> Result<(), String> {
        let server = self
            .servers
            .iter_mut()
            .flatten()
            .find(|server| server.port() == port)
            .ok_or_else(|| format!("no server on port {port}"))?;
        server.restart()
    }

    /// Asks a sentinel to fail the master over to a replica (`SENTINEL FAILOVER`).
    pub fn failover(&self) -> Result<(), String> {
        let answer = cli(self.sentinels[0].port(), &["SENTINEL", "FAILOVER", SERVICE])?;
        if answer.contains("OK") {
            Ok(())
        } else {
            Err(format!("SENTINEL FAILOVER: {answer}"))
        }
    }

    /// Waits until every sentinel names a master other than `old` and that server says it is a
    /// master; returns its port.
    pub fn wait_promoted(&self, old: u16, within: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(port) = self.agreed_master()
                && port != old
                && role(port).as_deref() == Some("master")
            {
                return Ok(port);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no replica of {old} promoted within {within:?} (sentinels say {:?})",
                    self.agreed_master()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master every sentinel names, when they agree.
    fn agreed_master(&self) -> Option<u16> {
        let mut agreed = None;
        for sentinel in &self.sentinels {
            let port = named_master(sentinel.port()).ok()?;
            match agreed {
                None => agreed = Some(port),
                Some(seen) if seen != port => return None,
                Some(_) => {}
            }
        }
        agreed
    }

    /// Waits until the master has every running replica in sync and every sentinel knows them
    /// and the two other sentinels.
    pub fn wait_settled(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let replicas = self.options.replicas;
        loop {
            let settled = (|| {
                let master = self.master_port().ok()?;
                let info = cli(master, &["INFO", "replication"]).ok()?;
                let online = info
                    .lines()
                    .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                    .count();
                if online < replicas {
                    return None;
                }
                for sentinel in &self.sentinels {
                    let known = cli(sentinel.port(), &["SENTINEL", "MASTER", SERVICE]).ok()?;
                    let field = |name: &str| -> Option<usize> {
                        let lines: Vec<&str> = known.lines().map(str::trim).collect();
                        let at = lines.iter().position(|line| *line == name)?;
                        lines.get(at + 1)?.parse().ok()
                    };
                    if field("num-slaves")? < replicas || field("num-other-sentinels")? < 2 {
                        return None;
                    }
                }
                Some(())
            })();
            if settled.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("the sentinels did not settle within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The port of the master as the sentinel on `port` names it.
fn named_master(port: u16) -> Result<u16, String> {
    let answer = cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])?;
    let named = answer
        .lines()
        .nth(1)
        .ok_or_else(|| format!("unexpected answer {answer:?}"))?;
    named.trim().parse().map_err(|e| format!("{answer}: {e}"))
}

/// What the server on `port` says it is (`master`, `slave`), if it answers.
fn role(port: u16) -> Option<String> {
    let answer = cli(port, &["ROLE"]).ok()?;
    answer.lines().next().map(|line| line.trim().to_owned())
}
