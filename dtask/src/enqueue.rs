//! Enqueueing: the options builder behind every `my_task::with()`, and the enqueue of one job
//! or of a batch in one round trip.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::args::JobArgs;
use crate::broker::{self, NewJob};
use crate::client::{Client, default_client};
use crate::clock;
use crate::envelope::{Envelope, JobId};
use crate::error::Error;
use crate::job::JobHandle;
use crate::registry::TaskInfo;
use crate::unique::{DEFAULT_ID_LOCK, Unique, UniqueBy, UniqueUntil};

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
    id: Option<JobId>,
    unique_for: Option<Duration>,
    unique_until: Option<UniqueUntil>,
    timeout: Option<Duration>,
    /// The replicas to wait for, when this enqueue says (`None` inside: none).
    replicas: Option<Option<broker::Replicas>>,
    /// The hash of the partition key, when given.
    partition_key: Option<u64>,
    output: PhantomData<fn() -> O>,
}

/// When a delayed job is due: after a delay from the moment it is enqueued, or at a time.
#[derive(Clone, Copy)]
enum Due {
    After(Duration),
    At(SystemTime),
}

impl<O> Enqueue<O> {
    /// These options for a job of another output type (the workflows keep steps of any
    /// task side by side).
    pub(crate) fn cast<P>(self) -> Enqueue<P> {
        Enqueue {
            info: self.info,
            client: self.client,
            queue: self.queue,
            due: self.due,
            retries: self.retries,
            id: self.id,
            unique_for: self.unique_for,
            unique_until: self.unique_until,
            timeout: self.timeout,
            replicas: self.replicas,
            partition_key: self.partition_key,
            output: PhantomData,
        }
    }

