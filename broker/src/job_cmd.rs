//! `weir job`: windowed SQL jobs through a node's admin listener
//! (`/v1/jobs`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use weir_broker::stream::job::{JobDef, StartFrom};
use weir_broker::stream::window::EmitMode;

/// The `weir job` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCmd {
    /// Define a job: it runs at once, on the node leading its input.
    Create {
        /// The job's name (also its consumer group `weir-job-NAME`).
        name: String,
        /// `INSERT INTO out SELECT … FROM in GROUP BY keys, TUMBLE|HOP|SESSION(…)`; `_key` is the record key (grouping by it skips the repartition topic).
        #[arg(long)]
        sql: String,
        /// Where it starts the first time: earliest, latest or an RFC 3339 time.
        #[arg(long, default_value = "earliest", value_parser = parse_from)]
        from: StartFrom,
        /// Allowed lateness, e.g. 5s, 500ms, 1m.
        #[arg(long, default_value = "0s", value_parser = parse_ms)]
        grace: i64,
        /// final: one result per window when it closes; changes: every update too.
        #[arg(long, default_value = "final", value_parser = parse_emit)]
        emit: EmitMode,
        /// Where late and unreadable records go.
        #[arg(long)]
        late_topic: Option<String>,
        /// A caught-up input partition with no record for this long stops
        /// holding windows back (off by default).
        #[arg(long, value_parser = parse_ms)]
        idle_timeout: Option<i64>,
        #[command(flatten)]
        admin: Admin,
    },
    /// List the jobs.
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// Show a job: state, records in and out, late and bad counts, lag and
    /// watermark per input partition.
    Describe {
        /// The job.
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Show the open windows of one group, as the results they will become.
    Query {
        /// The job.
        name: String,
        /// The group key: the key column's value, or a JSON array of the
        /// values when the job groups by several columns (`[]` by none).
        #[arg(long)]
        key: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Drop a job (its output topic and checkpoint stay).
    Drop {
        /// The job.
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
}

/// Which node to ask.
#[derive(Debug, clap::Args)]
pub(crate) struct Admin {
    /// A node's admin listener.
    #[arg(long, default_value = "127.0.0.1:9644", env = "WEIR_ADMIN")]
    admin: String,
}

fn parse_from(s: &str) -> Result<StartFrom, String> {
    match s {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        t => weir_client::cli::time::parse_rfc3339_ms(t)
            .map(StartFrom::Timestamp)
            .map_err(|e| format!("expected earliest, latest or an RFC 3339 time: {e}")),
    }
}

fn parse_emit(s: &str) -> Result<EmitMode, String> {
    match s {
        "final" => Ok(EmitMode::Final),
        "changes" => Ok(EmitMode::Changes),
        _ => Err("expected final or changes".into()),
    }
}

/// `500ms`, `5s`, `2m`, `1h` (a bare number is milliseconds).
fn parse_ms(s: &str) -> Result<i64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 500ms, 5s, 2m"))?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: the unit is one of ms, s, m, h")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Runs one `weir job` command.
pub(crate) fn run(cmd: JobCmd) -> Result<()> {
    use weir_broker::admin_client::request;
    match cmd {
        JobCmd::Create {
            name,
            sql,
            from,
            grace,
            emit,
            late_topic,
            idle_timeout,
            admin,
        } => {
            let def = JobDef {
                name: name.clone(),
                sql,
                from,
                grace_ms: grace,
                emit,
                late_topic,
                idle_timeout_ms: idle_timeout,
                incarnation: None,
                one_partition: false,
                one_node: false,
                created_at_ends: Default::default(),
            };
            let body = serde_json::to_string(&def)?;
            let (status, answer) = request(&admin.admin, "POST", "/v1/jobs", Some(&body))?;
            check(status, &answer)?;
            println!("created job {name}");
        }
        JobCmd::List { admin } => {
            let (status, answer) = request(&admin.admin, "GET", "/v1/jobs", None)?;
            check(status, &answer)?;
            let jobs: Vec<serde_json::Value> = serde_json::from_str(&answer)?;
            println!(
                "{:<24} {:<28} {:>10} {:>10}  SQL",
                "NAME", "STATE", "IN", "OUT"
            );
            // A JSON value ignores width and alignment: counts are written
            // as text first. A statement on several lines stays on its row.
            let count = |v: &serde_json::Value| v.as_u64().map_or("-".into(), |n| n.to_string());
            for j in jobs {
                let sql = j["sql"].as_str().unwrap_or("");
                println!(
                    "{:<24} {:<28} {:>10} {:>10}  {}",
                    j["name"].as_str().unwrap_or(""),
                    j["status"]["state"].as_str().unwrap_or(""),
                    count(&j["status"]["records_in"]),
                    count(&j["status"]["records_out"]),
                    sql.split_whitespace().collect::<Vec<_>>().join(" "),
                );
            }
        }
        JobCmd::Describe { name, admin } => {
            let (status, answer) = request(&admin.admin, "GET", &format!("/v1/jobs/{name}"), None)?;
            check(status, &answer)?;
            let v: serde_json::Value = serde_json::from_str(&answer).context("the job")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        JobCmd::Query { name, key, admin } => {
            let path = format!(
                "/v1/jobs/{name}/state?key={}",
                weir_broker::admin_client::percent_encode(&key)
            );
            let (status, answer) = request(&admin.admin, "GET", &path, None)?;
            check(status, &answer)?;
            let windows: Vec<serde_json::Value> = serde_json::from_str(&answer)?;
            for w in windows {
                println!("{w}");
            }
        }
        JobCmd::Drop { name, admin } => {
            let (status, answer) =
                request(&admin.admin, "DELETE", &format!("/v1/jobs/{name}"), None)?;
            check(status, &answer)?;
            println!("dropped job {name}");
        }
    }
    Ok(())
}

/// Fails with the node's error message unless the status is 2xx.
fn check(status: u16, body: &str) -> Result<()> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    bail!("{msg} (HTTP {status})")
}
