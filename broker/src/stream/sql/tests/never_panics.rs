//! `parse_job` returns (a plan or an error) on any input.

use proptest::prelude::*;

use super::super::parse_job;
use super::SEED;

/// Pieces of job statements, glued in random orders.
const WORDS: &[&str] = &[
    "INSERT",
    "INTO",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "TABLE",
    "(",
    ")",
    ",",
    "TUMBLE",
    "HOP",
    "SESSION",
    "TUMBLE_START",
    "HOP_END",
    "DESCRIPTOR",
    "PROCTIME()",
    "_timestamp",
    "INTERVAL",
    "'30'",
    "'0'",
    "'-1'",
    "'1.5 seconds'",
    "SECOND",
    "MINUTE",
    "DAY",
    "COUNT",
    "SUM",
    "*",
    "DISTINCT",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "=",
    "<>",
    "a",
    "ts",
    "\"q x\"",
    "window_start",
    "window_end",
    "1",
    "-2.5",
    "TRUE",
    "=>",
    ";",
    "HAVING",
    "JOIN",
];

proptest! {
    #[test]
    fn arbitrary_text(text in any::<String>()) {
        let _ = parse_job(&text);
    }

    #[test]
    fn glued_words(words in prop::collection::vec(prop::sample::select(WORDS), 0..40)) {
        let _ = parse_job(&words.join(" "));
    }

    #[test]
    fn mutated_seed(
        cut in 0usize..400,
        removed in 0usize..30,
        inserted in "[ -~]{0,12}",
        nest in 0usize..200,
    ) {
        let chars: Vec<char> = SEED.chars().collect();
        let cut = cut.min(chars.len());
        let end = (cut + removed).min(chars.len());
        let mut sql: String = chars[..cut].iter().collect();
        sql.push_str(&inserted);
        sql.push_str(&"(".repeat(nest));
        sql.extend(&chars[end..]);
        let _ = parse_job(&sql);
    }
}

/// Operator chains are built without sqlparser's recursion limit; a long one
/// is refused before it is parsed, one just under the limit is planned.
#[test]
fn long_operator_chains() {
    let job = |condition: String| {
        format!(
            "INSERT INTO o SELECT COUNT(*) FROM i WHERE {condition} GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)"
        )
    };
    for n in [10_000, 100_000] {
        let error = parse_job(&job(vec!["a = 1"; n].join(" AND "))).unwrap_err();
        assert!(
            error.to_string().starts_with("unsupported in statement:"),
            "{error}"
        );
        let error = parse_job(&job(format!("{} > 1", vec!["a"; n].join(" + ")))).unwrap_err();
        assert!(
            error.to_string().starts_with("unsupported in statement:"),
            "{error}"
        );
    }
    // 4 tokens per link (a, =, 1, AND/OR) and about 30 for the rest
    let plan = parse_job(&job(vec!["a = 1"; 1000].join(" OR "))).unwrap();
    assert!(plan.filter.is_some());
    // the deepest chain the token limit lets through (a + a + … : 2 per level)
    let error = parse_job(&job(format!("{} > 1", vec!["a"; 2030].join(" + ")))).unwrap_err();
    assert!(
        error.to_string().starts_with("unsupported in WHERE:"),
        "{error}"
    );
}