    /// The task of these options.
    pub(crate) fn info(&self) -> &'static TaskInfo {
        self.info
    }

    /// The queue jobs with these options go to.
    pub(crate) fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or(self.info.queue)
    }

    /// The Redis queue a job with these options goes to through `client`: the queue, or the
    /// partition of it that the partition key (or the turn) picks.
    pub(crate) fn routed_queue(&self, client: &Client) -> String {
        client
            .partitions
            .route(self.queue_name(), self.partition_key)
            .to_owned()
    }

    /// The retries these options set, if any.
    pub(crate) fn retries_set(&self) -> Option<u32> {
        self.retries
    }

    /// The client these options name, if any.
    pub(crate) fn client_set(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The headers these options give a job (a timeout of its own), as owned pairs.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        self.option_headers()
    }

    /// Refuses the options a step of a workflow cannot have (`what` names the step): a delay,
    /// a time, an id or uniqueness.
    pub(crate) fn check_in_workflow(&self, what: &str) -> Result<(), Error> {
        let refused = if self.due.is_some() {
            Some("a delay or a time")
        } else if self.id.is_some() {
            Some("an id")
        } else if self.unique_for.is_some()
            || self.unique_until.is_some()
            || self.info.unique_for.is_some()
        {
            Some("uniqueness")
        } else {
            None
        };
        match refused {
            Some(option) => Err(Error::Config(format!(
                "{what} (`{}`) cannot have {option} in a workflow",
                self.info.name
            ))),
            None => check_queue_name(self.queue_name()),
        }
    }

    /// Options for a job of the task described by `info`, with the task's defaults.
    pub(crate) fn new(info: &'static TaskInfo) -> Self {
        Enqueue {
            info,
            client: None,
            queue: None,
            due: None,
            retries: None,
            id: None,
            unique_for: None,
            unique_until: None,
            timeout: None,
            replicas: None,
            partition_key: None,
            output: PhantomData,
        }
    }

    /// Waits until `replicas` replicas of the queue's Redis have the job, for at most
    /// `timeout`, as [`ClientBuilder::replicas`](crate::ClientBuilder::replicas) does for
    /// every enqueue of a client (which this overrides; `replicas(0, _)` does not wait).
    pub fn replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = Some(broker::Replicas::asked(replicas, timeout));
        self
    }

    /// On a partitioned queue (see [`ClientBuilder::partitions`](crate::ClientBuilder::partitions)),
    /// sends the job to the partition of `key` instead of the next in turn: the jobs of one key
    /// (a user, an account) go to one partition, and so start in the order they were enqueued,
    /// as on a queue of its own. The same key picks the same partition in every process. A
    /// job named with [`Enqueue::id`] or made unique goes by its uniqueness key instead, so
    /// that a duplicate always meets the first. No effect on a queue without partitions.
    ///
    /// ```no_run
    /// #[dtask::task(queue = "emails", partitions = 8)]
    /// async fn send_email(user_id: u64, subject: String) {}
    ///
    /// # async fn demo() -> Result<(), dtask::Error> {
    /// send_email::with()
    ///     .partition_key(42)
    ///     .enqueue(42, "Welcome".into())
    ///     .await?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn partition_key(mut self, key: impl std::fmt::Display) -> Self {
        self.partition_key = Some(crate::partition::key_hash(&key.to_string()));
        self
    }

    /// Limits each attempt of the job to `limit` instead of the task's `timeout`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The headers of these options that travel with the job (a timeout of its own).
    fn option_headers(&self) -> Vec<(&'static str, String)> {
        self.timeout
            .map(|limit| {
                let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
                (TIMEOUT_HEADER, ms.to_string())
            })
            .into_iter()
            .collect()
    }

    /// Names the job `id`: while the job of that id waits, runs, waits for a retry, or has an
    /// outcome to read (its result, or its death, kept for the result TTL), another enqueue
    /// with the id queues nothing and returns that job's handle ([`JobHandle::is_duplicate`]).
    /// If no worker is left to end it, the name lapses after a day (or `unique_for`).
    pub fn id(mut self, id: impl Into<JobId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// At most one job of this task with these arguments (compared as their JSON text) in the
    /// queue, running or waiting for a retry, for `window` from when it is due (its enqueue,
    /// or its delay's end): a duplicate enqueued meanwhile queues nothing and returns the first
    /// job's handle. The lock goes sooner when the job ends (or starts:
    /// [`Enqueue::unique_until`]).
    pub fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// Until when a unique job keeps duplicates out: its end (the default) or its start.
    pub fn unique_until(mut self, until: UniqueUntil) -> Self {
        self.unique_until = Some(until);
        self
    }

    /// The uniqueness asked for, by these options or the task's `unique_for`.
    fn uniqueness(&self) -> Result<Option<Unique>, Error> {
        let window = self.unique_for.or(self.info.unique_for);
        let unique = match (&self.id, window) {
            (Some(id), window) => Unique {
                by: UniqueBy::Id(id.clone()),
                ttl: window.unwrap_or(DEFAULT_ID_LOCK),
                until: self.unique_until.unwrap_or_default(),
            },
            (None, Some(window)) => Unique {
                by: UniqueBy::Args,
                ttl: window,
                until: self.unique_until.unwrap_or_default(),
            },
            (None, None) if self.unique_until.is_some() => {
                return Err(Error::Config(format!(
                    "`unique_until` of a `{}` job needs `unique_for` or `id`",
                    self.info.name
                )));
            }
            (None, None) => return Ok(None),
        };
        if matches!(unique.by, UniqueBy::Id(_)) && unique.until == UniqueUntil::Start {
            return Err(Error::Config(format!(
                "a `{}` job named with `.id(..)` keeps its name until it ends: `unique_until(Start)` would let a second job of the name run beside it",
                self.info.name
            )));
        }
        if let UniqueBy::Id(id) = &unique.by
            && id.as_str().is_empty()
        {
            return Err(Error::Config(format!(
                "the id of a `{}` job must not be empty",
                self.info.name
            )));
        }
        if unique.ttl.is_zero() || unique.ttl.as_millis() >= 1 << 50 {
            return Err(Error::Config(format!(
                "the uniqueness window of a `{}` job must be from 1 ms to about 35,000 years, not {:?}",
                self.info.name, unique.ttl
            )));
        }
        Ok(Some(unique))
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

    /// The job with arguments `args` and these options, not enqueued yet: for
    /// [`periodic`](crate::periodic), or to enqueue later. Used by the generated `call`.
    pub(crate) fn call_args<A: JobArgs>(self, args: A) -> Call<O> {
        let args = encode_args(self.info, args.as_serialize());
        Call {
            options: self,
            args,
        }
    }

    /// Enqueues one job per item, in one round trip. Used by the generated `enqueue_many`.
    pub(crate) async fn enqueue_many_args<A: JobArgs>(
        self,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<JobHandle<O>>, Error> {
        let args = items
            .into_iter()
            .map(|args| encode_args(self.info, args.as_serialize()))
            .collect::<Result<Vec<_>, Error>>()?;
        self.enqueue_encoded(args).await
    }

    /// Enqueues one job per encoded argument list, in one round trip.
    async fn enqueue_encoded(self, items: Vec<Box<RawValue>>) -> Result<Vec<JobHandle<O>>, Error> {
        let unique = self.uniqueness()?;
        let option_headers = self.option_headers();
        let queue = self.queue.as_deref().unwrap_or(self.info.queue);
        check_queue_name(queue)?;
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
        if self.id.is_some() && items.len() > 1 {
            return Err(Error::Config(format!(
                "`.id(..)` names one job of `{}`: enqueue it with `enqueue`, not `enqueue_many`",
                self.info.name
            )));
        }
        // Checked as for Redis, then run here (`dtask::testing::inline`).
        #[cfg(feature = "testing")]
        if let Some(inline) = crate::testing::inline_mode() {
            return inline
                .run_jobs(self.info, queue, self.id.clone(), items)
                .await;
        }
        let client = match self.client {
            Some(client) => client,
            None => default_client().await?.clone(),
        };
        let replicas = self.replicas.unwrap_or(client.replicas);
        // The caller's trace, carried to each job so that its runs join it.
        let trace = crate::trace::current_trace_headers();
        if let Some(unique) = unique {
            let mut handles = Vec::with_capacity(items.len());
            for args in items {
                let key = unique.key(self.info.name, args.get());
                // One uniqueness key, one partition (whatever the partition key): its lock
                // lives there, so that every duplicate meets it.
                let target = client
                    .partitions
                    .route(queue, Some(crate::partition::key_hash(&key)));
                let job = NewPayload {
                    info: self.info,
                    queue: target,
                    retries: self.retries,
                    args,
                    enqueued_at_ms: now_ms,
                    trace: &trace,
                    headers: {
                        let mut headers = unique.headers(key.clone());
                        headers.extend(option_headers.iter().cloned());
                        headers
                    },
                    id: self.id.clone(),
                };
                let (id, payload) = job.encode(&client)?;
                // The window counts from when the job is due: a delayed job keeps it while it
                // waits, and for the whole window after.
                let waits = match due {
                    None => Duration::ZERO,
                    Some(broker::Due::After(delay)) => delay,
                    Some(broker::Due::AtMs(at)) => Duration::from_millis(at.saturating_sub(now_ms)),
                };
                let told = Told::new(&client, self.info, queue, due, now_ms);
                if let Some((record, ttl)) = &told.record {
                    client.broker.record_if_new(id.as_str(), record, *ttl).await;
                }
                let found = client
                    .broker
                    .enqueue_unique(
                        target,
                        broker::UniqueLock {
                            key: &key,
                            ttl: unique.ttl + waits,
                        },
                        id.as_str(),
                        &payload,
                        due,
                        replicas,
                    )
                    .await?;
                let handle = match found {
                    None => {
                        if let Some((_, lines)) = told
                            .news(std::slice::from_ref(&id), &[target])
                            .events
                            .first()
                            && let Err(error) = client.broker.publish_events(target, lines).await
                        {
                            tracing::debug!(%error, queue = target, "could not publish job events");
                        }
                        crate::metrics::enqueued(queue, self.info.name, 1);
                        JobHandle::new(id, Some(client.clone()))
                    }
                    Some(holder) => {
                        JobHandle::new(JobId::from(holder), Some(client.clone())).found_duplicate()
                    }
                };
                handles.push(handle.of_task(self.info).in_queue(target));
            }
            return Ok(handles);
        }
        let routing = self.partition_key;
        let mut ids = Vec::new();
        let mut payloads = Vec::new();
        let mut targets: Vec<&str> = Vec::new();
        for args in items {
            let target = client.partitions.route(queue, routing);
            let job = NewPayload {
                info: self.info,
                queue: target,
                retries: self.retries,
                args,
                enqueued_at_ms: now_ms,
                trace: &trace,
                headers: option_headers.clone(),
                id: None,
            };
            let (id, payload) = job.encode(&client)?;
            payloads.push(payload);
            ids.push(id);
            targets.push(target);
        }
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        // The jobs of one partition side by side: one pipeline per partition's node.
        let mut order: Vec<usize> = (0..payloads.len()).collect();
        order.sort_by_key(|&i| targets[i]);
        let jobs: Vec<NewJob<'_>> = order
            .iter()
            .map(|&i| NewJob {
                queue: targets[i],
                payload: &payloads[i],
                due,
            })
            .collect();
        let told = Told::new(&client, self.info, queue, due, now_ms);
        client
            .broker
            .enqueue(&jobs, &told.news(&ids, &targets), replicas)
            .await?;
        crate::metrics::enqueued(queue, self.info.name, ids.len() as u64);
        tracing::debug!(task = self.info.name, queue, jobs = ids.len(), "enqueued");
        Ok(ids
            .into_iter()
            .zip(targets)
            .map(|(id, target)| {
                JobHandle::new(id, Some(client.clone()))
                    .of_task(self.info)
                    .in_queue(target)
            })
            .collect())
    }
}

/// What an enqueue tells of its jobs: the record each starts with (queued, or scheduled when
/// delayed) unless its task keeps none, and its `enqueued` event unless the client keeps its
/// queue quiet.
struct Told {
    task: &'static str,
    record: Option<(String, Duration)>,
    event: Option<crate::events::EventKind>,
    now_ms: u64,
}

impl Told {
    /// What an enqueue into `queue` (a partitioned one, or not) tells.
    fn new(
        client: &Client,
        info: &'static TaskInfo,
        queue: &str,
        due: Option<broker::Due>,
        now_ms: u64,
    ) -> Told {
        let due_ms = due.map(|due| match due {
            broker::Due::AtMs(at) => at,
            broker::Due::After(delay) => now_ms.saturating_add(delay.as_millis() as u64),
        });
        let ttl = info.result_ttl.unwrap_or(crate::worker::DEFAULT_RESULT_TTL);
        let record = (!ttl.is_zero()).then(|| match due_ms {
            None => (crate::envelope::QUEUED_MARKER.to_owned(), ttl),
            // A delayed job's record lasts through its delay.
            Some(due_ms) => (
                crate::envelope::scheduled_marker(due_ms),
                ttl + Duration::from_millis(due_ms.saturating_sub(now_ms)),
            ),
        });
        let event =
            (!client.quiet_queues.contains(queue)).then(|| crate::events::EventKind::Enqueued {
                due_at: due_ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
            });
        Told {
            task: info.name,
            record,
            event,
            now_ms,
        }
    }

    /// The news of the jobs `ids`, each of which went to the Redis queue of the same rank in
    /// `targets` (its events are published there).
    fn news<'b>(&'b self, ids: &'b [JobId], targets: &[&'b str]) -> broker::News<'b> {
        let mut news = broker::News::default();
        if let Some((record, ttl)) = &self.record {
            news.ttl = *ttl;
            news.records = ids
                .iter()
                .map(|id| (id.as_str(), record.as_str()))
                .collect();
        }
        if let Some(event) = &self.event {
            let mut rank: std::collections::HashMap<&str, usize> = Default::default();
            let mut lines: Vec<(&'b str, Vec<String>)> = Vec::new();
            for (id, target) in ids.iter().zip(targets) {
                let at = *rank.entry(target).or_insert_with(|| {
                    lines.push((target, Vec::new()));
                    lines.len() - 1
                });
                lines[at].1.push(event.line(id, self.task, self.now_ms));
            }
            news.events.extend(
                lines
                    .into_iter()
                    .map(|(target, lines)| (target, lines.join("\n"))),
            );
        }
        news
    }
}

