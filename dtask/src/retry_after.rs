//! [`RetryAfter`]: the error a handler returns to be run again later without spending an
//! attempt (a remote API said "429 Too Many Requests", a resource is busy).

use std::fmt;
use std::time::Duration;

/// Asks for the job to run again after a delay, without spending an attempt: return it (or
/// any error made from it: `anyhow::Error`, `Box<dyn Error>`, an enum of yours) from a
/// handler. Making one inside a running job is what asks; the job is then scheduled again
/// with the same attempt number, and its status says retrying until then.
///
/// ```
/// use std::time::Duration;
///
/// #[dtask::task(queue = "webhooks")]
/// async fn deliver(url: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let status = 429; // what the remote API answered
///     if status == 429 {
///         return Err(dtask::RetryAfter::new(Duration::from_secs(30)).into());
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    delay: Duration,
}

impl RetryAfter {
    /// Asks the running job to be run again after `delay`, without spending an attempt.
    /// Outside a job, it asks nothing.
    pub fn new(delay: Duration) -> RetryAfter {
        if let Some(job) = crate::current() {
            *job.retry_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(delay);
        }
        RetryAfter { delay }
    }

    /// The delay asked for.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "asked to run again after {:?}", self.delay)
    }
}

impl std::error::Error for RetryAfter {}
