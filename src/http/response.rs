//! Response heads from the upstream: parse, decide the body's framing
//! ([RFC 9112 §6.3](https://www.rfc-editor.org/rfc/rfc9112#section-6.3)),
//! and re-serialize for the client.
//!
//! In the course (docs/learn): chapter 5 (a response's framing) and chapter 6
//! (whether it keeps the connection).

use std::fmt;

use super::framing::BodyKind;
use super::headers::{self, DeclaredFraming, Field, FramingHeaderError};
use super::request::{Method, RequestSummary};
use super::Version;

use super::field_rewrites::rewritten;
pub use super::field_rewrites::Origin;

/// A complete response head, borrowing the upstream's bytes.
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    pub body: BodyKind,
    /// The upstream connection may carry another request after this one.
    pub upstream_reusable: bool,
    /// The upstream said `Connection: close`; ferry closes the client
    /// connection after this response too.
    pub close_requested: bool,
    /// `Connection` names fields beyond the hop-by-hop ones, which are then
    /// not relayed either.
    pub connection_names_others: bool,
    pub has_date: bool,
}

impl ResponseHead<'_, '_> {
    /// 1xx other than 101: an interim response, followed by another head.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// `101 Switching Protocols`: the connection becomes a tunnel.
    pub fn is_switch(&self) -> bool {
        self.status == 101
    }
}

/// Why an upstream's response head is unusable (answered with 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(httparse::Error),
    HeadTooLarge,
    Framing(FramingHeaderError),
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    UnexpectedSwitch,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(e) => write!(f, "malformed response head: {e}"),
            ResponseError::HeadTooLarge => f.write_str("response head too large"),
            ResponseError::Framing(e) => write!(f, "invalid response framing: {e:?}"),
            ResponseError::UnexpectedSwitch => f.write_str("101 to a request without Upgrade"),
        }
    }
}

/// Parses the response head at the start of `buf`, for the request
/// described by `request`. `Ok(None)`: incomplete, read more.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
    request: &RequestSummary,
    max_head: usize,
) -> Result<Option<ResponseHead<'h, 'b>>, ResponseError> {
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        headers,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e)),
    };
    let (Some(status), Some(minor)) = (response.code, response.version) else {
        return Err(ResponseError::Malformed(httparse::Error::Status));
    };
    let reason = response.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = response.headers;
    let version = Version::from_minor(minor);
    if status == 101 && !request.upgrade {
        return Err(ResponseError::UnexpectedSwitch);
    }
    // Validate framing fields even where they do not frame (HEAD, 304):
    // a malformed Content-Length is never relayed.
    let facts = headers::FieldFacts::scan(headers);
    let framing = facts.framing.map_err(ResponseError::Framing)?;
    let no_body = status == 101
        || request.method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let body = match framing {
        _ if no_body => BodyKind::Empty,
        DeclaredFraming::Chunked => BodyKind::Chunked,
        DeclaredFraming::ContentLength(0) => BodyKind::Empty,
        DeclaredFraming::ContentLength(n) => BodyKind::Length(n),
        DeclaredFraming::None => BodyKind::UntilClose,
    };
    let options = facts.connection;
    let upstream_reusable = match version {
        Version::Http11 => !options.close,
        Version::Http10 => options.keep_alive && !options.close,
    } && body != BodyKind::UntilClose
        && status != 101;
    Ok(Some(ResponseHead {
        status,
        reason,
        version,
        headers,
        head_len,
        body,
        upstream_reusable,
        close_requested: options.close,
        connection_names_others: facts.connection_names_others,
        has_date: facts.has_date,
    }))
}

/// How the body reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFraming {
    /// Bytes pass as they are: Content-Length, chunked to an HTTP/1.1
    /// client, or close-delimited.
    AsReceived,
    /// Chunked from the upstream, but the client speaks HTTP/1.0: only the
    /// chunk data is sent and the end is marked by closing the connection.
    Dechunked,
    /// Compressed (`gzip`): the length is not known ahead, so chunked to an
    /// HTTP/1.1 client and close-delimited to an HTTP/1.0 one.
    Compressed,
}

