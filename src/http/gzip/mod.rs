//! Compression (ngx_http_gzip_module, with the `gzip_*` lines nginx keeps
//! in its core module): which responses are compressed, and the body
//! filter that compresses them as they flow (`stream.rs`).
//!
//! The decision has two halves. When the request arrives (and only if the
//! location has `gzip on`), [`request_facts`] notes what nginx's
//! `ngx_http_gzip_ok` reads from the request: an `Accept-Encoding` that
//! takes gzip, the HTTP version, `gzip_disable`, and for `gzip_proxied`
//! whether `Via` and `Authorization` came. When the response head arrives,
//! [`decide`] adds the response's side: status 200/403/404, no
//! `Content-Encoding` of its own, a length of at least `gzip_min_length`,
//! a type in `gzip_types`, a body at all, and `gzip_proxied`'s reading of
//! `Expires`, `Cache-Control`, `Last-Modified` and `ETag`.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

mod stream;

pub use stream::{GzipPool, GzipStream, InputEnd};

use super::headers;

/// `gzip_proxied` values, as flags.
pub mod proxied {
    pub const OFF: u16 = 0x0002;
    pub const EXPIRED: u16 = 0x0004;
    pub const NO_CACHE: u16 = 0x0008;
    pub const NO_STORE: u16 = 0x0010;
    pub const PRIVATE: u16 = 0x0020;
    pub const NO_LAST_MODIFIED: u16 = 0x0040;
    pub const NO_ETAG: u16 = 0x0080;
    pub const AUTH: u16 = 0x0100;
    pub const ANY: u16 = 0x0200;
}

/// The `gzip*` lines in force for a location.
#[derive(Clone, Debug)]
pub struct GzipSettings {
    /// `gzip on`.
    pub on: bool,
    /// `gzip_comp_level` (1-9).
    pub level: u32,
    /// `gzip_types`, lowercase; `text/html` always; `*` for any.
    pub types: Vec<String>,
    /// `gzip_min_length`: a declared length under this is sent as it is.
    pub min_length: u64,
    /// `gzip_proxied` flags.
    pub proxied: u16,
    /// `gzip_vary on`: `Vary: Accept-Encoding` on responses gzip considered.
    pub vary: bool,
    /// `gzip_http_version 1.0`: HTTP/1.0 clients too (close-delimited).
    pub http10: bool,
    /// `gzip_disable msie6`.
    pub disable_msie6: bool,
    /// `gzip_disable REGEX…`, matched against `User-Agent` ignoring case.
    pub disable: Vec<regex_lite::Regex>,
}

impl Default for GzipSettings {
    fn default() -> Self {
        GzipSettings {
            on: false,
            level: 1,
            types: vec!["text/html".to_string()],
            min_length: 20,
            proxied: proxied::OFF,
            vary: false,
            http10: false,
            disable_msie6: false,
            disable: Vec::new(),
        }
    }
}

impl PartialEq for GzipSettings {
    fn eq(&self, other: &Self) -> bool {
        self.on == other.on
            && self.level == other.level
            && self.types == other.types
            && self.min_length == other.min_length
            && self.proxied == other.proxied
            && self.vary == other.vary
            && self.http10 == other.http10
            && self.disable_msie6 == other.disable_msie6
            && self.disable.len() == other.disable.len()
            && self
                .disable
                .iter()
                .zip(&other.disable)
                .all(|(a, b)| a.as_str() == b.as_str())
    }
}

impl Eq for GzipSettings {}

/// What the request says, as flags (0 when gzip is off).
pub mod facts {
    /// The client takes gzip, and neither its version nor its browser
    /// rules it out.
    pub const ACCEPTS: u8 = 1;
    /// The request came through a proxy (`Via`).
    pub const VIA: u8 = 2;
    /// It has `Authorization`.
    pub const AUTHORIZATION: u8 = 4;
    /// `gzip on` applies: the response may get `Vary`.
    pub const ON: u8 = 8;
}

