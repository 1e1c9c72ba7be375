//! Stopping running jobs on request: the worker's book of the jobs it runs (by id) and of the
//! recent requests to stop jobs, and the listener that fills it from the queues' cancel
//! channels (Redis pub/sub). A message missed while the subscription was down is found in the
//! queues' cancelled sets when it is made again; a job asked to stop that starts again later
//! (it went back to its queue) is stopped before it runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::backoff::RECONNECT;
use crate::broker::{CANCEL_KEPT, CancelRequest};

/// How often the subscription is checked for life: a connection that went silent (a dead
/// peer, a dropped route) is replaced within this plus [`PING_TIMEOUT`].
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a check may wait for its answer.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The jobs this worker runs, by id, and the recent requests to stop jobs.
#[derive(Default)]
pub(crate) struct CancelBook {
    inner: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// Running jobs, by run number (a job run twice at once here has two entries).
    /// (foldhash: entered and left by every run.)
    running: foldhash::HashMap<u64, RunningJob>,
    /// Requests of the last [`CANCEL_KEPT`]: queue and id -> when asked (ms, server clock).
    asked: HashMap<(String, String), u64>,
    next_run: u64,
}

/// A job running here, and the token that stops its run.
struct RunningJob {
    queue: Arc<str>,
    id: String,
    stop: CancellationToken,
}

/// A run entered in the book; it leaves the book when dropped.
pub(crate) struct Entered<'a> {
    book: &'a CancelBook,
    run: u64,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.book.lock().running.remove(&self.run);
    }
}

impl CancelBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters a run of job `id` of `queue`, enqueued at `enqueued_at_ms`, stopped by `stop`;
    /// None when the job was asked to stop after it was enqueued (it must not run).
    pub(crate) fn enter(
        &self,
        queue: &Arc<str>,
        id: &str,
        enqueued_at_ms: u64,
        stop: CancellationToken,
    ) -> Option<Entered<'_>> {
        let mut book = self.lock();
        // Requests are rare: most runs find none to look through.
        if !book.asked.is_empty() {
            let key = (queue.to_string(), id.to_owned());
            if book.asked.get(&key).is_some_and(|at| *at >= enqueued_at_ms) {
                return None;
            }
        }
        book.next_run += 1;
        let run = book.next_run;
        book.running.insert(
            run,
            RunningJob {
                queue: queue.clone(),
                id: id.to_owned(),
                stop,
            },
        );
        Some(Entered { book: self, run })
    }

    /// Notes `request`, and stops the job if it runs here; true when it did.
    pub(crate) fn apply(&self, request: CancelRequest) -> bool {
        let mut book = self.lock();
        let kept_from = request.at_ms.saturating_sub(CANCEL_KEPT.as_millis() as u64);
        book.asked.retain(|_, at| *at >= kept_from);
        // A look through every run (no more than the worker's concurrency), for a request
        // that comes seldom, spares each run a second key.
        let mut stopped = false;
        for running in book.running.values() {
            if *running.queue == *request.queue && running.id == request.job_id {
                running.stop.cancel();
                stopped = true;
            }
        }
        book.asked
            .insert((request.queue, request.job_id), request.at_ms);
        stopped
    }
}

