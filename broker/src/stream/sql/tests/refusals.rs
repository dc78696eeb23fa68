//! Statements refused, each with the clause named in the message.

use super::super::{parse_job, SqlError};
use super::SEED;

/// Asserts `sql` is refused in `clause` and the message names it.
#[track_caller]
fn refused(sql: &str, clause: &str) -> String {
    let err = match parse_job(sql) {
        Ok(plan) => panic!("{sql}\naccepted: {plan:?}"),
        Err(e) => e,
    };
    let message = err.to_string();
    match &err {
        SqlError::Unsupported { clause: c, .. } | SqlError::Invalid { clause: c, .. } => {
            assert_eq!(*c, clause, "{sql}\n{message}");
        }
        SqlError::Syntax(_) => panic!("{sql}\nsyntax error instead of {clause}: {message}"),
    }
    assert!(
        message.contains(&format!("in {clause}:"))
            || message.contains(&format!("invalid {clause}:")),
        "{sql}\n{message}"
    );
    message
}

/// A job statement around the given parts.
fn job(select: &str, rest: &str) -> String {
    format!("INSERT INTO o SELECT {select} FROM i {rest}")
}

const W: &str = "TUMBLE(ts, INTERVAL '1' SECOND)";

#[test]
fn statement_level() {
    refused(
        "SELECT COUNT(*) FROM i GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "statement",
    );
    refused(&format!("{SEED}; {SEED}"), "statement");
    refused("CREATE TABLE t (a INT)", "statement");
    refused("", "statement");
    let syntax = parse_job("INSERT INTO o SELEC x");
    assert!(matches!(syntax, Err(SqlError::Syntax(_))), "{syntax:?}");
    assert!(syntax.unwrap_err().to_string().starts_with("syntax error"));
}

#[test]
fn insert_into() {
    refused(
        &format!("INSERT INTO o (a, b) SELECT k, COUNT(*) FROM i GROUP BY k, {W}"),
        "INSERT INTO",
    );
    refused(
        &format!("INSERT INTO db.o SELECT COUNT(*) FROM i GROUP BY {W}"),
        "INSERT INTO",
    );
    refused(
        &format!("INSERT INTO \"x y\" SELECT COUNT(*) FROM i GROUP BY {W}"),
        "INSERT INTO",
    );
    refused(
        &format!("INSERT INTO i SELECT COUNT(*) FROM i GROUP BY {W}"),
        "INSERT INTO",
    );
    refused(
        &format!("INSERT OVERWRITE TABLE o SELECT COUNT(*) FROM i GROUP BY {W}"),
        "INSERT INTO",
    );
}

#[test]
fn query_clauses() {
    refused(
        &job(
            "k, COUNT(*)",
            &format!("GROUP BY k, {W} HAVING COUNT(*) > 1"),
        ),
        "HAVING",
    );
    refused(
        &job("k, COUNT(*)", &format!("GROUP BY k, {W} ORDER BY k")),
        "ORDER BY",
    );
    refused(
        &job("k, COUNT(*)", &format!("GROUP BY k, {W} LIMIT 10")),
        "LIMIT",
    );
    refused(&job("DISTINCT k", &format!("GROUP BY k, {W}")), "SELECT");
    refused(
        &format!(
            "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY {W} UNION SELECT COUNT(*) FROM j GROUP BY {W}"
        ),
        "SELECT",
    );
    refused(
        &format!("INSERT INTO o WITH x AS (SELECT * FROM i) SELECT COUNT(*) FROM x GROUP BY {W}"),
        "WITH",
    );
}

#[test]
fn from_clause() {
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) FROM i JOIN j ON i.a = j.a GROUP BY {W}"),
        "FROM",
    );
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) FROM i, j GROUP BY {W}"),
        "FROM",
    );
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) FROM (SELECT * FROM i) GROUP BY {W}"),
        "FROM",
    );
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) FROM i AS t(a, b) GROUP BY {W}"),
        "FROM",
    );
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) FROM db.i GROUP BY {W}"),
        "FROM",
    );
    refused(
        "INSERT INTO o SELECT COUNT(*) GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "FROM",
    );
    // window table functions
    let tvf = |call: &str| {
        format!(
            "INSERT INTO o SELECT COUNT(*) FROM TABLE({call}) GROUP BY window_start, window_end"
        )
    };
    refused(
        &tvf("CUMULATE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' MINUTE)"),
        "FROM",
    );
    refused(
        &tvf("TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' SECOND)"),
        "FROM",
    );
    refused(&tvf("TUMBLE(TABLE i, ts, INTERVAL '1' SECOND)"), "FROM");
    refused(
        &tvf("HOP(TABLE i, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' SECOND)"),
        "FROM",
    );
    refused(
        &tvf("SESSION(TABLE i, DESCRIPTOR(ts), INTERVAL '0' SECOND)"),
        "FROM",
    );
}

