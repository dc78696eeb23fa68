//! The `weir` client commands as a shell uses them: output piped into a
//! reader that stops early (`weir topic describe big | head`) ends the
//! command quietly, as `cat` would, not with a panic.

use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
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
