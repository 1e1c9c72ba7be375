//! What runs around the app's jobs: on the web side, every job is stamped with the tenant it
//! was enqueued for (a header); on the worker side, every run is timed and logged with that
//! tenant. The idiom for a transaction, a trace id or error reporting is the same.

use std::time::Instant;

/// Client middleware: stamps every job with the tenant (`TENANT`, default `example`).
pub struct Tenant(pub String);

impl Tenant {
    /// The tenant named by `TENANT`, or `example`.
    pub fn from_env() -> Tenant {
        Tenant(std::env::var("TENANT").unwrap_or_else(|_| "example".to_owned()))
    }
}

impl dtask::EnqueueMiddleware for Tenant {
    fn on_enqueue(&self, job: &mut dtask::OutgoingJob<'_>) -> Result<(), String> {
        job.set_header("tenant", self.0.clone());
        Ok(())
    }
}

/// Worker middleware: logs how long each run took, and for which tenant.
pub struct Timing;

#[dtask::async_trait]
impl dtask::Middleware for Timing {
    async fn handle(&self, job: &dtask::JobContext, next: dtask::Next<'_>) -> dtask::RunOutcome {
        let started = Instant::now();
        let outcome = next.run().await;
        tracing::info!(
            task = job.task(),
            job_id = %job.id(),
            attempt = job.attempt(),
            tenant = job.header("tenant").unwrap_or("-"),
            ok = outcome.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "job ran"
        );
        outcome
    }
}