/// A job not enqueued yet: a task, its options and its arguments (`my_task::call(args..)`, or
/// `my_task::with()..call(args..)` with options). Enqueue it with [`Call::enqueue`], or give
/// it to [`periodic`](crate::periodic) to enqueue it on a schedule.
#[must_use = "a call does nothing until it is enqueued or scheduled"]
pub struct Call<O> {
    options: Enqueue<O>,
    args: Result<Box<RawValue>, Error>,
}

impl<O> Call<O> {
    /// The same job, typed as returning `P` (the workflows keep jobs of any task side by
    /// side).
    pub(crate) fn cast<P>(self) -> Call<P> {
        Call {
            options: self.options.cast(),
            args: self.args,
        }
    }

    /// The client its options name, if any.
    pub(crate) fn options_client(&self) -> Option<&Client> {
        self.options.client_set()
    }

    /// Its options and its arguments (or why they could not be encoded).
    pub(crate) fn into_parts(self) -> (Enqueue<O>, Result<Box<RawValue>, Error>) {
        (self.options, self.args)
    }

    /// Enqueues the job and returns its handle.
    pub async fn enqueue(self) -> Result<JobHandle<O>, Error> {
        let mut handles = self.options.enqueue_encoded(vec![self.args?]).await?;
        Ok(handles.remove(0))
    }

