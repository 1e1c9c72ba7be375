//! What the benchmark prints: a table per scenario (a row per size or setting) and the baseline
//! lines, on stdout; or, with `--json`, one JSON object per scenario run per line on stdout and
//! the tables on stderr.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::baseline::{Baseline, Figure, PIPELINE};
use crate::floor::Floors;
use crate::redis_stats::Delta;

/// Enqueue-to-start latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest sample.
    pub max: f64,
    /// Samples recorded.
    pub samples: u64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn of(histogram: &hdrhistogram::Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            samples: histogram.len(),
        }
    }
}

/// The worker process's resident memory, in MiB, from `/proc/self/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Rss {
    /// `VmRSS` before the worker started.
    pub before_mib: f64,
    /// `VmRSS` once every job was running.
    pub running_mib: f64,
    /// The difference.
    pub delta_mib: f64,
    /// The difference per job in flight, in KiB.
    pub delta_kib_per_job: f64,
    /// `VmHWM`, the peak, at the end.
    pub peak_mib: f64,
    /// Seconds from the worker's start until every job was running.
    pub ramp_seconds: f64,
    /// Jobs running at once when the last one started.
    pub running_at_once: u64,
}

/// The measurements of one scenario run: one row of a table, one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's number, 1 to 6.
    pub scenario: u8,
    /// The scenario's short name.
    pub name: &'static str,
    /// Jobs in the run.
    pub jobs: u64,
    /// Worker concurrency, for scenarios with a worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Wall-clock seconds of the measured part.
    pub seconds: f64,
    /// Jobs per second over the measured part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_per_s: Option<f64>,
    /// Commands Redis ran per job, script-internal ones included.
    pub redis_cmds_per_job: f64,
    /// Redis CPU time (user + system) per job, in microseconds.
    pub redis_cpu_us_per_job: f64,
    /// CPU time (user + system) of the dtask process per job, in microseconds: the client and,
    /// in scenarios with a worker, the worker (in scenario 6, the worker's child process).
    pub dtask_cpu_us_per_job: f64,
    /// Growth of Redis `used_memory` per queued job, after an enqueue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_job: Option<f64>,
    /// Growth of Redis `used_memory` per job left behind after a drain (result records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes_per_job: Option<f64>,
    /// Enqueue-to-start latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Latency>,
    /// In scenario 11, redis-benchmark's unpipelined LPOP rate measured just before this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_lpop: Option<f64>,
    /// Worker memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<Rss>,
    /// Commands per job, by command, as Redis counted them.
    pub redis_calls_per_job: BTreeMap<String, f64>,
    /// Average Redis time per call of each command, in microseconds (`INFO commandstats`).
    pub redis_usec_per_call: BTreeMap<String, f64>,
    /// A rate limit's run: the limit, and the most jobs that started within one second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateRun>,
    /// Anything a reader should know about this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a run under a rate limit achieved, next to the limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateRun {
    /// Workers sharing the limit.
    pub workers: usize,
    /// The limit, in jobs per second.
    pub limit_per_s: f64,
    /// Its burst.
    pub burst: u32,
    /// The most jobs that started within any one second.
    pub busiest_second: usize,
}

impl Outcome {
    /// An outcome of `jobs` jobs over `seconds`, with the Redis-side figures of `delta`.
    pub fn new(scenario: u8, name: &'static str, jobs: u64, seconds: f64, delta: &Delta) -> Self {
        let per_job = jobs.max(1) as f64;
        Outcome {
            scenario,
            name,
            jobs,
            concurrency: None,
            seconds,
            jobs_per_s: None,
            redis_cmds_per_job: delta.total_calls() as f64 / per_job,
            redis_cpu_us_per_job: delta.cpu_seconds * 1e6 / per_job,
            dtask_cpu_us_per_job: delta.process_cpu_seconds * 1e6 / per_job,
            bytes_per_job: None,
            retained_bytes_per_job: None,
            latency_us: None,
            paired_lpop: None,
            rss: None,
            redis_calls_per_job: delta.calls_per_job(jobs).into_iter().collect(),
            redis_usec_per_call: delta.usec_per_call(),
            rate_limit: None,
            note: None,
        }
    }

    /// The same, with its throughput set from jobs and seconds.
    pub fn with_rate(mut self) -> Self {
        self.jobs_per_s = Some(self.jobs as f64 / self.seconds.max(1e-9));
        self
    }
}

