//! The acker: acknowledges finished jobs in batches. Under load, many jobs finish between two
//! round trips to Redis; the acker settles all of them (and stores their outcomes) in one script
//! per queue instead of one round trip each. When the worker is idle, a lone acknowledgement
//! goes out at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::backoff::retry_until;
use crate::broker::Finished;

/// Most acknowledgements sent in one round trip.
const MAX_BATCH: usize = 512;

/// One finished run to acknowledge, and who to tell once Redis took it.
pub(crate) struct Ack {
    pub(crate) job: Finished,
    pub(crate) done: oneshot::Sender<Acked>,
}

/// What became of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// The run held its lease: acknowledged, its outcome stored.
    Held,
    /// The run was stale (its job had been taken back): nothing changed.
    Stale,
    /// Found settled on a repeated try, after an earlier try's reply was lost: acknowledged by
    /// that try, or stale; Redis cannot tell which any more.
    Unsure,
}

/// Where executors send acknowledgements.
pub(crate) type AckSender = mpsc::UnboundedSender<Ack>;

/// Batches acknowledgements from executors into pipelines.
pub(crate) struct Acker {
    incoming: mpsc::UnboundedReceiver<Ack>,
}

impl Acker {
    /// An acker and the sender executors use to reach it.
    pub(crate) fn new() -> (AckSender, Acker) {
        let (sender, incoming) = mpsc::unbounded_channel();
        (sender, Acker { incoming })
    }

    /// Acknowledges until `stop`, then flushes what is left. A batch that fails is retried with
    /// backoff until Redis takes it or `abandon` fires (its jobs then stay in flight and are
    /// requeued, so they run again: never lost).
    pub(crate) async fn run(
        mut self,
        ctx: &Context,
        stop: CancellationToken,
        abandon: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut settled = Settled::new();
        loop {
            let first = tokio::select! {
                biased;
                ack = self.incoming.recv() => ack,
                _ = stop.cancelled() => None,
            };
            match first {
                Some(ack) => batch.push(ack),
                None => {
                    while let Ok(ack) = self.incoming.try_recv() {
                        batch.push(ack);
                    }
                    if !batch.is_empty() {
                        flush(ctx, &mut batch, &mut settled, &abandon).await;
                    }
                    return;
                }
            }
            while batch.len() < MAX_BATCH {
                match self.incoming.try_recv() {
                    Ok(ack) => batch.push(ack),
                    Err(_) => break,
                }
            }
            flush(ctx, &mut batch, &mut settled, &abandon).await;
        }
    }
}

/// The leases of the last acknowledged batch, by queue: their settled markers are removed with
/// the next batch.
type Settled = Vec<(Arc<str>, Vec<String>)>;

async fn flush(
    ctx: &Context,
    batch: &mut Vec<Ack>,
    settled: &mut Settled,
    abandon: &CancellationToken,
) {
    let jobs: Vec<&Finished> = batch.iter().map(|ack| &ack.job).collect();
    let ttl = ctx.settings.result_ttl;
    let tries = std::sync::atomic::AtomicU32::new(0);
    let held = retry_until(abandon, "acknowledging jobs", || {
        tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.broker.ack(&ctx.worker_id, &jobs, settled, ttl)
    })
    .await;
    drop(jobs);
    match held {
        Some(held) => {
            // The markers of this batch's queues were removed with it; this batch's own stay
            // until the next batch of their queue.
            let marks = ctx.broker.acks_leave_markers();
            if marks {
                settled.retain(|(queue, _)| !batch.iter().any(|ack| ack.job.queue == *queue));
            }
            for (ack, held) in batch.drain(..).zip(held) {
                if held && marks {
                    match settled.iter_mut().find(|(q, _)| *q == ack.job.queue) {
                        Some((_, leases)) => leases.push(ack.job.lease.clone()),
                        None => settled.push((ack.job.queue.clone(), vec![ack.job.lease.clone()])),
                    }
                }
                let acked = match (held, tries.load(std::sync::atomic::Ordering::Relaxed)) {
                    (true, _) => Acked::Held,
                    (false, 1) => Acked::Stale,
                    (false, _) => Acked::Unsure,
                };
                let _ = ack.done.send(acked);
            }
        }
        // Abandoned at shutdown: unsettled jobs stay in flight and are requeued, so they run
        // again (never lost); settled ones are not.
        None => batch.clear(),
    }
}
