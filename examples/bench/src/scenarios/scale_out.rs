//! Scenario 10: throughput as masters are added. The same drain (three queues of no-op jobs
//! that keep their results, one in-process worker serving all three) runs on the benchmark's
//! own Redis, then on Redis Clusters of 1, 2 and 3 masters started here (no replicas), the
//! three queues spread over as many masters as there are. Each row gives the measured jobs/s,
//! the Redis CPU per job on each master, and the *projected* capacity: the rate at which the
//! busiest master's CPU would be used up (jobs over the busiest master's CPU seconds). On this
//! 2-core machine every process shares the cores, so the measured rate cannot grow with the
//! masters; the projection tells what more machines would give. Two more rows on 3 masters:
//! the whole drain in one queue (which lives on one master), then in one queue of 3 partitions
//! (`ClientBuilder::partitions`), spread over the three.

use std::time::Duration;

use dtask_testkit::redis_cluster::RedisCluster;
use redis::aio::MultiplexedConnection;

use super::Bench;
use crate::Result;
use crate::redis_stats::Snapshot;
use crate::report::Outcome;
use crate::tasks::{self, NoopWatch};

/// The queues of the drain.
const QUEUES: usize = 3;

/// How the drain's jobs are laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// Over [`QUEUES`] queues, on as many masters as there are.
    Spread,
    /// In one queue.
    One,
    /// In one queue of [`QUEUES`] partitions.
    Partitioned,
}

/// Runs the drain of `jobs` jobs at `concurrency` on the benchmark's Redis, then on clusters of
/// 1, 2 and 3 masters.
pub async fn run(bench: &mut Bench, jobs: u64, concurrency: usize) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    eprintln!("10. scale-out: {jobs} jobs over {QUEUES} queues, one Redis ...");
    let url = bench.url().to_owned();
    let standalone = vec![url.clone()];
    outcomes.push(
        drain_on(
            bench,
            "one Redis",
            &url,
            &standalone,
            (0, Layout::Spread),
            jobs,
            concurrency,
        )
        .await?,
    );
    for (masters, layout, name) in [
        (1, Layout::Spread, "cluster, 1 master"),
        (2, Layout::Spread, "cluster, 2 masters"),
        (3, Layout::Spread, "cluster, 3 masters"),
        (3, Layout::One, "3 masters, one queue"),
        (
            3,
            Layout::Partitioned,
            "3 masters, one queue in 3 partitions",
        ),
    ] {
        eprintln!("10. scale-out: {jobs} jobs, {name} ...");
        let cluster = tokio::task::block_in_place(|| {
            RedisCluster::options().masters(masters).replicas(0).start()
        })?;
        let nodes: Vec<String> = cluster
            .ports()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        outcomes.push(
            drain_on(
                bench,
                name,
                &cluster.url(),
                &nodes,
                (masters, layout),
                jobs,
                concurrency,
            )
            .await?,
        );
        drop(cluster);
    }
    Ok(outcomes)
}

