//! Lifecycle events: what each job goes through (enqueued, started, progress, retrying,
//! succeeded, dead, cancelled, recovered), published on its queue's events channel as it
//! happens, and the stream a client follows them on ([`Client::events`]).
//!
//! Events travel over Redis publish/subscribe, which delivers at most once: a subscriber that
//! is away (its connection broke, or it read too slowly) misses what was published meanwhile,
//! and is told which window it may have missed ([`MissedEvents`]). Events are for watching; the
//! state kept in Redis is the truth (read it with [`JobHandle::status`](crate::JobHandle::status)).
//!
//! On the wire, a message holds one event per line, each a JSON object:
//! `{"e":"started","id":"..","t":"mail.send","at":1764485000000,"n":1,"w":"host-1234"}` (see
//! [`EventKind`] for each kind's fields).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::client::Client;
use crate::envelope::JobId;
use crate::error::Error;

/// The text that starts field `name` of a line after the first: `,"name":`.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// How far a job has come, as its handler told with [`progress`](crate::progress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Percent done, 0 to 100.
    #[serde(rename = "pct")]
    pub percent: u32,
    /// What the handler said about it (may be empty).
    #[serde(rename = "msg", default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Tells how far the running job has come: `percent` (0 to 100) and a word about it, e.g.
/// `dtask::progress(42, "resized 42 of 100")`. The job's `status()` shows the latest
/// ([`JobStatus::Running`](crate::JobStatus::Running)), and followers of its queue's
/// [`events`](Client::events) see each. Writes are coalesced (at most one per job every
/// 100 ms), so calling it in a tight loop costs little. Outside a task's handler (or in a
/// task the handler spawned: pass [`current`](crate::current)'s context along and call
/// [`JobContext::progress`](crate::JobContext::progress)) it does nothing.
///
/// ```
/// #[dtask::task]
/// async fn resize_all(ids: Vec<u64>) {
///     for (done, id) in ids.iter().enumerate() {
///         // ... resize `id` ...
///         let percent = (100 * (done + 1) / ids.len()) as u32;
///         dtask::progress(percent, format!("resized {} of {}", done + 1, ids.len()));
///     }
/// }
/// # fn main() {}
/// ```
pub fn progress(percent: u32, message: impl Into<String>) {
    if let Some(job) = crate::middleware::current() {
        job.progress(percent, message);
    }
}

/// One thing that happened to one job of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueEvent {
    /// The job's queue.
    pub queue: String,
    /// The job.
    pub job_id: JobId,
    /// Its task's registered name.
    pub task: String,
    /// When it happened (by the clock of the process that published it).
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The job was enqueued (`"e":"enqueued"`; `"due"`: when a delayed job is due, ms).
    Enqueued {
        /// When a delayed job is due; None for a job that may run at once.
        due_at: Option<SystemTime>,
    },
    /// An attempt started (`"e":"started"`, `"n"`: the attempt, from 1; `"w"`: the worker).
    Started {
        /// Which attempt, from 1.
        attempt: u32,
        /// The id of the worker running it.
        worker: String,
    },
    /// The running attempt told its progress (`"e":"progress"`, `"n"`, `"p"`).
    Progress {
        /// Which attempt.
        attempt: u32,
        /// How far it came.
        progress: Progress,
    },
    /// An attempt failed (or was put off) and another is scheduled (`"e":"retrying"`, `"n"`,
    /// `"err"`, `"due"`).
    Retrying {
        /// Attempts made so far.
        attempts: u32,
        /// The failed attempt's error.
        error: String,
        /// When the next attempt is due.
        next_attempt_at: SystemTime,
    },
    /// The job succeeded (`"e":"succeeded"`, `"n"`).
    Succeeded {
        /// Attempts made.
        attempts: u32,
    },
    /// The job will not run again: it ran out of attempts or could not run (`"e":"dead"`,
    /// `"n"`, `"err"`).
    Dead {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// The job was cancelled, before it ran or while it ran (`"e":"cancelled"`, `"n"`).
    Cancelled {
        /// Attempts made.
        attempts: u32,
    },
    /// The job was running on a worker that died (or stopped without finishing it) and went
    /// back to its queue, to run again (`"e":"recovered"`, `"w"`: that worker).
    Recovered {
        /// The worker it was taken back from.
        worker: String,
    },
}

/// An event as it travels: one line of a message.
#[derive(Debug, Default, Deserialize)]
struct Wire {
    e: String,
    id: String,
    #[serde(default)]
    t: String,
    #[serde(default)]
    at: u64,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    w: Option<String>,
    #[serde(default)]
    p: Option<Progress>,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    due: Option<u64>,
}

