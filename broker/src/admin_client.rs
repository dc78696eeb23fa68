//! One HTTP/1.1 request to a node's admin listener, for the CLI commands
//! that use it (`weir cluster status`, `weir job`).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};

/// Sends `method path` with an optional JSON `body` to the admin listener at
/// `addr`; returns the status code and the body.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to the admin listener at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
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
