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
        parse(text).ok_or_else(|| Error::Config(format!("rate limit `{text}`: {EXPECTED}")))
    }
}

/// What a rate limit looks like, for error messages.
const EXPECTED: &str = "expected jobs per period, such as `10/s`, `600/m`, `5000/h` or `100/500ms`, optionally with ` burst 20`";

/// Reads a rate limit written as `#[task(rate = "..")]` takes it, in a constant (the compiler
/// refuses a malformed one with [`EXPECTED`]).
#[doc(hidden)]
pub const fn __task_rate(text: &str) -> RateLimit {
    match parse(text) {
        Some(limit) => limit,
        None => panic!(
            "#[task(rate = \"..\")]: expected jobs per period, such as `10/s`, `600/m`, `5000/h` or `100/500ms`, optionally with ` burst 20`"
        ),
    }
}

/// Parses `jobs/period[ burst n]`; None when `text` is not one. A `const fn`, so that a task's
/// rate is checked when its binary compiles.
const fn parse(text: &str) -> Option<RateLimit> {
    let bytes = text.as_bytes();
    let mut at = skip_spaces(bytes, 0);
    let Some((jobs, next)) = number(bytes, at) else {
        return None;
    };
    at = skip_spaces(bytes, next);
    if at >= bytes.len() || bytes[at] != b'/' {
        return None;
    }
    at = skip_spaces(bytes, at + 1);
    let (count, next) = match number(bytes, at) {
        Some(found) => found,
        None => (1, at),
    };
    at = next;
    let unit_ms: u64 = if starts_with(bytes, at, b"ms") {
        at += 2;
        1
    } else if starts_with(bytes, at, b"s") {
        at += 1;
        1_000
    } else if starts_with(bytes, at, b"m") {
        at += 1;
        60_000
    } else if starts_with(bytes, at, b"h") {
        at += 1;
        3_600_000
    } else {
        return None;
    };
    at = skip_spaces(bytes, at);
    let mut burst = 1;
    if at < bytes.len() {
        if !starts_with(bytes, at, b"burst") {
            return None;
        }
        at = skip_spaces(bytes, at + 5);
        let Some((n, next)) = number(bytes, at) else {
            return None;
        };
        if n == 0 || n > u32::MAX as u64 {
            return None;
        }
        burst = n as u32;
        at = skip_spaces(bytes, next);
        if at < bytes.len() {
            return None;
        }
    }
    if jobs == 0 || jobs > u32::MAX as u64 || count == 0 {
        return None;
    }
    let per_ms = count.saturating_mul(unit_ms);
    let per_ms = if per_ms > RateLimit::MAX_PER.as_millis() as u64 {
        RateLimit::MAX_PER.as_millis() as u64
    } else {
        per_ms
    };
    Some(RateLimit {
        jobs: jobs as u32,
        per: Duration::from_millis(per_ms),
        burst,
    })
}

const fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at] == b' ' {
        at += 1;
    }
    at
}

const fn starts_with(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    if at + word.len() > bytes.len() {
        return false;
    }
    let mut i = 0;
    while i < word.len() {
        if bytes[at + i] != word[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The decimal number at `at` (at most 18 digits) and where it ends.
const fn number(bytes: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let start = at;
    let mut value: u64 = 0;
    while at < bytes.len() && bytes[at].is_ascii_digit() {
        if at - start >= 18 {
            return None;
        }
        value = value * 10 + (bytes[at] - b'0') as u64;
        at += 1;
    }
    if at == start { None } else { Some((value, at)) }
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
        assert_eq!(
            __task_rate("5/2m burst 3"),
            RateLimit::new(5, Duration::from_secs(120)).burst(3)
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
            "10/s burst 2 x",
            "10/sx",
            "10/s/s",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }
}