fn to_ms(at: SystemTime) -> u64 {
    crate::clock::to_ms(at)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl EventKind {
    /// This kind of event of job `id` of `task`, at `at_ms`, as a line of a message (JSON
    /// holds no raw newline).
    pub(crate) fn line(&self, id: &JobId, task: &str, at_ms: u64) -> String {
        let mut out = String::with_capacity(96 + id.as_str().len() + task.len());
        self.write_line(&mut out, id, task, at_ms);
        out
    }

    /// Appends [`EventKind::line`] to `out`.
    pub(crate) fn write_line(&self, out: &mut String, id: &JobId, task: &str, at_ms: u64) {
        if let EventKind::Started { attempt, worker } = self {
            return write_started(out, id, task, at_ms, *attempt, worker);
        }
        let mut line = Line::open(out, self.name(), id, task, at_ms);
        match self {
            EventKind::Enqueued { due_at } => {
                if let Some(due_at) = due_at {
                    line.number(key!("due"), to_ms(*due_at));
                }
            }
            EventKind::Started { .. } => {}
            EventKind::Progress { attempt, progress } => {
                line.number(key!("n"), u64::from(*attempt));
                line.out.push_str(",\"p\":{\"pct\":");
                push_digits(line.out, u64::from(progress.percent));
                if !progress.message.is_empty() {
                    line.text(key!("msg"), &progress.message);
                }
                line.out.push('}');
            }
            EventKind::Retrying {
                attempts,
                error,
                next_attempt_at,
            } => {
                line.number(key!("n"), u64::from(*attempts));
                line.text(key!("err"), error);
                line.number(key!("due"), to_ms(*next_attempt_at));
            }
            EventKind::Succeeded { attempts } | EventKind::Cancelled { attempts } => {
                line.number(key!("n"), u64::from(*attempts));
            }
            EventKind::Dead { attempts, error } => {
                line.number(key!("n"), u64::from(*attempts));
                line.text(key!("err"), error);
            }
            EventKind::Recovered { worker } => line.text(key!("w"), worker),
        }
        line.close();
    }

    /// The name of this kind on the wire.
    fn name(&self) -> &'static str {
        match self {
            EventKind::Enqueued { .. } => "enqueued",
            EventKind::Started { .. } => "started",
            EventKind::Progress { .. } => "progress",
            EventKind::Retrying { .. } => "retrying",
            EventKind::Succeeded { .. } => "succeeded",
            EventKind::Dead { .. } => "dead",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Recovered { .. } => "recovered",
        }
    }
}

/// Appends the line of [`EventKind::Started`] (attempt `attempt` of job `id` of `task` started
/// at `at_ms` on `worker`) to `out`, without building the kind: a worker writes one per run.
pub(crate) fn write_started(
    out: &mut String,
    id: &JobId,
    task: &str,
    at_ms: u64,
    attempt: u32,
    worker: &str,
) {
    let mut line = Line::open(out, "started", id, task, at_ms);
    line.number(key!("n"), u64::from(attempt));
    line.text(key!("w"), worker);
    line.close();
}

/// Appends the decimal digits of `value` to `out` (without the general formatter: a job's
/// events and its record are written with a few numbers each).
pub(crate) fn push_digits(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// A line of JSON being appended to `out`: an object, its fields added one by one. Written by
/// hand, in the order of [`Wire`]'s fields: a line is written per job and state, and a general
/// serializer cost more than the rest of the event.
struct Line<'a> {
    out: &'a mut String,
}

impl<'a> Line<'a> {
    /// Starts the line of an event of kind `name` of job `id` of `task`, at `at_ms`.
    fn open(out: &'a mut String, name: &str, id: &JobId, task: &str, at_ms: u64) -> Line<'a> {
        out.reserve(128 + id.as_str().len() + task.len());
        out.push_str("{\"e\":\"");
        out.push_str(name);
        out.push('"');
        let mut line = Line { out };
        line.text(key!("id"), id.as_str());
        line.text(key!("t"), task);
        line.number(key!("at"), at_ms);
        line
    }

    fn close(self) {
        self.out.push('}');
    }

    /// Field `key` (see [`key!`]) with the number `value`.
    fn number(&mut self, key: &str, value: u64) {
        self.out.push_str(key);
        push_digits(self.out, value);
    }

    /// Field `key` (see [`key!`]) with the string `value`; one that needs no escape (most do
    /// not) is copied as it is.
    fn text(&mut self, key: &str, value: &str) {
        self.out.push_str(key);
        // Without an early exit, so that the check runs over many bytes at once.
        let plain = !value.bytes().fold(false, |bad, b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if plain {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            let quoted = serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned());
            self.out.push_str(&quoted);
        }
    }
}

/// Adds `line` (an event) to the message of `queue` among `messages` (one per queue, lines
/// joined by newlines), starting it when there is none yet.
pub(crate) fn add_line<'a>(messages: &mut Vec<(&'a str, String)>, queue: &'a str, line: &str) {
    match messages.iter_mut().find(|(q, _)| *q == queue) {
        Some((_, lines)) => {
            lines.push('\n');
            lines.push_str(line);
        }
        None => messages.push((queue, line.to_owned())),
    }
}

