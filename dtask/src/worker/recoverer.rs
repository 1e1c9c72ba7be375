//! The recoverer: finds workers whose heartbeat lapsed (killed, frozen, cut off) and returns
//! their in-flight jobs to their queues; and buries the jobs those recoveries set aside as
//! poison, with a dead record built here (Lua never reads a payload).

use std::sync::Arc;

use rand::Rng;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::envelope::{self, DeadRecord, JobId, OutcomeRecord, OutcomeState};
use crate::middleware::{JobContext, JobEvent};

/// Most poisoned jobs buried per queue per round.
const POISONED_PER_ROUND: usize = 100;

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
                if let Err(error) = self.bury_poisoned(queue).await {
                    tracing::warn!(%error, queue, "burying poison jobs failed; will retry");
                }
            }
        }
    }

    async fn recover(&self, queue: &str) -> Result<(), crate::Error> {
        let ctx = &self.ctx;
        let (cutoff, lapsed) = ctx.broker.lapsed_workers(queue, ctx.settings.lease).await?;
        // The others' heartbeats lapsed while this worker's own got through: they are dead or
        // cut off. Had this worker's beats failed too since then, the queue's Redis itself was
        // out of reach (a node failing over, a network cut): nobody could beat, and live
        // workers must not lose their jobs to it.
        match ctx.beats.unbroken_since(queue) {
            Some(since) if since <= cutoff => {}
            _ => {
                if !lapsed.is_empty() {
                    tracing::info!(
                        queue,
                        lapsed = lapsed.len(),
                        "heartbeats lapsed while this worker could not reach the queue's Redis either; waiting a lease before taking anyone for dead"
                    );
                }
                return Ok(());
            }
        }
        for worker in lapsed {
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
            crate::metrics::recovered(queue, outcome.requeued);
            tracing::warn!(queue, lapsed_worker = %worker, requeued = outcome.requeued, poisoned = outcome.poisoned, "recovered the in-flight jobs of a worker whose heartbeat lapsed");
            ctx.report_back(queue, &worker, &outcome.payloads);
            ctx.wake_fetcher.notify_one();
        }
        Ok(())
    }

    /// Buries the jobs of `queue` that recoveries set aside as poison: each with a dead record
    /// and, when it is a job, a dead outcome under its result key.
    async fn bury_poisoned(&self, queue: &str) -> Result<(), crate::Error> {
        let ctx = &self.ctx;
        let deaths = ctx.settings.max_worker_deaths;
        for payload in ctx.broker.poisoned(queue, POISONED_PER_ROUND).await? {
            let error = format!("worker died {deaths} times while running this job");
            let died_at_ms = ctx.settings.clock.now_ms();
            let envelope = envelope::decode(&payload).ok();
            let attempts = envelope.as_ref().map_or(0, |e| e.attempt) + deaths;
            let record = DeadRecord {
                id: envelope
                    .as_ref()
                    .map_or_else(JobId::generate, |e| e.id.clone()),
                task: envelope.as_ref().map(|e| e.task.clone()),
                error: error.clone(),
                attempts,
                died_at_ms,
                job: envelope
                    .as_ref()
                    .and_then(|e| RawValue::from_string(e.to_json()).ok()),
                raw: envelope
                    .is_none()
                    .then(|| String::from_utf8_lossy(&payload).into_owned()),
            };
            let errand = envelope.as_ref().and_then(|envelope| {
                let follow = crate::workflow::Follow::of(envelope)?;
                Some(follow.died(&envelope.id, &envelope.task, &error).to_json())
            });
            let buried = ctx
                .broker
                .bury_poisoned(
                    queue,
                    &payload,
                    &record.to_json(),
                    ctx.settings.dead_limits,
                    errand.as_deref(),
                )
                .await?;
            if errand.is_some() && buried.is_some() {
                ctx.wake_courier.notify_one();
            }
            if buried.is_none() {
                continue; // another recoverer buried it
            }
            tracing::error!(queue, job_id = %record.id, %error, "buried a poison job");
            // A unique job's lock goes with it, as with any death.
            if let Some((key, _)) = envelope.as_ref().and_then(crate::unique::lock_of) {
                let keep = crate::unique::kept_after_end(key, ctx.settings.result_ttl);
                ctx.broker
                    .release_unique(queue, key, record.id.as_str(), keep)
                    .await?;
            }
            if let Some(envelope) = &envelope {
                ctx.report_event(
                    &Arc::from(queue),
                    &envelope.id,
                    &envelope.task,
                    crate::events::EventKind::Dead {
                        attempts,
                        error: error.clone(),
                    },
                );
            }
            if !ctx.hooks.is_empty() {
                let job = envelope.as_ref().map(|envelope| {
                    JobContext::of(
                        envelope,
                        &Arc::from(queue),
                        attempts,
                        CancellationToken::new(),
                    )
                });
                ctx.fire(&JobEvent::Dead {
                    job: job.as_ref(),
                    error: &error,
                });
            }
            if envelope.is_some() {
                let outcome = OutcomeRecord {
                    state: OutcomeState::Dead,
                    attempts,
                    at_ms: died_at_ms,
                    value: None,
                    error: Some(error),
                    progress: None,
                }
                .to_json();
                ctx.broker
                    .set_final(queue, record.id.as_str(), &outcome, ctx.settings.result_ttl)
                    .await?;
            }
        }
        Ok(())
    }
}
