//! RFC 3339 timestamps parsed by hand (no date-time dependency).

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let err = || format!("invalid RFC 3339 datetime {s:?} (expected e.g. 2024-05-01T12:00:00Z)");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = s.get(r).ok_or_else(err)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        part.parse::<i64>().map_err(|_| err())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // A leap second (60) ends a minute 59 only.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || (second == 60 && minute != 59)
    {
        return Err(err());
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        let mut ms_digits: String = frac[..digits].chars().take(3).collect();
        while ms_digits.len() < 3 {
            ms_digits.push('0');
        }
        millis = ms_digits.parse().map_err(|_| err())?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        // Byte by byte: the text may hold any character (found from
        // outside: `+0é:0` panicked on a slice inside the `é`).
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[3] == b':' =>
        {
            let h = num_in(tz, 1..3).filter(|h| *h <= 23).ok_or_else(err)?;
            let m = num_in(tz, 4..6).filter(|m| *m <= 59).ok_or_else(err)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(err()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(secs * 1000 + millis)
}

fn num_in(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let p = s.get(r)?;
    if p.bytes().all(|c| c.is_ascii_digit()) {
        p.parse().ok()
    } else {
        None
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T03:04:05Z").unwrap(),
            1_704_164_645_000
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T03:04:05.123Z").unwrap(),
            1_704_164_645_123
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T03:04:05.1Z").unwrap(),
            1_704_164_645_100
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T05:04:05+02:00").unwrap(),
            1_704_164_645_000
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z").unwrap(),
            951_782_400_000
        );
        // A leap second: the same instant as the next minute's start.
        assert_eq!(
            parse_rfc3339_ms("2016-12-31T23:59:60Z").unwrap(),
            parse_rfc3339_ms("2017-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T03:04:05-23:59").unwrap(),
            1_704_164_645_000 + (23 * 3600 + 59 * 60) * 1000
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2024-01-02",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "abcd-01-02T03:04:05Z",
            "2023-01-01T00:00:00+0é:0",
            "2023-01-01T00:00:00+é0:00",
            "2023-01-01T00:00:00+24:00",
            "2023-01-01T00:00:00-00:60",
            "2023-01-01T00:00:60Z",
            "2023-01-01T00:00:00é",
            "2023-01-01T00:0é:00Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }
}
