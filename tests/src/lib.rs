//! Harness for integration tests: starts real `weir` processes on loopback with
//! real temporary data directories, and drives them with real Kafka clients
//! (kcat, confluent-kafka and kafka-python scripts under `tests/clients/`, and
//! kafkajs scripts under `tests/clients/js/`).
//!
//! Every wait is a bounded poll ([`poll_until`]) or a deadline on a child
//! process; nothing sleeps to "let things settle".

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod bids;
pub mod cluster;
pub mod ports;
pub mod proxy;
pub mod raw;
pub mod topic_reader;

/// How long a node may take to print its `weir listening` line.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long one client script (python, node, kcat) may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);
/// Lines of node stderr shown when a test fails.
const TAIL_LINES: usize = 60;

/// The workspace root (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate is inside the workspace")
        .to_path_buf()
}

/// The `weir` binary: `$WEIR_BIN`, or `<workspace>/target/debug/weir`, built once
/// with `cargo build -p weir-broker --bin weir` when it does not exist yet.
pub fn weir_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("WEIR_BIN") {
            return Ok(PathBuf::from(p));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_dir().join("target"), PathBuf::from);
        let bin = target.join("debug").join("weir");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "weir-broker", "--bin", "weir"])
                .current_dir(workspace_dir())
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p weir-broker --bin weir: {status}"));
            }
        }
        Ok(bin)
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Polls `cond` until it returns `Ok(Some(v))` or `deadline` passes. Errors from
/// `cond` are remembered and reported if the deadline passes; they do not stop
/// the polling (the condition may not hold *yet*). The error names the
/// caller's file and line, so a failing test says which wait ran out.
#[track_caller]
pub fn poll_until<T>(deadline: Duration, mut cond: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let at = std::panic::Location::caller();
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    let mut last_err = None;
    loop {
        match cond() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= end {
            let what = format!("condition at {at} not met within {deadline:?}");
            return Err(match last_err {
                Some(e) => e.context(what),
                None => anyhow!(what),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// Data directory to use; `None`: a fresh temporary directory owned by the node.
    pub data_dir: Option<PathBuf>,
    /// Extra `weir broker` flags, e.g. `["--default-partitions", "4"]`.
    pub args: Vec<String>,
}

impl NodeOpts {
    /// Adds a flag and its value.
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_string());
        self.args.push(value.to_string());
        self
    }
}

/// A running `weir broker` process. Dropping it kills the process and, in a
/// failing test, its stderr tail is shown (libtest shows captured output of
/// failed tests only).
#[derive(Debug)]
pub struct WeirNode {
    child: Option<Child>,
    // Keeps a node-owned temporary data dir alive; `None` when the caller gave one.
    _owned_dir: Option<tempfile::TempDir>,
    // Holds the stderr log (kept across restarts, appended to).
    log_dir: tempfile::TempDir,
    data_dir: PathBuf,
    args: Vec<String>,
    bootstrap: String,
    admin: String,
    starts: u32,
    // The listening line of a node launched and not yet awaited.
    listening: Option<mpsc::Receiver<String>>,
}

impl WeirNode {
    /// Starts a node and waits for its `weir listening` line.
    /// A node that lost a port to another process before binding it is
    /// started again on other ports (at most three times).
    pub fn start(opts: NodeOpts) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut node = Self::launch(opts.clone())?;
            match node.await_listening() {
                Err(e) if attempt < 3 && ports::lost_a_port(&e) => {
                    eprintln!("a node lost its port to another process; starting again: {e:#}");
                }
                r => return r.map(|()| node),
            }
        }
    }

    /// Starts a node's process without waiting for it to listen (a node
    /// with peers listens once a quorum of them runs); see
    /// [`WeirNode::await_listening`].
    pub fn launch(opts: NodeOpts) -> Result<Self> {
        let (owned, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::Builder::new().prefix("weir-data-").tempdir()?;
                let p = t.path().to_path_buf();
                // WEIR_TEST_KEEP_DATA=1 keeps the directory for a post-mortem.
                if std::env::var_os("WEIR_TEST_KEEP_DATA").is_some() {
                    eprintln!("keeping {}", p.display());
                    (None, t.keep())
                } else {
                    (Some(t), p)
                }
            }
        };
        let mut node = WeirNode {
            child: None,
            _owned_dir: owned,
            log_dir: {
                let mut d = tempfile::Builder::new().prefix("weir-log-").tempdir()?;
                if std::env::var_os("WEIR_TEST_KEEP_DATA").is_some() {
                    eprintln!("keeping logs in {}", d.path().display());
                    d.disable_cleanup(true);
                }
                d
            },
            data_dir,
            args: opts.args,
            bootstrap: String::new(),
            admin: String::new(),
            starts: 0,
            listening: None,
        };
        node.launch_process()?;
        Ok(node)
    }

    /// Starts a node with default settings.
    pub fn start_default() -> Result<Self> {
        Self::start(NodeOpts::default())
    }

    fn stderr_path(&self) -> PathBuf {
        self.log_dir.path().join("stderr.log")
    }

    fn launch_process(&mut self) -> Result<()> {
        self.starts += 1;
        // A restarted node keeps its ports, as a real one does: clients that
        // bootstrapped from it, and peers, find it again. They are taken
        // below the ephemeral range, where no outgoing connection takes
        // them while the node is down (see [`ports`]).
        if self.bootstrap.is_empty() || self.admin.is_empty() {
            let p = ports::free_ports(2)?;
            self.bootstrap = format!("127.0.0.1:{}", p[0]);
            self.admin = format!("127.0.0.1:{}", p[1]);
        }
        let (listen, admin) = (self.bootstrap.clone(), self.admin.clone());
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        writeln!(log, "===== start #{} =====", self.starts)?;
        let mut child = Command::new(weir_bin()?)
            .arg("broker")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &listen, "--admin-listen", &admin])
            .args(&self.args)
            .env_remove("WEIR_CONFIG")
            // An error's message, not a backtrace, ends a failed node's log.
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning weir")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if line.starts_with("weir listening") {
                    let _ = tx.send(line);
                    break;
                }
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        self.child = Some(child);
        self.listening = Some(rx);
        Ok(())
    }

    /// Waits for the `weir listening` line of a launched node.
    pub fn await_listening(&mut self) -> Result<()> {
        let Some(rx) = self.listening.take() else {
            return Ok(());
        };
        let line = match rx.recv_timeout(START_DEADLINE) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.take().map(|mut c| c.wait());
                let tail = self.stderr_tail();
                bail!("weir exited before it listened ({status:?})\n--- weir stderr ---\n{tail}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let tail = self.stderr_tail();
                self.kill_quietly();
                bail!("weir did not print its listening line within {START_DEADLINE:?}\n--- weir stderr ---\n{tail}");
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no {name} in {line:?}"))
        };
        self.bootstrap = field("kafka=")?;
        self.admin = field("admin=")?;
        Ok(())
    }

    /// The Kafka listener, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The admin HTTP listener, `127.0.0.1:PORT`.
    pub fn admin_addr(&self) -> &str {
        &self.admin
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Fails (with the stderr tail) unless the process is still running.
    pub fn assert_alive(&mut self) -> Result<()> {
        if self.is_alive() {
            return Ok(());
        }
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        bail!(
            "weir is not running (exit: {status:?})\n--- weir stderr ---\n{}",
            self.stderr_tail()
        )
    }

    /// The last lines the node wrote to stderr (all starts).
    pub fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.stderr_path()) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            // Lossy: the seek may land inside a multi-byte character.
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// Everything the node wrote to stderr so far (all starts).
    pub fn stderr_all(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// SIGKILL: the node gets no chance to shut down cleanly.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Sends `sig` (as `kill` takes it: "-STOP", "-CONT") to the running
    /// process: a stopped node holds its sockets open and answers nothing.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow::anyhow!("node is not running"))?;
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill {sig} {pid} failed");
        Ok(())
    }

    fn kill_quietly(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for exit (SIGKILL and an error after a deadline).
    /// Returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("node is not running");
        };
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", c.id());
        }
        let end = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= end {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "weir did not exit within {STOP_DEADLINE:?} of SIGTERM\n--- weir stderr ---\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the node again on the same data dir (the same ports). Stops it with
    /// SIGTERM first if it is still running.
    pub fn restart(&mut self) -> Result<()> {
        self.relaunch()?;
        self.await_listening()
    }

    /// Starts the node again as [`WeirNode::restart`] does, without waiting
    /// for it to listen: a node of a cluster listens once a quorum runs, so
    /// nodes started over together are launched first and awaited after
    /// ([`WeirNode::await_listening`]).
    pub fn relaunch(&mut self) -> Result<()> {
        if self.child.is_some() {
            let s = self.stop()?;
            if !s.success() {
                bail!("weir exited with {s} on SIGTERM\n{}", self.stderr_tail());
            }
        }
        self.launch_process()
    }

    /// Runs `tests/clients/<script>.py --bootstrap <this node> args...`; on
    /// failure the error carries the script's output and this node's stderr tail.
    pub fn python(&mut self, script: &str, args: &[&str]) -> Result<Output> {
        let r = python(script, &self.bootstrap, args);
        self.with_tail(r)
    }

    /// Runs `tests/clients/js/<script>.js --bootstrap <this node> args...`; on
    /// failure the error carries the script's output and this node's stderr tail.
    pub fn node(&mut self, script: &str, args: &[&str]) -> Result<Output> {
        // A missing install is not the node's fault: report it without the tail.
        js_clients_dir()?;
        let r = node(script, &self.bootstrap, args);
        self.with_tail(r)
    }

    /// Runs kcat with `-b <this node>` prepended; see [`kcat`].
    pub fn kcat(&mut self, args: &[&str], stdin: &[u8]) -> Result<Output> {
        let mut all = vec!["-b", self.bootstrap.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let r = kcat(&all, stdin);
        self.with_tail(r)
    }

    fn with_tail<T>(&mut self, r: Result<T>) -> Result<T> {
        r.map_err(|e| {
            let alive = if self.is_alive() {
                "running"
            } else {
                "NOT RUNNING"
            };
            e.context(format!(
                "(weir is {alive})\n--- weir stderr ---\n{}",
                self.stderr_tail()
            ))
        })
    }

    /// GET on the admin listener; returns (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.admin, path)
    }
}