/// Listens for requests to stop jobs of the worker's queues until `stop`, reconnecting with
/// backoff; each (re)subscription first reads the requests it may have missed (again at every
/// ping while that read fails). `caught_up` is cancelled once the first read succeeded.
pub(crate) async fn listen(
    ctx: Arc<Context>,
    stop: CancellationToken,
    caught_up: CancellationToken,
) {
    let queues = ctx.settings.queues.clone();
    let mut failures: u32 = 0;
    let mut attempt = 0;
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            subscribed = ctx.broker.cancel_feed(&queues, attempt) => subscribed,
        };
        attempt += 1;
        match subscribed {
            Ok(mut feed) => {
                // Subscribed first, then read: a request is in one or the other (or both).
                let mut read = catch_up(&ctx, &queues, &stop).await;
                if read {
                    failures = 0;
                    caught_up.cancel();
                }
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        request = feed.next() => match request {
                            Some(request) => apply(&ctx, request),
                            None => {
                                tracing::warn!("the subscription to requests to stop jobs closed; reconnecting");
                                break;
                            }
                        },
                        _ = ping.tick() => {
                            let answered = tokio::time::timeout(PING_TIMEOUT, feed.ping()).await;
                            if !matches!(answered, Ok(Ok(()))) {
                                tracing::warn!("the subscription to requests to stop jobs does not answer; reconnecting");
                                break;
                            }
                            if !read {
                                read = catch_up(&ctx, &queues, &stop).await;
                                if read {
                                    caught_up.cancel();
                                }
                            }
                        }
                    }
                }
                if !read {
                    failures += 1;
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "subscribing to requests to stop jobs failed; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT.delay(failures.max(1))) => {}
        }
    }
}

/// Reads the requests kept (the last day) for every queue; true when every read succeeded.
async fn catch_up(ctx: &Context, queues: &[String], stop: &CancellationToken) -> bool {
    let mut read = true;
    for queue in queues {
        let missed = tokio::select! {
            _ = stop.cancelled() => return false,
            missed = ctx.broker.recent_cancels(queue) => missed,
        };
        match missed {
            Ok(requests) => requests.into_iter().for_each(|request| apply(ctx, request)),
            Err(error) => {
                tracing::warn!(%error, queue, "reading requests to stop jobs failed");
                read = false;
            }
        }
    }
    read
}

fn apply(ctx: &Context, request: CancelRequest) {
    let job_id = request.job_id.clone();
    if ctx.cancels.apply(request) {
        tracing::info!(job_id, "asked to stop a running job; stopping it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, at_ms: u64) -> CancelRequest {
        CancelRequest {
            queue: "q".into(),
            job_id: id.into(),
            at_ms,
        }
    }

    #[test]
    fn a_request_stops_the_run_and_later_runs_of_a_job_enqueued_before_it() {
        let book = CancelBook::default();
        let stop = CancellationToken::new();
        let entered = book
            .enter(&"q".into(), "a", 1_000, stop.clone())
            .expect("may run");
        assert!(book.apply(request("a", 2_000)));
        assert!(stop.is_cancelled());
        drop(entered);
        assert!(
            book.enter(&"q".into(), "a", 1_000, CancellationToken::new())
                .is_none()
        );
        // The same id enqueued again after the request runs; another queue's job too.
        assert!(
            book.enter(&"q".into(), "a", 3_000, CancellationToken::new())
                .is_some()
        );
        assert!(
            book.enter(&"other".into(), "a", 1_000, CancellationToken::new())
                .is_some()
        );
        // A request for a job not running here is only noted.
        assert!(!book.apply(request("b", 2_000)));
    }

    #[test]
    fn a_job_run_twice_at_once_is_stopped_in_both_runs() {
        let book = CancelBook::default();
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        let queue: Arc<str> = "q".into();
        let entered = book.enter(&queue, "a", 1_000, first.clone());
        let again = book.enter(&queue, "a", 1_000, second.clone());
        drop(entered);
        let other = CancellationToken::new();
        let _other = book.enter(&"other".into(), "a", 1_000, other.clone());
        assert!(book.apply(request("a", 2_000)));
        assert!(second.is_cancelled(), "the run still here is stopped");
        assert!(
            !other.is_cancelled(),
            "a job of that id in another queue runs on"
        );
        drop(again);
        assert!(!book.apply(request("a", 3_000)), "no run of it is left");
    }

    #[test]
    fn old_requests_are_forgotten() {
        let book = CancelBook::default();
        book.apply(request("a", 1_000));
        let much_later = 1_000 + CANCEL_KEPT.as_millis() as u64 + 1;
        book.apply(request("b", much_later));
        assert!(
            book.enter(&"q".into(), "a", 0, CancellationToken::new())
                .is_some()
        );
        assert!(
            book.enter(&"q".into(), "b", 0, CancellationToken::new())
                .is_none()
        );
    }
}
