//! Wall-clock time: the [`Clock`] a worker stamps records with and measures how long a job has
//! waited by (tests can give it one of their own), in the unit Redis scores use, milliseconds
//! since the Unix epoch.
//!
//! What decides when a job runs (delays, retries, heartbeats, recovery) reads the Redis
//! server's clock instead, so that no machine's clock can run a job early or late.

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a worker reads the time of day.
///
/// The default, [`SystemClock`], is this machine's clock. A test gives a worker a clock of its
/// own with [`Worker::clock`](crate::Worker::clock) to make time pass without waiting:
///
/// ```no_run
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::{Duration, SystemTime};
///
/// /// This machine's clock, moved forward by however many seconds the test says.
/// #[derive(Debug, Default, Clone)]
/// struct AheadClock(Arc<AtomicU64>);
///
/// impl dtask::Clock for AheadClock {
///     fn now(&self) -> SystemTime {
///         SystemTime::now() + Duration::from_secs(self.0.load(Ordering::Relaxed))
///     }
/// }
///
/// # async fn demo(client: dtask::Client) {
/// let clock = AheadClock::default();
/// let worker = dtask::Worker::new(&client).clock(clock.clone()).spawn();
/// // A job of a task this binary lacks is put off ...
/// clock.0.store(16 * 60, Ordering::Relaxed);
/// // ... and buried on its next attempt: its 15 minutes of grace have passed.
/// # }
/// ```
pub trait Clock: Debug + Send + Sync + 'static {
    /// The time of day now.
    fn now(&self) -> SystemTime;

    /// Milliseconds since the Unix epoch now.
    fn now_ms(&self) -> u64 {
        to_ms(self.now())
    }
}

/// This machine's clock, the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch, now, on this machine's clock.
pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch at `time` (0 for times before the epoch).
pub(crate) fn to_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// `time` as `YYYY-MM-DD HH:MM:SS` in UTC, for operators' tools (the CLI, the dashboard).
#[cfg_attr(not(any(feature = "cli", feature = "dashboard")), allow(dead_code))]
pub(crate) fn utc_text(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
#[cfg_attr(not(any(feature = "cli", feature = "dashboard")), allow(dead_code))]
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
