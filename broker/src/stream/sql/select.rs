//! The `SELECT` of a job: `FROM`, `GROUP BY`, `WHERE` and the select list.

use std::collections::HashSet;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, GroupByExpr, Ident, Select, SelectItem,
    TableFactor, Value,
};

use super::window_fn::{self, Bound, Window};
use super::{
    call_args, column_name, filter, function_name, invalid, qualified, show, show_expr,
    strip_parens, topic_name, unsupported, SqlError,
};
use crate::stream::plan::{AggregateKind, AggregateSpec, JobPlan, OutputColumn};

/// Builds the plan of a checked `SELECT` writing to `output_topic`.
pub(super) fn plan_select(select: &Select, output_topic: String) -> Result<JobPlan, SqlError> {
    let select = &qualified::unqualify(select)?;
    let (input_topic, table_window) = from_clause(select)?;
    let GroupByExpr::Expressions(group_by, _) = &select.group_by else {
        return Err(unsupported("GROUP BY", "GROUP BY ALL".to_string()));
    };
    let (keys, window, group_window) = grouping(group_by, table_window)?;
    let filter = select.selection.as_ref().map(filter::filter).transpose()?;
    let group_window = group_window.then_some(&window);
    let mut list = SelectList {
        keys: &keys,
        group_window,
        columns: Vec::new(),
        aggregates: Vec::new(),
        names: HashSet::new(),
    };
    for item in &select.projection {
        list.item(item)?;
    }
    if list.columns.is_empty() {
        return Err(invalid("SELECT", "no output columns".to_string()));
    }
    let (columns, aggregates) = (list.columns, list.aggregates);
    Ok(JobPlan {
        output_topic,
        input_topic,
        time: window.time,
        window: window.spec,
        keys,
        aggregates,
        filter,
        columns,
        top: None,
        one_partition: false,
        one_node: false,
    })
}

/// `GROUP BY`: the keys, the window, and whether it is a group window (as
/// opposed to the window table function of `FROM`).
fn grouping(
    exprs: &[Expr],
    table_window: Option<Window>,
) -> Result<(Vec<String>, Window, bool), SqlError> {
    const CLAUSE: &str = "GROUP BY";
    let mut keys: Vec<String> = Vec::new();
    let mut window: Option<Window> = None;
    let (mut start, mut end) = (false, false);
    for expr in exprs {
        let expr = strip_parens(expr);
        if let Some(found) = window_fn::group_window(expr)? {
            if table_window.is_some() || window.is_some() {
                return Err(unsupported(
                    CLAUSE,
                    format!("a second window {}: a job has one window", show(expr)),
                ));
            }
            window = Some(found);
            continue;
        }
        match expr {
            Expr::Identifier(id) if table_window.is_some() && bound_name(id).is_some() => {
                match bound_name(id) {
                    Some(Bound::Start) => start = true,
                    _ => end = true,
                }
            }
            Expr::Identifier(id) => {
                let key = column_name(id, CLAUSE)?;
                if keys.contains(&key) {
                    return Err(invalid(CLAUSE, format!("key {} appears twice", show(id))));
                }
                keys.push(key);
            }
            Expr::CompoundIdentifier(_) => {
                return Err(unsupported(
                    CLAUSE,
                    format!("qualified column {} (write the bare name)", show(expr)),
                ));
            }
            other => {
                return Err(unsupported(
                    CLAUSE,
                    format!(
                        "{} (GROUP BY takes key columns and one TUMBLE, HOP or SESSION window)",
                        show_expr(other)
                    ),
                ));
            }
        }
    }
    match (table_window, window) {
        (Some(table_window), _) => {
            if !(start && end) {
                return Err(unsupported(
                    CLAUSE,
                    "a window table function needs both window_start and window_end in GROUP BY"
                        .to_string(),
                ));
            }
            Ok((keys, table_window, false))
        }
        (None, Some(window)) => Ok((keys, window, true)),
        (None, None) => Err(unsupported(
            CLAUSE,
            "no window: add TUMBLE(time, size), HOP(time, slide, size) or SESSION(time, gap), \
             or read FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(time), size))"
                .to_string(),
        )),
    }
}

/// `window_start` / `window_end` (any case), the columns of a window table
/// function.
fn bound_name(id: &Ident) -> Option<Bound> {
    bound_name_of(&id.value)
}

