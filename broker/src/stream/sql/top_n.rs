//! Window Top-N, Flink's form: a ranking query around the aggregation,
//! filtered by rank.
//!
//! ```sql
//! INSERT INTO hot
//! SELECT auction, num, window_start, window_end FROM (
//!   SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rownum
//!   FROM (SELECT auction, COUNT(*) AS num, window_start, window_end
//!         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
//!         GROUP BY auction, window_start, window_end)
//! ) WHERE rownum <= 3
//! ```
//!
//! - The innermost query is any aggregation a job runs alone, with a
//!   tumbling or hopping window (a session window's bounds are per key, so
//!   its results are not ranked together).
//! - The middle query selects `*` or columns of the aggregation (optionally
//!   renamed) and one `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER
//!   (PARTITION BY … ORDER BY col [ASC|DESC])`, named with `AS`. `PARTITION
//!   BY` names the aggregation's window start or end column (both may be
//!   named) and any of its group key columns; `ORDER BY` one of its key or
//!   aggregate columns.
//! - The outer query selects `*` or columns of the middle one (the rank
//!   among them, if wanted; optionally renamed) and filters `WHERE rank <=
//!   N`, `rank < N` or `rank = 1`.
//! - Columns may be qualified with the alias of the subquery they come
//!   from (`FROM (…) AS t` and `t.col`).
//!
//! Anything else around the aggregation (joins, other filters, ranking
//! the input rows themselves) is refused with the clause named.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, Ident, ObjectNamePart, OrderBySort, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, TableFactor, TableWithJoins, Value,
    WildcardAdditionalOptions, WindowType,
};

use super::{
    function_name, invalid, plain_select, select, show, strip_parens, unsupported, SqlError,
};
use crate::stream::plan::{JobPlan, OutputColumn, RankColumn, RankFunction, TopN, WindowSpec};

/// The largest rank a Top-N keeps.
const MAX_LIMIT: u64 = 100_000;

/// Whether `select` reads a subquery (the outer query of a Top-N), rather
/// than a topic.
pub(super) fn reads_subquery(select: &Select) -> bool {
    matches!(
        select.from.as_slice(),
        [TableWithJoins {
            relation: TableFactor::Derived { .. },
            ..
        }]
    )
}

/// Plans a window Top-N whose outer query is `outer`.
pub(super) fn plan_top_n(outer: &Select, output_topic: String) -> Result<JobPlan, SqlError> {
    let (middle, middle_alias) = derived(outer, "FROM")?;
    let middle = plain_select(middle)?;
    if !reads_subquery(middle) {
        return Err(unsupported(
            "FROM",
            "a subquery in FROM is read by a window Top-N only: SELECT … FROM (SELECT *, \
             ROW_NUMBER() OVER (…) AS rownum FROM (<aggregation with a window>)) WHERE rownum \
             <= N (ranking the input records themselves is not supported)"
                .to_string(),
        ));
    }
    let (inner, inner_alias) = derived(middle, "FROM")?;
    let mut plan = select::plan_select(plain_select(inner)?, output_topic)?;
    if let WindowSpec::Session { .. } = plan.window {
        return Err(unsupported(
            "OVER",
            "ranking session windows (their bounds are per key); use TUMBLE or HOP".to_string(),
        ));
    }
    for (present, clause, what) in [
        (
            middle.selection.is_some(),
            "WHERE",
            "a filter in the ranking query",
        ),
        (!no_group_by(middle), "GROUP BY", "grouping the ranked rows"),
        (!no_group_by(outer), "GROUP BY", "grouping the ranked rows"),
    ] {
        if present {
            return Err(unsupported(
                clause,
                format!("{what} (filter the outer query by rank only)"),
            ));
        }
    }
    let (middle_columns, top) = ranking(middle, inner_alias.as_ref(), &plan)?;
    let mut top = top;
    top.limit = limit(outer, middle_alias.as_ref(), &middle_columns)?;
    plan.columns = projection(outer, middle_alias.as_ref(), &middle_columns)?;
    plan.top = Some(top);
    Ok(plan)
}

