//! The acker: acknowledges finished jobs in batches. Under load, many jobs finish between two
//! round trips to Redis; the acker settles all of them (and stores their outcomes) in one script
//! per queue instead of one round trip each. When the worker is idle, a lone acknowledgement
//! goes out at once.
//!
//! Each queue has a lane of its own (its batches, its retries): a queue whose Redis is slow, or
//! whose cluster node is failing over, holds up no other queue's acknowledgements.

use std::collections::HashMap;
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
        let mut lanes: HashMap<Arc<str>, mpsc::UnboundedSender<Ack>> = HashMap::new();
        let mut receivers = Vec::new();
        for queue in &ctx.settings.queues {
            let (sender, receiver) = mpsc::unbounded_channel();
            lanes.insert(Arc::from(queue.as_str()), sender);
            receivers.push(receiver);
        }
        let dispatch = async move {
            loop {
                let next = tokio::select! {
                    biased;
                    ack = self.incoming.recv() => ack,
                    _ = stop.cancelled() => None,
                };
                let Some(ack) = next else {
                    while let Ok(ack) = self.incoming.try_recv() {
                        forward(&lanes, ack);
                    }
                    // Dropping the lanes' senders ends each lane once it flushed.
                    return;
                };
                forward(&lanes, ack);
            }
        };
        let lanes = receivers
            .into_iter()
            .map(|receiver| lane(ctx, receiver, &abandon));
        tokio::join!(dispatch, futures_util::future::join_all(lanes));
    }
}

/// Hands `ack` to its queue's lane; an acknowledgement of a queue the worker does not serve
/// (never made) is answered stale.
fn forward(lanes: &HashMap<Arc<str>, mpsc::UnboundedSender<Ack>>, ack: Ack) {
    match lanes.get(&ack.job.queue) {
        Some(lane) => {
            if let Err(mpsc::error::SendError(ack)) = lane.send(ack) {
                let _ = ack.done.send(Acked::Stale);
            }
        }
        None => {
            let _ = ack.done.send(Acked::Stale);
        }
    }
}

/// One queue's lane: batches its acknowledgements and flushes them until its sender is gone.
async fn lane(
    ctx: &Context,
    mut incoming: mpsc::UnboundedReceiver<Ack>,
    abandon: &CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut batches = 0u64;
    while let Some(ack) = incoming.recv().await {
        batch.push(ack);
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(ack) => batch.push(ack),
                Err(_) => break,
            }
        }
        flush(ctx, &mut batch, &mut batches, abandon).await;
    }
}

/// Acknowledges `batch` (the `batches`-th of this worker on its queue) until Redis takes it, and
/// tells each run's executor what became of it.
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