    /// The job a periodic schedule enqueues at each tick: no delay (the schedule says when),
    /// and the worker's client.
    pub(crate) fn into_periodic(self) -> Result<crate::periodic::PeriodicJob, Error> {
        let options = self.options;
        if options.due.is_some() {
            return Err(Error::Config(format!(
                "a periodic job of `{}` cannot have a delay or a time: its schedule says when",
                options.info.name
            )));
        }
        if options.client.is_some() {
            return Err(Error::Config(format!(
                "a periodic job of `{}` is enqueued by the worker's client: leave out `.client(..)`",
                options.info.name
            )));
        }
        if options.id.is_some() || options.unique_for.is_some() || options.unique_until.is_some() {
            return Err(Error::Config(format!(
                "a periodic job of `{}` fires once per tick already: leave out `.id(..)` and `.unique_for(..)`",
                options.info.name
            )));
        }
        let headers = options.option_headers();
        let queue = options
            .queue
            .unwrap_or_else(|| options.info.queue.to_owned());
        check_queue_name(&queue)?;
        Ok(crate::periodic::PeriodicJob {
            info: options.info,
            queue,
            retries: options.retries,
            headers,
            args: self.args?,
        })
    }
}

/// The header holding a job's own attempt timeout (ms), set with `.timeout(..)`.
pub(crate) const TIMEOUT_HEADER: &str = "dtask-timeout";

