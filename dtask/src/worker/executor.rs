//! The executor: runs one fetched job (inside the worker's middleware, with the job as
//! `dtask::current()`, bounded by the task's timeout) and settles it: acknowledged with its
//! result, scheduled for a retry, or buried in the dead set, each fenced by the run's lease (a run
//! whose job was taken back meanwhile changes nothing, its outcome included), then tells the
//! lifecycle hooks. A panic or a timeout is a failed attempt; a payload that cannot run at all is
//! buried with the reason; a job of a task this worker does not know, or whose state it lacks,
//! is put off for a while (a rolling deploy). Nothing here can stop the worker.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::acker::{Ack, Acked};
use super::catch_panic::{CatchPanic, panic_message};
use super::fetcher::Fetched;
use crate::admin::{CANCELLED_ERROR, CANCELLED_KEPT};
use crate::backoff::retry_until;
use crate::broker::{Admission, Burial, DeadOutcome, Fenced, Finished, Passing};
use crate::envelope::{
    self, DeadRecord, DecodeError, Envelope, JobId, OutcomeRecord, OutcomeState,
};
use crate::events::EventKind;
use crate::metrics::{self, Outcome};
use crate::middleware::{JobContext, JobEvent, in_job, run_chain};
use crate::registry::HandlerError;
use crate::trace::{self, Settled};
use crate::unique;
use crate::workflow::Follow;
use tracing::Instrument;

/// Awaits `future` from the heap, so that the caller's own state does not hold it. (Not
/// `Box::pin(future).await`: a temporary lives to the end of its statement, across the await,
/// so the caller's state kept room for the future as well as the box: the task of every job
/// was 2 KB instead of under 800 bytes, and glibc's malloc consolidates on every request
/// above 1 KB.)
macro_rules! boxed {
    ($future:expr) => {{
        let future = Box::pin($future);
        future.await
    }};
}

/// Runs a fetched job and settles it, then forgets it as held. When `abandon` fires (the
/// shutdown grace period is over) the job is left in flight, to be requeued by the worker.
pub(crate) async fn execute(
    ctx: &Context,
    job: Fetched,
    abandon: &CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    let Fetched {
        queue,
        lease,
        payload,
        admitted,
        suspect,
    } = job;
    let run = Run {
        ctx,
        queue: &queue,
        lease: &lease,
        abandon,
        admitted,
        slot: std::sync::Mutex::new(Some(slot)),
    };
    run_and_settle(&run, payload).await;
    if suspect {
        ctx.suspect_in_flight.store(false, Ordering::Release);
        ctx.wake_fetcher.notify_one();
    }
    if !abandon.is_cancelled() {
        ctx.held.release(&queue, &lease);
    }
}

/// The run being settled: where it is held, and how to tell it apart in logs.
struct Run<'a> {
    ctx: &'a Context,
    queue: &'a Arc<str>,
    lease: &'a str,
    abandon: &'a CancellationToken,
    /// Whether the fetch admitted it under its task's limits already.
    admitted: bool,
    /// The executor slot the run holds until it is settled (an acknowledgement takes it along:
    /// see [`Ack::slot`]).
    slot: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl Run<'_> {
    /// The run's executor slot, for its acknowledgement to hold.
    fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs a fetched job (`payload`) and settles it.
async fn run_and_settle(run: &Run<'_>, payload: Vec<u8>) {
    let (ctx, queue) = (run.ctx, run.queue);
    let envelope = match envelope::decode(&payload) {
        Ok(envelope) => envelope,
        Err(DecodeError::NewerVersion(version)) => {
            let reason = format!(
                "envelope version {version} is newer than this worker understands ({})",
                envelope::ENVELOPE_VERSION
            );
            let peek = envelope::peek(&payload);
            boxed!(run.defer_or_bury(&payload, peek, "newer-envelope", reason));
            return;
        }
        Err(reason) => {
            let record = DeadRecord {
                id: JobId::generate(),
                task: None,
                error: readable(reason.to_string()),
                attempts: 0,
                died_at_ms: ctx.settings.clock.now_ms(),
                job: None,
                raw: Some(String::from_utf8_lossy(&payload).into_owned()),
            };
            tracing::error!(queue = &**queue, dead_id = %record.id, error = %record.error, "buried a payload that is not a job");
            let dead = record.to_json();
            if boxed!(run.bury_record(&dead, None, None)).is_some_and(Fenced::held) {
                metrics::finished(queue, "", Outcome::Dead);
                ctx.fire(&JobEvent::Dead {
                    job: None,
                    error: &record.error,
                });
            }
            return;
        }
    };
    let span = trace::job_span(&envelope, queue, envelope.attempt + 1);
    let settled = boxed!(run_job(run, envelope, &payload).instrument(span.clone()));
    trace::record_outcome(&span, settled);
}

