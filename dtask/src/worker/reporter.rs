//! The reporter: tells the world what this worker's jobs are doing, in batches and best effort.
//! It writes the passing records that `status()` reads (an attempt running, its progress, a
//! job gone back to its queue) and publishes the lifecycle events of each queue (one message
//! per queue per batch). Executors and the recoverer hand it reports and go on: nothing here
//! holds up a job, and a report Redis did not take is dropped (events are at most once; the
//! final outcomes, which are the truth, are written by the settling scripts, not here).
//! A burst of progress reports is coalesced: at most one write of a job's progress per
//! [`PROGRESS_EVERY`].
//!
//! The events of runs (started, succeeded, retrying, dead, cancelled, progress) are written
//! straight into their queue's [`EventLines`], which the reporter takes whole: no message per
//! event. Events that go with a passing record (a job enqueued by a workflow, recovered) come
//! as reports, so that their record is written first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Passing, PassingNote};
use crate::envelope::JobId;
use crate::envelope::{OutcomeRecord, OutcomeState};
use crate::events::{EventKind, Progress};
use crate::middleware::JobContext;

/// Most reports handled in one batch.
const MAX_BATCH: usize = 2048;

/// The most room a queue's event buffer keeps between two messages (bytes).
const MAX_ROOM: usize = 256 << 10;

/// How often the progress of a job is written at most.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// One thing to tell.
#[derive(Debug)]
pub(crate) enum Report {
    /// A lifecycle event of `queue`: one line of its next message.
    Event { queue: Arc<str>, line: String },
    /// A passing record of a job (`attempts` counted by it), kept for `ttl`.
    Record {
        passing: Passing,
        job_id: String,
        record: String,
        attempts: u32,
        ttl: Duration,
    },
    /// A running job's progress: its record (when it keeps one) and its event (when its queue
    /// publishes events); a run's slot holds only its latest (see [`Report::ProgressIn`]).
    Progress {
        queue: Arc<str>,
        job_id: String,
        record: Option<(String, u32, Duration)>,
        line: Option<String>,
    },
    /// A run told its progress: its latest report waits in this slot (one per run, replaced
    /// by each later one, so that a tight loop of progress holds one report, not thousands).
    ProgressIn(ProgressSlot),
    /// Lines wait in the [`EventLines`] of a queue that had none.
    LinesWaiting,
}

/// Where the latest progress of one run waits for the reporter.
pub(crate) type ProgressSlot = Arc<std::sync::Mutex<Option<Report>>>;

impl Report {
    fn is_progress(&self) -> bool {
        matches!(self, Report::Progress { .. } | Report::ProgressIn(_))
    }
}

/// Replaces each progress slot of `batch` with the report it holds (dropping emptied ones);
/// its event line goes to its queue's `lines`, while the slot is held, so that it comes before
/// whatever the run tells afterwards (its end takes the slot first).
fn take_progress(batch: &mut Vec<Report>, lines: &EventLines) {
    for report in batch.iter_mut() {
        let latest = match report {
            Report::ProgressIn(slot) => {
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(Report::Progress { queue, line, .. }) = &mut *slot
                    && let Some(line) = line.take()
                {
                    lines.push_line(queue, &line);
                }
                slot.take()
            }
            _ => None,
        };
        if let Some(latest) = latest {
            *report = latest;
        }
    }
    batch.retain(|report| !matches!(report, Report::ProgressIn(_) | Report::LinesWaiting));
}

/// The event lines waiting to be published, one buffer per queue this worker serves that
/// publishes events: a run writes its line straight into its queue's buffer (no message per
/// event), and the reporter takes each buffer whole and publishes it as one message.
#[derive(Debug)]
pub(crate) struct EventLines {
    /// (foldhash: looked up by every event.)
    buffers: foldhash::HashMap<Arc<str>, Mutex<String>>,
    /// Queues whose events are off.
    quiet: foldhash::HashSet<String>,
    /// Wakes the reporter when a buffer gets its first line.
    wake: ReportSender,
}

impl EventLines {
    /// Buffers for `queues` (but those of `quiet`), waking the reporter through `wake`.
    pub(crate) fn new(queues: &[String], quiet: &HashSet<String>, wake: ReportSender) -> Self {
        let buffers = queues
            .iter()
            .filter(|queue| !quiet.contains(*queue))
            .map(|queue| (Arc::from(queue.as_str()), Mutex::new(String::new())))
            .collect();
        EventLines {
            buffers,
            quiet: quiet.iter().cloned().collect(),
            wake,
        }
    }

    /// Whether events of `queue` are published.
    pub(crate) fn publishes(&self, queue: &str) -> bool {
        !self.quiet.contains(queue)
    }

