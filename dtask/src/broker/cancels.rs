//! Stopping running jobs: the request (a note in the queue's cancelled set and a message on
//! its cancel channel, one script) and the feed a worker listens to.

use std::collections::HashMap;
use std::time::Duration;

use super::subscription::Subscription;
use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// How long a request to stop a job is kept for workers that missed its message: one that
/// reconnects within it, or a run of the job that starts within it (the job went back to its
/// queue meanwhile, or failed into a retry just as it was asked to stop), still stops it.
pub(crate) const CANCEL_KEPT: Duration = Duration::from_secs(24 * 3600);

/// A request to stop a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CancelRequest {
    pub(crate) queue: String,
    pub(crate) job_id: String,
    /// When it was asked (ms, Redis server clock).
    pub(crate) at_ms: u64,
}

/// A subscription to the cancel channels of some queues.
pub(crate) struct CancelFeed {
    subscription: Subscription,
    /// Channel -> queue.
    queues: HashMap<String, String>,
}

impl CancelFeed {
    /// The next request, or None once the connection is gone.
    pub(crate) async fn next(&mut self) -> Option<CancelRequest> {
        loop {
            let (channel, text) = self.subscription.next().await?;
            if let Some(request) = self
                .queues
                .get(&channel)
                .and_then(|queue| parse(queue, &text))
            {
                return Some(request);
            }
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.subscription.ping().await
    }
}

/// Reads a message `<ms> <job id>` of `queue`'s channel.
fn parse(queue: &str, text: &str) -> Option<CancelRequest> {
    let (at_ms, job_id) = text.split_once(' ')?;
    Some(CancelRequest {
        queue: queue.to_owned(),
        job_id: job_id.to_owned(),
        at_ms: at_ms.parse().ok()?,
    })
}

impl Broker {
    /// Asks every worker of `queue` to stop job `id` if it runs it; returns when it was asked
    /// (ms, server clock).
    pub(crate) async fn request_cancel(&self, queue: &str, id: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        scripts::CANCEL_RUNNING
            .key(keys::cancelled(&self.prefix, queue))
            .arg(id)
            .arg(keys::cancel_channel(&self.prefix, queue))
            .arg(CANCEL_KEPT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("asking workers to stop a job"))
    }

    /// The requests of the last [`CANCEL_KEPT`] to stop jobs of `queue`.
    pub(crate) async fn recent_cancels(&self, queue: &str) -> Result<Vec<CancelRequest>, Error> {
        let mut conn = self.conn.clone();
        let noted: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys::cancelled(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading requests to stop jobs"))?;
        Ok(noted
            .into_iter()
            .map(|(job_id, at_ms)| CancelRequest {
                queue: queue.to_owned(),
                job_id,
                at_ms: at_ms as u64,
            })
            .collect())
    }

    /// Subscribes to the cancel channels of `queues` (through the `attempt`-th node of a
    /// cluster).
    pub(crate) async fn cancel_feed(
        &self,
        queues: &[String],
        attempt: usize,
    ) -> Result<CancelFeed, Error> {
        let mut subscription = self
            .subscription(attempt, "subscribing to requests to stop jobs")
            .await?;
        let queues: HashMap<String, String> = queues
            .iter()
            .map(|queue| (keys::cancel_channel(&self.prefix, queue), queue.clone()))
            .collect();
        subscription
            .subscribe(queues.keys().collect::<Vec<_>>())
            .await?;
        Ok(CancelFeed {
            subscription,
            queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_published() {
        assert_eq!(
            parse("q", "1700000000123 0abc def"),
            Some(CancelRequest {
                queue: "q".into(),
                job_id: "0abc def".into(),
                at_ms: 1_700_000_000_123
            })
        );
        assert_eq!(parse("q", "nonsense"), None);
        assert_eq!(parse("q", "x 1"), None);
    }
}
