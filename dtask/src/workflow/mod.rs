//! Workflows, typed: a chain (each step takes the result of the one before), a group (jobs run
//! in parallel, their results collected in order) and a chord (a group, then a callback that
//! takes the group's results).
//!
//! ```no_run
//! # #[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)] pub struct Page;
//! # #[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)] pub struct Doc;
//! # #[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)] pub struct Thumb;
//! #[dtask::task]
//! async fn fetch(url: String) -> Page { Page }
//! #[dtask::task]
//! async fn parse(page: Page) -> Doc { Doc }
//! #[dtask::task]
//! async fn resize(id: u64, width: u32) -> Thumb { Thumb }
//! #[dtask::task]
//! async fn album(thumbs: Vec<Thumb>) -> usize { thumbs.len() }
//!
//! # async fn demo(url: String, ids: Vec<u64>) -> Result<(), dtask::Error> {
//! use std::time::Duration;
//! // fetch, then parse its page: a handle on the last step.
//! let doc = dtask::chain(fetch::call(url)).then(parse::with_input()).enqueue().await?;
//! // resize every image at once, and wait for all the thumbnails, in order.
//! let thumbs: Vec<Thumb> = dtask::group(ids.iter().map(|id| resize::call(*id, 640)))
//!     .enqueue().await?
//!     .wait(Duration::from_secs(30)).await?;
//! // the same, then one job that takes them all.
//! let count = dtask::group(ids.iter().map(|id| resize::call(*id, 640)))
//!     .then(album::with_input())
//!     .enqueue().await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! A step takes its input as its task's arguments: `my_task::with_input()` is the task waiting
//! for it, of type `Then<Input, Output>` (the one argument, or the tuple of them), so a step
//! whose input is not the output before does not compile. The state of a workflow lives in
//! Redis: each job carries what follows it, and the script that settles a job writes what its
//! workflow does next (enqueue the next step, record a member's end) in the same step; so a
//! worker that dies at any moment loses nothing, and a group's callback is enqueued exactly
//! once, when its last member ends, whichever workers end members together. A step or member
//! that dies (or is cancelled) fails what comes after it: those jobs read dead, with an error
//! naming the job that failed them; `Group::skip_failed` leaves failed members out instead.

mod follow;

use std::marker::PhantomData;
use std::time::Duration;

use serde_json::value::RawValue;

pub(crate) use follow::{Doomed, Errand, Follow, THEN_HEADER, WAITING_MARKER};

use crate::broker::{self, NewGroup, NewJob};
use crate::client::{Client, default_client};
use crate::enqueue::{Call, Enqueue, NewPayload};
use crate::envelope::JobId;
use crate::error::Error;
use crate::job::JobHandle;
use follow::Step;

/// How long the record of a step that waits for the steps before it is kept.
const WAITING_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Most group members enqueued per round trip.
const MEMBERS_PER_BATCH: usize = 1000;

/// A task waiting for its input from the step before: `my_task::with_input()` (or
/// `my_task::with().queue(..).with_input()`). `I` is what it takes (its argument, or the tuple
/// of its arguments), `O` what it returns.
#[must_use = "a step does nothing until its workflow is enqueued"]
pub struct Then<I, O> {
    options: Enqueue<O>,
    wrap: bool,
    input: PhantomData<fn(I)>,
}

impl<I, O> Then<I, O> {
    /// The task of `options`, taking its input as its one argument (`wrap`) or as its
    /// arguments. Used by the generated `with_input`.
    pub(crate) fn new(options: Enqueue<O>, wrap: bool) -> Self {
        Then {
            options,
            wrap,
            input: PhantomData,
        }
    }
}

