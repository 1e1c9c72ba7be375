//! Latency floors of the Redis under test, measured from this process with plain redis-rs (no
//! dtask): a `PING` round trip, and the time from an `RPUSH` to the `BLMOVE` it wakes on
//! another connection, the least any queue built on Redis lists can take to hand over a job.
//! Scenario 4 reads against these.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use redis::aio::MultiplexedConnection;

use crate::Result;
use crate::redis_stats::Snapshot;
use crate::report::Latency;
use crate::tasks::now_ns;

/// Samples of each floor.
pub const SAMPLES: u64 = 1_000;
/// Rounds run and discarded before the samples.
const WARM_UP: u64 = 100;
/// Pause before each wake-up sample, so the waiter is blocked when the push arrives.
const PAUSE: Duration = Duration::from_millis(2);

/// Both floors.
#[derive(Debug, Clone)]
pub struct Floors {
    /// One `PING` at a time on an idle connection.
    pub ping: Latency,
    /// `RPUSH` on one connection to the return of a `BLMOVE` blocked on another.
    pub wake: Latency,
    /// Redis CPU time per wake-up sample, µs.
    pub wake_redis_cpu_us: f64,
    /// This process's CPU time per wake-up sample, µs.
    pub wake_client_cpu_us: f64,
}

/// Measures both floors on `url`, with keys under `prefix` (deleted afterwards).
pub async fn measure(url: &str, prefix: &str) -> Result<Floors> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let ping = ping(&mut conn).await?;
    let before = Snapshot::take(&mut conn).await?;
    let wake = wake(&client, &mut conn, prefix).await?;
    let spent = Snapshot::take(&mut conn).await?.since(&before);
    let rounds = (SAMPLES + WARM_UP) as f64;
    Ok(Floors {
        ping,
        wake,
        wake_redis_cpu_us: spent.cpu_seconds * 1e6 / rounds,
        wake_client_cpu_us: spent.process_cpu_seconds * 1e6 / rounds,
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn ping(conn: &mut MultiplexedConnection) -> Result<Latency> {
    let mut samples = histogram();
    for i in 0..SAMPLES + WARM_UP {
        let sent = Instant::now();
        redis::cmd("PING").query_async::<String>(conn).await?;
        if i >= WARM_UP {
            samples.saturating_record(sent.elapsed().as_nanos().max(1) as u64);
        }
    }
    Ok(Latency::of(&samples))
}

async fn wake(
    client: &redis::Client,
    conn: &mut MultiplexedConnection,
    prefix: &str,
) -> Result<Latency> {
    let source = format!("{prefix}:floor:src");
    let target = format!("{prefix}:floor:dst");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut blocking = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<u64>(1);
    let waiter = {
        let (source, target) = (source.clone(), target.clone());
        tokio::spawn(async move {
            for _ in 0..SAMPLES + WARM_UP {
                let payload: Option<String> = redis::cmd("BLMOVE")
                    .arg(&source)
                    .arg(&target)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(5.0)
                    .query_async(&mut blocking)
                    .await?;
                let now = now_ns();
                let sent: u64 = payload.ok_or("no push within 5 s")?.parse()?;
                if ready_tx.send(now.saturating_sub(sent)).await.is_err() {
                    break;
                }
            }
            Ok::<_, crate::BoxError>(())
        })
    };
    let mut samples = histogram();
    for i in 0..SAMPLES + WARM_UP {
        tokio::time::sleep(PAUSE).await;
        redis::cmd("RPUSH")
            .arg(&source)
            .arg(now_ns())
            .query_async::<()>(conn)
            .await?;
        let Some(latency) = ready.recv().await else {
            break;
        };
        if i >= WARM_UP {
            samples.saturating_record(latency.max(1));
        }
    }
    waiter.await??;
    redis::cmd("DEL")
        .arg(&source)
        .arg(&target)
        .query_async::<()>(conn)
        .await?;
    Ok(Latency::of(&samples))
}