/// Where results go, and the baseline to compare them with.
pub struct Report {
    json: bool,
    baseline: Baseline,
}

impl Report {
    /// A report in tables only, or in JSON lines (tables to stderr) when `json`.
    pub fn new(json: bool) -> Report {
        Report {
            json,
            baseline: Baseline::default(),
        }
    }

    /// Prints the baseline and keeps it for the ratios of later tables.
    pub fn baseline(&mut self, baseline: Baseline) {
        let mut text = String::from(
            "\n== baseline: redis-benchmark -t lpush,lpop -n 200000 -c 50 on this Redis ==\n",
        );
        for figure in &baseline.figures {
            text.push_str(&format!(
                "{:>6} {:<8} {:>12} requests/s\n",
                figure.command,
                if figure.pipeline == 1 {
                    "-P 1".to_owned()
                } else {
                    format!("-P {}", figure.pipeline)
                },
                thousands(figure.requests_per_s),
            ));
            self.json_line(&BaselineLine {
                scenario: 0,
                name: "baseline",
                figure,
            });
        }
        self.table(&text);
        self.baseline = baseline;
    }

    /// Prints the latency floors of plain redis-rs on this Redis.
    pub fn floors(&mut self, floors: &Floors) {
        let mut text = format!(
            "latency floors from this process, plain redis-rs, {} samples each (µs):\n",
            floors.ping.samples
        );
        for (name, what, latency) in [
            ("ping_rtt", "PING round trip", &floors.ping),
            ("rpush_blmove_wake", "RPUSH → BLMOVE wake-up", &floors.wake),
        ] {
            text.push_str(&format!(
                "  {what:<24} p50 {:>6.0}  p90 {:>6.0}  p99 {:>6.0}  p999 {:>6.0}  max {:>6.0}\n",
                latency.p50, latency.p90, latency.p99, latency.p999, latency.max
            ));
            self.json_line(&serde_json::json!({
                "scenario": 0,
                "name": name,
                "latency_us": latency,
            }));
        }
        text.push_str(&format!(
            "  (each RPUSH → BLMOVE hand-over cost Redis {:.1} µs and this process {:.1} µs of CPU)\n",
            floors.wake_redis_cpu_us, floors.wake_client_cpu_us
        ));
        self.json_line(&serde_json::json!({
            "scenario": 0,
            "name": "rpush_blmove_cpu",
            "redis_cpu_us_per_job": floors.wake_redis_cpu_us,
            "dtask_cpu_us_per_job": floors.wake_client_cpu_us,
        }));
        self.table(&text);
    }

    /// Prints how much CPU Redis uses while idle, in seconds per second.
    pub fn idle_cpu(&mut self, cpu_per_s: f64) {
        self.table(&format!(
            "idle Redis: {:.1} ms of CPU per second (included in every Redis µs/job below)\n",
            cpu_per_s * 1e3
        ));
        self.json_line(&serde_json::json!({
            "scenario": 0,
            "name": "redis_idle_cpu",
            "cpu_ms_per_s": cpu_per_s * 1e3,
        }));
    }

    /// Prints the results of one scenario: a table, and JSON lines if asked.
    pub fn scenario(&mut self, outcomes: &[Outcome]) {
        let Some(first) = outcomes.first() else {
            return;
        };
        for outcome in outcomes {
            self.json_line(outcome);
        }
        let text = match first.scenario {
            1 | 2 | 9 => self.enqueue_table(outcomes),
            10 => scale_table(outcomes),
            11 => paired_table(outcomes),
            3 => self.drain_table(outcomes),
            4 | 5 | 8 => latency_table(outcomes),
            7 => rate_table(outcomes),
            _ => memory_table(outcomes),
        };
        self.table(&text);
    }

    /// Ends the report.
    pub fn finish(&mut self) {
        self.table(
            "\ncmds/job: commands Redis ran per job (INFO commandstats; a Lua script counts once \
             plus each command it runs); Redis µs/job: Redis CPU time (user+sys) per job; \
             dtask µs/job: CPU time of the process running dtask (client, and worker if any) per job; \
             ×LPUSH, ×LPOP: dtask's jobs/s over redis-benchmark's requests/s on the same Redis.\n",
        );
    }

