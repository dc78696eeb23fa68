//! Accepted statements and their plans; refusals are in `tests/refusals.rs`,
//! the never-panics property in `tests/never_panics.rs`.

mod never_panics;
mod refusals;

use super::parse_job;
use crate::stream::plan::{
    AggregateKind, AggregateSpec, CompareOp, Filter, JobPlan, Literal, Operand, OutputColumn,
    RankColumn, RankFunction, TimeSource, TopN, WindowSpec,
};

const SEED: &str = "INSERT INTO totals SELECT customerId, TUMBLE_START(ts, INTERVAL '30' SECOND) AS window_start, SUM(transactionSum) AS total, COUNT(*) AS n FROM transactions GROUP BY customerId, TUMBLE(ts, INTERVAL '30' SECOND)";

fn plan(sql: &str) -> JobPlan {
    parse_job(sql).unwrap_or_else(|e| panic!("{sql}\nrefused: {e}"))
}

fn key(index: usize, name: &str) -> OutputColumn {
    OutputColumn::Key {
        index,
        name: name.into(),
    }
}

fn agg(index: usize, name: &str) -> OutputColumn {
    OutputColumn::Aggregate {
        index,
        name: name.into(),
    }
}

fn start(name: &str) -> OutputColumn {
    OutputColumn::WindowStart { name: name.into() }
}

fn end(name: &str) -> OutputColumn {
    OutputColumn::WindowEnd { name: name.into() }
}

fn spec(kind: AggregateKind, column: Option<&str>) -> AggregateSpec {
    AggregateSpec {
        kind,
        column: column.map(Into::into),
    }
}

fn field(name: &str) -> TimeSource {
    TimeSource::Field(name.into())
}

#[test]
fn seed_query() {
    assert_eq!(
        plan(SEED),
        JobPlan {
            output_topic: "totals".into(),
            input_topic: "transactions".into(),
            time: field("ts"),
            window: WindowSpec::Tumble { size_ms: 30_000 },
            keys: vec!["customerId".into()],
            aggregates: vec![
                spec(AggregateKind::Sum, Some("transactionSum")),
                spec(AggregateKind::CountStar, None),
            ],
            filter: None,
            columns: vec![
                key(0, "customerId"),
                start("window_start"),
                agg(0, "total"),
                agg(1, "n"),
            ],
            top: None,
            one_partition: false,
            one_node: false,
        }
    );
}

#[test]
fn group_windows() {
    let p = plan(
        "INSERT INTO o SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE), tumble_end(ts, INTERVAL '60' SECOND) AS e, k \
         FROM i GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)",
    );
    assert_eq!(p.window, WindowSpec::Tumble { size_ms: 60_000 });
    assert_eq!(
        p.columns,
        vec![start("window_start"), end("e"), key(0, "k")]
    );

    let p = plan(
        "INSERT INTO o SELECT k, HOP_START(ts, INTERVAL '5' SECOND, INTERVAL '30' SECOND) AS s, \
         HOP_END(ts, INTERVAL '5' SECOND, INTERVAL '30' SECOND), COUNT(*) \
         FROM i GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '30' SECOND), k",
    );
    assert_eq!(
        p.window,
        WindowSpec::Hop {
            slide_ms: 5_000,
            size_ms: 30_000
        }
    );
    assert_eq!(
        p.columns,
        vec![key(0, "k"), start("s"), end("window_end"), agg(0, "count")]
    );

    // a slide that does not divide the size, and slide == size
    let p = plan("INSERT INTO o SELECT COUNT(*) FROM i GROUP BY HOP(ts, INTERVAL '7' SECOND, INTERVAL '30' SECOND)");
    assert_eq!(
        p.window,
        WindowSpec::Hop {
            slide_ms: 7_000,
            size_ms: 30_000
        }
    );
    plan("INSERT INTO o SELECT COUNT(*) FROM i GROUP BY HOP(ts, INTERVAL '30' SECOND, INTERVAL '30' SECOND)");

    let p = plan(
        "INSERT INTO o SELECT k, SESSION_START(ts, INTERVAL '10' MINUTE), SESSION_END(ts, INTERVAL '10' MINUTE), MAX(v) \
         FROM i GROUP BY k, SESSION(ts, INTERVAL '10' MINUTE)",
    );
    assert_eq!(p.window, WindowSpec::Session { gap_ms: 600_000 });
    assert_eq!(p.time, field("ts"));
    assert_eq!(
        p.columns,
        vec![
            key(0, "k"),
            start("window_start"),
            end("window_end"),
            agg(0, "max_v")
        ]
    );
}

