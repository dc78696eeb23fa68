//! What a job computes: the input and output topics, how event time is read,
//! the window, the group keys, the aggregates, the filter, and the output
//! columns in the order the statement names them. Built by [`super::sql`],
//! run by [`super::window`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::window::GroupKey;

/// A parsed, checked job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    /// The topic the results go to (`INSERT INTO`).
    pub output_topic: String,
    /// The topic read (`FROM`).
    pub input_topic: String,
    /// Where a record's event time comes from.
    pub time: TimeSource,
    /// The window every group is cut into.
    pub window: WindowSpec,
    /// The group key columns (top-level fields of the input JSON), in
    /// `GROUP BY` order.
    pub keys: Vec<String>,
    /// The aggregates, in the order they first appear in the select list.
    pub aggregates: Vec<AggregateSpec>,
    /// `WHERE`, if any.
    pub filter: Option<Filter>,
    /// The output record's fields, in select-list order.
    pub columns: Vec<OutputColumn>,
    /// A window Top-N over the aggregation's final results (`RANK() OVER
    /// (PARTITION BY window_start, window_end ORDER BY …)` in an outer
    /// query, filtered by rank): only the best rows of each window are
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<TopN>,
    /// The job's input has one partition ([`super::job::JobDef::one_partition`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_partition: bool,
    /// The job was created on a cluster of one node
    /// ([`super::job::JobDef::one_node`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_node: bool,
}

/// The column that reads a record's key (as UTF-8 text) instead of a field
/// of its value.
pub const KEY_COLUMN: &str = "_key";

impl JobPlan {
    /// Whether every group lives in one input partition, so each
    /// partition's windows run where it is read and no repartition topic is
    /// needed: the input has one partition, or the job groups by the record
    /// key ([`KEY_COLUMN`]; a producer sends a key to one partition, as
    /// Kafka Streams' `groupByKey` relies on).
    ///
    /// With a Top-N, the ranking must also stay within one input partition:
    /// the record key must be one of its `PARTITION BY` columns.
    ///
    /// A job created on a cluster of one node needs none either: one task
    /// reads every input partition ([`JobPlan::whole`]).
    pub fn copartitioned(&self) -> bool {
        self.whole() || self.grouped_by_record_key()
    }

    /// Whether one task reads every input partition and runs all the
    /// windows (an input of one partition, or a job created on a cluster of
    /// one node), writing each result to the output partition its group
    /// key hashes to, as a shard of a repartitioned job would.
    pub fn whole(&self) -> bool {
        self.one_partition || self.one_node
    }

    /// Whether the groups (and a Top-N's rankings) include the record key.
    pub fn grouped_by_record_key(&self) -> bool {
        match &self.top {
            Some(top) => top.partition.iter().any(|&i| self.keys[i] == KEY_COLUMN),
            None => self.keys.iter().any(|k| k == KEY_COLUMN),
        }
    }

    /// The bytes a row's shard is chosen by: its group key, or with a
    /// Top-N the group key's `PARTITION BY` columns (all groups one ranking
    /// compares must meet in one shard; none: every row goes to one shard).
    pub fn shard_key<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, [u8]> {
        match &self.top {
            None => key.as_bytes().into(),
            Some(top) => top
                .partition_key(&GroupKey::values_of(key))
                .as_str()
                .as_bytes()
                .to_vec()
                .into(),
        }
    }

    /// Why the job cannot run with `inputs` input and `outputs` output
    /// partitions: grouping by the record key, input partition N's results
    /// go to output partition N, so the counts must be equal.
    pub fn partitions_mismatch(&self, inputs: i32, outputs: i32) -> Option<String> {
        if self.one_partition && (inputs, outputs) != (1, 1) {
            return Some(format!(
                "the job was created over input topic {} of one partition, so its windows run \
                 where that partition is read, without a repartition topic; now the input has \
                 {inputs} partitions and output topic {} {outputs}: drop the job and create it \
                 again",
                self.input_topic, self.output_topic
            ));
        }
        (self.copartitioned() && !self.whole() && inputs != outputs).then(|| {
            format!(
                "the job groups by {KEY_COLUMN}, so input partition N's results go to output \
                 partition N, but input topic {} has {inputs} partitions and output topic {} \
                 {outputs}",
                self.input_topic, self.output_topic
            )
        })
    }
}

/// Where a record's event time comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSource {
    /// A top-level field: epoch milliseconds (a number) or an RFC 3339 string.
    Field(String),
    /// The Kafka record's timestamp (`_timestamp`).
    RecordTimestamp,
    /// The time the job reads the record (`PROCTIME()`).
    ProcessingTime,
}

/// The window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Fixed windows `[k·size, (k+1)·size)`.
    Tumble {
        /// Length, ms (> 0).
        size_ms: i64,
    },
    /// Windows of `size` starting every `slide` (a record is in
    /// `size / slide` of them when it divides).
    Hop {
        /// Distance between window starts, ms (> 0).
        slide_ms: i64,
        /// Length, ms (> 0).
        size_ms: i64,
    },
    /// A key's records closer than `gap` to each other share a window
    /// `[first, last + gap)`.
    Session {
        /// Inactivity gap, ms (> 0).
        gap_ms: i64,
    },
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregateKind {
    /// `COUNT(*)`: records.
    CountStar,
    /// `COUNT(col)`: records whose `col` is present and not null.
    Count,
    /// `COUNT(DISTINCT col)`: distinct non-null values of `col`.
    CountDistinct,
    /// `SUM(col)`: integers stay integers; any fraction makes it a float.
    Sum,
    /// `MIN(col)`: numbers, or strings (not mixed).
    Min,
    /// `MAX(col)`: numbers, or strings (not mixed).
    Max,
    /// `AVG(col)`: a float.
    Avg,
    /// The best input rows of a window (a window Top-N over the input
    /// records themselves): its argument is the row's [`TopN::rows`]
    /// columns, ranked by the first.
    TopRows {
        /// Rows of rank `1..=limit` are kept.
        limit: u64,
        /// The greatest first.
        descending: bool,
        /// How ties are numbered.
        function: RankFunction,
    },
}

