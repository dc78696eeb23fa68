//! The `weir` client commands as a shell uses them: output piped into a
//! reader that stops early (`weir topic describe big | head`) ends the
//! command quietly, as `cat` would, not with a panic; `weir produce` is an
//! idempotent producer unless told otherwise, as Kafka's is.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use weir_tests::raw::{fetch, RawConn};
use weir_tests::{weir, weir_bin, WeirNode};

#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() -> Result<()> {
    let node = WeirNode::start_default()?;
    let (bootstrap, admin) = (node.bootstrap(), node.admin_addr());
    weir(&[
        "topic",
        "create",
        "wide",
        "--partitions",
        "20",
        "--bootstrap",
        bootstrap,
    ])?;
    for args in [
        vec!["topic", "describe", "wide", "--bootstrap", bootstrap],
        vec!["topic", "list", "--bootstrap", bootstrap],
        vec!["job", "list", "--admin", admin],
    ] {
        let mut child = Command::new(weir_bin()?)
            .args(&args)
            .env("RUST_LIB_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // The reader is gone before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !stderr.contains("panicked") && out.status.code() != Some(101),
            "weir {args:?} into a closed pipe: {:?}\n{stderr}",
            out.status
        );
    }
    Ok(())
}

/// A node that cannot bind one of its listeners says which one and where,
/// not a bare "Address already in use".
#[test]
fn a_node_names_the_listener_it_cannot_bind() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = taken.local_addr()?.to_string();
    for (listener, flags) in [
        (
            "the Kafka listener",
            [
                "--listen",
                taken_addr.as_str(),
                "--admin-listen",
                "127.0.0.1:0",
            ],
        ),
        (
            "the admin listener",
            [
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                taken_addr.as_str(),
            ],
        ),
    ] {
        let dir = tempfile::tempdir()?;
        let out = Command::new(weir_bin()?)
            .arg("broker")
            .arg("--data-dir")
            .arg(dir.path())
            .args(flags)
            .env("RUST_LIB_BACKTRACE", "0")
            .env_remove("WEIR_CONFIG")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "the node started on a taken port");
        ensure!(
            err.contains(&format!("binding {listener} {taken_addr}")),
            "the error does not name {listener} {taken_addr}:\n{err}"
        );
    }
    Ok(())
}

/// `weir produce` with `args`, one record per line of `lines`; its exit
/// status and stderr.
fn produce(args: &[&str], lines: &str) -> Result<(bool, String)> {
    let mut child = Command::new(weir_bin()?)
        .arg("produce")
        .args(args)
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(lines.as_bytes())?;
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    Ok((out.status.success(), err))
}

/// As Kafka's producer since 3.0, `weir produce` writes as an idempotent
/// producer by default (with acks=all, its default): a batch it retries
/// after a lost answer is not stored twice. Its batches carry a producer
/// id; `--no-idempotent` and `--acks 1` write plain ones, and
/// `--idempotent` with `--acks 1` is refused, as Kafka refuses it.
#[test]
fn produce_is_idempotent_by_default() -> Result<()> {
    let node = WeirNode::start_default()?;
    let bootstrap = node.bootstrap();
    weir(&["topic", "create", "ids", "--bootstrap", bootstrap])?;
    let runs: [(&[&str], bool); 4] = [
        (&[], true),
        (&["--acks", "all", "--idempotent"], true),
        (&["--no-idempotent"], false),
        (&["--acks", "1"], false),
    ];
    let mut conn = RawConn::connect(bootstrap)?;
    for (i, (flags, idempotent)) in runs.iter().enumerate() {
        let mut args = vec!["ids", "-p", "0", "--bootstrap", bootstrap];
        args.extend_from_slice(flags);
        let (ok, err) = produce(&args, "a\nb\n")?;
        ensure!(ok, "weir produce {flags:?}: {err}");
        // Each run wrote one batch of two records, after the runs before.
        let (code, records) = fetch(&mut conn, "ids", 0, 2 * i as i64)?;
        ensure!(code == 0 && records.len() > 51, "fetch: error {code}");
        let producer_id = i64::from_be_bytes(records[43..51].try_into()?);
        ensure!(
            (producer_id >= 0) == *idempotent,
            "weir produce {flags:?} wrote producer id {producer_id}"
        );
    }
    let (ok, err) = produce(
        &[
            "ids",
            "--acks",
            "1",
            "--idempotent",
            "--bootstrap",
            bootstrap,
        ],
        "c\n",
    )?;
    ensure!(
        !ok && err.contains("--acks all"),
        "--idempotent with --acks 1: {err}"
    );
    Ok(())
}
