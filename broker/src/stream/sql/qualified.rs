//! Table aliases and qualified columns: `FROM bid B` (or `AS B`, also after
//! a window table function) and `B.col` / `bid.col`. The qualifier must be
//! the alias, or the topic name when there is no alias; qualified columns
//! are rewritten to bare ones before planning, so a qualified statement
//! gives the same plan as the unqualified one.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectNamePart,
    Select, SelectItem, TableAlias, TableFactor,
};

use super::{invalid, show, unsupported, SqlError};

/// The name columns may be qualified with: the alias of the input, else the
/// topic name as written. `None` when `FROM` is not one topic (refused later,
/// with the clause named, by the `FROM` checks).
pub(super) fn qualifier(select: &Select) -> Result<Option<Ident>, SqlError> {
    let [from] = select.from.as_slice() else {
        return Ok(None);
    };
    let (alias, topic) = match &from.relation {
        TableFactor::Table { name, alias, .. } => {
            let topic = match name.0.as_slice() {
                [ObjectNamePart::Identifier(id)] => Some(id.clone()),
                _ => None,
            };
            (alias, topic)
        }
        TableFactor::TableFunction { expr, alias } => (alias, tvf_args(expr).and_then(tvf_topic)),
        _ => return Ok(None),
    };
    match alias {
        Some(alias) => Ok(Some(alias_name(alias)?)),
        None => Ok(topic),
    }
}

/// The name of an alias without column list or other decoration.
fn alias_name(alias: &TableAlias) -> Result<Ident, SqlError> {
    if !alias.columns.is_empty() || alias.at.is_some() {
        return Err(unsupported(
            "FROM",
            format!("alias {} (column aliases are not supported)", show(alias)),
        ));
    }
    Ok(alias.name.clone())
}

/// The arguments of a window table function call, if `expr` is a call with a
/// plain argument list.
fn tvf_args(expr: &Expr) -> Option<&[FunctionArg]> {
    match expr {
        Expr::Function(f) => match &f.args {
            FunctionArguments::List(list) => Some(&list.args),
            _ => None,
        },
        _ => None,
    }
}

/// The topic of a window table function: its first argument (`TABLE t`, the
/// keyword dropped before parsing).
fn tvf_topic(args: &[FunctionArg]) -> Option<Ident> {
    match args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id)))) => Some(id.clone()),
        _ => None,
    }
}

/// `select` with every column qualified by the input's alias (or topic name)
/// made bare; another qualifier is refused in the clause it is in.
pub(super) fn unqualify(select: &Select) -> Result<Select, SqlError> {
    let mut out = select.clone();
    let Some(qualifier) = qualifier(select)? else {
        return Ok(out);
    };
    let q = Qualifier(&qualifier);
    for item in &mut out.projection {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                q.expr(e, "SELECT")?;
            }
            SelectItem::ExprWithAliases { expr, .. } => q.expr(expr, "SELECT")?,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {}
        }
    }
    if let Some(selection) = &mut out.selection {
        q.expr(selection, "WHERE")?;
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut out.group_by {
        for e in exprs {
            q.expr(e, "GROUP BY")?;
        }
    }
    // The time argument of a window table function: DESCRIPTOR(B.ts).
    if let [from] = out.from.as_mut_slice() {
        if let TableFactor::TableFunction {
            expr: Expr::Function(f),
            ..
        } = &mut from.relation
        {
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in list.args.iter_mut().skip(1) {
                    q.arg(arg, "FROM")?;
                }
            }
        }
    }
    Ok(out)
}

/// The accepted qualifier of columns.
struct Qualifier<'a>(&'a Ident);

impl Qualifier<'_> {
    /// Rewrites the qualified columns of `expr` (through the expressions the
    /// planner accepts; anything else is refused by the planner anyway).
    fn expr(&self, expr: &mut Expr, clause: &'static str) -> Result<(), SqlError> {
        match expr {
            Expr::CompoundIdentifier(parts) => {
                let column = self.column(parts, clause)?;
                *expr = Expr::Identifier(column);
                Ok(())
            }
            Expr::Nested(inner)
            | Expr::UnaryOp { expr: inner, .. }
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner) => self.expr(inner, clause),
            Expr::BinaryOp { left, right, .. } => {
                self.expr(left, clause)?;
                self.expr(right, clause)
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &mut f.args {
                    for arg in &mut list.args {
                        self.arg(arg, clause)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Rewrites the qualified columns of a call's argument.
    fn arg(&self, arg: &mut FunctionArg, clause: &'static str) -> Result<(), SqlError> {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(e),
                ..
            }
            | FunctionArg::ExprNamed {
                arg: FunctionArgExpr::Expr(e),
                ..
            } => self.expr(e, clause),
            _ => Ok(()),
        }
    }

    /// The column of `q.col`, if `q` is the accepted qualifier.
    fn column(&self, parts: &[Ident], clause: &'static str) -> Result<Ident, SqlError> {
        let shown = parts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(".");
        match parts {
            [q, column] if q.value == self.0.value => Ok(column.clone()),
            [_, _] => Err(invalid(
                clause,
                format!(
                    "qualified column {shown}: the input is named {} (qualify with it or write the bare name)",
                    self.0
                ),
            )),
            _ => Err(unsupported(
                clause,
                format!("column {shown} (one qualifier at most: the input's alias or topic name)"),
            )),
        }
    }
}