/// `window_start` / `window_end` (any case), by name.
pub(super) fn bound_name_of(name: &str) -> Option<Bound> {
    if name.eq_ignore_ascii_case("window_start") {
        Some(Bound::Start)
    } else if name.eq_ignore_ascii_case("window_end") {
        Some(Bound::End)
    } else {
        None
    }
}

/// The select list being read.
struct SelectList<'a> {
    keys: &'a [String],
    /// The `GROUP BY` window, when it is a group window.
    group_window: Option<&'a Window>,
    columns: Vec<OutputColumn>,
    aggregates: Vec<AggregateSpec>,
    names: HashSet<String>,
}

impl SelectList<'_> {
    fn item(&mut self, item: &SelectItem) -> Result<(), SqlError> {
        const CLAUSE: &str = "SELECT";
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(expr) => (expr, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(column_name(alias, CLAUSE)?)),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return Err(unsupported(
                    CLAUSE,
                    "* (name the keys, window bounds and aggregates)".to_string(),
                ));
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(unsupported(
                    CLAUSE,
                    format!("{} (one alias per column)", show(item)),
                ));
            }
        };
        let column = self.column(strip_parens(expr), alias)?;
        let name = column.name();
        if !self.names.insert(name.to_string()) {
            return Err(invalid(
                CLAUSE,
                format!("two output columns are named {name} (use AS to rename one)"),
            ));
        }
        self.columns.push(column);
        Ok(())
    }

    fn column(&mut self, expr: &Expr, alias: Option<String>) -> Result<OutputColumn, SqlError> {
        const CLAUSE: &str = "SELECT";
        match expr {
            Expr::Identifier(id) => {
                if self.group_window.is_none() {
                    match bound_name(id) {
                        Some(Bound::Start) => {
                            let name = alias.unwrap_or_else(|| "window_start".to_string());
                            return Ok(OutputColumn::WindowStart { name });
                        }
                        Some(Bound::End) => {
                            let name = alias.unwrap_or_else(|| "window_end".to_string());
                            return Ok(OutputColumn::WindowEnd { name });
                        }
                        None => {}
                    }
                }
                let key = column_name(id, CLAUSE)?;
                let Some(index) = self.keys.iter().position(|k| *k == key) else {
                    let hint = if bound_name(id).is_some() {
                        " (a group window's bounds are selected with TUMBLE_START(…) / _END, HOP_*, SESSION_*)"
                    } else {
                        ""
                    };
                    return Err(invalid(
                        CLAUSE,
                        format!(
                            "column {} is neither a GROUP BY key nor aggregated{hint}",
                            show(id)
                        ),
                    ));
                };
                Ok(OutputColumn::Key {
                    index,
                    name: alias.unwrap_or(key),
                })
            }
            Expr::Function(f) => {
                if let Some((spec, default)) = aggregate(f)? {
                    let index = match self.aggregates.iter().position(|a| *a == spec) {
                        Some(index) => index,
                        None => {
                            self.aggregates.push(spec);
                            self.aggregates.len() - 1
                        }
                    };
                    let name = alias.unwrap_or(default);
                    return Ok(OutputColumn::Aggregate { index, name });
                }
                match window_fn::bound_call(f, self.group_window)? {
                    Some(Bound::Start) => Ok(OutputColumn::WindowStart {
                        name: alias.unwrap_or_else(|| "window_start".to_string()),
                    }),
                    Some(Bound::End) => Ok(OutputColumn::WindowEnd {
                        name: alias.unwrap_or_else(|| "window_end".to_string()),
                    }),
                    None if function_name(f).is_some_and(window_fn::is_window_name) => {
                        Err(unsupported(
                            CLAUSE,
                            format!("{} belongs in GROUP BY; select its _START / _END", show(f)),
                        ))
                    }
                    None => Err(unsupported(
                        CLAUSE,
                        format!(
                            "function {} (COUNT, SUM, MIN, MAX, AVG and window bounds only)",
                            show(&f.name)
                        ),
                    )),
                }
            }
            Expr::CompoundIdentifier(_) => Err(unsupported(
                CLAUSE,
                format!("qualified column {} (write the bare name)", show(expr)),
            )),
            other => Err(unsupported(
                CLAUSE,
                format!(
                    "expression {} (keys, window bounds and aggregates only)",
                    show_expr(other)
                ),
            )),
        }
    }
}

