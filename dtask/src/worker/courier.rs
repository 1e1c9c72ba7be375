//! The courier: runs the errands in the outboxes of the worker's queues, what the workflows of
//! jobs that ended do next (see `workflow/follow.rs`): enqueue a chain's next step, record a
//! group member's end (and enqueue the group's callback after its last member), mark the steps
//! of a failed workflow dead. A courier takes a batch of errands into its worker's hand
//! (`lua/claim_errands.lua`), runs them, then forgets them; a worker that dies with errands in
//! hand has them returned to the outbox with its jobs, and an errand run twice (its worker
//! died after running it) does its work once (`lua/spawn.lua`, `lua/group_member.lua`).

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

/// A step to enqueue: its id, its task, its payload.
type NextStep = (JobId, String, String);

/// The members of one group that ended, as the errands of a batch tell.
struct Member {
    callback: JobId,
    task: String,
    /// Index, result (JSON), error.
    ended: Vec<(u32, Option<String>, Option<String>)>,
}

impl Member {
    fn new(callback: JobId, task: String) -> Member {
        Member {
            callback,
            task,
            ended: Vec::new(),
        }
    }
}

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

    /// Runs up to [`BATCH`] errands of `queue`'s outbox, alike ones together (the steps bound
    /// for one queue in one script, the members of one group in one script), then removes them
    /// from the outbox; whether it was full (more may wait).
    async fn run_errands(&self, queue: &str) -> Result<bool, crate::Error> {
        let broker = &self.ctx.broker;
        let worker = &self.ctx.worker_id;
        let texts = broker.claim_errands(queue, worker, BATCH).await?;
        let full = texts.len() == BATCH;
        let mut spawns: Vec<(String, Vec<NextStep>)> = Vec::new();
        let mut members: Vec<(String, String, Member)> = Vec::new();
        let mut fails = Vec::new();
        for text in &texts {
            match serde_json::from_str::<Errand>(text) {
                Ok(Errand::Spawn {
                    queue,
                    id,
                    task,
                    payload,
                }) => match spawns.iter_mut().find(|(q, _)| *q == queue) {
                    Some((_, steps)) => steps.push((id, task, payload)),
                    None => spawns.push((queue, vec![(id, task, payload)])),
                },
                Ok(Errand::Member {
                    queue,
                    group,
                    index,
                    callback,
                    task,
                    value,
                    error,
                }) => {
                    let position = members
                        .iter()
                        .position(|(q, g, _)| *q == queue && *g == group);
                    let member = match position {
                        Some(at) => &mut members[at].2,
                        None => {
                            members.push((queue, group, Member::new(callback, task)));
                            &mut members.last_mut().expect("just pushed").2
                        }
                    };
                    member.ended.push((index, value, error));
                }
                Ok(Errand::Fail { jobs, error }) => fails.push((jobs, error)),
                Err(error) => {
                    tracing::error!(queue, %error, errand = %text, "a workflow errand does not read; dropped");
                }
            }
        }
        for (target, steps) in spawns {
            let ids: Vec<(&str, &str)> = steps
                .iter()
                .map(|(id, _, payload)| (id.as_str(), payload.as_str()))
                .collect();
            let spawned = broker.spawn(&target, &ids).await?;
            for ((id, task, _), now) in steps.iter().zip(spawned) {
                if now {
                    self.enqueued(&target, id, task);
                }
            }
        }
        for (target, group, member) in members {
            let ended: Vec<(u32, Result<&str, &str>)> = member
                .ended
                .iter()
                .map(|(index, value, error)| {
                    let result = match (value, error) {
                        (Some(value), _) => Ok(value.as_str()),
                        (None, Some(error)) => Err(error.as_str()),
                        (None, None) => Err("the member's result was lost"),
                    };
                    (*index, result)
                })
                .collect();
            match broker.members_ended(&target, &group, &ended).await? {
                MemberEnded::CallbackQueued => {
                    self.enqueued(&target, &member.callback, &member.task)
                }
                MemberEnded::Failed(doomed) => {
                    let doomed: Vec<Doomed> = serde_json::from_str(&doomed).unwrap_or_default();
                    let error = member
                        .ended
                        .iter()
                        .find_map(|(_, _, error)| error.clone())
                        .unwrap_or_default();
                    let error = if error.is_empty() {
                        "a member of its group failed".to_owned()
                    } else {
                        error
                    };
                    tracing::warn!(queue = target, group, %error, "a group failed: its callback will not run");
                    self.fail(&doomed, &error).await?;
                    broker.group_failure_told(&target, &group).await?;
                }
                MemberEnded::NoGroup => {
                    tracing::error!(
                        queue = target,
                        group,
                        "members of a group ended, and the group is gone (it expired): its callback will not run"
                    );
                }
                MemberEnded::Recorded => {}
            }
        }
        for (jobs, error) in fails {
            self.fail(&jobs, &error).await?;
        }
        broker.errands_done(queue, worker).await?;
        Ok(full)
    }

    /// Tells that workflow step `id` (of `task`) was enqueued into `queue`: its record says
    /// queued (over its waiting one only), its event is published.
    fn enqueued(&self, queue: &str, id: &JobId, task: &str) {
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