/// The request's half of the decision (nginx's `ngx_http_gzip_ok`, up to
/// the response fields).
pub fn request_facts(
    settings: &GzipSettings,
    headers: &[httparse::Header<'_>],
    http10: bool,
) -> u8 {
    if !settings.on {
        return 0;
    }
    let field = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let mut found = facts::ON;
    if field("via").is_some() {
        found |= facts::VIA;
    }
    if field("authorization").is_some() {
        found |= facts::AUTHORIZATION;
    }
    let accepts =
        field("accept-encoding").is_some_and(accepts_gzip) && (!http10 || settings.http10) && {
            let agent = field("user-agent");
            let msie6 = settings.disable_msie6
                && agent.is_some_and(|ua| super::browsers::detect(ua) == super::browsers::MSIE6);
            let disabled = !settings.disable.is_empty()
                && agent.is_some_and(|ua| {
                    let ua = String::from_utf8_lossy(ua);
                    settings.disable.iter().any(|re| re.is_match(&ua))
                });
            !msie6 && !disabled
        };
    if accepts {
        found |= facts::ACCEPTS;
    }
    found
}

/// Whether an `Accept-Encoding` value takes gzip, read as nginx reads it:
/// the first `gzip` token (at the start or after `,` or space), then an
/// optional `;q=` whose value must not be 0.
pub fn accepts_gzip(value: &[u8]) -> bool {
    if value.len() < 4 {
        return false;
    }
    if value.starts_with(b"gzip,") {
        return true;
    }
    let mut start = 0;
    let at = loop {
        let Some(found) = value.get(start..).and_then(|rest| {
            rest.windows(4)
                .position(|w| w.eq_ignore_ascii_case(b"gzip"))
        }) else {
            return false;
        };
        let at = start + found;
        if at == 0 || matches!(value.get(at - 1), Some(b',' | b' ')) {
            break at;
        }
        start = at + 4;
    };
    let mut rest = value.get(at + 4..).unwrap_or_default().iter();
    loop {
        match rest.next() {
            None | Some(b',') => return true,
            Some(b';') => break,
            Some(b' ') => continue,
            Some(_) => return false,
        }
    }
    loop {
        match rest.next() {
            None => return true,
            Some(b'q' | b'Q') => break,
            Some(b' ') => continue,
            Some(_) => return false,
        }
    }
    let rest = rest.as_slice();
    match rest.split_first() {
        Some((b'=', q)) if !q.is_empty() => quantity(q) > 0,
        _ => false,
    }
}

/// nginx's `ngx_http_gzip_quantity`: `q` times 100, 0 when invalid.
fn quantity(text: &[u8]) -> u32 {
    let mut bytes = text.iter();
    let q = match bytes.next() {
        Some(b'0') => 0,
        Some(b'1') => 100,
        _ => return 0,
    };
    match bytes.next() {
        None | Some(b',' | b' ') => return q,
        Some(b'.') => {}
        Some(_) => return 0,
    }
    let mut q = q;
    let mut digits = 0;
    for &c in bytes {
        match c {
            b',' | b' ' => break,
            b'0'..=b'9' => {
                // nginx adds each digit as it is (so "0.5" reads as 5).
                q += u32::from(c - b'0');
                digits += 1;
            }
            _ => return 0,
        }
    }
    if q > 100 || digits > 3 {
        0
    } else {
        q
    }
}

/// The response fields the decision reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseFacts<'a> {
    pub status: u16,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: bool,
    /// `None`: the length is not known in advance.
    pub content_length: Option<u64>,
    /// HEAD, 204, 304: no body goes out.
    pub header_only: bool,
    pub expires: Option<&'a [u8]>,
    pub date: Option<&'a [u8]>,
    pub cache_control: Option<&'a [u8]>,
    pub last_modified: bool,
    pub etag: bool,
}

