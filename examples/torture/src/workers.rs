//! Worker processes: this binary re-executed as `dtask-torture worker`, configured by
//! environment variables; the driver's handle on each (signals by pid, exit status, CPU time),
//! and the worker mode itself.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use dtask_testkit::os::send_signal;

use crate::effects::{FX_ENV, FX_URL_ENV};

/// Queues to serve, comma-separated.
const QUEUES_ENV: &str = "TORTURE_QUEUES";
/// `recovery_after`, in ms.
const RECOVERY_ENV: &str = "TORTURE_RECOVERY_MS";
/// `shutdown_timeout` (the grace period after SIGTERM), in ms.
const GRACE_ENV: &str = "TORTURE_GRACE_MS";
/// The driver's pid: a worker whose driver is gone exits.
const PARENT_ENV: &str = "TORTURE_PARENT_PID";
/// How many threads the worker process's tokio runtime has (default: one per core).
const RUNTIME_THREADS_ENV: &str = "TORTURE_RUNTIME_THREADS";

/// How a worker process is started.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The Redis URL dtask connects to (`DTASK_REDIS_URL`).
    pub redis_url: String,
    /// The Redis URL the jobs record their effects at (see [`FX_URL_ENV`]): Redis itself, also
    /// when dtask goes through a proxy.
    pub fx_url: String,
    /// dtask's key prefix (`DTASK_PREFIX`).
    pub prefix: String,
    /// The effects namespace (see [`crate::effects`]).
    pub fx_ns: String,
    /// The queues to serve, highest priority first.
    pub queues: Vec<String>,
    /// Jobs run at once (`DTASK_CONCURRENCY`).
    pub concurrency: usize,
    /// How long after a worker's last heartbeat its jobs are taken back.
    pub recovery: Duration,
    /// The grace period after SIGTERM.
    pub grace: Duration,
    /// The `RUST_LOG` filter of the worker's log.
    pub log_filter: String,
    /// Where the worker logs go, one file per process.
    pub log_dir: PathBuf,
    /// Threads of the worker process's tokio runtime; None for tokio's default (one per core).
    pub runtime_threads: Option<usize>,
}

impl WorkerConfig {
    /// This configuration with `concurrency` jobs at once.
    pub fn concurrency(mut self, concurrency: usize) -> WorkerConfig {
        self.concurrency = concurrency;
        self
    }

    /// This configuration with a `recovery_after` of `recovery`.
    pub fn recovery(mut self, recovery: Duration) -> WorkerConfig {
        self.recovery = recovery;
        self
    }

    /// This configuration with a grace period of `grace`.
    pub fn grace(mut self, grace: Duration) -> WorkerConfig {
        self.grace = grace;
        self
    }

    /// This configuration with dtask connecting to `url` (a proxy, say); effects are still
    /// recorded straight at Redis.
    pub fn redis_url(mut self, url: &str) -> WorkerConfig {
        self.redis_url = url.to_owned();
        self
    }

    /// This configuration with a tokio runtime of `threads` threads in the worker process.
    pub fn runtime_threads(mut self, threads: usize) -> WorkerConfig {
        self.runtime_threads = Some(threads);
        self
    }

    /// This configuration serving `queues`.
    pub fn queues(mut self, queues: &[&str]) -> WorkerConfig {
        self.queues = queues.iter().map(|q| (*q).to_owned()).collect();
        self
    }
}

