//! Windowed stream jobs inside the broker (issue 9).
//!
//! A job is one SQL statement, `INSERT INTO out SELECT … FROM in GROUP BY
//! keys, <window>`: `sql` turns it into a [`plan::JobPlan`] (or an error
//! naming the clause it cannot run); `row` reads a record's JSON into the
//! operator's row (time, key, arguments, `WHERE`); `window` is the pure
//! window operator (assign, aggregate, fire; no IO), `acc` its aggregates
//! (order-independent, so exact sums) and `watermark` the per-partition
//! event time that decides lateness and firing. A job runs as tasks
//! (`jobs`): a `route` task on the leader of each input partition and an
//! `aggregate` task on the leader of each shard, joined by the job's
//! repartition topic (`repartition`); `task` holds what they share
//! (checkpoints, topics). `top_n` keeps the best results of each window for
//! a statement ranking them (window Top-N).
//!
//! # Why replay equals live
//!
//! Input partitions are read at different paces (a live tail, a replay from
//! `earliest`, a restart), so two decisions depend only on deterministic
//! things:
//! - **lateness is judged per partition**: a record is late when its window
//!   closed by the watermark of its own partition (the largest event time that
//!   partition showed before it), which depends only on that partition's
//!   order;
//! - **firing uses the minimum** of the partitions' watermarks: a window is
//!   final once every partition's watermark passed its close, and then no
//!   record still to come can belong to it without being late.
//!
//! So the final results are a function of the input alone. For sessions the
//! close of a record's window is its own gap window's (`t + gap + grace`);
//! a session `[start, end)` is final once the minimum passed
//! `end + gap + grace`, because a record that is not late can still arrive
//! up to `gap + grace` behind a partition's watermark and would extend it.

pub mod acc;
pub mod aggregate;
pub mod checkpoint;
pub mod job;
pub mod jobs;
mod json_pick;
pub mod local_read;
pub mod local_write;
pub mod number;
pub mod output;
pub mod plan;
pub mod repartition;
mod result_writer;
pub mod route;
pub mod row;
pub mod sql;
pub mod task;
pub mod top_n;
pub mod watermark;
pub mod window;
