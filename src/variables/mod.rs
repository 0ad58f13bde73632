//! nginx variables (`$remote_addr`, `$http_user_agent`, …) compiled at load
//! time into a [`Template`] of literal and variable segments, so a request
//! never scans strings for `$` at run time.
//!
//! Rendering borrows everything from the request being handled
//! ([`RequestView`]) and appends to a caller's buffer: no allocation.
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;

use crate::checksum::Crc32;

mod known;
mod log;
mod map;
mod request_id;
mod value;

pub use known::Variable;
pub use log::{ExchangeVars, LogEscape, UpstreamAttempt};
pub use map::{GeoTable, MapDef};
pub use request_id::RequestId;
use value::{borrowed_value, port, render_variable};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(Variable),
}

/// Where each of `$0`…`$9` lies in the text a regex last matched.
pub type CaptureSpans = Vec<Option<(usize, usize)>>;

/// Keeps what `regex` captured in `text` for `$1`…`$9`; whether it matched.
/// A regex without groups is only tested (no allocation).
pub fn capture(
    regex: &regex_lite::Regex,
    text: &str,
    captured: &mut Vec<u8>,
    spans: &mut CaptureSpans,
) -> bool {
    if regex.captures_len() <= 1 {
        return regex.is_match(text);
    }
    let Some(found) = regex.captures(text) else {
        return false;
    };
    captured.clear();
    captured.extend_from_slice(text.as_bytes());
    spans.clear();
    spans.extend(
        found
            .iter()
            .take(10)
            .map(|group| group.map(|m| (m.start(), m.end()))),
    );
    true
}

/// A compiled value with variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// How a log line escapes values (`log_format … escape=`).
    escape: LogEscape,
}

/// Why a value could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What rendering needs from the request being handled.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// `$uri`: the path decoded and normalized (`routing::normalize_path`),
    /// or the uri an internal redirect moved to; empty: the target's path
    /// as sent.
    pub uri: &'a [u8],
    /// `$args` after an internal redirect or a rewrite gave new ones;
    /// `None`: the target's query.
    pub args: Option<&'a [u8]>,
    /// The `root` or `alias` in force, for `$document_root` and
    /// `$request_filename` (`None`: both empty).
    pub root: Option<&'a crate::files::root::DocumentRoot>,
    /// `$proxy_host`: the location's `proxy_pass` server or group, as
    /// written (empty where the location does not proxy).
    pub proxy_host: &'a str,
    /// What the rewrite-module scripts left: the values `set` gave this
    /// request's variables, and the last regex captures (`$1`…`$9`).
    pub script: ScriptValues<'a>,
    /// The request's host (an absolute-form target's authority, else the
    /// `Host` field; empty if neither), with its port.
    pub host: &'a [u8],
    pub version: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    /// The client's address: the TCP peer's, or the real one a trusted
    /// proxy named (`set_real_ip_from`).
    pub client: SocketAddr,
    /// The TCP peer's address (`$realip_remote_addr`).
    pub peer: SocketAddr,
    /// The connection's PROXY protocol header (`$proxy_protocol_addr`).
    pub proxy_protocol: Option<&'a crate::proxy_protocol::ProxyHeader>,
    pub server_name: &'a str,
    pub server_port: u16,
    /// The TLS session the request came over (`$scheme` is `https`).
    pub tls: Option<TlsFacts<'a>>,
    pub request_id: RequestId,
    /// The configuration's `map` blocks, for their variables.
    pub maps: &'a [MapDef],
}

impl RequestView<'static> {
    /// A request from 192.0.2.9 for `/p` with no fields, for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> RequestView<'static> {
        RequestView {
            method: "GET",
            target: "/p",
            uri: b"",
            args: None,
            root: None,
            proxy_host: "",
            script: ScriptValues::NONE,
            host: b"",
            version: "HTTP/1.1",
            headers: &[],
            client: SocketAddr::from(([192, 0, 2, 9], 5555)),
            peer: SocketAddr::from(([192, 0, 2, 9], 5555)),
            proxy_protocol: None,
            server_name: "s",
            server_port: 80,
            tls: None,
            request_id: RequestId::default(),
            maps: &[],
        }
    }
}