/// The subquery `select` reads, and its alias.
fn derived<'a>(
    select: &'a Select,
    clause: &'static str,
) -> Result<(&'a Query, Option<Ident>), SqlError> {
    match select.from.as_slice() {
        [TableWithJoins {
            relation:
                TableFactor::Derived {
                    lateral,
                    subquery,
                    alias,
                    sample,
                },
            joins,
        }] => {
            if !joins.is_empty() {
                return Err(unsupported(clause, "joins are not supported".to_string()));
            }
            if *lateral || sample.is_some() {
                return Err(unsupported(
                    clause,
                    "LATERAL and TABLESAMPLE are not supported".to_string(),
                ));
            }
            let alias = match alias {
                Some(a) if !a.columns.is_empty() || a.at.is_some() => {
                    return Err(unsupported(
                        clause,
                        format!("alias {} (column aliases are not supported)", show(a)),
                    ));
                }
                Some(a) => Some(a.name.clone()),
                None => None,
            };
            Ok((subquery, alias))
        }
        _ => Err(unsupported(
            clause,
            "a Top-N reads one subquery: SELECT … FROM (SELECT *, ROW_NUMBER() OVER (…) AS \
             rownum FROM (<aggregation>)) WHERE rownum <= N"
                .to_string(),
        )),
    }
}

fn no_group_by(select: &Select) -> bool {
    matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
}

/// A column reference: a bare name, or one qualified with `alias`.
fn column_ref(
    expr: &Expr,
    alias: Option<&Ident>,
    clause: &'static str,
) -> Result<Option<String>, SqlError> {
    match strip_parens(expr) {
        Expr::Identifier(id) => Ok(Some(id.value.clone())),
        Expr::CompoundIdentifier(parts) => match (parts.as_slice(), alias) {
            ([q, c], Some(a)) if q.value == a.value => Ok(Some(c.value.clone())),
            _ => Err(invalid(
                clause,
                format!(
                    "column {} (qualify it with the subquery's alias{})",
                    show(expr),
                    alias.map_or(String::new(), |a| format!(" {}", a.value))
                ),
            )),
        },
        _ => Ok(None),
    }
}

/// The column of `columns` named `name` (case-insensitive when no exact
/// match, as SQL identifiers).
fn find<'c>(
    columns: &'c [OutputColumn],
    name: &str,
    clause: &'static str,
) -> Result<&'c OutputColumn, SqlError> {
    columns
        .iter()
        .find(|c| c.name() == name)
        .or_else(|| columns.iter().find(|c| c.name().eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(OutputColumn::name).collect();
            invalid(
                clause,
                format!(
                    "no column {name} in the subquery (it has {})",
                    names.join(", ")
                ),
            )
        })
}

/// The same column under another output name.
fn renamed(c: &OutputColumn, name: String) -> OutputColumn {
    match c {
        OutputColumn::Key { index, .. } => OutputColumn::Key {
            index: *index,
            name,
        },
        OutputColumn::WindowStart { .. } => OutputColumn::WindowStart { name },
        OutputColumn::WindowEnd { .. } => OutputColumn::WindowEnd { name },
        OutputColumn::Aggregate { index, .. } => OutputColumn::Aggregate {
            index: *index,
            name,
        },
        OutputColumn::Rank { .. } => OutputColumn::Rank { name },
    }
}

/// Reads a select list over `available` columns: `*`, or column
/// references (optionally renamed), `alias.*`; `special` takes the items that are
/// not (the ranking function). Output names must differ.
fn select_list(
    select: &Select,
    alias: Option<&Ident>,
    available: &[OutputColumn],
    clause: &'static str,
    mut special: impl FnMut(&Expr, Option<&Ident>) -> Result<OutputColumn, SqlError>,
) -> Result<Vec<OutputColumn>, SqlError> {
    let mut out: Vec<OutputColumn> = Vec::new();
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::Wildcard(opts) if plain_wildcard(opts) => {
                out.extend(available.iter().cloned());
                continue;
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), opts)
                if plain_wildcard(opts)
                    && matches!((q.0.as_slice(), alias), ([ObjectNamePart::Identifier(q)], Some(a)) if q.value == a.value) =>
            {
                out.extend(available.iter().cloned());
                continue;
            }
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            other => {
                return Err(unsupported(
                    clause,
                    format!("{} (select * or columns of the subquery)", show(other)),
                ));
            }
        };
        let column = match column_ref(expr, alias, clause)? {
            Some(col) => {
                let c = find(available, &col, clause)?;
                match name {
                    Some(n) => renamed(c, n.value.clone()),
                    None => c.clone(),
                }
            }
            None => special(expr, name)?,
        };
        out.push(column);
    }
    for (i, c) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.name() == c.name()) {
            return Err(invalid(
                clause,
                format!(
                    "two output columns are named {} (use AS to rename one)",
                    c.name()
                ),
            ));
        }
    }
    Ok(out)
}

