//! dtask-bench: how fast dtask moves jobs through Redis, next to what the same Redis does alone.
//!
//! Run with:
//!
//! ```sh
//! cargo run --release -p dtask-bench -- [--json] [--sizes 10000,100000] [--redis-url URL]
//! ```
//!
//! It starts its own `redis-server` on a free port of 127.0.0.1 (no persistence, its own
//! temporary directory; stopped at the end, also on error or Ctrl-C) unless `--redis-url` is
//! given, measures `redis-benchmark` on it (LPUSH and LPOP, unpipelined and with `-P 16`) as the
//! baseline, with the latency floors of plain redis-rs (a `PING` round trip; an `RPUSH` waking a
//! `BLMOVE`), then runs the scenarios, each under a fresh key prefix:
//!
//! 1. enqueue with `enqueue_many`, in batches of 1,000;
//! 2. enqueue with single `enqueue` calls from 64 concurrent tokio tasks;
//! 3. drain a pre-filled queue with one in-process worker, at several concurrencies;
//! 4. enqueue-to-start latency on an idle worker, one job at a time;
//! 5. enqueue-to-start latency at a steady 10,000 jobs/s for 5 s;
//! 6. the worker's resident memory with 10,000 jobs in flight (in a fresh child process), with
//!    jobs finishing in order, then out of order;
//! 7. a task's rate limit (`rate = "100/s"`) shared by four in-process workers for 30 s: the
//!    rate achieved next to the limit, the busiest second, and the cost per job;
//! 8. 10,000 handles waiting at once on 10,000 jobs that one worker then runs: Redis commands
//!    per finished job and wake-up latency (job end to waiter woken), woken by notification,
//!    then by polling (handles made from ids);
//! 9. the durability option: with a replica of the Redis under test attached, enqueues in
//!    batches and one per call, without and with `replicas(1, 1s)` (a `WAIT` per call); only
//!    on a Redis the benchmark started itself, at the first of `--sizes`;
//! 10. scale-out: the same drain over three queues on the Redis under test, then on clusters
//!     of 1, 2 and 3 masters started here: jobs/s measured, Redis CPU per job per master, and
//!     the capacity projected from the busiest master's CPU (at the first of `--sizes` and
//!     `--concurrency`).
//! 11. the default drain (results kept, events on) next to the LPOP baseline, in pairs (`--pairs`,
//!     5 by default): each pair measures redis-benchmark's unpipelined LPOP, then the drain (at
//!     the last of `--sizes` and the second of `--concurrency`), and the report gives each pair's
//!     ratio and their median, which this machine's drifting speed does not skew as a single
//!     baseline at the start of the run does.
//!
//! Every scenario also reports what Redis itself saw: commands per job (from
//! `INFO commandstats`, which counts the commands inside Lua scripts too), Redis CPU time per
//! job (`INFO cpu`) and, for enqueues, bytes of Redis memory per queued job (`INFO memory`).
//! Scenarios 1–3 run at every size of `--sizes`, so a reader sees whether the cost per job
//! stays flat as the queue grows.

mod baseline;
mod floor;
mod process;
mod redis_stats;
mod report;
mod scenarios;
mod tasks;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use dtask_testkit::redis_server::RedisServer;
use report::Report;
use scenarios::Bench;

/// The error type of the whole benchmark: any error, with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A result with a [`BoxError`].
pub type Result<T> = std::result::Result<T, BoxError>;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "dtask-bench",
    about = "Benchmark dtask against the Redis it runs on: enqueue, drain, latency, memory"
)]
pub struct Args {
    /// Print one JSON object per scenario (and per baseline figure) per line on stdout; the
    /// tables then go to stderr.
    #[arg(long)]
    pub json: bool,

    /// Numbers of jobs for scenarios 1–3 (enqueue_many, concurrent enqueue, drain).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [10_000u64, 100_000],
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sizes: Vec<u64>,

    /// Benchmark against this Redis instead of starting one. Its other clients, if any, count
    /// in the Redis-side figures.
    #[arg(long)]
    pub redis_url: Option<String>,

    /// Worker concurrencies tried in the drain scenario (3); each is reported.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 256, 1024])]
    pub concurrency: Vec<usize>,

