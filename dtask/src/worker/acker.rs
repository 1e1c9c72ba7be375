//! The acker: acknowledges finished jobs in batches. Under load, many jobs finish between two
//! round trips to Redis; the acker settles all of them (and stores their outcomes) in one script
//! per queue instead of one round trip each. When the worker is idle, a lone acknowledgement
//! goes out at once.

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
        let mut batches = 0u64;
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
                        flush(ctx, &mut batch, &mut batches, &abandon).await;
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
            flush(ctx, &mut batch, &mut batches, &abandon).await;
        }
    }
}

/// Acknowledges `batch` (the `batches`-th of this worker) until Redis takes it, and tells each
/// run's executor what became of it.
async fn flush(
    ctx: &Context,
    batch: &mut Vec<Ack>,
    batches: &mut u64,
    abandon: &CancellationToken,
) {
    *batches += 1;
    let id = *batches;
    let jobs: Vec<&Finished> = batch.iter().map(|ack| &ack.job).collect();
    let ttl = ctx.settings.result_ttl;
    // Every try of the batch gets the same answer: it names the same batch.
    let held = retry_until(abandon, "acknowledging jobs", || {
        ctx.broker.ack(&ctx.worker_id, id, &jobs, ttl)
    })
    .await;
    drop(jobs);
    match held {
        Some(held) => {
            for (ack, held) in batch.drain(..).zip(held) {
                let _ = ack.done.send(if held { Acked::Held } else { Acked::Stale });
            }
        }
        // Abandoned at shutdown: unsettled jobs stay in flight and are requeued, so they run
        // again (never lost); settled ones are not.
        None => batch.clear(),
    }
}
