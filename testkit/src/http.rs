//! A minimal blocking HTTP/1.1 client for tests that talk to a web server or to chromedriver
//! on loopback: one request per connection, a body read to the length the head announces
//! (chromedriver keeps connections open whatever the request says).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status, head lines, body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (0 when the head could not be read).
    pub status: u16,
    /// The head's header lines, as `(name in lowercase, value)`.
    pub headers: Vec<(String, String)>,
    /// The body, lossily read as UTF-8.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `127.0.0.1:port` with `headers` (`Host: 127.0.0.1:port` unless they
/// name one) and `body`, and reads the answer.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break response.len();
        }
        response.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    match length {
        Some(length) => {
            while response.len() < head_end + length {
                let read = stream.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                response.extend_from_slice(&chunk[..read]);
            }
        }
        None => {
            stream.read_to_end(&mut response)?;
        }
    }
    let body = String::from_utf8_lossy(&response[head_end.min(response.len())..]).into_owned();
    Ok(Response {
        status,
        headers,
        body,
    })
}