impl<'a> ResponseFacts<'a> {
    /// The facts of an upstream's head.
    pub fn of_head(
        status: u16,
        fields: &'a [httparse::Header<'a>],
        content_length: Option<u64>,
        header_only: bool,
    ) -> ResponseFacts<'a> {
        let mut facts = ResponseFacts {
            status,
            content_length,
            header_only,
            ..ResponseFacts::default()
        };
        for field in fields {
            let name = field.name;
            let value = headers::trim_ows(field.value);
            if name.eq_ignore_ascii_case("content-type") {
                facts.content_type.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("content-encoding") {
                facts.content_encoding |= !value.is_empty();
            } else if name.eq_ignore_ascii_case("expires") {
                facts.expires.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("date") {
                facts.date.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("cache-control") {
                facts.cache_control.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("last-modified") {
                facts.last_modified = true;
            } else if name.eq_ignore_ascii_case("etag") {
                facts.etag = true;
            }
        }
        facts
    }
}

/// What gzip does to one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Add `Vary: Accept-Encoding` (`gzip_vary on`).
    pub vary: bool,
    /// Compress the body.
    pub compress: bool,
}

/// The response's half of the decision; `now` (Unix seconds) stands in for
/// a missing `Date` when `gzip_proxied expired` compares `Expires`.
pub fn decide(
    settings: &GzipSettings,
    request: u8,
    response: &ResponseFacts<'_>,
    now: i64,
) -> Decision {
    if request & facts::ON == 0
        || !matches!(response.status, 200 | 403 | 404)
        || response.content_encoding
        || response
            .content_length
            .is_some_and(|length| length < settings.min_length)
        || !type_listed(settings, response.content_type)
        || response.header_only
    {
        return Decision::default();
    }
    let vary = settings.vary;
    let compress = request & facts::ACCEPTS != 0 && proxied_ok(settings, request, response, now);
    Decision { vary, compress }
}

fn type_listed(settings: &GzipSettings, content_type: Option<&[u8]>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let end = content_type
        .iter()
        .position(|b| *b == b';' || *b == b' ')
        .unwrap_or(content_type.len());
    let media = content_type.get(..end).unwrap_or_default();
    settings
        .types
        .iter()
        .any(|t| t == "*" || t.as_bytes().eq_ignore_ascii_case(media))
}

/// `gzip_proxied`, for requests that came through a proxy.
fn proxied_ok(
    settings: &GzipSettings,
    request: u8,
    response: &ResponseFacts<'_>,
    now: i64,
) -> bool {
    use proxied::*;
    let p = settings.proxied;
    if request & facts::VIA == 0 {
        return true;
    }
    if p & OFF != 0 {
        return false;
    }
    if p & ANY != 0 || (request & facts::AUTHORIZATION != 0 && p & AUTH != 0) {
        return true;
    }
    let date = |field: Option<&[u8]>| field.and_then(crate::files::conditional::parse_http_date);
    if let Some(expires) = response.expires {
        if p & EXPIRED == 0 {
            return false;
        }
        let Some(expires) = date(Some(expires)) else {
            return false;
        };
        let now = match response.date {
            Some(field) => match date(Some(field)) {
                Some(date) => date,
                None => return false,
            },
            None => now,
        };
        return expires < now;
    }
    if let Some(cache_control) = response.cache_control {
        let has = |directive: &[u8]| {
            cache_control.split(|b| *b == b',').any(|part| {
                let name = headers::trim_ows(part);
                let name = name.split(|b| *b == b'=').next().unwrap_or_default();
                name.eq_ignore_ascii_case(directive)
            })
        };
        return (p & NO_CACHE != 0 && has(b"no-cache"))
            || (p & NO_STORE != 0 && has(b"no-store"))
            || (p & PRIVATE != 0 && has(b"private"));
    }
    !(p & NO_LAST_MODIFIED != 0 && response.last_modified || p & NO_ETAG != 0 && response.etag)
}

/// The ETag of a compressed response: a strong one becomes weak (the bytes
/// differ from the uncompressed representation's), a weak one stays, a
/// malformed one is dropped (nginx's `ngx_http_weak_etag`).
pub fn weak_etag(value: &[u8]) -> Option<(&'static [u8], &[u8])> {
    let value = headers::trim_ows(value);
    if value.starts_with(b"W/") {
        Some((b"", value))
    } else if value.starts_with(b"\"") {
        Some((b"W/", value))
    } else {
        None
    }
}

/// The head of a response of ferry's own (a page, `return` text, a status
/// page), rewritten for what `decision` says, as the filter does a proxied
/// head: with `compress`, no `Content-Length`, `Content-Encoding: gzip`,
/// `Transfer-Encoding: chunked` when `chunked`, `Connection: close` when the
/// body ends by closing (`close`), a weak `ETag`; `Vary` with `vary`.
/// `head` ends with its blank line; the rewritten head goes to `out`.
pub fn rewrite_own_head(
    head: &[u8],
    decision: Decision,
    chunked: bool,
    close: bool,
    out: &mut Vec<u8>,
) {
    let body_start = head.len().saturating_sub(2);
    let lines = head.get(..body_start).unwrap_or_default();
    for line in lines.split_inclusive(|b| *b == b'\n') {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        let is = |field: &str| name.eq_ignore_ascii_case(field.as_bytes());
        if decision.compress && is("content-length") {
            continue;
        }
        if decision.compress && close && is("connection") {
            out.extend_from_slice(b"Connection: close\r\n");
            continue;
        }
        if decision.compress && is("etag") {
            let value = line.get(name.len() + 1..).unwrap_or_default();
            let value = value.strip_suffix(b"\r\n").unwrap_or(value);
            if let Some((prefix, etag)) = weak_etag(headers::trim_ows(value)) {
                out.extend_from_slice(b"ETag: ");
                out.extend_from_slice(prefix);
                out.extend_from_slice(etag);
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        out.extend_from_slice(line);
    }
    if decision.compress {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
    }
    if decision.vary {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_own_head_is_rewritten_as_a_proxied_one_is() {
        let head = b"HTTP/1.1 404 Not Found\r\nServer: ferry\r\nContent-Type: text/html\r\n\
            Content-Length: 150\r\nConnection: keep-alive\r\nETag: \"x\"\r\n\r\n";
        let mut out = Vec::new();
        let both = Decision {
            vary: true,
            compress: true,
        };
        rewrite_own_head(head, both, true, false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 404 Not Found\r\nServer: ferry\r\nContent-Type: text/html\r\n\
             Connection: keep-alive\r\nETag: W/\"x\"\r\nContent-Encoding: gzip\r\n\
             Transfer-Encoding: chunked\r\nVary: Accept-Encoding\r\n\r\n"
        );
        out.clear();
        rewrite_own_head(head, both, false, true, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Connection: close\r\n") && !text.contains("chunked"));
        out.clear();
        let vary_only = Decision {
            vary: true,
            compress: false,
        };
        rewrite_own_head(head, vary_only, true, false, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("Content-Length: 150\r\n")
                && text.ends_with("Vary: Accept-Encoding\r\n\r\n")
        );
    }
    use super::*;

    #[test]
    fn accept_encoding_is_read_as_nginx_reads_it() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "gzip,deflate",
            "deflate, gzip",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "GZIP",
            "deflate,gzip;q=1",
            "gzip ;q=0.5",
            "gzip; q=0.001",
        ] {
            assert!(accepts_gzip(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "gz",
            "deflate",
            "x-gzip",
            "gzip;q=0",
            "gzip;q=0.000",
            "gzip;q=1.5",
            "gzipx",
            "gzip;level=1",
            "gzip;q=",
            "identity",
        ] {
            assert!(!accepts_gzip(no.as_bytes()), "{no}");
        }
    }

    fn settings() -> GzipSettings {
        GzipSettings {
            on: true,
            types: vec!["text/html".into(), "application/json".into()],
            ..GzipSettings::default()
        }
    }

    fn response(status: u16) -> ResponseFacts<'static> {
        ResponseFacts {
            status,
            content_type: Some(b"text/html; charset=utf-8"),
            ..ResponseFacts::default()
        }
    }

    #[test]
    fn responses_are_chosen_as_nginx_chooses_them() {
        let s = settings();
        let yes = facts::ON | facts::ACCEPTS;
        assert!(decide(&s, yes, &response(200), 0).compress);
        assert!(decide(&s, yes, &response(404), 0).compress);
        assert!(!decide(&s, yes, &response(500), 0).compress);
        assert!(!decide(&s, yes, &response(206), 0).compress);
        assert!(!decide(&s, facts::ON, &response(200), 0).compress);
        let short = ResponseFacts {
            content_length: Some(19),
            ..response(200)
        };
        assert!(!decide(&s, yes, &short, 0).compress);
        let encoded = ResponseFacts {
            content_encoding: true,
            ..response(200)
        };
        assert!(!decide(&s, yes, &encoded, 0).compress);
        let image = ResponseFacts {
            content_type: Some(b"image/png"),
            ..response(200)
        };
        assert!(!decide(&s, yes, &image, 0).compress);
        let head = ResponseFacts {
            header_only: true,
            ..response(200)
        };
        assert!(!decide(&s, yes, &head, 0).compress);
        // Vary comes with gzip_vary whether or not the client takes gzip.
        let vary = GzipSettings {
            vary: true,
            ..settings()
        };
        assert_eq!(
            decide(&vary, facts::ON, &response(200), 0),
            Decision {
                vary: true,
                compress: false
            }
        );
    }

    #[test]
    fn gzip_proxied_reads_the_response_as_nginx_does() {
        let via = facts::ON | facts::ACCEPTS | facts::VIA;
        let with = |proxied: u16| GzipSettings {
            proxied,
            ..settings()
        };
        assert!(!decide(&with(proxied::OFF), via, &response(200), 0).compress);
        assert!(decide(&with(proxied::ANY), via, &response(200), 0).compress);
        let private = ResponseFacts {
            cache_control: Some(b"max-age=0, private"),
            ..response(200)
        };
        assert!(decide(&with(proxied::PRIVATE), via, &private, 0).compress);
        assert!(!decide(&with(proxied::NO_CACHE), via, &private, 0).compress);
        let expired = ResponseFacts {
            expires: Some(b"Thu, 01 Jan 1970 00:00:00 GMT"),
            date: Some(b"Sun, 29 Nov 2026 12:00:00 GMT"),
            ..response(200)
        };
        assert!(decide(&with(proxied::EXPIRED), via, &expired, 0).compress);
        assert!(!decide(&with(proxied::NO_ETAG), via, &expired, 0).compress);
        let tagged = ResponseFacts {
            etag: true,
            ..response(200)
        };
        assert!(!decide(&with(proxied::NO_ETAG), via, &tagged, 0).compress);
        assert!(decide(&with(proxied::NO_LAST_MODIFIED), via, &tagged, 0).compress);
        let auth = via | facts::AUTHORIZATION;
        assert!(decide(&with(proxied::AUTH), auth, &response(200), 0).compress);
    }

    #[test]
    fn etags_weaken_as_nginx_weakens_them() {
        assert_eq!(weak_etag(b"\"abc\""), Some((&b"W/"[..], &b"\"abc\""[..])));
        assert_eq!(weak_etag(b"W/\"abc\""), Some((&b""[..], &b"W/\"abc\""[..])));
        assert_eq!(weak_etag(b"abc"), None);
    }
}
