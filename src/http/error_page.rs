//! The responses ferry writes itself, as nginx does: a status line, a few
//! fields and a short HTML page. The bodies are compile-time constants, so an
//! error costs no allocation.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

/// Every status ferry can answer with on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorResponse {
    BadRequest,
    /// `auth_basic` wants credentials (the caller adds `WWW-Authenticate`).
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
    InternalServerError,
    NotImplemented,
    BadGateway,
    /// `limit_req`/`limit_conn` (nginx's default status), or too many
    /// password checks waiting.
    ServiceUnavailable,
    /// `limit_req_status 429`, the status rate limits usually get.
    TooManyRequests,
    GatewayTimeout,
    VersionNotSupported,
    /// nginx's 497: a plain HTTP request on a TLS port, answered 400.
    PlainHttpToHttps,
}

macro_rules! page {
    ($status:literal $reason:literal) => {
        concat!(
            "<html>\r\n<head><title>",
            $status,
            " ",
            $reason,
            "</title></head>\r\n<body>\r\n<center><h1>",
            $status,
            " ",
            $reason,
            "</h1></center>\r\n<hr><center>ferry</center>\r\n</body>\r\n</html>\r\n"
        )
    };
}

impl ErrorResponse {
    /// Status code, reason phrase and HTML body: the one table.
    pub fn parts(self) -> (u16, &'static str, &'static str) {
        match self {
            ErrorResponse::BadRequest => (400, "Bad Request", page!(400 "Bad Request")),
            ErrorResponse::Unauthorized => {
                (401, "Unauthorized", page!(401 "Authorization Required"))
            }
            ErrorResponse::Forbidden => (403, "Forbidden", page!(403 "Forbidden")),
            ErrorResponse::NotFound => (404, "Not Found", page!(404 "Not Found")),
            ErrorResponse::MethodNotAllowed => (405, "Not Allowed", page!(405 "Not Allowed")),
            ErrorResponse::RequestTimeout => {
                (408, "Request Time-out", page!(408 "Request Time-out"))
            }
            ErrorResponse::PayloadTooLarge => (
                413,
                "Request Entity Too Large",
                page!(413 "Request Entity Too Large"),
            ),
            ErrorResponse::UriTooLong => (
                414,
                "Request-URI Too Large",
                page!(414 "Request-URI Too Large"),
            ),
            ErrorResponse::PreconditionFailed => {
                (412, "Precondition Failed", page!(412 "Precondition Failed"))
            }
            ErrorResponse::RangeNotSatisfiable => (
                416,
                "Requested Range Not Satisfiable",
                page!(416 "Requested Range Not Satisfiable"),
            ),
            ErrorResponse::ExpectationFailed => {
                (417, "Expectation Failed", page!(417 "Expectation Failed"))
            }
            ErrorResponse::HeaderFieldsTooLarge => (
                431,
                "Request Header Fields Too Large",
                page!(431 "Request Header Fields Too Large"),
            ),
            ErrorResponse::InternalServerError => (
                500,
                "Internal Server Error",
                page!(500 "Internal Server Error"),
            ),
            ErrorResponse::NotImplemented => (501, "Not Implemented", page!(501 "Not Implemented")),
            ErrorResponse::BadGateway => (502, "Bad Gateway", page!(502 "Bad Gateway")),
            ErrorResponse::TooManyRequests => {
                (429, "Too Many Requests", page!(429 "Too Many Requests"))
            }
            ErrorResponse::ServiceUnavailable => (
                503,
                "Service Temporarily Unavailable",
                page!(503 "Service Temporarily Unavailable"),
            ),
            ErrorResponse::GatewayTimeout => {
                (504, "Gateway Time-out", page!(504 "Gateway Time-out"))
            }
            ErrorResponse::VersionNotSupported => (
                505,
                "HTTP Version Not Supported",
                page!(505 "HTTP Version Not Supported"),
            ),
            ErrorResponse::PlainHttpToHttps => (
                400,
                "Bad Request",
                "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port\
                 </title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n\
                 <center>The plain HTTP request was sent to HTTPS port</center>\r\n\
                 <hr><center>ferry</center>\r\n</body>\r\n</html>\r\n",
            ),
        }
    }

    pub fn status(self) -> u16 {
        self.parts().0
    }

    /// Appends the whole response to `out`; `head_only` for HEAD requests.
    /// Returns the body length written, for the access log.
    pub fn write_to(self, out: &mut Vec<u8>, reply: &Reply<'_>) -> usize {
        self.write_with(out, reply, b"")
    }

