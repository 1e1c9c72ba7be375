//! The baseline: what the Redis under test does alone, measured by `redis-benchmark` in the
//! same run (`-t lpush,lpop -n 200000 -c 50 -q`, unpipelined and with `-P 16`), so that every
//! dtask figure can be read as a ratio to it.

use redis::ConnectionAddr;
use serde::Serialize;

use crate::Result;

/// Requests sent per test.
pub const REQUESTS: u32 = 200_000;
/// Parallel connections.
pub const CLIENTS: u32 = 50;
/// Pipeline depth of the pipelined run.
pub const PIPELINE: u32 = 16;

/// Where redis-benchmark should connect.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Password, if the URL has one.
    pub password: Option<String>,
    /// User name, if the URL has one.
    pub user: Option<String>,
}

/// One redis-benchmark figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `LPUSH` or `LPOP`.
    pub command: String,
    /// Requests per pipeline: 1 (unpipelined) or [`PIPELINE`].
    pub pipeline: u32,
    /// Requests per second.
    pub requests_per_s: f64,
}

/// All baseline figures of a run.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
}

impl Baseline {
    /// Requests per second of `command` at `pipeline` depth, if measured.
    pub fn rate(&self, command: &str, pipeline: u32) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.command.eq_ignore_ascii_case(command) && f.pipeline == pipeline)
            .map(|f| f.requests_per_s)
    }
}

/// Host, port and credentials of a `redis://` URL; `None` for URLs redis-benchmark cannot
/// follow here (TLS, Unix sockets).
pub fn server_of(url: &str) -> Result<Option<ServerAddr>> {
    let client = redis::Client::open(url)?;
    let info = client.get_connection_info();
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Ok(None);
    };
    let settings = info.redis_settings();
    Ok(Some(ServerAddr {
        host: host.clone(),
        port: *port,
        password: settings.password().map(str::to_owned),
        user: settings.username().map(str::to_owned),
    }))
}

/// Runs redis-benchmark unpipelined, then with `-P 16`.
pub async fn measure(server: &ServerAddr) -> Result<Baseline> {
    let mut baseline = Baseline::default();
    for pipeline in [1, PIPELINE] {
        baseline.figures.extend(run_once(server, pipeline).await?);
    }
    Ok(baseline)
}

/// redis-benchmark's unpipelined LPOP rate, measured now (requests per second).
pub async fn lpop_rate(server: &ServerAddr) -> Result<f64> {
    let figures = run_once(server, 1).await?;
    figures
        .iter()
        .find(|figure| figure.command.eq_ignore_ascii_case("LPOP"))
        .map(|figure| figure.requests_per_s)
        .ok_or_else(|| "redis-benchmark printed no LPOP figure".into())
}

async fn run_once(server: &ServerAddr, pipeline: u32) -> Result<Vec<Figure>> {
    let mut command = tokio::process::Command::new("redis-benchmark");
    command
        .args(["-h", &server.host, "-p", &server.port.to_string()])
        .args(["-t", "lpush,lpop", "-q"])
        .args(["-n", &REQUESTS.to_string(), "-c", &CLIENTS.to_string()])
        .args(["-P", &pipeline.to_string()])
        .kill_on_drop(true);
    if let Some(user) = &server.user {
        command.args(["--user", user]);
    }
    if let Some(password) = &server.password {
        command.args(["-a", password]);
    }
    let output = command
        .output()
        .await
        .map_err(|error| format!("cannot run redis-benchmark: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "redis-benchmark failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let figures = parse(&String::from_utf8_lossy(&output.stdout), pipeline);
    if figures.is_empty() {
        return Err("redis-benchmark printed no `requests per second` line".into());
    }
    Ok(figures)
}

/// Reads the final lines of `redis-benchmark -q` (`LPUSH: 123456.79 requests per second, ...`),
/// skipping the progress lines it overwrites with carriage returns.
fn parse(stdout: &str, pipeline: u32) -> Vec<Figure> {
    stdout
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (command, rest) = line.split_once(':')?;
            let (rate, _) = rest.split_once("requests per second")?;
            Some(Figure {
                command: command.trim().to_owned(),
                pipeline,
                requests_per_s: rate.trim().parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quiet_output_with_progress_lines() {
        let out = "LPUSH: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   LPUSH: 98328.42 requests per second, p50=0.255 msec                    \n\
                   LPOP: rps=112000.0 (overall: 111000.0)\r\
                   LPOP: 104931.80 requests per second, p50=0.247 msec                    \n";
        let figures = parse(out, 16);
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].command, "LPUSH");
        assert!((figures[0].requests_per_s - 98328.42).abs() < 1e-6);
        assert_eq!(figures[1].command, "LPOP");
        assert_eq!(figures[1].pipeline, 16);
    }
}
