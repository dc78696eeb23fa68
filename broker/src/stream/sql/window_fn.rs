//! The window calls: `TUMBLE`/`HOP`/`SESSION` in `GROUP BY` (group windows),
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), …))` in `FROM` (window TVFs), the
//! `*_START`/`*_END` functions of the select list, time arguments and
//! intervals.

use sqlparser::ast::{
    DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr, Interval, Value,
};

use super::{
    call_args, column_name, function_name, invalid, show, topic_name_of, unsupported, SqlError,
};
use crate::stream::plan::{TimeSource, WindowSpec};

/// A window and where its event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Window {
    /// The event time.
    pub(super) time: TimeSource,
    /// The window.
    pub(super) spec: WindowSpec,
}

/// Which bound of the window a select-list call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// `*_START`.
    Start,
    /// `*_END`.
    End,
}

/// The three window kinds, by function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumble,
    Hop,
    Session,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        match name.to_ascii_uppercase().as_str() {
            "TUMBLE" => Some(Kind::Tumble),
            "HOP" => Some(Kind::Hop),
            "SESSION" => Some(Kind::Session),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Tumble => "TUMBLE",
            Kind::Hop => "HOP",
            Kind::Session => "SESSION",
        }
    }

    /// How many intervals the call takes after the time argument.
    fn intervals(self) -> usize {
        match self {
            Kind::Hop => 2,
            Kind::Tumble | Kind::Session => 1,
        }
    }

    fn of_spec(spec: &WindowSpec) -> Kind {
        match spec {
            WindowSpec::Tumble { .. } => Kind::Tumble,
            WindowSpec::Hop { .. } => Kind::Hop,
            WindowSpec::Session { .. } => Kind::Session,
        }
    }
}

/// Whether `name` is a window function (`TUMBLE`, `HOP`, `SESSION`).
pub(super) fn is_window_name(name: &str) -> bool {
    Kind::of(name).is_some()
}

/// Reads a `GROUP BY` item: `Some` if it is a group window call.
pub(super) fn group_window(expr: &Expr) -> Result<Option<Window>, SqlError> {
    const CLAUSE: &str = "GROUP BY";
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let Some(kind) = function_name(f).and_then(Kind::of) else {
        return Ok(None);
    };
    let args = plain_args(f, CLAUSE)?;
    let want = 1 + kind.intervals();
    if args.len() != want {
        return Err(unsupported(
            CLAUSE,
            format!(
                "{} takes {want} arguments ({}), got {}",
                kind.name(),
                group_signature(kind),
                args.len()
            ),
        ));
    }
    let time = time_source(args[0], CLAUSE)?;
    let spec = spec(kind, &args[1..], CLAUSE)?;
    Ok(Some(Window { time, spec }))
}

fn group_signature(kind: Kind) -> &'static str {
    match kind {
        Kind::Tumble => "time, size",
        Kind::Hop => "time, slide, size",
        Kind::Session => "time, gap",
    }
}

/// Reads a select-list `TUMBLE_START(…)`-style call: `None` if `f` is not
/// one; an error if it does not match the `GROUP BY` window.
pub(super) fn bound_call(f: &Function, window: Option<&Window>) -> Result<Option<Bound>, SqlError> {
    const CLAUSE: &str = "SELECT";
    let Some(name) = function_name(f) else {
        return Ok(None);
    };
    let upper = name.to_ascii_uppercase();
    let (prefix, bound) = if let Some(p) = upper.strip_suffix("_START") {
        (p, Bound::Start)
    } else if let Some(p) = upper.strip_suffix("_END") {
        (p, Bound::End)
    } else {
        return Ok(None);
    };
    let Some(kind) = Kind::of(prefix) else {
        return Ok(None);
    };
    let Some(window) = window else {
        return Err(unsupported(
            CLAUSE,
            format!(
                "{upper} needs a {} call in GROUP BY; with a window table function select window_start / window_end",
                kind.name()
            ),
        ));
    };
    let grouped = Kind::of_spec(&window.spec);
    if grouped != kind {
        return Err(invalid(
            CLAUSE,
            format!(
                "{upper} does not match the {} window of GROUP BY",
                grouped.name()
            ),
        ));
    }
    let args = plain_args(f, CLAUSE)?;
    let same = args.len() == 1 + kind.intervals()
        && time_source(args[0], CLAUSE)? == window.time
        && spec(kind, &args[1..], CLAUSE)? == window.spec;
    if !same {
        return Err(invalid(
            CLAUSE,
            format!(
                "{upper} must repeat the arguments of the {} call in GROUP BY",
                kind.name()
            ),
        ));
    }
    Ok(Some(bound))
}

/// Reads a `FROM TABLE(…)` window table function: the input topic and the
/// window.
pub(super) fn table_function(expr: &Expr) -> Result<(String, Window), SqlError> {
    const CLAUSE: &str = "FROM";
    let Expr::Function(f) = expr else {
        return Err(unsupported(
            CLAUSE,
            format!("TABLE({}) is not a window table function", show(expr)),
        ));
    };
    let name = function_name(f).unwrap_or_default();
    let Some(kind) = Kind::of(name) else {
        return Err(unsupported(
            CLAUSE,
            format!(
                "table function {}: only TUMBLE, HOP and SESSION",
                show(&f.name)
            ),
        ));
    };
    let args = plain_args(f, CLAUSE)?;
    let want = 2 + kind.intervals();
    if args.len() != want {
        return Err(unsupported(
            CLAUSE,
            format!(
                "{} takes {want} arguments ({}), got {} (offsets and PARTITION BY are not supported)",
                kind.name(),
                tvf_signature(kind),
                args.len()
            ),
        ));
    }
    let topic = match args[0] {
        Expr::Identifier(id) => topic_name_of(id, CLAUSE)?,
        other => {
            return Err(unsupported(
                CLAUSE,
                format!(
                    "the first argument of {} must be TABLE <topic>, got {}",
                    kind.name(),
                    show(other)
                ),
            ));
        }
    };
    let time = descriptor(args[1])?;
    let spec = spec(kind, &args[2..], CLAUSE)?;
    Ok((topic, Window { time, spec }))
}

fn tvf_signature(kind: Kind) -> &'static str {
    match kind {
        Kind::Tumble => "TABLE t, DESCRIPTOR(time), size",
        Kind::Hop => "TABLE t, DESCRIPTOR(time), slide, size",
        Kind::Session => "TABLE t, DESCRIPTOR(time), gap",
    }
}

/// `DESCRIPTOR(col)`: the time argument of a window table function.
fn descriptor(expr: &Expr) -> Result<TimeSource, SqlError> {
    const CLAUSE: &str = "FROM";
    if let Expr::Function(f) = expr {
        if function_name(f).is_some_and(|n| n.eq_ignore_ascii_case("DESCRIPTOR")) {
            let args = plain_args(f, CLAUSE)?;
            if let [time] = args.as_slice() {
                return time_source(time, CLAUSE);
            }
        }
    }
    Err(unsupported(
        CLAUSE,
        format!(
            "the time argument must be DESCRIPTOR(<column>), got {}",
            show(expr)
        ),
    ))
}

/// The window spec of `kind` from its interval arguments (already counted).
fn spec(kind: Kind, intervals: &[&Expr], clause: &'static str) -> Result<WindowSpec, SqlError> {
    let ms = intervals
        .iter()
        .map(|e| interval_ms(e, clause))
        .collect::<Result<Vec<i64>, SqlError>>()?;
    match (kind, ms.as_slice()) {
        (Kind::Tumble, &[size_ms]) => Ok(WindowSpec::Tumble { size_ms }),
        (Kind::Session, &[gap_ms]) => Ok(WindowSpec::Session { gap_ms }),
        (Kind::Hop, &[slide_ms, size_ms]) => {
            if slide_ms > size_ms {
                return Err(invalid(
                    clause,
                    format!(
                        "HOP slide ({slide_ms} ms) is larger than its size ({size_ms} ms); the order is HOP(time, slide, size)"
                    ),
                ));
            }
            let hops = (size_ms + slide_ms - 1) / slide_ms;
            if hops > MAX_HOPS_PER_RECORD {
                return Err(invalid(
                    clause,
                    format!(
                        "HOP size ({size_ms} ms) over slide ({slide_ms} ms) puts each record in {hops} windows; at most {MAX_HOPS_PER_RECORD} are allowed"
                    ),
                ));
            }
            Ok(WindowSpec::Hop { slide_ms, size_ms })
        }
        _ => Err(unsupported(
            clause,
            format!("{} with {} intervals", kind.name(), ms.len()),
        )),
    }
}

/// The event time of a window: a column, `_timestamp` or `PROCTIME()`.
fn time_source(expr: &Expr, clause: &'static str) -> Result<TimeSource, SqlError> {
    match expr {
        Expr::Identifier(id) if id.value == "_timestamp" => Ok(TimeSource::RecordTimestamp),
        Expr::Identifier(id) => Ok(TimeSource::Field(column_name(id, clause)?)),
        Expr::Function(f)
            if function_name(f).is_some_and(|n| n.eq_ignore_ascii_case("PROCTIME"))
                && plain_args(f, clause)?.is_empty() =>
        {
            Ok(TimeSource::ProcessingTime)
        }
        other => Err(unsupported(
            clause,
            format!(
                "the window time must be a column, _timestamp or PROCTIME(), got {}",
                show(other)
            ),
        )),
    }
}

/// A plain call's arguments: no `DISTINCT`, `FILTER`, `OVER`, named or
/// wildcard arguments.
pub(super) fn plain_args<'a>(
    f: &'a Function,
    clause: &'static str,
) -> Result<Vec<&'a Expr>, SqlError> {
    let (distinct, args) = call_args(f, clause)?;
    if distinct {
        return Err(unsupported(clause, format!("DISTINCT in {}", show(f))));
    }
    args.iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(unsupported(
                clause,
                format!("argument {} of {}", show(other), show(&f.name)),
            )),
        })
        .collect()
}

/// An interval in milliseconds (> 0): `INTERVAL '30' SECOND`, `INTERVAL
/// '1.5' MINUTE`, `INTERVAL '30 seconds'`.
pub(super) fn interval_ms(expr: &Expr, clause: &'static str) -> Result<i64, SqlError> {
    let bad = |why: &str| invalid(clause, format!("{why}: {}", show(expr)));
    let Expr::Interval(Interval {
        value,
        leading_field,
        last_field: None,
        ..
    }) = expr
    else {
        return Err(unsupported(
            clause,
            format!(
                "expected an interval such as INTERVAL '30' SECOND, got {}",
                show(expr)
            ),
        ));
    };
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.trim().to_string(),
            _ => return Err(bad("the interval value must be a number or a string")),
        },
        _ => return Err(bad("the interval value must be a number or a string")),
    };
    let (number, unit_ms) = match leading_field {
        Some(field) => (
            text.as_str(),
            field_ms(field).ok_or_else(|| bad("unsupported interval unit"))?,
        ),
        None => {
            let (number, unit) = text
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("the interval needs a unit, e.g. INTERVAL '30' SECOND"))?;
            (
                number,
                unit_word_ms(unit.trim()).ok_or_else(|| bad("unsupported interval unit"))?,
            )
        }
    };
    let ms = decimal_times(number, unit_ms).map_err(bad)?;
    if ms <= 0 {
        return Err(bad("the interval must be positive"));
    }
    if ms > MAX_INTERVAL_MS {
        return Err(bad("the interval is longer than 36,500 days"));
    }
    Ok(ms)
}

