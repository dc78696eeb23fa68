//! Statement → [`JobPlan`]: one Flink-style `INSERT INTO out SELECT … FROM in
//! [WHERE …] GROUP BY keys, <window>` statement, parsed by `sqlparser`
//! (generic dialect) and checked clause by clause; anything the window
//! operator cannot run is refused with the clause named.
//!
//! # Accepted
//!
//! - Windows, either as a group window in `GROUP BY` — `TUMBLE(time, size)`,
//!   `HOP(time, slide, size)`, `SESSION(time, gap)` — selected with
//!   `TUMBLE_START/_END(…)` (likewise `HOP_*`, `SESSION_*`) repeating the
//!   `GROUP BY` arguments; or as a window table function in `FROM` —
//!   `TABLE(TUMBLE(TABLE t, DESCRIPTOR(time), size))`, `TABLE(HOP(TABLE t,
//!   DESCRIPTOR(time), slide, size))`, `TABLE(SESSION(TABLE t,
//!   DESCRIPTOR(time), gap))` — with `window_start` and `window_end` both in
//!   `GROUP BY` (they are the window, not keys) and selectable.
//! - Time: a column, `_timestamp` (the record timestamp) or `PROCTIME()`.
//! - `_key`: the record key as text, wherever a column goes; grouping by it
//!   makes the job co-partitioned ([`JobPlan::copartitioned`]).
//! - Intervals: `INTERVAL 'n' UNIT` for MILLISECOND, SECOND, MINUTE, HOUR,
//!   DAY, WEEK (singular or plural, `n` may have a fraction if the result is
//!   whole milliseconds) and `INTERVAL 'n unit'` strings (`'30 seconds'`,
//!   `'5 min'`, `'500 ms'`). Zero and negative intervals, and a `HOP` slide
//!   larger than its size, are refused.
//! - Select list: group keys (optionally aliased), window bounds and
//!   `COUNT(*)`, `COUNT(1)`, `COUNT(col)`, `COUNT(DISTINCT col)`, `SUM`,
//!   `MIN`, `MAX`, `AVG` of a column. Unaliased output names: the key
//!   column's name, `window_start` / `window_end`, and for aggregates the
//!   lowercased function and the column as written: `count` (`COUNT(*)`),
//!   `count_col`, `count_distinct_col`, `sum_col`, `min_col`, `max_col`,
//!   `avg_col`. Duplicate output names are refused; equal aggregates are
//!   computed once.
//! - `WHERE`: comparisons (`=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`) of a column
//!   with a constant (number, `'string'`, `TRUE`/`FALSE`, `NULL`) or another
//!   column, `AND`, `OR`, `NOT`, parentheses, `IS [NOT] NULL`.
//! - A table alias on the input (`FROM bid B`, `FROM bid AS B`, `FROM
//!   TABLE(TUMBLE(TABLE bid, …)) AS B`) and qualified columns `B.col` wherever
//!   a column is accepted (select list, `GROUP BY`, `WHERE`, window time
//!   arguments, `DESCRIPTOR`). The qualifier must be the alias, or the topic
//!   name when there is none; a qualified statement plans exactly as the bare
//!   one (see `qualified`).
//! - `GROUP BY` with the window alone: one group per window (an empty key).
//! - A window Top-N around such an aggregation (tumbling or hopping):
//!   `SELECT … FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start,
//!   window_end ORDER BY col DESC) AS rownum FROM (<aggregation>)) WHERE
//!   rownum <= N`, also with `RANK()` and `DENSE_RANK()` (see `top_n`).
//!
//! # Refused
//!
//! Everything else, with the clause named: joins, other subqueries, `WITH`,
//! `HAVING`, `ORDER BY`, `LIMIT`, `SELECT DISTINCT`, `UNION`, `*`, another
//! qualifier than the alias (or topic name), two qualifiers (`a.b.c`), column
//! lists on an alias (`AS B(x, y)`), compound topic names, `INSERT` column
//! lists, a `GROUP BY` without a window or with two, expressions other than
//! the above, other functions (including `CUMULATE` and `*_ROWTIME`), window
//! table function offsets, named arguments and `PARTITION BY`, and
//! statements of more than 4096 tokens (see `tokens::MAX_TOKENS`).
//!
//! sqlparser 0.64 cannot parse `TABLE t` as a function argument, so before
//! parsing, a `TABLE` keyword followed by a name inside `FROM TABLE(…)` is
//! dropped from the token stream (the keyword is therefore optional there).

mod filter;
mod qualified;
mod select;
#[cfg(test)]
mod tests;
mod tokens;
mod top_n;
mod window_fn;

pub use window_fn::{MAX_HOPS_PER_RECORD, MAX_INTERVAL_MS};

use std::fmt::Display;

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArguments, GroupByExpr, Ident, Insert,
    ObjectName, ObjectNamePart, Query, Select, SelectFlavor, SetExpr, Statement, TableObject,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::plan::JobPlan;
use crate::metadata::valid_topic_name;