/// Runs a decoded job (in its `dtask.job` span) and settles it; how it ended.
async fn run_job(run: &Run<'_>, envelope: Envelope, payload: &[u8]) -> Settled {
    let ctx = run.ctx;
    let queue = run.queue;
    let abandon = run.abandon;
    let Some(entry) = ctx.registry.get(&envelope.task) else {
        let reason = format!(
            "unknown task `{}`: no task of that name is registered in this worker (it knows: {})",
            envelope.task,
            ctx.registry.names().join(", ")
        );
        let peek = peek_of(&envelope);
        return boxed!(run.defer_or_bury(payload, peek, &envelope.task, reason));
    };
    let handler = match (entry.handler)(envelope.args.get(), envelope.version, &ctx.states) {
        Ok(handler) => handler,
        Err(HandlerError::Arguments(reason)) => {
            let reason = readable(crate::registry::arguments_mismatch(&envelope.task, &reason));
            return boxed!(run.bury(envelope, reason));
        }
        Err(HandlerError::MissingState(reason)) => {
            // Routed here with `.queue(..)`: a worker that has the state may run it.
            let kind = format!("{} (state)", envelope.task);
            return boxed!(run.defer_or_bury(payload, peek_of(&envelope), &kind, reason));
        }
        Err(HandlerError::NewerArguments(reason)) => {
            // Enqueued by a newer deploy: a newer worker runs it (a rolling deploy).
            let kind = format!("{} (newer arguments)", envelope.task);
            return boxed!(run.defer_or_bury(payload, peek_of(&envelope), &kind, reason));
        }
    };

    // Stopped from outside (someone cancelled the job, see `cancels.rs`) or at the end of a
    // shutdown's grace period; a job cancelled since it was enqueued does not start (nor takes
    // a slot or a token of its task's limits).
    let stop = abandon.child_token();
    let Some(_entered) = ctx.cancels.enter(
        queue,
        envelope.id.as_str(),
        envelope.enqueued_at_ms,
        stop.clone(),
    ) else {
        let attempts = envelope.attempt;
        return boxed!(run.settle_cancelled(&envelope, attempts));
    };
    // A task with limits starts only when they let it; else its job waits in Redis.
    let _slot = match entry.info.limits() {
        Some(limits) => match boxed!(run.admit(&envelope, limits)) {
            Ok(slot) => slot,
            Err(settled) => return settled,
        },
        None => None,
    };
    if let Some((key, true)) = unique::lock_of(&envelope) {
        // Unique until it starts: duplicates may queue from now on.
        boxed!(run.release_lock(key, &envelope.id, Duration::ZERO));
    }
    let attempt = envelope.attempt + 1;
    let started = Instant::now();
    // A first attempt waited since its enqueue (a delayed job: its delay included); read
    // only when metrics are built in.
    let waited = (metrics::ENABLED && attempt == 1).then(|| {
        Duration::from_millis(
            ctx.settings
                .clock
                .now_ms()
                .saturating_sub(envelope.enqueued_at_ms),
        )
    });
    metrics::started(queue, waited);
    // The enqueuer's `.timeout(..)` for this job, else the task's.
    let timeout = crate::enqueue::timeout_of(&envelope.headers).or(entry.info.timeout);
    // Built for every run: the handler reads it with `dtask::current()`. Its token is the
    // run's own stop token, cancelled when the run is given up: at its timeout, when the job
    // is cancelled, or at the end of a shutdown's grace.
    let record_ttl = ctx.record_ttl(&envelope.task);
    let job = Arc::new(
        JobContext::of(&envelope, queue, attempt, stop.clone())
            .named(entry.info.name)
            .progress_to(ctx.progress_to(queue, record_ttl)),
    );
    run.started(&job);
    // The run itself, from the heap: its timers and its middleware's state are no part of
    // the job's task while it settles.
    let Some(outcome) = boxed!(run_handler(run, &job, handler, timeout, record_ttl, &stop)) else {
        // A progress event still waiting goes out before the run's last event.
        job.end_progress();
        metrics::stopped(queue, &envelope.task, started);
        if abandon.is_cancelled() {
            tracing::warn!(job_id = %envelope.id, task = %envelope.task, "abandoned at shutdown; it will be requeued");
            return Settled::Abandoned;
        }
        return boxed!(run.settle_cancelled(&envelope, attempt));
    };
    metrics::stopped(queue, &envelope.task, started);
    job.end_progress();
    let error = match outcome {
        Ok(value) => {
            let hooked_value = (!ctx.hooks.is_empty()).then(|| value.clone());
            // When it succeeded: in its record, its workflow's next step and its event.
            let succeeded_ms = ctx.settings.clock.now_ms();
            // What the job's workflow does next, written with the acknowledgement.
            let errand = Follow::of(&envelope)
                .map(|follow| follow.succeeded(&value, succeeded_ms).to_json());
            let keep_result = entry.info.result_ttl.is_none_or(|ttl| !ttl.is_zero());
            let outcome = keep_result.then(|| {
                (
                    envelope.id.to_string(),
                    OutcomeRecord::succeeded_json(attempt, succeeded_ms, &value),
                    entry.info.result_ttl,
                )
            });
            return match run.acknowledge(outcome, errand).await {
                Some(Acked::Held) => {
                    metrics::finished(queue, &envelope.task, Outcome::Succeeded);
                    if let Some((key, false)) = unique::lock_of(&envelope) {
                        // Its outcomes (a retrying one too) are kept up to the longer of the
                        // two TTLs: a name is free only once none can be read.
                        let kept = entry
                            .info
                            .result_ttl
                            .unwrap_or(ctx.settings.result_ttl)
                            .max(ctx.settings.result_ttl);
                        let keep = unique::kept_after_end(key, kept);
                        boxed!(run.release_lock(key, &envelope.id, keep));
                    }
                    tracing::info!(job_id = %envelope.id, task = %envelope.task, attempt, elapsed_ms = started.elapsed().as_millis() as u64, "job succeeded");
                    ctx.lines.push_event(
                        queue,
                        &envelope.id,
                        &envelope.task,
                        succeeded_ms,
                        &EventKind::Succeeded { attempts: attempt },
                    );
                    if let Some(value) = &hooked_value {
                        ctx.fire(&JobEvent::Succeeded {
                            job: &job,
                            result: value,
                        });
                    }
                    Settled::Succeeded
                }
                Some(Acked::Stale) => {
                    run.stale(&envelope, "succeeded");
                    Settled::Stale
                }
                // The acker stopped: the worker is going away, the job stays in flight.
                None => Settled::Abandoned,
            };
        }
        Err(error) => readable(error),
    };

    // Put off only when the error is the handler's `RetryAfter` (not a panic, a timeout or
    // another error after one was made), and not for ever.
    if let Some(delay) = job.requested_retry_after()
        && crate::RetryAfter::carried_by(&error)
        && put_offs(&envelope) < crate::RetryAfter::MAX_PUT_OFFS
    {
        let keep_outcome = entry.info.result_ttl != Some(Duration::ZERO);
        return boxed!(run.snooze(envelope, error, delay, &job, keep_outcome));
    }
    let retries = envelope.retries.unwrap_or(entry.info.retries);
    if attempt > retries {
        let envelope = Envelope {
            attempt,
            ..envelope
        };
        return boxed!(run.bury(envelope, error));
    }
    let delay = ctx.settings.retry_backoff.delay(attempt);
    let next = Envelope {
        attempt,
        last_error: Some(error.clone()),
        ..envelope
    };
    let due_ms = match boxed!(run.run_later(&next, delay, true, "failed")) {
        Ok(due_ms) => due_ms,
        Err(settled) => return settled,
    };
    metrics::finished(queue, &next.task, Outcome::Failed);
    tracing::warn!(job_id = %next.id, task = %next.task, attempt, elapsed_ms = started.elapsed().as_millis() as u64, %error, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
    let keep_outcome = entry.info.result_ttl != Some(Duration::ZERO);
    boxed!(run.note_retrying(
        &next,
        error,
        due_ms,
        &job,
        keep_outcome,
        "recording a failed attempt",
    ));
    Settled::Retrying
}

/// Runs `handler` as the run of `job`: inside the worker's middleware, as `dtask::current()`,
/// bounded by `timeout`, recorded as running (kept `record_ttl`) once it lasts; its outcome, or
/// None when `stop` fired first (the job was cancelled, or the shutdown's grace is over).
///
/// Written as one flat future (no future held in a local and then awaited or wrapped, no
/// `Box::pin(..).await` in one statement): each such step kept room for a second copy of what
/// it wraps, and this future was 2.3 KB per job instead of a few hundred bytes.
async fn run_handler(
    run: &Run<'_>,
    job: &Arc<JobContext>,
    handler: crate::registry::HandlerFuture,
    timeout: Option<Duration>,
    record_ttl: Option<Duration>,
    stop: &CancellationToken,
) -> Option<crate::middleware::RunOutcome> {
    let ctx = run.ctx;
    // The task's timeout bounds the whole run: its middleware too.
    let mut bounded = std::pin::pin!(within(timeout, async {
        if ctx.middleware.is_empty() {
            return handle(job.clone(), handler).await;
        }
        // A panicking middleware fails the attempt like a panicking task; a result it made up
        // must be JSON, as a task's is.
        let chain = Box::pin(run_chain(
            &ctx.middleware,
            job,
            handle(job.clone(), handler),
        ));
        CatchPanic::new(chain)
            .await
            .unwrap_or_else(|panic| {
                Err(format!(
                    "middleware panicked: {}",
                    panic_message(panic.as_ref())
                ))
            })
            .and_then(
                |value| match serde_json::from_str::<serde::de::IgnoredAny>(&value) {
                    Ok(_) => Ok(value),
                    Err(error) => Err(format!(
                        "a middleware returned a result that is not JSON ({error})"
                    )),
                },
            )
    }));
    let mut stopped = std::pin::pin!(stop.cancelled());
    // How the handler's end reads: past its timeout, a failed attempt (its token, the run's
    // stop token, is cancelled then, and nothing else reads it afterwards); an attempt that
    // failed once the run was stopped from outside (cancelled, or the shutdown's grace over)
    // is that stop, whichever of the two the poll saw first; any other outcome is kept.
    let ended = |outcome: Option<crate::middleware::RunOutcome>| match outcome {
        None => {
            stop.cancel();
            Some(Err(format!(
                "timed out after {:?}",
                timeout.unwrap_or_default()
            )))
        }
        Some(Err(_)) if stop.is_cancelled() => None,
        Some(outcome) => Some(outcome),
    };
    // A run that lasts is recorded as running (a quick one never is: it reads queued, then
    // its outcome); its progress, if it tells any, records it at once.
    if let Some(ttl) = record_ttl {
        tokio::select! {
            biased;
            outcome = &mut bounded => return ended(outcome),
            _ = &mut stopped => return None,
            _ = tokio::time::sleep(RUNNING_RECORD_AFTER) => run.still_running(job, ttl),
        }
    }
    tokio::select! {
        biased;
        outcome = &mut bounded => ended(outcome),
        _ = &mut stopped => None,
    }
}

/// Runs the task's `handler` as `dtask::current()` = `job`; a panic is a failed attempt.
async fn handle(
    job: Arc<JobContext>,
    handler: crate::registry::HandlerFuture,
) -> crate::middleware::RunOutcome {
    match in_job(job, CatchPanic::new(handler)).await {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    }
}

/// What [`Run::defer_or_bury`] needs to know of a decoded job.
fn peek_of(envelope: &Envelope) -> Option<envelope::Peek> {
    Some(envelope::Peek {
        id: Some(envelope.id.clone()),
        task: envelope.task.clone(),
        enqueued_at_ms: envelope.enqueued_at_ms,
    })
}

/// Held while a run of a task with `max_running` runs: when it ends, the slot it frees may
/// let a waiting job start, so the fetcher looks at once.
struct SlotHeld<'a>(&'a Context);

