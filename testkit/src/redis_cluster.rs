//! A Redis Cluster of a test's own on 127.0.0.1: masters, optionally a replica each, that a
//! test can crash (SIGKILL a master and let its replica take over), fail over by hand
//! (`CLUSTER FAILOVER`), and start again. Talks to the nodes with `redis-cli`, so that this
//! crate needs no Redis client; every node is stopped by its pid when the cluster is dropped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::os::free_port;
use crate::redis_server::RedisServer;

/// How long a cluster may take to form, or to settle after a failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a [`RedisCluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    masters: usize,
    replicas: usize,
    node_timeout: Duration,
    full_coverage: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas: 0,
            node_timeout: Duration::from_secs(5),
            full_coverage: false,
        }
    }
}

impl ClusterOptions {
    /// How many masters share the 16,384 slots (default 3).
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters.max(1);
        self
    }

    /// How many replicas each master has (default 0).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// `cluster-node-timeout`: how long a master may be unreachable before its replica takes
    /// over (default 5 s; Redis's own default is 15 s).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// `cluster-require-full-coverage` (default here: no, as dtask's README advises; Redis's
    /// own default is yes): whether every node refuses every command while some slot has no
    /// master, for the second or so between a master's failure and its replica's election.
    pub fn full_coverage(mut self, required: bool) -> Self {
        self.full_coverage = required;
        self
    }

    /// Starts the nodes, joins them into a cluster, and waits until every node says the
    /// cluster is ok and every replica is in sync with its master.
    pub fn start(self) -> Result<RedisCluster, String> {
        let count = self.masters * (1 + self.replicas);
        let timeout_ms = self.node_timeout.as_millis().to_string();
        let mut nodes = Vec::with_capacity(count);
        let mut bus_ports = Vec::with_capacity(count);
        for _ in 0..count {
            // The bus port is given, so that it is free too (by default it is the port +
            // 10,000, which may be taken or past 65,535).
            let bus = free_port()?;
            bus_ports.push(bus);
            let bus_port = bus.to_string();
            nodes.push(
                RedisServer::options()
                    .args(&[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout_ms,
                        "--cluster-port",
                        &bus_port,
                        "--cluster-require-full-coverage",
                        if self.full_coverage { "yes" } else { "no" },
                    ])
                    .start()?,
            );
        }
        if self.masters < 3 {
            // redis-cli makes clusters of 3 masters or more: a smaller one is joined here.
            if self.replicas > 0 {
                return Err("a cluster of fewer than 3 masters has no replicas here".to_owned());
            }
            join_by_hand(&nodes, &bus_ports)?;
            let cluster = RedisCluster {
                nodes: nodes.into_iter().map(Some).collect(),
                options: self,
            };
            cluster.wait_settled()?;
            return Ok(cluster);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &self.replicas.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run redis-cli (apt-get install redis-tools): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ));
        }
        let cluster = RedisCluster {
            nodes: nodes.into_iter().map(Some).collect(),
            options: self,
        };
        cluster.wait_settled()?;
        Ok(cluster)
    }
}

/// A Redis Cluster owned by one test; see [`ClusterOptions`].
#[derive(Debug)]
pub struct RedisCluster {
    /// Indexed by node number; `None` once a node was removed for good.
    nodes: Vec<Option<RedisServer>>,
    options: ClusterOptions,
}

/// One node's view of itself, from `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRole {
    /// The node's number in the cluster (its index in [`RedisCluster::ports`]).
    pub node: usize,
    /// Whether it is a master serving slots.
    pub master: bool,
    /// For a replica, the number of the master it replicates.
    pub replica_of: Option<usize>,
}

impl RedisCluster {
    /// Options for a cluster; [`ClusterOptions::start`] starts it.
    pub fn options() -> ClusterOptions {
        ClusterOptions::default()
    }

    /// Three masters, no replicas, a 5 s node timeout.
    pub fn start() -> Result<RedisCluster, String> {
        ClusterOptions::default().start()
    }

