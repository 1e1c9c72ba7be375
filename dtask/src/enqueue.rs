//! Enqueueing: the options builder behind every `my_task::with()`, and the enqueue of one job
//! or of a batch in one round trip.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::broker::{self, NewJob};
use crate::client::{Client, default_client};
use crate::clock;
use crate::envelope::{ENVELOPE_VERSION, Envelope, JobId};
use crate::error::Error;
use crate::job::JobHandle;
use crate::registry::TaskInfo;

/// Options for enqueueing jobs of one task, whose result type is `O`.
///
/// Each `#[task]` wraps this in its own `my_task::Builder`, returned by `my_task::with()`,
/// whose `enqueue` takes the task's arguments; the options are the same for every task.
#[must_use = "a builder does nothing until `.enqueue(..)` is awaited"]
pub struct Enqueue<O> {
    info: &'static TaskInfo,
    client: Option<Client>,
    queue: Option<String>,
    due: Option<Due>,
    retries: Option<u32>,
    output: PhantomData<fn() -> O>,
}

/// When a delayed job is due: after a delay from the moment it is enqueued, or at a time.
#[derive(Clone, Copy)]
enum Due {
    After(Duration),
    At(SystemTime),
}

impl<O> Enqueue<O> {
    /// Options for a job of the task described by `info`, with the task's defaults.
    #[doc(hidden)]
    pub fn new(info: &'static TaskInfo) -> Self {
        Enqueue {
            info,
            client: None,
            queue: None,
            due: None,
            retries: None,
            output: PhantomData,
        }
    }

    /// Runs the job no sooner than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.due = Some(Due::After(delay));
        self
    }

    /// Runs the job no sooner than `when`. A time in the past means now.
    pub fn at(mut self, when: impl Into<SystemTime>) -> Self {
        self.due = Some(Due::At(when.into()));
        self
    }

    /// Sends the job to `queue` instead of the task's own queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Retries the job at most `retries` times instead of the task's default.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Enqueues through `client` instead of the process-wide default.
    pub fn client(mut self, client: &Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Enqueues one job whose arguments serialize as `args`. Used by the generated `enqueue`.
    #[doc(hidden)]
    pub async fn enqueue_args<A: Serialize>(self, args: A) -> Result<JobHandle<O>, Error> {
        let mut handles = self.enqueue_many_args(std::iter::once(args)).await?;
        Ok(handles.remove(0))
    }

    /// Enqueues one job per item, in one round trip. Used by the generated `enqueue_many`.
    #[doc(hidden)]
    pub async fn enqueue_many_args<A: Serialize>(
        self,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<JobHandle<O>>, Error> {
        let client = match self.client {
            Some(client) => client,
            None => default_client().await?.clone(),
        };
        let queue = self.queue.as_deref().unwrap_or(self.info.queue);
        if queue.is_empty() || queue.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "queue name `{queue}` must be non-empty and hold no `{{` or `}}`"
            )));
        }
        let now = SystemTime::now();
        let now_ms = clock::to_ms(now);
        let due = match self.due {
            None => None,
            // A time the caller chose stays theirs; a delay counts on the Redis server's clock,
            // so that a skewed clock here runs nothing early or late.
            Some(Due::At(when)) => Some(clock::to_ms(when))
                .filter(|due| *due > now_ms)
                .map(broker::Due::AtMs),
            Some(Due::After(delay)) => {
                // Redis scores are doubles: exact up to 2^53 ms (285,000 years).
                if now.checked_add(delay).is_none() || delay.as_millis() >= 1 << 53 {
                    return Err(Error::Config(format!("a delay of {delay:?} is too long")));
                }
                (!delay.is_zero()).then_some(broker::Due::After(delay))
            }
        };
        let mut ids = Vec::new();
        let mut payloads = Vec::new();
        // The caller's trace, carried to each job so that its runs join it.
        let trace = crate::trace::current_trace_headers();
        for args in items {
            let args = crate::finite::check(&args)
                .and_then(|()| serde_json::to_string(&args))
                .and_then(RawValue::from_string)
                .map_err(|source| Error::SerializeArgs {
                    task: self.info.name.to_owned(),
                    source,
                })?;
            let mut headers = client
                .enqueue_middleware
                .headers_for(self.info.name, queue, args.get())
                .map_err(|reason| Error::EnqueueRefused {
                    task: self.info.name.to_owned(),
                    reason,
                })?;
            crate::trace::carry(&mut headers, &trace);
            let envelope = Envelope {
                v: ENVELOPE_VERSION,
                id: JobId::generate(),
                task: self.info.name.to_owned(),
                args,
                attempt: 0,
                retries: self.retries,
                enqueued_at_ms: now_ms,
                last_error: None,
                headers,
            };
            let payload = envelope.to_json();
            if payload.len() > client.max_payload_bytes {
                return Err(Error::PayloadTooLarge {
                    task: self.info.name.to_owned(),
                    size: payload.len(),
                    limit: client.max_payload_bytes,
                });
            }
            payloads.push(payload);
            ids.push(envelope.id);
        }
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<NewJob<'_>> = payloads
            .iter()
            .map(|payload| NewJob {
                queue,
                payload,
                due,
            })
            .collect();
        client.broker.enqueue(&jobs).await?;
        crate::metrics::enqueued(queue, self.info.name, ids.len() as u64);
        tracing::debug!(task = self.info.name, queue, jobs = ids.len(), "enqueued");
        Ok(ids
            .into_iter()
            .map(|id| JobHandle::new(id, Some(client.clone())).of_task(self.info))
            .collect())
    }
}
