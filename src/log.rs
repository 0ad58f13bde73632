//! The two logs, as in nginx: the error log (`log` macros through
//! env_logger, on stderr, filtered by `RUST_LOG`) and the access log (one
//! line per request, on stdout, written by [`AccessLog`]).
//!
//! Access log lines are formatted into a reused buffer and written once per
//! event-loop turn, so logging costs no allocation and at most one `write`
//! per turn, however many requests the turn finished.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogTarget, ErrorLogConfig};

/// Starts the error log: `error_log`'s file and level when configured,
/// else stderr at `warn`. `RUST_LOG`, when set, overrides the level.
pub fn init_error_log(configured: Option<&ErrorLogConfig>) -> io::Result<()> {
    let default_filter = configured.map_or("warn", |c| c.filter.as_str());
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    builder.format_target(false);
    if let Some(path) = configured.and_then(|c| c.path.as_ref()) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.init();
    Ok(())
}

/// One finished request, as the access log needs it.
pub struct AccessEntry<'a> {
    pub client: SocketAddr,
    /// `GET /path HTTP/1.1`, as received.
    pub request_line: &'a [u8],
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    pub upstream: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub request_time: Duration,
    pub upstream_connect_time: Option<Duration>,
    pub upstream_header_time: Option<Duration>,
    pub upstream_response_time: Option<Duration>,
}

pub struct AccessLog {
    /// Each target in use, with its file (`None`: stdout) and the lines of
    /// this loop turn.
    sinks: Vec<Sink>,
    clock: LogClock,
}

struct Sink {
    target: AccessLogTarget,
    file: Option<std::fs::File>,
    pending: Vec<u8>,
}

impl AccessLog {
    /// Opens every target's file (appending, as nginx does).
    pub fn open(targets: &[AccessLogTarget]) -> io::Result<AccessLog> {
        let mut sinks = Vec::new();
        for target in targets {
            let file = match target {
                AccessLogTarget::File(path) => Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
                AccessLogTarget::Stdout => None,
                AccessLogTarget::Off => continue,
            };
            sinks.push(Sink {
                target: target.clone(),
                file,
                pending: Vec::with_capacity(16 * 1024),
            });
        }
        Ok(AccessLog {
            sinks,
            clock: LogClock::default(),
        })
    }

    /// Whether any location logs at all.
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// nginx's `combined` format, then the upstream's address, status and
    /// timings (`rt`, `uct`, `uht`, `urt` as in nginx's `$request_time`,
    /// `$upstream_connect_time`, `$upstream_header_time`,
    /// `$upstream_response_time`), to `target`'s sink.
    pub fn record(&mut self, target: &AccessLogTarget, entry: &AccessEntry<'_>, now: SystemTime) {
        let Some(sink) = self.sinks.iter_mut().find(|sink| sink.target == *target) else {
            return;
        };
        let time = self.clock.local_time(now);
        let out = &mut sink.pending;
        let _ = write!(out, "{} - - [", entry.client.ip());
        out.extend_from_slice(time);
        out.extend_from_slice(b"] \"");
        escape_into(out, entry.request_line);
        let _ = write!(out, "\" {} {} \"", entry.status, entry.body_bytes_sent);
        escape_into(out, entry.referer);
        out.extend_from_slice(b"\" \"");
        escape_into(out, entry.user_agent);
        out.extend_from_slice(b"\" upstream=");
        match entry.upstream {
            Some(addr) => {
                let _ = write!(out, "{addr}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" upstream_status=");
        match entry.upstream_status {
            Some(status) => {
                let _ = write!(out, "{status}");
            }
            None => out.push(b'-'),
        }
        let _ = writeln!(
            out,
            " rt={} uct={} uht={} urt={}",
            Seconds(Some(entry.request_time)),
            Seconds(entry.upstream_connect_time),
            Seconds(entry.upstream_header_time),
            Seconds(entry.upstream_response_time)
        );
    }

    /// Writes out the lines of this loop turn.
    pub fn flush(&mut self) {
        for sink in &mut self.sinks {
            if sink.pending.is_empty() {
                continue;
            }
            let result = match &mut sink.file {
                Some(file) => file.write_all(&sink.pending),
                None => {
                    let mut stdout = io::stdout().lock();
                    stdout
                        .write_all(&sink.pending)
                        .and_then(|()| stdout.flush())
                }
            };
            if let Err(e) = result {
                log::error!("cannot write the access log: {e}");
            }
            sink.pending.clear();
        }
    }
}

/// `-` for empty fields, and `\xHH` for quotes, backslashes and bytes
/// outside printable ASCII, as nginx escapes variables in logs.
fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    for &byte in value {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\x{byte:02X}");
            }
            _ => out.push(byte),
        }
    }
}

/// Seconds with millisecond resolution, nginx style: `0.004`, or `-`.
struct Seconds(Option<Duration>);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{}.{:03}", d.as_secs(), d.subsec_millis()),
            None => f.write_str("-"),
        }
    }
}

/// Formats `$time_local` at most once per second. Ferry has no time-zone
/// database, so times are UTC (`+0000`); see docs/nginx-differences.md.
#[derive(Default)]
struct LogClock {
    second: u64,
    text: [u8; 26],
}

impl LogClock {
    fn local_time(&mut self, now: SystemTime) -> &[u8] {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second || self.text[0] == 0 {
            self.second = second;
            let mut cursor = io::Cursor::new(&mut self.text[..]);
            let _ = write!(cursor, "{}", LocalTime(second));
        }
        &self.text
    }
}

/// `28/Nov/2026:14:25:50 +0000` for a Unix time in seconds.
pub struct LocalTime(pub u64);

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        let month_name = MONTHS.get(month as usize - 1).copied().unwrap_or("???");
        write!(
            f,
            "{day:02}/{month_name}/{year:04}:{:02}:{:02}:{:02} +0000",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31); Howard Hinnant's
/// algorithm, exact for the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_format() {
        assert_eq!(LocalTime(0).to_string(), "01/Jan/1970:00:00:00 +0000");
        // 2026-11-28 14:25:50 UTC
        assert_eq!(
            LocalTime(1_795_875_950).to_string(),
            "28/Nov/2026:14:25:50 +0000"
        );
        // A leap day.
        assert_eq!(
            LocalTime(951_782_400).to_string(),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    #[test]
    fn combined_line() {
        let mut log = AccessLog::open(&[AccessLogTarget::Stdout]).unwrap();
        let entry = AccessEntry {
            client: "127.0.0.1:5000".parse().unwrap(),
            request_line: b"GET /a\"b HTTP/1.1",
            status: 200,
            body_bytes_sent: 12,
            referer: b"",
            user_agent: b"curl/8",
            upstream: Some("127.0.0.1:3000".parse().unwrap()),
            upstream_status: Some(200),
            request_time: Duration::from_millis(4),
            upstream_connect_time: None,
            upstream_header_time: Some(Duration::from_millis(3)),
            upstream_response_time: Some(Duration::from_millis(4)),
        };
        log.record(
            &AccessLogTarget::Stdout,
            &entry,
            UNIX_EPOCH + Duration::from_secs(1_795_875_950),
        );
        assert_eq!(
            String::from_utf8(log.sinks[0].pending.clone()).unwrap(),
            "127.0.0.1 - - [28/Nov/2026:14:25:50 +0000] \"GET /a\\x22b HTTP/1.1\" 200 12 \"-\" \"curl/8\" \
             upstream=127.0.0.1:3000 upstream_status=200 rt=0.004 uct=- uht=0.003 urt=0.004\n"
        );
    }
}
