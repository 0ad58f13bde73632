//! Why an exchange failed, and the one table from failure to response.
//!
//! Every failure that ferry answers itself becomes a [`ProxyError`]; its
//! [`ProxyError::response`] is the only place a failure turns into an HTTP
//! status. Failures after the response head went to the client can no longer
//! be answered: those close the connection instead (see
//! `connection::Connection::abort`).
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::fmt;
use std::io;

use crate::http::error_page::ErrorResponse;
use crate::http::framing::FramingError;
use crate::http::request::RequestError;
use crate::http::response::ResponseError;

#[derive(Debug)]
pub enum ProxyError {
    /// The client's request head was refused.
    Request(RequestError),
    /// The client's chunked body framing was invalid.
    RequestBody(FramingError),
    /// The body is larger than `client_max_body_size`.
    BodyTooLarge { limit: u64 },
    /// The upstream could not be reached.
    UpstreamConnect(io::Error),
    /// The TLS handshake with the upstream failed (`proxy_pass https://`):
    /// a certificate that does not verify, an alert, a server that is not
    /// speaking TLS. Says why.
    UpstreamTls(String),
    /// Every server of the group is down or failed (nginx: "no live upstreams").
    NoLiveUpstreams,
    /// The upstream closed or reset the connection before a response head.
    UpstreamClosedEarly(Option<io::Error>),
    /// The upstream sent something that is not a valid response head.
    UpstreamResponse(ResponseError),
    /// The upstream's chunked body framing was invalid.
    UpstreamBody(FramingError),
    /// The upstream answered with a status `proxy_next_upstream` retries.
    UpstreamStatus(u16),
    /// The upstream answered with a status the location's `error_page`
    /// replaces (`proxy_intercept_errors on`): not a failure, the page is
    /// the answer (`connection::error_pages`).
    Intercepted(u16),
    /// The client was too slow; names the nginx directive that expired.
    ClientTimeout(&'static str),
    /// The upstream was too slow; names the nginx directive that expired.
    UpstreamTimeout(&'static str),
    /// A plain HTTP request arrived on a `listen … ssl` address.
    PlainHttpToHttps,
}

impl ProxyError {
    /// The response ferry sends for this failure: the one status map.
    pub fn response(&self) -> ErrorResponse {
        match self {
            ProxyError::Request(e) => match e {
                RequestError::UnsupportedVersion => ErrorResponse::VersionNotSupported,
                RequestError::UriTooLong => ErrorResponse::UriTooLong,
                RequestError::HeadTooLarge => ErrorResponse::HeaderFieldsTooLarge,
                RequestError::Framing(
                    crate::http::headers::FramingHeaderError::UnsupportedTransferEncoding,
                ) => ErrorResponse::NotImplemented,
                RequestError::UnsupportedExpectation => ErrorResponse::ExpectationFailed,
                RequestError::Connect => ErrorResponse::MethodNotAllowed,
                RequestError::Malformed(_)
                | RequestError::Framing(_)
                | RequestError::TransferEncodingOnHttp10
                | RequestError::MissingHost
                | RequestError::DuplicateHost
                | RequestError::HigherMinorVersion
                | RequestError::InvalidTargetHost
                | RequestError::InvalidHost
                | RequestError::InvalidPath => ErrorResponse::BadRequest,
            },
            ProxyError::RequestBody(_) => ErrorResponse::BadRequest,
            ProxyError::PlainHttpToHttps => ErrorResponse::PlainHttpToHttps,
            ProxyError::ClientTimeout(_) => ErrorResponse::RequestTimeout,
            ProxyError::UpstreamTimeout(_) => ErrorResponse::GatewayTimeout,
            ProxyError::BodyTooLarge { .. } => ErrorResponse::PayloadTooLarge,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::NoLiveUpstreams
            | ProxyError::UpstreamClosedEarly(_)
            | ProxyError::UpstreamResponse(_)
            | ProxyError::UpstreamBody(_)
            | ProxyError::UpstreamStatus(_)
            | ProxyError::Intercepted(_) => ErrorResponse::BadGateway,
        }
    }

    /// For upstream failures, what ferry was doing, as nginx's error lines
    /// say it (` while connecting to upstream`); empty for the others.
    pub fn during(&self) -> &'static str {
        match self {
            ProxyError::UpstreamConnect(_) | ProxyError::NoLiveUpstreams => {
                " while connecting to upstream"
            }
            ProxyError::UpstreamTimeout("proxy_connect_timeout") => " while connecting to upstream",
            ProxyError::UpstreamTls(_) => " while SSL handshaking to upstream",
            ProxyError::UpstreamTimeout("proxy_send_timeout") => {
                " while sending request to upstream"
            }
            ProxyError::UpstreamTimeout(_)
            | ProxyError::UpstreamClosedEarly(_)
            | ProxyError::UpstreamResponse(_)
            | ProxyError::UpstreamStatus(_)
            | ProxyError::Intercepted(_) => " while reading response header from upstream",
            ProxyError::UpstreamBody(_) => " while reading upstream",
            _ => "",
        }
    }

    /// The status nginx records in `$upstream_status` for an attempt that
    /// failed this way: the upstream's own, 504 for a timeout, else 502.
    pub fn upstream_status(&self) -> u16 {
        match self {
            ProxyError::UpstreamStatus(status) | ProxyError::Intercepted(status) => *status,
            ProxyError::UpstreamTimeout(_) => 504,
            _ => 502,
        }
    }

    /// Whether the client's side of the exchange was at fault, which decides
    /// the log level (a bad client is `info`, a bad upstream is `warn`).
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            ProxyError::Request(_)
                | ProxyError::RequestBody(_)
                | ProxyError::BodyTooLarge { .. }
                | ProxyError::ClientTimeout(_)
                | ProxyError::PlainHttpToHttps
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Request(e) => write!(f, "client sent {e}"),
            ProxyError::RequestBody(e) => write!(f, "client sent a bad body: {e}"),
            ProxyError::BodyTooLarge { limit } => {
                write!(
                    f,
                    "client intended to send too large body (limit {limit} bytes)"
                )
            }
            ProxyError::UpstreamConnect(e) => write!(f, "connect() to upstream failed: {e}"),
            ProxyError::UpstreamTls(why) => write!(f, "upstream SSL handshake failed: {why}"),
            ProxyError::NoLiveUpstreams => f.write_str("no live upstreams"),
            ProxyError::UpstreamStatus(status) => write!(f, "upstream answered {status}"),
            ProxyError::Intercepted(status) => {
                write!(f, "upstream answered {status}, replaced by its error_page")
            }
            ProxyError::UpstreamClosedEarly(Some(e)) => {
                write!(f, "upstream failed before sending a response head: {e}")
            }
            ProxyError::UpstreamClosedEarly(None) => {
                f.write_str("upstream prematurely closed connection")
            }
            ProxyError::UpstreamResponse(e) => write!(f, "upstream sent an invalid response: {e}"),
            ProxyError::UpstreamBody(e) => {
                write!(f, "upstream sent an invalid chunked response: {e}")
            }
            ProxyError::ClientTimeout(directive) => write!(f, "client timed out ({directive})"),
            ProxyError::UpstreamTimeout(directive) => write!(f, "upstream timed out ({directive})"),
            ProxyError::PlainHttpToHttps => {
                f.write_str("client sent plain HTTP request to HTTPS port")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (ProxyError::Request(RequestError::UriTooLong), 414),
            (ProxyError::Request(RequestError::HeadTooLarge), 431),
            (ProxyError::Request(RequestError::UnsupportedVersion), 505),
            (ProxyError::Request(RequestError::MissingHost), 400),
            (
                ProxyError::Request(RequestError::Framing(
                    crate::http::headers::FramingHeaderError::UnsupportedTransferEncoding,
                )),
                501,
            ),
            (ProxyError::BodyTooLarge { limit: 1 }, 413),
            (ProxyError::RequestBody(FramingError::ChunkSize), 400),
            (ProxyError::UpstreamClosedEarly(None), 502),
            (ProxyError::UpstreamBody(FramingError::ChunkExtension), 502),
            (ProxyError::ClientTimeout("client_header_timeout"), 408),
            (ProxyError::UpstreamTimeout("proxy_read_timeout"), 504),
        ];
        for (error, status) in cases {
            assert_eq!(error.response().status(), status, "{error}");
        }
    }
}
