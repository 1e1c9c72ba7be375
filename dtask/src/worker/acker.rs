//! The acker: acknowledges finished jobs in batches. Under load, many jobs finish between two
//! round trips to Redis; the acker settles all of them in one pipeline instead of one round trip
//! each. When the worker is idle, a lone acknowledgement goes out at once.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::backoff::RECONNECT;
use crate::broker::Finished;

/// Most acknowledgements sent in one round trip.
const MAX_BATCH: usize = 512;

/// One finished job to acknowledge, and who to tell once Redis took it.
pub(crate) struct Ack {
    pub(crate) job: Finished,
    pub(crate) done: oneshot::Sender<()>,
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
                        flush(ctx, &mut batch, &abandon).await;
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
            flush(ctx, &mut batch, &abandon).await;
        }
    }
}

async fn flush(ctx: &Context, batch: &mut Vec<Ack>, abandon: &CancellationToken) {
    let mut failures = 0;
    loop {
        let jobs = batch.iter().map(|ack| &ack.job);
        match ctx
            .broker
            .ack_many(&ctx.worker_id, jobs, ctx.settings.result_ttl)
            .await
        {
            Ok(()) => break,
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, jobs = batch.len(), "acknowledging jobs failed; retrying");
                let pause: Duration = RECONNECT.delay(failures);
                tokio::select! {
                    _ = abandon.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    for ack in batch.drain(..) {
        let _ = ack.done.send(());
    }
}