#[test]
fn group_by() {
    refused(&job("k, COUNT(*)", "GROUP BY k"), "GROUP BY");
    refused(&job("COUNT(*)", ""), "GROUP BY");
    refused(
        &job(
            "COUNT(*)",
            &format!("GROUP BY {W}, SESSION(ts, INTERVAL '1' SECOND)"),
        ),
        "GROUP BY",
    );
    refused(
        &job("COUNT(*)", &format!("GROUP BY k + 1, {W}")),
        "GROUP BY",
    );
    refused(&job("COUNT(*)", &format!("GROUP BY j.k, {W}")), "GROUP BY");
    refused(&job("COUNT(*)", &format!("GROUP BY k, k, {W}")), "GROUP BY");
    refused(&job("COUNT(*)", "GROUP BY TUMBLE(ts)"), "GROUP BY");
    refused(
        &job("COUNT(*)", "GROUP BY TUMBLE(ts + 1, INTERVAL '1' SECOND)"),
        "GROUP BY",
    );
    refused(&job("COUNT(*)", "GROUP BY TUMBLE(ts, 30)"), "GROUP BY");
    refused(&job("COUNT(*)", "GROUP BY ROLLUP(a, b)"), "GROUP BY");
    // intervals
    for bad in [
        "INTERVAL '0' SECOND",
        "INTERVAL '-5' SECOND",
        "INTERVAL '30'",
        "INTERVAL '1' MONTH",
        "INTERVAL '0.0001' SECOND",
        "INTERVAL 'soon' SECOND",
        "INTERVAL '30 fortnights'",
        "INTERVAL '99999999999999999999' DAY",
        "INTERVAL '999999999999999999999999999999' WEEK",
        "INTERVAL '9999999999999999999999999999999' SECOND",
        "INTERVAL '.' SECOND",
        "INTERVAL '1:30' MINUTE TO SECOND",
        // Longer than 36,500 days: window bounds must stay inside i64.
        "INTERVAL '36501' DAY",
        "INTERVAL '9223372036854775807' MILLISECOND",
    ] {
        let message = refused(
            &job("COUNT(*)", &format!("GROUP BY TUMBLE(ts, {bad})")),
            "GROUP BY",
        );
        assert!(message.contains("interval"), "{message}");
    }
    let message = refused(
        &job(
            "COUNT(*)",
            "GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '10' SECOND)",
        ),
        "GROUP BY",
    );
    assert!(message.contains("slide"), "{message}");
    // Each record in more than 10,000 hopping windows (found from outside:
    // a 1 ms slide over a day took the node's memory on the first record).
    let message = refused(
        &job(
            "COUNT(*)",
            "GROUP BY HOP(ts, INTERVAL '1' MILLISECOND, INTERVAL '1' DAY)",
        ),
        "GROUP BY",
    );
    assert!(message.contains("86400000 windows"), "{message}");
    assert!(parse_job(&job(
        "COUNT(*)",
        "GROUP BY HOP(ts, INTERVAL '10' SECOND, INTERVAL '1' DAY)"
    ))
    .is_ok());
    // a window table function needs both bounds in GROUP BY, and only its window
    let from = "FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' SECOND))";
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) {from} GROUP BY window_start"),
        "GROUP BY",
    );
    refused(
        &format!("INSERT INTO o SELECT k, COUNT(*) {from} GROUP BY k"),
        "GROUP BY",
    );
    refused(
        &format!("INSERT INTO o SELECT COUNT(*) {from} GROUP BY window_start, window_end, {W}"),
        "GROUP BY",
    );
}

#[test]
fn select_list() {
    let group = format!("GROUP BY k, {W}");
    let message = refused(&job("k, other, COUNT(*)", &group), "SELECT");
    assert!(message.contains("other"), "{message}");
    refused(&job("k + 1", &group), "SELECT");
    refused(&job("*", &group), "SELECT");
    refused(&job("UPPER(k)", &group), "SELECT");
    refused(&job("MEDIAN(v)", &group), "SELECT");
    refused(&job("SUM(DISTINCT v)", &group), "SELECT");
    refused(&job("SUM(*)", &group), "SELECT");
    refused(&job("SUM(v + 1)", &group), "SELECT");
    refused(&job("COUNT(a, b)", &group), "SELECT");
    refused(&job("COUNT(DISTINCT *)", &group), "SELECT");
    refused(&job("COUNT(*) FILTER (WHERE v > 1)", &group), "SELECT");
    refused(&job("SUM(v) OVER ()", &group), "SELECT");
    refused(&job("j.k", &group), "SELECT");
    refused(&job("'k'", &group), "SELECT");
    refused(&job(W, &group), "SELECT");
    // duplicate output names
    let message = refused(&job("COUNT(*), COUNT(*)", &group), "SELECT");
    assert!(message.contains("count"), "{message}");
    refused(&job("k, SUM(v) AS k", &group), "SELECT");
    // window bounds must match the GROUP BY window
    refused(
        &job("TUMBLE_START(ts, INTERVAL '2' SECOND)", &group),
        "SELECT",
    );
    refused(
        &job("TUMBLE_START(other, INTERVAL '1' SECOND)", &group),
        "SELECT",
    );
    refused(
        &job(
            "HOP_START(ts, INTERVAL '1' SECOND, INTERVAL '1' SECOND)",
            &group,
        ),
        "SELECT",
    );
    refused(&job("window_start", &group), "SELECT");
    refused(
        "INSERT INTO o SELECT TUMBLE_START(ts, INTERVAL '1' SECOND) FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "SELECT",
    );
}