/// The drain on the Redis at `url` (a cluster's node URLs when `masters` > 0), its jobs laid
/// out by `layout`, measured on every node of `nodes`.
async fn drain_on(
    bench: &mut Bench,
    name: &'static str,
    url: &str,
    nodes: &[String],
    (masters, layout): (usize, Layout),
    jobs: u64,
    concurrency: usize,
) -> Result<Outcome> {
    let prefix = bench.fresh_prefix();
    let mut builder = dtask::Client::builder(url).prefix(&prefix);
    let queues = match layout {
        Layout::Spread => spread_queues(nodes, masters).await?,
        Layout::One => vec!["scale-one".to_owned(); QUEUES],
        Layout::Partitioned => {
            builder = builder.partitions("scale-hot", QUEUES as u16);
            vec!["scale-hot".to_owned(); QUEUES]
        }
    };
    let client = builder.connect().await?;
    let per_queue = jobs / QUEUES as u64;
    let jobs = per_queue * QUEUES as u64;
    for (q, queue) in queues.iter().enumerate() {
        let mut next = 0;
        while next < per_queue {
            let end = (next + super::BATCH as u64).min(per_queue);
            let base = q as u64 * per_queue;
            tasks::noop::with()
                .client(&client)
                .queue(queue.clone())
                .enqueue_many((base + next..base + end).map(|i| (i, 7)))
                .await?;
            next = end;
        }
    }
    let mut conns = Vec::new();
    for node in nodes {
        conns.push(
            redis::Client::open(node.as_str())?
                .get_multiplexed_async_connection()
                .await?,
        );
    }
    NoopWatch::reset(jobs);
    let before = snapshots(&mut conns).await?;
    let started_ns = tasks::now_ns();
    let mut served = queues.clone();
    served.dedup();
    let worker = dtask::Worker::new(&client)
        .queues(served)
        .concurrency(concurrency)
        .spawn();
    let limit = Duration::from_secs(60 + jobs / 1_000);
    let finished = NoopWatch::finished(limit).await;
    let stopped = worker.shutdown().await;
    let Some(finished_ns) = finished else {
        return Err(format!(
            "{name}: drain of {jobs} jobs timed out with {} done",
            NoopWatch::done()
        )
        .into());
    };
    stopped?;
    let after = snapshots(&mut conns).await?;
    let seconds = finished_ns.saturating_sub(started_ns) as f64 / 1e9;
    // The whole: every node's commands and CPU; per master, its CPU per job of the run.
    let deltas: Vec<_> = after
        .iter()
        .zip(&before)
        .map(|(after, before)| after.since(before))
        .collect();
    let mut total = deltas[0].clone();
    for delta in &deltas[1..] {
        total.add(delta);
    }
    let mut outcome = Outcome::new(10, name, jobs, seconds, &total).with_rate();
    outcome.concurrency = Some(concurrency);
    let per_master: Vec<f64> = deltas
        .iter()
        .map(|delta| delta.cpu_seconds * 1e6 / jobs as f64)
        .collect();
    let busiest = deltas
        .iter()
        .map(|delta| delta.cpu_seconds)
        .fold(0.0, f64::max);
    outcome.note = Some(format!(
        "Redis µs per job of the run, per master: {}; projected (Redis-bound) capacity: {:.0} jobs/s",
        per_master
            .iter()
            .map(|us| format!("{us:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        jobs as f64 / busiest.max(1e-9)
    ));
    if masters == 0 {
        bench.clean_up(&prefix).await?;
    }
    Ok(outcome)
}

/// One snapshot per node.
async fn snapshots(conns: &mut [MultiplexedConnection]) -> Result<Vec<Snapshot>> {
    let mut taken = Vec::with_capacity(conns.len());
    for conn in conns {
        taken.push(Snapshot::take(conn).await?);
    }
    Ok(taken)
}

/// [`QUEUES`] queue names, spread over as many of the `masters` masters as there are (any
/// names on one server).
async fn spread_queues(nodes: &[String], masters: usize) -> Result<Vec<String>> {
    if masters == 0 {
        return Ok((0..QUEUES).map(|i| format!("scale-{i}")).collect());
    }
    let mut conn = redis::Client::open(nodes[0].as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let ranges: Vec<(u16, u16)> = {
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        slots
            .into_iter()
            .filter_map(|range| {
                let start: u16 = redis::from_redis_value(range.first()?.clone()).ok()?;
                let end: u16 = redis::from_redis_value(range.get(1)?.clone()).ok()?;
                Some((start, end))
            })
            .collect()
    };
    let mut chosen: Vec<(String, usize)> = Vec::new();
    for i in 0..10_000 {
        let queue = format!("scale-{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{queue}}}"))
            .query_async(&mut conn)
            .await?;
        let Some(range) = ranges.iter().position(|(s, e)| *s <= slot && slot <= *e) else {
            continue;
        };
        let used = chosen.iter().filter(|(_, r)| *r == range).count();
        let fewest = (0..ranges.len())
            .map(|r| chosen.iter().filter(|(_, c)| *c == r).count())
            .min()
            .unwrap_or(0);
        if used == fewest {
            chosen.push((queue, range));
        }
        if chosen.len() == QUEUES {
            break;
        }
    }
    Ok(chosen.into_iter().map(|(queue, _)| queue).collect())
}