/// A worker process started by the driver; SIGKILLed by pid when dropped if still running.
pub struct WorkerProcess {
    child: Child,
    /// The file its stderr (its log) goes to.
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts a worker process; `label` names its log file.
    pub fn spawn(config: &WorkerConfig, label: &str) -> Result<WorkerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        std::fs::create_dir_all(&config.log_dir).map_err(|e| format!("log dir: {e}"))?;
        let log = unique_log_path(&config.log_dir, label);
        let stderr = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut command = Command::new(exe);
        match config.runtime_threads {
            Some(threads) => command.env(RUNTIME_THREADS_ENV, threads.to_string()),
            None => command.env_remove(RUNTIME_THREADS_ENV),
        };
        let child = command
            .arg("worker")
            .env("DTASK_REDIS_URL", &config.redis_url)
            .env("DTASK_PREFIX", &config.prefix)
            .env("DTASK_CONCURRENCY", config.concurrency.to_string())
            .env(FX_ENV, &config.fx_ns)
            .env(FX_URL_ENV, &config.fx_url)
            .env(QUEUES_ENV, config.queues.join(","))
            .env(RECOVERY_ENV, config.recovery.as_millis().to_string())
            .env(GRACE_ENV, config.grace.as_millis().to_string())
            .env(PARENT_ENV, std::process::id().to_string())
            .env("RUST_LOG", &config.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start a worker process: {e}"))?;
        // Name the log after the pid too: dtask's worker ids (`host-pid-random`) and the
        // in-flight keys named after them then lead straight to it.
        let named = unique_log_path(&config.log_dir, &format!("{label}-pid{}", child.id()));
        let log = match std::fs::rename(&log, &named) {
            Ok(()) => named,
            Err(_) => log,
        };
        Ok(WorkerProcess {
            child,
            log,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` ("STOP", "CONT", "TERM", ...) to the process.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        send_signal(self.pid(), signal)
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit; returns its status, or None if it still
    /// runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// CPU time the process has used so far (user + system), if it can be read.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (SIGSTOP) process.
        self.kill();
    }
}

/// A set of worker processes of one configuration, restarted in place.
pub struct Fleet {
    config: WorkerConfig,
    /// The running processes.
    pub workers: Vec<WorkerProcess>,
    started: usize,
}

impl Fleet {
    /// Starts `count` workers of `config`.
    pub fn start(config: WorkerConfig, count: usize) -> Result<Fleet, String> {
        let mut fleet = Fleet {
            config,
            workers: Vec::new(),
            started: 0,
        };
        for _ in 0..count {
            let worker = fleet.spawn_one()?;
            fleet.workers.push(worker);
        }
        Ok(fleet)
    }

    fn spawn_one(&mut self) -> Result<WorkerProcess, String> {
        self.started += 1;
        WorkerProcess::spawn(&self.config, &format!("worker-{}", self.started))
    }

    /// Replaces worker `i` (killed or exited) by a new process; the old one is killed if it
    /// still runs.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let fresh = self.spawn_one()?;
        let mut old = std::mem::replace(&mut self.workers[i], fresh);
        old.kill();
        Ok(())
    }

    /// The workers that have exited, with their status.
    pub fn exited(&mut self) -> Vec<(usize, ExitStatus)> {
        self.workers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| w.exited().map(|s| (i, s)))
            .collect()
    }

    /// CPU time of every worker, by pid.
    pub fn cpu_times(&self) -> HashMap<u32, Duration> {
        self.workers
            .iter()
            .filter_map(|w| w.cpu_time().map(|t| (w.pid(), t)))
            .collect()
    }

    /// Total size of the workers' logs so far, in bytes.
    pub fn log_bytes(&self) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| std::fs::metadata(&w.log).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Sends SIGTERM to every worker still running and waits for each to exit (up to
    /// `timeout` each); returns a complaint for each that did not exit 0.
    pub async fn shutdown(&mut self, timeout: Duration) -> Vec<String> {
        let mut complaints = Vec::new();
        for worker in &mut self.workers {
            if worker.exited().is_none()
                && let Err(error) = worker.signal("TERM")
            {
                complaints.push(error);
            }
        }
        for worker in &mut self.workers {
            match worker.wait_exit(timeout).await {
                Some(status) if status.success() => {}
                Some(status) => complaints.push(format!(
                    "worker {} ended with {status} (log: {})",
                    worker.pid(),
                    worker.log.display()
                )),
                None => {
                    complaints.push(format!(
                        "worker {} did not exit within {timeout:?} of SIGTERM (log: {})",
                        worker.pid(),
                        worker.log.display()
                    ));
                    worker.kill();
                }
            }
        }
        complaints
    }
}

fn unique_log_path(dir: &Path, label: &str) -> PathBuf {
    let mut n = 0;
    loop {
        let name = if n == 0 {
            format!("{label}.log")
        } else {
            format!("{label}-{n}.log")
        };
        let path = dir.join(name);
        if !path.exists() {
            return path;
        }
        n += 1;
    }
}

/// CPU time (user + system) process `pid` has used, from `/proc/<pid>/stat`, in clock ticks
/// of 10 ms (the Linux USER_HZ).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the state is
    // field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The parent pid of this process, from `/proc/self/stat`.
fn parent_pid() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// How many threads this worker process's tokio runtime should have, as the driver said
/// (None: tokio's default).
pub fn runtime_threads() -> Option<usize> {
    std::env::var(RUNTIME_THREADS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// Worker mode: runs a dtask worker as the environment says until SIGTERM or SIGINT. Exits
/// by itself if the driver that started it is gone.
pub async fn run_worker() -> Result<(), dtask::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    if let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok()) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if parent_pid() != Some(parent) {
                    tracing::error!(parent, "the driver is gone; exiting");
                    std::process::exit(3);
                }
            }
        });
    }
    let queues: Vec<String> = std::env::var(QUEUES_ENV)
        .unwrap_or_else(|_| crate::tasks::WORK_QUEUE.to_owned())
        .split(',')
        .map(str::to_owned)
        .collect();
    // Jobs of unknown tasks or newer envelopes (scenario 6) wait 2 s for a worker that knows
    // them, not the default 15 minutes, before they are buried.
    let mut worker = dtask::Worker::from_env()?
        .queues(queues)
        .retry_backoff(Duration::from_millis(100), Duration::from_secs(2))
        .unknown_job_grace(Duration::from_secs(2));
    if let Some(recovery) = env_ms(RECOVERY_ENV) {
        worker = worker.recovery_after(recovery);
    }
    if let Some(grace) = env_ms(GRACE_ENV) {
        worker = worker.shutdown_timeout(grace);
    }
    worker.run().await
}