    /// Adds the line `write` appends to `queue`'s buffer. A queue this worker does not serve
    /// has none: its line goes as a report.
    pub(crate) fn push(&self, queue: &Arc<str>, write: impl FnOnce(&mut String)) {
        let Some(buffer) = self.buffers.get(&**queue) else {
            if self.publishes(queue) {
                let mut line = String::new();
                write(&mut line);
                let _ = self.wake.send(Report::Event {
                    queue: queue.clone(),
                    line,
                });
            }
            return;
        };
        let was_empty = {
            let mut lines = buffer.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = lines.is_empty();
            if !was_empty {
                lines.push('\n');
            }
            write(&mut lines);
            was_empty
        };
        if was_empty {
            let _ = self.wake.send(Report::LinesWaiting);
        }
    }

    /// Adds `line` to `queue`'s buffer.
    fn push_line(&self, queue: &Arc<str>, line: &str) {
        self.push(queue, |out| out.push_str(line));
    }

    /// Adds the line of `kind` of job `id` of `task`, at `at_ms`, to `queue`'s buffer.
    pub(crate) fn push_event(
        &self,
        queue: &Arc<str>,
        id: &JobId,
        task: &str,
        at_ms: u64,
        kind: &EventKind,
    ) {
        if self.publishes(queue) {
            self.push(queue, |out| kind.write_line(out, id, task, at_ms));
        }
    }

    /// Takes the lines of every queue that has some. A buffer starts again with room for
    /// twice as many as it held (not growing from nothing, a copy at each doubling).
    fn take(&self) -> Vec<(Arc<str>, String)> {
        self.buffers
            .iter()
            .filter_map(|(queue, buffer)| {
                let mut lines = buffer.lock().unwrap_or_else(|e| e.into_inner());
                let room = (2 * lines.len()).min(MAX_ROOM);
                (!lines.is_empty()).then(|| {
                    let taken = std::mem::replace(&mut *lines, String::with_capacity(room));
                    (queue.clone(), taken)
                })
            })
            .collect()
    }
}

/// Where executors, running handlers and the recoverer send reports.
pub(crate) type ReportSender = mpsc::UnboundedSender<Report>;

/// Batches reports into writes and messages.
pub(crate) struct Reporter {
    incoming: mpsc::UnboundedReceiver<Report>,
    lines: Arc<EventLines>,
}

impl Reporter {
    /// A reporter, the sender that reaches it, and the event buffers of `queues` (but those
    /// of `quiet`) it publishes.
    pub(crate) fn new(
        queues: &[String],
        quiet: &HashSet<String>,
    ) -> (ReportSender, Arc<EventLines>, Reporter) {
        let (sender, incoming) = mpsc::unbounded_channel();
        let lines = Arc::new(EventLines::new(queues, quiet, sender.clone()));
        let reporter = Reporter {
            incoming,
            lines: lines.clone(),
        };
        (sender, lines, reporter)
    }

    /// Reports until `stop`, then flushes what is left.
    pub(crate) async fn run(mut self, broker: Broker, stop: CancellationToken) {
        let mut batch: Vec<Report> = Vec::new();
        let mut last_progress = tokio::time::Instant::now() - PROGRESS_EVERY;
        // Set when lines may wait whose wake-up was taken with an earlier batch.
        let mut lines_waiting = false;
        loop {
            let first = if std::mem::take(&mut lines_waiting) {
                Some(Report::LinesWaiting)
            } else {
                tokio::select! {
                    biased;
                    report = self.incoming.recv() => report,
                    _ = stop.cancelled() => None,
                }
            };
            let Some(first) = first else {
                while let Ok(report) = self.incoming.try_recv() {
                    batch.push(report);
                }
                take_progress(&mut batch, &self.lines);
                let lines = self.lines.take();
                flush(&broker, &mut batch, lines).await;
                return;
            };
            batch.push(first);
            self.gather(&mut batch);
            // Progress alone waits for its turn (other reports go at once).
            if batch.iter().all(Report::is_progress) {
                let turn = last_progress + PROGRESS_EVERY;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(turn) => break,
                        report = self.incoming.recv() => match report {
                            Some(report) => {
                                let urgent = !report.is_progress();
                                batch.push(report);
                                if urgent {
                                    break;
                                }
                            }
                            None => break,
                        },
                        _ = stop.cancelled() => break,
                    }
                }
                self.gather(&mut batch);
            }
            if batch.iter().any(Report::is_progress) {
                last_progress = tokio::time::Instant::now();
            }
            take_progress(&mut batch, &self.lines);
            let lines = self.lines.take();
            // What was reported before these lines were taken (a record, an event that comes
            // first) goes out with them; lines written since wait for the next round.
            let taken = batch.len();
            self.gather(&mut batch);
            lines_waiting = batch[taken..]
                .iter()
                .any(|report| matches!(report, Report::LinesWaiting | Report::ProgressIn(_)));
            take_progress(&mut batch, &self.lines);
            flush(&broker, &mut batch, lines).await;
        }
    }

    /// Adds what is waiting already to `batch`, up to its size.
    fn gather(&mut self, batch: &mut Vec<Report>) {
        while batch.len() < MAX_BATCH {
            match self.incoming.try_recv() {
                Ok(report) => batch.push(report),
                Err(_) => break,
            }
        }
    }
}

