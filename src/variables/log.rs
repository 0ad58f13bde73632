//! Access-log lines: the request-time values a format needs, captured when
//! the head arrives (the request's bytes are gone by the time the line is
//! written), and the line rendered when the exchange ends, escaped as the
//! format's `escape=` says.
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

use std::io::Write;

use super::{render_variable, RequestView, Segment, Template, Variable};

/// `log_format NAME escape=default|json|none`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogEscape {
    /// `"`, `\`, control and non-ASCII bytes as `\xHH`; a missing value
    /// is `-`.
    #[default]
    Default,
    /// For JSON strings: `"` and `\` escaped, control bytes as `\n` or
    /// `\u00HH`; a missing value is empty.
    Json,
    /// As they are; a missing value is empty.
    None,
}

/// One attempt to get the response from an upstream server, for the
/// `$upstream_*` variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamAttempt {
    pub addr: crate::upstream::ServerAddr,
    /// The server's status, or what ferry made of the failure (502, or 504
    /// for a timeout), as nginx records it; `None` while none is known.
    pub status: Option<u16>,
    /// Connect, header and response times (`None`: not reached).
    pub times: [Option<std::time::Duration>; 3],
}

/// What the log-time variables read, once the response is done.
pub struct ExchangeVars<'a> {
    pub status: u16,
    pub body_bytes_sent: u64,
    pub bytes_sent: u64,
    pub request_length: u64,
    /// The rate the response was paced at (`$limit_rate`; 0: none).
    pub limit_rate: u64,
    pub request_time: std::time::Duration,
    /// `28/Nov/2026:14:25:50 +0000` and `2026-11-28T14:25:50+00:00`.
    pub time_local: &'a [u8],
    pub time_iso8601: &'a [u8],
    pub msec: std::time::Duration,
    /// Attempts on servers that failed before the last one (nginx lists
    /// every attempt: `$upstream_status` is `502, 200`).
    pub earlier_attempts: &'a [UpstreamAttempt],
    /// The last (or only) attempt, if the request went upstream.
    pub upstream: Option<UpstreamAttempt>,
    pub connection: u64,
    pub connection_requests: u32,
}

impl Template {
    /// Appends the values of the request-time variables to `out`, each as a
    /// 4-byte length and the bytes, for [`Template::render_log`] to use after
    /// the request's own bytes are gone.
    pub fn capture(&self, request: &RequestView<'_>, out: &mut Vec<u8>) {
        for segment in &self.segments {
            if let Segment::Variable(variable) = segment {
                if !variable.is_response_time() {
                    let length_at = out.len();
                    out.extend_from_slice(&[0; 4]);
                    render_variable(variable, request, out);
                    let length = u32::try_from(out.len() - length_at - 4).unwrap_or(0);
                    if let Some(slot) = out.get_mut(length_at..length_at + 4) {
                        slot.copy_from_slice(&length.to_le_bytes());
                    }
                }
            }
        }
    }

    /// How many bytes of `captured` this template's [`Template::capture`]
    /// wrote (what follows belongs to another template).
    pub fn captured_len(&self, captured: &[u8]) -> usize {
        let mut at = 0;
        for segment in &self.segments {
            if let Segment::Variable(variable) = segment {
                if !variable.is_response_time() {
                    let length = captured
                        .get(at..at + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, u32::from_le_bytes) as usize;
                    at = (at + 4 + length).min(captured.len());
                }
            }
        }
        at
    }

    /// Writes a log line: literals as they are, variables escaped as nginx
    /// escapes them (`"`, `\` and non-printable bytes as `\xHH`, an empty
    /// value as `-`). Request-time values come from `captured` (see
    /// [`Template::capture`]); a missing capture logs as `-`.
    pub fn render_log(&self, captured: &[u8], exchange: &ExchangeVars<'_>, out: &mut Vec<u8>) {
        let mut captured = captured;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Variable(variable) if !variable.is_response_time() => {
                    let value = match captured {
                        [a, b, c, d, rest @ ..] => {
                            let length = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
                            let (value, after) = rest.split_at(length.min(rest.len()));
                            captured = after;
                            value
                        }
                        _ => &[],
                    };
                    escape_log(value, self.escape, out);
                }
                Segment::Variable(variable) => {
                    // Numbers, addresses and times: nothing to escape, so
                    // they are written straight into the line.
                    let before = out.len();
                    render_exchange_variable(variable, exchange, out);
                    if out.len() == before && self.escape == LogEscape::Default {
                        out.push(b'-');
                    }
                }
            }
        }
        out.push(b'\n');
    }
}

