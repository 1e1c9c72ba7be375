//! The command line, as clap reads it: global options and one subcommand.

use clap::{Args, Parser, Subcommand};

/// Look at and repair dtask queues in Redis.
#[derive(Debug, Parser)]
#[command(name = "dtask", version, about, max_term_width = 80)]
pub(super) struct Cli {
    /// Redis URL (several comma-separated node URLs for a cluster).
    #[arg(long, global = true, env = "DTASK_REDIS_URL", default_value = crate::DEFAULT_REDIS_URL)]
    pub(super) url: String,
    /// Key prefix of the queues.
    #[arg(long, global = true, env = "DTASK_PREFIX", default_value = crate::DEFAULT_PREFIX)]
    pub(super) prefix: String,
    /// A replica to read the views from (stats, jobs, queues); changes go to `--url`.
    #[arg(long, global = true, env = "DTASK_READ_REPLICA_URL")]
    pub(super) read_replica: Option<String>,
    /// A partitioned queue and its number of partitions, as `emails=8` (once per queue), for
    /// queues this binary's tasks do not declare.
    #[arg(long = "partitions", global = true, value_parser = partitions_of)]
    pub(super) partitions: Vec<(String, u16)>,
    #[command(subcommand)]
    pub(super) command: Command,
}

/// Print JSON (one document) instead of a table.
#[derive(Debug, Args, Clone, Copy)]
pub(super) struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Every queue with its counts.
    Queues(Output),
    /// Live counts of every queue, with jobs done and failed over the last minute.
    Stats {
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        output: Output,
    },
    /// The jobs of a queue in one state.
    Jobs {
        /// The queue.
        queue: String,
        /// pending, scheduled, retry, running or dead.
        #[arg(long)]
        state: crate::JobState,
        /// How many jobs at most (1 to 10,000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// How many to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Newest first.
        #[arg(long)]
        newest: bool,
        #[command(flatten)]
        output: Output,
    },
    /// One job's detail, found in whichever queue holds it.
    Job {
        /// The job's id.
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Dead jobs: run them again, or delete them.
    Dead {
        #[command(subcommand)]
        action: DeadAction,
    },
    /// Empty one waiting state of a queue.
    Purge {
        /// The queue.
        queue: String,
        /// pending, scheduled or retry.
        #[arg(long)]
        state: crate::PurgeState,
        /// Confirm: the jobs are deleted for good.
        #[arg(long)]
        yes: bool,
    },
    /// Stop workers taking jobs from a queue (enqueues go on).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let workers take jobs from a paused queue again.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Cancel a job that has not started yet.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// The workers serving each queue.
    Workers(Output),
    /// The periodic schedules workers keep, with their last and next tick.
    Periodic(Output),
    /// Show, set (`10/s`, `600/m burst 20`) or remove (`off`) a queue's rate limit.
    Rate {
        /// The queue.
        queue: String,
        /// The new limit, or `off`; without it, the current one is shown.
        limit: Option<String>,
    },
    /// Serve the web dashboard (no login of its own: keep it on a private address).
    Dashboard {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// A `Host` the dashboard answers besides the listen address and `localhost` (the
        /// name it is reached by through a proxy, say); others are refused, so that a hostile
        /// page cannot reach it by re-pointing its own domain at this machine.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum DeadAction {
    /// Run dead jobs again with a fresh attempt budget.
    Retry(DeadJobs),
    /// Delete dead jobs.
    Delete {
        #[command(flatten)]
        jobs: DeadJobs,
        /// Confirm deleting every dead job (needed with --all).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub(super) struct DeadJobs {
    /// The queue.
    pub(super) queue: String,
    /// Every dead job of the queue.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub(super) all: bool,
    /// The ids of the jobs.
    pub(super) ids: Vec<String>,
}

/// Reads `queue=count`.
fn partitions_of(text: &str) -> Result<(String, u16), String> {
    let (queue, count) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}`: expected a queue and its partitions, as `emails=8`"))?;
    let count: u16 = count
        .parse()
        .map_err(|_| format!("`{text}`: the number of partitions is not a whole number"))?;
    Ok((queue.to_owned(), count))
}
