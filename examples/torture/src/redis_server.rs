//! A redis-server of our own on a free port of 127.0.0.1, in a directory of our own, that the
//! scenarios crash (SIGKILL), freeze (SIGSTOP), stop (SIGTERM) and start again. Stopped by pid
//! when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workers::send_signal;

/// How long a starting redis-server may take to answer (it may be replaying its AOF).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the server writes what it is told to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing survives a restart (the fastest; for scenarios that never restart Redis).
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write survives a crash.
    AppendFsyncAlways,
}

/// A redis-server process owned by this program.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    acl_file: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a redis-server on a free port, with its data and log in `dir` and, when given,
    /// the users of `acl_file` (loaded again at every restart), and waits until it answers.
    pub async fn start(
        dir: &Path,
        persistence: Persistence,
        acl_file: Option<&Path>,
    ) -> Result<RedisServer, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port()?;
        let mut server = RedisServer {
            child: None,
            port,
            dir: dir.to_owned(),
            persistence,
            acl_file: acl_file.map(Path::to_owned),
        };
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        if self.persistence == Persistence::AppendFsyncAlways {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        if let Some(acl_file) = &self.acl_file {
            command.arg("--aclfile").arg(acl_file);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers PING.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(Ok(mut conn)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                && let Ok(Ok(pong)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    redis::cmd("PING").query_async::<String>(&mut conn),
                )
                .await
                && pong == "PONG"
            {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "redis-server on port {} exited at start ({status}); see {}",
                    self.port,
                    self.dir.join("redis.log").display()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("redis-server on port {} did not answer", self.port));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Crashes the server: SIGKILL, then reaps it. Writes it had not made durable are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly: SIGTERM (it flushes its append-only file and exits), then
    /// waits up to 10 s before killing it.
    pub async fn terminate(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        send_signal(child.id(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis-server did not stop within 10 s of SIGTERM".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> Result<(), String> {
        match self.pid() {
            Some(pid) => send_signal(pid, "STOP"),
            None => Err("redis-server is not running".to_owned()),
        }
    }

    /// Thaws a frozen server (SIGCONT).
    pub fn resume(&self) -> Result<(), String> {
        match self.pid() {
            Some(pid) => send_signal(pid, "CONT"),
            None => Err("redis-server is not running".to_owned()),
        }
    }

    /// Starts the server again on the same port and data directory, after [`kill`](Self::kill)
    /// or [`terminate`](Self::terminate), and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (SIGSTOP) process.
        self.kill();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local address: {e}"))
}