impl Drop for WeirNode {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill_quietly();
        // Captured output is only shown for failing tests.
        if was_running || std::thread::panicking() {
            eprintln!(
                "--- weir stderr tail ({}) ---\n{}",
                self.bootstrap,
                self.stderr_tail()
            );
        }
    }
}

/// Runs a child to completion with a deadline, capturing stdout and stderr.
fn run_with_deadline(
    mut cmd: Command,
    stdin: &[u8],
    what: &str,
    deadline: Duration,
) -> Result<Output> {
    let out_dir = tempfile::Builder::new().prefix("weir-client-").tempdir()?;
    let out_path = out_dir.path().join("stdout");
    let err_path = out_dir.path().join("stderr");
    cmd.stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
    {
        let mut sin = child.stdin.take().expect("piped stdin");
        let data = stdin.to_vec();
        // A writer thread, so a child that does not read stdin cannot block us.
        std::thread::spawn(move || {
            let _ = sin.write_all(&data);
        });
    }
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} did not finish within {deadline:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: std::fs::read(&out_path)?,
        stderr: std::fs::read(&err_path)?,
    })
}

fn check_output(out: Output, what: &str) -> Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    bail!(
        "{what} failed ({})\n--- stderr ---\n{}\n--- stdout ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// Runs `$WEIR_PYTHON` (default `python3`) on `tests/clients/<script>.py
/// --bootstrap <bootstrap> args...`; fails with the script's stderr on a
/// non-zero exit.
pub fn python(script: &str, bootstrap: &str, args: &[&str]) -> Result<Output> {
    python_within(CLIENT_DEADLINE, script, bootstrap, args)
}

/// [`python`] with its own deadline (a long-running producer).
pub fn python_within(
    deadline: Duration,
    script: &str,
    bootstrap: &str,
    args: &[&str],
) -> Result<Output> {
    let py = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = workspace_dir()
        .join("tests")
        .join("clients")
        .join(format!("{script}.py"));
    let mut cmd = Command::new(py);
    cmd.arg(&path)
        .args(["--bootstrap", bootstrap])
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    let what = format!("{script}.py {}", args.join(" "));
    check_output(run_with_deadline(cmd, &[], &what, deadline)?, &what)
}

/// Runs `$WEIR_NODE` (default `node`) on `tests/clients/js/<script>.js
/// --bootstrap <bootstrap> args...`; fails with the script's stderr on a
/// non-zero exit. The scripts' packages (kafkajs) must be installed in
/// `tests/clients/js/node_modules`, which `scripts/test.sh` does.
pub fn node(script: &str, bootstrap: &str, args: &[&str]) -> Result<Output> {
    node_within(CLIENT_DEADLINE, script, bootstrap, args)
}

/// [`node`] with its own deadline (a client riding out a failover).
pub fn node_within(
    deadline: Duration,
    script: &str,
    bootstrap: &str,
    args: &[&str],
) -> Result<Output> {
    let node = std::env::var("WEIR_NODE").unwrap_or_else(|_| "node".into());
    let dir = js_clients_dir()?;
    let mut cmd = Command::new(node);
    cmd.arg(dir.join(format!("{script}.js")))
        .args(["--bootstrap", bootstrap])
        .args(args)
        .current_dir(&dir);
    let what = format!("{script}.js {}", args.join(" "));
    check_output(run_with_deadline(cmd, &[], &what, deadline)?, &what)
}

/// `tests/clients/js`, once its `node_modules` exists (else an error saying
/// how to install it).
fn js_clients_dir() -> Result<PathBuf> {
    let dir = workspace_dir().join("tests").join("clients").join("js");
    let modules = dir.join("node_modules");
    if !modules.is_dir() {
        bail!(
            "{} does not exist: the kafkajs test scripts need their npm packages; \
             run scripts/test.sh (or `npm ci --prefix tests/clients/js`) first",
            modules.display()
        );
    }
    Ok(dir)
}

/// Runs `kcat args...` with `stdin`; fails with kcat's stderr on a non-zero exit.
pub fn kcat(args: &[&str], stdin: &[u8]) -> Result<Output> {
    let kcat = std::env::var("WEIR_KCAT").unwrap_or_else(|_| "kcat".into());
    let mut cmd = Command::new(kcat);
    cmd.args(args);
    let what = format!("kcat {}", args.join(" "));
    check_output(
        run_with_deadline(cmd, stdin, &what, CLIENT_DEADLINE)?,
        &what,
    )
}

/// The value of counter or gauge `name` (no labels) in the `/metrics` of
/// the node whose admin listener is `admin`.
pub fn metric(admin: &str, name: &str) -> Result<u64> {
    let (_, body) = http_get(admin, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a count"))
}

/// A bare HTTP/1.1 GET (the admin listener closes after each response).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_request(addr, &[req.as_bytes()])
}

/// Sends an HTTP request in the given pieces (each its own TCP write) and
/// returns (status code, body).
pub fn http_request(addr: &str, pieces: &[&[u8]]) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            // Give the server a chance to read the first piece on its own.
            std::thread::sleep(Duration::from_millis(20));
        }
        s.write_all(p)?;
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end in {resp:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Parses JSON-lines output of a client script (one object per line, lines not
/// starting with `{` ignored).
pub fn json_lines(out: &Output) -> Result<Vec<serde_json::Value>> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line {l:?}")))
        .collect()
}

/// A unique-enough name for a topic or group in one test run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A consumed record, as the checks below see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<String>,
    /// Value as text.
    pub value: String,
    /// Timestamp (ms), when the client reported one.
    pub timestamp: Option<i64>,
}

