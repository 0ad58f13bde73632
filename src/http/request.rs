//! Request heads: parse (httparse), validate (RFC 9112 §2-§7), and
//! re-serialize for the upstream.
//!
//! `parse` borrows everything from the client's buffer; the connection keeps
//! only the small, owned [`RequestSummary`] once the head has been turned into
//! the upstream's bytes by [`write_upstream_head`] (`upstream_head.rs`).
//!
//! In the course (docs/learn): chapter 5 and chapter 7, step 4 (the request
//! head, parsed strictly).

use std::fmt;

use super::framing::BodyKind;
use super::headers::{self, DeclaredFraming, FieldFacts, FramingHeaderError};
use super::host::{valid_authority, valid_host};
use super::{start_line_fits, Version};

pub use super::upstream_head::{write_upstream_head, UpstreamHead};

/// A complete, validated request head, borrowing the client's bytes.
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    /// The target without an absolute-form's scheme and authority: the
    /// path and query (`/p?q`), or for `http://h?q` just `?q` and for
    /// `http://h` nothing, where the upstream gets a `/` in front.
    pub origin_form: &'b str,
    /// The request's host: an absolute-form target's authority, which
    /// overrides `Host` (RFC 9112 §3.2.2), else the `Host` field.
    pub host: Option<&'b [u8]>,
    /// The target was in absolute form.
    pub absolute: bool,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, including the final empty line.
    pub head_len: usize,
    pub summary: RequestSummary,
    /// `Connection` names fields beyond the hop-by-hop ones, which are then
    /// not forwarded either.
    pub connection_names_others: bool,
}

/// What the connection remembers about a request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSummary {
    pub method: Method,
    pub version: Version,
    pub body: BodyKind,
    /// Whether the client wants the connection kept after the response, by
    /// the version rules of [RFC 9112 §9.3](https://www.rfc-editor.org/rfc/rfc9112#section-9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and is answered by ferry).
    pub expect_continue: bool,
    /// A protocol switch (WebSocket) was asked for, in a form ferry relays:
    /// GET, HTTP/1.1, no body, `Connection: upgrade` and an `Upgrade` other
    /// than `h2c`. See `docs/nginx-differences.md`.
    pub upgrade: bool,
}

/// The methods ferry treats specially; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Idempotent methods may be retried after a failed attempt
    /// ([RFC 9110 §9.2.2](https://www.rfc-editor.org/rfc/rfc9110#section-9.2.2)).
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Other)
    }
}

