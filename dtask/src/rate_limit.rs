//! [`RateLimit`]: how many jobs of a queue may start per period, across every worker. The
//! budget is a token bucket in Redis, refilled on the server's clock and drawn from by the
//! fetch and adopt scripts (`rate.lua`): jobs over the limit wait in the queue, are not
//! attempts, and start as soon as the budget allows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// At most `jobs` job starts per `per` in one queue, whichever workers run them, with up to
/// `burst` at once after a quiet spell (default 1: evenly spaced). Over any window of length
/// `per`, at most `jobs + burst` start. Above a few hundred jobs per second, give a burst of a
/// few (each fetch takes at most what the bucket holds).
///
/// ```
/// use std::time::Duration;
/// let limit: dtask::RateLimit = "10/s".parse().unwrap();
/// assert_eq!(limit, dtask::RateLimit::new(10, Duration::from_secs(1)));
/// let bursty = dtask::RateLimit::new(600, Duration::from_secs(60)).burst(20);
/// assert_eq!(bursty.to_string(), "600/60s burst 20");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    jobs: u32,
    per: Duration,
    burst: u32,
}

impl RateLimit {
    /// The longest period: about 35 years.
    const MAX_PER: Duration = Duration::from_millis(1 << 40);

    /// At most `jobs` starts per `per` (at least 1 job, and a period from 1 ms to about 35
    /// years), evenly spaced.
    pub fn new(jobs: u32, per: Duration) -> RateLimit {
        RateLimit {
            jobs: jobs.max(1),
            per: per.clamp(Duration::from_millis(1), Self::MAX_PER),
            burst: 1,
        }
    }

    /// Lets up to `burst` jobs start at once after a quiet spell (at least 1).
    pub fn burst(mut self, burst: u32) -> RateLimit {
        self.burst = burst.max(1);
        self
    }

    /// Jobs per period.
    pub fn jobs(&self) -> u32 {
        self.jobs
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// Jobs that may start at once.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    pub(crate) fn per_ms(&self) -> u64 {
        self.per.as_millis().clamp(1, u128::from(u64::MAX)) as u64
    }

    pub(crate) fn from_parts(jobs: u32, per_ms: u64, burst: u32) -> RateLimit {
        RateLimit::new(jobs, Duration::from_millis(per_ms)).burst(burst)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.jobs, self.per)?;
        if self.burst > 1 {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for RateLimit {
    type Err = Error;

    /// `10/s`, `600/m`, `5000/h`, `100/500ms`, optionally followed by ` burst 20`.
    fn from_str(text: &str) -> Result<RateLimit, Error> {
        let bad = || {
            Error::Config(format!(
                "rate limit `{text}`: expected jobs per period, such as `10/s`, `600/m`, `5000/h` or `100/500ms`, optionally with ` burst 20`"
            ))
        };
        let (rate, burst) = match text.split_once("burst") {
            Some((rate, burst)) => (rate, Some(burst.trim().parse::<u32>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let (jobs, per) = rate.trim().split_once('/').ok_or_else(bad)?;
        let jobs: u32 = jobs.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let unit_at = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (count, unit) = per.split_at(unit_at);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad())?
        };
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        if jobs == 0 || count == 0 {
            return Err(bad());
        }
        let limit = RateLimit::new(jobs, Duration::from_millis(count.saturating_mul(unit_ms)));
        Ok(match burst {
            Some(burst) if burst > 0 => limit.burst(burst),
            Some(_) => return Err(bad()),
            None => limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_written() {
        let second = Duration::from_secs(1);
        assert_eq!(
            "10/s".parse::<RateLimit>().unwrap(),
            RateLimit::new(10, second)
        );
        assert_eq!(
            "600 / m burst 20".parse::<RateLimit>().unwrap(),
            RateLimit::new(600, Duration::from_secs(60)).burst(20)
        );
        assert_eq!(
            "100/500ms".parse::<RateLimit>().unwrap(),
            RateLimit::new(100, Duration::from_millis(500))
        );
        for bad in [
            "",
            "10",
            "10/",
            "x/s",
            "0/s",
            "10/d",
            "10/s burst",
            "10/s burst 0",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }
}
