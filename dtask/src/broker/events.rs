//! Where jobs stand while they move, on the broker's side: the passing records (queued,
//! scheduled, running, retrying) written beside final outcomes in the results hashes (see
//! `lua/set_passing.lua`), and each queue's events channel, published to and subscribed.

use std::time::Duration;

use super::subscription::Subscription;
use super::{Broker, keys, outcome_ttl_ms, redis_err, scripts};
use crate::error::Error;

/// What a batch of passing records says, and so which records it may replace (a job's first
/// record, queued or scheduled, is written by its enqueue: see [`Broker::enqueue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Passing {
    /// Attempts that started or told their progress.
    Running,
    /// Attempts that failed; the jobs wait for their next.
    Retrying,
    /// Running jobs that went back to their queue (their worker died).
    Back,
    /// Workflow steps just enqueued, over their waiting records.
    Ready,
}

impl Passing {
    fn mode(self) -> &'static str {
        match self {
            Passing::Running => "run",
            Passing::Retrying => "retry",
            Passing::Back => "back",
            Passing::Ready => "ready",
        }
    }
}

/// One passing record: the job, the record, and the attempts it counts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassingNote<'a> {
    pub(crate) job_id: &'a str,
    pub(crate) record: &'a str,
    pub(crate) attempts: u32,
}

/// A subscription to one queue's events channel: plain pub/sub on a server, a sharded
/// channel on a cluster (published with `SPUBLISH`, so that a message travels to the nodes of
/// its queue's slot only, not to every node of the cluster).
pub(crate) enum EventFeed {
    Plain(Subscription),
    Sharded {
        connection: redis::cluster_async::ClusterConnection,
        pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
        channel: String,
    },
}

impl EventFeed {
    /// The text of the next message (one event per line), or None once the connection is
    /// gone (on a cluster: once a node's connection dropped, which may have lost messages).
    pub(crate) async fn next(&mut self) -> Option<String> {
        match self {
            EventFeed::Plain(subscription) => subscription.next().await.map(|(_, text)| text),
            EventFeed::Sharded { pushes, .. } => {
                loop {
                    let push = pushes.recv().await?;
                    match push.kind {
                        redis::PushKind::SMessage => {
                            if let Some(text) = push.data.get(1).and_then(|value| {
                                redis::from_redis_value::<String>(value.clone()).ok()
                            }) {
                                return Some(text);
                            }
                        }
                        // A node's connection dropped, or the node gave the channel's slot
                        // away (a resharding, a failover): messages may be lost, and the
                        // subscription is not followed further; the listener subscribes again.
                        redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => {
                            return None;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        match self {
            EventFeed::Plain(subscription) => subscription.ping().await,
            // A read of the channel's name as a key: it goes to the node holding the channel's
            // slot (a PING would need every primary of the cluster to answer).
            EventFeed::Sharded {
                connection,
                channel,
                ..
            } => redis::cmd("HGET")
                .arg(&*channel)
                .arg("ping")
                .query_async::<redis::Value>(connection)
                .await
                .map(drop)
                .map_err(redis_err("subscribing to job events")),
        }
    }
}

impl Broker {
    /// Writes passing records, kept for `ttl`, as `lua/set_passing.lua` allows: one script per
    /// results hash, all sent at once. Returns how many were written.
    pub(crate) async fn set_passing(
        &self,
        passing: Passing,
        notes: &[PassingNote<'_>],
        ttl: Duration,
    ) -> Result<usize, Error> {
        let by_hash = super::group_by_results_hash(&self.prefix, notes, |note| note.job_id);
        let ttl_ms = outcome_ttl_ms(ttl);
        let writes = by_hash.into_iter().map(|(key, notes)| {
            let mut invocation = scripts::SET_PASSING.prepare_invoke();
            invocation.key(key).arg(ttl_ms).arg(passing.mode());
            for note in notes {
                invocation
                    .arg(note.job_id)
                    .arg(note.record)
                    .arg(note.attempts);
            }
            let mut conn = self.conn.clone();
            async move { invocation.invoke_async::<usize>(&mut conn).await }
        });
        let written = futures_util::future::try_join_all(writes)
            .await
            .map_err(redis_err("recording where jobs stand"))?;
        Ok(written.into_iter().sum())
    }

    /// The command that publishes on an events channel: `SPUBLISH` on a cluster (a sharded
    /// channel, carried by its slot's nodes only), `PUBLISH` on a server.
    pub(crate) fn events_publish(&self) -> &'static str {
        if self.target.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Publishes `lines` (events, one per line) on `queue`'s events channel.
    pub(crate) async fn publish_events(&self, queue: &str, lines: &str) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd(self.events_publish())
            .arg(keys::events_channel(&self.prefix, queue))
            .arg(lines)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("publishing job events"))
    }

    /// A subscription to `queue`'s events channel (through the `attempt`-th node of a
    /// cluster).
    pub(crate) async fn event_feed(&self, queue: &str, attempt: usize) -> Result<EventFeed, Error> {
        let channel = keys::events_channel(&self.prefix, queue);
        let what = "subscribing to job events";
        if let Some(sharded) = self.target.sharded_subscriber(super::FEED_PING).await {
            let (mut connection, pushes) = sharded.map_err(redis_err(what))?;
            connection
                .ssubscribe(&channel)
                .await
                .map_err(redis_err(what))?;
            return Ok(EventFeed::Sharded {
                connection,
                pushes,
                channel,
            });
        }
        let mut subscription = self.subscription(attempt, what).await?;
        subscription.subscribe(channel).await?;
        Ok(EventFeed::Plain(subscription))
    }
}

impl Broker {
    /// Writes the short record of job `id` (kept `ttl`) unless it has a record already: for a
    /// job enqueued by a script of its own (a unique job), written before that script runs, so
    /// that it never lands over a later record of the job, nor over the record of the job
    /// that holds the name.
    pub(crate) async fn record_if_new(&self, id: &str, record: &str, ttl: Duration) {
        let key = keys::results(&self.prefix, id);
        let mut pipe = super::Pipe::new("");
        super::add_hash_records(&mut pipe, &key, &[(id, record)], ttl, "HSETNX");
        if let Err(error) = pipe
            .send(&self.conn, "recording that a job is queued")
            .await
        {
            tracing::debug!(%error, "could not record that a job is queued");
        }
    }
}