fn field_i64(v: &serde_json::Value, k: &str) -> Result<i64> {
    v.get(k)
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| anyhow!("no integer {k:?} in {v}"))
}

/// Parses JSON-lines records whose value and timestamp sit under the given names.
fn recs_from_json(out: &Output, value_field: &str, ts_field: &str) -> Result<Vec<Rec>> {
    json_lines(out)?
        .iter()
        .map(|v| {
            Ok(Rec {
                partition: field_i64(v, "partition")? as i32,
                offset: field_i64(v, "offset")?,
                key: v.get("key").and_then(|k| k.as_str()).map(str::to_string),
                value: v
                    .get(value_field)
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_string(),
                timestamp: v.get(ts_field).and_then(serde_json::Value::as_i64),
            })
        })
        .collect()
}

/// Records printed by `confluent_consume.py` / `kafka_python_basic.py consume`.
pub fn recs_from_script(out: &Output) -> Result<Vec<Rec>> {
    recs_from_json(out, "value", "timestamp")
}

/// Records printed by `kcat -C -J`.
pub fn recs_from_kcat(out: &Output) -> Result<Vec<Rec>> {
    recs_from_json(out, "payload", "ts")
}

/// Checks records produced as `key:seq` values (per-key sequence numbers):
/// `expect` records in all; each partition's offsets are exactly 0..n-1; each
/// key lives in exactly one partition; each key's values arrive in produce
/// order (seq 0, 1, 2, ... by offset). Returns per-partition counts.
pub fn check_keyed(recs: &[Rec], expect: usize) -> Result<std::collections::BTreeMap<i32, usize>> {
    use std::collections::BTreeMap;
    if recs.len() != expect {
        bail!("{} records consumed, expected {expect}", recs.len());
    }
    let mut sorted = recs.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut by_part: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &sorted {
        by_part.entry(r.partition).or_default().push(r.offset);
    }
    for (p, offsets) in &by_part {
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        if *offsets != want {
            bail!(
                "partition {p}: offsets {offsets:?} are not dense 0..{}",
                offsets.len()
            );
        }
    }
    let mut key_part: BTreeMap<String, i32> = BTreeMap::new();
    let mut key_next: BTreeMap<String, u64> = BTreeMap::new();
    for r in &sorted {
        let key = r
            .key
            .clone()
            .ok_or_else(|| anyhow!("record without key: {r:?}"))?;
        let (vk, seq) = r
            .value
            .split_once(':')
            .ok_or_else(|| anyhow!("value {:?} is not key:seq", r.value))?;
        if vk != key {
            bail!("record {r:?}: value names key {vk}, record key is {key}");
        }
        let seq: u64 = seq.trim_end_matches('.').parse()?;
        let p = *key_part.entry(key.clone()).or_insert(r.partition);
        if p != r.partition {
            bail!("key {key} is in partitions {p} and {}", r.partition);
        }
        let next = key_next.entry(key.clone()).or_insert(0);
        if seq != *next {
            bail!(
                "key {key}: got seq {seq} at {}:{}, expected {next}",
                r.partition,
                r.offset
            );
        }
        *next += 1;
    }
    Ok(by_part.into_iter().map(|(p, o)| (p, o.len())).collect())
}

/// `kcat -P` input of `count` messages `key:key:seq` (kcat `-K:` splits off the
/// key), keys `k0..k{keys-1}`, matching `confluent_produce.py`'s values.
pub fn kcat_keyed_input(count: usize, keys: usize) -> String {
    kcat_keyed_input_padded(count, keys, 0)
}

/// Like [`kcat_keyed_input`], values padded with `.` to `pad` bytes
/// (compressible, so librdkafka does not fall back to an uncompressed batch).
pub fn kcat_keyed_input_padded(count: usize, keys: usize, pad: usize) -> String {
    let mut seqs = vec![0usize; keys];
    let mut s = String::new();
    for i in 0..count {
        let k = i % keys;
        let value = format!("k{k}:{}", seqs[k]);
        let dots = pad.saturating_sub(value.len());
        s.push_str(&format!("k{k}:{value}{}\n", ".".repeat(dots)));
        seqs[k] += 1;
    }
    s
}

/// Runs the `weir` CLI with `args`; its standard output, or an error with
/// its standard error when it fails.
pub fn weir(args: &[&str]) -> Result<String> {
    let out = Command::new(weir_bin()?).args(args).output()?;
    if !out.status.success() {
        bail!("weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
