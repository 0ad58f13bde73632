//! Conditional and range requests for files (RFC 9110 §13 and §14), as
//! pure functions of the file's validators and the request's fields.
//!
//! A file's validators are its modification time and size: the `ETag` is
//! nginx's `"<mtime hex>-<size hex>"`, so a client that moves between nginx
//! and ferry serving the same files keeps its cached copies. The order of
//! evaluation is RFC 9110 §13.2.2's: `If-Match`, else `If-Unmodified-Since`
//! (412 when they fail), then `If-None-Match`, else `If-Modified-Since`
//! (304), then `Range` (206 or 416), guarded by `If-Range`.
//!
//! In the course (docs/learn): chapter 7, "The order": static files, beside
//! proxying.

use std::io::Write;

/// What the request's fields ask of a file, borrowed from its head.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
}

impl<'a> Conditions<'a> {
    /// Picks the fields out of a request head (the first of each).
    pub fn from_headers(headers: &[httparse::Header<'a>]) -> Conditions<'a> {
        let mut conditions = Conditions::default();
        for header in headers {
            let slot = match header.name.len() {
                5 if header.name.eq_ignore_ascii_case("range") => &mut conditions.range,
                8 if header.name.eq_ignore_ascii_case("if-match") => &mut conditions.if_match,
                8 if header.name.eq_ignore_ascii_case("if-range") => &mut conditions.if_range,
                13 if header.name.eq_ignore_ascii_case("if-none-match") => {
                    &mut conditions.if_none_match
                }
                17 if header.name.eq_ignore_ascii_case("if-modified-since") => {
                    &mut conditions.if_modified_since
                }
                19 if header.name.eq_ignore_ascii_case("if-unmodified-since") => {
                    &mut conditions.if_unmodified_since
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(header.value);
            }
        }
        conditions
    }
}

/// `if_modified_since`: how a date in `If-Modified-Since` is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModifiedSince {
    /// The field is ignored.
    Off,
    /// 304 only for the file's exact modification time (nginx's default:
    /// a restored older file is sent again).
    #[default]
    Exact,
    /// 304 for any time at or after the modification time (RFC 9110).
    Before,
}

/// The file's validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Seconds since the epoch.
    pub modified: i64,
    pub size: u64,
    /// `etag on`: an `ETag` is sent and compared.
    pub etag: bool,
}

/// A strong entity tag as nginx makes it, quotes included.
pub struct ETag {
    text: [u8; 36],
    len: usize,
}

impl ETag {
    pub fn as_bytes(&self) -> &[u8] {
        self.text.get(..self.len).unwrap_or_default()
    }
}

impl Validators {
    pub fn etag(&self) -> ETag {
        let mut text = [0u8; 36];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        // Infallible: 36 bytes hold two 16-digit numbers, a dash and quotes.
        let _ = write!(cursor, "\"{:x}-{:x}\"", self.modified, self.size);
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        ETag { text, len }
    }
}

/// What to send for a file, given the request's conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The whole file, 200.
    Whole,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: a precondition failed.
    PreconditionFailed,
    /// 206 with the bytes `start..start + len`.
    Partial { start: u64, len: u64 },
    /// 416: no range can be satisfied.
    RangeNotSatisfiable,
}

/// Decides what a GET or HEAD for a file gets.
pub fn decide(
    conditions: &Conditions<'_>,
    file: &Validators,
    modified_since: ModifiedSince,
    max_ranges: Option<u32>,
) -> Decision {
    let etag = file.etag();
    let etag = file.etag.then(|| etag.as_bytes());
    // §13.2.2 step 1 and 2: If-Match, else If-Unmodified-Since.
    match (conditions.if_match, conditions.if_unmodified_since) {
        (Some(list), _) => {
            if !matches_list(list, etag, true) {
                return Decision::PreconditionFailed;
            }
        }
        (None, Some(date)) => {
            if let Some(since) = parse_http_date(date) {
                if file.modified > since {
                    return Decision::PreconditionFailed;
                }
            }
        }
        (None, None) => {}
    }
    // Step 3 and 4: If-None-Match, else If-Modified-Since.
    match (conditions.if_none_match, conditions.if_modified_since) {
        (Some(list), _) => {
            if matches_list(list, etag, false) {
                return Decision::NotModified;
            }
        }
        (None, Some(date)) => {
            let since = parse_http_date(date);
            let not_modified = match (modified_since, since) {
                (ModifiedSince::Off, _) | (_, None) => false,
                (ModifiedSince::Exact, Some(since)) => since == file.modified,
                (ModifiedSince::Before, Some(since)) => since >= file.modified,
            };
            if not_modified {
                return Decision::NotModified;
            }
        }
        (None, None) => {}
    }
    // Step 5: Range, if If-Range (when sent) still holds.
    let Some(range) = conditions.range else {
        return Decision::Whole;
    };
    if let Some(if_range) = conditions.if_range {
        let holds = if if_range.ends_with(b"\"") {
            // Strong comparison: a weak tag never matches.
            etag.is_some_and(|etag| etag == if_range)
        } else {
            parse_http_date(if_range) == Some(file.modified)
        };
        if !holds {
            return Decision::Whole;
        }
    }
    byte_range(range, file.size, max_ranges)
}