/// The values of the variables `set` defines, for one request: their
/// bytes, and where each variable's value lies in them (variable `i` of
/// `set`'s list, after the maps in a configuration's variable names).
#[derive(Clone, Copy, Debug)]
pub struct SetValues<'a> {
    pub bytes: &'a [u8],
    pub spans: &'a [(u32, u32)],
}

impl SetValues<'_> {
    pub const NONE: SetValues<'static> = SetValues {
        bytes: &[],
        spans: &[],
    };

    /// Variable `index`'s value; empty when it was not set.
    pub fn get(&self, index: usize) -> &[u8] {
        self.spans
            .get(index)
            .and_then(|&(start, end)| self.bytes.get(start as usize..end as usize))
            .unwrap_or_default()
    }
}

/// What a rewrite-module script renders with beyond the request: the
/// captures of the regex that matched last (a `location ~`, an `if`'s `~`,
/// a `rewrite`), and the values set so far.
#[derive(Clone, Copy, Debug)]
pub struct ScriptValues<'a> {
    pub haystack: &'a [u8],
    pub captures: &'a [Option<(usize, usize)>],
    pub sets: SetValues<'a>,
}

impl ScriptValues<'_> {
    pub const NONE: ScriptValues<'static> = ScriptValues {
        haystack: &[],
        captures: &[],
        sets: SetValues::NONE,
    };

    /// `$n`'s value; empty without that group.
    pub fn capture(&self, n: u8) -> &[u8] {
        self.captures
            .get(usize::from(n))
            .copied()
            .flatten()
            .and_then(|(start, end)| self.haystack.get(start..end))
            .unwrap_or_default()
    }
}

/// What the `$ssl_*` variables say about a client's TLS session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFacts<'a> {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// OpenSSL's name for the suite (`TLS_AES_128_GCM_SHA256`,
    /// `ECDHE-RSA-AES128-GCM-SHA256`), as nginx logs it.
    pub cipher: &'static str,
    /// The name the client asked for (SNI); empty if none.
    pub server_name: &'a str,
    /// The session was resumed.
    pub reused: bool,
}

impl RequestView<'_> {
    fn field(&self, name: &str) -> &[u8] {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map_or(&b""[..], |h| h.value)
    }
}

impl Template {
    /// Compiles `text`: `$name` and `${name}` are variables, the rest is
    /// literal. An unknown variable is an error, as in nginx; so is one only
    /// known after the response, outside `log_format`.
    pub fn compile(text: &str) -> Result<Template, TemplateError> {
        Template::compile_for(text, false, &[])
    }

    /// A value taken as written, `$` included (nginx's `geo` values).
    pub fn literal(text: &str) -> Template {
        let segments = match text {
            "" => Vec::new(),
            text => vec![Segment::Literal(text.to_string())],
        };
        Template {
            segments,
            escape: LogEscape::Default,
        }
    }

    /// Compiles a `log_format` string, where every variable is allowed.
    pub fn compile_log_format(
        text: &str,
        escape: LogEscape,
        maps: &[String],
    ) -> Result<Template, TemplateError> {
        let mut template = Template::compile_for(text, true, maps)?;
        template.escape = escape;
        Ok(template)
    }

    /// As [`Template::compile`], where the variables `maps` defines (by
    /// name, in order) may be used too.
    pub fn compile_with(text: &str, maps: &[String]) -> Result<Template, TemplateError> {
        Template::compile_for(text, false, maps)
    }

