//! The reporter: tells the world what this worker's jobs are doing, in batches and best effort.
//! It writes the passing records that `status()` reads (an attempt running, its progress, a
//! job gone back to its queue) and publishes the lifecycle events of each queue (one message
//! per queue per batch). Executors and the recoverer hand it reports and go on: nothing here
//! holds up a job, and a report Redis did not take is dropped (events are at most once; the
//! final outcomes, which are the truth, are written by the settling scripts, not here).
//! A burst of progress reports is coalesced: at most one write of a job's progress per
//! [`PROGRESS_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Passing, PassingNote};
use crate::envelope::{OutcomeRecord, OutcomeState};
use crate::events::{EventKind, Progress};
use crate::middleware::JobContext;

/// Most reports handled in one batch.
const MAX_BATCH: usize = 2048;

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
}

/// Where the latest progress of one run waits for the reporter.
pub(crate) type ProgressSlot = Arc<std::sync::Mutex<Option<Report>>>;

impl Report {
    fn is_progress(&self) -> bool {
        matches!(self, Report::Progress { .. } | Report::ProgressIn(_))
    }
}

/// Replaces each progress slot of `batch` with the report it holds (dropping emptied ones).
fn take_progress(batch: &mut Vec<Report>) {
    for report in batch.iter_mut() {
        let latest = match report {
            Report::ProgressIn(slot) => slot.lock().unwrap_or_else(|e| e.into_inner()).take(),
            _ => None,
        };
        if let Some(latest) = latest {
            *report = latest;
        }
    }
    batch.retain(|report| !matches!(report, Report::ProgressIn(_)));
}

/// Where executors, running handlers and the recoverer send reports.
pub(crate) type ReportSender = mpsc::UnboundedSender<Report>;

/// Batches reports into writes and messages.
pub(crate) struct Reporter {
    incoming: mpsc::UnboundedReceiver<Report>,
}

impl Reporter {
    /// A reporter and the sender that reaches it.
    pub(crate) fn new() -> (ReportSender, Reporter) {
        let (sender, incoming) = mpsc::unbounded_channel();
        (sender, Reporter { incoming })
    }

    /// Reports until `stop`, then flushes what is left.
    pub(crate) async fn run(mut self, broker: Broker, stop: CancellationToken) {
        let mut batch: Vec<Report> = Vec::new();
        let mut last_progress = tokio::time::Instant::now() - PROGRESS_EVERY;
        loop {
            let first = tokio::select! {
                biased;
                report = self.incoming.recv() => report,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else {
                while let Ok(report) = self.incoming.try_recv() {
                    batch.push(report);
                }
                take_progress(&mut batch);
                flush(&broker, &mut batch).await;
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
            take_progress(&mut batch);
            flush(&broker, &mut batch).await;
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

/// Writes the records of `batch`, then publishes its events (so that whoever reacts to an
/// event reads the record it announces); a failure is logged and the batch dropped.
async fn flush(broker: &Broker, batch: &mut Vec<Report>) {
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
            Report::ProgressIn(_) => continue,
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
        let waiting = self.latest.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Report::Progress {
            queue,
            line: Some(line),
            ..
        }) = waiting
        {
            let _ = self.sender.send(Report::Event { queue, line });
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
