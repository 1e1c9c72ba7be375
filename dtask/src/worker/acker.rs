//! The acker: acknowledges finished jobs in batches. Under load, many jobs finish between two
//! round trips to Redis; the acker settles all of them (and stores their outcomes) in one script
//! per queue instead of one round trip each. When the worker is idle, a lone acknowledgement
//! goes out at once.
//!
//! Each queue has a lane of its own (its batches, its retries): a queue whose Redis is slow, or
//! whose cluster node is failing over, holds up no other queue's acknowledgements.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::backoff::retry_until_noting;
use crate::broker::Finished;

/// Most acknowledgements sent in one round trip.
const MAX_BATCH: usize = 512;
/// Most turns a lane gives ready runs to join a batch before it goes out.
const GATHER_TURNS: usize = 4;

/// One finished run to acknowledge, who to tell once Redis took it, and the executor slot
/// the run holds until then.
pub(crate) struct Ack {
    pub(crate) job: Finished,
    pub(crate) done: oneshot::Sender<Acked>,
    /// Given up when the batch's first try fails (its queue's Redis fails or fails over), so
    /// that other queues' jobs get the slot while the acknowledgement is retried.
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

/// What became of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// The run held its lease: acknowledged, its outcome stored.
    Held,
    /// The run was stale (its job had been taken back): nothing changed.
    Stale,
}

/// Where executors send acknowledgements: straight to their queue's lane.
#[derive(Clone)]
pub(crate) struct AckSender {
    /// (foldhash: looked up by every run.)
    lanes: Arc<foldhash::HashMap<Arc<str>, mpsc::UnboundedSender<Ack>>>,
}

impl AckSender {
    /// Hands `ack` to its queue's lane; None when the acker stopped (or the worker does not
    /// serve the queue, which never happens: its jobs come from its queues).
    pub(crate) fn send(&self, ack: Ack) -> Option<()> {
        self.lanes.get(&ack.job.queue)?.send(ack).ok()
    }
}

/// Batches acknowledgements from executors into one script per queue and batch.
pub(crate) struct Acker {
    lanes: Vec<mpsc::UnboundedReceiver<Ack>>,
}

impl Acker {
    /// An acker for `queues`, and the sender executors use to reach it.
    pub(crate) fn new(queues: &[String]) -> (AckSender, Acker) {
        let mut senders = foldhash::HashMap::default();
        let mut lanes = Vec::new();
        for queue in queues {
            let (sender, lane) = mpsc::unbounded_channel();
            senders.insert(Arc::from(queue.as_str()), sender);
            lanes.push(lane);
        }
        let sender = AckSender {
            lanes: Arc::new(senders),
        };
        (sender, Acker { lanes })
    }

    /// Acknowledges until `stop`, then flushes what is left. A batch that fails is retried with
    /// backoff until Redis takes it or `abandon` fires (its jobs then stay in flight and are
    /// requeued, so they run again: never lost).
    pub(crate) async fn run(
        self,
        ctx: &Context,
        stop: CancellationToken,
        abandon: CancellationToken,
    ) {
        let lanes = self
            .lanes
            .into_iter()
            .map(|incoming| lane(ctx, incoming, &stop, &abandon));
        futures_util::future::join_all(lanes).await;
    }
}

/// One queue's lane: batches its acknowledgements and flushes them until `stop`, then flushes
/// what is left.
async fn lane(
    ctx: &Context,
    mut incoming: mpsc::UnboundedReceiver<Ack>,
    stop: &CancellationToken,
    abandon: &CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut batches = 0u64;
    loop {
        let first = tokio::select! {
            biased;
            ack = incoming.recv() => ack,
            _ = stop.cancelled() => None,
        };
        match first {
            Some(ack) => {
                batch.push(ack);
                // Runs that are ready to finish (a fetched batch's, most often) finish first
                // and join this batch, instead of a lone first one going out and the rest
                // waiting for its round trip: the lane lets them run, as long as each turn
                // brings more (a few turns at most). On an idle worker this costs nothing.
                for _ in 0..GATHER_TURNS {
                    tokio::task::yield_now().await;
                    let before = batch.len();
                    take_waiting(&mut incoming, &mut batch);
                    if batch.len() == before || batch.len() >= MAX_BATCH {
                        break;
                    }
                }
            }
            None => {
                while let Ok(ack) = incoming.try_recv() {
                    batch.push(ack);
                }
                if !batch.is_empty() {
                    flush(ctx, &mut batch, &mut batches, abandon).await;
                }
                return;
            }
        }
        take_waiting(&mut incoming, &mut batch);
        flush(ctx, &mut batch, &mut batches, abandon).await;
    }
}

/// Adds the acknowledgements waiting in `incoming` to `batch`, up to [`MAX_BATCH`].
fn take_waiting(incoming: &mut mpsc::UnboundedReceiver<Ack>, batch: &mut Vec<Ack>) {
    while batch.len() < MAX_BATCH {
        match incoming.try_recv() {
            Ok(ack) => batch.push(ack),
            Err(_) => break,
        }
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
    let mut slots: Vec<OwnedSemaphorePermit> =
        batch.iter_mut().filter_map(|ack| ack.slot.take()).collect();
    let queue = batch.first().map(|ack| ack.job.queue.clone());
    let mut given_up = 0;
    let jobs: Vec<&Finished> = batch.iter().map(|ack| &ack.job).collect();
    let ttl = ctx.settings.result_ttl;
    // Every try of the batch gets the same answer: it names the same batch.
    let held = retry_until_noting(
        abandon,
        "acknowledging jobs",
        || ctx.broker.ack(&ctx.worker_id, id, &jobs, ttl),
        |_| {
            // The runs wait for their queue's Redis: their slots go to other queues' jobs,
            // and the queue takes no new job while as many wait as the worker runs at once.
            if let Some(queue) = &queue {
                for _ in slots.drain(..) {
                    ctx.settling(queue);
                    given_up += 1;
                }
            }
        },
    )
    .await;
    drop(jobs);
    drop(slots);
    if let Some(queue) = &queue {
        for _ in 0..given_up {
            ctx.settled(queue);
        }
    }
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
