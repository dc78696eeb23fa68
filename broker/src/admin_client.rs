//! One HTTP/1.1 request to a node's admin listener, for the CLI commands
//! that use it (`weir cluster status`, `weir job`).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};

/// Escapes everything but unreserved characters for a query string.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends `method path` with an optional JSON `body` to the admin listener at
/// `addr`; returns the status code and the body.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    request_within(addr, method, path, body, Duration::from_secs(30))
}

/// [`request`], given up after `timeout` to connect and as long to wait for
/// each read (a stopped node accepts connections it never answers).
pub fn request_within(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut s = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("resolving the admin listener {addr}"))?
        .find_map(|a| std::net::TcpStream::connect_timeout(&a, timeout).ok())
        .with_context(|| format!("connecting to the admin listener at {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr}{path}: not an HTTP answer"))?;
    Ok((status, body.to_string()))
}