fn plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
}

/// The middle query: its columns (the aggregation's it selects, and the
/// rank) and the ranking (its limit still 0).
fn ranking(
    middle: &Select,
    alias: Option<&Ident>,
    plan: &JobPlan,
) -> Result<(Vec<OutputColumn>, TopN), SqlError> {
    const CLAUSE: &str = "OVER";
    let mut top: Option<TopN> = None;
    let columns = select_list(middle, alias, &plan.columns, "SELECT", |expr, name| {
        let Expr::Function(f) = strip_parens(expr) else {
            return Err(unsupported(
                "SELECT",
                format!(
                    "{} (the ranking query selects columns of the aggregation and one \
                     ROW_NUMBER(), RANK() or DENSE_RANK() OVER (…))",
                    show(expr)
                ),
            ));
        };
        if top.is_some() {
            return Err(unsupported(CLAUSE, "a second ranking function".to_string()));
        }
        let Some(name) = name else {
            return Err(invalid(
                CLAUSE,
                format!("name the rank: {} AS rownum", show(f)),
            ));
        };
        top = Some(rank_function(f, alias, plan)?);
        Ok(OutputColumn::Rank {
            name: name.value.clone(),
        })
    })?;
    let top = top.ok_or_else(|| {
        unsupported(
            "SELECT",
            "a subquery without ROW_NUMBER(), RANK() or DENSE_RANK() OVER (…) (only window \
             Top-N queries read a subquery)"
                .to_string(),
        )
    })?;
    Ok((columns, top))
}

/// `ROW_NUMBER() | RANK() | DENSE_RANK() OVER (PARTITION BY … ORDER BY …)`.
fn rank_function(f: &Function, alias: Option<&Ident>, plan: &JobPlan) -> Result<TopN, SqlError> {
    const CLAUSE: &str = "OVER";
    let function = match function_name(f).map(str::to_ascii_uppercase).as_deref() {
        Some("ROW_NUMBER") => RankFunction::RowNumber,
        Some("RANK") => RankFunction::Rank,
        Some("DENSE_RANK") => RankFunction::DenseRank,
        _ => {
            return Err(unsupported(
                CLAUSE,
                format!(
                    "{} (ranking functions: ROW_NUMBER, RANK, DENSE_RANK)",
                    show(f)
                ),
            ));
        }
    };
    let no_args = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(l) => l.args.is_empty() && l.clauses.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    let plain = no_args
        && f.filter.is_none()
        && f.null_treatment.is_none()
        && f.within_group.is_empty()
        && matches!(f.parameters, FunctionArguments::None);
    if !plain {
        return Err(unsupported(
            CLAUSE,
            format!("{} (a ranking function takes no arguments)", show(f)),
        ));
    }
    let spec = match &f.over {
        Some(WindowType::WindowSpec(s)) if s.window_name.is_none() && s.window_frame.is_none() => s,
        _ => {
            return Err(unsupported(
                CLAUSE,
                format!(
                    "{} (OVER (PARTITION BY … ORDER BY …) without a frame or named window)",
                    show(f)
                ),
            ));
        }
    };
    let mut partition = Vec::new();
    let mut window = false;
    for e in &spec.partition_by {
        let name = column_ref(e, alias, CLAUSE)?.ok_or_else(|| {
            unsupported(CLAUSE, format!("PARTITION BY {} (columns only)", show(e)))
        })?;
        match find(&plan.columns, &name, CLAUSE)? {
            OutputColumn::WindowStart { .. } | OutputColumn::WindowEnd { .. } => window = true,
            OutputColumn::Key { index, .. } if !partition.contains(index) => partition.push(*index),
            OutputColumn::Key { .. } => {}
            _ => {
                return Err(invalid(
                    CLAUSE,
                    format!("PARTITION BY {name}: partition by the window and group key columns"),
                ));
            }
        }
    }
    if !window {
        return Err(unsupported(
            CLAUSE,
            "a window Top-N partitions by the window (PARTITION BY window_start, window_end): \
             a ranking across windows never ends"
                .to_string(),
        ));
    }
    let [order] = spec.order_by.as_slice() else {
        return Err(unsupported(
            CLAUSE,
            format!(
                "ORDER BY of {} columns (rank by one column)",
                spec.order_by.len()
            ),
        ));
    };
    if order.options.nulls_first.is_some() || order.with_fill.is_some() {
        return Err(unsupported(
            CLAUSE,
            format!("ORDER BY {order} (NULLS FIRST/LAST: nulls rank last)"),
        ));
    }
    let descending = match &order.options.sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(OrderBySort::Using(_)) => {
            return Err(unsupported(CLAUSE, format!("ORDER BY {order}")));
        }
    };
    let name = column_ref(&order.expr, alias, CLAUSE)?
        .ok_or_else(|| unsupported(CLAUSE, format!("ORDER BY {order} (a column only)")))?;
    let order = match find(&plan.columns, &name, CLAUSE)? {
        OutputColumn::Key { index, .. } => RankColumn::Key(*index),
        OutputColumn::Aggregate { index, .. } => RankColumn::Aggregate(*index),
        _ => {
            return Err(invalid(
                CLAUSE,
                format!("ORDER BY {name}: rank by a key or aggregate column"),
            ));
        }
    };
    Ok(TopN {
        partition,
        order,
        descending,
        function,
        limit: 0,
    })
}

