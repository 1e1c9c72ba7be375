//! The recoverer: finds workers whose heartbeat lapsed (killed, frozen, cut off) and returns
//! their in-flight jobs to the front of their queues.

use std::sync::Arc;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::clock;
use crate::envelope::{OutcomeRecord, OutcomeState};

/// Every `recovery_interval`, requeues the in-flight jobs of each lapsed worker.
pub(crate) struct Recoverer {
    ctx: Arc<Context>,
}

impl Recoverer {
    pub(crate) fn new(ctx: Arc<Context>) -> Recoverer {
        Recoverer { ctx }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let interval = self.ctx.settings.recovery_interval();
        loop {
            // Jitter spreads the checks of many workers over the interval.
            let pause = interval.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            for queue in &self.ctx.settings.queues {
                if let Err(error) = self.recover(queue).await {
                    tracing::warn!(%error, queue, "recovering orphaned jobs failed; will retry");
                }
            }
        }
    }

    async fn recover(&self, queue: &str) -> Result<(), crate::Error> {
        let ctx = &self.ctx;
        let lease = ctx.settings.lease.as_millis() as u64;
        let cutoff = ctx.broker.server_time_ms().await?.saturating_sub(lease);
        for worker in ctx.broker.lapsed_workers(queue, cutoff).await? {
            if worker == ctx.worker_id {
                continue;
            }
            let max_deaths = ctx.settings.max_worker_deaths;
            let Some(outcome) = ctx
                .broker
                .requeue_lapsed(queue, &worker, cutoff, max_deaths)
                .await?
            else {
                continue;
            };
            tracing::warn!(queue, lapsed_worker = %worker, requeued = outcome.requeued, "recovered the in-flight jobs of a worker whose heartbeat lapsed");
            ctx.wake_fetcher.notify_one();
            for job_id in outcome.buried {
                let error = format!("worker died {max_deaths} times while running this job");
                tracing::error!(queue, %job_id, %error, "buried a poison job");
                let record = OutcomeRecord {
                    state: OutcomeState::Dead,
                    attempts: max_deaths,
                    at_ms: clock::now_ms(),
                    value: None,
                    error: Some(error),
                }
                .to_json();
                ctx.broker
                    .set_result(&job_id, &record, ctx.settings.result_ttl)
                    .await?;
            }
        }
        Ok(())
    }
}