#[test]
fn window_table_functions() {
    let p = plan(
        "INSERT INTO o SELECT window_start, window_end, customerId, SUM(amount) AS total \
         FROM TABLE(TUMBLE(TABLE transactions, DESCRIPTOR(ts), INTERVAL '30' SECOND)) \
         GROUP BY window_start, window_end, customerId",
    );
    assert_eq!(
        p,
        JobPlan {
            output_topic: "o".into(),
            input_topic: "transactions".into(),
            time: field("ts"),
            window: WindowSpec::Tumble { size_ms: 30_000 },
            keys: vec!["customerId".into()],
            aggregates: vec![spec(AggregateKind::Sum, Some("amount"))],
            filter: None,
            columns: vec![
                start("window_start"),
                end("window_end"),
                key(0, "customerId"),
                agg(0, "total")
            ],
            top: None,
            one_partition: false,
            one_node: false,
        }
    );

    let p = plan(
        "INSERT INTO o SELECT k, window_start AS ws, COUNT(*) \
         FROM TABLE(HOP(TABLE i, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '10' MINUTES)) \
         GROUP BY k, window_end, window_start",
    );
    assert_eq!(
        p.window,
        WindowSpec::Hop {
            slide_ms: 60_000,
            size_ms: 600_000
        }
    );
    assert_eq!(p.keys, vec!["k".to_string()]);
    assert_eq!(p.columns, vec![key(0, "k"), start("ws"), agg(0, "count")]);

    let p = plan(
        "insert into o select window_end, k, avg(v) \
         from table(session(table i, descriptor(ts), interval '5' second)) \
         group by window_start, window_end, k",
    );
    assert_eq!(p.window, WindowSpec::Session { gap_ms: 5_000 });
    assert_eq!(
        p.columns,
        vec![end("window_end"), key(0, "k"), agg(0, "avg_v")]
    );

    // quoted topic, extra spacing, and the TABLE keyword is optional
    let p = plan(
        "INSERT INTO \"out-1\" SELECT COUNT(*) FROM TABLE ( TUMBLE ( TABLE \"in.topic\" , DESCRIPTOR(ts), INTERVAL '1' SECOND ) ) GROUP BY window_start, window_end",
    );
    assert_eq!(p.input_topic, "in.topic");
    assert_eq!(p.output_topic, "out-1");
    let p = plan("INSERT INTO o SELECT COUNT(*) FROM TABLE(TUMBLE(i, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
    assert_eq!(p.input_topic, "i");
}

#[test]
fn time_sources() {
    let p = plan(
        "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY TUMBLE(_timestamp, INTERVAL '1' SECOND)",
    );
    assert_eq!(p.time, TimeSource::RecordTimestamp);
    let p = plan("INSERT INTO o SELECT TUMBLE_END(PROCTIME(), INTERVAL '1' SECOND), COUNT(*) FROM i GROUP BY TUMBLE(proctime(), INTERVAL '1' SECOND)");
    assert_eq!(p.time, TimeSource::ProcessingTime);
    assert_eq!(p.columns[0], end("window_end"));
    let p = plan("INSERT INTO o SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(_timestamp), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
    assert_eq!(p.time, TimeSource::RecordTimestamp);
    let p = plan("INSERT INTO o SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(PROCTIME()), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
    assert_eq!(p.time, TimeSource::ProcessingTime);
    let p = plan(
        "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY TUMBLE(\"event time\", INTERVAL '1' SECOND)",
    );
    assert_eq!(p.time, field("event time"));
    let p = plan(
        "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY TUMBLE(eventTime, INTERVAL '1' SECOND)",
    );
    assert_eq!(p.time, field("eventTime"));
}

#[test]
fn intervals() {
    let size = |interval: &str| {
        let p = plan(&format!(
            "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY TUMBLE(ts, {interval})"
        ));
        match p.window {
            WindowSpec::Tumble { size_ms } => size_ms,
            other => panic!("{other:?}"),
        }
    };
    for (interval, ms) in [
        ("INTERVAL '30' SECOND", 30_000),
        ("INTERVAL '30' SECONDS", 30_000),
        ("INTERVAL '5' MINUTE", 300_000),
        ("INTERVAL '1' HOUR", 3_600_000),
        ("INTERVAL '2' DAY", 172_800_000),
        ("INTERVAL '1' WEEK", 604_800_000),
        ("INTERVAL '500' MILLISECOND", 500),
        ("INTERVAL '1.5' SECOND", 1_500),
        ("INTERVAL 10 SECOND", 10_000),
        ("interval '3' minute", 180_000),
        ("INTERVAL '30 seconds'", 30_000),
        ("INTERVAL '5 min'", 300_000),
        ("INTERVAL '250 ms'", 250),
        ("INTERVAL '2 HOURS'", 7_200_000),
    ] {
        assert_eq!(size(interval), ms, "{interval}");
    }
}

#[test]
fn aggregates() {
    let p = plan(
        "INSERT INTO o SELECT COUNT(*), count(v) , COUNT(DISTINCT v), Sum(v), MIN(v), max(v), AVG(v), COUNT(1) AS ones \
         FROM i GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
    );
    assert_eq!(
        p.aggregates,
        vec![
            spec(AggregateKind::CountStar, None),
            spec(AggregateKind::Count, Some("v")),
            spec(AggregateKind::CountDistinct, Some("v")),
            spec(AggregateKind::Sum, Some("v")),
            spec(AggregateKind::Min, Some("v")),
            spec(AggregateKind::Max, Some("v")),
            spec(AggregateKind::Avg, Some("v")),
        ]
    );
    assert_eq!(
        p.columns,
        vec![
            agg(0, "count"),
            agg(1, "count_v"),
            agg(2, "count_distinct_v"),
            agg(3, "sum_v"),
            agg(4, "min_v"),
            agg(5, "max_v"),
            agg(6, "avg_v"),
            agg(0, "ones"),
        ]
    );
    // an aggregate repeated under two names is computed once; column case is kept
    let p = plan(
        "INSERT INTO o SELECT SUM(transactionSum), SUM(transactionSum) AS again, MAX(\"Amount $\") \
         FROM i GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
    );
    assert_eq!(p.aggregates.len(), 2);
    assert_eq!(
        p.columns,
        vec![
            agg(0, "sum_transactionSum"),
            agg(0, "again"),
            agg(1, "max_Amount $")
        ]
    );
}

#[test]
fn keys_and_aliases() {
    let p = plan(
        "INSERT INTO o SELECT region AS r, COUNT(*) AS n, customerId \
         FROM i GROUP BY customerId, TUMBLE(ts, INTERVAL '1' SECOND), region, \"shop id\"",
    );
    assert_eq!(p.keys, vec!["customerId", "region", "shop id"]);
    assert_eq!(
        p.columns,
        vec![key(1, "r"), agg(0, "n"), key(0, "customerId")]
    );
    // a key selected twice under two names; a key that shadows window_start
    let p = plan(
        "INSERT INTO o SELECT k, k AS k2, window_start FROM i GROUP BY k, window_start, SESSION(ts, INTERVAL '1' SECOND)",
    );
    assert_eq!(
        p.columns,
        vec![key(0, "k"), key(0, "k2"), key(1, "window_start")]
    );
    // only keys and the window: distinct keys per window
    let p = plan("INSERT INTO o SELECT k FROM i GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)");
    assert!(p.aggregates.is_empty());
}

fn filter_of(condition: &str) -> Filter {
    plan(&format!(
        "INSERT INTO o SELECT COUNT(*) FROM i WHERE {condition} GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)"
    ))
    .filter
    .expect("a filter")
}

fn cmp(left: Operand, op: CompareOp, right: Operand) -> Filter {
    Filter::Compare { left, op, right }
}

fn col(name: &str) -> Operand {
    Operand::Column(name.into())
}

fn lit(l: Literal) -> Operand {
    Operand::Literal(l)
}

#[test]
fn where_forms() {
    for (text, op) in [
        ("=", CompareOp::Eq),
        ("<>", CompareOp::NotEq),
        ("!=", CompareOp::NotEq),
        ("<", CompareOp::Lt),
        ("<=", CompareOp::LtEq),
        (">", CompareOp::Gt),
        (">=", CompareOp::GtEq),
    ] {
        assert_eq!(
            filter_of(&format!("amount {text} 10")),
            cmp(col("amount"), op, lit(Literal::Number(10.into())))
        );
    }
    assert_eq!(
        filter_of("v = 100000000000000001"),
        cmp(
            col("v"),
            CompareOp::Eq,
            lit(Literal::Number(100000000000000001u64.into()))
        )
    );
    assert_eq!(
        filter_of("v > -9223372036854775808"),
        cmp(
            col("v"),
            CompareOp::Gt,
            lit(Literal::Number(i64::MIN.into()))
        )
    );
    assert_eq!(
        filter_of("v < .5"),
        cmp(
            col("v"),
            CompareOp::Lt,
            lit(Literal::Number(serde_json::Number::from_f64(0.5).unwrap()))
        )
    );
    assert_eq!(
        filter_of("-2.5 < amount"),
        cmp(
            lit(Literal::Number(serde_json::Number::from_f64(-2.5).unwrap())),
            CompareOp::Lt,
            col("amount")
        )
    );
    assert_eq!(
        filter_of("status = 'paid'"),
        cmp(
            col("status"),
            CompareOp::Eq,
            lit(Literal::String("paid".into()))
        )
    );
    assert_eq!(
        filter_of("\"is ok\" = TRUE"),
        cmp(col("is ok"), CompareOp::Eq, lit(Literal::Bool(true)))
    );
    assert_eq!(
        filter_of("flag <> false"),
        cmp(col("flag"), CompareOp::NotEq, lit(Literal::Bool(false)))
    );
    assert_eq!(
        filter_of("x = NULL"),
        cmp(col("x"), CompareOp::Eq, lit(Literal::Null))
    );
    assert_eq!(
        filter_of("paidAt >= createdAt"),
        cmp(col("paidAt"), CompareOp::GtEq, col("createdAt"))
    );
    assert_eq!(filter_of("note IS NULL"), Filter::IsNull("note".into()));
    assert_eq!(
        filter_of("(note) IS NOT NULL"),
        Filter::IsNotNull("note".into())
    );
    // AND binds tighter than OR; NOT and parentheses
    let a = || cmp(col("a"), CompareOp::Eq, lit(Literal::Number(1.into())));
    let b = || cmp(col("b"), CompareOp::Eq, lit(Literal::Number(2.into())));
    let c = || Filter::IsNull("c".into());
    assert_eq!(
        filter_of("a = 1 OR b = 2 AND c IS NULL"),
        Filter::Or(
            Box::new(a()),
            Box::new(Filter::And(Box::new(b()), Box::new(c())))
        )
    );
    assert_eq!(
        filter_of("NOT (a = 1 OR b = 2) AND c IS NULL"),
        Filter::And(
            Box::new(Filter::Not(Box::new(Filter::Or(
                Box::new(a()),
                Box::new(b())
            )))),
            Box::new(c())
        )
    );
    assert_eq!(filter_of("((a = 1))"), a());
}

#[test]
fn table_aliases_and_qualified_columns() {
    let bare = "INSERT INTO o SELECT bidder, COUNT(*) AS n, SESSION_START(dateTime, INTERVAL '10' SECOND) AS s \
                FROM bid WHERE price > 10 AND channel IS NOT NULL \
                GROUP BY bidder, SESSION(dateTime, INTERVAL '10' SECOND)";
    let want = plan(bare);
    for (from, q) in [
        ("bid B", "B"),
        ("bid AS B", "B"),
        ("bid", "bid"),
        ("\"bid\" b", "b"),
    ] {
        let sql = format!(
            "INSERT INTO o SELECT {q}.bidder, COUNT(*) AS n, SESSION_START({q}.dateTime, INTERVAL '10' SECOND) AS s \
             FROM {from} WHERE ({q}.price > 10) AND {q}.channel IS NOT NULL \
             GROUP BY {q}.bidder, SESSION({q}.dateTime, INTERVAL '10' SECOND)"
        );
        assert_eq!(plan(&sql), want, "{sql}");
    }
    // qualified and bare columns mix; aggregate arguments and aliased keys
    let bare = "INSERT INTO o SELECT auction AS a, MAX(price) AS m, COUNT(DISTINCT bidder) \
                FROM bid GROUP BY auction, TUMBLE(dateTime, INTERVAL '10' SECOND)";
    let sql = "INSERT INTO o SELECT B.auction AS a, MAX(B.price) AS m, COUNT(DISTINCT bidder) \
               FROM bid B GROUP BY auction, TUMBLE(B.dateTime, INTERVAL '10' SECOND)";
    assert_eq!(plan(sql), plan(bare));
    // the window table function form, with an alias after TABLE(…) or none
    let bare = "INSERT INTO o SELECT window_start, auction, COUNT(*) \
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
                GROUP BY window_start, window_end, auction";
    let want = plan(bare);
    for (alias, q) in [(" AS B", "B"), (" B", "B"), ("", "bid")] {
        let sql = format!(
            "INSERT INTO o SELECT {q}.window_start, {q}.auction, COUNT(*) \
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR({q}.dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)){alias} \
             GROUP BY {q}.window_start, {q}.window_end, {q}.auction"
        );
        assert_eq!(plan(&sql), want, "{sql}");
    }
}

#[test]
fn a_window_alone_in_group_by_is_an_empty_key() {
    // Nexmark Q7's aggregation: the highest bid of each window, no key.
    let p = plan(
        "INSERT INTO q7 SELECT MAX(B.price) AS maxprice, TUMBLE_END(B.dateTime, INTERVAL '10' SECOND) AS e \
         FROM bid B GROUP BY TUMBLE(B.dateTime, INTERVAL '10' SECOND)",
    );
    assert!(p.keys.is_empty());
    assert_eq!(p.window, WindowSpec::Tumble { size_ms: 10_000 });
    assert_eq!(p.aggregates, vec![spec(AggregateKind::Max, Some("price"))]);
    assert_eq!(p.columns, vec![agg(0, "maxprice"), end("e")]);
}

/// Q5's aggregation, the auctions' bid counts per hopping window.
const COUNTS: &str = "SELECT auction, COUNT(*) AS num, window_start, window_end \
     FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
     GROUP BY auction, window_start, window_end";

fn rank_col(name: &str) -> OutputColumn {
    OutputColumn::Rank { name: name.into() }
}

#[test]
fn window_top_n_around_an_aggregation() {
    let p = plan(&format!(
        "INSERT INTO hot SELECT auction, num, window_start AS ws FROM ( \
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rownum \
           FROM ({COUNTS})) WHERE rownum <= 3"
    ));
    assert_eq!(p.keys, vec!["auction".to_string()]);
    assert_eq!(
        p.columns,
        vec![key(0, "auction"), agg(0, "num"), start("ws")]
    );
    assert_eq!(
        p.top,
        Some(TopN {
            partition: vec![],
            order: RankColumn::Aggregate(0),
            descending: true,
            function: RankFunction::RowNumber,
            limit: 3,
            rows: vec![],
        })
    );
    assert!(!p.copartitioned());

    // `*` outside takes the rank too; `<`, `= 1` and `N >=` limit it; RANK
    // and DENSE_RANK; aliases qualify columns at each level; a key column
    // in PARTITION BY; ascending order by a key.
    let p = plan(&format!(
        "INSERT INTO hot SELECT * FROM ( \
           SELECT C.auction AS a, C.num, RANK() OVER (PARTITION BY C.window_end, C.auction ORDER BY C.num) AS r \
           FROM ({COUNTS}) AS C) T WHERE T.r < 5"
    ));
    assert_eq!(p.columns, vec![key(0, "a"), agg(0, "num"), rank_col("r")]);
    let top = p.top.clone().unwrap();
    assert_eq!(
        (top.partition, top.descending, top.function, top.limit),
        (vec![0], false, RankFunction::Rank, 4)
    );
    for (filter, limit, function) in [
        ("rownum = 1", 1, "DENSE_RANK"),
        ("10 >= rownum", 10, "dense_rank"),
        ("(rownum <= 2)", 2, "row_number"),
    ] {
        let p = plan(&format!(
            "INSERT INTO hot SELECT auction, rownum FROM ( \
               SELECT auction, {function}() OVER (PARTITION BY window_start ORDER BY auction ASC) AS rownum \
               FROM ({COUNTS})) WHERE {filter}"
        ));
        let top = p.top.unwrap();
        assert_eq!(
            (top.limit, top.order),
            (limit, RankColumn::Key(0)),
            "{filter}"
        );
        assert_eq!(p.columns, vec![key(0, "auction"), rank_col("rownum")]);
    }

    // `alias.*` in the ranking query.
    let p = plan(&format!(
        "INSERT INTO hot SELECT T.auction, T.r FROM (SELECT C.*, RANK() OVER (PARTITION BY C.window_start ORDER BY C.num DESC) AS r \
           FROM ({COUNTS}) AS C) AS T WHERE T.r <= 1"
    ));
    assert_eq!(p.columns, vec![key(0, "auction"), rank_col("r")]);

    // Ranked within the record key: co-partitioned.
    let p = plan(
        "INSERT INTO o SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, _key ORDER BY n DESC) AS rn \
           FROM (SELECT _key, item, COUNT(*) AS n, window_start FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
                 GROUP BY _key, item, window_start, window_end)) WHERE rn <= 1",
    );
    assert!(p.copartitioned());
    let ranked_apart = plan(
        "INSERT INTO o SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) AS rn \
           FROM (SELECT _key, item, COUNT(*) AS n, window_start FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
                 GROUP BY _key, item, window_start, window_end)) WHERE rn <= 1",
    );
    assert!(!ranked_apart.copartitioned(), "ranked across record keys");
    // Over an input of one partition, any ranking stays in it; a second
    // input or output partition is refused, naming the way out.
    let one = JobPlan {
        one_partition: true,
        ..ranked_apart
    };
    assert!(one.copartitioned() && !one.grouped_by_record_key());
    assert_eq!(one.partitions_mismatch(1, 1), None);
    for (i, o) in [(2, 2), (2, 1), (1, 2)] {
        let why = one.partitions_mismatch(i, o).expect("refused");
        assert!(why.contains("create it again"), "{why}");
    }
}