impl Drop for SlotHeld<'_> {
    fn drop(&mut self) {
        self.0.wake_fetcher.notify_one();
    }
}

impl<'a> Run<'a> {
    /// Asks Redis whether the task's `limits` let this run start: Ok (holding a slot when the
    /// task has `max_running`) when they do, else how the run ended: its job parked in the
    /// task's waiting set (no attempt spent), or taken back from this worker meanwhile.
    async fn admit(
        &self,
        envelope: &Envelope,
        limits: crate::broker::TaskLimits,
    ) -> Result<Option<SlotHeld<'a>>, Settled> {
        let ctx = self.ctx;
        let slot = limits.max_running.map(|_| SlotHeld(ctx));
        if self.admitted {
            return Ok(slot);
        }
        let admitted = retry_until(
            self.abandon,
            "admitting a job of a task with limits",
            || {
                ctx.broker.admit(
                    self.queue,
                    &ctx.worker_id,
                    self.lease,
                    &envelope.task,
                    envelope.enqueued_at_ms,
                    limits,
                )
            },
        )
        .await;
        match admitted {
            Some(Admission::Admitted) => Ok(slot),
            Some(Admission::Parked(wait)) => {
                // The fetcher learns from its next fetch when the waiting job may start.
                ctx.wake_fetcher.notify_one();
                metrics::finished(self.queue, &envelope.task, Outcome::Waiting);
                tracing::debug!(job_id = %envelope.id, task = %envelope.task, wait_ms = wait.map(|wait| wait.as_millis() as u64), "the task's limits hold the job back; it waits in Redis");
                Err(Settled::Waiting)
            }
            Some(Admission::NotHeld) => {
                self.stale(envelope, "was to start");
                Err(Settled::Stale)
            }
            None => Err(Settled::Abandoned),
        }
    }

    /// Writes `job`'s running record (kept `ttl`), for a run that outlasted
    /// [`RUNNING_RECORD_AFTER`].
    fn still_running(&self, job: &JobContext, ttl: Duration) {
        let record = OutcomeRecord::bare(OutcomeState::Running, job.attempt, job.started_ms);
        self.ctx.report_record(
            Passing::Running,
            &job.id,
            record.to_json(),
            job.attempt,
            ttl,
        );
    }

    /// Tells that the run of `job` started: its event.
    fn started(&self, job: &JobContext) {
        let ctx = self.ctx;
        ctx.announce_started(self.queue, &job.id, &job.task, job.attempt);
    }

    /// Acknowledges the run, storing `outcome` (job id, record, how long it is kept) and
    /// leaving `errand` (what its workflow does next) in the outbox, and
    /// waits until Redis has it: whether the run held its lease; None when the acker stopped
    /// (the worker is going away: the job stays in flight).
    async fn acknowledge(
        &self,
        outcome: Option<(String, String, Option<Duration>)>,
        errand: Option<String>,
    ) -> Option<Acked> {
        let (done, acked) = oneshot::channel();
        let told_workflow = errand.is_some();
        let job = Finished {
            queue: self.queue.clone(),
            lease: self.lease.to_owned(),
            outcome,
            errand,
        };
        let slot = self.take_slot();
        self.ctx.acks.send(Ack { job, done, slot })?;
        let acked = acked.await.ok();
        if told_workflow && acked == Some(Acked::Held) {
            // Its errand is in the outbox: the courier runs it now.
            self.ctx.wake_courier.notify_one();
        }
        acked
    }

    /// Settles a run of a job someone cancelled, after `attempts`: it leaves the in-flight
    /// hash, its outcome reads dead with [`CANCELLED_ERROR`] (so a caller waiting on it stops
    /// waiting), and its unique lock goes; it is not put in the dead set.
    async fn settle_cancelled(&self, envelope: &Envelope, attempts: u32) -> Settled {
        let ctx = self.ctx;
        let record = OutcomeRecord {
            state: OutcomeState::Dead,
            attempts,
            at_ms: ctx.settings.clock.now_ms(),
            value: None,
            error: Some(CANCELLED_ERROR.to_owned()),
            progress: None,
        };
        let outcome = (
            envelope.id.to_string(),
            record.to_json(),
            Some(CANCELLED_KEPT),
        );
        let errand = Follow::of(envelope).map(|follow| {
            follow
                .died(&envelope.id, &envelope.task, CANCELLED_ERROR)
                .to_json()
        });
        match self.acknowledge(Some(outcome), errand).await {
            Some(Acked::Held) => {
                metrics::finished(self.queue, &envelope.task, Outcome::Cancelled);
                if let Some((key, _)) = unique::lock_of(envelope) {
                    let keep = unique::kept_after_end(key, CANCELLED_KEPT);
                    self.release_lock(key, &envelope.id, keep).await;
                }
                tracing::info!(job_id = %envelope.id, task = %envelope.task, attempts, "job cancelled; it will not run again");
                ctx.announce(
                    self.queue,
                    &envelope.id,
                    &envelope.task,
                    &EventKind::Cancelled { attempts },
                );
                Settled::Cancelled
            }
            Some(Acked::Stale) => {
                self.stale(envelope, "was cancelled");
                Settled::Stale
            }
            None => Settled::Abandoned,
        }
    }

    /// Runs the job again after `delay` without spending an attempt, as its handler asked with
    /// `RetryAfter` (its `error`); records a retrying outcome when `keep_outcome`.
    async fn snooze(
        &self,
        envelope: Envelope,
        error: String,
        delay: Duration,
        job: &JobContext,
        keep_outcome: bool,
    ) -> Settled {
        // The job keeps its last real error; it counts its put-offs.
        let mut next = envelope;
        let count = put_offs(&next) + 1;
        next.headers
            .insert(PUT_OFFS_HEADER.to_owned(), count.to_string());
        let due_ms = match self
            .run_later(&next, delay, false, "asked to run later")
            .await
        {
            Ok(due_ms) => due_ms,
            Err(settled) => return settled,
        };
        metrics::finished(self.queue, &next.task, Outcome::PutOff);
        tracing::info!(job_id = %next.id, task = %next.task, put_offs = count, retry_in_ms = delay.as_millis() as u64, "job asked to run again later; no attempt spent");
        self.note_retrying(
            &next,
            error,
            due_ms,
            job,
            keep_outcome,
            "recording a job put off",
        )
        .await;
        Settled::Deferred
    }

    /// Moves the run to the retry set as `next`, due `delay` from now (a failed attempt when
    /// `failed`, not when it is put off): when it is due, or how the run ended instead, taken
    /// back from this worker (logged as a run that `how`) or abandoned at shutdown.
    async fn run_later(
        &self,
        next: &Envelope,
        delay: Duration,
        failed: bool,
        how: &str,
    ) -> Result<u64, Settled> {
        match self.retry(next.to_json().as_bytes(), delay, failed).await {
            Some(Fenced::Settled(due_ms)) => Ok(due_ms),
            // Scheduled by an earlier call whose reply was lost: about then.
            Some(Fenced::AlreadySettled) => Ok(self
                .ctx
                .settings
                .clock
                .now_ms()
                .saturating_add(delay.as_millis() as u64)),
            Some(Fenced::NotHeld) => {
                self.stale(next, how);
                Err(Settled::Stale)
            }
            None => Err(Settled::Abandoned),
        }
    }

    /// Tells the hooks that `next` runs again at `due_ms` after `error`, and records its
    /// retrying outcome when `keep_outcome` (a task that keeps no result keeps no passing
    /// outcome either: it would read "retrying" long after the job succeeded). The record is
    /// written after the job was rescheduled, so only by a run that held its lease; a final
    /// outcome written meanwhile by the next attempt is kept (see `set_retrying.lua`).
    async fn note_retrying(
        &self,
        next: &Envelope,
        error: String,
        due_ms: u64,
        job: &JobContext,
        keep_outcome: bool,
        what: &'static str,
    ) {
        let ctx = self.ctx;
        let next_attempt_at = std::time::UNIX_EPOCH + Duration::from_millis(due_ms);
        if keep_outcome {
            // The record first, then its event: whoever reacts to the event reads it.
            let record = OutcomeRecord {
                state: OutcomeState::Retrying,
                attempts: next.attempt,
                at_ms: due_ms,
                value: None,
                error: Some(error.clone()),
                progress: None,
            }
            .to_json();
            let ttl = ctx.settings.result_ttl;
            // Compared with the run's own attempt (a job put off keeps its attempt count, and
            // its running record says the run's): the record replaces this run's running one.
            retry_until(self.abandon, what, || {
                ctx.broker
                    .set_retrying(next.id.as_str(), job.attempt(), &record, ttl)
            })
            .await;
        }
        ctx.announce(
            self.queue,
            &next.id,
            &next.task,
            &EventKind::Retrying {
                attempts: next.attempt,
                error: error.clone(),
                next_attempt_at,
            },
        );
        if !ctx.hooks.is_empty() {
            ctx.fire(&JobEvent::Retrying {
                job,
                error: &error,
                next_attempt_at,
            });
        }
    }

    /// Logs that this run lost its lease before it settled: its job was recovered (this
    /// worker looked dead) and runs elsewhere, so this run's outcome is dropped.
    fn stale(&self, envelope: &Envelope, how: &str) {
        tracing::warn!(job_id = %envelope.id, task = %envelope.task, queue = &**self.queue, "a run {how} after its job was taken back from this worker (it looked dead); the outcome is dropped, the job runs elsewhere");
    }

    /// Moves the run to the retry set as `next_payload`, due `delay` from now, counted as a
    /// failed attempt when `failed` (not when a job is put off); None when the worker abandons
    /// it at shutdown.
    async fn retry(&self, next_payload: &[u8], delay: Duration, failed: bool) -> Option<Fenced> {
        let ctx = self.ctx;
        retry_until(self.abandon, "scheduling a retry", || {
            ctx.broker.retry(
                self.queue,
                &ctx.worker_id,
                self.lease,
                next_payload,
                delay,
                failed,
            )
        })
        .await
    }

    /// Moves the run to the dead set as `record`: what the fenced burial found, or None when
    /// the worker abandons it at shutdown.
    async fn bury_record(
        &self,
        record: &str,
        errand: Option<&str>,
        outcome: Option<DeadOutcome<'_>>,
    ) -> Option<Fenced> {
        let ctx = self.ctx;
        let fenced = retry_until(self.abandon, "burying a job", || {
            let burial = Burial {
                record,
                limits: ctx.settings.dead_limits,
                errand,
                outcome,
            };
            ctx.broker
                .bury(self.queue, &ctx.worker_id, self.lease, burial)
        })
        .await;
        if errand.is_some() && fenced.is_some_and(Fenced::held) {
            ctx.wake_courier.notify_one();
        }
        fenced
    }

    /// The outcome record of a job dead after `attempts` with `error`: written with its
    /// burial.
    fn dead_outcome(&self, attempts: u32, error: &str) -> String {
        OutcomeRecord {
            state: OutcomeState::Dead,
            attempts,
            at_ms: self.ctx.settings.clock.now_ms(),
            value: None,
            error: Some(error.to_owned()),
            progress: None,
        }
        .to_json()
    }

    /// Buries a job that will not run again, its death recorded under its result key in the
    /// same step.
    async fn bury(&self, envelope: Envelope, error: String) -> Settled {
        let died_at_ms = self.ctx.settings.clock.now_ms();
        let outcome_error = error.clone();
        let envelope = Envelope {
            last_error: Some(error.clone()),
            ..envelope
        };
        let record = DeadRecord {
            id: envelope.id.clone(),
            task: Some(envelope.task.clone()),
            error,
            attempts: envelope.attempt,
            died_at_ms,
            job: RawValue::from_string(envelope.to_json()).ok(),
            raw: None,
        }
        .to_json();
        // Only a job this run buried is dead: one recovered meanwhile runs elsewhere. The record
        // comes second, so that whoever sees the job dead also finds it in the dead set.
        let errand = Follow::of(&envelope).map(|follow| {
            follow
                .died(&envelope.id, &envelope.task, &outcome_error)
                .to_json()
        });
        let outcome = self.dead_outcome(envelope.attempt, &outcome_error);
        let dead = DeadOutcome {
            job_id: envelope.id.as_str(),
            record: &outcome,
            ttl: self.ctx.settings.result_ttl,
        };
        // A unique job's lock goes before its outcome reads dead (whoever sees it dead may
        // queue its like at once): its outcome is written after the lock is released.
        let lock = unique::lock_of(&envelope);
        let with_burial = lock.is_none().then_some(dead);
        match self
            .bury_record(&record, errand.as_deref(), with_burial)
            .await
        {
            Some(fenced) if fenced.held() => {}
            Some(_) => {
                self.stale(&envelope, "was buried");
                return Settled::Stale;
            }
            None => return Settled::Abandoned,
        }
        metrics::finished(self.queue, &envelope.task, Outcome::Dead);
        if let Some((key, _)) = lock {
            let keep = unique::kept_after_end(key, self.ctx.settings.result_ttl);
            self.release_lock(key, &envelope.id, keep).await;
            let ctx = self.ctx;
            retry_until(self.abandon, "recording a dead job", || {
                ctx.broker
                    .set_final(self.queue, dead.job_id, dead.record, dead.ttl)
            })
            .await;
        }
        if envelope.attempt == 0 {
            tracing::error!(job_id = %envelope.id, task = %envelope.task, error = %outcome_error, "job cannot run; moved it to the dead set");
        } else {
            tracing::error!(job_id = %envelope.id, task = %envelope.task, attempts = envelope.attempt, error = %outcome_error, "job failed on its last attempt; moved it to the dead set");
        }
        self.ctx.announce(
            self.queue,
            &envelope.id,
            &envelope.task,
            &EventKind::Dead {
                attempts: envelope.attempt,
                error: outcome_error.clone(),
            },
        );
        if !self.ctx.hooks.is_empty() {
            self.ctx.fire(&JobEvent::Dead {
                job: Some(&JobContext::of(
                    &envelope,
                    self.queue,
                    envelope.attempt,
                    CancellationToken::new(),
                )),
                error: &outcome_error,
            });
        }
        Settled::Dead
    }

    /// Releases the uniqueness lock `key` of job `id` (if the job still holds it), now or
    /// `keep` from now, so that a job like it may be queued again.
    async fn release_lock(&self, key: &str, id: &JobId, keep: Duration) {
        let ctx = self.ctx;
        retry_until(self.abandon, "releasing a unique job's lock", || {
            ctx.broker
                .release_unique(self.queue, key, id.as_str(), keep)
        })
        .await;
    }

    /// A job this worker cannot run yet (its task is unknown here, or its envelope is newer):
    /// during a rolling deploy a newer worker will run it, so it is put off with a growing
    /// delay, the same payload, until `unknown_job_grace` after it was enqueued; then it is
    /// buried with `reason`. Logged once per `kind` (task name).
    async fn defer_or_bury(
        &self,
        payload: &[u8],
        peek: Option<envelope::Peek>,
        kind: &str,
        reason: String,
    ) -> Settled {
        let ctx = self.ctx;
        let grace = ctx.settings.unknown_job_grace;
        // A job served from its task's waiting set was parked by a worker that knows the task
        // (a newer deploy), and may have waited there for long: it is put off, never buried.
        let waited = if self.admitted {
            Duration::ZERO
        } else {
            peek.as_ref().map_or(Duration::MAX, |peek| {
                Duration::from_millis(
                    ctx.settings
                        .clock
                        .now_ms()
                        .saturating_sub(peek.enqueued_at_ms),
                )
            })
        };
        if waited >= grace {
            let reason = readable(format!(
                "{reason}; no worker ran it within {grace:?} of its enqueueing"
            ));
            return match envelope::decode(payload) {
                Ok(envelope) => self.bury(envelope, reason).await,
                Err(_) => {
                    let id = peek.as_ref().and_then(|peek| peek.id.clone());
                    let record = DeadRecord {
                        id: id.clone().unwrap_or_else(JobId::generate),
                        task: peek.map(|peek| peek.task),
                        error: reason,
                        attempts: 0,
                        died_at_ms: ctx.settings.clock.now_ms(),
                        job: None,
                        raw: Some(String::from_utf8_lossy(payload).into_owned()),
                    };
                    tracing::error!(queue = &**self.queue, dead_id = %record.id, error = %record.error, "buried a job no worker could run");
                    let outcome = self.dead_outcome(0, &record.error);
                    let dead = id.as_ref().map(|id| DeadOutcome {
                        job_id: id.as_str(),
                        record: &outcome,
                        ttl: ctx.settings.result_ttl,
                    });
                    let fenced = self.bury_record(&record.to_json(), None, dead).await;
                    if fenced.is_some_and(Fenced::held) {
                        let task = record.task.as_deref().unwrap_or_default();
                        metrics::finished(self.queue, task, Outcome::Dead);
                        if let Some(id) = id {
                            ctx.announce(
                                self.queue,
                                &id,
                                task,
                                &EventKind::Dead {
                                    attempts: 0,
                                    error: record.error.clone(),
                                },
                            );
                        }
                        ctx.fire(&JobEvent::Dead {
                            job: None,
                            error: &record.error,
                        });
                        Settled::Dead
                    } else if fenced.is_none() {
                        Settled::Abandoned
                    } else {
                        Settled::Stale
                    }
                }
            };
        }
        // The wait is measured from the enqueue time the producer stamped (its clock): a
        // skewed producer clock shortens or lengthens the grace, never below one delay step.
        let step = (grace / 60).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let delay = (waited / 8).clamp(step, Duration::from_secs(60).max(step));
        if ctx.note_deferred(kind) {
            tracing::warn!(queue = &**self.queue, kind, %reason, grace = ?grace, "putting off jobs this worker cannot run (a rolling deploy?); they wait for a worker that can, until the grace period ends");
        }
        match self.retry(payload, delay, false).await {
            Some(Fenced::Settled(_) | Fenced::AlreadySettled) => Settled::Deferred,
            Some(Fenced::NotHeld) => Settled::Stale,
            None => Settled::Abandoned,
        }
    }
}

