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
//!   its results are not ranked together); or, ranking the input records
//!   themselves (Nexmark Q7), the middle query reads a window table function
//!   (`FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), …))`, `WHERE`
//!   allowed), its columns are the input's fields and `window_start` /
//!   `window_end`, and the outer query names the columns it writes.
//! - The middle query selects `*` or columns of the aggregation (optionally
//!   renamed) and one `ROW_NUMBER()`, `RANK()` or `DENSE_RANK()` `OVER
//!   (PARTITION BY … ORDER BY col [ASC|DESC])`, named with `AS`. `PARTITION
//!   BY` names the aggregation's window start or end column (both may be
//!   named) and any of its group key columns (or input fields); `ORDER BY`
//!   one of its key or aggregate columns (or an input field).
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

use super::window_fn::Bound;
use super::{
    filter, function_name, invalid, plain_select, qualified, select, show, strip_parens,
    unsupported, SqlError,
};
use crate::stream::plan::{
    AggregateKind, AggregateSpec, JobPlan, OutputColumn, RankColumn, RankFunction, TopN, WindowSpec,
};

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
    if !no_group_by(outer) || !no_group_by(middle) {
        return Err(unsupported(
            "FROM",
            "a subquery, but for a window Top-N (SELECT … FROM (SELECT *, ROW_NUMBER() OVER \
             (…) AS rownum FROM (<aggregation>)) WHERE rownum <= N): aggregate the topic itself"
                .to_string(),
        ));
    }
    let (mut plan, rank_name, mut columns): (JobPlan, String, Box<dyn Columns>) =
        if reads_subquery(middle) {
            let (plan, rank, listed) = rank_aggregation(middle, output_topic)?;
            (plan, rank, Box::new(Listed(listed)))
        } else {
            let (plan, rank, records) = rank_records(middle, output_topic)?;
            (plan, rank, Box::new(records))
        };
    if let WindowSpec::Session { .. } = plan.window {
        return Err(unsupported(
            "OVER",
            "ranking session windows (their bounds are per key); use TUMBLE or HOP".to_string(),
        ));
    }
    let limit = limit(outer, middle_alias.as_ref(), Some(&rank_name))?;
    plan.columns = select_list(outer, middle_alias.as_ref(), "SELECT", columns.as_mut())?;
    if let Some(top) = &mut plan.top {
        top.limit = limit;
        if let Some(rows) = columns.rows() {
            top.rows = rows;
        }
    }
    for a in &mut plan.aggregates {
        if let AggregateKind::TopRows { limit: l, .. } = &mut a.kind {
            *l = limit;
        }
    }
    Ok(plan)
}