    /// Every node's URL, comma-separated: how dtask is pointed at a cluster.
    pub fn url(&self) -> String {
        self.ports()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the nodes, by node number.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|node| node.as_ref().map_or(0, RedisServer::port))
            .collect()
    }

    /// The node's server (for its pid, log and port); `None` after it was removed.
    pub fn node(&self, node: usize) -> Option<&RedisServer> {
        self.nodes.get(node).and_then(Option::as_ref)
    }

    /// The cluster's node timeout.
    pub fn node_timeout(&self) -> Duration {
        self.options.node_timeout
    }

    /// The number of the master now serving the slot of `key` (which may be a hash tag alone,
    /// `{emails}`), asked of any live node.
    pub fn master_of(&self, key: &str) -> Result<usize, String> {
        let port = self.any_live_port()?;
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .map_err(|e| format!("CLUSTER KEYSLOT {key}: {e}"))?;
        let nodes = cli(port, &["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-');
                let low = bounds.next().and_then(|b| b.parse::<u16>().ok());
                let high = bounds.next().and_then(|b| b.parse::<u16>().ok()).or(low);
                matches!((low, high), (Some(low), Some(high)) if low <= slot && slot <= high)
            });
            if serves {
                return self.node_of_address(fields[1]);
            }
        }
        Err(format!("no live master serves slot {slot} of {key}"))
    }

    /// Every live node's role, by node number.
    pub fn roles(&self) -> Result<Vec<NodeRole>, String> {
        let port = self.any_live_port()?;
        let nodes = cli(port, &["CLUSTER", "NODES"])?;
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            if fields.len() < 8 || fields[2].contains("fail") {
                continue;
            }
            let Ok(node) = self.node_of_address(&fields[1]) else {
                continue;
            };
            ids.push((fields[0].clone(), node));
            lines.push((node, fields));
        }
        let mut roles: Vec<NodeRole> = lines
            .iter()
            .map(|(node, fields)| NodeRole {
                node: *node,
                master: fields[2].contains("master"),
                replica_of: ids
                    .iter()
                    .find(|(id, _)| *id == fields[3])
                    .map(|(_, master)| *master),
            })
            .collect();
        roles.sort_by_key(|role| role.node);
        Ok(roles)
    }

    /// The number of a replica of `master`.
    pub fn replica_of(&self, master: usize) -> Result<usize, String> {
        self.roles()?
            .into_iter()
            .find(|role| role.replica_of == Some(master))
            .map(|role| role.node)
            .ok_or_else(|| format!("node {master} has no replica"))
    }

    /// Crashes a node (SIGKILL). Its replica takes over after the node timeout.
    pub fn kill(&mut self, node: usize) {
        if let Some(server) = self.nodes.get_mut(node).and_then(Option::as_mut) {
            server.kill();
        }
    }

    /// Starts a killed node again (with its cluster config: it rejoins, as a replica when its
    /// slots were taken over meanwhile), and waits until the cluster has settled.
    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        let server = self
            .nodes
            .get_mut(node)
            .and_then(Option::as_mut)
            .ok_or_else(|| format!("no node {node}"))?;
        server.restart()?;
        self.wait_settled()
    }

    /// Has the replica `replica` take over from its master at once, the master agreeing
    /// (`CLUSTER FAILOVER`), and waits until it serves as master.
    pub fn failover(&self, replica: usize) -> Result<(), String> {
        let port = self.port_of(replica)?;
        let answer = cli(port, &["CLUSTER", "FAILOVER"])?;
        if !answer.contains("OK") {
            return Err(format!("CLUSTER FAILOVER on node {replica}: {answer}"));
        }
        self.wait_for(&format!("node {replica} to serve as master"), || {
            let role = cli(port, &["ROLE"]).ok()?;
            role.starts_with("master").then_some(())
        })
    }

    /// Waits until the killed master's slots are served by another node: its replica took
    /// over. Returns how long that took from now.
    pub fn wait_taken_over(&self, key: &str, old_master: usize) -> Result<Duration, String> {
        let start = Instant::now();
        self.wait_for(&format!("a replica to take over {key}"), || {
            match self.master_of(key) {
                Ok(node) if node != old_master => Some(()),
                _ => None,
            }
        })?;
        Ok(start.elapsed())
    }

    /// Waits until every live node says the cluster is ok and every live replica's link to its
    /// master is up.
    pub fn wait_settled(&self) -> Result<(), String> {
        self.wait_for("the cluster to be ok with every replica in sync", || {
            for node in self.nodes.iter().flatten() {
                if node.pid().is_none() {
                    continue;
                }
                let info = cli(node.port(), &["CLUSTER", "INFO"]).ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                let replication = cli(node.port(), &["INFO", "replication"]).ok()?;
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    return None;
                }
            }
            // Every node knows every other one as it is now (none marked failed).
            let roles = self.roles().ok()?;
            let live = self.nodes.iter().flatten().filter(|n| n.pid().is_some());
            (roles.len() == live.count()).then_some(())
        })
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> Option<()>) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if check().is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn port_of(&self, node: usize) -> Result<u16, String> {
        self.node(node)
            .map(RedisServer::port)
            .ok_or_else(|| format!("no node {node}"))
    }

    fn any_live_port(&self) -> Result<u16, String> {
        self.nodes
            .iter()
            .flatten()
            .find(|node| node.pid().is_some())
            .map(RedisServer::port)
            .ok_or_else(|| "no node of the cluster runs".to_owned())
    }

    /// The node number of `address` as `CLUSTER NODES` spells it (`127.0.0.1:port@bus`).
    fn node_of_address(&self, address: &str) -> Result<usize, String> {
        let port: u16 = address
            .split('@')
            .next()
            .and_then(|host_port| host_port.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("no port in {address}"))?;
        self.nodes
            .iter()
            .position(|node| node.as_ref().is_some_and(|n| n.port() == port))
            .ok_or_else(|| format!("no node listens on {port}"))
    }
}

/// Makes masters of `nodes` (at most a few), each serving an equal share of the slots, and has
/// them meet.
fn join_by_hand(nodes: &[RedisServer], bus_ports: &[u16]) -> Result<(), String> {
    const SLOTS: usize = 16384;
    let share = SLOTS / nodes.len();
    for (i, node) in nodes.iter().enumerate() {
        let low = i * share;
        let high = if i + 1 == nodes.len() {
            SLOTS - 1
        } else {
            (i + 1) * share - 1
        };
        let answer = cli(
            node.port(),
            &[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &low.to_string(),
                &high.to_string(),
            ],
        )?;
        if !answer.contains("OK") {
            return Err(format!("CLUSTER ADDSLOTSRANGE on node {i}: {answer}"));
        }
    }
    let first = nodes[0].port();
    for (node, bus) in nodes.iter().zip(bus_ports).skip(1) {
        let answer = cli(
            first,
            &[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.port().to_string(),
                &bus.to_string(),
            ],
        )?;
        if !answer.contains("OK") {
            return Err(format!("CLUSTER MEET {}: {answer}", node.port()));
        }
    }
    Ok(())
}

/// Runs `redis-cli -p port args...` and returns what it printed.
pub(crate) fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("run redis-cli: {e}"))?;
    if !output.status.success() {
        return Err(format!("redis-cli -p {port} {args:?} failed"));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