/// The outer `WHERE`: the largest rank kept.
fn limit(outer: &Select, alias: Option<&Ident>, middle: &[OutputColumn]) -> Result<u64, SqlError> {
    const CLAUSE: &str = "WHERE";
    let rank_name = middle.iter().find_map(|c| match c {
        OutputColumn::Rank { name } => Some(name.as_str()),
        _ => None,
    });
    let usage = || {
        format!(
            "a window Top-N filters by rank alone: WHERE {} <= N",
            rank_name.unwrap_or("rownum")
        )
    };
    let Some(selection) = &outer.selection else {
        return Err(invalid(CLAUSE, usage()));
    };
    let Expr::BinaryOp { left, op, right } = strip_parens(selection) else {
        return Err(unsupported(
            CLAUSE,
            format!("{} ({})", show(selection), usage()),
        ));
    };
    let is_rank = |e: &Expr| -> Result<bool, SqlError> {
        Ok(column_ref(e, alias, CLAUSE)?
            .is_some_and(|n| rank_name.is_some_and(|r| r.eq_ignore_ascii_case(&n))))
    };
    let number = |e: &Expr| match strip_parens(e) {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    };
    // `rank op N`, or `N op rank` turned around.
    let (op, n) = if is_rank(left)? {
        (op.clone(), number(right))
    } else if is_rank(right)? {
        let flipped = match op {
            BinaryOperator::GtEq => BinaryOperator::LtEq,
            BinaryOperator::Gt => BinaryOperator::Lt,
            other => other.clone(),
        };
        (flipped, number(left))
    } else {
        return Err(unsupported(
            CLAUSE,
            format!("{} ({})", show(selection), usage()),
        ));
    };
    let limit = match (op, n) {
        (BinaryOperator::LtEq, Some(n)) => n,
        (BinaryOperator::Lt, Some(n)) => n.saturating_sub(1),
        (BinaryOperator::Eq, Some(1)) => 1,
        _ => {
            return Err(unsupported(
                CLAUSE,
                format!("{} ({})", show(selection), usage()),
            ))
        }
    };
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            CLAUSE,
            format!("{}: keep 1 to {MAX_LIMIT} ranks", show(selection)),
        ));
    }
    Ok(limit)
}

/// The outer select list: columns of the middle query.
fn projection(
    outer: &Select,
    alias: Option<&Ident>,
    middle: &[OutputColumn],
) -> Result<Vec<OutputColumn>, SqlError> {
    select_list(outer, alias, middle, "SELECT", |expr, _| {
        Err(unsupported(
            "SELECT",
            format!("{} (select * or columns of the subquery)", show(expr)),
        ))
    })
}
