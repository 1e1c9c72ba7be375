//! What a scenario reports: one line of figures, the invariants it broke, and the final summary
//! table.

use std::fmt;
use std::time::Duration;

/// The figures of one scenario run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Scenario number (1-11).
    pub number: u8,
    /// Scenario name.
    pub name: &'static str,
    /// Jobs whose enqueue returned `Ok` (for scenario 6, bad payloads pushed as well).
    pub enqueued: u64,
    /// Enqueued jobs that ran at least once (for scenario 6, bad payloads buried as well).
    pub done: u64,
    /// Enqueued jobs that neither ran nor reached the dead set.
    pub lost: u64,
    /// Runs beyond the first, summed over jobs.
    pub duplicates: u64,
    /// Faults injected (kills, freezes, crashes, deaths, bad payloads, signals).
    pub faults: u64,
    /// The scenario's recovery time (see each scenario), when it has one.
    pub recovery: Option<Duration>,
    /// How long the scenario took.
    pub duration: Duration,
    /// The invariants it broke; empty when it passed.
    pub failures: Vec<String>,
    /// Other facts worth printing (one line each).
    pub notes: Vec<String>,
}

impl Figures {
    /// Empty figures for scenario `number`.
    pub fn new(number: u8, name: &'static str) -> Figures {
        Figures {
            number,
            name,
            ..Figures::default()
        }
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Records a broken invariant unless `holds`.
    pub fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.failures.push(what());
        }
    }

    /// Records a fact worth printing.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// Seconds with two decimals, or `-`.
fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

impl fmt::Display for Figures {
    /// The one line of figures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario={} {} enqueued={} done={} lost={} duplicates={} faults={} recovery={} duration={:.1}s {}",
            self.number,
            self.name,
            self.enqueued,
            self.done,
            self.lost,
            self.duplicates,
            self.faults,
            secs(self.recovery),
            self.duration.as_secs_f64(),
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Prints the summary table of every scenario run.
pub fn print_summary(all: &[Figures], total: Duration) {
    println!();
    println!(
        "{:>2}  {:<16} {:>9} {:>9} {:>5} {:>5} {:>6} {:>9} {:>9}  result",
        "#", "scenario", "enqueued", "done", "lost", "dups", "faults", "recovery", "duration"
    );
    for s in all {
        println!(
            "{:>2}  {:<16} {:>9} {:>9} {:>5} {:>5} {:>6} {:>9} {:>8.1}s  {}",
            s.number,
            s.name,
            s.enqueued,
            s.done,
            s.lost,
            s.duplicates,
            s.faults,
            secs(s.recovery),
            s.duration.as_secs_f64(),
            if s.passed() { "PASS" } else { "FAIL" }
        );
    }
    let failed = all.iter().filter(|s| !s.passed()).count();
    println!(
        "{} scenario(s), {} failed, {:.1}s in all",
        all.len(),
        failed,
        total.as_secs_f64()
    );
}
