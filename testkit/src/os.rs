//! Ports and processes of this machine: a free port to start a server on, a signal to a pid.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};

/// A port of 127.0.0.1 nobody listened on a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind a port: {e}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| format!("local address: {e}"))
}

/// Sends `signal` (e.g. "TERM", "STOP") to process `pid` with `kill`.
pub fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid} failed ({status})"))
    }
}
