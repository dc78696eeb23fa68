//! The admin HTTP listener: `GET /metrics` (Prometheus), `GET /v1/health`
//! (readiness, see [`crate::health`]) and `GET /v1/cluster` (this node's view
//! of the cluster, for `weir cluster status`). It answers from process start,
//! before the logs are loaded.
//! `/v1/jobs` lists, shows, creates (`POST`, a JSON job definition) and
//! drops (`DELETE /v1/jobs/NAME`) stream jobs.
//! A minimal HTTP/1.1 responder: one request per connection, bodies up to
//! [`MAX_BODY`] bytes by `Content-Length`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::health::Health;
use crate::stream::jobs::QueryError;

/// Serves admin requests until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            () = &mut shutdown => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            match read_request(&mut sock).await {
                Ok(req) => {
                    let answer = respond(&req, &health).await;
                    let _ = sock.write_all(http_response(answer).as_bytes()).await;
                }
                Err(Some(refused)) => {
                    let _ = sock.write_all(http_response(refused).as_bytes()).await;
                    // Read what the client still sends (for a while), so that
                    // closing with unread bytes does not reset the connection
                    // before it reads the answer.
                    let _ = sock.shutdown().await;
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                    let mut sink = vec![0u8; 16 * 1024];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout_at(deadline, sock.read(&mut sink)).await
                    {
                        if n == 0 {
                            break;
                        }
                    }
                }
                Err(None) => {}
            }
        });
    }
}

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

/// The largest request head (request line and headers) read.
const MAX_HEAD: usize = 8192;

/// One request.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// An answer as HTTP/1.1 bytes, closing the connection.
fn http_response((status, ctype, body): Answer) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request: its head (until the blank line, at most 8 KiB) and a
/// body of `Content-Length` bytes. Refuses, with the answer to send, a
/// head or body over its limit (431, 413: found from outside, the
/// connection was reset without a word); `Err(None)` when the client is
/// too slow or closes early.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Result<Request, Option<Answer>> {
    // Read until the end of the request head: one `read` may return only part
    // of it when the client writes it in pieces, and a cut-off path would be
    // answered 404 (found by weir-tests).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Some(json_error(
                "431 Request Header Fields Too Large",
                format!("the request line and headers are over {MAX_HEAD} bytes"),
            )));
        }
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Ok(Ok(0)) => break buf.len(),
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            _ => return Err(None),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("GET").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(Some(json_error(
            "413 Payload Too Large",
            format!("the body is {length} bytes, over the {MAX_BODY}-byte limit"),
        )));
    }
    let mut body = buf[head_end.min(buf.len())..].to_vec();
    while body.len() < length {
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(k)) => body.extend_from_slice(&chunk[..k]),
            _ => return Err(None),
        }
    }
    body.truncate(length);
    Ok(Request { method, path, body })
}

type Answer = (&'static str, &'static str, String);

fn loading() -> Answer {
    (
        "503 Service Unavailable",
        "text/plain",
        "logs are still loading\n".to_string(),
    )
}

fn json_error(status: &'static str, message: impl std::fmt::Display) -> Answer {
    let body = serde_json::json!({ "error": message.to_string() });
    (status, "application/json", format!("{body}\n"))
}

