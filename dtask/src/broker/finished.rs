//! Waiting for jobs without polling, on the broker's side: the watched sets waiters note their
//! jobs in, the finished channels where the final outcomes of watched jobs are published (see
//! `lua/notify.lua`), and the subscription a client's waiters share.

use std::time::Duration;

use super::subscription::Subscription;
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
    subscription: Subscription,
    prefix: String,
}

impl FinishedFeed {
    /// Subscribes to the finished channel of `queue` as well.
    pub(crate) async fn subscribe(&mut self, queue: &str) -> Result<(), Error> {
        self.subscription
            .subscribe(keys::finished_channel(&self.prefix, queue))
            .await
    }

    /// The outcomes of the next message, or None once the connection is gone.
    pub(crate) async fn next(&mut self) -> Option<Vec<JobOutcome>> {
        loop {
            let (channel, text) = self.subscription.next().await?;
            if let Some(queue) = keys::queue_of_finished_channel(&self.prefix, &channel) {
                return Some(parse(queue, &text));
            }
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.subscription.ping().await
    }
}

/// Reads a message of `queue`'s finished channel: for each job, `<bytes>:<id><bytes>:<record>`
/// (lengths in bytes, so that an id or a record may hold any character).
fn parse(queue: &str, text: &str) -> Vec<JobOutcome> {
    let mut outcomes = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some((job_id, after)) = field(rest) else {
            break;
        };
        let Some((record, after)) = field(after) else {
            break;
        };
        outcomes.push(JobOutcome {
            queue: queue.to_owned(),
            job_id: job_id.to_owned(),
            record: record.to_owned(),
        });
        rest = after;
    }
    outcomes
}

/// The field `<bytes>:<text>` at the start of `text`, and what follows it.
fn field(text: &str) -> Option<(&str, &str)> {
    let (len, rest) = text.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

impl Broker {
    /// A subscription for waiters (to the `attempt`-th node of a cluster), to no channel yet.
    pub(crate) async fn finished_feed(&self, attempt: usize) -> Result<FinishedFeed, Error> {
        Ok(FinishedFeed {
            subscription: self
                .subscription(attempt, "subscribing to finished jobs")
                .await?,
            prefix: self.prefix.to_string(),
        })
    }

    /// Notes that job `id` of `queue` is waited on until `until_ms` (so that its final outcome
    /// is published; a later deadline of another waiter of the job is kept), then reads its
    /// outcome record as it stands.
    pub(crate) async fn watch_and_read(
        &self,
        queue: &str,
        id: &str,
        until_ms: u64,
    ) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        let watched = keys::watched(&self.prefix, queue);
        let mut note = redis::cmd("ZADD");
        note.arg(&watched).arg("GT").arg(until_ms).arg(id);
        let record = if self.inline_outcomes() {
            let mut pipe = redis::pipe();
            pipe.add_command(note).ignore();
            pipe.cmd("HGET")
                .arg(keys::results(&self.prefix, id))
                .arg(id);
            let (record,): (Option<String>,) = pipe
                .query_async(&mut conn)
                .await
                .map_err(redis_err("noting a job as waited on"))?;
            record
        } else {
            // The note and the record may live on different nodes: two requests, in order.
            note.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("noting a job as waited on"))?;
            self.result(id).await?
        };
        // Now and then, the notes of waiters that gave up go (their jobs never finished);
        // best effort.
        if rand::random::<u8>() < 16 {
            let _ = redis::cmd("ZREMRANGEBYSCORE")
                .arg(&watched)
                .arg("-inf")
                .arg(crate::clock::now_ms().saturating_sub(WATCH_SLACK_MS))
                .query_async::<()>(&mut conn)
                .await;
        }
        Ok(record)
    }

    /// Takes back the note that job `id` of `queue` is waited on (its outcome was read).
    pub(crate) async fn unwatch(&self, queue: &str, id: &str) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(keys::watched(&self.prefix, queue))
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("forgetting a job as waited on"))
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
        let outcomes = parse("q", "3:x\ny7:{\"s\":1}3:a\tb2:{}");
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].job_id, "x\ny");
        assert_eq!(outcomes[0].record, "{\"s\":1}");
        assert_eq!(outcomes[1].job_id, "a\tb");
        assert_eq!(outcomes[1].record, "{}");
        assert_eq!(parse("q", "9:short"), []);
        assert_eq!(parse("q", "nonsense"), []);
        assert_eq!(
            keys::queue_of_finished_channel("p", "p:{q}:finished"),
            Some("q")
        );
        assert_eq!(keys::queue_of_finished_channel("p", "p:{q}:cancel"), None);
    }
}
