//! [`RetryAfter`]: the error a handler returns to be run again later without spending an
//! attempt (a remote API said "429 Too Many Requests", a resource is busy).

use std::fmt;
use std::time::Duration;

/// Asks for the job to run again after a delay, without spending an attempt: return it (or
/// any error made from it whose message includes its own: `anyhow::Error`, `Box<dyn Error>`,
/// an enum of yours that displays it) from a handler. The job is then scheduled again with the
/// same attempt number, and its status says retrying until then. The delay is at least
/// [`RetryAfter::MIN_DELAY`] and at most [`RetryAfter::MAX_DELAY`]; a job put off
/// [`RetryAfter::MAX_PUT_OFFS`] times fails its attempt instead (a job that always asks still
/// ends, dead). Asked from a handler only: not from middleware, hooks or tasks it spawns.
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
    /// The shortest delay: a shorter one is raised to it.
    pub const MIN_DELAY: Duration = Duration::from_millis(100);
    /// The longest delay: a longer one is cut to it.
    pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
    /// How many times one job may be put off; then the attempt fails.
    pub const MAX_PUT_OFFS: u32 = 50;

    /// Asks the running job to be run again after `delay`, without spending an attempt, if
    /// the handler's error carries it. Outside a job, it asks nothing.
    pub fn new(delay: Duration) -> RetryAfter {
        let delay = delay.clamp(Self::MIN_DELAY, Self::MAX_DELAY);
        if let Some(job) = crate::current() {
            *job.retry_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(delay);
        }
        RetryAfter { delay }
    }

    /// Whether a handler's error `message` carries a `RetryAfter`'s (so that a request made in
    /// passing, then replaced by another error, a panic or a timeout, is not honoured).
    pub(crate) fn carried_by(message: &str) -> bool {
        message.contains(MESSAGE)
    }

    /// The delay asked for.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// The start of a `RetryAfter`'s message, by which a handler's error is known to carry one.
const MESSAGE: &str = "asked to run again after";

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MESSAGE} {:?}", self.delay)
    }
}

impl std::error::Error for RetryAfter {}