/// Why a request head was refused. [`crate::error::ProxyError`] maps each to
/// its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// httparse refused the bytes (bad token, bad request-target, CTLs…).
    Malformed(httparse::Error),
    /// A major version other than HTTP/1.
    UnsupportedVersion,
    /// HTTP/1.2..HTTP/1.9: served as HTTP/1.1 once the request line is
    /// fixed up (see [`accept_higher_minor_version`]); never answered.
    HigherMinorVersion,
    /// The request line alone exceeds the head limit.
    UriTooLong,
    /// The head exceeds the limit, or has too many fields.
    HeadTooLarge,
    Framing(FramingHeaderError),
    /// `Transfer-Encoding` on an HTTP/1.0 request ([RFC 9112 §6.1]).
    TransferEncodingOnHttp10,
    MissingHost,
    DuplicateHost,
    /// An expectation other than `100-continue`.
    UnsupportedExpectation,
    /// CONNECT: ferry is not a forward proxy.
    Connect,
    /// An absolute-form target with an empty or malformed host
    /// (`http://?`, `http://user@host/`): RFC 9110 §4.2.1 says reject.
    InvalidTargetHost,
    /// A `Host` nginx would refuse: empty, with spaces, controls, `/`, `\`
    /// or `..`.
    InvalidHost,
    /// A path with a bad percent-escape, a NUL, or `..` above the root.
    InvalidPath,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Malformed(e) => write!(f, "malformed request head: {e}"),
            RequestError::UnsupportedVersion => f.write_str("unsupported HTTP version"),
            RequestError::HigherMinorVersion => f.write_str("HTTP/1 minor version above 1"),
            RequestError::UriTooLong => f.write_str("request line too long"),
            RequestError::HeadTooLarge => f.write_str("request head too large"),
            RequestError::Framing(e) => write!(f, "invalid body framing: {e:?}"),
            RequestError::TransferEncodingOnHttp10 => {
                f.write_str("Transfer-Encoding in an HTTP/1.0 request")
            }
            RequestError::MissingHost => f.write_str("missing Host header"),
            RequestError::DuplicateHost => f.write_str("more than one Host header"),
            RequestError::UnsupportedExpectation => f.write_str("unsupported Expect value"),
            RequestError::Connect => f.write_str("CONNECT is not supported"),
            RequestError::InvalidPath => f.write_str("invalid path in the request-target"),
            RequestError::InvalidHost => f.write_str("invalid Host header"),
            RequestError::InvalidTargetHost => f.write_str("invalid host in the request target"),
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)` means the head is incomplete and within `max_head` bytes: read
/// more. Bytes after the head (body, pipelined requests) are not looked at.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
    max_head: usize,
) -> Result<Option<RequestHead<'h, 'b>>, RequestError> {
    let over_limit = || {
        if start_line_fits(buf, max_head) {
            RequestError::HeadTooLarge
        } else {
            RequestError::UriTooLong
        }
    };
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(over_limit()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(e) => return Err(RequestError::Malformed(e)),
    };
    if head_len > max_head {
        return Err(over_limit());
    }
    // httparse fills these for every Complete parse.
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(RequestError::Malformed(httparse::Error::Token));
    };
    let headers: &'h [httparse::Header<'b>] = request.headers;
    let version = Version::from_minor(minor);
    let method_kind = Method::from_token(method);
    if method == "CONNECT" {
        return Err(RequestError::Connect);
    }
    // nginx takes methods in capitals only (RFC 9110 allows any token).
    if !method
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(RequestError::Malformed(httparse::Error::Token));
    }

    let facts = FieldFacts::scan(headers);
    let host_field = facts.host;
    match (host_field, facts.duplicate_host, version) {
        (None, _, Version::Http11) => return Err(RequestError::MissingHost),
        (_, true, _) => return Err(RequestError::DuplicateHost),
        _ => {}
    }
    // A Host field must be valid even where an absolute-form target
    // overrides it: it is still part of what the client sent.
    if host_field.is_some_and(|host| !valid_host(host)) {
        return Err(RequestError::InvalidHost);
    }
    let (host, origin_form, absolute) = match absolute_form(target) {
        Some((authority, rest)) => {
            if !valid_authority(authority) {
                return Err(RequestError::InvalidTargetHost);
            }
            (Some(authority.as_bytes()), rest, true)
        }
        None => (host_field, target, false),
    };

    // httparse trims a field value's trailing whitespace; nginx keeps tabs,
    // so `chunked\t` is not `chunked` to it. Look at the raw line.
    if facts
        .transfer_encoding
        .is_some_and(|value| trailing_bytes(buf, value).contains(&b'\t'))
    {
        return Err(RequestError::Framing(
            FramingHeaderError::UnsupportedTransferEncoding,
        ));
    }
    let body = match facts.framing.map_err(RequestError::Framing)? {
        DeclaredFraming::Chunked if version == Version::Http10 => {
            return Err(RequestError::TransferEncodingOnHttp10)
        }
        DeclaredFraming::Chunked => BodyKind::Chunked,
        DeclaredFraming::ContentLength(0) | DeclaredFraming::None => BodyKind::Empty,
        DeclaredFraming::ContentLength(n) => BodyKind::Length(n),
    };

    if facts.expect_other {
        return Err(RequestError::UnsupportedExpectation);
    }
    // An HTTP/1.0 client cannot understand 100 (RFC 9110 §10.1.1).
    let expect_continue = facts.expect_continue && version == Version::Http11;

    let options = facts.connection;
    let keep_alive = match version {
        Version::Http11 => !options.close,
        Version::Http10 => options.keep_alive && !options.close,
    };
    // `Upgrade: h2c` would smuggle HTTP/2 past ferry's routing: it is
    // dropped like any hop-by-hop field, and the request stays HTTP/1.1.
    let upgrade = options.upgrade
        && method_kind == Method::Get
        && version == Version::Http11
        && body == BodyKind::Empty
        && upgrade_protocol(headers).is_some_and(|p| !p.eq_ignore_ascii_case(b"h2c"));
    Ok(Some(RequestHead {
        method,
        target,
        origin_form,
        host,
        absolute,
        version,
        headers,
        head_len,
        connection_names_others: facts.connection_names_others,
        summary: RequestSummary {
            method: method_kind,
            version,
            body,
            keep_alive,
            expect_continue,
            upgrade,
        },
    }))
}

/// What a request line httparse refused for its version is: `HTTP/2.0`
/// and other major versions are 505 (RFC 9110 §15.6.6); anything that is
/// not `HTTP/DIGIT.DIGIT` at all (`HTXP/1.1`, `http/1.1`, `HTTP/0.9`'s
/// missing version) is a malformed request line, 400.
fn version_error(buf: &[u8]) -> RequestError {
    let line = request_line(buf);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => RequestError::HigherMinorVersion,
        [b'H', b'T', b'T', b'P', b'/', b'2'..=b'9', b'.', b'0'..=b'9'] => {
            RequestError::UnsupportedVersion
        }
        _ => RequestError::Malformed(httparse::Error::Version),
    }
}

/// The first line of `buf` (after empty lines, which RFC 9112 §2.2 lets a
/// server skip), without its line ending; empty if it is not complete.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) => rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]),
        None => &[],
    }
}

/// RFC 9110 §2.5: a request of a higher minor version of HTTP/1 is served
/// as the highest minor version ferry implements. httparse knows only 1.0
/// and 1.1, so after [`parse`] says [`RequestError::HigherMinorVersion`],
/// `HTTP/1.2`..`HTTP/1.9` at the end of the request line in `buf` is
/// rewritten to `HTTP/1.1` and parsed again (the head is re-serialized
/// anyway). Returns whether it rewrote.
pub fn accept_higher_minor_version(buf: &mut [u8]) -> bool {
    let line = request_line(buf);
    let Some(end) = (line.as_ptr() as usize)
        .checked_sub(buf.as_ptr() as usize)
        .map(|start| start + line.len())
    else {
        return false;
    };
    let Some(start) = end.checked_sub(9) else {
        return false;
    };
    match buf.get_mut(start..end) {
        Some([b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor @ b'2'..=b'9']) => {
            *minor = b'1';
            true
        }
        _ => false,
    }
}

/// The bytes between the end of a field value (a slice of `buf`, as
/// httparse hands it out) and the end of its line.
fn trailing_bytes<'b>(buf: &'b [u8], value: &[u8]) -> &'b [u8] {
    let start = (value.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) + value.len();
    let Some(rest) = buf.get(start..) else {
        return &[];
    };
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// An absolute-form target (`http://host:port/path?q`) split into its
/// authority and the rest: `/path?q`, `?q` (no path: RFC 9112 §3.2.1 makes
/// it `/?q`), or nothing (`/`).
pub fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    Some(match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    })
}

