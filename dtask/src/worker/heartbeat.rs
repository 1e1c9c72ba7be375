//! The heartbeat: tells every queue this worker serves that it is alive, so that its in-flight
//! jobs are not taken for orphans.
//!
//! It runs on an OS thread of its own, with its own small runtime and its own connection to
//! Redis: a handler that blocks its thread or burns CPU (`std::thread::sleep`, a tight loop, a
//! synchronous library call) can starve every task of the worker's runtime, timers included,
//! but not this. A live process is never taken for dead, however its handlers behave.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::RECONNECT;
use crate::broker::Broker;
use crate::error::Error;

/// What the heartbeat needs to know.
pub(crate) struct Heartbeat {
    broker: Broker,
    queues: Vec<String>,
    worker_id: String,
    interval: Duration,
}

impl Heartbeat {
    /// A heartbeat for `worker_id` on `queues` every `interval`, through `broker`'s Redis (on a
    /// connection of its own).
    pub(crate) fn new(
        broker: Broker,
        queues: Vec<String>,
        worker_id: String,
        interval: Duration,
    ) -> Heartbeat {
        Heartbeat {
            broker,
            queues,
            worker_id,
            interval,
        }
    }

    /// Starts beating on a thread of its own until `stop`; join the handle to wait for the
    /// last beat to end.
    pub(crate) fn spawn(self, stop: CancellationToken) -> Result<JoinHandle<()>, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Worker(format!("cannot start the heartbeat's runtime: {e}")))?;
        std::thread::Builder::new()
            .name("dtask-heartbeat".into())
            .spawn(move || runtime.block_on(self.run(stop)))
            .map_err(|e| Error::Worker(format!("cannot start the heartbeat thread: {e}")))
    }

    async fn run(self, stop: CancellationToken) {
        // Its connection is made here, on this thread's runtime, so that its I/O never waits
        // for the worker's runtime.
        let mut conn: Option<Broker> = None;
        let mut failures = 0;
        loop {
            let beat = async {
                if conn.is_none() {
                    conn = Some(self.broker.dedicated().await?);
                }
                let broker = conn.as_ref().expect("connected just above");
                broker.heartbeat(&self.queues, &self.worker_id).await
            };
            let pause = match tokio::time::timeout(self.interval.max(Duration::from_secs(1)), beat)
                .await
            {
                Ok(Ok(())) => {
                    failures = 0;
                    self.interval
                }
                outcome => {
                    failures += 1;
                    match outcome {
                        Ok(Err(error)) => tracing::warn!(%error, "heartbeat failed; reconnecting"),
                        _ => tracing::warn!("heartbeat got no answer in time; reconnecting"),
                    }
                    // A failed beat drops its connection: the next one is made anew.
                    conn = None;
                    RECONNECT.delay(failures).min(self.interval)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
