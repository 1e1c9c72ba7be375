//! The tasks the integration tests enqueue. In-process tests observe them through [`runs`];
//! worker processes record their effects in Redis (see [`mark`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

static RUNS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static ATTEMPTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// Records that a task ran for `key` with `detail`.
fn record(key: &str, detail: impl Into<String>) {
    RUNS.lock().unwrap().push((key.to_owned(), detail.into()));
}

/// Every run recorded for `key`, in order, as details.
pub fn runs(key: &str) -> Vec<String> {
    RUNS.lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, d)| d.clone())
        .collect()
}

/// How many attempts ran for `key` in this process.
pub fn attempts(key: &str) -> u32 {
    let attempts = ATTEMPTS.lock().unwrap();
    attempts
        .as_ref()
        .and_then(|attempts| attempts.get(key).copied())
        .unwrap_or(0)
}

/// Counts an attempt for `key` and returns its number (1 for the first).
fn attempt(key: &str) -> u32 {
    let mut attempts = ATTEMPTS.lock().unwrap();
    let count = attempts
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_insert(0);
    *count += 1;
    *count
}

/// A struct argument, to show structs travel intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signup {
    /// A number.
    pub user_id: u64,
    /// Text that may hold any Unicode.
    pub email: String,
    /// Optional data.
    pub tags: Vec<String>,
}

/// Returns its arguments, so a test can compare what came out of the worker with what went in.
#[dtask::task(queue = "roundtrip")]
pub async fn echo(signup: Signup, note: String, blob: Vec<u8>) -> (Signup, String, Vec<u8>) {
    (signup, note, blob)
}

/// Adds two numbers, and records the run under `key`.
#[dtask::task(queue = "math")]
pub async fn add(key: String, a: i64, b: i64) -> i64 {
    record(&key, format!("{a}+{b}"));
    a + b
}

/// A task without arguments or result.
#[dtask::task(queue = "math", name = "tests.ping")]
pub async fn ping() {}

/// The task the Python and Node producers enqueue (tests/interop.rs): a greeting from its
/// arguments, the last of which a producer may leave out.
#[dtask::task(queue = "interop", name = "interop.greet")]
pub async fn interop_greet(name: String, times: u32, note: Option<String>) -> String {
    let greeting = vec![format!("hello {name}"); times as usize].join(", ");
    match note {
        Some(note) => format!("{greeting} ({note})"),
        None => greeting,
    }
}

/// The error of the failing tasks.
#[derive(Debug, thiserror::Error)]
#[error("flaky failure number {0}")]
pub struct FlakyError(pub u32);

/// Fails its first `failures` attempts for `key`, then returns the attempt number.
#[dtask::task(queue = "flaky", retries = 5)]
pub async fn flaky(key: String, failures: u32) -> Result<u32, FlakyError> {
    let n = attempt(&key);
    if n <= failures {
        Err(FlakyError(n))
    } else {
        Ok(n)
    }
}

/// Always fails with `message`; 2 retries.
#[dtask::task(queue = "doomed", retries = 2)]
pub async fn doomed(key: String, message: String) -> Result<(), String> {
    attempt(&key);
    Err(message)
}

/// A `Result` under another name, as a user might write it.
pub type TaskResult = Result<(), String>;

/// Always fails, through an alias of `Result`: retried and buried like [`doomed`].
#[dtask::task(queue = "doomed", retries = 2)]
pub async fn doomed_by_alias(key: String, message: String) -> TaskResult {
    attempt(&key);
    Err(message)
}

/// Fails with a boxed error (only `Display` is asked of an error) until attempt 2, then
/// returns how many attempts it took.
#[dtask::task(queue = "doomed", retries = 2)]
pub async fn boxed_error(key: String) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n = attempt(&key);
    if n < 2 {
        return Err(format!("not yet ({n})").into());
    }
    Ok(n)
}

/// Divides: 0.0 / 0.0 returns NaN, which JSON cannot carry.
#[dtask::task(queue = "math", retries = 0)]
pub async fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

/// Panics on its first attempt for `key`, then succeeds.
#[dtask::task(queue = "panicky", retries = 3)]
pub async fn panics_once(key: String) -> u32 {
    let n = attempt(&key);
    if n == 1 {
        panic!("boom on attempt {n}");
    }
    n
}