/// Seconds with millisecond resolution, as nginx logs times.
fn seconds(out: &mut Vec<u8>, value: Option<std::time::Duration>) {
    if let Some(d) = value {
        let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
    }
}

/// An `$upstream_*` variable: one value per attempt, separated by `, `
/// as nginx writes them. Nothing (`-` in the log) if none went upstream.
fn attempts(
    out: &mut Vec<u8>,
    exchange: &ExchangeVars<'_>,
    mut value: impl FnMut(&mut Vec<u8>, &UpstreamAttempt),
) {
    let mut all = exchange
        .earlier_attempts
        .iter()
        .chain(exchange.upstream.as_ref());
    if let Some(first) = all.next() {
        value(out, first);
    }
    for attempt in all {
        out.extend_from_slice(b", ");
        value(out, attempt);
    }
}

/// Seconds with milliseconds, or `-` for a time not reached, as nginx
/// writes one value of a list.
fn seconds_or_dash(out: &mut Vec<u8>, value: Option<std::time::Duration>) {
    match value {
        Some(_) => seconds(out, value),
        None => out.push(b'-'),
    }
}

fn render_exchange_variable(variable: &Variable, exchange: &ExchangeVars<'_>, out: &mut Vec<u8>) {
    match variable {
        Variable::Status => {
            let _ = write!(out, "{}", exchange.status);
        }
        Variable::BodyBytesSent => {
            let _ = write!(out, "{}", exchange.body_bytes_sent);
        }
        Variable::BytesSent => {
            let _ = write!(out, "{}", exchange.bytes_sent);
        }
        Variable::LimitRate { .. } => {
            let _ = write!(out, "{}", exchange.limit_rate);
        }
        Variable::RequestLength => {
            let _ = write!(out, "{}", exchange.request_length);
        }
        Variable::RequestTime => seconds(out, Some(exchange.request_time)),
        Variable::TimeLocal => out.extend_from_slice(exchange.time_local),
        Variable::TimeIso8601 => out.extend_from_slice(exchange.time_iso8601),
        Variable::Msec => {
            let _ = write!(
                out,
                "{}.{:03}",
                exchange.msec.as_secs(),
                exchange.msec.subsec_millis()
            );
        }
        Variable::UpstreamAddr => attempts(out, exchange, |out, attempt| {
            let _ = write!(out, "{}", attempt.addr);
        }),
        Variable::UpstreamStatus => attempts(out, exchange, |out, attempt| match attempt.status {
            Some(status) => {
                let _ = write!(out, "{status}");
            }
            None => out.push(b'-'),
        }),
        Variable::UpstreamConnectTime => attempts(out, exchange, |out, attempt| {
            seconds_or_dash(out, attempt.times[0])
        }),
        Variable::UpstreamHeaderTime => attempts(out, exchange, |out, attempt| {
            seconds_or_dash(out, attempt.times[1])
        }),
        Variable::UpstreamResponseTime => attempts(out, exchange, |out, attempt| {
            seconds_or_dash(out, attempt.times[2])
        }),
        Variable::Connection => {
            let _ = write!(out, "{}", exchange.connection);
        }
        Variable::ConnectionRequests => {
            let _ = write!(out, "{}", exchange.connection_requests);
        }
        _ => {}
    }
}

/// A logged value, escaped as nginx's `escape=` says.
fn escape_log(value: &[u8], escape: LogEscape, out: &mut Vec<u8>) {
    match escape {
        LogEscape::Default if value.is_empty() => out.push(b'-'),
        LogEscape::Default => {
            for &byte in value {
                match byte {
                    b'"' | b'\\' | 0..=0x1f | 0x7f..=0xff => {
                        let _ = write!(out, "\\x{byte:02X}");
                    }
                    _ => out.push(byte),
                }
            }
        }
        LogEscape::Json => {
            for &byte in value {
                match byte {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    0..=0x1f => {
                        let _ = write!(out, "\\u{byte:04x}");
                    }
                    _ => out.push(byte),
                }
            }
        }
        LogEscape::None => out.extend_from_slice(value),
    }
}
