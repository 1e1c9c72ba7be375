//! The forwarder: moves delayed and retry jobs to their queue when they fall due, on the Redis
//! server's clock (a worker whose clock is off runs nothing early or late).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;

/// Most jobs moved from one set per script run, so that one run never blocks Redis for long.
const BATCH: usize = 1000;
/// The longest the forwarder sleeps, so that jobs scheduled by other processes are seen.
const POLL: Duration = Duration::from_millis(500);

/// How often a worker built with metrics reads its queues' depths.
const DEPTHS_EVERY: Duration = Duration::from_secs(5);

/// Forwards due jobs, sleeping until the earliest known due time (at most [`POLL`]).
pub(crate) struct Forwarder {
    ctx: Arc<Context>,
}

impl Forwarder {
    pub(crate) fn new(ctx: Arc<Context>) -> Forwarder {
        Forwarder { ctx }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut depths_read: Option<tokio::time::Instant> = None;
        loop {
            if crate::metrics::ENABLED && depths_read.is_none_or(|at| at.elapsed() >= DEPTHS_EVERY)
            {
                depths_read = Some(tokio::time::Instant::now());
                self.report_depths().await;
            }
            let mut pause = POLL;
            for queue in &self.ctx.settings.queues {
                match self.ctx.broker.forward_due(queue, BATCH).await {
                    Ok(forwarded) => {
                        if forwarded.moved > 0 {
                            tracing::debug!(queue, moved = forwarded.moved, "forwarded due jobs");
                        }
                        if forwarded.moved >= BATCH as u64 {
                            pause = Duration::ZERO;
                        }
                        if let Some(due_in) = forwarded.next_due_in {
                            pause = pause.min(due_in);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, queue, "forwarding due jobs failed; will retry");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Reports how many jobs each queue holds in each state (feature `metrics`).
    async fn report_depths(&self) {
        let broker = &self.ctx.broker;
        for queue in &self.ctx.settings.queues {
            let depths = async {
                Ok::<_, crate::Error>([
                    (
                        "pending",
                        broker.pending_len(queue).await? + broker.suspects_len(queue).await?,
                    ),
                    ("scheduled", broker.scheduled_len(queue).await?),
                    ("retry", broker.retry_len(queue).await?),
                    ("dead", broker.dead_len(queue).await?),
                ])
            };
            match depths.await {
                Ok(depths) => {
                    for (state, jobs) in depths {
                        crate::metrics::depth(queue, state, jobs);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, queue, "reading queue depths for metrics failed")
                }
            }
        }
    }
}