/// Sleeps past its 200 ms timeout on its first attempt for `key`, then succeeds.
#[dtask::task(queue = "slow", retries = 3, timeout = "200ms")]
pub async fn hangs_once(key: String) -> u32 {
    let n = attempt(&key);
    if n == 1 {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    n
}

/// Records its run under `key` with `label`; used to observe the order jobs run in.
#[dtask::task(queue = "low")]
pub async fn note(key: String, label: String) {
    record(&key, label);
}

/// Sleeps `millis`, then counts a run of `job` in Redis (`INCR <job>`, at `DTASK_REDIS_URL`).
/// Run by worker processes, so that a test sees effects across processes.
#[dtask::task(queue = "marks", retries = 5)]
pub async fn mark(job: String, millis: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    let mut conn = test_redis().await?;
    redis::cmd("INCR")
        .arg(&job)
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A connection to the Redis at `DTASK_REDIS_URL`, for tasks that leave their effects there.
async fn test_redis() -> Result<redis::aio::MultiplexedConnection, String> {
    let url = std::env::var("DTASK_REDIS_URL").map_err(|e| e.to_string())?;
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

/// One run at a time across every worker (`max_running = 1`): counts itself running in Redis
/// (`<group>:running`; a second run at once is noted in `<group>:overlaps`), sleeps `millis`,
/// then counts itself out and `<group>:done:<n>` up.
#[dtask::task(queue = "solo", max_running = 1)]
pub async fn solo(group: String, n: u32, millis: u64) -> Result<(), String> {
    let mut conn = test_redis().await?;
    let running: i64 = redis::cmd("INCR")
        .arg(format!("{group}:running"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if running > 1 {
        redis::cmd("RPUSH")
            .arg(format!("{group}:overlaps"))
            .arg(format!("{n} ran beside {} other(s)", running - 1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::time::sleep(Duration::from_millis(millis)).await;
    redis::pipe()
        .cmd("DECR")
        .arg(format!("{group}:running"))
        .cmd("INCR")
        .arg(format!("{group}:done:{n}"))
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// Arguments whose field names are those of dtask's own envelope (`n` attempts, `d` deaths):
/// nothing may read them as such.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookAlike {
    /// Not an attempt count.
    pub n: u32,
    /// Not a death count.
    pub d: u32,
}

/// Aborts the whole process: a poison job.
#[dtask::task(queue = "poison")]
pub async fn abort_process(_look_alike: LookAlike) {
    std::process::abort();
}

/// Records its run under `key`; keeps no result.
#[dtask::task(queue = "math", result_ttl = "0s")]
pub async fn fire_and_forget(key: String) {
    record(&key, "ran");
}

/// Returns `n`; its result is kept for 300 ms only.
#[dtask::task(queue = "math", result_ttl = "300ms")]
pub async fn short_lived(n: u32) -> u32 {
    n
}

/// Blocks its thread (not the async way) for `millis`, then records `"ran"` for `key`: a
/// handler that starves the runtime it runs on.
#[dtask::task(queue = "blocking", retries = 0)]
pub async fn block_thread(key: String, millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
    record(&key, "ran");
}

static GATES: Mutex<Option<HashMap<String, std::sync::Arc<tokio::sync::Notify>>>> =
    Mutex::new(None);

fn gate(key: &str) -> std::sync::Arc<tokio::sync::Notify> {
    GATES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .clone()
}

/// Lets the first run of [`gated`] for `key` go on.
pub fn open_gate(key: &str) {
    gate(key).notify_one();
}

/// Its first run for `key` records `"first started"`, waits for [`open_gate`], records `"first
/// failed"` and fails; every later run records `"ran"` and returns its run number.
#[dtask::task(queue = "gated", retries = 3)]
pub async fn gated(key: String) -> Result<u32, String> {
    let run = attempt(&key);
    if run == 1 {
        record(&key, "first started");
        gate(&key).notified().await;
        record(&key, "first failed");
        return Err("the first run failed late".into());
    }
    record(&key, "ran");
    Ok(run)
}

/// Records `"started"` for `key`, waits for [`open_gate`], then returns 42.
#[dtask::task(queue = "gated-answer", retries = 0)]
pub async fn gated_answer(key: String) -> u32 {
    record(&key, "started");
    gate(&key).notified().await;
    42
}

/// Sleeps `millis` (the async way), then records `"ran"` for `key`.
#[dtask::task(queue = "naps", retries = 0)]
pub async fn nap(key: String, millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record(&key, "ran");
}

/// A member of a workflow run by worker processes: counts its run in Redis (`<key>:runs`),
/// sleeps `millis`, returns its number.
#[dtask::task(queue = "marks", retries = 5)]
pub async fn mark_part(key: String, n: u32, millis: u64) -> Result<MarkedPart, String> {
    let mut conn = test_redis().await?;
    redis::cmd("INCR")
        .arg(format!("{key}:runs"))
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Ok(MarkedPart { key, n })
}

/// What [`mark_part`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, dtask::TaskOutput)]
pub struct MarkedPart {
    /// The workflow's key.
    pub key: String,
    /// The member's number.
    pub n: u32,
}

/// A chord's callback run by worker processes: counts its run in Redis (`<key>:callbacks`)
/// and checks that it got every member once, in order; returns how many.
#[dtask::task(queue = "marks", retries = 5)]
pub async fn count_parts(parts: Vec<MarkedPart>) -> Result<u32, String> {
    let key = parts.first().map(|p| p.key.clone()).unwrap_or_default();
    let mut conn = test_redis().await?;
    redis::cmd("INCR")
        .arg(format!("{key}:callbacks"))
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if parts.iter().enumerate().any(|(i, p)| p.n != i as u32) {
        return Err("the parts are not every member once, in order".into());
    }
    Ok(parts.len() as u32)
}

/// Negates `n` (a step of the workflows that cross queues).
#[dtask::task(queue = "roundtrip")]
pub async fn negate(n: i64) -> i64 {
    -n
}

/// Sums `numbers` (the callback of the chords that cross queues).
#[dtask::task(queue = "roundtrip")]
pub async fn total(numbers: Vec<i64>) -> i64 {
    numbers.iter().sum()
}