/// Why a statement cannot become a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The text is not SQL (the parser's message).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A construct the job runner does not support.
    #[error("unsupported in {clause}: {detail}")]
    Unsupported {
        /// The clause it is in (`SELECT`, `FROM`, `WHERE`, `GROUP BY`, …).
        clause: &'static str,
        /// What it is.
        detail: String,
    },
    /// A supported construct used wrongly (a zero interval, a non-key column,
    /// a duplicate output name, …).
    #[error("invalid {clause}: {detail}")]
    Invalid {
        /// The clause it is in.
        clause: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Parses one job statement into a plan, or says which clause it cannot run.
pub fn parse_job(sql: &str) -> Result<JobPlan, SqlError> {
    let tokens = tokens::tokenize(sql)?;
    let mut statements = Parser::new(&GenericDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(unsupported(
            "statement",
            format!(
                "expected one INSERT INTO statement, got {}",
                statements.len()
            ),
        ));
    }
    match statements.pop() {
        Some(Statement::Insert(insert)) => plan_insert(&insert),
        Some(other) => Err(unsupported(
            "statement",
            format!(
                "a job is INSERT INTO <topic> SELECT …, got {}",
                show(&other)
            ),
        )),
        None => Err(unsupported("statement", "empty statement".to_string())),
    }
}

fn plan_insert(insert: &Insert) -> Result<JobPlan, SqlError> {
    const CLAUSE: &str = "INSERT INTO";
    let extras = [
        (insert.overwrite, "INSERT OVERWRITE"),
        (insert.or.is_some(), "INSERT OR …"),
        (insert.ignore, "IGNORE"),
        (!insert.into, "INSERT without INTO"),
        (insert.table_alias.is_some(), "a table alias"),
        (!insert.columns.is_empty(), "a column list"),
        (insert.by_name, "BY NAME"),
        (!insert.assignments.is_empty(), "SET assignments"),
        (insert.partitioned.is_some(), "PARTITION"),
        (!insert.after_columns.is_empty(), "columns after PARTITION"),
        (insert.overriding.is_some(), "OVERRIDING"),
        (insert.has_table_keyword, "TABLE"),
        (insert.on.is_some(), "ON CONFLICT / ON DUPLICATE KEY"),
        (insert.returning.is_some(), "RETURNING"),
        (insert.output.is_some(), "OUTPUT"),
        (insert.replace_into, "REPLACE INTO"),
        (insert.priority.is_some(), "a priority"),
        (insert.insert_alias.is_some(), "an alias"),
        (insert.settings.is_some(), "SETTINGS"),
        (insert.format_clause.is_some(), "FORMAT"),
        (!insert.optimizer_hints.is_empty(), "optimizer hints"),
        (
            insert.multi_table_insert_type.is_some()
                || !insert.multi_table_into_clauses.is_empty()
                || !insert.multi_table_when_clauses.is_empty()
                || insert.multi_table_else_clause.is_some(),
            "multi-table insert",
        ),
    ];
    if let Some((_, what)) = extras.iter().find(|(present, _)| *present) {
        return Err(unsupported(CLAUSE, format!("{what} is not supported")));
    }
    let output_topic = match &insert.table {
        TableObject::TableName(name) => topic_name(name, CLAUSE)?,
        other => return Err(unsupported(CLAUSE, format!("target {}", show(other)))),
    };
    let Some(query) = &insert.source else {
        return Err(unsupported(CLAUSE, "an INSERT needs a SELECT".to_string()));
    };
    let select = plain_select(query)?;
    let plan = if top_n::reads_subquery(select) {
        top_n::plan_top_n(select, output_topic)?
    } else {
        select::plan_select(select, output_topic)?
    };
    if plan.input_topic == plan.output_topic {
        return Err(invalid(
            CLAUSE,
            format!(
                "the job would write into the topic it reads ({})",
                plan.input_topic
            ),
        ));
    }
    Ok(plan)
}

/// The `SELECT` of the query, refusing every query-level clause around it.
fn plain_select(query: &Query) -> Result<&Select, SqlError> {
    if query.with.is_some() {
        return Err(unsupported("WITH", "common table expressions".to_string()));
    }
    if query.order_by.is_some() {
        return Err(unsupported(
            "ORDER BY",
            "results are not ordered".to_string(),
        ));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(unsupported("LIMIT", "a job has no row limit".to_string()));
    }
    let extras = [
        (!query.locks.is_empty(), "FOR UPDATE/SHARE"),
        (query.for_clause.is_some(), "FOR"),
        (query.settings.is_some(), "SETTINGS"),
        (query.format_clause.is_some(), "FORMAT"),
        (!query.pipe_operators.is_empty(), "pipe operators"),
    ];
    if let Some((_, what)) = extras.iter().find(|(present, _)| *present) {
        return Err(unsupported("SELECT", format!("{what} is not supported")));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select.as_ref(),
        SetExpr::SetOperation { op, .. } => {
            return Err(unsupported(
                "SELECT",
                format!("{op} of queries is not supported"),
            ));
        }
        SetExpr::Query(_) => {
            return Err(unsupported(
                "SELECT",
                "a parenthesized subquery".to_string(),
            ));
        }
        other => {
            return Err(unsupported(
                "SELECT",
                format!("expected SELECT, got {}", show(other)),
            ));
        }
    };
    if select.distinct.is_some() {
        return Err(unsupported("SELECT", "SELECT DISTINCT".to_string()));
    }
    if select.having.is_some() {
        return Err(unsupported(
            "HAVING",
            "filtering groups is not supported (WHERE filters records)".to_string(),
        ));
    }
    if !matches!(&select.group_by, GroupByExpr::Expressions(_, modifiers) if modifiers.is_empty()) {
        return Err(unsupported(
            "GROUP BY",
            "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS".to_string(),
        ));
    }
    let extras = [
        (!select.optimizer_hints.is_empty(), "optimizer hints"),
        (select.select_modifiers.is_some(), "select modifiers"),
        (select.top.is_some(), "TOP"),
        (select.exclude.is_some(), "EXCLUDE"),
        (select.into.is_some(), "SELECT INTO"),
        (!select.lateral_views.is_empty(), "LATERAL VIEW"),
        (select.prewhere.is_some(), "PREWHERE"),
        (!select.connect_by.is_empty(), "CONNECT BY"),
        (!select.cluster_by.is_empty(), "CLUSTER BY"),
        (!select.distribute_by.is_empty(), "DISTRIBUTE BY"),
        (!select.sort_by.is_empty(), "SORT BY"),
        (!select.named_window.is_empty(), "WINDOW"),
        (select.qualify.is_some(), "QUALIFY"),
        (select.value_table_mode.is_some(), "SELECT AS STRUCT/VALUE"),
        (select.flavor != SelectFlavor::Standard, "FROM-first syntax"),
    ];
    if let Some((_, what)) = extras.iter().find(|(present, _)| *present) {
        return Err(unsupported("SELECT", format!("{what} is not supported")));
    }
    Ok(select)
}

/// A topic name: one identifier, quoted or not, valid for Kafka.
fn topic_name(name: &ObjectName, clause: &'static str) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => topic_name_of(id, clause),
        _ => Err(unsupported(
            clause,
            format!(
                "topic name {} (compound names are not supported; quote it: \"a.b\")",
                show(name)
            ),
        )),
    }
}