/// An aggregate call and its default output name; `None` if `f` is not one.
fn aggregate(f: &Function) -> Result<Option<(AggregateSpec, String)>, SqlError> {
    const CLAUSE: &str = "SELECT";
    let Some(name) = function_name(f) else {
        return Ok(None);
    };
    let lower = name.to_ascii_lowercase();
    let kind = match lower.as_str() {
        "count" => AggregateKind::Count,
        "sum" => AggregateKind::Sum,
        "min" => AggregateKind::Min,
        "max" => AggregateKind::Max,
        "avg" => AggregateKind::Avg,
        _ => return Ok(None),
    };
    let (distinct, args) = call_args(f, CLAUSE)?;
    let upper = lower.to_ascii_uppercase();
    let [arg] = args else {
        return Err(unsupported(
            CLAUSE,
            format!("{upper} takes one argument, got {}", args.len()),
        ));
    };
    let count = kind == AggregateKind::Count;
    let column = match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if count && !distinct => None,
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => match strip_parens(e) {
            Expr::Identifier(id) => Some(column_name(id, CLAUSE)?),
            Expr::Value(v) if count && !distinct && matches!(v.value, Value::Number(..)) => None,
            other => {
                return Err(unsupported(
                    CLAUSE,
                    format!("{upper}({}): aggregates take a column", show_expr(other)),
                ));
            }
        },
        other => {
            let distinct = if distinct { "DISTINCT " } else { "" };
            return Err(unsupported(
                CLAUSE,
                format!(
                    "{upper}({distinct}{}): aggregates take a column",
                    show(other)
                ),
            ));
        }
    };
    if distinct && !count {
        return Err(unsupported(
            CLAUSE,
            format!("{upper}(DISTINCT …): DISTINCT only with COUNT"),
        ));
    }
    let (kind, default) = match (&column, kind) {
        (None, _) => (AggregateKind::CountStar, "count".to_string()),
        (Some(col), AggregateKind::Count) if distinct => (
            AggregateKind::CountDistinct,
            format!("count_distinct_{col}"),
        ),
        (Some(col), kind) => (kind, format!("{lower}_{col}")),
    };
    Ok(Some((AggregateSpec { kind, column }, default)))
}

/// The input topic and, for a window table function, its window.
pub(super) fn from_clause(select: &Select) -> Result<(String, Option<Window>), SqlError> {
    const CLAUSE: &str = "FROM";
    let [from] = select.from.as_slice() else {
        return Err(unsupported(
            CLAUSE,
            format!(
                "expected one input topic, got {} (joins are not supported)",
                select.from.len()
            ),
        ));
    };
    if !from.joins.is_empty() {
        return Err(unsupported(CLAUSE, "joins are not supported".to_string()));
    }
    match &from.relation {
        TableFactor::Table {
            name,
            // An alias only names the input for qualified columns, which
            // `qualified::unqualify` made bare before this.
            alias: _,
            args,
            with_hints,
            version,
            with_ordinality,
            partitions,
            json_path,
            sample,
            index_directives,
            inheritance,
        } => {
            let plain = args.is_none()
                && with_hints.is_empty()
                && version.is_none()
                && !with_ordinality
                && partitions.is_empty()
                && json_path.is_none()
                && sample.is_none()
                && index_directives.is_empty()
                && inheritance.is_none();
            if !plain {
                return Err(unsupported(
                    CLAUSE,
                    format!(
                        "{} (a window table function is written TABLE(TUMBLE(TABLE t, …)))",
                        show(&from.relation)
                    ),
                ));
            }
            Ok((topic_name(name, CLAUSE)?, None))
        }
        TableFactor::TableFunction { expr, alias: _ } => {
            let (topic, window) = window_fn::table_function(expr)?;
            Ok((topic, Some(window)))
        }
        TableFactor::Derived { .. } => Err(unsupported(
            CLAUSE,
            "subqueries are not supported".to_string(),
        )),
        other => Err(unsupported(
            CLAUSE,
            format!("{} is not a topic", show(other)),
        )),
    }
}