/// The longest interval a statement may name (about 100 years): with event
/// times bounded too (`row::MAX_EVENT_TIME_MS`), window bounds stay far
/// inside `i64`.
pub const MAX_INTERVAL_MS: i64 = 36_500 * DAY;

/// The most hopping windows one record may belong to (`size / slide`,
/// rounded up): each is an accumulator to update per record, so a slide
/// far below the size (1 ms over a day: 86.4 M windows) would exhaust the
/// node's memory on the first record. A day sliding by 10 s is 8,640.
pub const MAX_HOPS_PER_RECORD: i64 = 10_000;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn field_ms(field: &DateTimeField) -> Option<i64> {
    Some(match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
        DateTimeField::Second | DateTimeField::Seconds => SECOND,
        DateTimeField::Minute | DateTimeField::Minutes => MINUTE,
        DateTimeField::Hour | DateTimeField::Hours => HOUR,
        DateTimeField::Day | DateTimeField::Days => DAY,
        DateTimeField::Week(None) | DateTimeField::Weeks => 7 * DAY,
        _ => return None,
    })
}

fn unit_word_ms(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => SECOND,
        "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hour" | "hours" => HOUR,
        "d" | "day" | "days" => DAY,
        "week" | "weeks" => 7 * DAY,
        _ => return None,
    })
}

/// `number × unit` exactly, for a decimal `number` (optional sign, digits,
/// optional fraction), if the result is a whole `i64`.
fn decimal_times(number: &str, unit: i64) -> Result<i64, &'static str> {
    const NOT_A_NUMBER: &str = "the interval value is not a number";
    const NOT_WHOLE: &str = "the interval must be a whole number of milliseconds";
    const TOO_LARGE: &str = "the interval is too large";
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(NOT_A_NUMBER);
    }
    if whole.len() + fraction.len() > 30 {
        return Err(TOO_LARGE);
    }
    let scale = 10i128.pow(fraction.len() as u32);
    let mantissa: i128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| NOT_A_NUMBER)?;
    let scaled = mantissa.checked_mul(i128::from(unit)).ok_or(TOO_LARGE)?;
    if scaled % scale != 0 {
        return Err(NOT_WHOLE);
    }
    let ms = i64::try_from(scaled / scale).map_err(|_| TOO_LARGE)?;
    Ok(if negative { -ms } else { ms })
}
