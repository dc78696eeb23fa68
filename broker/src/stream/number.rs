//! The order of JSON numbers by their exact values, shared by `WHERE`,
//! `MIN` / `MAX` and window Top-N. Integers compare as integers, whatever
//! their size (as floats, 99999999999999999 and 100000000000000000 are
//! one number, and `MIN` came out above `MAX`, found from outside); an
//! integer and a float compare exactly too.

use std::cmp::Ordering;

use serde_json::Number;

/// The exact order of the values of `x` and `y` (`-0.0`, `0` and `0.0`
/// are equal here; callers that need a total order break ties by text).
pub fn cmp(x: &Number, y: &Number) -> Ordering {
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(a), None) => int_to_float(a, y.as_f64().unwrap_or(0.0)),
        (None, Some(b)) => int_to_float(b, x.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => {
            let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            // JSON has no NaN.
            f.partial_cmp(&g).unwrap_or(Ordering::Equal)
        }
    }
}

/// `x` and `y` by value, then, equal in value but written differently
/// (`1` and `1.0`, `0` and `-0.0`), by their JSON text: a total order, so
/// that which of two values a window keeps never depends on their order.
pub fn total(x: &Number, y: &Number) -> Ordering {
    cmp(x, y).then_with(|| x.to_string().cmp(&y.to_string()))
}

fn int(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Integer `a` against finite float `f`, exactly.
fn int_to_float(a: i128, f: f64) -> Ordering {
    // Whole floats within i128's range convert exactly.
    if f.fract() == 0.0 && f.abs() < 1e38 {
        return a.cmp(&(f as i128));
    }
    // A fraction is below 2^53 in size: where `a` is too, `a as f64` is
    // exact; where it is not, their sizes already order them.
    (a as f64).partial_cmp(&f).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn integers_past_two_to_the_53_compare_exactly() {
        assert_eq!(
            cmp(&n("99999999999999999"), &n("100000000000000000")),
            Ordering::Less
        );
        assert_eq!(
            cmp(&n("9007199254740993"), &n("9007199254740992")),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&n("18446744073709551615"), &n("9223372036854775807")),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&n("-9223372036854775808"), &n("18446744073709551615")),
            Ordering::Less
        );
        // An integer against a float.
        assert_eq!(
            cmp(&n("9007199254740993"), &n("9007199254740992.0")),
            Ordering::Greater
        );
        assert_eq!(cmp(&n("3"), &n("2.5")), Ordering::Greater);
        assert_eq!(cmp(&n("-3"), &n("-2.5")), Ordering::Less);
        assert_eq!(cmp(&n("2"), &n("2.0")), Ordering::Equal);
        assert_eq!(cmp(&n("18446744073709551615"), &n("1e300")), Ordering::Less);
        assert_eq!(cmp(&n("0"), &n("-0.0")), Ordering::Equal);
    }

    /// Equal values written differently are ordered by text, the same way
    /// whichever comes first (`-0.0`, `0`, `0.0` were not: which a window
    /// kept depended on their order).
    #[test]
    fn the_total_order_is_transitive_on_equal_values() {
        let vals = ["0.0", "-0.0", "0", "1", "1.0", "1e0", "-1"];
        for a in vals {
            for b in vals {
                for c in vals {
                    let (a, b, c) = (n(a), n(b), n(c));
                    if total(&a, &b).is_le() && total(&b, &c).is_le() {
                        assert!(total(&a, &c).is_le(), "{a} {b} {c}");
                    }
                    assert_eq!(total(&a, &b), total(&b, &a).reverse(), "{a} {b}");
                }
            }
        }
        assert_eq!(total(&n("-0.0"), &n("0.0")), Ordering::Less);
    }
}