/// Nexmark Q7 in full: the bids with each window's highest price.
#[test]
fn window_top_n_over_the_input_records() {
    let p = plan(
        "INSERT INTO q7 SELECT auction, price, bidder, dateTime, window_end AS until FROM ( \
           SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum \
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE rownum <= 1",
    );
    assert_eq!(p.input_topic, "bid");
    assert_eq!(p.window, WindowSpec::Tumble { size_ms: 10_000 });
    assert!(p.keys.is_empty());
    let field = |index: usize, name: &str| OutputColumn::Field {
        index,
        name: name.into(),
    };
    assert_eq!(
        p.columns,
        vec![
            field(1, "auction"),
            field(0, "price"),
            field(2, "bidder"),
            field(3, "dateTime"),
            end("until"),
        ]
    );
    let top = p.top.clone().unwrap();
    assert_eq!(top.rows, vec!["price", "auction", "bidder", "dateTime"]);
    assert_eq!(
        (top.order, top.descending, top.function, top.limit),
        (RankColumn::Row, true, RankFunction::Rank, 1)
    );
    assert_eq!(
        p.aggregates,
        vec![AggregateSpec {
            kind: AggregateKind::TopRows {
                limit: 1,
                descending: true,
                function: RankFunction::Rank,
            },
            column: None,
        }]
    );

    // Listed columns in the middle (renamed), a filter, a partition field
    // (the group key), an alias on the window table function, qualified.
    let p = plan(
        "INSERT INTO o SELECT T.a, T.r FROM ( \
           SELECT B.auction AS a, B.price, ROW_NUMBER() OVER (PARTITION BY B.window_start, B.category ORDER BY B.price) AS r \
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(B.dateTime), INTERVAL '10' SECOND)) AS B WHERE B.price > 10) AS T \
         WHERE T.r <= 2",
    );
    assert_eq!(p.keys, vec!["category".to_string()]);
    assert!(p.filter.is_some());
    assert_eq!(p.columns, vec![field(1, "a"), rank_col("r")]);
    assert_eq!(p.top.unwrap().rows, vec!["price", "auction"]);
    // The ranked field listed after another: moved first, indices kept.
    let p = plan(
        "INSERT INTO o SELECT p, a, b FROM ( \
           SELECT auction AS a, bidder AS b, price AS p, RANK() OVER (PARTITION BY window_start ORDER BY price) AS r \
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE r = 1",
    );
    assert_eq!(p.columns, vec![field(0, "p"), field(1, "a"), field(2, "b")]);
    assert_eq!(p.top.unwrap().rows, vec!["price", "auction", "bidder"]);
}
