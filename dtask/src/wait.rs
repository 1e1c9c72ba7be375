//! Waiting for jobs without polling: a client's waiters share one pub/sub connection,
//! subscribed to the finished channel of each queue someone waits on (see
//! `broker/finished.rs`). A waiter notes its job as watched in Redis, reads the job's outcome
//! once, then sleeps until the outcome is published (it comes with the message: nothing more
//! to read) or its time is up. When the subscription breaks, every waiter reads its job's
//! outcome once more, so that a message missed meanwhile loses nothing; and every waiter reads
//! it once a minute anyway, should a notification have been lost on the way (a failed write).
//! When no subscription can be made (an ACL without `+subscribe`, Redis away), waits poll.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::backoff::RECONNECT;
use crate::broker::{Broker, FinishedFeed, JobOutcome};
use crate::error::Error;

/// What wakes a waiter.
#[derive(Debug)]
pub(crate) enum Wake {
    /// Its job's final outcome record.
    Outcome(String),
    /// The subscription broke and is back: read the outcome again.
    Reread,
}

type Waiting = HashMap<(String, String), Vec<oneshot::Sender<Wake>>>;

/// The waiters of one client, and the task that listens for them (started on the first wait).
pub(crate) struct Waiters {
    broker: Broker,
    waiting: Arc<Mutex<Waiting>>,
    listener: Mutex<Option<mpsc::UnboundedSender<Subscribe>>>,
}

/// A request to the listener: make sure the queue's channel is subscribed, then answer.
struct Subscribe {
    queue: String,
    done: oneshot::Sender<Result<(), Error>>,
}

impl Waiters {
    pub(crate) fn new(broker: Broker) -> Waiters {
        Waiters {
            broker,
            waiting: Arc::default(),
            listener: Mutex::new(None),
        }
    }

    /// Registers a waiter of job `id` of `queue`, once the queue's channel is subscribed: it
    /// is woken with the job's final outcome (or told to read again).
    pub(crate) async fn watch(
        &self,
        queue: &str,
        id: &str,
    ) -> Result<oneshot::Receiver<Wake>, Error> {
        let (wake, woken) = oneshot::channel();
        lock(&self.waiting)
            .entry((queue.to_owned(), id.to_owned()))
            .or_default()
            .push(wake);
        let (done, subscribed) = oneshot::channel();
        let request = Subscribe {
            queue: queue.to_owned(),
            done,
        };
        let sent = {
            let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
            let sender = listener.get_or_insert_with(|| {
                let (sender, requests) = mpsc::unbounded_channel();
                tokio::spawn(listen(self.broker.clone(), self.waiting.clone(), requests));
                sender
            });
            match sender.send(request) {
                Ok(()) => true,
                Err(_) => {
                    // The listener's runtime is gone (another runtime made this client):
                    // start a new one on the next wait.
                    *listener = None;
                    false
                }
            }
        };
        let answer = if sent {
            subscribed
                .await
                .unwrap_or_else(|_| Err(Error::Worker("the waiters' listener stopped".into())))
        } else {
            Err(Error::Worker("the waiters' listener stopped".into()))
        };
        answer.map(|()| woken)
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// Listens for the finished jobs of the queues waited on, until every sender of requests is
/// gone (the client was dropped).
async fn listen(
    broker: Broker,
    waiting: Arc<Mutex<Waiting>>,
    mut requests: mpsc::UnboundedReceiver<Subscribe>,
) {
    let mut feed: Option<FinishedFeed> = None;
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut attempt = 0;
    let mut failures = 0;
    // After a failure, no new subscription is tried until then: waits poll meanwhile.
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut ping = tokio::time::interval(crate::broker::FEED_PING);
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                let answer = if feed.is_none()
                    && retry_at.is_some_and(|at| at > tokio::time::Instant::now())
                {
                    Err(Error::Worker("the subscription to finished jobs is down".into()))
                } else {
                    // Bounded: a silent connection must not hold up every wait.
                    let subscribed_now = tokio::time::timeout(
                        SUBSCRIBE_TIMEOUT,
                        ensure_subscribed(&broker, &mut feed, &mut subscribed, &request.queue, &mut attempt),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Worker("subscribing to finished jobs timed out".into()))
                    });
                    match subscribed_now {
                        Ok(()) => {
                            failures = 0;
                            retry_at = None;
                            Ok(())
                        }
                        Err(error) => {
                            feed = None;
                            failures += 1;
                            retry_at = Some(tokio::time::Instant::now() + RECONNECT.delay(failures));
                            tracing::debug!(%error, "subscribing to finished jobs failed; waits poll meanwhile");
                            Err(error)
                        }
                    }
                };
                let _ = request.done.send(answer);
            }
            outcomes = next(&mut feed), if feed.is_some() => match outcomes {
                Some(outcomes) => deliver(&waiting, outcomes),
                None => {
                    tracing::warn!("the subscription to finished jobs closed; waiters read their jobs again");
                    feed = None;
                    wake_all(&waiting);
                }
            },
            _ = ping.tick() => {
                lock(&waiting).retain(|_, wakes| {
                    wakes.retain(|wake| !wake.is_closed());
                    !wakes.is_empty()
                });
                if let Some(connected) = feed.as_mut() {
                    let answered = tokio::time::timeout(crate::broker::FEED_PING, connected.ping()).await;
                    if !matches!(answered, Ok(Ok(()))) {
                        tracing::warn!("the subscription to finished jobs does not answer; waiters read their jobs again");
                        feed = None;
                        wake_all(&waiting);
                    }
                }
            }
        }
    }
}

async fn next(feed: &mut Option<FinishedFeed>) -> Option<Vec<JobOutcome>> {
    feed.as_mut()?.next().await
}

/// How long a subscription may take before the wait that asked for it polls instead.
pub(crate) const SUBSCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes sure `feed` is connected and subscribed to `queue`'s channel. Waiters woken when the
/// last subscription broke read their jobs again once subscribed: nothing published meanwhile
/// is missed.
async fn ensure_subscribed(
    broker: &Broker,
    feed: &mut Option<FinishedFeed>,
    subscribed: &mut HashSet<String>,
    queue: &str,
    attempt: &mut usize,
) -> Result<(), Error> {
    if feed.is_none() {
        *feed = Some(connect(broker, subscribed, attempt).await?);
    }
    let Some(connected) = feed.as_mut() else {
        return Err(Error::Worker("no subscription".into()));
    };
    if !subscribed.contains(queue) {
        connected.subscribe(queue).await?;
        subscribed.insert(queue.to_owned());
    }
    Ok(())
}

/// A subscription to the finished channels of `queues`.
async fn connect(
    broker: &Broker,
    queues: &HashSet<String>,
    attempt: &mut usize,
) -> Result<FinishedFeed, Error> {
    *attempt += 1;
    let mut feed = broker.finished_feed(*attempt).await?;
    for queue in queues {
        feed.subscribe(queue).await?;
    }
    Ok(feed)
}

/// Wakes the waiters of `outcomes` with them.
fn deliver(waiting: &Mutex<Waiting>, outcomes: Vec<JobOutcome>) {
    let mut waiting = lock(waiting);
    for outcome in outcomes {
        if let Some(wakes) = waiting.remove(&(outcome.queue, outcome.job_id)) {
            for wake in wakes {
                let _ = wake.send(Wake::Outcome(outcome.record.clone()));
            }
        }
    }
}

/// Tells every waiter to read its job's outcome again.
fn wake_all(waiting: &Mutex<Waiting>) {
    for (_, wakes) in lock(waiting).drain() {
        for wake in wakes {
            let _ = wake.send(Wake::Reread);
        }
    }
}