/// The events of a message of `queue`'s channel; lines that are not events this version knows
/// (a newer publisher's kinds) are skipped.
pub(crate) fn parse(queue: &str, text: &str) -> Vec<QueueEvent> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Wire>(line).ok())
        .filter_map(|wire| {
            let n = wire.n.unwrap_or(0);
            let kind = match wire.e.as_str() {
                "enqueued" => EventKind::Enqueued {
                    due_at: wire.due.map(from_ms),
                },
                "started" => EventKind::Started {
                    attempt: n,
                    worker: wire.w.unwrap_or_default(),
                },
                "progress" => EventKind::Progress {
                    attempt: n,
                    progress: wire.p?,
                },
                "retrying" => EventKind::Retrying {
                    attempts: n,
                    error: wire.err.unwrap_or_default(),
                    next_attempt_at: from_ms(wire.due.unwrap_or(wire.at)),
                },
                "succeeded" => EventKind::Succeeded { attempts: n },
                "dead" => EventKind::Dead {
                    attempts: n,
                    error: wire.err.unwrap_or_default(),
                },
                "cancelled" => EventKind::Cancelled { attempts: n },
                "recovered" => EventKind::Recovered {
                    worker: wire.w.unwrap_or_default(),
                },
                _ => return None,
            };
            Some(QueueEvent {
                queue: queue.to_owned(),
                job_id: JobId::from(wire.id),
                task: wire.t,
                at: from_ms(wire.at),
                kind,
            })
        })
        .collect()
}

/// A window in which a subscriber may have missed events: its connection was broken (or it
/// read too slowly and events were dropped) from `from` to `to`. Read the state of the jobs
/// you follow again (`status()`): it is kept in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("events published between {from:?} and {to:?} may have been missed")]
pub struct MissedEvents {
    /// The last moment the subscriber was known to be receiving.
    pub from: SystemTime,
    /// When it was receiving again.
    pub to: SystemTime,
}

/// How many events wait for a slow reader before newer ones are dropped (and reported as
/// [`MissedEvents`]).
const BUFFERED: usize = 10_000;