/// The attempt timeout a job's enqueuer gave it, if any.
pub(crate) fn timeout_of(headers: &std::collections::BTreeMap<String, String>) -> Option<Duration> {
    headers
        .get(TIMEOUT_HEADER)
        .and_then(|ms| ms.parse().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Refuses a queue name that cannot be a queue's (its keys' hash tag would break).
pub(crate) fn check_queue_name(queue: &str) -> Result<(), Error> {
    if queue.is_empty() || queue.contains(['{', '}']) {
        return Err(Error::Config(format!(
            "queue name `{queue}` must be non-empty and hold no `{{` or `}}`"
        )));
    }
    Ok(())
}

/// `args` as the JSON a job carries, refusing values JSON cannot hold (NaN, infinities).
fn encode_args<A: Serialize + ?Sized>(info: &TaskInfo, args: &A) -> Result<Box<RawValue>, Error> {
    crate::finite::check(args)
        .and_then(|()| serde_json::to_string(args))
        .and_then(RawValue::from_string)
        .map_err(|source| Error::SerializeArgs {
            task: info.name.to_owned(),
            source,
        })
}

/// One job about to be enqueued, before it has an id.
pub(crate) struct NewPayload<'a> {
    pub(crate) info: &'static TaskInfo,
    pub(crate) queue: &'a str,
    pub(crate) retries: Option<u32>,
    pub(crate) args: Box<RawValue>,
    pub(crate) enqueued_at_ms: u64,
    /// The enqueuer's trace headers (see `trace::current_trace_headers`).
    pub(crate) trace: &'a [(&'static str, String)],
    /// Headers of dtask's own (a periodic job's schedule and tick, a unique job's lock).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The id the caller chose, if any (else a new one).
    pub(crate) id: Option<JobId>,
}

impl NewPayload<'_> {
    /// The job's new id and its envelope, after `client`'s enqueue middleware saw it; refused
    /// by the middleware, or when larger than the client allows.
    pub(crate) fn encode(self, client: &Client) -> Result<(JobId, String), Error> {
        let task = self.info.name;
        let mut headers = client
            .enqueue_middleware
            .headers_for(task, self.queue, self.args.get())
            .map_err(|reason| Error::EnqueueRefused {
                task: task.to_owned(),
                reason,
            })?;
        crate::trace::carry(&mut headers, self.trace);
        for (name, value) in self.headers {
            headers.insert(name.to_owned(), value);
        }
        let envelope = Envelope {
            v: crate::envelope::format_for(self.info.version),
            id: self.id.unwrap_or_else(JobId::generate),
            task: task.to_owned(),
            args: self.args,
            version: self.info.version,
            attempt: 0,
            retries: self.retries,
            enqueued_at_ms: self.enqueued_at_ms,
            last_error: None,
            headers,
        };
        let payload = envelope.to_json();
        if payload.len() > client.max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                task: task.to_owned(),
                size: payload.len(),
                limit: client.max_payload_bytes,
            });
        }
        Ok((envelope.id, payload))
    }
}
