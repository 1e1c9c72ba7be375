//! What middleware and lifecycle-hook tests share: the key a job of the test tasks was enqueued
//! with, and a hook that records every job event as a line of text.

use std::sync::{Arc, Mutex};

use dtask::{JobContext, JobEvent};

/// The first argument of a job, when it is a string: the key the tests' tasks take first.
pub fn job_key(job: &JobContext) -> String {
    let args: serde_json::Value = serde_json::from_str(job.args_json()).unwrap_or_default();
    args[0].as_str().unwrap_or_default().to_owned()
}

/// A hook that records every job event as `key:succeeded:result`, `key:retrying:attempt:error`
/// or `key:dead:error`, and the list it records into.
pub fn recorder() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&JobEvent<'_>) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let hook = move |event: &JobEvent<'_>| {
        let line = match event {
            JobEvent::Succeeded { job, result } => format!("{}:succeeded:{result}", job_key(job)),
            JobEvent::Retrying { job, error, .. } => {
                format!("{}:retrying:{}:{error}", job_key(job), job.attempt())
            }
            JobEvent::Dead { job, error } => {
                format!("{}:dead:{error}", job.map(job_key).unwrap_or_default())
            }
            _ => "other".to_owned(),
        };
        sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    };
    (seen, hook)
}