async fn respond(req: &Request, health: &Arc<Health>) -> Answer {
    let path = req.path.split('?').next().unwrap_or("/");
    match (req.method.as_str(), path, health.broker()) {
        ("GET", "/metrics", Some(broker)) => (
            "200 OK",
            "text/plain; version=0.0.4",
            broker.metrics.render(&broker.limits) + &broker.partition_gauges(),
        ),
        ("GET", "/v1/cluster", Some(broker)) => (
            "200 OK",
            "application/json",
            format!("{}\n", broker.cluster_view()),
        ),
        ("GET", "/v1/health", _) => {
            let report = health.check().await;
            let status = if report.ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", report.body)
        }
        (_, p, Some(broker)) if p == "/v1/jobs" || p.starts_with("/v1/jobs/") => {
            jobs(req, p, broker).await
        }
        (_, "/metrics" | "/v1/cluster", None) => loading(),
        (_, p, None) if p.starts_with("/v1/jobs") => loading(),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}

/// A job definition posted to `/v1/jobs`: a JSON object of
/// [`DEFINITION_FIELDS`](crate::stream::job::DEFINITION_FIELDS) only (found
/// from outside: a misspelt `grace` gave a job with no grace, silently).
fn job_definition(body: &[u8]) -> Result<crate::stream::job::JobDef, String> {
    use crate::stream::job::DEFINITION_FIELDS;
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(fields) = value.as_object() {
        if let Some(unknown) = fields
            .keys()
            .find(|k| !DEFINITION_FIELDS.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field {unknown:?}, expected one of {}",
                DEFINITION_FIELDS.join(", ")
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// `/v1/jobs` and `/v1/jobs/NAME`.
async fn jobs(req: &Request, path: &str, broker: &Arc<crate::broker::Broker>) -> Answer {
    use crate::stream::jobs::{self, JobChangeError};
    let name = path.strip_prefix("/v1/jobs/").map(str::to_string);
    let view = |name: String| async move {
        broker
            .jobs
            .views_everywhere(broker)
            .await
            .into_iter()
            .find(|v| v.def.name == name)
    };
    if let Some(n) = name.as_deref().and_then(|n| n.strip_suffix("/state")) {
        // Without a query it is still a state request: it is told the key
        // is missing, not that a job "NAME/state" does not exist.
        let query = req.path.split_once('?').map_or("", |(_, q)| q);
        return job_state(broker, n, query).await;
    }
    match (req.method.as_str(), name) {
        ("GET", None) => {
            let all = broker.jobs.views_everywhere(broker).await;
            let body = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
            ("200 OK", "application/json", format!("{body}\n"))
        }
        ("GET", Some(n)) => match view(n.clone()).await {
            Some(v) => {
                let body = serde_json::to_string(&v).unwrap_or_default();
                ("200 OK", "application/json", format!("{body}\n"))
            }
            None => json_error("404 Not Found", format!("job {n} does not exist")),
        },
        ("POST", None) => {
            let def = match job_definition(&req.body) {
                Ok(d) => d,
                Err(e) => return json_error("400 Bad Request", format!("job definition: {e}")),
            };
            let b = Arc::clone(broker);
            let name = def.name.clone();
            match tokio::task::spawn_blocking(move || jobs::create(&b, def)).await {
                Ok(Ok(())) => {
                    let body = serde_json::json!({ "created": name });
                    ("201 Created", "application/json", format!("{body}\n"))
                }
                Ok(Err(e @ (JobChangeError::Invalid(_) | JobChangeError::Topics(_)))) => {
                    json_error("400 Bad Request", e)
                }
                Ok(Err(e @ JobChangeError::Exists(_))) => json_error("409 Conflict", e),
                Ok(Err(e)) => json_error("503 Service Unavailable", e),
                Err(e) => json_error("500 Internal Server Error", e),
            }
        }
        ("DELETE", Some(n)) => {
            let b = Arc::clone(broker);
            match tokio::task::spawn_blocking(move || jobs::drop_job(&b, &n)).await {
                Ok(Ok(())) => ("200 OK", "application/json", "{}\n".to_string()),
                Ok(Err(e @ JobChangeError::Unknown(_))) => json_error("404 Not Found", e),
                Ok(Err(e)) => json_error("503 Service Unavailable", e),
                Err(e) => json_error("500 Internal Server Error", e),
            }
        }
        _ => json_error("405 Method Not Allowed", "use GET, POST or DELETE"),
    }
}

/// `GET /v1/jobs/NAME/state?key=K`: the open windows of group K. K is the
/// key column's value (`17`, `"a"` or `a`), or a JSON array of the values
/// when the job groups by several columns (`[]` by none). An unquoted
/// number or boolean that no group has is looked up as text too (`17` finds
/// the group of the string `"17"`: most keys are text, and a shell eats the
/// quotes); quoted, it is text only.
async fn job_state(broker: &Arc<crate::broker::Broker>, name: &str, query: &str) -> Answer {
    let Some(raw) = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "key")
        .map(|(_, v)| percent_decode(v))
    else {
        return json_error("400 Bad Request", "missing ?key=");
    };
    let Some(def) = broker.meta.jobs().get(name).cloned() else {
        return json_error("404 Not Found", format!("job {name} does not exist"));
    };
    let columns = def.plan().map(|p| p.keys).ok();
    let keys = columns.as_ref().map_or(1, Vec::len);
    let parsed = serde_json::from_str::<serde_json::Value>(&raw)
        .unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
    // The text of a bare number or boolean, for a second look (by the node
    // asked first: a forwarded request names the group it found).
    let forwarded = query.split('&').any(|kv| kv == FORWARDED);
    let as_text = (keys == 1 && !forwarded && (parsed.is_number() || parsed.is_boolean()))
        .then(|| vec![serde_json::Value::String(raw.trim().to_string())]);
    // One key column: the value as given (an array too); none or several:
    // a JSON array of the values (`[]` for a job grouping by its window
    // alone).
    let mut values = match parsed {
        serde_json::Value::Array(v) if keys != 1 => v,
        v => vec![v],
    };
    // A record key is text: `?key=17` asks for the key "17".
    for (v, c) in values.iter_mut().zip(columns.iter().flatten()) {
        if c == crate::stream::plan::KEY_COLUMN && !(v.is_string() || v.is_null()) {
            *v = serde_json::Value::String(v.to_string());
        }
    }
    if values.len() != keys {
        return json_error(
            "400 Bad Request",
            format!(
                "job {name} groups by {keys} columns: give ?key= a JSON array of {keys} values"
            ),
        );
    }
    let text_differs = as_text.as_ref().is_some_and(|t| *t != values);
    let answer = open_windows(broker, name, forwarded, values).await;
    match as_text {
        Some(text) if text_differs && answer.0 == "200 OK" && answer.2.trim() == "[]" => {
            open_windows(broker, name, forwarded, text).await
        }
        _ => answer,
    }
}

/// The open windows of group `values` in job `name`, asked of the node
/// running the task that holds them (unless this request was `forwarded`
/// by another node already).
async fn open_windows(
    broker: &Arc<crate::broker::Broker>,
    name: &str,
    forwarded: bool,
    values: Vec<serde_json::Value>,
) -> Answer {
    // Passed on as the values looked up, so that the node asked looks up
    // the same group (one column: its value; several: their array).
    let asked = match values.as_slice() {
        [one] => one.to_string(),
        all => serde_json::Value::Array(all.to_vec()).to_string(),
    };
    let query = &format!("key={}", crate::admin_client::percent_encode(&asked));
    match broker.jobs.query(broker, name, values).await {
        Ok(windows) => windows_answer(&windows),
        Err(QueryError::Elsewhere { node, .. }) if !forwarded => {
            forward_state(broker, node, name, query).await
        }
        Err(QueryError::Spread { mut windows, nodes }) if !forwarded => {
            // A job grouping by the record key: a key is on one of them.
            for node in nodes {
                let answer = forward_state(broker, node, name, query).await;
                if answer.0 != "200 OK" {
                    return answer;
                }
                match serde_json::from_str::<Vec<serde_json::Value>>(&answer.2) {
                    Ok(more) => windows.extend(more),
                    Err(e) => {
                        return json_error(
                            "502 Bad Gateway",
                            format!("node {node} answered something else than windows: {e}"),
                        )
                    }
                }
            }
            windows_answer(&windows)
        }
        // Asked by the node that fans the query out: this node's share.
        Err(QueryError::Spread { windows, .. }) => windows_answer(&windows),
        Err(e @ QueryError::NotRunning(_)) => json_error("503 Service Unavailable", e),
        Err(e) => json_error("409 Conflict", e),
    }
}

/// Asks `node`, which runs the task holding the key, for the state this
/// node was asked (once: the forwarded request says so, and is not
/// forwarded again) and relays its answer.
async fn forward_state(
    broker: &Arc<crate::broker::Broker>,
    node: i32,
    name: &str,
    query: &str,
) -> Answer {
    let Some(addr) = broker.brokers().get(&node).and_then(|m| m.admin.clone()) else {
        return json_error(
            "409 Conflict",
            format!("job {name}: that key's windows are on node {node}, whose admin listener is not known"),
        );
    };
    let path = format!("/v1/jobs/{name}/state?{query}&{FORWARDED}");
    let asked = tokio::task::spawn_blocking(move || {
        crate::admin_client::request(&addr, "GET", &path, None)
    });
    match tokio::time::timeout(std::time::Duration::from_secs(10), asked).await {
        Ok(Ok(Ok((200, body)))) => ("200 OK", "application/json", body),
        Ok(Ok(Ok((status, body)))) => {
            let error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            json_error(
                "409 Conflict",
                format!("node {node} answered {status}: {error}"),
            )
        }
        Ok(Ok(Err(e))) => json_error("502 Bad Gateway", format!("asking node {node}: {e:#}")),
        Ok(Err(e)) => json_error("502 Bad Gateway", format!("asking node {node}: {e}")),
        Err(_) => json_error(
            "504 Gateway Timeout",
            format!("node {node} did not answer in 10 s"),
        ),
    }
}

/// The 200 answer carrying a key's open windows.
fn windows_answer(windows: &[serde_json::Value]) -> Answer {
    let body = serde_json::to_string(windows).unwrap_or_else(|_| "[]".into());
    ("200 OK", "application/json", format!("{body}\n"))
}

/// The query parameter a forwarded state request carries.
const FORWARDED: &str = "forwarded=1";

/// Decodes `%XX` escapes and `+` (a query string's space).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(super::percent_decode("%22a%20b%22"), "\"a b\"");
        assert_eq!(super::percent_decode("a+b"), "a b");
        assert_eq!(super::percent_decode("100%"), "100%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
        assert_eq!(super::percent_decode("%e2%82%ac"), "€");
    }

    /// Found from outside: `POST /v1/jobs` refused `"emit": "changes"` and
    /// an RFC 3339 `from` (the CLI's forms), and took unknown fields
    /// silently. The stored forms are still read.
    #[test]
    fn job_definitions_take_the_clis_forms_and_no_unknown_field() {
        use crate::stream::job::StartFrom;
        use crate::stream::window::EmitMode;
        let def = |json: &str| super::job_definition(json.as_bytes());
        let d =
            def(r#"{"name": "j", "sql": "s", "emit": "changes", "from": "2023-11-14T22:13:20Z"}"#)
                .unwrap();
        assert_eq!(d.emit, EmitMode::Changes);
        assert_eq!(d.from, StartFrom::Timestamp(1_700_000_000_000));
        let d =
            def(r#"{"name": "j", "sql": "s", "emit": "Final", "from": {"timestamp": 5}}"#).unwrap();
        assert_eq!((d.emit, d.from), (EmitMode::Final, StartFrom::Timestamp(5)));
        let d = def(r#"{"name": "j", "sql": "s", "from": "latest", "one_node": true}"#).unwrap();
        assert_eq!(d.from, StartFrom::Latest);
        // What is stored reads back as it was.
        let stored = serde_json::to_string(&d).unwrap();
        assert_eq!(def(&stored).unwrap(), d);
        let e = def(r#"{"name": "j", "sql": "s", "grace": 500}"#).unwrap_err();
        assert!(
            e.contains("unknown field \"grace\"") && e.contains("grace_ms"),
            "{e}"
        );
        let e = def(r#"{"name": "j", "sql": "s", "from": "yesterday"}"#).unwrap_err();
        assert!(
            e.contains("expected earliest, latest or an RFC 3339 time"),
            "{e}"
        );
        assert!(def(r#"{"name": "j", "sql": "s", "emit": "sometimes"}"#).is_err());
    }
}