    fn enqueue_table(&self, outcomes: &[Outcome]) -> String {
        let title = match outcomes[0].scenario {
            1 => "1. enqueue_many, batches of 1,000",
            2 => "2. single enqueue calls from 64 concurrent tokio tasks",
            _ => {
                "9. the durability option: a replica attached; without, then with replicas(1, 1s) (a WAIT per call)"
            }
        };
        let mut rows = vec![row([
            "jobs",
            "kind",
            "seconds",
            "jobs/s",
            "×LPUSH",
            "×LPUSH-P16",
            "cmds/job",
            "Redis µs/job",
            "dtask µs/job",
            "bytes/job",
        ])];
        for o in outcomes {
            let rate = o.jobs_per_s.unwrap_or(0.0);
            let kind = if o.scenario == 9 {
                o.name.replace("enqueue_", "")
            } else if o.name.contains("unique") {
                "unique_for".to_owned()
            } else if o.name.contains("group") {
                "group".to_owned()
            } else if o.name.contains("chord") {
                "chord".to_owned()
            } else {
                "plain".to_owned()
            };
            rows.push(vec![
                thousands(o.jobs as f64),
                kind,
                format!("{:.2}", o.seconds),
                thousands(rate),
                self.ratio(rate, "LPUSH", 1),
                self.ratio(rate, "LPUSH", PIPELINE),
                format!("{:.3}", o.redis_cmds_per_job),
                format!("{:.2}", o.redis_cpu_us_per_job),
                format!("{:.2}", o.dtask_cpu_us_per_job),
                o.bytes_per_job.map_or("-".into(), |b| format!("{b:.0}")),
            ]);
        }
        titled(title, &rows, outcomes)
    }

    fn drain_table(&self, outcomes: &[Outcome]) -> String {
        let mut rows = vec![row([
            "jobs",
            "concurrency",
            "results",
            "seconds",
            "jobs/s",
            "×LPOP",
            "×LPOP-P16",
            "cmds/job",
            "Redis µs/job",
            "dtask µs/job",
            "retained B/job",
        ])];
        for o in outcomes {
            let rate = o.jobs_per_s.unwrap_or(0.0);
            rows.push(vec![
                thousands(o.jobs as f64),
                o.concurrency.map_or("-".into(), |c| c.to_string()),
                results_kept(o).into(),
                format!("{:.2}", o.seconds),
                thousands(rate),
                self.ratio(rate, "LPOP", 1),
                self.ratio(rate, "LPOP", PIPELINE),
                format!("{:.3}", o.redis_cmds_per_job),
                format!("{:.2}", o.redis_cpu_us_per_job),
                format!("{:.2}", o.dtask_cpu_us_per_job),
                o.retained_bytes_per_job
                    .map_or("-".into(), |b| format!("{b:.0}")),
            ]);
        }
        let mut text = titled(
            "3. drain a pre-filled queue with one in-process worker (no-op jobs)",
            &rows,
            outcomes,
        );
        let mut sizes: Vec<u64> = outcomes.iter().map(|o| o.jobs).collect();
        sizes.dedup();
        for size in sizes {
            for kept in ["kept", "none"] {
                let best = outcomes
                    .iter()
                    .filter(|o| o.jobs == size && results_kept(o) == kept)
                    .max_by(|a, b| {
                        a.jobs_per_s
                            .unwrap_or(0.0)
                            .total_cmp(&b.jobs_per_s.unwrap_or(0.0))
                    });
                if let Some(best) = best {
                    text.push_str(&format!(
                        "   best for {} jobs, results {kept}: concurrency {} at {} jobs/s\n",
                        thousands(size as f64),
                        best.concurrency.unwrap_or(0),
                        thousands(best.jobs_per_s.unwrap_or(0.0)),
                    ));
                }
            }
        }
        text.push_str("   results: kept = the default (a result record per job, kept for the result TTL); none = a fire-and-forget task (`result_ttl = \"0s\"`)\n");
        text.push_str("   retained B/job: Redis memory still held per finished job (its result record, kept for the result TTL)\n");
        text
    }

    fn ratio(&self, rate: f64, command: &str, pipeline: u32) -> String {
        match self.baseline.rate(command, pipeline) {
            Some(base) if base > 0.0 => format!("{:.2}", rate / base),
            _ => "-".into(),
        }
    }

    fn json_line<T: Serialize>(&self, value: &T) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(line) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                Err(error) => eprintln!("cannot write a JSON line: {error}"),
            }
        }
    }

    fn table(&self, text: &str) {
        if self.json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }
}

/// A baseline figure as a JSON line.
#[derive(Serialize)]
struct BaselineLine<'a> {
    scenario: u8,
    name: &'static str,
    #[serde(flatten)]
    figure: &'a Figure,
}