/// How long a run goes before its record says running: quick jobs (most) are never recorded
/// so, which spares a write per job.
const RUNNING_RECORD_AFTER: Duration = Duration::from_millis(100);

/// The header counting how many times in a row a job was put off with `RetryAfter`.
const PUT_OFFS_HEADER: &str = "dtask-put-offs";

/// How many times `envelope`'s job was put off.
fn put_offs(envelope: &Envelope) -> u32 {
    envelope
        .headers
        .get(PUT_OFFS_HEADER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The longest error message kept with a job, in characters.
const MAX_ERROR_CHARS: usize = 1000;

/// `message`, cut to [`MAX_ERROR_CHARS`] so that an error quoting a huge payload (a 10 MB
/// argument, say) stays readable and does not bloat the job, its result and the dead set.
fn readable(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        None => message,
        Some((cut, _)) => format!(
            "{}… ({} characters in all)",
            &message[..cut],
            message.chars().count()
        ),
    }
}

/// Awaits `running` for at most `limit`; `None` when the limit passed first.
async fn within<T>(limit: Option<Duration>, running: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, running).await.ok(),
        None => Some(running.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_at_a_character_boundary_and_say_how_long_they_were() {
        assert_eq!(readable("short".into()), "short");
        let long = "é".repeat(5000);
        let cut = readable(long);
        assert!(cut.starts_with(&"é".repeat(1000)));
        assert!(cut.ends_with("… (5000 characters in all)"), "{cut}");
    }
}
