//! `WHERE` → [`Filter`]: comparisons of columns and constants, `AND`, `OR`,
//! `NOT`, parentheses, `IS [NOT] NULL`.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use super::{column_name, show, show_expr, strip_parens, SqlError};
use crate::stream::plan::{CompareOp, Filter, Literal, Operand};

const CLAUSE: &str = "WHERE";

/// Converts a `WHERE` condition.
pub(super) fn filter(expr: &Expr) -> Result<Filter, SqlError> {
    match expr {
        Expr::Nested(inner) => filter(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Filter::Not(Box::new(filter(expr)?))),
        Expr::IsNull(e) => Ok(Filter::IsNull(column(e, "IS NULL")?)),
        Expr::IsNotNull(e) => Ok(Filter::IsNotNull(column(e, "IS NOT NULL")?)),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => Ok(Filter::And(
                Box::new(filter(left)?),
                Box::new(filter(right)?),
            )),
            BinaryOperator::Or => Ok(Filter::Or(
                Box::new(filter(left)?),
                Box::new(filter(right)?),
            )),
            _ => {
                let op = compare_op(op)
                    .ok_or_else(|| unsupported(format!("operator {op} in {}", show(expr))))?;
                let left = operand(left)?;
                let right = operand(right)?;
                if matches!((&left, &right), (Operand::Literal(_), Operand::Literal(_))) {
                    return Err(unsupported(format!(
                        "{} compares two constants (a column is a bare or \"double-quoted\" name)",
                        show(expr)
                    )));
                }
                Ok(Filter::Compare { left, op, right })
            }
        },
        other => Err(unsupported(format!(
            "{} (conditions are comparisons, AND, OR, NOT, IS [NOT] NULL)",
            show_expr(other)
        ))),
    }
}

fn compare_op(op: &BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        BinaryOperator::Eq => CompareOp::Eq,
        BinaryOperator::NotEq => CompareOp::NotEq,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::LtEq,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    })
}

/// The column of `col IS [NOT] NULL`.
fn column(expr: &Expr, what: &str) -> Result<String, SqlError> {
    match strip_parens(expr) {
        Expr::Identifier(id) => column_name(id, CLAUSE),
        other => Err(unsupported(format!(
            "{what} applies to a column, got {}",
            show_expr(other)
        ))),
    }
}

/// A comparison operand: a column or a constant.
fn operand(expr: &Expr) -> Result<Operand, SqlError> {
    let expr = strip_parens(expr);
    match expr {
        Expr::Identifier(id) => Ok(Operand::Column(column_name(id, CLAUSE)?)),
        Expr::Value(v) => Ok(Operand::Literal(literal(&v.value, false, expr)?)),
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => match strip_parens(inner) {
            Expr::Value(v) if matches!(v.value, Value::Number(..)) => Ok(Operand::Literal(
                literal(&v.value, matches!(op, UnaryOperator::Minus), expr)?,
            )),
            _ => Err(unsupported(format!("operand {}", show(expr)))),
        },
        other => Err(unsupported(format!(
            "operand {} (operands are columns and constants)",
            show_expr(other)
        ))),
    }
}

fn literal(value: &Value, negate: bool, expr: &Expr) -> Result<Literal, SqlError> {
    match value {
        Value::Number(text, _) => {
            let signed = if negate {
                format!("-{text}")
            } else {
                text.clone()
            };
            // As JSON reads it (an integer exactly), else as SQL's decimal
            // forms (`.5`, `5.`) that JSON has not.
            serde_json::from_str::<serde_json::Number>(&signed)
                .ok()
                .filter(|n| n.as_f64().is_some_and(f64::is_finite))
                .or_else(|| {
                    signed
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                })
                .map(Literal::Number)
                .ok_or_else(|| SqlError::Invalid {
                    clause: CLAUSE,
                    detail: format!("number out of range: {}", show(expr)),
                })
        }
        Value::SingleQuotedString(s) => Ok(Literal::String(s.clone())),
        Value::Boolean(b) => Ok(Literal::Bool(*b)),
        Value::Null => Ok(Literal::Null),
        _ => Err(unsupported(format!("constant {}", show(expr)))),
    }
}

fn unsupported(detail: String) -> SqlError {
    SqlError::Unsupported {
        clause: CLAUSE,
        detail,
    }
}