#[test]
fn where_clause() {
    let group = format!("GROUP BY {W}");
    for bad in [
        "a LIKE 'x%'",
        "a + 1 > 2",
        "a IN (1, 2)",
        "a BETWEEN 1 AND 2",
        "1 = 1",
        "'a' = 'b'",
        "a",
        "a = b + 1",
        "a = (SELECT 1)",
        "UPPER(a) = 'X'",
        "a IS TRUE",
        "(a + 1) IS NULL",
        "a = 1e999",
    ] {
        refused(&job("COUNT(*)", &format!("WHERE {bad} {group}")), "WHERE");
    }
}

#[test]
fn qualifiers() {
    // The qualifier is the alias, or the topic name when there is no alias;
    // anything else is refused in the clause it is in.
    let q = |select: &str, from: &str, rest: &str| {
        format!("INSERT INTO o SELECT {select} FROM {from} {rest}")
    };
    let w = |t: &str| format!("TUMBLE({t}, INTERVAL '1' SECOND)");
    let message = refused(
        &q(
            "x.k, COUNT(*)",
            "i B",
            &format!("GROUP BY B.k, {}", w("ts")),
        ),
        "SELECT",
    );
    assert!(
        message.contains("x.k") && message.contains('B'),
        "{message}"
    );
    // with an alias, the topic name no longer qualifies
    refused(
        &q(
            "i.k, COUNT(*)",
            "i B",
            &format!("GROUP BY B.k, {}", w("ts")),
        ),
        "SELECT",
    );
    refused(
        &q("k, COUNT(*)", "i B", &format!("GROUP BY i.k, {}", w("ts"))),
        "GROUP BY",
    );
    refused(
        &q("COUNT(*)", "i B", &format!("GROUP BY {}", w("i.ts"))),
        "GROUP BY",
    );
    refused(
        &q("MAX(C.v)", "i B", &format!("GROUP BY {}", w("ts"))),
        "SELECT",
    );
    refused(
        &q(
            "COUNT(*)",
            "i B",
            &format!("WHERE C.v > 1 GROUP BY {}", w("ts")),
        ),
        "WHERE",
    );
    refused(
        &q(
            "COUNT(*)",
            "i B",
            &format!("WHERE NOT (B.v > 1 OR i.v IS NULL) GROUP BY {}", w("ts")),
        ),
        "WHERE",
    );
    refused(
        &q(
            "COUNT(*)",
            "i",
            &format!("WHERE j.v = 1 GROUP BY {}", w("ts")),
        ),
        "WHERE",
    );
    refused(
        &q(
            "TUMBLE_START(j.ts, INTERVAL '1' SECOND)",
            "i B",
            &format!("GROUP BY {}", w("B.ts")),
        ),
        "SELECT",
    );
    // two qualifiers
    refused(
        &q("COUNT(*)", "i", &format!("GROUP BY db.i.k, {}", w("ts"))),
        "GROUP BY",
    );
    // the window table function's time argument and its alias
    let tvf = |desc: &str, alias: &str| {
        format!(
            "INSERT INTO o SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR({desc}), INTERVAL '1' SECOND)){alias} \
             GROUP BY window_start, window_end"
        )
    };
    refused(&tvf("j.ts", ""), "FROM");
    refused(&tvf("i.ts", " AS B"), "FROM");
    refused(&tvf("ts", " AS B(x)"), "FROM");
}