    /// [`ErrorResponse::write_to`] with `fields` (whole lines) in the head:
    /// a 416's `Content-Range`.
    pub fn write_with(self, out: &mut Vec<u8>, reply: &Reply<'_>, fields: &[u8]) -> usize {
        let (status, reason, body) = self.parts();
        let message = LocalMessage {
            status,
            reason,
            location: None,
            fields,
            content_type: "text/html",
            body: body.as_bytes(),
        };
        message.write_to(out, reply)
    }
}

/// How a response of ferry's own is written: whether the connection stays
/// open, whether the request was HEAD (no body), and the current `Date`
/// (see `http::date`).
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub keep_alive: bool,
    pub head_only: bool,
    pub date: &'a [u8],
    /// Rendered `add_header` lines, the `always` ones first (up to
    /// `always_end`): nginx adds the others only to its success and
    /// redirect codes, to its own answers as to proxied ones.
    pub added: &'a [u8],
    pub always_end: usize,
    /// `charset` and `charset_types`: the name added to a text answer's
    /// `Content-Type`.
    pub charset: Option<&'a str>,
    pub charset_types: &'a [String],
    /// `default_type`: the type of a `return`'s text, as nginx sends it.
    pub default_type: &'a str,
}

/// nginx adds `add_header` fields (those without `always`) to these only.
pub fn add_header_applies(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// A response ferry writes itself, whole: every local answer goes through
/// here, so they all carry the same fields in the same order.
struct LocalMessage<'a> {
    status: u16,
    reason: &'a str,
    location: Option<&'a [u8]>,
    /// Whole header lines of the answer's own.
    fields: &'a [u8],
    content_type: &'a str,
    body: &'a [u8],
}

impl LocalMessage<'_> {
    /// Appends the head (and the body unless `head_only`) to `out`; returns
    /// the body bytes written.
    fn write_to(&self, out: &mut Vec<u8>, reply: &Reply<'_>) -> usize {
        use std::io::Write;
        let connection = if reply.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        // Infallible: writing to a Vec.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: ferry\r\nDate: ",
            self.status, self.reason
        );
        out.extend_from_slice(reply.date);
        out.extend_from_slice(b"\r\n");
        if let Some(url) = self.location {
            out.extend_from_slice(b"Location: ");
            out.extend_from_slice(url);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(self.fields);
        let added = if add_header_applies(self.status) {
            reply.added
        } else {
            reply.added.get(..reply.always_end).unwrap_or_default()
        };
        out.extend_from_slice(added);
        // A 204 has neither a body nor the fields that describe one (RFC
        // 9110 §8.6, §15.3.5); a 304 keeps the fields but has no body
        // (§15.4.5). Either way whatever text came with it stays unsent.
        let no_content = self.status == 204;
        if !self.content_type.is_empty() && !no_content {
            let _ = write!(out, "Content-Type: {}", self.content_type);
            let charset = super::headers::charset_for(
                self.content_type.as_bytes(),
                reply.charset,
                reply.charset_types,
            );
            if let Some(charset) = charset {
                let _ = write!(out, "; charset={charset}");
            }
            out.extend_from_slice(b"\r\n");
        }
        if !no_content {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        let _ = write!(out, "Connection: {connection}\r\n\r\n");
        if reply.head_only || no_content || self.status == 304 {
            return 0;
        }
        out.extend_from_slice(self.body);
        self.body.len()
    }
}

/// Appends a `200 OK` answered by ferry itself (the status pages) to `out`.
pub fn write_ok(out: &mut Vec<u8>, content_type: &str, body: &[u8], reply: &Reply<'_>) -> usize {
    let message = LocalMessage {
        status: 200,
        reason: "OK",
        location: None,
        fields: b"",
        content_type,
        body,
    };
    message.write_to(out, reply)
}

/// The reason phrase ferry writes for `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        416 => "Requested Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "",
    }
}