/// One aggregate of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// The function.
    pub kind: AggregateKind,
    /// Its argument column (`None` for `COUNT(*)`).
    pub column: Option<String>,
}

/// One field of an output record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputColumn {
    /// A group key column, written as `name`.
    Key {
        /// Index into [`JobPlan::keys`].
        index: usize,
        /// The field name in the output.
        name: String,
    },
    /// The window's start, epoch ms.
    WindowStart {
        /// The field name in the output (`window_start` unless aliased).
        name: String,
    },
    /// The window's end (exclusive), epoch ms.
    WindowEnd {
        /// The field name in the output (`window_end` unless aliased).
        name: String,
    },
    /// An aggregate's value.
    Aggregate {
        /// Index into [`JobPlan::aggregates`].
        index: usize,
        /// The field name in the output.
        name: String,
    },
    /// The result's rank in its Top-N (a job with [`JobPlan::top`]).
    Rank {
        /// The field name in the output.
        name: String,
    },
    /// A column of a ranked input row ([`RankColumn::Row`]).
    Field {
        /// Index into [`TopN::rows`].
        index: usize,
        /// The field name in the output.
        name: String,
    },
}

impl OutputColumn {
    /// The field name in the output.
    pub fn name(&self) -> &str {
        match self {
            OutputColumn::Key { name, .. }
            | OutputColumn::WindowStart { name }
            | OutputColumn::WindowEnd { name }
            | OutputColumn::Aggregate { name, .. }
            | OutputColumn::Rank { name }
            | OutputColumn::Field { name, .. } => name,
        }
    }
}

/// A window Top-N: per window and `PARTITION BY` columns, the aggregation's
/// final results ranked by one column, the first `limit` ranks kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopN {
    /// The group key columns (indices into [`JobPlan::keys`]) that, with the
    /// window, partition the ranking.
    pub partition: Vec<usize>,
    /// The column ranked by.
    pub order: RankColumn,
    /// `DESC`: the greatest first.
    pub descending: bool,
    /// How ties are numbered.
    pub function: RankFunction,
    /// Rows of rank `1..=limit` are kept.
    pub limit: u64,
    /// Ranking the input records themselves ([`RankColumn::Row`]): the
    /// input columns each kept row holds, the ranked one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<String>,
}

impl TopN {
    /// The `PARTITION BY` key columns' part of a group key's `values`: the
    /// ranking a group's result takes part in (besides its window).
    pub fn partition_key(&self, values: &[Value]) -> GroupKey {
        let picked: Vec<Value> = self
            .partition
            .iter()
            .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        GroupKey::of(&picked)
    }
}

/// The column a Top-N ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankColumn {
    /// A group key column (index into [`JobPlan::keys`]).
    Key(usize),
    /// An aggregate (index into [`JobPlan::aggregates`]).
    Aggregate(usize),
    /// The input records themselves, by the first of [`TopN::rows`]: the
    /// job's one aggregate is [`AggregateKind::TopRows`], its keys the
    /// `PARTITION BY` columns.
    Row,
}

/// The ranking function of a Top-N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankFunction {
    /// `ROW_NUMBER()`: 1, 2, 3, … (ties ordered by group key).
    RowNumber,
    /// `RANK()`: ties share a rank, the next rank skips (1, 1, 3).
    Rank,
    /// `DENSE_RANK()`: ties share a rank, none is skipped (1, 1, 2).
    DenseRank,
}

/// A `WHERE` condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// `left op right`.
    Compare {
        /// Left operand.
        left: Operand,
        /// The comparison.
        op: CompareOp,
        /// Right operand.
        right: Operand,
    },
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// Does not hold.
    Not(Box<Filter>),
    /// The column is missing or null.
    IsNull(String),
    /// The column is present and not null.
    IsNotNull(String),
}

/// An operand of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operand {
    /// A top-level field of the input.
    Column(String),
    /// A constant.
    Literal(Literal),
}

/// A constant in a condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    /// A number, exact as written (an integer stays one: compared as a
    /// float, `v = 100000000000000001` matched 100000000000000000 too).
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// `NULL`.
    Null,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// The seed's plan (customer totals per 30 s of `ts`) with `filter`, `time`
/// and output `columns`, for tests.
#[cfg(test)]
pub(crate) fn seed_plan(
    filter: Option<Filter>,
    time: TimeSource,
    columns: Vec<OutputColumn>,
) -> JobPlan {
    JobPlan {
        output_topic: "totals".into(),
        input_topic: "transactions".into(),
        time,
        window: WindowSpec::Tumble { size_ms: 30_000 },
        keys: vec!["customerId".into()],
        aggregates: vec![
            AggregateSpec {
                kind: AggregateKind::Sum,
                column: Some("transactionSum".into()),
            },
            AggregateSpec {
                kind: AggregateKind::CountStar,
                column: None,
            },
        ],
        filter,
        columns,
        top: None,
        one_partition: false,
        one_node: false,
    }
}