#[test]
fn window_top_n_refusals() {
    let counts = "SELECT auction, COUNT(*) AS num, window_start, window_end \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) \
         GROUP BY auction, window_start, window_end";
    let top = |rank: &str, filter: &str| {
        format!(
            "INSERT INTO o SELECT * FROM (SELECT *, {rank} AS rn FROM ({counts})) WHERE {filter}"
        )
    };
    let over = "ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC)";
    refused(&top(over, "rn <= 0"), "WHERE");
    refused(&top(over, "rn >= 3"), "WHERE");
    refused(&top(over, "rn = 2"), "WHERE");
    refused(&top(over, "rn <= 3 AND auction = 1"), "WHERE");
    refused(&top(over, "num <= 3"), "WHERE");
    refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT *, {over} AS rn FROM ({counts}))"),
        "WHERE",
    );
    let m = refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY auction ORDER BY num DESC)",
            "rn <= 1",
        ),
        "OVER",
    );
    assert!(m.contains("window_start"), "{m}");
    refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY window_start, num ORDER BY num DESC)",
            "rn <= 1",
        ),
        "OVER",
    );
    refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY num DESC, auction)",
            "rn <= 1",
        ),
        "OVER",
    );
    refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY num DESC NULLS FIRST)",
            "rn <= 1",
        ),
        "OVER",
    );
    refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY price)",
            "rn <= 1",
        ),
        "OVER",
    );
    refused(
        &top(
            "NTILE(2) OVER (PARTITION BY window_start ORDER BY num)",
            "rn <= 1",
        ),
        "OVER",
    );
    refused(
        &top(
            "ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY num ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
            "rn <= 1",
        ),
        "OVER",
    );
    // Unnamed rank, no rank at all, a column the aggregation lacks.
    refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT *, {over} FROM ({counts})) WHERE rn <= 1"),
        "OVER",
    );
    refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT * FROM ({counts})) WHERE rn <= 1"),
        "SELECT",
    );
    refused(
        &format!(
            "INSERT INTO o SELECT price FROM (SELECT *, {over} AS rn FROM ({counts})) WHERE rn <= 1"
        ),
        "SELECT",
    );
    // `*` over the input records (no fixed schema), a ranking query over a
    // topic without window, ranking records by the window, a session
    // window, a filter in the middle.
    let tvf = "TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))";
    let m = refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT *, {over} AS rn FROM {tvf}) WHERE rn <= 1"),
        "SELECT",
    );
    assert!(m.contains("name the fields"), "{m}");
    refused(
        &format!("INSERT INTO o SELECT price FROM (SELECT *, {over} AS rn FROM bid) WHERE rn <= 1"),
        "FROM",
    );
    refused(
        &format!(
            "INSERT INTO o SELECT price FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start \
             ORDER BY window_end) AS rn FROM {tvf}) WHERE rn <= 1"
        ),
        "OVER",
    );
    refused(
        &format!(
            "INSERT INTO o SELECT price, x FROM (SELECT price, {over} AS rn FROM {tvf}) WHERE rn <= 1"
        ),
        "SELECT",
    );
    refused(
        "INSERT INTO o SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY num) AS rn FROM \
             (SELECT auction, COUNT(*) AS num, window_start FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), \
             INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end)) WHERE rn <= 1",
        "OVER",
    );
    refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT *, {over} AS rn FROM ({counts}) WHERE num > 1) WHERE rn <= 1"),
        "WHERE",
    );
    refused(
        &format!("INSERT INTO o SELECT * FROM (SELECT *, {over} AS rn FROM ({counts}) AS c) AS t WHERE x.rn <= 1"),
        "WHERE",
    );
    refused(
        &format!(
            "INSERT INTO o SELECT * FROM (SELECT *, {over} AS num FROM ({counts})) WHERE num <= 1"
        ),
        "SELECT",
    );
}

/// Found from outside: a column named `user` (a reserved word, which the
/// parser reads as the USER function) was refused as "unsupported in GROUP
/// BY: user" with no way forward. The message says to quote it, and the
/// quoted name is accepted.
#[test]
fn a_reserved_word_as_a_column_is_refused_with_how_to_quote_it() {
    for (sql, clause) in [
        (
            job("user, COUNT(*) AS n", &format!("GROUP BY user, {W}")),
            "GROUP BY",
        ),
        (
            job("COUNT(*) AS n", &format!("GROUP BY {W}, user")),
            "GROUP BY",
        ),
        (job("MAX(user) AS m", &format!("GROUP BY {W}")), "SELECT"),
        (
            job("COUNT(*) AS n", &format!("WHERE user = 'a' GROUP BY {W}")),
            "WHERE",
        ),
    ] {
        let message = refused(&sql, clause);
        assert!(message.contains("quote it"), "{sql}\n{message}");
    }
    let quoted = job(
        "\"user\", MAX(\"user\") AS m",
        &format!("WHERE \"user\" = 'a' GROUP BY \"user\", {W}"),
    );
    let plan = parse_job(&quoted).expect("the quoted name is a column");
    assert_eq!(plan.keys, ["user"]);
}
