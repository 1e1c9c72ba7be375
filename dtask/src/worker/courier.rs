//! The courier: runs the errands in the outboxes of the worker's queues, what the workflows of
//! jobs that ended do next (see `workflow/follow.rs`): enqueue a chain's next step, record a
//! group member's end (and enqueue the group's callback after its last member), mark the steps
//! of a failed workflow dead. Every worker's courier may run the same errand; each does its
//! work once (`lua/spawn.lua`, `lua/group_member.lua`), and an errand leaves its outbox only
//! once it ran, so a courier that dies midway loses nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::broker::{MemberEnded, Passing};
use crate::envelope::{JobId, OutcomeRecord, OutcomeState};
use crate::events::EventKind;
use crate::workflow::{Doomed, Errand};

/// Most errands run per queue per round.
const BATCH: usize = 100;

/// The longest the courier sleeps between looks (errands of jobs other workers ended, or left
/// by a courier that died).
const POLL: Duration = Duration::from_millis(500);

/// Runs errands until stopped.
pub(crate) struct Courier {
    ctx: Arc<Context>,
}

impl Courier {
    pub(crate) fn new(ctx: Arc<Context>) -> Courier {
        Courier { ctx }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        loop {
            let mut more = false;
            for queue in &self.ctx.settings.queues {
                match self.run_errands(queue).await {
                    Ok(full) => more |= full,
                    Err(error) => {
                        tracing::warn!(%error, queue, "running workflow errands failed; will retry")
                    }
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.ctx.wake_courier.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Runs up to [`BATCH`] errands of `queue`'s outbox; whether it was full (more may wait).
    async fn run_errands(&self, queue: &str) -> Result<bool, crate::Error> {
        let broker = &self.ctx.broker;
        let errands = broker.errands(queue, BATCH).await?;
        let full = errands.len() == BATCH;
        for text in errands {
            match serde_json::from_str::<Errand>(&text) {
                Ok(errand) => self.run_errand(errand).await?,
                Err(error) => {
                    tracing::error!(queue, %error, errand = %text, "a workflow errand does not read; dropped");
                }
            }
            broker.errand_done(queue, &text).await?;
        }
        Ok(full)
    }

    async fn run_errand(&self, errand: Errand) -> Result<(), crate::Error> {
        let ctx = &self.ctx;
        match errand {
            Errand::Spawn {
                queue,
                id,
                task,
                payload,
            } => {
                if ctx.broker.spawn(&queue, id.as_str(), &payload).await? {
                    self.enqueued(&queue, &id, &task).await;
                }
            }
            Errand::Member {
                queue,
                group,
                index,
                callback,
                task,
                value,
                error,
            } => {
                let result = match (&value, &error) {
                    (Some(value), _) => Ok(value.as_str()),
                    (None, Some(error)) => Err(error.as_str()),
                    (None, None) => Err("the member's result was lost"),
                };
                match ctx
                    .broker
                    .member_ended(&queue, &group, index, result)
                    .await?
                {
                    MemberEnded::CallbackQueued => self.enqueued(&queue, &callback, &task).await,
                    MemberEnded::Failed(doomed) => {
                        let doomed: Vec<Doomed> = serde_json::from_str(&doomed).unwrap_or_default();
                        let error = error.unwrap_or_default();
                        tracing::warn!(queue, group, %error, "a group failed: its callback will not run");
                        self.fail(&doomed, &error).await?;
                    }
                    MemberEnded::NoGroup => {
                        tracing::error!(
                            queue,
                            group,
                            index,
                            "a member of a group ended, and the group is gone (it expired): its callback will not run"
                        );
                    }
                    MemberEnded::Recorded | MemberEnded::Repeated => {}
                }
            }
            Errand::Fail { jobs, error } => self.fail(&jobs, &error).await?,
        }
        Ok(())
    }

    /// Tells that workflow step `id` (of `task`) was enqueued into `queue`: its record says
    /// queued (over its waiting one only), its event is published.
    async fn enqueued(&self, queue: &str, id: &JobId, task: &str) {
        let ctx = &self.ctx;
        if let Some(ttl) = ctx.record_ttl(task) {
            ctx.report_record(
                Passing::Ready,
                id,
                crate::envelope::QUEUED_MARKER.to_owned(),
                0,
                ttl,
            );
        }
        ctx.report_event(
            &Arc::from(queue),
            id,
            task,
            EventKind::Enqueued { due_at: None },
        );
        ctx.wake_fetcher.notify_one();
    }

    /// Marks `jobs` dead: an earlier job of their workflow failed with `error`.
    async fn fail(&self, jobs: &[Doomed], error: &str) -> Result<(), crate::Error> {
        let ctx = &self.ctx;
        for job in jobs {
            let record = OutcomeRecord {
                error: Some(error.to_owned()),
                ..OutcomeRecord::bare(OutcomeState::Dead, 0, ctx.settings.clock.now_ms())
            };
            let ttl = ctx.record_ttl(&job.task).unwrap_or(ctx.settings.result_ttl);
            ctx.broker
                .set_final(&job.queue, job.id.as_str(), &record.to_json(), ttl)
                .await?;
            ctx.report_event(
                &Arc::from(job.queue.as_str()),
                &job.id,
                &job.task,
                EventKind::Dead {
                    attempts: 0,
                    error: error.to_owned(),
                },
            );
        }
        Ok(())
    }
}
