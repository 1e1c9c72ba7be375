//! Exponential backoff with jitter, the one delay policy dtask uses: between a failed job's
//! attempts, and between reconnection attempts of the worker's loops ([`retry_until`]).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Error;

use rand::Rng;

/// Delays that double from `base` up to `max`, each drawn at random from its upper half so that
/// many workers failing together do not retry together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let jitter: f64 = rand::rng().random_range(0.5..=1.0);
        ceiling.mul_f64(jitter)
    }
}

/// Backoff of the worker's loops while Redis (or one cluster node) is unreachable: at most a
/// second, so that a worker resumes within about a second of the node serving again (after a
/// failover, its replica); a try that finds a node down costs one refused connection.
pub(crate) const RECONNECT: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

/// Runs `op` until it succeeds, pausing with [`RECONNECT`] backoff between failures and logging
/// each as `what` failed; None when `stop` fires first (also during an attempt).
pub(crate) async fn retry_until<T, F, Fut>(stop: &CancellationToken, what: &str, op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    retry_until_noting(stop, what, op, |_| {}).await
}

/// [`retry_until`], calling `failed` with the number of failures so far after each.
pub(crate) async fn retry_until_noting<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut op: F,
    mut failed: impl FnMut(u32),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut failures = 0;
    loop {
        let outcome = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            outcome = op() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, failures, "{what} failed; retrying");
                failed(failures);
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(RECONNECT.delay(failures)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_in_their_upper_half_and_are_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(backoff.delay(30) <= Duration::from_secs(1));
        }
    }
}