    fn compile_for(text: &str, for_log: bool, maps: &[String]) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or_else(|| {
                    TemplateError(format!(
                        "the closing bracket in \"{text}\" variable is missing"
                    ))
                })?;
                (&braced[..end], end + 2)
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                return Err(TemplateError(format!(
                    "invalid variable name in \"{text}\""
                )));
            }
            let variable = match (name.as_bytes(), maps.iter().position(|map| map == name)) {
                ([digit @ b'1'..=b'9'], _) => Variable::Capture(digit - b'0'),
                (b"limit_rate", set) => Variable::LimitRate { set },
                (_, Some(index)) => Variable::Map(index),
                (_, None) => Variable::from_name(name)
                    .ok_or_else(|| TemplateError(format!("unknown \"{name}\" variable")))?,
            };
            if !for_log && !variable.is_request_time() {
                return Err(TemplateError(format!(
                    "variable \"${name}\" can only be used in \"log_format\""
                )));
            }
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Variable(variable));
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template {
            segments,
            escape: LogEscape::Default,
        })
    }

    /// Appends the value for `request` to `out`.
    pub fn render(&self, request: &RequestView<'_>, out: &mut Vec<u8>) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Variable(variable) => render_variable(variable, request, out),
            }
        }
    }

    /// [`Template::render`] inside a script: `$1`…`$9` are the captures a
    /// regex found, and `set` variables have the values set so far.
    pub fn render_in_script(
        &self,
        request: &RequestView<'_>,
        script: &ScriptValues<'_>,
        out: &mut Vec<u8>,
    ) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Variable(Variable::Capture(n)) => {
                    out.extend_from_slice(script.capture(*n));
                }
                Segment::Variable(Variable::Map(index)) if *index >= request.maps.len() => {
                    out.extend_from_slice(script.sets.get(index - request.maps.len()));
                }
                Segment::Variable(Variable::LimitRate { set }) => {
                    value::set_limit_rate(*set, request.maps.len(), &script.sets, out);
                }
                Segment::Variable(variable) => render_variable(variable, request, out),
            }
        }
    }

    /// CRC32 of the value, for `hash KEY`, computed without building it.
    pub fn hash(&self, request: &RequestView<'_>) -> u32 {
        let mut crc = Crc32::new();
        let mut scratch = [0u8; 64];
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => crc.update(text.as_bytes()),
                Segment::Variable(variable) => match variable {
                    Variable::RemoteAddr
                    | Variable::RemotePort
                    | Variable::RealipRemoteAddr
                    | Variable::RealipRemotePort
                    | Variable::ServerPort => {
                        let mut cursor = std::io::Cursor::new(&mut scratch[..]);
                        let _ = match variable {
                            Variable::RemoteAddr => write!(cursor, "{}", request.client.ip()),
                            Variable::RealipRemoteAddr => write!(cursor, "{}", request.peer.ip()),
                            Variable::RemotePort | Variable::RealipRemotePort => {
                                match port(variable, request) {
                                    0 => Ok(()),
                                    port => write!(cursor, "{port}"),
                                }
                            }
                            _ => write!(cursor, "{}", request.server_port),
                        };
                        let len = usize::try_from(cursor.position()).unwrap_or(0);
                        crc.update(scratch.get(..len).unwrap_or_default());
                    }
                    Variable::Request
                    | Variable::RemoteUser
                    | Variable::LimitRate { .. }
                    | Variable::ProxyProtocolAddr
                    | Variable::ProxyProtocolPort
                    | Variable::ProxyProtocolServerAddr
                    | Variable::ProxyProtocolServerPort
                    | Variable::ProxyAddXForwardedFor
                    | Variable::Host
                    | Variable::Map(_) => {
                        // Rare in hash keys: rendered into a temporary buffer.
                        let mut value = Vec::new();
                        render_variable(variable, request, &mut value);
                        crc.update(&value);
                    }
                    other => crc.update(borrowed_value(other, request)),
                },
            }
        }
        crc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(headers: &'a [httparse::Header<'a>]) -> RequestView<'a> {
        RequestView {
            method: "GET",
            target: "/p/a?id=7&x=y",
            uri: b"",
            args: None,
            root: None,
            proxy_host: "",
            script: ScriptValues::NONE,
            host: headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map_or(&b""[..], |h| h.value),
            version: "HTTP/1.1",
            headers,
            client: "192.0.2.9:5555".parse().unwrap(),
            peer: "192.0.2.9:5555".parse().unwrap(),
            proxy_protocol: None,
            server_name: "s",
            server_port: 8080,
            tls: None,
            request_id: RequestId::default(),
            maps: &[],
        }
    }

    #[test]
    fn compiles_and_renders() {
        let headers = [
            httparse::Header {
                name: "Host",
                value: b"Example.com:8080",
            },
            httparse::Header {
                name: "User-Agent",
                value: b"curl",
            },
        ];
        let template =
            Template::compile("$remote_addr:$remote_port $request_method ${uri}?$args $host $http_user_agent id=$arg_id")
                .unwrap();
        let mut out = Vec::new();
        template.render(&view(&headers), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.9:5555 GET /p/a?id=7&x=y example.com curl id=7"
        );
    }

    #[test]
    fn hash_matches_the_rendered_value() {
        let headers = [httparse::Header {
            name: "Host",
            value: b"h",
        }];
        let template = Template::compile("$remote_addr$request_uri").unwrap();
        let mut out = Vec::new();
        template.render(&view(&headers), &mut out);
        let mut crc = Crc32::new();
        crc.update(&out);
        assert_eq!(template.hash(&view(&headers)), crc.finish());
    }

    /// An exchange's values for a log line: 200, nothing sent, no times.
    fn exchange_vars(
        earlier_attempts: &[UpstreamAttempt],
        upstream: Option<UpstreamAttempt>,
    ) -> ExchangeVars<'_> {
        ExchangeVars {
            status: 200,
            body_bytes_sent: 0,
            bytes_sent: 0,
            request_length: 0,
            limit_rate: 0,
            request_time: std::time::Duration::ZERO,
            time_local: b"",
            time_iso8601: b"",
            msec: std::time::Duration::ZERO,
            earlier_attempts,
            upstream,
            connection: 1,
            connection_requests: 1,
        }
    }

    #[test]
    fn log_lines_capture_request_values_and_escape() {
        let headers = [httparse::Header {
            name: "User-Agent",
            value: b"a \"b\"",
        }];
        let format = Template::compile_log_format(
            "$remote_addr \"$request\" $status $http_referer \"$http_user_agent\" $upstream_addr",
            LogEscape::Default,
            &[],
        )
        .unwrap();
        let mut captured = Vec::new();
        format.capture(&view(&headers), &mut captured);
        let exchange = ExchangeVars {
            status: 404,
            ..exchange_vars(&[], None)
        };
        let mut line = Vec::new();
        format.render_log(&captured, &exchange, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "192.0.2.9 \"GET /p/a?id=7&x=y HTTP/1.1\" 404 - \"a \\x22b\\x22\" -\n"
        );
    }

    /// `$limit_rate` is nginx's number: in a request what `set` gave it
    /// (0 without one, or for a value that is no size), in a log line the
    /// rate the response was paced at.
    #[test]
    fn limit_rate_reads_as_nginx_reads_it() {
        let names = ["limit_rate".to_string()];
        let in_request = Template::compile_with("$limit_rate", &names).unwrap();
        let render = |set: &[u8]| {
            let spans = [(0, set.len() as u32)];
            let script = ScriptValues {
                sets: SetValues {
                    bytes: set,
                    spans: &spans,
                },
                ..ScriptValues::NONE
            };
            let mut out = Vec::new();
            in_request.render_in_script(&view(&[]), &script, &mut out);
            let mut plain = Vec::new();
            let view = RequestView {
                script,
                ..view(&[])
            };
            in_request.render(&view, &mut plain);
            assert_eq!(out, plain, "in a script and out of one alike");
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render(b"10k"), "10240");
        assert_eq!(render(b""), "0");
        assert_eq!(render(b"fast"), "0");
        let unset = Template::compile("$limit_rate").unwrap();
        let mut out = Vec::new();
        unset.render(&view(&[]), &mut out);
        assert_eq!(out, b"0");

        let in_log =
            Template::compile_log_format("$limit_rate", LogEscape::Default, &names).unwrap();
        let mut captured = Vec::new();
        in_log.capture(&view(&[]), &mut captured);
        assert!(captured.is_empty(), "taken from the exchange, not the head");
        let exchange = ExchangeVars {
            limit_rate: 5120,
            ..exchange_vars(&[], None)
        };
        let mut line = Vec::new();
        in_log.render_log(&captured, &exchange, &mut line);
        assert_eq!(line, b"5120\n");
    }

    /// nginx writes one value per attempt: `502, 200`, with `-` for a
    /// time an attempt never reached.
    #[test]
    fn upstream_variables_list_every_attempt() {
        let format = Template::compile_log_format(
            "$upstream_addr|$upstream_status|$upstream_connect_time|$upstream_response_time",
            LogEscape::Default,
            &[],
        )
        .unwrap();
        let ms = std::time::Duration::from_millis;
        let failed = UpstreamAttempt {
            addr: "127.0.0.1:1".parse().unwrap(),
            status: Some(502),
            times: [None, None, Some(ms(1))],
        };
        let served = UpstreamAttempt {
            addr: "127.0.0.1:2".parse().unwrap(),
            status: Some(200),
            times: [Some(ms(2)), Some(ms(3)), Some(ms(4))],
        };
        let render = |earlier: &[UpstreamAttempt], upstream: Option<UpstreamAttempt>| {
            let exchange = exchange_vars(earlier, upstream);
            let mut line = Vec::new();
            format.render_log(&[], &exchange, &mut line);
            String::from_utf8(line).unwrap()
        };
        assert_eq!(
            render(&[failed], Some(served)),
            "127.0.0.1:1, 127.0.0.1:2|502, 200|-, 0.002|0.001, 0.004\n"
        );
        assert_eq!(
            render(&[failed, failed], None),
            "127.0.0.1:1, 127.0.0.1:1|502, 502|-, -|0.001, 0.001\n"
        );
        assert_eq!(render(&[], None), "-|-|-|-\n");
    }

    /// `escape=json`: a line that is a JSON object whatever the client sent;
    /// missing values are empty, not `-`.
    #[test]
    fn json_escaping_keeps_the_line_json() {
        let headers = [httparse::Header {
            name: "User-Agent",
            value: b"a \"b\"\\c\n\x01\xc3\xa9",
        }];
        let format = Template::compile_log_format(
            "{\"ua\":\"$http_user_agent\",\"referer\":\"$http_referer\",\"upstream\":\"$upstream_addr\"}",
            LogEscape::Json,
            &[],
        )
        .unwrap();
        let mut captured = Vec::new();
        format.capture(&view(&headers), &mut captured);
        let mut line = Vec::new();
        format.render_log(&captured, &exchange_vars(&[], None), &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"ua\":\"a \\\"b\\\"\\\\c\\n\\u0001\u{e9}\",\"referer\":\"\",\"upstream\":\"\"}\n"
        );
        let none = Template::compile_log_format("[$http_referer]", LogEscape::None, &[]).unwrap();
        let mut captured = Vec::new();
        none.capture(&view(&headers), &mut captured);
        let mut line = Vec::new();
        none.render_log(&captured, &exchange_vars(&[], None), &mut line);
        assert_eq!(line, b"[]\n");
    }

    #[test]
    fn a_request_id_is_32_hex_digits_and_stable_within_a_request() {
        let headers = [];
        let first = view(&headers);
        let template = Template::compile("$request_id/$request_id").unwrap();
        let mut out = Vec::new();
        template.render(&first, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (a, b) = text.split_once('/').unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let second = view(&headers);
        let mut other = Vec::new();
        template.render(&second, &mut other);
        assert_ne!(&other[..32], a.as_bytes());
    }

    #[test]
    fn response_variables_only_in_log_format() {
        assert!(Template::compile("$status").is_err());
        assert!(Template::compile_log_format("$status", LogEscape::Default, &[]).is_ok());
    }

    #[test]
    fn unknown_variables_are_errors() {
        assert_eq!(
            Template::compile("$nope").unwrap_err().0,
            "unknown \"nope\" variable"
        );
        assert!(Template::compile("${uri").is_err());
        assert!(Template::compile("a$").is_err());
    }
}
