//! One of dtask's pub/sub connections (to the server, or to one node of a cluster, where a
//! message published on any node reaches every node): its channels, its messages as
//! (channel, text), and a ping that tells a silent connection from a live one. The feeds of
//! requests to stop jobs (`cancels.rs`) and of finished jobs (`finished.rs`) read through it.

use futures_util::StreamExt;
use redis::ToRedisArgs;
use redis::aio::{PubSubSink, PubSubStream};

use super::{Broker, redis_err};
use crate::error::Error;

/// A pub/sub connection, `what` it carries named in its errors.
pub(crate) struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    what: &'static str,
}

impl Subscription {
    /// Subscribes to `channels` as well.
    pub(crate) async fn subscribe(&mut self, channels: impl ToRedisArgs) -> Result<(), Error> {
        self.sink
            .subscribe(channels)
            .await
            .map_err(redis_err(self.what))
    }

    /// The next message with a text payload, as (channel, text); None once the connection is
    /// gone.
    pub(crate) async fn next(&mut self) -> Option<(String, String)> {
        loop {
            let message = self.stream.next().await?;
            if let Ok(text) = message.get_payload::<String>() {
                return Some((message.get_channel_name().to_owned(), text));
            }
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.sink
            .ping::<redis::Value>()
            .await
            .map(|_| ())
            .map_err(redis_err(self.what))
    }
}

impl Broker {
    /// A pub/sub connection for `what` (through the `attempt`-th node of a cluster), to no
    /// channel yet.
    pub(crate) async fn subscription(
        &self,
        attempt: usize,
        what: &'static str,
    ) -> Result<Subscription, Error> {
        let (sink, stream) = self
            .target
            .subscriber(attempt)
            .await
            .map_err(redis_err(what))?
            .split();
        Ok(Subscription { sink, stream, what })
    }
}
