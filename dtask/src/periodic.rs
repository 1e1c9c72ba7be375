//! Periodic jobs: a task's job enqueued on a cron schedule, in a time zone, exactly once per
//! tick however many workers run the schedule. This module owns the public side ([`Periodic`],
//! [`periodic`], [`Missed`], [`PeriodicInfo`]) and the calendar arithmetic ([`Schedule`]);
//! the loop that claims the ticks is `worker::scheduler`.
//!
//! Ticks follow the schedule's time zone through daylight-saving changes as
//! [`croner`](https://docs.rs/croner) (the Open Cron Pattern Specification) defines: a
//! fixed-time job (a given hour and minute) whose time is skipped by a spring-forward runs at
//! the first instant after the gap, and runs once when a fall-back repeats its time; an interval
//! job (`*` or a step in the hour) runs at every instant the pattern matches, both passes of a
//! repeated hour included.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone};
use croner::Cron;

use crate::enqueue::Call;
use crate::error::Error;
use crate::registry::TaskInfo;
use serde_json::value::RawValue;

/// What a schedule does about the ticks it missed while no worker ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// One job for all the ticks missed, as soon as a worker is back (never one per tick).
    #[default]
    FireOnce,
    /// None: a tick more than a minute old when a worker comes back is skipped.
    Skip,
}

impl Missed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Missed::FireOnce => "fire-once",
            Missed::Skip => "skip",
        }
    }
}

/// A job to enqueue on a cron schedule: made by [`periodic`] (a task with arguments) or by
/// `#[task(cron = "..")]` (a task without), and run by giving it to
/// [`Worker::periodic`](crate::Worker::periodic).
///
/// Every worker that has the schedule keeps it; each tick is claimed in Redis, on the server's
/// clock, by one of them, which enqueues the job: exactly once per tick, whichever workers are
/// up. The schedule's name identifies it in its queue: give each its own.
#[derive(Debug)]
#[must_use = "a periodic job runs once it is given to `Worker::periodic`"]
pub struct Periodic {
    pub(crate) name: String,
    pub(crate) cron: String,
    pub(crate) tz: Option<String>,
    pub(crate) missed: Missed,
    pub(crate) job: Result<PeriodicJob, Error>,
}

/// What each tick enqueues.
#[derive(Debug)]
pub(crate) struct PeriodicJob {
    pub(crate) info: &'static TaskInfo,
    pub(crate) queue: String,
    pub(crate) retries: Option<u32>,
    pub(crate) args: Box<RawValue>,
    /// Headers of the call's options (a timeout of its own).
    pub(crate) headers: Vec<(&'static str, String)>,
}

/// A periodic job named `name` that enqueues `job` (`my_task::call(args..)`, with options from
/// `my_task::with()..call(args..)`) at every tick of `cron`: six fields, `sec min hour
/// day-of-month month day-of-week`, or five without the seconds; in UTC unless given
/// [`Periodic::tz`].
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] enum Region { Eu }
/// #[dtask::task(queue = "reports")]
/// async fn report(region: Region) {}
///
/// # async fn demo() -> Result<(), dtask::Error> {
/// dtask::Worker::from_env()?
///     .periodic(
///         dtask::periodic("hourly-eu-report", "0 0 * * * *", report::call(Region::Eu))
///             .tz("Europe/Berlin"),
///     )
///     .run()
///     .await
/// # }
/// # fn main() {}
/// ```
///
/// Mistakes (a bad pattern or zone, arguments that do not serialize, a delay) are reported by
/// the worker, which then does not start.
pub fn periodic<O>(name: impl Into<String>, cron: impl Into<String>, job: Call<O>) -> Periodic {
    Periodic {
        name: name.into(),
        cron: cron.into(),
        tz: None,
        missed: Missed::default(),
        job: job.into_periodic(),
    }
}

impl Periodic {
    /// The schedule of a task declared with `#[task(cron = "..")]`, named after the task.
    pub(crate) fn of_task(info: &'static TaskInfo, cron: &str, tz: Option<&str>) -> Periodic {
        Periodic {
            name: info.name.to_owned(),
            cron: cron.to_owned(),
            tz: tz.map(str::to_owned),
            missed: Missed::default(),
            job: Ok(PeriodicJob {
                info,
                queue: info.queue.to_owned(),
                retries: None,
                args: RawValue::from_string("null".to_owned()).expect("valid JSON"),
                headers: Vec::new(),
            }),
        }
    }

    /// Reads the pattern in the IANA time zone `tz` (`"Europe/Berlin"`) instead of UTC.
    pub fn tz(mut self, tz: impl Into<String>) -> Periodic {
        self.tz = Some(tz.into());
        self
    }

    /// What to do about ticks missed while no worker ran the schedule (default
    /// [`Missed::FireOnce`]).
    pub fn missed(mut self, missed: Missed) -> Periodic {
        self.missed = missed;
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next `count` ticks after `after`, to check a pattern and zone; an error names what is
    /// wrong with them.
    pub fn next_ticks(&self, after: SystemTime, count: usize) -> Result<Vec<SystemTime>, Error> {
        let schedule = self.schedule()?;
        let mut ticks = Vec::with_capacity(count);
        let mut at = to_ms(after);
        while ticks.len() < count {
            let Some(next) = schedule.next_after(at) else {
                break;
            };
            ticks.push(UNIX_EPOCH + Duration::from_millis(next));
            at = next;
        }
        Ok(ticks)
    }

    /// The parsed pattern and zone, or an error that names the schedule.
    pub(crate) fn schedule(&self) -> Result<Schedule, Error> {
        Schedule::parse(&self.cron, self.tz.as_deref())
            .map_err(|reason| Error::Config(format!("periodic job `{}`: {reason}", self.name)))
    }
}

/// A periodic job as operators see it ([`Client::periodic_jobs`](crate::Client::periodic_jobs)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeriodicInfo {
    /// The schedule's name.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The task its jobs run.
    pub task: String,
    /// Its cron pattern.
    pub cron: String,
    /// Its time zone (`UTC` unless set).
    pub tz: String,
    /// What it does about missed ticks: `fire-once` or `skip`.
    pub missed: String,
    /// The last tick claimed, when one was.
    pub last_tick: Option<SystemTime>,
    /// The next tick, as of the last claim or worker start.
    pub next_tick: Option<SystemTime>,
}