/// Decides how to frame `response` for the client and whether the client
/// connection can stay open after it.
pub fn client_framing(
    response: &ResponseHead<'_, '_>,
    request: &RequestSummary,
    compress: bool,
) -> (ClientFraming, bool) {
    let http10 = request.version == Version::Http10;
    let dechunk = response.body == BodyKind::Chunked && http10;
    let framing = if compress {
        ClientFraming::Compressed
    } else if dechunk {
        ClientFraming::Dechunked
    } else {
        ClientFraming::AsReceived
    };
    let delimited_by_close =
        dechunk || response.body == BodyKind::UntilClose || (compress && http10);
    (
        framing,
        request.keep_alive && !delimited_by_close && !response.close_requested,
    )
}

/// Fields the location changes in responses: `proxy_hide_header` names and
/// rendered `add_header` lines.
#[derive(Clone, Copy, Default)]
pub struct ExtraFields<'a> {
    pub hide: &'a [String],
    /// `proxy_pass_header`: of the fields nginx hides by default, those
    /// passed all the same.
    pub pass: &'a [String],
    pub add: &'a [u8],
    /// The current HTTP date, sent when the upstream's head has no `Date`
    /// (RFC 9110 §6.6.1: a recipient with a clock adds one).
    pub date: &'a [u8],
    /// `proxy_redirect` rules for `Location` and `Refresh`.
    pub redirects: &'a [(String, String)],
    /// `proxy_cookie_domain` and `proxy_cookie_path` rules for `Set-Cookie`.
    pub cookie_domains: &'a [(String, String)],
    pub cookie_paths: &'a [(String, String)],
    /// What a rewritten `Location` that starts with `/` is made absolute
    /// with, as nginx's `absolute_redirect on` does: `http://host:port`.
    pub origin: Origin<'a>,
    /// `expires` applies: the upstream's `Expires` and `Cache-Control` give
    /// way to the location's (in `add`).
    pub replaces_cache_fields: bool,
    /// `charset` and `charset_types`: a `Content-Type` of a listed type
    /// without a charset gets this one.
    pub charset: Option<&'a str>,
    pub charset_types: &'a [String],
    /// `gzip_vary`: `Vary: Accept-Encoding` is added.
    pub vary_accept_encoding: bool,
}

/// nginx's proxy module hides `X-Pad` and the `X-Accel-…` fields (its own
/// instructions from the upstream: an internal redirect, a rate limit)
/// unless `proxy_pass_header` names them. ferry acts on none of them, and
/// does not show them to clients either: an `X-Accel-Redirect` path is the
/// upstream's private business.
fn hidden_by_default(name: &str, passed: &[String]) -> bool {
    let hidden = name.eq_ignore_ascii_case("x-pad")
        || name
            .get(..8)
            .is_some_and(|start| start.eq_ignore_ascii_case("x-accel-"));
    hidden && !passed.iter().any(|pass| pass.eq_ignore_ascii_case(name))
}

/// Writes a 1xx head (interim, or the `101` that starts a tunnel) for the
/// client: no body follows, so nothing is added or hidden.
pub fn write_informational_head(
    response: &ResponseHead<'_, '_>,
    request: &RequestSummary,
    out: &mut Vec<u8>,
) {
    write_client_head(
        response,
        request,
        ClientFraming::AsReceived,
        false,
        &ExtraFields::default(),
        out,
    );
}