/// The middle query over an aggregation: the plan (the ranking's limit
/// still 0), the rank's name and the columns it selects (the
/// aggregation's, and the rank).
fn rank_aggregation(
    middle: &Select,
    output_topic: String,
) -> Result<(JobPlan, String, Vec<OutputColumn>), SqlError> {
    if middle.selection.is_some() {
        return Err(unsupported(
            "WHERE",
            "a filter in the ranking query (filter the outer query by rank only)".to_string(),
        ));
    }
    let (inner, alias) = derived(middle, "FROM")?;
    let mut plan = select::plan_select(plain_select(inner)?, output_topic)?;
    let columns = plan.columns.clone();
    let over = |name: &str| -> Result<OverColumn, SqlError> {
        Ok(match find(&columns, name, "OVER")? {
            OutputColumn::WindowStart { .. } | OutputColumn::WindowEnd { .. } => OverColumn::Window,
            OutputColumn::Key { index, .. } => OverColumn::Key(*index),
            OutputColumn::Aggregate { index, .. } => OverColumn::Aggregate(*index),
            _ => OverColumn::Input(name.to_string()),
        })
    };
    let mut aggregated = Aggregated {
        columns: &columns,
        alias: alias.clone(),
        over: &over,
        spec: None,
    };
    let listed = select_list(middle, alias.as_ref(), "SELECT", &mut aggregated)?;
    let spec = aggregated.spec.take().ok_or_else(no_ranking)?;
    let partition = spec
        .partition
        .iter()
        .map(|c| match c {
            OverColumn::Key(i) => Ok(*i),
            _ => Err(invalid(
                "OVER",
                "PARTITION BY an aggregate: partition by the window and group key columns"
                    .to_string(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let order = match spec.order {
        OverColumn::Key(i) => RankColumn::Key(i),
        OverColumn::Aggregate(i) => RankColumn::Aggregate(i),
        _ => {
            return Err(invalid(
                "OVER",
                "ORDER BY the window: rank by a key or aggregate column".to_string(),
            ));
        }
    };
    plan.top = Some(TopN {
        partition,
        order,
        descending: spec.descending,
        function: spec.function,
        limit: 0,
        rows: Vec::new(),
    });
    Ok((plan, spec.name, listed))
}

/// The middle query over a window table function (ranking the input
/// records themselves): the plan (the limit still 0), the rank's name, and
/// the columns the outer query may select. The plan groups by the
/// `PARTITION BY` fields and keeps each window's best rows in its one
/// aggregate ([`AggregateKind::TopRows`]).
fn rank_records(
    middle: &Select,
    output_topic: String,
) -> Result<(JobPlan, String, Records), SqlError> {
    let alias = qualified::qualifier(middle)?;
    let middle = &qualified::unqualify(middle)?;
    let (input_topic, window) = select::from_clause(middle)?;
    let Some(window) = window else {
        return Err(unsupported(
            "FROM",
            "a ranking query reads an aggregation (a subquery with GROUP BY and a window) or \
             the records of a window table function: FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), \
             size))"
                .to_string(),
        ));
    };
    let filter = middle.selection.as_ref().map(filter::filter).transpose()?;
    let mut records = Records {
        rows: Vec::new(),
        listed: Vec::new(),
        star: false,
        outer: false,
        alias: alias.clone(),
        spec: None,
    };
    let listed = select_list(middle, alias.as_ref(), "SELECT", &mut records)?;
    records.listed = listed;
    records.outer = true;
    let spec = records.spec.take().ok_or_else(no_ranking)?;
    let OverColumn::Input(order) = spec.order.clone() else {
        return Err(invalid(
            "OVER",
            "ORDER BY the window: rank by a field of the input".to_string(),
        ));
    };
    // The ranked field first; the fields the outer query selects are added
    // as it names them.
    let was = records.rows.iter().position(|r| *r == order);
    if let Some(i) = was {
        records.rows.remove(i);
    }
    records.rows.insert(0, order);
    for c in &mut records.listed {
        if let OutputColumn::Field { index, .. } = c {
            *index = match was {
                Some(i) if *index == i => 0,
                Some(i) if *index > i => *index,
                _ => *index + 1,
            };
        }
    }
    let keys: Vec<String> = spec
        .partition
        .iter()
        .filter_map(|c| match c {
            OverColumn::Input(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let plan = JobPlan {
        output_topic,
        input_topic,
        time: window.time,
        window: window.spec,
        keys: keys.clone(),
        aggregates: vec![AggregateSpec {
            kind: AggregateKind::TopRows {
                limit: 0,
                descending: spec.descending,
                function: spec.function,
            },
            column: None,
        }],
        filter,
        columns: Vec::new(),
        top: Some(TopN {
            partition: (0..keys.len()).collect(),
            order: RankColumn::Row,
            descending: spec.descending,
            function: spec.function,
            limit: 0,
            rows: Vec::new(),
        }),
        one_partition: false,
        one_node: false,
    };
    Ok((plan, spec.name, records))
}

fn no_ranking() -> SqlError {
    unsupported(
        "SELECT",
        "a subquery without ROW_NUMBER(), RANK() or DENSE_RANK() OVER (…) (only window Top-N \
         queries read a subquery)"
            .to_string(),
    )
}

/// A column named in `PARTITION BY` or `ORDER BY`.
#[derive(Debug, Clone, PartialEq)]
enum OverColumn {
    /// `window_start` or `window_end`.
    Window,
    /// A group key column of the aggregation.
    Key(usize),
    /// An aggregate of the aggregation.
    Aggregate(usize),
    /// A field of the input records.
    Input(String),
}

/// A parsed ranking function.
#[derive(Debug)]
struct RankSpec {
    /// The rank column's name (`AS …`).
    name: String,
    function: RankFunction,
    /// The `PARTITION BY` columns besides the window.
    partition: Vec<OverColumn>,
    order: OverColumn,
    descending: bool,
}

/// What the columns of a select list may be.
trait Columns {
    /// The columns of `*` (or `alias.*`).
    fn all(&mut self, clause: &'static str) -> Result<Vec<OutputColumn>, SqlError>;
    /// The column named `name`.
    fn column(&mut self, name: &str, clause: &'static str) -> Result<OutputColumn, SqlError>;
    /// An item that is no column reference (the ranking function), named
    /// `name`.
    fn other(&mut self, expr: &Expr, name: Option<&Ident>) -> Result<OutputColumn, SqlError> {
        let _ = name;
        Err(unsupported(
            "SELECT",
            format!("{} (select * or columns of the subquery)", show(expr)),
        ))
    }
    /// The input fields the ranked rows must hold (ranking the input
    /// records).
    fn rows(&mut self) -> Option<Vec<String>> {
        None
    }
}

/// The columns of a subquery, as listed.
struct Listed(Vec<OutputColumn>);

impl Columns for Listed {
    fn all(&mut self, _: &'static str) -> Result<Vec<OutputColumn>, SqlError> {
        Ok(self.0.clone())
    }

    fn column(&mut self, name: &str, clause: &'static str) -> Result<OutputColumn, SqlError> {
        find(&self.0, name, clause).cloned()
    }
}

/// The ranking query over an aggregation: its columns, and the ranking
/// function.
struct Aggregated<'a, F> {
    columns: &'a [OutputColumn],
    alias: Option<Ident>,
    over: &'a F,
    spec: Option<RankSpec>,
}

impl<F: Fn(&str) -> Result<OverColumn, SqlError>> Columns for Aggregated<'_, F> {
    fn all(&mut self, _: &'static str) -> Result<Vec<OutputColumn>, SqlError> {
        Ok(self.columns.to_vec())
    }

    fn column(&mut self, name: &str, clause: &'static str) -> Result<OutputColumn, SqlError> {
        find(self.columns, name, clause).cloned()
    }

    fn other(&mut self, expr: &Expr, name: Option<&Ident>) -> Result<OutputColumn, SqlError> {
        let spec = ranking_item(expr, name, self.alias.as_ref(), self.over, &self.spec)?;
        let column = OutputColumn::Rank {
            name: spec.name.clone(),
        };
        self.spec = Some(spec);
        Ok(column)
    }
}

/// The ranking query over the input records, and the outer query above it:
/// fields of the input (any name), `window_start` / `window_end`, the
/// rank; what the middle query listed, when it did not select `*`.
struct Records {
    /// The input fields a ranked row holds, in the order first named.
    rows: Vec<String>,
    /// The middle query's columns (the rank among them).
    listed: Vec<OutputColumn>,
    /// The middle query selected `*`: any field of the input.
    star: bool,
    /// Reading the outer query (the middle one is read).
    outer: bool,
    alias: Option<Ident>,
    spec: Option<RankSpec>,
}

impl Records {
    fn field(&mut self, input: &str, name: &str) -> OutputColumn {
        let index = match self.rows.iter().position(|r| r == input) {
            Some(i) => i,
            None => {
                self.rows.push(input.to_string());
                self.rows.len() - 1
            }
        };
        OutputColumn::Field {
            index,
            name: name.to_string(),
        }
    }

    fn input_column(&mut self, name: &str) -> OutputColumn {
        match select::bound_name_of(name) {
            Some(Bound::Start) => OutputColumn::WindowStart {
                name: name.to_string(),
            },
            Some(Bound::End) => OutputColumn::WindowEnd {
                name: name.to_string(),
            },
            None => self.field(name, name),
        }
    }
}

impl Columns for Records {
    fn all(&mut self, clause: &'static str) -> Result<Vec<OutputColumn>, SqlError> {
        if !self.outer {
            // The middle query's own `*`.
            self.star = true;
            return Ok(Vec::new());
        }
        if self.star {
            return Err(unsupported(
                clause,
                "* over the input records: name the fields to write (a topic has no fixed \
                 schema)"
                    .to_string(),
            ));
        }
        Ok(self.listed.clone())
    }

    fn column(&mut self, name: &str, clause: &'static str) -> Result<OutputColumn, SqlError> {
        if !self.outer {
            return Ok(self.input_column(name));
        }
        match find(&self.listed, name, clause) {
            Ok(c) => Ok(c.clone()),
            // Over the middle query's `*`: any field of the input.
            Err(_) if self.star => Ok(self.input_column(name)),
            Err(e) => Err(e),
        }
    }

    fn other(&mut self, expr: &Expr, name: Option<&Ident>) -> Result<OutputColumn, SqlError> {
        let over = |n: &str| -> Result<OverColumn, SqlError> {
            Ok(match select::bound_name_of(n) {
                Some(_) => OverColumn::Window,
                None => OverColumn::Input(n.to_string()),
            })
        };
        let spec = ranking_item(expr, name, self.alias.as_ref(), &over, &self.spec)?;
        let column = OutputColumn::Rank {
            name: spec.name.clone(),
        };
        self.spec = Some(spec);
        Ok(column)
    }

    fn rows(&mut self) -> Option<Vec<String>> {
        Some(self.rows.clone())
    }
}

/// The ranking function of a middle query's select list, named `name`.
fn ranking_item(
    expr: &Expr,
    name: Option<&Ident>,
    alias: Option<&Ident>,
    over: &impl Fn(&str) -> Result<OverColumn, SqlError>,
    found: &Option<RankSpec>,
) -> Result<RankSpec, SqlError> {
    let Expr::Function(f) = strip_parens(expr) else {
        return Err(unsupported(
            "SELECT",
            format!(
                "{} (the ranking query selects columns and one ROW_NUMBER(), RANK() or \
                 DENSE_RANK() OVER (…))",
                show(expr)
            ),
        ));
    };
    if found.is_some() {
        return Err(unsupported("OVER", "a second ranking function".to_string()));
    }
    let Some(name) = name else {
        return Err(invalid(
            "OVER",
            format!("name the rank: {} AS rownum", show(f)),
        ));
    };
    let mut spec = rank_function(f, alias, over)?;
    spec.name = name.value.clone();
    Ok(spec)
}

/// Reads a select list: `*` (or `alias.*`), column references (optionally
/// renamed), and what `columns` takes otherwise. Output names must differ.
fn select_list(
    select: &Select,
    alias: Option<&Ident>,
    clause: &'static str,
    columns: &mut dyn Columns,
) -> Result<Vec<OutputColumn>, SqlError> {
    let mut out: Vec<OutputColumn> = Vec::new();
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::Wildcard(opts) if plain_wildcard(opts) => {
                out.extend(columns.all(clause)?);
                continue;
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), opts)
                if plain_wildcard(opts)
                    && matches!((q.0.as_slice(), alias), ([ObjectNamePart::Identifier(q)], Some(a)) if q.value == a.value) =>
            {
                out.extend(columns.all(clause)?);
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
                let c = columns.column(&col, clause)?;
                match name {
                    Some(n) => renamed(&c, n.value.clone()),
                    None => c,
                }
            }
            None => columns.other(expr, name)?,
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
        OutputColumn::Field { index, .. } => OutputColumn::Field {
            index: *index,
            name,
        },
    }
}

fn plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
}

/// `ROW_NUMBER() | RANK() | DENSE_RANK() OVER (PARTITION BY … ORDER BY …)`.
fn rank_function(
    f: &Function,
    alias: Option<&Ident>,
    over: &impl Fn(&str) -> Result<OverColumn, SqlError>,
) -> Result<RankSpec, SqlError> {
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
        match over(&name)? {
            OverColumn::Window => window = true,
            c if !partition.contains(&c) => partition.push(c),
            _ => {}
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
    Ok(RankSpec {
        name: String::new(),
        function,
        partition,
        order: over(&name)?,
        descending,
    })
}

/// The outer `WHERE`: the largest rank kept.
fn limit(outer: &Select, alias: Option<&Ident>, rank_name: Option<&str>) -> Result<u64, SqlError> {
    const CLAUSE: &str = "WHERE";
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