/// Writes the records of `batch`, then publishes its events and the `lines` taken from the
/// queues' buffers (so that whoever reacts to an event reads the record it announces); a
/// failure is logged and the batch dropped.
async fn flush(broker: &Broker, batch: &mut Vec<Report>, mut lines: Vec<(Arc<str>, String)>) {
    let mut records: Vec<(Passing, Duration, Vec<PassingNote<'_>>)> = Vec::new();
    let mut events: Vec<(&str, String)> = Vec::new();
    for report in batch.iter() {
        let (record, line, queue) = match report {
            Report::Event { queue, line } => (None, Some(line), Some(&**queue)),
            Report::Record {
                passing,
                job_id,
                record,
                attempts,
                ttl,
            } => (
                Some((*passing, job_id.as_str(), record.as_str(), *attempts, *ttl)),
                None,
                None,
            ),
            Report::ProgressIn(_) | Report::LinesWaiting => continue,
            Report::Progress {
                queue,
                job_id,
                record,
                line,
            } => (
                record.as_ref().map(|(record, attempts, ttl)| {
                    (
                        Passing::Running,
                        job_id.as_str(),
                        record.as_str(),
                        *attempts,
                        *ttl,
                    )
                }),
                line.as_ref(),
                Some(&**queue),
            ),
        };
        if let Some((passing, job_id, record, attempts, ttl)) = record {
            let note = PassingNote {
                job_id,
                record,
                attempts,
            };
            match records
                .iter_mut()
                .find(|(p, t, _)| *p == passing && *t == ttl)
            {
                Some((_, _, notes)) => notes.push(note),
                None => records.push((passing, ttl, vec![note])),
            }
        }
        if let (Some(line), Some(queue)) = (line, queue) {
            crate::events::add_line(&mut events, queue, line);
        }
    }
    // A queue's buffer is its message (after the lines that came as reports, if any): moved,
    // not copied.
    for (queue, text) in lines.iter_mut() {
        match events.iter_mut().find(|(q, _)| *q == &**queue) {
            Some((_, message)) => {
                message.push('\n');
                message.push_str(text);
            }
            None => events.push((&**queue, std::mem::take(text))),
        }
    }
    let writes = records
        .iter()
        .map(|(passing, ttl, notes)| broker.set_passing(*passing, notes, *ttl));
    if let Err(error) = futures_util::future::try_join_all(writes).await {
        tracing::debug!(%error, "could not record where running jobs stand");
    }
    let publishes = events
        .iter()
        .map(|(queue, lines)| broker.publish_events(queue, lines));
    if let Err(error) = futures_util::future::try_join_all(publishes).await {
        tracing::debug!(%error, "could not publish job events");
    }
    drop(records);
    drop(events);
    batch.clear();
}

/// Where a running job's progress goes (see [`JobContext::progress`]).
#[derive(Clone, Debug)]
pub(crate) struct ProgressTo {
    pub(crate) sender: ReportSender,
    /// Where its event lines go.
    pub(crate) lines: Arc<EventLines>,
    pub(crate) queue: Arc<str>,
    /// How long the job's records are kept; None when its task keeps none.
    pub(crate) record_ttl: Option<Duration>,
    /// Whether its queue publishes events.
    pub(crate) publish: bool,
    /// The run's latest progress, until the reporter takes it.
    pub(crate) latest: ProgressSlot,
}

impl ProgressTo {
    /// The run ended: a progress report still waiting keeps its event but loses its record,
    /// which would otherwise land over the record of how the run ended (a put-off job would
    /// read running).
    pub(crate) fn end(&self) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Report::Progress {
            queue,
            line: Some(line),
            ..
        }) = latest.take()
        {
            self.lines.push_line(&queue, &line);
        }
    }

    /// Hands `job`'s progress to the reporter.
    pub(crate) fn tell(&self, job: &JobContext, percent: u32, message: String) {
        let progress = Progress { percent, message };
        let record = self.record_ttl.map(|ttl| {
            let record = OutcomeRecord {
                progress: Some(progress.clone()),
                ..OutcomeRecord::bare(OutcomeState::Running, job.attempt, job.started_ms)
            };
            (record.to_json(), job.attempt, ttl)
        });
        let line = self.publish.then(|| {
            EventKind::Progress {
                attempt: job.attempt,
                progress,
            }
            .line(&job.id, &job.task, crate::clock::now_ms())
        });
        let report = Report::Progress {
            queue: self.queue.clone(),
            job_id: job.id.to_string(),
            record,
            line,
        };
        let was_empty = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(report)
            .is_none();
        if was_empty {
            let _ = self.sender.send(Report::ProgressIn(self.latest.clone()));
        }
    }
}