/// Writes the head ferry sends to the client: status line as HTTP/1.1,
/// end-to-end fields, framing re-declared, then `Connection` as decided.
pub fn write_client_head(
    response: &ResponseHead<'_, '_>,
    request: &RequestSummary,
    framing: ClientFraming,
    keep_alive: bool,
    extra: &ExtraFields<'_>,
    out: &mut Vec<u8>,
) {
    // httparse takes three-digit status codes only.
    let status = response.status.min(999);
    let digit = |value: u16| b'0' + (value % 10) as u8;
    out.extend_from_slice(&[
        b'H',
        b'T',
        b'T',
        b'P',
        b'/',
        b'1',
        b'.',
        b'1',
        b' ',
        digit(status / 100),
        digit(status / 10),
        digit(status),
        b' ',
    ]);
    out.extend_from_slice(response.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    // RFC 9110 §8.6: no Content-Length on 1xx and 204; a 304's (and a
    // HEAD response's) is the representation's and passes as sent.
    let length_allowed = response.status >= 200 && response.status != 204;
    // Ferry writes its own Content-Length for a body it frames; a body it
    // compresses has none, nor ranges, and its ETag is weak.
    let compressed = framing == ClientFraming::Compressed;
    let drop_length = response.body != BodyKind::Empty || !length_allowed || compressed;
    let hop_by_hop = headers::HopByHop::new(response.headers, response.connection_names_others);
    // Fields some location rules rewrite: one test per field when none do.
    let rewrites_fields = !extra.redirects.is_empty()
        || !extra.cookie_domains.is_empty()
        || !extra.cookie_paths.is_empty()
        || extra.replaces_cache_fields
        || extra.charset.is_some();
    for header in response.headers {
        let kind = headers::field(header.name);
        if hop_by_hop.contains(header.name, kind)
            || (kind == Field::ContentLength && drop_length)
            || (kind == Field::Other && hidden_by_default(header.name, extra.pass))
            || extra
                .hide
                .iter()
                .any(|hidden| hidden.eq_ignore_ascii_case(header.name))
        {
            continue;
        }
        if rewrites_fields && kind == Field::Other && rewritten(out, header, extra) {
            continue;
        }
        if compressed && kind == Field::Other {
            if header.name.eq_ignore_ascii_case("accept-ranges") {
                continue;
            }
            if header.name.eq_ignore_ascii_case("etag") {
                if let Some((prefix, value)) = super::gzip::weak_etag(header.value) {
                    out.extend_from_slice(b"ETag: ");
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
                continue;
            }
        }
        headers::write_field(out, header.name, header.value);
    }
    let date_relayed = response.has_date
        && !extra
            .hide
            .iter()
            .any(|hidden| hidden.eq_ignore_ascii_case("date"));
    if !date_relayed && response.status >= 200 && !extra.date.is_empty() {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(extra.date);
        out.extend_from_slice(b"\r\n");
    }
    match (response.body, framing) {
        (_, ClientFraming::Compressed) => {
            out.extend_from_slice(b"Content-Encoding: gzip\r\n");
            if request.version == Version::Http11 && request.method != Method::Head {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
        }
        (BodyKind::Length(n), _) => {
            out.extend_from_slice(b"Content-Length: ");
            headers::push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        (BodyKind::Chunked, ClientFraming::AsReceived) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        _ => {}
    }
    if response.is_interim() {
        out.extend_from_slice(b"\r\n");
        return;
    }
    if response.is_switch() {
        if let Some(protocol) = super::request::upgrade_protocol(response.headers) {
            headers::write_field(out, "Upgrade", protocol);
        }
        out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
        return;
    }
    if extra.vary_accept_encoding {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    out.extend_from_slice(extra.add);
    match (keep_alive, request.version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n\r\n"),
        (true, Version::Http11) => out.extend_from_slice(b"\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::field_rewrites::write_redirected;

    fn request(method: Method, version: Version) -> RequestSummary {
        RequestSummary {
            method,
            version,
            body: BodyKind::Empty,
            keep_alive: true,
            expect_continue: false,
            upgrade: false,
        }
    }

    fn head(bytes: &[u8], req: RequestSummary) -> Result<(BodyKind, bool, String), ResponseError> {
        let mut headers = crate::http::header_slots();
        let response = parse(bytes, &mut headers, &req, 8192)?.expect("complete");
        let (framing, keep) = client_framing(&response, &req, false);
        let mut out = Vec::new();
        write_client_head(
            &response,
            &req,
            framing,
            keep,
            &ExtraFields::default(),
            &mut out,
        );
        Ok((
            response.body,
            response.upstream_reusable,
            String::from_utf8(out).unwrap(),
        ))
    }

    const GET11: fn() -> RequestSummary = || request(Method::Get, Version::Http11);

    #[test]
    fn framing_follows_rfc9112_section_6_3() {
        let cases: &[(&[u8], Method, BodyKind)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Method::Get,
                BodyKind::Length(5),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Method::Head,
                BodyKind::Empty,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                Method::Get,
                BodyKind::Empty,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::Get,
                BodyKind::Empty,
            ),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n",
                Method::Get,
                BodyKind::Empty,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::Get,
                BodyKind::Chunked,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                Method::Get,
                BodyKind::UntilClose,
            ),
        ];
        for (bytes, method, expected) in cases {
            let got = head(bytes, request(*method, Version::Http11)).unwrap().0;
            assert_eq!(got, *expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    /// Issue 12, item 7: RFC 9110 §8.6 and §15.4.5.
    #[test]
    fn no_content_length_on_204_and_1xx_but_a_304_keeps_its_own() {
        let written = |bytes: &[u8]| head(bytes, GET11()).unwrap().2;
        for (bytes, dropped) in [
            (
                &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
                "content-length",
            ),
            (
                b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nLink: <a>\r\n\r\n",
                "content-length",
            ),
            (
                b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
                "transfer-encoding",
            ),
        ] {
            let out = written(bytes);
            assert!(!out.to_ascii_lowercase().contains(dropped), "{out}");
        }
        let out = written(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
        assert!(out.contains("Content-Length: 9\r\n"), "{out}");
    }

    /// Issue 12, item 8: a relayed final response without `Date` gets one;
    /// the upstream's own is kept; interim heads get none.
    #[test]
    fn date_is_added_only_where_missing() {
        let req = GET11();
        let write = |bytes: &[u8]| {
            let mut headers = crate::http::header_slots();
            let response = parse(bytes, &mut headers, &req, 8192).unwrap().unwrap();
            let extra = ExtraFields {
                date: b"Sun, 06 Nov 1994 08:49:37 GMT",
                ..ExtraFields::default()
            };
            let mut out = Vec::new();
            write_client_head(
                &response,
                &req,
                ClientFraming::AsReceived,
                true,
                &extra,
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        let out = write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(
            out.contains("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            "{out}"
        );
        let out = write(
            b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Nov 1994 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(out.matches("ate: ").count(), 1, "{out}");
        assert!(out.contains("Mon, 07 Nov"), "{out}");
        let out = write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(!out.contains("Date"), "{out}");
    }

    #[test]
    fn reuse_needs_persistence_and_a_known_end() {
        assert!(
            head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", GET11())
                .unwrap()
                .1
        );
        assert!(
            !head(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                GET11()
            )
            .unwrap()
            .1
        );
        assert!(
            !head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", GET11())
                .unwrap()
                .1
        );
        assert!(!head(b"HTTP/1.1 200 OK\r\n\r\n", GET11()).unwrap().1);
    }

    #[test]
    fn client_head_is_rewritten() {
        let (_, _, out) = head(
            b"HTTP/1.1 200 OK\r\nServer: o\r\nConnection: x-h\r\nX-H: 1\r\nKeep-Alive: t=5\r\nContent-Length: 3\r\n\r\n",
            GET11(),
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: o\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn http10_clients_get_dechunked_and_keep_alive_said() {
        let mut req = request(Method::Get, Version::Http10);
        let (_, _, out) = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            req,
        )
        .unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        req.keep_alive = true;
        let (_, _, out) = head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", req).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn head_response_keeps_its_content_length() {
        let (_, _, out) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            request(Method::Head, Version::Http11),
        )
        .unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
    }

    #[test]
    fn bad_upstream_heads_are_refused() {
        let bad: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            // 101 to a request that asked for no upgrade.
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\x01: y\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ];
        for bytes in bad {
            assert!(
                head(bytes, GET11()).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn proxy_redirect_rewrites_location_and_refresh_urls() {
        let rules = vec![
            ("http://b:1/two/".to_string(), "/one/".to_string()),
            ("http://b:1/".to_string(), "/".to_string()),
        ];
        let rewrite = |name: &str, value: &str| {
            let mut out = Vec::new();
            let origin = Origin {
                https: false,
                host: b"front",
                port: 8080,
                socket: None,
            };
            write_redirected(&mut out, name, value.as_bytes(), &rules, &origin)
                .then(|| String::from_utf8(out).unwrap())
        };
        assert_eq!(
            rewrite("Location", "http://b:1/two/x?y").as_deref(),
            Some("Location: http://front:8080/one/x?y\r\n")
        );
        assert_eq!(
            rewrite("location", "http://b:1/login").as_deref(),
            Some("location: http://front:8080/login\r\n")
        );
        assert_eq!(
            rewrite("Refresh", "5; URL=http://b:1/two/").as_deref(),
            Some("Refresh: 5; URL=/one/\r\n")
        );
        assert_eq!(rewrite("Location", "http://other/"), None);
        assert_eq!(rewrite("Refresh", "5"), None);
        assert_eq!(rewrite("Content-Location", "http://b:1/"), None);
    }
}
