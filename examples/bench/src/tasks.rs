//! The benchmark's tasks, each with two small arguments, and the process-wide counters and
//! histogram through which the scenarios watch them run. Task and queue names are short on
//! purpose: they travel in every job's payload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// The queue of [`noop`].
pub const NOOP_QUEUE: &str = "bench";
/// The queue of [`lat`].
pub const LAT_QUEUE: &str = "lat";
/// The queue of [`nap`].
pub const NAP_QUEUE: &str = "nap";

/// The process-wide origin of [`now_ns`].
static CLOCK: OnceLock<Instant> = OnceLock::new();

/// Fixes the origin of [`now_ns`]; call once at start.
pub fn start_clock() {
    CLOCK.get_or_init(Instant::now);
}

/// Nanoseconds since the process started its clock: a timestamp that can travel in a job.
pub fn now_ns() -> u64 {
    CLOCK.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Completions of [`noop`] since the last [`NoopWatch::reset`].
static NOOP_DONE: AtomicU64 = AtomicU64::new(0);
/// How many completions [`NOOP_DONE_AT`] waits for.
static NOOP_TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
/// [`now_ns`] at the completion that reached the target.
static NOOP_DONE_AT: AtomicU64 = AtomicU64::new(0);
/// Woken when the target is reached.
static NOOP_FINISHED: Notify = Notify::const_new();

/// A job that does nothing but count itself.
#[dtask::task(queue = "bench", name = "b.noop")]
pub async fn noop(a: u64, b: u32) {
    count_noop(a, b);
}

/// The callback of a chord of [`noop`] members: how many there were.
#[dtask::task(queue = "bench", name = "b.count_noops")]
pub async fn count_noops(members: Vec<()>) -> usize {
    members.len()
}

/// [`noop`] as a fire-and-forget task: it keeps no result record (`result_ttl = "0s"`).
#[dtask::task(queue = "bench", name = "b.ff", result_ttl = "0s")]
pub async fn noop_forget(a: u64, b: u32) {
    count_noop(a, b);
}

/// [`noop`] for a task with a concurrency limit it never reaches (`max_running = 10000`, above
/// every concurrency the benchmark runs): what admitting each run costs.
#[dtask::task(queue = "bench", name = "b.lim", max_running = 10000)]
pub async fn noop_limited(a: u64, b: u32) {
    count_noop(a, b);
}

/// When each [`rated`] job started ([`now_ns`]).
static RATED_STARTS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// A job of a task with a rate limit: notes when it starts.
#[dtask::task(queue = "rate", name = "b.rate", rate = "100/s")]
pub async fn rated(a: u64, b: u32) {
    std::hint::black_box((a, b));
    RATED_STARTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(now_ns());
}

/// The earliest start of a [`rated`] job noted so far.
pub fn first_rated_start() -> Option<u64> {
    RATED_STARTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .min()
        .copied()
}

/// The starts of [`rated`] jobs noted so far, taken (sorted).
pub fn take_rated_starts() -> Vec<u64> {
    let mut starts = std::mem::take(&mut *RATED_STARTS.lock().unwrap_or_else(|e| e.into_inner()));
    starts.sort_unstable();
    starts
}

/// The queue of [`finish_time`].
pub const WAIT_QUEUE: &str = "wait";

/// Returns when it finished ([`now_ns`]): a waiter that gets the value knows how long after
/// the job's end it was woken.
#[dtask::task(queue = "wait", name = "b.wait")]
pub async fn finish_time(a: u64) -> u64 {
    std::hint::black_box(a);
    now_ns()
}

/// Which no-op task a queue is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoopKind {
    /// [`noop`]: keeps its result.
    Kept,
    /// [`noop_forget`]: keeps none.
    Forget,
    /// [`noop_limited`]: keeps its result, and each run is admitted under its limit.
    Limited,
}

fn count_noop(a: u64, b: u32) {
    std::hint::black_box((a, b));
    let done = NOOP_DONE.fetch_add(1, Ordering::AcqRel) + 1;
    if done == NOOP_TARGET.load(Ordering::Acquire) {
        NOOP_DONE_AT.store(now_ns(), Ordering::Release);
        NOOP_FINISHED.notify_one();
    }
}