/// `return CODE [TEXT|URL]` as nginx answers it: a redirect (301, 302, 303,
/// 307, 308) gets `Location: URL` and a short page; another code with text
/// gets the text as the body; an error code without text gets ferry's page
/// when it has one. Returns the body length.
pub fn write_return(
    out: &mut Vec<u8>,
    status: u16,
    text: Option<&[u8]>,
    reply: &Reply<'_>,
) -> usize {
    let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
    let page = |status: u16| {
        [
            ErrorResponse::BadRequest,
            ErrorResponse::Forbidden,
            ErrorResponse::NotFound,
            ErrorResponse::MethodNotAllowed,
            ErrorResponse::InternalServerError,
            ErrorResponse::BadGateway,
            ErrorResponse::GatewayTimeout,
            ErrorResponse::ServiceUnavailable,
            ErrorResponse::TooManyRequests,
            ErrorResponse::Unauthorized,
        ]
        .into_iter()
        .find(|e| e.status() == status)
        .map(|e| e.parts().2)
    };
    // nginx: a text has the location's `default_type`; so has an empty
    // success, while an empty error or redirect has no type.
    let (location, content_type, body): (Option<&[u8]>, &str, &[u8]) = match text {
        Some(url) if redirect => (Some(url), "text/html", redirect_page(status).as_bytes()),
        Some(text) => (None, reply.default_type, text),
        None => match page(status) {
            Some(page) => (None, "text/html", page.as_bytes()),
            None if status < 300 => (None, reply.default_type, b""),
            None => (None, "", b""),
        },
    };
    let message = LocalMessage {
        status,
        reason: reason(status),
        location,
        fields: b"",
        content_type,
        body,
    };
    message.write_to(out, reply)
}

/// nginx's page for a redirect, sent with its `Location`.
fn redirect_page(status: u16) -> &'static str {
    match status {
        301 => page!(301 "Moved Permanently"),
        302 => page!(302 "Found"),
        303 => page!(303 "See Other"),
        307 => page!(307 "Temporary Redirect"),
        308 => page!(308 "Permanent Redirect"),
        _ => "",
    }
}

/// `HTTP/1.1 100 Continue`, sent when ferry accepts an `Expect: 100-continue`
/// request ([RFC 9110 §10.1.1](https://www.rfc-editor.org/rfc/rfc9110#section-10.1.1)).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_gateway_looks_like_nginx() {
        let mut out = Vec::new();
        let reply = Reply {
            keep_alive: false,
            head_only: false,
            date: b"Sun, 06 Nov 1994 08:49:37 GMT",
            added: b"",
            always_end: 0,
            charset: None,
            charset_types: &[],
            default_type: "text/plain",
        };
        let len = ErrorResponse::BadGateway.write_to(&mut out, &reply);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 502 Bad Gateway\r\nServer: ferry\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        ));
        assert!(text.contains(&format!("Content-Length: {len}\r\n")));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>ferry</center>\r\n</body>\r\n</html>\r\n"));
    }

    #[test]
    fn head_requests_get_no_body() {
        let mut out = Vec::new();
        let reply = Reply {
            keep_alive: true,
            head_only: true,
            date: b"Sun, 06 Nov 1994 08:49:37 GMT",
            added: b"",
            always_end: 0,
            charset: None,
            charset_types: &[],
            default_type: "text/plain",
        };
        assert_eq!(ErrorResponse::NotFound.write_to(&mut out, &reply), 0);
        assert!(out.ends_with(b"Connection: keep-alive\r\n\r\n"));
    }

    /// `return CODE [TEXT]` as nginx writes it: a 204 is a bare head, a
    /// 304 has no body, the text has the `default_type`, an empty error
    /// has no type.
    #[test]
    fn returns_frame_as_nginx_frames_them() {
        let reply = Reply {
            keep_alive: true,
            head_only: false,
            date: b"-",
            added: b"",
            always_end: 0,
            charset: None,
            charset_types: &[],
            default_type: "application/octet-stream",
        };
        let written = |status: u16, text: Option<&[u8]>| {
            let mut out = Vec::new();
            let len = write_return(&mut out, status, text, &reply);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let fields: Vec<&str> = head
                .lines()
                .skip(3)
                .filter(|l| !l.starts_with("Connection"))
                .collect();
            assert_eq!(len, body.len());
            format!("{} {}", fields.join("|"), body)
        };
        assert_eq!(written(204, None), " ");
        assert_eq!(written(204, Some(b"text")), " ");
        assert_eq!(
            written(304, Some(b"x")),
            "Content-Type: application/octet-stream|Content-Length: 1 "
        );
        assert_eq!(
            written(200, Some(b"x")),
            "Content-Type: application/octet-stream|Content-Length: 1 x"
        );
        assert_eq!(
            written(201, None),
            "Content-Type: application/octet-stream|Content-Length: 0 "
        );
        assert_eq!(written(418, None), "Content-Length: 0 ");
    }
}