/// Workflows are not run inline (`dtask::testing::inline`): their steps follow each other
/// through Redis.
fn refuse_inline() -> Result<(), Error> {
    #[cfg(feature = "testing")]
    if crate::testing::inline_mode().is_some() {
        return Err(Error::Config(
            "workflows (chain, group) do not run inline: test them with `dtask::testing::TestRedis::drain`"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A step of a chain after its first, type-erased.
struct NextStep {
    options: Enqueue<()>,
    wrap: bool,
}

/// How a chain begins: one job, or a group whose results go to the first step after it.
enum Head {
    One(Box<Call<()>>),
    Group(Vec<Call<()>>, bool),
}

/// Jobs run one after the other, each taking the result of the one before; its last step
/// returns `O`. Built with [`chain`] (or [`Group::then`]), enqueued with [`Chain::enqueue`].
#[must_use = "a workflow does nothing until it is enqueued"]
pub struct Chain<O> {
    head: Head,
    steps: Vec<NextStep>,
    client: Option<Client>,
    output: PhantomData<fn() -> O>,
}

/// A chain that begins with `first`: `dtask::chain(fetch::call(url)).then(parse::with_input())`.
pub fn chain<O>(first: Call<O>) -> Chain<O> {
    Chain {
        client: first.options_client().cloned(),
        head: Head::One(Box::new(first.cast())),
        steps: Vec::new(),
        output: PhantomData,
    }
}

impl<O> Chain<O> {
    /// Runs `next` after the chain, with the chain's result as its input.
    pub fn then<P>(mut self, next: Then<O, P>) -> Chain<P> {
        self.steps.push(NextStep {
            options: next.options.cast(),
            wrap: next.wrap,
        });
        Chain {
            head: self.head,
            steps: self.steps,
            client: self.client,
            output: PhantomData,
        }
    }

    /// Enqueues through `client` instead of the default client (or the first job's).
    pub fn client(mut self, client: &Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Enqueues the workflow: its first job (or its group's members) now, the other steps
    /// each when the one before succeeds. Returns a handle on the last step (which reads
    /// [`JobStatus::Waiting`](crate::JobStatus::Waiting) until it is enqueued), to wait on.
    pub async fn enqueue(self) -> Result<JobHandle<O>, Error> {
        refuse_inline()?;
        let client = match self.client {
            Some(client) => client,
            None => default_client().await?.clone(),
        };
        for step in &self.steps {
            step.options.check_in_workflow("a step")?;
        }
        let now_ms = crate::clock::now_ms();
        // The caller's trace, carried by every step so that their runs join it.
        let trace = crate::trace::current_trace_headers();
        // Every step after the first, with its id, from the last back: each carries what
        // follows it.
        let mut follow: Option<Follow> = None;
        let mut specs: Vec<Step> = Vec::with_capacity(self.steps.len());
        for step in self.steps.iter().rev() {
            let spec = Step {
                id: JobId::generate(),
                task: step.options.info().name.to_owned(),
                queue: step.options.routed_queue(&client),
                retries: step.options.retries_set(),
                wrap: step.wrap,
                version: step.options.info().version,
                headers: step
                    .options
                    .headers()
                    .into_iter()
                    .chain(trace.iter().cloned())
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect(),
                then: follow.take(),
            };
            follow = Some(Follow::Next(Box::new(spec.clone())));
            specs.push(spec);
        }
        specs.reverse();
        let last = match (specs.last(), self.steps.last()) {
            (Some(spec), Some(step)) => {
                Some((spec.id.clone(), spec.queue.clone(), step.options.info()))
            }
            _ => None,
        };
        // A task that keeps no result keeps no record either.
        let waiting: Vec<(&str, &str)> = specs
            .iter()
            .zip(&self.steps)
            .filter(|(_, step)| step.options.info().result_ttl != Some(Duration::ZERO))
            .map(|(spec, _)| (spec.id.as_str(), WAITING_MARKER))
            .collect();
        if !waiting.is_empty() {
            client.broker.record_waiting(&waiting, WAITING_KEPT).await;
        }
        match self.head {
            Head::One(first) => {
                let first = NewMember::of(*first, "the first step", follow.as_ref(), &client)?;
                let (info, queue) = (first.info, first.queue.clone());
                let ids = enqueue_members(&client, vec![first], now_ms).await?;
                match last {
                    Some((id, queue, info)) => Ok(JobHandle::new(id, Some(client))
                        .of_task(info)
                        .in_queue(&queue)),
                    None => {
                        let id = ids.into_iter().next().ok_or_else(|| {
                            Error::Worker("the workflow's first job was not enqueued".into())
                        })?;
                        Ok(JobHandle::new(id, Some(client))
                            .of_task(info)
                            .in_queue(&queue))
                    }
                }
            }
            Head::Group(members, skip_failed) => {
                let Some(callback) = specs.first() else {
                    return Err(Error::Config("a group's callback is missing".into()));
                };
                if members.is_empty() {
                    return Err(Error::Config(format!(
                        "a group with no members would never run its callback `{}`",
                        callback.task
                    )));
                }
                let group = JobId::generate();
                let (head, mid, tail) = callback_template(callback);
                let doomed = serde_json::to_string(&callback.doomed()).unwrap_or_default();
                client
                    .broker
                    .create_group(&NewGroup {
                        queue: &callback.queue,
                        id: group.as_str(),
                        members: members.len(),
                        head: &head,
                        mid: &mid,
                        tail: &tail,
                        skip_failed,
                        doomed: &doomed,
                    })
                    .await?;
                let mut new_members = Vec::with_capacity(members.len());
                for (index, member) in members.into_iter().enumerate() {
                    let follow = Follow::Member {
                        group: group.to_string(),
                        queue: callback.queue.clone(),
                        index: index as u32,
                        callback: callback.id.clone(),
                        task: callback.task.clone(),
                    };
                    new_members.push(NewMember::of(
                        member,
                        "a group member",
                        Some(&follow),
                        &client,
                    )?);
                }
                if let Err(error) = enqueue_members(&client, new_members, now_ms).await {
                    // Members of earlier batches may be queued: they run, and the group, failed
                    // now, marks its callback dead instead of running it.
                    let reason = format!("its group could not be enqueued whole: {error}");
                    if let Err(failed) = client
                        .broker
                        .fail_group(&callback.queue, group.as_str(), &reason)
                        .await
                    {
                        tracing::error!(%failed, group = %group, "could not mark a group that was enqueued in part as failed");
                    }
                    return Err(error);
                }
                let (id, queue, info) =
                    last.ok_or_else(|| Error::Config("a group's callback is missing".into()))?;
                Ok(JobHandle::new(id, Some(client))
                    .of_task(info)
                    .in_queue(&queue))
            }
        }
    }
}

/// Jobs run in parallel, each returning `O`. Built with [`group`]; enqueued alone
/// ([`Group::enqueue`], then [`GroupHandle::wait`] for every result), or followed by a callback
/// that takes every result ([`Group::then`]: a chord).
#[must_use = "a workflow does nothing until it is enqueued"]
pub struct Group<O> {
    members: Vec<Call<O>>,
    skip_failed: bool,
    client: Option<Client>,
}

/// A group of `members`, run in parallel: `dtask::group(ids.iter().map(|id| resize::call(*id, 640)))`.
pub fn group<O>(members: impl IntoIterator<Item = Call<O>>) -> Group<O> {
    Group {
        members: members.into_iter().collect(),
        skip_failed: false,
        client: None,
    }
}

impl<O> Group<O> {
    /// The client given with [`Group::client`], else the first member's, if any.
    fn client_named(&self) -> Option<Client> {
        self.client.clone().or_else(|| {
            self.members
                .first()
                .and_then(|member| member.options_client().cloned())
        })
    }

    /// Leaves failed members (dead or cancelled) out of the results the callback gets, instead
    /// of failing the group: the callback runs once every member ended, with the results of
    /// those that succeeded, in member order.
    pub fn skip_failed(mut self) -> Self {
        self.skip_failed = true;
        self
    }

    /// Enqueues through `client` instead of the default client (or the first member's).
    pub fn client(mut self, client: &Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Runs `callback` once every member ended, with their results in member order.
    pub fn then<P>(self, callback: Then<Vec<O>, P>) -> Chain<P> {
        let client = self.client_named();
        let members = self.members.into_iter().map(Call::cast).collect();
        Chain {
            head: Head::Group(members, self.skip_failed),
            steps: vec![NextStep {
                options: callback.options.cast(),
                wrap: callback.wrap,
            }],
            client,
            output: PhantomData,
        }
    }

    /// Enqueues every member, in batches of 1,000 per round trip; returns their handles.
    pub async fn enqueue(self) -> Result<GroupHandle<O>, Error> {
        refuse_inline()?;
        let client = match self.client_named() {
            Some(client) => client,
            None => default_client().await?.clone(),
        };
        let now_ms = crate::clock::now_ms();
        let mut members = Vec::with_capacity(self.members.len());
        let mut routes = Vec::with_capacity(self.members.len());
        for member in self.members {
            let member = NewMember::of(member, "a group member", None, &client)?;
            routes.push((member.info, member.queue.clone()));
            members.push(member);
        }
        let ids = enqueue_members(&client, members, now_ms).await?;
        let members = ids
            .into_iter()
            .zip(routes)
            .map(|(id, (info, queue))| {
                JobHandle::new(id, Some(client.clone()))
                    .of_task(info)
                    .in_queue(&queue)
            })
            .collect();
        Ok(GroupHandle { members })
    }
}

/// The members of an enqueued [`Group`].
#[derive(Debug, Clone)]
pub struct GroupHandle<O> {
    members: Vec<JobHandle<O>>,
}

impl<O: serde::de::DeserializeOwned> GroupHandle<O> {
    /// Each member's handle, in member order.
    pub fn members(&self) -> &[JobHandle<O>] {
        &self.members
    }

    /// Waits up to `timeout` for every member to succeed; their results, in member order. A
    /// member that dies first is its [`Error::JobDead`].
    pub async fn wait(&self, timeout: Duration) -> Result<Vec<O>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let waits = self.members.iter().map(|member| async move {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            member.wait(left).await
        });
        futures_util::future::try_join_all(waits).await
    }
}

/// A job of a workflow, ready to be enqueued.
struct NewMember {
    info: &'static crate::TaskInfo,
    queue: String,
    retries: Option<u32>,
    headers: Vec<(&'static str, String)>,
    args: Box<RawValue>,
}

impl NewMember {
    /// The job `call` as `what` of a workflow (refused with options a workflow cannot keep),
    /// carrying `follow`, what follows it.
    fn of<T>(
        call: Call<T>,
        what: &str,
        follow: Option<&Follow>,
        client: &Client,
    ) -> Result<NewMember, Error> {
        let (options, args) = call.into_parts();
        options.check_in_workflow(what)?;
        let mut headers = options.headers();
        if let Some(follow) = follow {
            headers.push((THEN_HEADER, follow.to_json()));
        }
        Ok(NewMember {
            info: options.info(),
            queue: options.routed_queue(client),
            retries: options.retries_set(),
            headers,
            args: args?,
        })
    }
}

/// Enqueues `members` in batches (each job recorded as queued, its event published); their
/// ids, in order.
async fn enqueue_members(
    client: &Client,
    members: Vec<NewMember>,
    now_ms: u64,
) -> Result<Vec<JobId>, Error> {
    let trace = crate::trace::current_trace_headers();
    let mut ids = Vec::with_capacity(members.len());
    let mut members = members.into_iter().peekable();
    while members.peek().is_some() {
        let batch: Vec<NewMember> = members.by_ref().take(MEMBERS_PER_BATCH).collect();
        let mut encoded = Vec::with_capacity(batch.len());
        for member in batch {
            let info = member.info;
            let queue = member.queue.clone();
            let (id, payload) = NewPayload {
                info,
                queue: &member.queue,
                retries: member.retries,
                args: member.args,
                enqueued_at_ms: now_ms,
                trace: &trace,
                headers: member.headers,
                id: None,
            }
            .encode(client)?;
            encoded.push((info, queue, id, payload));
        }
        let jobs: Vec<NewJob<'_>> = encoded
            .iter()
            .map(|(_, queue, _, payload)| NewJob {
                queue,
                payload,
                due: None,
            })
            .collect();
        let mut news = broker::News {
            ttl: crate::worker::DEFAULT_RESULT_TTL,
            ..broker::News::default()
        };
        for (info, queue, id, _) in &encoded {
            let ttl = info.result_ttl.unwrap_or(crate::worker::DEFAULT_RESULT_TTL);
            if !ttl.is_zero() {
                news.ttl = news.ttl.max(ttl);
                news.records
                    .push((id.as_str(), crate::envelope::QUEUED_MARKER));
            }
            if !client.quiet_queues.contains(queue.as_str()) {
                let line =
                    crate::events::EventKind::Enqueued { due_at: None }.line(id, info.name, now_ms);
                crate::events::add_line(&mut news.events, queue, &line);
            }
        }
        // Without waiting for replicas: a step or member told "too few replicas" midway would
        // leave the rest of the workflow unsent.
        client.broker.enqueue(&jobs, &news, None).await?;
        for (info, queue, id, _) in encoded {
            crate::metrics::enqueued(&queue, info.name, 1);
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The payload of a group's callback around its argument and its enqueue time: (head, mid,
/// tail), the results (a JSON array) going between head and mid and the time (ms) between mid
/// and tail, put there by `lua/group_member.lua` when the last member ends.
fn callback_template(callback: &Step) -> (String, String, String) {
    /// Stands for the results while the envelope is written; a JSON string no envelope field
    /// before the arguments can hold.
    const SLOT: &str = "\"\\u0000dtask-results\\u0000\"";
    /// Stands for the enqueue time: a time no job has (the largest integer a double holds).
    const TIME: u64 = (1 << 53) - 1;
    let args = RawValue::from_string(if callback.wrap {
        format!("[{SLOT}]")
    } else {
        SLOT.to_owned()
    });
    let Ok(args) = args else {
        return (String::new(), String::new(), String::new());
    };
    let text = callback.envelope(args, TIME).to_json();
    let Some(at) = text.find(SLOT) else {
        return (text, String::new(), String::new());
    };
    let (head, rest) = (&text[..at], &text[at + SLOT.len()..]);
    let time = format!("\"at\":{TIME}");
    match rest.find(&time) {
        Some(at) => {
            let cut = at + "\"at\":".len();
            (
                head.to_owned(),
                rest[..cut].to_owned(),
                rest[cut + TIME.to_string().len()..].to_owned(),
            )
        }
        None => (head.to_owned(), rest.to_owned(), String::new()),
    }
}