/// The events of one queue, as they happen: a [`Stream`](futures_util::Stream) of events, or
/// of [`MissedEvents`] windows when the subscription broke and came back. From
/// [`Client::events`]; dropping it unsubscribes.
pub struct Events {
    receiver: mpsc::Receiver<Result<QueueEvent, MissedEvents>>,
    listener: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Events {
    /// The next event, or the next window that may have been missed; None never comes while
    /// the client's runtime runs (the subscription reconnects by itself).
    pub async fn next(&mut self) -> Option<Result<QueueEvent, MissedEvents>> {
        self.receiver.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Result<QueueEvent, MissedEvents>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Client {
    /// Follows the lifecycle events of `queue`'s jobs, from now on: subscribed when this
    /// returns. A subscription that breaks reconnects by itself and yields a [`MissedEvents`]
    /// window; pub/sub delivers at most once, so treat events as news and read a job's state
    /// with `status()` when it matters. A partitioned queue's stream carries every partition's
    /// events (each names its partition in `queue`).
    ///
    /// ```no_run
    /// # async fn demo(client: dtask::Client) -> Result<(), dtask::Error> {
    /// use dtask::EventKind;
    ///
    /// let mut events = client.events("default").await?;
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         Ok(event) => match event.kind {
    ///             EventKind::Progress { progress, .. } => {
    ///                 println!("{} is {}% done", event.job_id, progress.percent)
    ///             }
    ///             EventKind::Dead { error, .. } => println!("{} died: {error}", event.job_id),
    ///             _ => {}
    ///         },
    ///         Err(missed) => println!("{missed}; reading the jobs' state again"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn events(&self, queue: &str) -> Result<Events, Error> {
        crate::enqueue::check_queue_name(queue)?;
        let (sender, receiver) = mpsc::channel(BUFFERED);
        let Some(partitions) = self.partitions.members(queue) else {
            let feed = self.broker.event_feed(queue, 0).await?;
            let listener =
                tokio::spawn(listen(self.broker.clone(), queue.to_owned(), feed, sender));
            return Ok(Events { receiver, listener });
        };
        // A partitioned queue: every partition's events, on one stream.
        let mut listeners = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let feed = self.broker.event_feed(&partition, 0).await?;
            listeners.push(listen(self.broker.clone(), partition, feed, sender.clone()));
        }
        let listener = tokio::spawn(async move {
            futures_util::future::join_all(listeners).await;
        });
        Ok(Events { receiver, listener })
    }
}

/// Passes `queue`'s events on to `sender` until it is dropped, reconnecting when the
/// subscription breaks and telling which window may have been missed.
async fn listen(
    broker: Broker,
    queue: String,
    mut feed: crate::broker::EventFeed,
    sender: mpsc::Sender<Result<QueueEvent, MissedEvents>>,
) {
    let mut attempt = 0;
    // Events dropped for a slow reader: from when, until when.
    let mut dropped: Option<MissedEvents> = None;
    let mut quick_deaths = 0;
    loop {
        // Known to be receiving until then.
        let mut alive_at = SystemTime::now();
        let born = tokio::time::Instant::now();
        let mut ping = tokio::time::interval(crate::broker::FEED_PING);
        ping.reset();
        loop {
            tokio::select! {
                message = feed.next() => {
                    let Some(text) = message else { break };
                    alive_at = SystemTime::now();
                    for event in parse(&queue, &text) {
                        if !pass_on(&sender, Ok(event), &mut dropped) {
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(crate::broker::FEED_PING, feed.ping()).await {
                        Ok(Ok(())) => alive_at = SystemTime::now(),
                        _ => break,
                    }
                }
                // A window dropped for a slow reader is told once there is room, even when
                // no further event comes.
                _ = tokio::time::sleep(MISSED_RETRY), if dropped.is_some() => {
                    if !tell_missed(&sender, &mut dropped) {
                        return;
                    }
                }
                _ = sender.closed() => return,
            }
        }
        tracing::debug!(queue, "the events subscription broke; reconnecting");
        // A subscription that keeps breaking at once (a node that accepts and drops) is made
        // again with backoff, not in a loop.
        if born.elapsed() < crate::broker::FEED_PING {
            quick_deaths += 1;
            tokio::select! {
                _ = tokio::time::sleep(crate::backoff::RECONNECT.delay(quick_deaths)) => {}
                _ = sender.closed() => return,
            }
        } else {
            quick_deaths = 0;
        }
        let mut failures = 0;
        feed = loop {
            attempt += 1;
            match broker.event_feed(&queue, attempt).await {
                Ok(feed) => break feed,
                Err(error) => {
                    failures += 1;
                    if failures == 3 {
                        tracing::warn!(%error, queue, "cannot subscribe to job events; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(crate::backoff::RECONNECT.delay(failures)) => {}
                        _ = sender.closed() => return,
                    }
                }
            }
        };
        let missed = MissedEvents {
            from: alive_at,
            to: SystemTime::now(),
        };
        if !pass_on(&sender, Err(missed), &mut dropped) {
            return;
        }
    }
}

/// How often a dropped window is offered again to a reader that had no room.
const MISSED_RETRY: Duration = Duration::from_millis(100);

/// Hands the reader the window it missed, if it has room now; false once it is gone.
fn tell_missed(
    sender: &mpsc::Sender<Result<QueueEvent, MissedEvents>>,
    dropped: &mut Option<MissedEvents>,
) -> bool {
    if let Some(missed) = *dropped {
        match sender.try_send(Err(missed)) {
            Ok(()) => *dropped = None,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(_)) => {}
        }
    }
    true
}

/// Hands `item` to the reader, or drops it when the reader is too slow (noting the window);
/// false once the reader is gone.
fn pass_on(
    sender: &mpsc::Sender<Result<QueueEvent, MissedEvents>>,
    item: Result<QueueEvent, MissedEvents>,
    dropped: &mut Option<MissedEvents>,
) -> bool {
    if !tell_missed(sender, dropped) {
        return false;
    }
    let at = match &item {
        Ok(event) => event.at,
        Err(missed) => missed.to,
    };
    if dropped.is_some() {
        // Still catching up: this one goes into the window too.
        if let Some(missed) = dropped.as_mut() {
            missed.to = missed.to.max(at);
        }
        return !sender.is_closed();
    }
    match sender.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(item)) => {
            let from = match &item {
                Ok(event) => event.at,
                Err(missed) => missed.from,
            };
            *dropped = Some(MissedEvents { from, to: at });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_wire() {
        let id = JobId::from("job\nwith \"odd\" id");
        let at = from_ms(1_764_485_000_123);
        let kinds = [
            EventKind::Enqueued { due_at: None },
            EventKind::Enqueued {
                due_at: Some(from_ms(1_764_485_060_000)),
            },
            EventKind::Started {
                attempt: 1,
                worker: "host-1".into(),
            },
            EventKind::Progress {
                attempt: 1,
                progress: Progress {
                    percent: 42,
                    message: "resized 42 of 100\nnext".into(),
                },
            },
            EventKind::Retrying {
                attempts: 1,
                error: "timeout".into(),
                next_attempt_at: from_ms(1_764_485_001_000),
            },
            EventKind::Succeeded { attempts: 2 },
            EventKind::Dead {
                attempts: 3,
                error: "said \"no\" at C:\\tmp\n\tthen ✓ \u{1}".into(),
            },
            EventKind::Cancelled { attempts: 0 },
            EventKind::Recovered {
                worker: "host-2".into(),
            },
        ];
        let message: Vec<String> = kinds
            .iter()
            .map(|kind| kind.line(&id, "mail.send", to_ms(at)))
            .collect();
        let message = message.join("\n");
        assert_eq!(message.lines().count(), kinds.len(), "one line per event");
        let events = parse("emails", &message);
        assert_eq!(events.len(), kinds.len());
        for (event, kind) in events.iter().zip(kinds) {
            assert_eq!(event.kind, kind);
            assert_eq!(event.job_id, id);
            assert_eq!(
                (event.queue.as_str(), event.task.as_str()),
                ("emails", "mail.send")
            );
            assert_eq!(event.at, at);
        }
    }

    #[test]
    fn numbers_are_written_whole() {
        for value in [0, 7, 10, 1_764_485_001_000, u64::MAX] {
            let mut out = String::new();
            let mut line = Line { out: &mut out };
            line.number(key!("at"), value);
            assert_eq!(out, format!(",\"at\":{value}"));
        }
    }

    #[test]
    fn lines_appended_to_a_buffer_read_back_one_by_one() {
        let id = JobId::generate();
        let mut out = String::from("{\"e\":\"succeeded\",\"id\":\"x\",\"n\":1}\n");
        write_started(&mut out, &id, "mail.send", 5, 2, "host-1");
        let events = parse("q", &out);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].kind,
            EventKind::Started {
                attempt: 2,
                worker: "host-1".into()
            }
        );
        assert_eq!(events[1].job_id, id);
    }

    #[test]
    fn unknown_kinds_and_garbage_are_skipped() {
        let text = "{\"e\":\"teleported\",\"id\":\"a\"}\nnot json\n{\"e\":\"succeeded\",\"id\":\"b\",\"n\":1}";
        let events = parse("q", text);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Succeeded { attempts: 1 });
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_the_window_it_missed() {
        let (sender, mut receiver) = mpsc::channel(2);
        let mut dropped = None;
        let event = |ms: u64| {
            Ok(QueueEvent {
                queue: "q".into(),
                job_id: JobId::from("j"),
                task: "t".into(),
                at: from_ms(ms),
                kind: EventKind::Succeeded { attempts: 1 },
            })
        };
        for ms in 1..=5 {
            assert!(pass_on(&sender, event(ms), &mut dropped));
        }
        assert_eq!(receiver.recv().await.unwrap().unwrap().at, from_ms(1));
        assert_eq!(receiver.recv().await.unwrap().unwrap().at, from_ms(2));
        // Room again: the window goes first, then what comes next.
        assert!(pass_on(&sender, event(6), &mut dropped));
        assert_eq!(
            receiver.recv().await.unwrap(),
            Err(MissedEvents {
                from: from_ms(3),
                to: from_ms(5)
            })
        );
        assert_eq!(receiver.recv().await.unwrap().unwrap().at, from_ms(6));
        assert!(pass_on(&sender, event(7), &mut dropped));
        assert_eq!(receiver.recv().await.unwrap().unwrap().at, from_ms(7));
    }
}
