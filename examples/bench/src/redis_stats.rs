//! What Redis itself saw during a scenario: commands run (from `INFO commandstats`, which counts
//! the commands a Lua script runs as well as the script call), CPU time (`INFO cpu`) and memory
//! (`INFO memory`), from two snapshots taken around the scenario.
//!
//! A snapshot also reads this process's CPU time, so that a scenario reports what the dtask
//! side (client and in-process worker) spent per job next to what Redis spent.
//!
//! A snapshot is one `INFO` call on a connection of its own, and it is the only command the
//! benchmark sends between two snapshots; `INFO` calls are left out of the deltas (dtask sends
//! none).

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;

use crate::Result;

/// Redis counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Calls and microseconds spent per command (`rpush`, `evalsha`, `config|get`, ...) since
    /// the last reset.
    calls: HashMap<String, (u64, u64)>,
    /// `used_cpu_sys + used_cpu_user`, seconds.
    cpu_seconds: f64,
    /// `used_memory`, bytes.
    used_memory: u64,
    /// This process's CPU time (user + system), seconds.
    process_cpu_seconds: f64,
}

/// The difference between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Calls per command, without the benchmark's own `INFO`.
    pub calls: BTreeMap<String, u64>,
    /// Microseconds Redis spent in each command (a script's time includes its commands').
    pub usec: BTreeMap<String, u64>,
    /// Redis CPU time (user + system, every thread), seconds.
    pub cpu_seconds: f64,
    /// Change of `used_memory`, bytes.
    pub memory_bytes: i64,
    /// This process's CPU time (user + system, every thread), seconds.
    pub process_cpu_seconds: f64,
}

impl Delta {
    /// Adds `other`'s Redis figures (another node's, in the same window) to these; this
    /// process's CPU time is counted once.
    pub fn add(&mut self, other: &Delta) {
        for (command, calls) in &other.calls {
            *self.calls.entry(command.clone()).or_default() += calls;
        }
        for (command, usec) in &other.usec {
            *self.usec.entry(command.clone()).or_default() += usec;
        }
        self.cpu_seconds += other.cpu_seconds;
        self.memory_bytes += other.memory_bytes;
    }

    /// Every command Redis ran, scripts' inner commands included.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Average microseconds per call of each command that ran.
    pub fn usec_per_call(&self) -> BTreeMap<String, f64> {
        self.calls
            .iter()
            .filter(|(_, calls)| **calls > 0)
            .map(|(name, calls)| {
                let usec = self.usec.get(name).copied().unwrap_or(0);
                (name.clone(), usec as f64 / *calls as f64)
            })
            .collect()
    }

    /// Calls of each command per job, most frequent first, dropping those under 0.001 per job.
    pub fn calls_per_job(&self, jobs: u64) -> Vec<(String, f64)> {
        let jobs = jobs.max(1) as f64;
        let mut per_job: Vec<(String, f64)> = self
            .calls
            .iter()
            .map(|(name, calls)| (name.clone(), *calls as f64 / jobs))
            .filter(|(_, per_job)| *per_job >= 0.001)
            .collect();
        per_job.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        per_job
    }
}

impl Snapshot {
    /// Takes a snapshot with one `INFO commandstats cpu memory`.
    pub async fn take(conn: &mut MultiplexedConnection) -> Result<Snapshot> {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .arg("cpu")
            .arg("memory")
            .query_async(conn)
            .await?;
        let mut snapshot = Snapshot::parse(&text)?;
        snapshot.process_cpu_seconds = crate::process::cpu_seconds()?;
        Ok(snapshot)
    }

    fn parse(text: &str) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let (mut cpu_sys, mut cpu_user, mut memory) = (None, None, None);
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            if let Some(command) = key.strip_prefix("cmdstat_") {
                let field = |name: &str| -> Result<u64> {
                    value
                        .split(',')
                        .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|number| number.parse().ok())
                        .ok_or_else(|| format!("unreadable commandstats line `{line}`").into())
                };
                snapshot
                    .calls
                    .insert(command.to_owned(), (field("calls")?, field("usec")?));
                continue;
            }
            match key {
                "used_cpu_sys" => cpu_sys = value.parse::<f64>().ok(),
                "used_cpu_user" => cpu_user = value.parse::<f64>().ok(),
                "used_memory" => memory = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        match (cpu_sys, cpu_user, memory) {
            (Some(sys), Some(user), Some(memory)) => {
                snapshot.cpu_seconds = sys + user;
                snapshot.used_memory = memory;
                Ok(snapshot)
            }
            _ => Err("INFO lacks used_cpu_sys, used_cpu_user or used_memory".into()),
        }
    }

    /// What changed from `before` to this snapshot, less the `INFO` that took `before`.
    pub fn since(&self, before: &Snapshot) -> Delta {
        let mut calls = BTreeMap::new();
        let mut usec = BTreeMap::new();
        for (command, &(calls_now, usec_now)) in &self.calls {
            let (calls_then, usec_then) = before.calls.get(command).copied().unwrap_or((0, 0));
            let mut delta = calls_now.saturating_sub(calls_then);
            if command == "info" {
                // The first snapshot's INFO; its time cannot be told apart, so drop it all.
                delta = 0;
            }
            if delta > 0 {
                calls.insert(command.clone(), delta);
                usec.insert(command.clone(), usec_now.saturating_sub(usec_then));
            }
        }
        Delta {
            calls,
            usec,
            cpu_seconds: (self.cpu_seconds - before.cpu_seconds).max(0.0),
            memory_bytes: self.used_memory as i64 - before.used_memory as i64,
            process_cpu_seconds: (self.process_cpu_seconds - before.process_cpu_seconds).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# Commandstats\r\n\
        cmdstat_rpush:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        \r\n# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.000000\r\n\
        \r\n# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\n";

    const AFTER: &str = "# Commandstats\r\n\
        cmdstat_rpush:calls=30,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_config|get:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=4,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        \r\n# CPU\r\nused_cpu_sys:2.000000\r\nused_cpu_user:2.500000\r\n\
        \r\n# Memory\r\nused_memory:3000\r\n";

    #[test]
    fn delta_leaves_out_the_snapshot_itself() {
        let before = Snapshot::parse(BEFORE).unwrap();
        let after = Snapshot::parse(AFTER).unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.total_calls(), 21);
        assert_eq!(delta.calls.get("info"), None);
        assert_eq!(delta.calls.get("config|get"), Some(&1));
        assert!((delta.cpu_seconds - 1.0).abs() < 1e-9);
        assert_eq!(delta.memory_bytes, 2000);
        assert_eq!(delta.calls_per_job(10)[0], ("rpush".to_owned(), 2.0));
        assert_eq!(delta.usec_per_call().get("config|get"), Some(&2.0));
    }
}