/// Whether an `If-Match` / `If-None-Match` list names `etag` (`*` names
/// any file). `strong` for If-Match: weak tags never match.
fn matches_list(list: &[u8], etag: Option<&[u8]>, strong: bool) -> bool {
    let list = trim(list);
    if list == b"*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    list.split(|&b| b == b',').map(trim).any(|tag| {
        let (weak, tag) = match tag.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        !(strong && weak) && tag == etag
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => bytes.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

/// `Range: bytes=…` for a file of `size` bytes (RFC 9110 §14.1.2), read as
/// nginx reads it: a field that is not `bytes=` is ignored; one that does
/// not parse, or whose ranges all start past the end, is 416. One range is
/// served as 206; several are answered with the whole file, as nginx does
/// beyond `max_ranges` (ferry sends no multipart bodies).
fn byte_range(field: &[u8], size: u64, max_ranges: Option<u32>) -> Decision {
    let unit = field.get(..6).unwrap_or_default();
    if field.len() < 7 || !unit.eq_ignore_ascii_case(b"bytes=") {
        return Decision::Whole;
    }
    let mut allowed = max_ranges.unwrap_or(u32::MAX);
    let mut chosen = None;
    let mut count = 0u32;
    for spec in field[6..].split(|&b| b == b',') {
        let Some((first, last)) = split_spec(spec) else {
            return Decision::RangeNotSatisfiable;
        };
        // [start, end) in nginx's terms.
        let (start, end) = match (first, last) {
            (None, Some(suffix)) => (size.saturating_sub(suffix), size),
            (Some(start), None) => (start, size),
            (Some(start), Some(last)) => (start, last.saturating_add(1).min(size)),
            (None, None) => return Decision::RangeNotSatisfiable,
        };
        if start < end {
            count += 1;
            chosen.get_or_insert((start, end - start));
            if allowed == 0 {
                return Decision::Whole;
            }
            allowed -= 1;
        } else if start == 0 {
            // `bytes=0-` of an empty file: nothing to cut.
            return Decision::Whole;
        }
    }
    match (count, chosen) {
        (1, Some((start, len))) => Decision::Partial { start, len },
        (0, _) => Decision::RangeNotSatisfiable,
        _ => Decision::Whole,
    }
}

/// One range-spec: `first-last`, `first-` or `-suffix`, with the spaces
/// nginx allows around the numbers; `None` if it does not parse.
fn split_spec(spec: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let spec = trim_spaces(spec);
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (trim_spaces(&spec[..dash]), trim_spaces(&spec[dash + 1..]));
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some((None, Some(number(last)?))),
        (false, true) => Some((Some(number(first)?), None)),
        (false, false) => Some((Some(number(first)?), Some(number(last)?))),
    }
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |end| end + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Digits only, no sign; `None` for anything else or overflow.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An HTTP date in any of RFC 9110 §5.6.7's three forms, as seconds since
/// the epoch: `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37
/// GMT`, `Sun Nov  6 08:49:37 1994`.
pub fn parse_http_date(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(trim(text)).ok()?;
    let (_, rest) = text.split_once([',', ' '])?;
    // At most five words, without allocating: a longer field is no date.
    let mut words = [""; 6];
    let mut count = 0;
    for word in rest.split([' ', '-']).filter(|w| !w.is_empty()) {
        *words.get_mut(count)? = word;
        count += 1;
    }
    let (day, month, year, time) = match words.get(..count)? {
        // IMF-fixdate and RFC 850: day month year time GMT.
        [day, month, year, time, "GMT"] => (*day, *month, *year, *time),
        // asctime: month day time year.
        [month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        // RFC 850's two digits: within 50 years of now means 19xx or 20xx.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut clock = time.split(':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some() || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let days = crate::http::date::days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: Validators = Validators {
        modified: 784_111_777,
        size: 1000,
        etag: true,
    };
    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn decide_with(conditions: Conditions<'_>) -> Decision {
        decide(&conditions, &FILE, ModifiedSince::Exact, None)
    }

    #[test]
    fn dates_in_all_three_forms() {
        assert_eq!(parse_http_date(DATE), Some(784_111_777));
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date(b"Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        for bad in [
            &b""[..],
            b"yesterday",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 06 Nov 1994 08:49:37 PST",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn etag_is_nginx_s() {
        assert_eq!(FILE.etag().as_bytes(), b"\"2ebc98a1-3e8\"");
        let huge = Validators {
            modified: i64::MAX,
            size: u64::MAX,
            etag: true,
        };
        assert_eq!(huge.etag().as_bytes().len(), 35);
    }

    #[test]
    fn not_modified_by_tag_or_date() {
        let etag = FILE.etag();
        let tag = etag.as_bytes();
        let listed = [b"\"x\", ".as_slice(), tag].concat();
        let weak = [b"W/".as_slice(), tag].concat();
        for field in [tag, &listed[..], &weak[..], b"*"] {
            let conditions = Conditions {
                if_none_match: Some(field),
                ..Conditions::default()
            };
            assert_eq!(decide_with(conditions), Decision::NotModified);
        }
        let other = Conditions {
            if_none_match: Some(b"\"other\""),
            // Ignored when If-None-Match is present (RFC 9110 §13.1.3).
            if_modified_since: Some(DATE),
            ..Conditions::default()
        };
        assert_eq!(decide_with(other), Decision::Whole);
        let by_date = Conditions {
            if_modified_since: Some(DATE),
            ..Conditions::default()
        };
        assert_eq!(decide_with(by_date), Decision::NotModified);
        let later = Conditions {
            if_modified_since: Some(b"Mon, 07 Nov 1994 08:49:37 GMT"),
            ..Conditions::default()
        };
        assert_eq!(decide_with(later), Decision::Whole);
        assert_eq!(
            decide(&later, &FILE, ModifiedSince::Before, None),
            Decision::NotModified
        );
        assert_eq!(
            decide(&by_date, &FILE, ModifiedSince::Off, None),
            Decision::Whole
        );
    }

    #[test]
    fn preconditions_fail_with_412() {
        let weak = [b"W/".as_slice(), FILE.etag().as_bytes()].concat();
        for (if_match, unmodified) in [
            (Some(&b"\"other\""[..]), None),
            (Some(&weak[..]), None),
            (None, Some(&b"Sat, 05 Nov 1994 08:49:37 GMT"[..])),
        ] {
            let conditions = Conditions {
                if_match,
                if_unmodified_since: unmodified,
                ..Conditions::default()
            };
            assert_eq!(decide_with(conditions), Decision::PreconditionFailed);
        }
        let star = Conditions {
            if_match: Some(b"*"),
            ..Conditions::default()
        };
        assert_eq!(decide_with(star), Decision::Whole);
    }

    #[test]
    fn ranges() {
        let range = |field: &'static [u8]| {
            decide_with(Conditions {
                range: Some(field),
                ..Conditions::default()
            })
        };
        let partial = |start, len| Decision::Partial { start, len };
        assert_eq!(range(b"bytes=0-99"), partial(0, 100));
        assert_eq!(range(b"bytes=900-"), partial(900, 100));
        assert_eq!(range(b"bytes=-100"), partial(900, 100));
        assert_eq!(range(b"bytes=-5000"), partial(0, 1000));
        assert_eq!(range(b"bytes=990-5000"), partial(990, 10));
        assert_eq!(range(b"bytes=1000-"), Decision::RangeNotSatisfiable);
        assert_eq!(range(b"bytes=-0"), Decision::RangeNotSatisfiable);
        assert_eq!(range(b"Bytes= 0 - 9"), partial(0, 10));
        // One satisfiable range among unsatisfiable ones is served.
        assert_eq!(range(b"bytes=2000-3000, 5-9"), partial(5, 5));
        // Several: the whole file.
        assert_eq!(range(b"bytes=0-1,5-9"), Decision::Whole);
        // Not byte ranges: ignored.
        assert_eq!(range(b"items=0-1"), Decision::Whole);
        // Not valid: 416, as nginx answers.
        for refused in [
            &b"bytes=5-1"[..],
            b"bytes=a-b",
            b"bytes=+1-2",
            b"bytes=1",
            b"bytes=-",
            b"bytes=0-1,",
            b"bytes=99999999999999999999999-",
        ] {
            assert_eq!(range(refused), Decision::RangeNotSatisfiable, "{refused:?}");
        }
        let limited = Conditions {
            range: Some(b"bytes=0-1"),
            ..Conditions::default()
        };
        assert_eq!(
            decide(&limited, &FILE, ModifiedSince::Exact, Some(0)),
            Decision::Whole
        );
    }

    #[test]
    fn if_range_guards_the_range() {
        let etag = FILE.etag();
        let with = |if_range: &[u8]| {
            decide_with(Conditions {
                range: Some(b"bytes=0-9"),
                if_range: Some(if_range),
                ..Conditions::default()
            })
        };
        assert_eq!(
            with(etag.as_bytes()),
            Decision::Partial { start: 0, len: 10 }
        );
        assert_eq!(with(DATE), Decision::Partial { start: 0, len: 10 });
        assert_eq!(with(b"\"stale\""), Decision::Whole);
        assert_eq!(with(b"Mon, 07 Nov 1994 08:49:37 GMT"), Decision::Whole);
    }
}