    /// Which scenarios to run, by number (1–11).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        value_parser = clap::value_parser!(u8).range(1..=11)
    )]
    pub scenarios: Vec<u8>,

    /// How many (LPOP baseline, drain) pairs scenario 11 measures.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub pairs: u64,

    /// Which drains scenario 3 runs, by name (drain, drain-no-events, drain-chord,
    /// drain-no-results, drain-middleware, drain-max-running); all when not given.
    #[arg(long, value_delimiter = ',', value_parser = scenarios::drain::Variant::parse)]
    pub drains: Vec<scenarios::drain::Variant>,

    /// Skip the redis-benchmark baseline and the latency floors.
    #[arg(long)]
    pub no_baseline: bool,

    /// Internal: run the worker side of scenario 6 in this process, on jobs queued under this
    /// key prefix, and print its measurements as one JSON line.
    #[arg(long, hide = true)]
    pub rss_probe: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tasks::start_clock();
    // Built with `--features metrics`: every job's metrics go to a Prometheus recorder, as in
    // an app that exports them.
    #[cfg(feature = "metrics")]
    if let Err(error) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        eprintln!("dtask-bench: cannot install the metrics recorder: {error}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dtask-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts Redis if needed, runs the benchmark in a tokio runtime, and tears both down in order:
/// the runtime (and so every worker) first, then the Redis this process started.
fn run(args: Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(prefix) = &args.rss_probe {
        let url = args
            .redis_url
            .as_deref()
            .ok_or("--rss-probe needs --redis-url")?;
        return runtime.block_on(scenarios::memory::probe(url, prefix));
    }
    let server = match &args.redis_url {
        Some(_) => None,
        None => Some(RedisServer::start()?),
    };
    let url = match (&args.redis_url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server is started when no URL is given"),
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = bench(&args, &url, server.is_some()) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(server);
    result
}

/// The baseline, then every scenario asked for, printed as they finish; `own_server` when the
/// Redis at `url` was started here (scenario 9 then gives it a replica).
async fn bench(args: &Args, url: &str, own_server: bool) -> Result<()> {
    let mut report = Report::new(args.json);
    if let Some(server) = baseline::server_of(url)? {
        eprintln!("redis at {url}");
        if !args.no_baseline {
            eprintln!("baseline: redis-benchmark LPUSH/LPOP, unpipelined and -P 16 ...");
            match baseline::measure(&server).await {
                Ok(figures) => report.baseline(figures),
                Err(error) => eprintln!("baseline skipped: {error}"),
            }
        }
    }
    let mut bench = Bench::connect(url, &args.concurrency, &args.drains).await?;
    report.idle_cpu(bench.idle_cpu(Duration::from_secs(1)).await?);
    if !args.no_baseline {
        eprintln!("latency floors: PING round trip, RPUSH -> BLMOVE wake-up ...");
        let prefix = bench.fresh_prefix();
        report.floors(&floor::measure(url, &prefix).await?);
    }
    for &scenario in &args.scenarios {
        let results = match scenario {
            1..=3 => {
                let mut results = Vec::new();
                for &size in &args.sizes {
                    results.extend(bench.sized(scenario, size).await?);
                }
                results
            }
            4 => vec![bench.idle_latency().await?],
            5 => vec![bench.paced_latency().await?],
            6 => bench.worker_memory().await?,
            7 => vec![bench.task_rate().await?],
            8 => bench.waiters().await?,
            9 => match baseline::server_of(url)? {
                Some(server) if own_server => {
                    let size = args.sizes.first().copied().unwrap_or(10_000);
                    scenarios::durable::run(&mut bench, size, server.port).await?
                }
                _ => {
                    eprintln!("9. skipped: it needs a Redis the benchmark started itself");
                    Vec::new()
                }
            },
            10 => {
                let size = args.sizes.first().copied().unwrap_or(10_000);
                let concurrency = args.concurrency.first().copied().unwrap_or(256);
                scenarios::scale_out::run(&mut bench, size, concurrency).await?
            }
            11 => match baseline::server_of(url)? {
                Some(server) => {
                    let size = args.sizes.last().copied().unwrap_or(100_000);
                    let concurrency = args.concurrency.get(1).or(args.concurrency.first());
                    let concurrency = concurrency.copied().unwrap_or(256);
                    scenarios::paired::run(
                        &mut bench,
                        &server,
                        size,
                        concurrency,
                        args.pairs as usize,
                    )
                    .await?
                }
                None => {
                    eprintln!("11. skipped: redis-benchmark cannot reach this Redis");
                    Vec::new()
                }
            },
            other => unreachable!("clap accepts scenarios 1 to 11, not {other}"),
        };
        report.scenario(&results);
    }
    report.finish();
    Ok(())
}
