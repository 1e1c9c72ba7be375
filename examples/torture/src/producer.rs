//! The producer: enqueues [`work`](crate::tasks::work) jobs at a steady rate in a task of its
//! own, and remembers exactly which enqueues returned `Ok`. A batch whose enqueue failed is not
//! counted (its ids are never used again); the producer pauses a little and goes on. It also
//! publishes its last successful enqueue, so that a scenario can tell when enqueueing works
//! again after a fault.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tasks;

/// What to enqueue and how fast.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// The queue the jobs go to.
    pub queue: String,
    /// Jobs per second.
    pub rate: f64,
    /// The most jobs per enqueue (one round trip).
    pub batch: usize,
    /// How long each job sleeps, in ms, chosen at random.
    pub millis: RangeInclusive<u64>,
    /// The first job id.
    pub first_id: u64,
}

/// What the producer did.
#[derive(Debug, Default)]
pub struct ProducerReport {
    /// Ids of the jobs whose enqueue returned `Ok`.
    pub enqueued: Vec<u64>,
    /// Enqueue calls that failed.
    pub failed_calls: u64,
    /// Jobs in failed calls (not counted as enqueued).
    pub failed_jobs: u64,
    /// The longest an enqueue call took.
    pub slowest_call: Duration,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// The next unused id.
    pub next_id: u64,
}

/// The last enqueue call that returned `Ok`: when it was sent, and when it returned.
type LastOk = Option<(Instant, Instant)>;

/// A running producer.
pub struct Producer {
    stop: watch::Sender<bool>,
    last_ok: watch::Receiver<LastOk>,
    task: JoinHandle<ProducerReport>,
}

impl Producer {
    /// Starts enqueueing through `client`.
    pub fn start(client: dtask::Client, config: ProducerConfig) -> Producer {
        let (stop, stopped) = watch::channel(false);
        let (ok_tx, last_ok) = watch::channel(None);
        let task = tokio::spawn(produce(client, config, stopped, ok_tx));
        Producer {
            stop,
            last_ok,
            task,
        }
    }

    /// Waits until an enqueue call sent at or after `since` has returned `Ok`: how long after
    /// `since` it returned. None if none did within `timeout` of `since`.
    pub async fn resumed(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        let mut last_ok = self.last_ok.clone();
        let deadline = tokio::time::Instant::from_std(since + timeout);
        let seen = tokio::time::timeout_at(
            deadline,
            last_ok.wait_for(|ok| ok.is_some_and(|(sent, _)| sent >= since)),
        )
        .await;
        match seen {
            Ok(Ok(ok)) => ok.map(|(_, returned)| returned.saturating_duration_since(since)),
            _ => None,
        }
    }

    /// Stops the producer now and returns what it did.
    pub async fn stop(self) -> ProducerReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn produce(
    client: dtask::Client,
    config: ProducerConfig,
    mut stopped: watch::Receiver<bool>,
    last_ok: watch::Sender<LastOk>,
) -> ProducerReport {
    let mut report = ProducerReport {
        next_id: config.first_id,
        ..ProducerReport::default()
    };
    let started = Instant::now();
    // Jobs sent, whether or not their enqueue succeeded: the pace does not make up for outages.
    let mut sent: u64 = 0;
    loop {
        if *stopped.borrow() {
            break;
        }
        let due = (started.elapsed().as_secs_f64() * config.rate) as u64;
        let wanted = due.saturating_sub(sent).min(config.batch as u64);
        if wanted == 0 {
            tokio::select! {
                _ = stopped.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            continue;
        }
        let items: Vec<(u64, u64)> = {
            let mut rng = rand::rng();
            (0..wanted)
                .map(|i| (report.next_id + i, rng.random_range(config.millis.clone())))
                .collect()
        };
        report.next_id += wanted;
        sent += wanted;
        let call = Instant::now();
        let result = tasks::work::with()
            .client(&client)
            .queue(config.queue.clone())
            .enqueue_many(items.clone())
            .await;
        report.slowest_call = report.slowest_call.max(call.elapsed());
        match result {
            Ok(_) => {
                report.enqueued.extend(items.iter().map(|(id, _)| *id));
                last_ok.send_replace(Some((call, Instant::now())));
            }
            Err(error) => {
                report.failed_calls += 1;
                report.failed_jobs += wanted;
                report.first_error.get_or_insert_with(|| error.to_string());
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    report
}

/// Enqueues `count` jobs with ids from `first_id` into `queue` at once, `batch` per round
/// trip; returns the ids whose enqueue returned `Ok`, and the first error.
pub async fn enqueue_now(
    client: &dtask::Client,
    queue: &str,
    first_id: u64,
    count: u64,
    millis: RangeInclusive<u64>,
) -> (Vec<u64>, Option<String>) {
    let mut enqueued = Vec::new();
    let mut first_error = None;
    let mut next = first_id;
    let end = first_id + count;
    while next < end {
        let items: Vec<(u64, u64)> = {
            let mut rng = rand::rng();
            (next..end.min(next + 100))
                .map(|id| (id, rng.random_range(millis.clone())))
                .collect()
        };
        next += items.len() as u64;
        match tasks::work::with()
            .client(client)
            .queue(queue)
            .enqueue_many(items.clone())
            .await
        {
            Ok(_) => enqueued.extend(items.iter().map(|(id, _)| *id)),
            Err(error) => {
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    (enqueued, first_error)
}
