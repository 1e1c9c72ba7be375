//! The one way dtask's broker tests, integration tests, torture run and benchmark start a Redis
//! of their own: `redis-server` on a free port of 127.0.0.1, in a directory of its own, that a
//! test can crash (SIGKILL), freeze (SIGSTOP), stop (SIGTERM) and start again with the same
//! arguments. The process is stopped by its pid, and its directory removed, when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::os::{free_port, send_signal};

/// How long a starting redis-server may take to answer (it may be replaying its AOF).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGTERM-ed redis-server may take to flush and exit before it is killed.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the server writes what it is told to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing survives a restart (`--save '' --appendonly no`): the fastest.
    #[default]
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write survives a crash.
    AppendFsyncAlways,
}

/// How to start a [`RedisServer`]; [`RedisServer::start`] takes the defaults.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    persistence: Persistence,
    acl_file: Option<PathBuf>,
    dir: Option<PathBuf>,
    config: Option<String>,
    extra: Vec<String>,
}

impl RedisOptions {
    /// Whether writes survive a crash (default: they do not).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Loads the users of `acl_file` (`--aclfile`), again at every restart.
    pub fn acl_file(mut self, acl_file: impl Into<PathBuf>) -> Self {
        self.acl_file = Some(acl_file.into());
        self
    }

    /// Keeps data and `redis.log` in `dir` (created when missing, left in place when dropped)
    /// instead of a temporary directory removed when the server is dropped.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Starts from a configuration file holding `text` (written as `redis.conf` in the server's
    /// directory at the first start; a Sentinel rewrites it, and a restart keeps what it wrote).
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Adds command-line arguments (e.g. `["--requirepass", "secret"]`).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.extra
            .extend(args.iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Starts the server and waits until it answers. When the port picked is taken meanwhile
    /// (the server exits at start), tries again on another, up to three times.
    pub fn start(self) -> Result<RedisServer, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            match self.clone().start_once() {
                Ok(server) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn start_once(self) -> Result<RedisServer, String> {
        let port = free_port()?;
        let (dir, owns_dir) = match &self.dir {
            Some(dir) => (dir.clone(), false),
            None => (temporary_dir(port), true),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // From here on the guard owns the process (and the directory when it made it).
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            owns_dir,
            options: self,
        };
        server.spawn()?;
        server.wait_ready()?;
        Ok(server)
    }
}

/// A redis-server process owned by the caller.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    owns_dir: bool,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a redis-server with no persistence on a free port and waits until it answers.
    pub fn start() -> Result<RedisServer, String> {
        RedisOptions::default().start()
    }

    /// Options for a server started differently (persistence, ACL file, directory, arguments).
    pub fn options() -> RedisOptions {
        RedisOptions::default()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its data and `redis.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Crashes the server: SIGKILL (which also ends a frozen one), then reaps it. Writes it had
    /// not made durable are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly: SIGTERM (it flushes its append-only file and exits), then
    /// waits up to 10 s before killing it.
    pub fn terminate(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        send_signal(child.id(), "TERM")?;
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis-server did not stop within 10 s of SIGTERM".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
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

    /// Starts the server again on the same port, directory and arguments, after
    /// [`kill`](Self::kill) or [`terminate`](Self::terminate) (it is killed first if it still
    /// runs), and waits until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()?;
        self.wait_ready()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        if let Some(text) = &self.options.config {
            let file = self.dir.join("redis.conf");
            if !file.exists() {
                std::fs::write(&file, text)
                    .map_err(|e| format!("write {}: {e}", file.display()))?;
            }
            command.arg(file);
        }
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        match self.options.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::AppendFsyncAlways => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"])
            }
        };
        if let Some(acl_file) = &self.options.acl_file {
            command.arg("--aclfile").arg(acl_file);
        }
        let child = command
            .args(&self.options.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (apt-get install redis-server): {e}")
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers a PING (with PONG, or by asking for a password: either
    /// way it serves clients), failing early when the process exits.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "redis-server on port {} exited at start ({status}): {}",
                    self.port,
                    log_tail(&self.dir)
                ));
            }
            if answers(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("redis-server on port {} did not answer", self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh directory name under the system's temporary directory.
fn temporary_dir(port: u16) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "dtask-redis-{}-{port}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Whether a Redis on `port` answers PING as a server ready for clients: `+PONG`, or an error
/// asking for authentication; `-LOADING` (still reading its data) is not ready.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 8];
    match stream.read(&mut reply) {
        Ok(n) if n > 0 => {
            let reply = &reply[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        _ => false,
    }
}

/// The last lines of the server's log, for an error message.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