/// A parsed cron pattern read in a time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// Parses `pattern` (five or six fields) in `tz` (an IANA name; UTC when None).
    pub(crate) fn parse(pattern: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let cron = Cron::from_str(pattern)
            .map_err(|error| format!("invalid cron pattern `{pattern}`: {error}"))?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                format!(
                    "unknown time zone `{name}` (expected an IANA name such as `Europe/Berlin`)"
                )
            })?,
        };
        Ok(Schedule { cron, tz })
    }

    fn at(&self, ms: u64) -> Option<DateTime<chrono_tz::Tz>> {
        // Whole seconds: the finest a pattern goes.
        let secs = i64::try_from(ms / 1000).ok()?;
        self.tz.timestamp_opt(secs, 0).single()
    }

    /// The first tick strictly after `ms` (ms since the epoch), if there is one.
    pub(crate) fn next_after(&self, ms: u64) -> Option<u64> {
        let next = self.cron.find_next_occurrence(&self.at(ms)?, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last tick at or before `ms`, if there is one.
    pub(crate) fn latest_at_or_before(&self, ms: u64) -> Option<u64> {
        let latest = self
            .cron
            .find_previous_occurrence(&self.at(ms)?, true)
            .ok()?;
        u64::try_from(latest.timestamp_millis()).ok()
    }
}

fn to_ms(time: SystemTime) -> u64 {
    crate::clock::to_ms(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn utc(ms: u64) -> String {
        DateTime::from_timestamp_millis(ms as i64)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn ticks_follow_the_pattern_in_its_zone() {
        let every_second = Schedule::parse("* * * * * *", None).unwrap();
        let at = ms("2026-11-30T10:00:00.400Z");
        assert_eq!(
            utc(every_second.next_after(at).unwrap()),
            "2026-11-30T10:00:01+00:00"
        );
        assert_eq!(
            utc(every_second.latest_at_or_before(at).unwrap()),
            "2026-11-30T10:00:00+00:00"
        );
        // Five fields: minutes.
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        assert_eq!(
            utc(hourly.next_after(at).unwrap()),
            "2026-11-30T11:00:00+00:00"
        );
        // 07:00 in Berlin is 06:00 UTC in winter and 05:00 UTC in summer.
        let digest = Schedule::parse("0 0 7 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            utc(digest.next_after(at).unwrap()),
            "2026-12-01T06:00:00+00:00"
        );
        let summer = ms("2026-07-01T12:00:00Z");
        assert_eq!(
            utc(digest.next_after(summer).unwrap()),
            "2026-07-02T05:00:00+00:00"
        );
    }

    #[test]
    fn daylight_saving_changes_behave_as_documented() {
        // Berlin springs forward on 2026-03-29 at 02:00 to 03:00: 02:30 does not exist, so a
        // fixed-time job runs at the first instant after the gap (03:00 CEST = 01:00 UTC).
        let half_past_two = Schedule::parse("0 30 2 * * *", Some("Europe/Berlin")).unwrap();
        let before = ms("2026-03-28T12:00:00Z");
        assert_eq!(
            utc(half_past_two.next_after(before).unwrap()),
            "2026-03-29T01:00:00+00:00"
        );
        // Berlin falls back on 2026-10-25 at 03:00 to 02:00: 02:30 happens twice; a fixed-time
        // job runs once, at the first (00:30 UTC), then the next day.
        let before = ms("2026-10-24T12:00:00Z");
        let first = half_past_two.next_after(before).unwrap();
        assert_eq!(utc(first), "2026-10-25T00:30:00+00:00");
        assert_eq!(
            utc(half_past_two.next_after(first).unwrap()),
            "2026-10-26T01:30:00+00:00"
        );
        // An interval job runs on both passes of the repeated hour.
        let every_half_hour = Schedule::parse("0 */30 * * * *", Some("Europe/Berlin")).unwrap();
        let mut at = ms("2026-10-25T00:00:00Z"); // 02:00 CEST
        let mut ticks = Vec::new();
        for _ in 0..4 {
            at = every_half_hour.next_after(at).unwrap();
            ticks.push(utc(at));
        }
        assert_eq!(
            ticks,
            [
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:30:00+00:00",
                "2026-10-25T02:00:00+00:00"
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let error = Schedule::parse("0 0 25 * * *", None).unwrap_err();
        assert!(
            error.contains("invalid cron pattern `0 0 25 * * *`"),
            "{error}"
        );
        let error = Schedule::parse("0 0 7 * * *", Some("Europe/Berlinn")).unwrap_err();
        assert!(
            error.contains("unknown time zone `Europe/Berlinn`"),
            "{error}"
        );
        assert!(Schedule::parse("nonsense", None).is_err());
    }
}