fn latency_table(outcomes: &[Outcome]) -> String {
    let title = match outcomes[0].scenario {
        4 => "4. enqueue → start latency, idle worker, one job at a time (µs)",
        8 => {
            "8. 10,000 waiters at once: job end → waiter woken (µs); first row notified, second polling"
        }
        _ => "5. enqueue → start latency at a steady 10,000 jobs/s (µs)",
    };
    let mut rows = vec![row([
        "jobs",
        "concurrency",
        "jobs/s",
        "p50",
        "p90",
        "p99",
        "p999",
        "max",
        "cmds/job",
        "Redis µs/job",
        "dtask µs/job",
    ])];
    for o in outcomes {
        let lat = o.latency_us.as_ref();
        let us = |f: fn(&Latency) -> f64| lat.map_or("-".into(), |l| format!("{:.0}", f(l)));
        rows.push(vec![
            thousands(o.jobs as f64),
            o.concurrency.map_or("-".into(), |c| c.to_string()),
            o.jobs_per_s.map_or("-".into(), thousands),
            us(|l| l.p50),
            us(|l| l.p90),
            us(|l| l.p99),
            us(|l| l.p999),
            us(|l| l.max),
            format!("{:.3}", o.redis_cmds_per_job),
            format!("{:.2}", o.redis_cpu_us_per_job),
            format!("{:.2}", o.dtask_cpu_us_per_job),
        ]);
    }
    titled(title, &rows, outcomes)
}

fn rate_table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![row([
        "workers",
        "limit/s",
        "burst",
        "seconds",
        "started",
        "jobs/s",
        "off by",
        "busiest second",
        "cmds/job",
        "Redis µs/job",
        "dtask µs/job",
    ])];
    for o in outcomes {
        let Some(rate) = &o.rate_limit else { continue };
        let achieved = o.jobs_per_s.unwrap_or(0.0);
        rows.push(vec![
            rate.workers.to_string(),
            format!("{:.0}", rate.limit_per_s),
            rate.burst.to_string(),
            format!("{:.1}", o.seconds),
            thousands(o.jobs as f64),
            format!("{achieved:.2}"),
            format!(
                "{:+.2} %",
                (achieved - rate.limit_per_s) * 100.0 / rate.limit_per_s
            ),
            rate.busiest_second.to_string(),
            format!("{:.3}", o.redis_cmds_per_job),
            format!("{:.2}", o.redis_cpu_us_per_job),
            format!("{:.2}", o.dtask_cpu_us_per_job),
        ]);
    }
    titled(
        "7. a task's rate limit (`#[task(rate = \"100/s\")]`) shared by four workers, 30 s",
        &rows,
        outcomes,
    )
}

fn memory_table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![row([
        "jobs",
        "concurrency",
        "ramp s",
        "running at once",
        "RSS before MiB",
        "RSS running MiB",
        "delta MiB",
        "KiB/job",
        "peak MiB",
        "cmds/job",
        "Redis µs/job",
        "dtask µs/job",
    ])];
    for o in outcomes {
        let Some(rss) = &o.rss else { continue };
        rows.push(vec![
            thousands(o.jobs as f64),
            o.concurrency.map_or("-".into(), |c| c.to_string()),
            format!("{:.2}", rss.ramp_seconds),
            thousands(rss.running_at_once as f64),
            format!("{:.1}", rss.before_mib),
            format!("{:.1}", rss.running_mib),
            format!("{:.1}", rss.delta_mib),
            format!("{:.2}", rss.delta_kib_per_job),
            format!("{:.1}", rss.peak_mib),
            format!("{:.3}", o.redis_cmds_per_job),
            format!("{:.2}", o.redis_cpu_us_per_job),
            format!("{:.2}", o.dtask_cpu_us_per_job),
        ]);
    }
    titled(
        "6. worker resident memory with 10,000 sleeping jobs in flight (fresh worker process per row)",
        &rows,
        outcomes,
    )
}

