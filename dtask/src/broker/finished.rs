//! Waiting for jobs without polling, on the broker's side: the watched sets waiters note their
//! jobs in, the finished channels where the final outcomes of watched jobs are published (see
//! `lua/notify.lua`), and the subscription a client's waiters share.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// The final outcome of a job someone waited on, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobOutcome {
    pub(crate) queue: String,
    pub(crate) job_id: String,
    /// Its outcome record (JSON).
    pub(crate) record: String,
}

/// A subscription to the finished channels of queues, added one by one.
pub(crate) struct FinishedFeed {
    sink: PubSubSink,
    stream: PubSubStream,
    prefix: String,
}

impl FinishedFeed {
    /// Subscribes to the finished channel of `queue` as well.
    pub(crate) async fn subscribe(&mut self, queue: &str) -> Result<(), Error> {
        self.sink
            .subscribe(keys::finished_channel(&self.prefix, queue))
            .await
            .map_err(redis_err("subscribing to finished jobs"))
    }

    /// The outcomes of the next message, or None once the connection is gone.
    pub(crate) async fn next(&mut self) -> Option<Vec<JobOutcome>> {
        loop {
            let message = self.stream.next().await?;
            let Some(queue) =
                keys::queue_of_finished_channel(&self.prefix, message.get_channel_name())
            else {
                continue;
            };
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            return Some(parse(queue, &text));
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.sink
            .ping::<redis::Value>()
            .await
            .map(|_| ())
            .map_err(redis_err("pinging the finished-jobs subscription"))
    }
}

/// Reads a message of `queue`'s finished channel: `<id>\t<record>` lines.
fn parse(queue: &str, text: &str) -> Vec<JobOutcome> {
    text.lines()
        .filter_map(|line| {
            let (job_id, record) = line.split_once('\t')?;
            Some(JobOutcome {
                queue: queue.to_owned(),
                job_id: job_id.to_owned(),
                record: record.to_owned(),
            })
        })
        .collect()
}

impl Broker {
    /// A subscription for waiters (to the `attempt`-th node of a cluster), to no channel yet.
    pub(crate) async fn finished_feed(&self, attempt: usize) -> Result<FinishedFeed, Error> {
        let pubsub = self
            .target
            .subscriber(attempt)
            .await
            .map_err(redis_err("subscribing to finished jobs"))?;
        let (sink, stream) = pubsub.split();
        Ok(FinishedFeed {
            sink,
            stream,
            prefix: self.prefix.to_string(),
        })
    }

    /// Notes that job `id` of `queue` is waited on until `until_ms` (so that its final outcome
    /// is published), then reads its outcome record as it stands.
    pub(crate) async fn watch_and_read(
        &self,
        queue: &str,
        id: &str,
        until_ms: u64,
    ) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        let watched = keys::watched(&self.prefix, queue);
        // Now and then, the notes of waiters that gave up go (their jobs never finished).
        let trim = rand::random::<u8>() < 16;
        if self.target.is_cluster() {
            // The note and the record live in different slots: two requests, in this order.
            let mut pipe = redis::pipe();
            pipe.cmd("ZADD")
                .arg(&watched)
                .arg(until_ms)
                .arg(id)
                .ignore();
            if trim {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&watched)
                    .arg("-inf")
                    .arg(crate::clock::now_ms().saturating_sub(WATCH_SLACK_MS))
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("noting a job as waited on"))?;
            return self.result(id).await;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&watched)
            .arg(until_ms)
            .arg(id)
            .ignore();
        if trim {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&watched)
                .arg("-inf")
                .arg(crate::clock::now_ms().saturating_sub(WATCH_SLACK_MS))
                .ignore();
        }
        pipe.cmd("HGET")
            .arg(keys::results(&self.prefix, id))
            .arg(id);
        let (record,): (Option<String>,) = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err("noting a job as waited on"))?;
        Ok(record)
    }

    /// Tells the waiters of the jobs of `queue` in `finished` (id, final outcome record).
    pub(crate) async fn notify_finished(
        &self,
        queue: &str,
        finished: &[(&str, &str)],
    ) -> Result<(), Error> {
        if finished.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut invocation = scripts::NOTIFY_FINISHED.prepare_invoke();
        invocation
            .key(keys::watched(&self.prefix, queue))
            .arg(keys::finished_channel(&self.prefix, queue));
        for (id, record) in finished {
            invocation.arg(*id).arg(*record);
        }
        invocation
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(redis_err("telling waiters that jobs finished"))
    }
}

/// How long past its waiter's deadline a note in a watched set is kept before it may be
/// trimmed (clocks of clients differ a little).
const WATCH_SLACK_MS: u64 = 60_000;

/// How often a waiters' subscription is checked for life.
pub(crate) const FEED_PING: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_published() {
        let outcomes = parse("q", "a\t{\"s\":1}\nb c\t{}\nnonsense");
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].job_id, "a");
        assert_eq!(outcomes[0].record, "{\"s\":1}");
        assert_eq!(outcomes[1].job_id, "b c");
        assert_eq!(
            keys::queue_of_finished_channel("p", "p:{q}:finished"),
            Some("q")
        );
        assert_eq!(keys::queue_of_finished_channel("p", "p:{q}:cancel"), None);
    }
}
