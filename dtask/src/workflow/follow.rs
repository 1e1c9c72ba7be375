//! What follows a job of a workflow, and the errands that carry it out.
//!
//! A job of a workflow carries in its `dtask-then` header what follows it: the next step of
//! its chain (with what follows that one, nested), or its place in a group. When the job ends,
//! the worker that settles it turns that into an errand for the queue's outbox, in the same
//! script as the settle (so that no crash comes between them): enqueue the next step with
//! this job's result as its input, record the member's end in its group, or, when the job
//! died, mark the steps that will never run as dead. The workers' couriers run the errands
//! (`worker/courier.rs`); each errand may run more than once and does its work once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{Envelope, JobId};

/// The header that carries what follows a job.
pub(crate) const THEN_HEADER: &str = "dtask-then";

/// The short record of a workflow step not enqueued yet: it waits for the steps before it.
pub(crate) const WAITING_MARKER: &str = "w";

/// What follows a job of a workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Follow {
    /// The next step of its chain, which takes this job's result as its input.
    Next(Box<Step>),
    /// The job is member `index` of group `group`, whose hash lives in the queue of the group's
    /// callback (`callback`, a job of `task` in `queue`).
    Member {
        group: String,
        queue: String,
        index: u32,
        callback: JobId,
        task: String,
    },
}

/// A step of a chain, not enqueued yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Step {
    pub(crate) id: JobId,
    pub(crate) task: String,
    pub(crate) queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<u32>,
    /// Whether its task takes one argument: the input is then wrapped in an array (a task of
    /// several arguments takes a tuple, which is the array already).
    pub(crate) wrap: bool,
    /// Its task's version (see `Envelope::version`).
    #[serde(
        rename = "tv",
        default = "crate::envelope::first_version",
        skip_serializing_if = "crate::envelope::is_first_version"
    )]
    pub(crate) version: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) headers: BTreeMap<String, String>,
    /// What follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) then: Option<Follow>,
}

/// A job that will not run because its workflow failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Doomed {
    pub(crate) queue: String,
    pub(crate) id: JobId,
    pub(crate) task: String,
}

/// What a workflow does next, once a job of it ended: one entry of a queue's outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Errand {
    /// Enqueue the next step of a chain (once).
    Spawn {
        queue: String,
        id: JobId,
        task: String,
        payload: String,
    },
    /// Record the end of a group member: its result (JSON text: serde cannot carry a raw
    /// value through the tag), or its error.
    Member {
        queue: String,
        group: String,
        index: u32,
        callback: JobId,
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Mark these jobs dead: an earlier step of their workflow died.
    Fail { jobs: Vec<Doomed>, error: String },
}

impl Errand {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Follow {
    /// What follows the job of `envelope`, if it is part of a workflow (a header that does not
    /// read is logged and ignored: the job itself runs).
    pub(crate) fn of(envelope: &Envelope) -> Option<Follow> {
        let text = envelope.headers.get(THEN_HEADER)?;
        match serde_json::from_str(text) {
            Ok(follow) => Some(follow),
            Err(error) => {
                tracing::error!(job_id = %envelope.id, %error, "the job's workflow header does not read; what follows it will not run");
                None
            }
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The errand of a job that succeeded with `value` (JSON), at `now_ms`.
    pub(crate) fn succeeded(&self, value: &str, now_ms: u64) -> Errand {
        match self {
            Follow::Next(step) => match step.payload(value, now_ms) {
                Ok(payload) => Errand::Spawn {
                    queue: step.queue.clone(),
                    id: step.id.clone(),
                    task: step.task.clone(),
                    payload,
                },
                Err(error) => Errand::Fail {
                    jobs: step.doomed(),
                    error: format!("the result of the step before is not JSON: {error}"),
                },
            },
            Follow::Member {
                group,
                queue,
                index,
                callback,
                task,
            } => Errand::Member {
                queue: queue.clone(),
                group: group.clone(),
                index: *index,
                callback: callback.clone(),
                task: task.clone(),
                value: Some(value.to_owned()),
                error: None,
            },
        }
    }

    /// The errand of job `id` (of `task`) that died of `error` (or was cancelled).
    pub(crate) fn died(&self, id: &JobId, task: &str, error: &str) -> Errand {
        match self {
            Follow::Next(step) => Errand::Fail {
                jobs: step.doomed(),
                error: format!("an earlier step of its workflow, {task} {id}, ended dead: {error}"),
            },
            Follow::Member {
                group,
                queue,
                index,
                callback,
                task: callback_task,
            } => Errand::Member {
                queue: queue.clone(),
                group: group.clone(),
                index: *index,
                callback: callback.clone(),
                task: callback_task.clone(),
                value: None,
                error: Some(format!(
                    "member {index} of its group, {task} {id}, ended dead: {error}"
                )),
            },
        }
    }
}

impl Step {
    /// This step's payload, its input `value` (JSON) the result of the step before.
    pub(crate) fn payload(&self, value: &str, now_ms: u64) -> Result<String, serde_json::Error> {
        let args = if self.wrap {
            format!("[{value}]")
        } else {
            value.to_owned()
        };
        Ok(self
            .envelope(RawValue::from_string(args)?, now_ms)
            .to_json())
    }

    /// This step's envelope, with `args`.
    pub(crate) fn envelope(&self, args: Box<RawValue>, now_ms: u64) -> Envelope {
        let mut headers = self.headers.clone();
        if let Some(then) = &self.then {
            headers.insert(THEN_HEADER.to_owned(), then.to_json());
        }
        Envelope {
            v: crate::envelope::format_for(self.version),
            id: self.id.clone(),
            task: self.task.clone(),
            args,
            version: self.version,
            attempt: 0,
            retries: self.retries,
            enqueued_at_ms: now_ms,
            last_error: None,
            headers,
        }
    }

    /// This step and every step after it: the jobs that will not run when the workflow fails
    /// before it.
    pub(crate) fn doomed(&self) -> Vec<Doomed> {
        let mut doomed = vec![Doomed {
            queue: self.queue.clone(),
            id: self.id.clone(),
            task: self.task.clone(),
        }];
        if let Some(Follow::Next(next)) = &self.then {
            doomed.extend(next.doomed());
        }
        doomed
    }
}