/// A header row from string literals.
fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// A titled table, right-aligned, followed by each run's commands per job and its note.
fn titled(title: &str, rows: &[Vec<String>], outcomes: &[Outcome]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = format!("\n== {title} ==\n");
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:>width$}"))
            .collect();
        text.push_str("  ");
        text.push_str(&cells.join("  "));
        text.push('\n');
    }
    for o in outcomes {
        let mut calls: Vec<(&String, &f64)> = o.redis_calls_per_job.iter().collect();
        calls.sort_by(|a, b| b.1.total_cmp(a.1));
        let calls: Vec<String> = calls
            .iter()
            .map(|(name, n)| match o.redis_usec_per_call.get(*name) {
                Some(usec) => format!("{name} {n:.3} ({usec:.1} µs)"),
                None => format!("{name} {n:.3}"),
            })
            .collect();
        let setting = o
            .concurrency
            .map_or(String::new(), |c| format!(", concurrency {c}"));
        text.push_str(&format!(
            "   {} jobs{setting}: commands per job (Redis µs per call): {}\n",
            thousands(o.jobs as f64),
            calls.join(", ")
        ));
        if let Some(note) = &o.note {
            text.push_str(&format!("   note: {note}\n"));
        }
    }
    text
}

/// Scenario 11: pairs of (LPOP baseline, default drain), each with its own ratio.
fn paired_table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![row([
        "pair",
        "jobs",
        "concurrency",
        "LPOP req/s just before",
        "jobs/s",
        "×LPOP of the pair",
        "Redis µs/job",
        "dtask µs/job",
    ])];
    let mut ratios = Vec::new();
    for (pair, o) in outcomes.iter().enumerate() {
        let rate = o.jobs_per_s.unwrap_or(0.0);
        let lpop = o.paired_lpop.unwrap_or(0.0);
        let ratio = if lpop > 0.0 { rate / lpop } else { 0.0 };
        ratios.push(ratio);
        rows.push(vec![
            (pair + 1).to_string(),
            thousands(o.jobs as f64),
            o.concurrency.map_or("-".into(), |c| c.to_string()),
            thousands(lpop),
            thousands(rate),
            format!("{ratio:.2}"),
            format!("{:.2}", o.redis_cpu_us_per_job),
            format!("{:.2}", o.dtask_cpu_us_per_job),
        ]);
    }
    let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ratios.iter().copied().fold(0.0, f64::max);
    let median = crate::scenarios::paired::median(ratios);
    let mut text = titled(
        "11. the default drain (results kept, events on) next to LPOP, in pairs",
        &rows,
        &[],
    );
    text.push_str(&format!(
        "   median ×LPOP over {} pairs: {median:.2} (lowest {lowest:.2}, highest {highest:.2})\n",
        outcomes.len()
    ));
    text
}

/// Scenario 10: the same drain on one Redis and on clusters of 1 to 3 masters.
fn scale_table(outcomes: &[Outcome]) -> String {
    let mut rows = vec![row([
        "where",
        "jobs",
        "concurrency",
        "seconds",
        "jobs/s (measured)",
        "cmds/job",
        "Redis µs/job (all nodes)",
        "dtask µs/job",
    ])];
    for o in outcomes {
        rows.push(vec![
            o.name.to_owned(),
            thousands(o.jobs as f64),
            o.concurrency.map_or("-".into(), |c| c.to_string()),
            format!("{:.2}", o.seconds),
            thousands(o.jobs_per_s.unwrap_or(0.0)),
            format!("{:.3}", o.redis_cmds_per_job),
            format!("{:.2}", o.redis_cpu_us_per_job),
            format!("{:.2}", o.dtask_cpu_us_per_job),
        ]);
    }
    let mut text = titled(
        "10. scale-out: one drain over 3 queues on one Redis, then on clusters of 1, 2, 3 masters; then on 3 masters in one queue, and in one queue of 3 partitions (one worker)",
        &rows,
        outcomes,
    );
    text.push_str(concat!(
        "   measured: jobs/s on this machine, where every Redis and the worker share 2 cores;\n",
        "   projected: jobs over the busiest master's CPU seconds, the rate at which that master\n",
        "   would be used up with a machine of its own\n",
    ));
    text
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Whether a drain outcome's jobs kept their result records ("kept" or "none"), and whether
/// they ran through a middleware.
fn results_kept(outcome: &Outcome) -> &'static str {
    match outcome.name {
        crate::scenarios::drain::DRAIN_WITHOUT_RESULTS => "none",
        crate::scenarios::drain::DRAIN_THROUGH_MIDDLEWARE => "kept, 1 middleware",
        crate::scenarios::drain::DRAIN_LIMITED => "kept, max_running",
        crate::scenarios::drain::DRAIN_WITHOUT_EVENTS => "kept, no events",
        crate::scenarios::drain::DRAIN_CHORD => "kept, 1 chord",
        _ => "kept",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }
}