/// Watches [`noop`] completions.
pub struct NoopWatch;

impl NoopWatch {
    /// Zeroes the count and waits for `target` completions from now on.
    pub fn reset(target: u64) {
        NOOP_DONE.store(0, Ordering::Release);
        NOOP_DONE_AT.store(0, Ordering::Release);
        NOOP_TARGET.store(target, Ordering::Release);
    }

    /// Completions since the last reset.
    pub fn done() -> u64 {
        NOOP_DONE.load(Ordering::Acquire)
    }

    /// Waits until the target is reached, at most `limit`; returns [`now_ns`] at the completion
    /// that reached it, or `None` on time-out.
    pub async fn finished(limit: Duration) -> Option<u64> {
        let wait = async {
            loop {
                let at = NOOP_DONE_AT.load(Ordering::Acquire);
                if at != 0 {
                    return at;
                }
                NOOP_FINISHED.notified().await;
            }
        };
        tokio::time::timeout(limit, wait).await.ok()
    }
}

/// Enqueue-to-start latencies recorded by [`lat`], in nanoseconds.
static LATENCIES: Mutex<Option<Histogram<u64>>> = Mutex::new(None);
/// Starts of [`lat`] since the last [`LatencyWatch::reset`].
static LAT_STARTED: AtomicU64 = AtomicU64::new(0);
/// Woken at every start of [`lat`].
static LAT_WOKEN: Notify = Notify::const_new();

/// A job that records how long after its enqueue it started: `sent_ns` is [`now_ns`] taken
/// just before the enqueue.
#[dtask::task(queue = "lat", name = "b.lat")]
pub async fn lat(sent_ns: u64, b: u32) {
    let latency = now_ns().saturating_sub(sent_ns);
    std::hint::black_box(b);
    if let Some(histogram) = LATENCIES.lock().expect("histogram lock").as_mut() {
        histogram.saturating_record(latency.max(1));
    }
    LAT_STARTED.fetch_add(1, Ordering::AcqRel);
    LAT_WOKEN.notify_one();
}

/// Watches [`lat`] starts and collects their latencies.
pub struct LatencyWatch;

impl LatencyWatch {
    /// Starts a new histogram (1 ns to 60 s, 3 significant digits) and zeroes the count.
    pub fn reset() {
        let histogram =
            Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds");
        *LATENCIES.lock().expect("histogram lock") = Some(histogram);
        LAT_STARTED.store(0, Ordering::Release);
    }

    /// Starts since the last reset.
    pub fn started() -> u64 {
        LAT_STARTED.load(Ordering::Acquire)
    }

    /// Waits until at least `count` jobs started since the last reset, at most `limit`; false
    /// on time-out.
    pub async fn wait_started(count: u64, limit: Duration) -> bool {
        let wait = async {
            while LatencyWatch::started() < count {
                LAT_WOKEN.notified().await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// The histogram recorded since the last reset.
    pub fn take() -> Option<Histogram<u64>> {
        LATENCIES.lock().expect("histogram lock").take()
    }
}

/// Starts of [`nap`] since the process began.
static NAP_STARTED: AtomicU64 = AtomicU64::new(0);
/// Ends of [`nap`] since the process began.
static NAP_DONE: AtomicU64 = AtomicU64::new(0);

/// A job that sleeps `millis`, to be held in flight.
#[dtask::task(queue = "nap", name = "b.nap")]
pub async fn nap(millis: u64, b: u32) {
    std::hint::black_box(b);
    NAP_STARTED.fetch_add(1, Ordering::AcqRel);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    NAP_DONE.fetch_add(1, Ordering::AcqRel);
}

/// Watches [`nap`] jobs.
pub struct NapWatch;

impl NapWatch {
    /// Jobs started so far.
    pub fn started() -> u64 {
        NAP_STARTED.load(Ordering::Acquire)
    }

    /// Jobs finished so far.
    pub fn done() -> u64 {
        NAP_DONE.load(Ordering::Acquire)
    }
}