/// The `Upgrade` field's value, if there is exactly one.
pub fn upgrade_protocol<'b>(headers: &[httparse::Header<'b>]) -> Option<&'b [u8]> {
    let mut fields = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let first = fields.next()?;
    match fields.next() {
        Some(_) => None,
        None => Some(headers::trim_ows(first.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::UpstreamTarget;
    use crate::variables::RequestView;

    fn parse_ok(bytes: &[u8]) -> (RequestSummary, usize, Vec<u8>) {
        let mut headers = crate::http::header_slots();
        let head = parse(bytes, &mut headers, 8192)
            .expect("valid")
            .expect("complete");
        let mut out = Vec::new();
        let view = RequestView {
            method: head.method,
            target: head.target,
            uri: b"",
            args: None,
            root: None,
            proxy_host: "",
            script: crate::variables::ScriptValues::NONE,
            host: head.host.unwrap_or_default(),
            version: head.version.as_str(),
            headers: head.headers,
            client: "10.1.2.3:4000".parse().unwrap(),
            peer: "10.1.2.3:4000".parse().unwrap(),
            proxy_protocol: None,
            server_name: "",
            server_port: 80,
            tls: None,
            request_id: crate::variables::RequestId::default(),
            maps: &[],
        };
        let fallback_host = match (head.absolute, head.host) {
            (true, Some(authority)) => std::str::from_utf8(authority).unwrap(),
            _ => "upstream:3000",
        };
        let upstream = UpstreamHead {
            target: UpstreamTarget::AsSent(head.origin_form),
            fallback_host,
            set_headers: &[],
            field_names: headers::FieldNameRule::default(),
            pass_client_fields: true,
            body: &crate::config::UpstreamBody::Client,
            view: &view,
        };
        write_upstream_head(&head, &upstream, &mut out);
        (head.summary, head.head_len, out)
    }

    fn parse_err(bytes: &[u8]) -> RequestError {
        let mut headers = crate::http::header_slots();
        match parse(bytes, &mut headers, 8192) {
            Err(e) => e,
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    macro_rules! req {
        ($name:ident, $bytes:expr, |$summary:ident, $len:ident, $out:ident| $check:block) => {
            #[test]
            fn $name() {
                #[allow(unused_variables)]
                let ($summary, $len, $out) = parse_ok($bytes);
                #[allow(unused_variables)]
                let $out = String::from_utf8($out).unwrap();
                $check
            }
        };
    }

    macro_rules! bad {
        ($name:ident, $bytes:expr, $expected:pat) => {
            #[test]
            fn $name() {
                let error = parse_err($bytes);
                assert!(matches!(error, $expected), "got {error:?}");
            }
        };
    }

    // ===== persistence =====

    req!(
        http11_keeps_alive_by_default,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        |s, len, out| {
            assert!(s.keep_alive);
            assert_eq!(len, 27);
            assert_eq!(s.body, BodyKind::Empty);
        }
    );

    req!(
        http11_close,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        |s, len, out| {
            assert!(!s.keep_alive);
        }
    );

    req!(
        http10_closes_by_default,
        b"GET / HTTP/1.0\r\n\r\n",
        |s, len, out| {
            assert!(!s.keep_alive);
            assert!(out.contains("Host: upstream:3000\r\n"), "{out}");
        }
    );

    req!(
        http10_keep_alive_list,
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\nFoo: x\r\n\r\n",
        |s, len, out| {
            assert!(s.keep_alive);
            assert!(!out.to_ascii_lowercase().contains("foo"), "{out}");
        }
    );

    // ===== re-serialization =====

    req!(hop_by_hop_fields_are_removed, b"GET /p?q HTTP/1.1\r\nHost: h\r\nConnection: x-a, close\r\nX-A: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: k\r\nUpgrade: ws\r\nX-Keep: 2\r\n\r\n", |s, len, out| {
        assert_eq!(out, "GET /p?q HTTP/1.1\r\nHost: h\r\nX-Keep: 2\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\r\n");
    });

    req!(forwarded_for_is_appended, b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n\r\n", |s, len, out| {
        assert!(out.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n"), "{out}");
        assert!(out.contains("X-Forwarded-Proto: http\r\n"));
        assert!(!out.contains("https"));
    });

    req!(
        connection_cannot_remove_ferry_fields,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For, Host\r\n\r\n",
        |s, len, out| {
            assert!(out.contains("X-Forwarded-For: 10.1.2.3\r\n"), "{out}");
            // Host named in Connection is hop-by-hop for the client's message; ferry
            // still sends one because HTTP/1.1 needs it.
            assert!(out.contains("Host: upstream:3000\r\n"), "{out}");
        }
    );

    req!(
        content_length_is_normalised,
        b"POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 005\r\n\r\nhello",
        |s, len, out| {
            assert_eq!(s.body, BodyKind::Length(5));
            assert!(out.contains("Content-Length: 5\r\n"), "{out}");
            assert!(!out.contains("005"));
        }
    );

    req!(
        chunked_is_redeclared,
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        |s, len, out| {
            assert_eq!(s.body, BodyKind::Chunked);
            assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        }
    );

    req!(
        expect_continue_is_taken_over,
        b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n",
        |s, len, out| {
            assert!(s.expect_continue);
            assert!(!out.to_ascii_lowercase().contains("expect"));
        }
    );

    req!(
        bare_lf_head_is_accepted_and_normalised,
        b"GET / HTTP/1.1\nHost: h\n\n",
        |s, len, out| {
            assert!(out.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"));
        }
    );

    // ===== refusals =====

    bad!(
        both_length_and_chunked,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        RequestError::Framing(FramingHeaderError::ContentLengthWithTransferEncoding)
    );
    bad!(
        differing_lengths,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        RequestError::Framing(FramingHeaderError::InvalidContentLength)
    );
    bad!(
        gzip_coding,
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        RequestError::Framing(FramingHeaderError::UnsupportedTransferEncoding)
    );
    bad!(
        te_in_http10,
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        RequestError::TransferEncodingOnHttp10
    );
    bad!(
        missing_host,
        b"GET / HTTP/1.1\r\n\r\n",
        RequestError::MissingHost
    );
    bad!(
        two_hosts,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        RequestError::DuplicateHost
    );
    bad!(
        http2_version,
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        RequestError::UnsupportedVersion
    );
    bad!(
        space_in_target,
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        RequestError::Malformed(_) | RequestError::UnsupportedVersion
    );
    bad!(
        space_before_colon,
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        RequestError::Malformed(_)
    );
    bad!(
        nul_in_value,
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        RequestError::Malformed(_)
    );
    bad!(
        expect_other,
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
        RequestError::UnsupportedExpectation
    );
    bad!(
        connect,
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        RequestError::Connect
    );

    #[test]
    fn limits_distinguish_long_uri_from_large_head() {
        let mut headers = crate::http::header_slots();
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(200));
        assert!(matches!(
            parse(long_line.as_bytes(), &mut headers, 100),
            Err(RequestError::UriTooLong)
        ));
        let mut headers = crate::http::header_slots();
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "b".repeat(200));
        assert!(matches!(
            parse(big_head.as_bytes(), &mut headers, 100),
            Err(RequestError::HeadTooLarge)
        ));
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; 2];
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            parse(many, &mut headers, 100),
            Err(RequestError::HeadTooLarge)
        ));
    }

    #[test]
    fn absolute_form_needs_a_host_nginx_would_take() {
        for authority in ["h", "h:80", "a-b.c_d", "10.0.0.1:8080", "[::1]", "[::1]:80"] {
            assert!(valid_authority(authority), "{authority}");
        }
        for authority in [
            "", ":80", "h:", "h:8x", "u@h", "h%41", "a..b", "[::1", "[]", "[::1]x", "[1..2]",
        ] {
            assert!(!valid_authority(authority), "{authority}");
        }
        let mut headers = crate::http::header_slots();
        assert!(matches!(
            parse(b"C http://? HTTP/1.0\r\n\r\n", &mut headers, 8192),
            Err(RequestError::InvalidTargetHost)
        ));
    }

    /// Issue 12, item 5: versions by RFC 9110 §2.5 and §15.6.6.
    #[test]
    fn versions_higher_minor_is_served_other_major_is_505_junk_is_400() {
        for minor in b'2'..=b'9' {
            let mut bytes =
                format!("GET / HTTP/1.{}\r\nHost: a\r\n\r\n", minor as char).into_bytes();
            let mut headers = crate::http::header_slots();
            assert!(matches!(
                parse(&bytes, &mut headers, 8192),
                Err(RequestError::HigherMinorVersion)
            ));
            assert!(accept_higher_minor_version(&mut bytes));
            let (summary, _, out) = parse_ok(&bytes);
            assert_eq!(summary.version, Version::Http11);
            assert!(String::from_utf8(out)
                .unwrap()
                .starts_with("GET / HTTP/1.1\r\n"));
        }
        for request in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/3.0\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(parse_err(request), RequestError::UnsupportedVersion);
        }
        for request in [
            &b"GET / HTXP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\x01GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        ] {
            let error = parse_err(request);
            assert!(
                matches!(error, RequestError::Malformed(_)),
                "{}: {error:?}",
                String::from_utf8_lossy(request)
            );
            let mut copy = request.to_vec();
            assert!(!accept_higher_minor_version(&mut copy));
        }
    }

    req!(
        absolute_form_keeps_its_query_without_a_path,
        b"GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        |s, len, out| {
            assert!(out.starts_with("GET /?x=1 HTTP/1.1\r\n"), "{out}");
        }
    );

    req!(
        absolute_form_authority_overrides_host,
        b"GET http://a.test/p HTTP/1.1\r\nHost: b.test\r\n\r\n",
        |s, len, out| {
            assert!(out.starts_with("GET /p HTTP/1.1\r\n"), "{out}");
            assert!(out.contains("Host: a.test\r\n"), "{out}");
            assert!(!out.contains("b.test"), "{out}");
        }
    );

    #[test]
    fn absolute_form_host_is_the_authority() {
        let mut headers = crate::http::header_slots();
        let bytes = b"GET http://a.test:81 HTTP/1.1\r\nHost: b.test\r\n\r\n";
        let head = parse(bytes, &mut headers, 8192).unwrap().unwrap();
        assert_eq!(head.host, Some(&b"a.test:81"[..]));
        assert_eq!(head.origin_form, "");
        assert!(head.absolute);
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        let mut headers = crate::http::header_slots();
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut headers, 8192),
            Ok(None)
        ));
    }
}