/// A topic name from one identifier.
fn topic_name_of(id: &Ident, clause: &'static str) -> Result<String, SqlError> {
    if valid_topic_name(&id.value) {
        Ok(id.value.clone())
    } else {
        Err(invalid(
            clause,
            format!(
                "{} is not a valid topic name (1-249 of [a-zA-Z0-9._-])",
                show(id)
            ),
        ))
    }
}

/// A column name as written (case kept; quoted names allowed).
fn column_name(id: &Ident, clause: &'static str) -> Result<String, SqlError> {
    if id.value.is_empty() {
        return Err(invalid(clause, "empty column name".to_string()));
    }
    Ok(id.value.clone())
}

/// A call's function name when it is one plain identifier.
fn function_name(f: &Function) -> Option<&str> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => Some(&id.value),
        _ => None,
    }
}

/// A call's arguments and whether they are `DISTINCT`, refusing `FILTER`,
/// `OVER`, `WITHIN GROUP` and other clauses of a call.
fn call_args<'a>(
    f: &'a Function,
    clause: &'static str,
) -> Result<(bool, &'a [FunctionArg]), SqlError> {
    let list = match &f.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::None => return Ok((false, &[])),
        FunctionArguments::Subquery(_) => {
            return Err(unsupported(clause, format!("subquery in {}", show(f))));
        }
    };
    let plain = f.within_group.is_empty()
        && f.filter.is_none()
        && f.over.is_none()
        && f.null_treatment.is_none()
        && matches!(f.parameters, FunctionArguments::None)
        && !f.uses_odbc_syntax
        && list.clauses.is_empty();
    if !plain {
        return Err(unsupported(
            clause,
            format!(
                "{} (FILTER, OVER and other call clauses are not supported)",
                show(f)
            ),
        ));
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    Ok((distinct, &list.args))
}

/// [`show`] of an expression, with how to quote it when it is a reserved
/// word the parser read as a function without parentheses (`user`,
/// `current_date`): a column of that name must be quoted, as in Flink SQL.
fn show_expr(e: &Expr) -> String {
    match e {
        Expr::Function(f) if matches!(f.args, FunctionArguments::None) && f.name.0.len() == 1 => {
            let word = f.name.to_string();
            format!(
                "{} (a reserved word: for a column of that name, quote it: \"{word}\")",
                show(e)
            )
        }
        _ => show(e),
    }
}

/// A piece of the statement for a message, cut to a readable length.
fn show(x: &impl Display) -> String {
    const MAX: usize = 80;
    let text = x.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Peels parentheses.
fn strip_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

fn unsupported(clause: &'static str, detail: String) -> SqlError {
    SqlError::Unsupported { clause, detail }
}

fn invalid(clause: &'static str, detail: String) -> SqlError {
    SqlError::Invalid { clause, detail }
}
