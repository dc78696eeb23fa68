//! The fast path of reading a job's fields out of a record's JSON value:
//! one pass over the bytes of a top-level object, skipping the fields the
//! statement does not read and handing only the spans of those it reads to
//! `serde_json`. It decides only what it reads plainly; on anything else —
//! an escape in a string, deep nesting, input that is not well-formed JSON —
//! it answers `None` and the caller reads the value through `serde_json`
//! alone, which then also words the error. So it never accepts what
//! `serde_json` refuses, and picks the same values (a property test holds it
//! to that).

use serde_json::Value;

/// Nesting this deep is left to `serde_json` (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// The values of the top-level fields `names` of the JSON object `value`
/// into `out` (one slot per name, left as they are when absent; the last of
/// duplicate fields wins), or `None` when the fast path cannot decide.
pub(super) fn pick(value: &[u8], names: &[String], out: &mut [Value]) -> Option<()> {
    let mut s = Scanner { b: value, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            // Scalars, most fields' values, skipped without a call; an
            // integer read as it is skipped.
            let mut int = None;
            match s.peek()? {
                b'"' => s.string().map(|_| ())?,
                b'-' | b'0'..=b'9' => int = s.number_int()?,
                _ => s.value(1)?,
            }
            if let Some(k) = names.iter().position(|n| n.as_bytes() == key) {
                out[k] = match int {
                    Some(n) => Value::from(n),
                    None => {
                        let span = &value[start..s.i];
                        match plain(span) {
                            Some(v) => v,
                            None => serde_json::from_slice(span).ok()?,
                        }
                    }
                };
            }
            s.ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == value.len()).then_some(())
}

/// The value of a span the scanner accepted, when it is one that needs no
/// parser: a string (the scanner saw no escape in it), an integer of at
/// most 18 digits, a decimal of at most 15 digits, or a literal. `None`
/// leaves the span to `serde_json` (longer numbers and exponents, whose
/// rounding is serde_json's to decide; arrays and objects). `-0` is a
/// float, as serde_json reads it.
#[inline]
fn plain(span: &[u8]) -> Option<Value> {
    match span {
        [b'"', inner @ .., b'"'] => std::str::from_utf8(inner)
            .ok()
            .map(|t| Value::String(t.to_owned())),
        b"true" => Some(Value::Bool(true)),
        b"false" => Some(Value::Bool(false)),
        b"null" => Some(Value::Null),
        [b'-', number @ ..] if number != b"0" => integer(number)
            .map(|n| Value::from(-n))
            .or_else(|| decimal(number).map(|f| Value::from(-f))),
        digits => integer(digits)
            .map(Value::from)
            .or_else(|| decimal(digits).map(Value::from)),
    }
}

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `d` = `int.frac` with at most 15 digits in all (no exponent), as
/// serde_json reads it: the digits as an integer (exact, below 2^53)
/// divided by the power of ten of the fraction's length (exact), one
/// correctly rounded division.
#[inline]
fn decimal(d: &[u8]) -> Option<f64> {
    let dot = d.iter().position(|&c| c == b'.')?;
    let (int, frac) = (&d[..dot], &d[dot + 1..]);
    if int.is_empty() || frac.is_empty() || int.len() + frac.len() > 15 {
        return None;
    }
    let digits = int.iter().chain(frac);
    let mut n: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n as f64 / POW10[frac.len()])
}

/// The digits `d` (1 to 18 of them, so they fit an `i64`) as a number.
#[inline]
fn integer(d: &[u8]) -> Option<i64> {
    if d.is_empty() || d.len() > 18 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
}

