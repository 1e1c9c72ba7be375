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
    /// Running jobs: queue and id -> (run number, the token that stops the run).
    running: HashMap<(String, String), (u64, CancellationToken)>,
    /// Requests of the last [`CANCEL_KEPT`]: queue and id -> when asked (ms, server clock).
    asked: HashMap<(String, String), u64>,
    next_run: u64,
}

/// A run entered in the book; it leaves the book when dropped.
pub(crate) struct Entered<'a> {
    book: &'a CancelBook,
    key: (String, String),
    run: u64,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut book = self.book.lock();
        if book
            .running
            .get(&self.key)
            .is_some_and(|(run, _)| *run == self.run)
        {
            book.running.remove(&self.key);
        }
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
        queue: &str,
        id: &str,
        enqueued_at_ms: u64,
        stop: CancellationToken,
    ) -> Option<Entered<'_>> {
        let key = (queue.to_owned(), id.to_owned());
        let mut book = self.lock();
        if book.asked.get(&key).is_some_and(|at| *at >= enqueued_at_ms) {
            return None;
        }
        book.next_run += 1;
        let run = book.next_run;
        book.running.insert(key.clone(), (run, stop));
        Some(Entered {
            book: self,
            key,
            run,
        })
    }

    /// Notes `request`, and stops the job if it runs here; true when it did.
    pub(crate) fn apply(&self, request: CancelRequest) -> bool {
        let mut book = self.lock();
        let kept_from = request.at_ms.saturating_sub(CANCEL_KEPT.as_millis() as u64);
        book.asked.retain(|_, at| *at >= kept_from);
        let key = (request.queue, request.job_id);
        let stopped = match book.running.get(&key) {
            Some((_, stop)) => {
                stop.cancel();
                true
            }
            None => false,
        };
        book.asked.insert(key, request.at_ms);
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
        let entered = book.enter("q", "a", 1_000, stop.clone()).expect("may run");
        assert!(book.apply(request("a", 2_000)));
        assert!(stop.is_cancelled());
        drop(entered);
        assert!(
            book.enter("q", "a", 1_000, CancellationToken::new())
                .is_none()
        );
        // The same id enqueued again after the request runs; another queue's job too.
        assert!(
            book.enter("q", "a", 3_000, CancellationToken::new())
                .is_some()
        );
        assert!(
            book.enter("other", "a", 1_000, CancellationToken::new())
                .is_some()
        );
        // A request for a job not running here is only noted.
        assert!(!book.apply(request("b", 2_000)));
    }

    #[test]
    fn old_requests_are_forgotten() {
        let book = CancelBook::default();
        book.apply(request("a", 1_000));
        let much_later = 1_000 + CANCEL_KEPT.as_millis() as u64 + 1;
        book.apply(request("b", much_later));
        assert!(book.enter("q", "a", 0, CancellationToken::new()).is_some());
        assert!(book.enter("q", "b", 0, CancellationToken::new()).is_none());
    }
}
