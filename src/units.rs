//! nginx's units: sizes (`16k`, `1m`) and times (`500ms`, `1m30s`), as
//! configuration files write them and as `set $limit_rate` may at run
//! time. Below both the configuration and the variables, which read them.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::time::Duration;

/// Parses an nginx size: `1024`, `16k`, `1m`, `1g` (case-insensitive).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, ' '),
    };
    let multiplier = match unit {
        ' ' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Parses an nginx time for a directive nginx counts in milliseconds (the
/// timeouts): `60`, `60s`, `500ms`, `1m30s`, `2h`, `1w`; not `y` or `M`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_time(text, false)
}

/// Parses an nginx time for a directive nginx counts in seconds
/// (`expires`, `fail_timeout`, `ssl_session_timeout`, `valid=`): `1y`
/// (365 days), `1M` (30 days), `30d`, `1h30m`, …; not `ms`.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    parse_time(text, true)
}

/// nginx's `ngx_parse_time`: numbers each followed by a unit, the units in
/// descending order and each at most once, spaces allowed between parts;
/// a number without a unit counts seconds.
fn parse_time(text: &str, in_seconds: bool) -> Option<Duration> {
    const SECOND: u64 = 1000;
    // Units from the largest, in milliseconds; `ms` last.
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400 * SECOND),
        ("M", 30 * 86_400 * SECOND),
        ("w", 7 * 86_400 * SECOND),
        ("d", 86_400 * SECOND),
        ("h", 3_600 * SECOND),
        ("m", 60 * SECOND),
        ("s", SECOND),
        ("ms", 1),
    ];
    let mut rest = text.as_bytes();
    let mut total: u64 = 0;
    // nginx starts a milliseconds directive at months, which refuses
    // `y` and `M` alike.
    let mut next_unit = if in_seconds { 0 } else { 2 };
    let mut any_digit = false;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        any_digit |= digits > 0;
        let value: u64 = match digits {
            0 => 0,
            _ => std::str::from_utf8(rest.get(..digits)?)
                .ok()?
                .parse()
                .ok()?,
        };
        rest = rest.get(digits..)?;
        let unit_len = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        let scale = if unit.is_empty() {
            // A bare number: seconds, and nothing after it but spaces.
            if rest.iter().any(|&b| b != b' ') {
                return None;
            }
            next_unit = UNITS.len();
            SECOND
        } else {
            let at = UNITS.iter().position(|(name, _)| name.as_bytes() == unit)?;
            if at < next_unit || (in_seconds && unit == b"ms") {
                return None;
            }
            next_unit = at + 1;
            UNITS.get(at)?.1
        };
        total = total.checked_add(value.checked_mul(scale)?)?;
        rest = rest.trim_ascii_start();
    }
    // nginx's total is a signed number.
    if !any_digit || total > i64::MAX as u64 {
        return None;
    }
    let total = Duration::from_millis(total);
    // A seconds directive keeps whole seconds.
    Some(if in_seconds {
        Duration::from_secs(total.as_secs())
    } else {
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_nginx() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("75s"), Some(Duration::from_secs(75)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1w"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30"), Some(Duration::from_secs(3630)));
        assert_eq!(parse_duration("1s500ms"), Some(Duration::from_millis(1500)));
        for bad in [
            "",
            "s",
            "1x",
            "-1s",
            "1.5s",
            "99999999999999999d",
            "30s1m",
            "1m1m",
            "1y",
            "1M",
            "1h30 5",
            "ms",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_like_nginx() {
        assert_eq!(parse_seconds("1y"), Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(
            parse_seconds("1y2M"),
            Some(Duration::from_secs(425 * 86_400))
        );
        assert_eq!(parse_seconds("1440m"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_seconds("0"), Some(Duration::ZERO));
        for bad in ["500ms", "2M1y", "", "y"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_like_nginx() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16k"), Some(16384));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "k", "1x", "-1", "1.5m", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