/// The bytes of `w` (little-endian) that end a plain string's scan — `"`,
/// `\\` or a control character below 0x20 — each marked by its high bit.
/// Marks past the first such byte may be false (a borrow carried through
/// a zero byte); the first is exact, which is all the scan reads.
#[inline]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// A position in the bytes being read.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips JSON whitespace (as `serde_json` defines it).
    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters: its bytes between
    /// the quotes.
    #[inline]
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        // Eight bytes at a time up to the first that is a quote, a
        // backslash or a control character; then byte by byte.
        while let Some(word) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            let stop = special(w);
            if stop != 0 {
                self.i += (stop.trailing_zeros() / 8) as usize;
                break;
            }
            self.i += 8;
        }
        loop {
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// Skips one value at nesting `depth`.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    #[inline]
    fn number(&mut self) -> Option<()> {
        self.number_int().map(|_| ())
    }

    /// [`Self::number`], and its value when it is an integer of at most 18
    /// digits (as [`integer`] reads it; `-0` is a float, as `serde_json`
    /// reads it, so not one).
    #[inline]
    fn number_int(&mut self) -> Option<Option<i64>> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let first = self.i;
        let mut n: i64 = 0;
        match self.next()? {
            b'0' if self.peek().is_some_and(|c| c.is_ascii_digit()) => return None,
            b'0' => {}
            c @ b'1'..=b'9' => {
                n = i64::from(c - b'0');
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    n = n.wrapping_mul(10).wrapping_add(i64::from(c - b'0'));
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let digits = self.i - first;
        let mut plain = digits <= 18 && !(negative && n == 0);
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
            plain = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
            plain = false;
        }
        Some(plain.then(|| if negative { -n } else { n }))
    }

    #[inline]
    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    #[inline]
    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::pick;
    use crate::stream::row::pick_with_serde;

    /// JSON-like text: mostly well-formed, with the near misses a fast
    /// scanner gets wrong (leading zeros, bare signs, bad escapes, control
    /// characters, trailing commas).
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
            "\"[a-z é\\\\\"/\t\u{1}]{0,6}\"",
            "\"\\\\u[0-9a-fA-F]{4}\"",
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            prop_oneof![
                Just("01"),
                Just("-"),
                Just("1."),
                Just("1e"),
                Just("tru"),
                Just("nul"),
                Just("1e400"),
                Just("\"\\x\""),
                Just("[1,]"),
                Just("{\"a\":1,}"),
            ]
            .prop_map(str::to_string),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec((inner.clone(), ws()), 0..4).prop_map(|vs| {
                    let items: Vec<String> =
                        vs.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                    format!("[{}]", items.join(","))
                }),
                members(inner),
            ]
        })
    }

    fn ws() -> impl Strategy<Value = String> {
        "[ \n\t\r]{0,2}"
    }

    /// An object over a few keys (the picked ones among them, repeated at
    /// times), some with escapes.
    fn members(v: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("a"),
            Just("b"),
            Just("ts"),
            Just("other"),
            Just("\\u0061"),
            Just("t\\u0073"),
            Just(""),
        ];
        prop::collection::vec((key, v, ws()), 0..5).prop_map(|ms| {
            let items: Vec<String> = ms
                .into_iter()
                .map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                .collect();
            format!("{{{}}}", items.join(","))
        })
    }

    /// The text, sometimes with one byte inserted, removed or replaced.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![3 => members(value()), 1 => value()],
            ws(),
            0..4u8,
            any::<prop::sample::Index>(),
            any::<u8>(),
        )
            .prop_map(|(t, w, edit, at, byte)| {
                let mut b = format!("{w}{t}{w}").into_bytes();
                let i = at.index(b.len() + 1);
                match edit {
                    1 => b.insert(i, byte),
                    2 if i < b.len() => {
                        b.remove(i);
                    }
                    3 if i < b.len() => b[i] = byte,
                    _ => {}
                }
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the fast path decides, `serde_json` decides the same:
        /// it accepts and picks the same values. And on plain input (no
        /// escape, no control character) that `serde_json` reads, the fast
        /// path decides by itself.
        #[test]
        fn the_fast_path_agrees_with_serde_json(b in text()) {
            let names: Vec<String> = ["a", "ts", "missing"].map(String::from).to_vec();
            let mut fast = vec![Value::Null; names.len()];
            let decided = pick(&b, &names, &mut fast);
            let mut slow = Vec::new();
            let reference = pick_with_serde(&b, &names, &mut slow);
            if decided.is_some() {
                prop_assert!(reference.is_ok(), "fast accepted what serde refuses: {:?} ({reference:?})", String::from_utf8_lossy(&b));
                prop_assert_eq!(&fast, &slow, "{:?}", String::from_utf8_lossy(&b));
            }
            // Plain: no escape, and no control character inside a string
            // (serde_json takes one in a key; the fast path leaves it).
            let mut in_string = false;
            let plain = b.iter().all(|&c| {
                in_string ^= c == b'"';
                c != b'\\' && !(in_string && c < 0x20)
            });
            if plain && reference.is_ok() {
                prop_assert!(decided.is_some(), "fast path gave up on {:?}", String::from_utf8_lossy(&b));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Numbers read without serde_json are the numbers serde_json reads
        /// (same type, same bits).
        #[test]
        fn numbers_read_plainly_are_serde_jsons(
            n in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,16})?",
        ) {
            let want: Value = serde_json::from_str(&n).expect("a JSON number");
            if let Some(got) = super::plain(n.as_bytes()) {
                prop_assert_eq!(&got, &want, "{}", n);
                prop_assert_eq!(
                    got.as_f64().map(f64::to_bits),
                    want.as_f64().map(f64::to_bits),
                    "{}", n
                );
            }
        }
    }

    /// The events of the benchmarks and the Nexmark tests go through the
    /// fast path.
    #[test]
    fn plain_events_are_read_by_the_fast_path() {
        let names: Vec<String> = ["ts", "transactionSum", "customerId"]
            .map(String::from)
            .to_vec();
        let mut out = vec![Value::Null; 3];
        let ev =
            br#"{"customerId": 453, "transactionSum": 9.3, "vendorId": "v6", "ts": 1699999997323}"#;
        assert!(pick(ev, &names, &mut out).is_some());
        assert_eq!(
            out,
            [
                Value::from(1699999997323i64),
                Value::from(9.3),
                Value::from(453)
            ]
        );
        // An escape is left to serde_json.
        assert!(pick(br#"{"t\u0073": 1}"#, &names, &mut out).is_none());
    }

    /// The values read without serde_json are serde_json's: strings,
    /// integers up to and past 18 digits, literals, and `-0` (a float to
    /// serde_json).
    #[test]
    fn plain_values_are_serde_jsons() {
        let names: Vec<String> = vec!["a".into()];
        for v in [
            "\"x é\"",
            "\"\"",
            "0",
            "-0",
            "-0.0",
            "7",
            "-7",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "-9223372036854775808",
            "18446744073709551616",
            "1.5e3",
            "12.5",
            "-12.5",
            "0.1",
            "9.3",
            "0.000000000000001",
            "123456789.012345",
            "1234567890.123456",
            "9007199254740.993",
            "true",
            "false",
            "null",
        ] {
            let doc = format!(r#"{{"a": {v}}}"#);
            let mut fast = vec![Value::Null];
            assert!(pick(doc.as_bytes(), &names, &mut fast).is_some(), "{v}");
            let mut slow = Vec::new();
            pick_with_serde(doc.as_bytes(), &names, &mut slow).expect("valid JSON");
            assert_eq!(fast, slow, "{v}");
            assert_eq!(
                fast[0].as_f64().map(f64::is_sign_negative),
                slow[0].as_f64().map(f64::is_sign_negative),
                "{v}"
            );
        }
    }
}
