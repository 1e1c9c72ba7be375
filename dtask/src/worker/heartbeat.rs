//! The heartbeat: tells every queue this worker serves that it is alive, so that its in-flight
//! jobs are not taken for orphans.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Context;

/// Refreshes the worker's entry in each queue's worker registry every `heartbeat_interval`.
pub(crate) struct Heartbeat {
    ctx: Arc<Context>,
}

impl Heartbeat {
    pub(crate) fn new(ctx: Arc<Context>) -> Heartbeat {
        Heartbeat { ctx }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let ctx = &self.ctx;
        loop {
            if let Err(error) = ctx
                .broker
                .heartbeat(&ctx.settings.queues, &ctx.worker_id)
                .await
            {
                tracing::warn!(%error, "heartbeat failed; retrying");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(ctx.settings.heartbeat_interval()) => {}
            }
        }
    }
}
