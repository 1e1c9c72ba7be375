//! The scenarios, and what they share: a connection for Redis snapshots and clean-up, a fresh
//! key prefix per run, and filling a queue fast.
//!
//! Each run gets its own prefix (so its keys start empty and its clean-up touches nothing
//! else), is measured between two [`Snapshot`]s, and deletes its keys afterwards, outside the
//! measured window.

pub mod drain;
pub mod durable;
pub mod enqueue;
pub mod latency;
pub mod memory;
pub mod paired;
pub mod rate;
pub mod scale_out;
pub mod waiters;

use redis::aio::MultiplexedConnection;

use crate::Result;
use crate::redis_stats::Snapshot;
use crate::report::Outcome;
use crate::tasks;

/// Jobs per `enqueue_many` call when filling a queue.
pub const BATCH: usize = 1_000;

/// The benchmark's state across scenarios.
pub struct Bench {
    url: String,
    conn: MultiplexedConnection,
    concurrencies: Vec<usize>,
    drains: Vec<drain::Variant>,
    runs: u32,
}

impl Bench {
    /// Connects to the Redis at `url`; `concurrencies` are the worker concurrencies the drain
    /// scenario tries, and `drains` its variants (all of them when empty).
    pub async fn connect(
        url: &str,
        concurrencies: &[usize],
        drains: &[drain::Variant],
    ) -> Result<Bench> {
        let conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Bench {
            url: url.to_owned(),
            conn,
            concurrencies: concurrencies.to_vec(),
            drains: match drains {
                [] => drain::Variant::ALL.to_vec(),
                chosen => chosen.to_vec(),
            },
            runs: 0,
        })
    }

    /// Runs scenario 1, 2 or 3 with `size` jobs: one outcome, or one per concurrency for 3.
    pub async fn sized(&mut self, scenario: u8, size: u64) -> Result<Vec<Outcome>> {
        match scenario {
            1 => Ok(vec![
                enqueue::batched(self, size).await?,
                enqueue::group(self, size, false).await?,
                enqueue::group(self, size, true).await?,
            ]),
            2 => Ok(vec![
                enqueue::concurrent(self, size, false).await?,
                enqueue::concurrent(self, size, true).await?,
            ]),
            _ => {
                let mut outcomes = Vec::new();
                for concurrency in self.concurrencies.clone() {
                    for variant in self.drains.clone() {
                        outcomes.push(drain::drain(self, size, concurrency, variant).await?);
                    }
                }
                Ok(outcomes)
            }
        }
    }

    /// Scenario 8: 10,000 concurrent waiters, woken by notification and by polling.
    pub async fn waiters(&mut self) -> Result<Vec<Outcome>> {
        Ok(vec![
            waiters::wait_for_all(self, true).await?,
            waiters::wait_for_all(self, false).await?,
        ])
    }

    /// Scenario 7: a task's rate limit shared by four workers.
    pub async fn task_rate(&mut self) -> Result<Outcome> {
        rate::shared_by_four(self).await
    }

    /// Scenario 4: latency on an idle worker.
    pub async fn idle_latency(&mut self) -> Result<Outcome> {
        latency::idle(self).await
    }

    /// Scenario 5: latency at a steady rate.
    pub async fn paced_latency(&mut self) -> Result<Outcome> {
        latency::paced(self).await
    }

    /// Scenario 6: worker memory with 10,000 jobs in flight, finishing in order and out of
    /// order.
    pub async fn worker_memory(&mut self) -> Result<Vec<Outcome>> {
        Ok(vec![
            memory::measure(self, false).await?,
            memory::measure(self, true).await?,
        ])
    }

    /// Redis CPU time per second of wall-clock time while the benchmark sends nothing but the
    /// two snapshots, over `window`: what Redis spends on its own housekeeping.
    pub async fn idle_cpu(&mut self, window: std::time::Duration) -> Result<f64> {
        let before = self.snapshot().await?;
        tokio::time::sleep(window).await;
        let after = self.snapshot().await?;
        Ok(after.since(&before).cpu_seconds / window.as_secs_f64())
    }

    /// The Redis URL under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A key prefix no earlier run used.
    pub fn fresh_prefix(&mut self) -> String {
        self.runs += 1;
        format!("bench{}.{}", std::process::id(), self.runs)
    }

    /// A client under a key prefix no earlier run used, and that prefix.
    pub async fn fresh_client(&mut self) -> Result<(dtask::Client, String)> {
        let prefix = self.fresh_prefix();
        let client = dtask::Client::connect_with_prefix(&self.url, &prefix).await?;
        Ok((client, prefix))
    }

    /// Redis counters now.
    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        Snapshot::take(&mut self.conn).await
    }

    /// Deletes every key under `prefix`.
    pub async fn clean_up(&mut self, prefix: &str) -> Result<()> {
        let pattern = format!("{prefix}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut self.conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Enqueues `jobs` no-op jobs with `enqueue_many`, [`BATCH`] at a time: of [`tasks::noop`],
/// or of its fire-and-forget twin when not `keep_results`.
pub async fn fill_noop(client: &dtask::Client, jobs: u64, kind: tasks::NoopKind) -> Result<()> {
    let mut next = 0;
    while next < jobs {
        let end = (next + BATCH as u64).min(jobs);
        let items = (next..end).map(|i| (i, 7));
        match kind {
            tasks::NoopKind::Kept => {
                tasks::noop::with()
                    .client(client)
                    .enqueue_many(items)
                    .await?;
            }
            tasks::NoopKind::Forget => {
                tasks::noop_forget::with()
                    .client(client)
                    .enqueue_many(items)
                    .await?;
            }
            tasks::NoopKind::Limited => {
                tasks::noop_limited::with()
                    .client(client)
                    .enqueue_many(items)
                    .await?;
            }
        }
        next = end;
    }
    Ok(())
}
