//! Scenario 9: what the durability option costs. A replica of the benchmark's Redis is started
//! and kept in sync; then the same enqueues run without and with `replicas(1, 1 s)` (each
//! enqueue call ends with `WAIT 1 1000` on the queue's node), in batches of 1,000 and one job per
//! call from 64 tasks. Both halves run with the replica attached, so that the replication
//! itself costs them alike and the difference is the wait.

use std::time::{Duration, Instant};

use dtask_testkit::redis_server::RedisServer;

use super::Bench;
use super::enqueue::PRODUCERS;
use crate::Result;
use crate::report::Outcome;
use crate::tasks;

/// How long an enqueue waits for its replica.
const WAIT: Duration = Duration::from_secs(1);

/// Runs the scenario with `jobs` jobs per run, the replica following the Redis at `port`.
pub async fn run(bench: &mut Bench, jobs: u64, port: u16) -> Result<Vec<Outcome>> {
    eprintln!(
        "9. durability: a replica of the Redis under test, enqueues without and with replicas(1, 1s) ..."
    );
    let replica = RedisServer::options()
        .args(&["--replicaof", "127.0.0.1", &port.to_string()])
        .start()?;
    wait_in_sync(&replica).await?;
    let mut outcomes = Vec::new();
    for durable in [false, true] {
        outcomes.push(batched(bench, jobs, durable).await?);
        outcomes.push(single(bench, jobs, durable).await?);
    }
    drop(replica);
    // The master forgets its replica once it is gone; later scenarios run as before.
    Ok(outcomes)
}

/// Waits until the replica's link to its master is up.
async fn wait_in_sync(replica: &RedisServer) -> Result<()> {
    let mut conn = redis::Client::open(replica.url())?
        .get_multiplexed_async_connection()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await?;
        if info.contains("master_link_status:up") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the replica did not sync within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client under a fresh prefix, waiting for one replica when `durable`.
async fn client(bench: &mut Bench, durable: bool) -> Result<(dtask::Client, String)> {
    let prefix = bench.fresh_prefix();
    let builder = dtask::Client::builder(bench.url()).prefix(&prefix);
    let builder = if durable {
        builder.replicas(1, WAIT)
    } else {
        builder
    };
    Ok((builder.connect().await?, prefix))
}

/// `jobs` no-op jobs with `enqueue_many`, [`super::BATCH`] per call.
async fn batched(bench: &mut Bench, jobs: u64, durable: bool) -> Result<Outcome> {
    let (client, prefix) = client(bench, durable).await?;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    super::fill_noop(&client, jobs, tasks::NoopKind::Kept).await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let name = if durable {
        "enqueue_many, replicas(1)"
    } else {
        "enqueue_many, replica attached"
    };
    Ok(Outcome::new(9, name, jobs, seconds, &after.since(&before)).with_rate())
}

/// `jobs` no-op jobs, one per `enqueue` call, from [`PRODUCERS`] tasks sharing one client.
async fn single(bench: &mut Bench, jobs: u64, durable: bool) -> Result<Outcome> {
    let (client, prefix) = client(bench, durable).await?;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..PRODUCERS {
        let client = client.clone();
        producers.spawn(async move {
            let mut i = producer;
            while i < jobs {
                tasks::noop::with().client(&client).enqueue(i, 7).await?;
                i += PRODUCERS;
            }
            Ok::<_, dtask::Error>(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let name = if durable {
        "enqueue_single, replicas(1)"
    } else {
        "enqueue_single, replica attached"
    };
    Ok(Outcome::new(9, name, jobs, seconds, &after.since(&before)).with_rate())
}
