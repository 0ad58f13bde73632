//! The variables ferry knows, by nginx's names, and when each can be read:
//! while the request is handled, or only in a log line once the response
//! is done. Templates (`super`) compile names to these; `value` and `log`
//! render them.
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

/// The variables ferry knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variable {
    /// A variable a `map` block defines: the index of the map in
    /// `Config::maps`; past them, one `set` defines (see [`super::SetValues`]).
    Map(usize),
    /// `$1`…`$9`: a capture of the regex a `rewrite` matched (empty
    /// elsewhere).
    Capture(u8),
    /// `$document_root`: the `root` or `alias` path in force.
    DocumentRoot,
    /// `$request_filename`: the file `$uri` names under it.
    RequestFilename,
    /// `$proxy_host`.
    ProxyHost,
    /// `$hostname`: the machine's name, lower-cased, as nginx reads it at
    /// start.
    Hostname,
    /// `$request_id`: 32 hex digits, random, one per request.
    RequestId,
    /// `$pid`: ferry's process id.
    Pid,
    RemoteAddr,
    RemotePort,
    /// `$realip_remote_addr`, `$realip_remote_port`: the TCP peer's, before
    /// `set_real_ip_from` replaced it.
    RealipRemoteAddr,
    RealipRemotePort,
    /// `$proxy_protocol_addr`, `$proxy_protocol_port` and the `_server_`
    /// pair: the PROXY protocol header's source and destination (empty
    /// without one).
    ProxyProtocolAddr,
    ProxyProtocolPort,
    ProxyProtocolServerAddr,
    ProxyProtocolServerPort,
    /// The request-target as sent (`$request_uri`).
    RequestUri,
    /// The path, without the query (`$uri`).
    Uri,
    /// The query, without `?` (`$args`, `$query_string`).
    Args,
    /// `Host` without port, lower-cased, else the server name (`$host`).
    Host,
    RequestMethod,
    Scheme,
    /// `on` over TLS, else empty (`$https`).
    Https,
    /// The TLS session's facts (`$ssl_protocol`, `$ssl_cipher`,
    /// `$ssl_server_name`, `$ssl_session_reused`); empty without TLS.
    SslProtocol,
    SslCipher,
    SslServerName,
    SslSessionReused,
    /// `$ssl_early_data`: always empty, as nginx's is without
    /// `ssl_early_data on` (ferry takes no TLS early data).
    SslEarlyData,
    /// A request field by name (`$http_user_agent`: `User-Agent`).
    Http(String),
    /// A query argument by name (`$arg_id`).
    Arg(String),
    /// A cookie by name (`$cookie_session`), from the `Cookie` fields.
    Cookie(String),
    /// `?` when the request has arguments, else empty (`$is_args`).
    IsArgs,
    /// `GET /path HTTP/1.1` (`$request`).
    Request,
    ServerProtocol,
    /// `X-Forwarded-For` with the client address appended.
    ProxyAddXForwardedFor,
    /// The server's first name (`$server_name`).
    ServerName,
    ServerPort,
    /// The user name of a `Basic` Authorization field (checked or not).
    RemoteUser,
    /// `$limit_rate`, nginx's `r->limit_rate`: in a request, what `set
    /// $limit_rate` gave it, in bytes (0 without it); in a log line, the
    /// rate the response was paced at. `set`: the variable's position
    /// among the `map`/`set` names when the file sets it.
    LimitRate {
        set: Option<usize>,
    },
    // ----- known only once the response is done: `log_format` only -----
    Status,
    BodyBytesSent,
    BytesSent,
    RequestLength,
    RequestTime,
    TimeLocal,
    TimeIso8601,
    Msec,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamConnectTime,
    UpstreamHeaderTime,
    UpstreamResponseTime,
    /// The connection's serial number (`$connection`).
    Connection,
    ConnectionRequests,
}

impl Variable {
    /// Whether the value can be read while the request is handled, so
    /// outside `log_format` too.
    pub fn is_request_time(&self) -> bool {
        !self.is_log_only()
    }

    /// Whether a log line takes the value from the finished exchange
    /// instead of capturing it when the request head arrived.
    pub fn is_response_time(&self) -> bool {
        self.is_log_only() || matches!(self, Variable::LimitRate { .. })
    }

    fn is_log_only(&self) -> bool {
        matches!(
            self,
            Variable::Status
                | Variable::BodyBytesSent
                | Variable::BytesSent
                | Variable::RequestLength
                | Variable::RequestTime
                | Variable::TimeLocal
                | Variable::TimeIso8601
                | Variable::Msec
                | Variable::UpstreamAddr
                | Variable::UpstreamStatus
                | Variable::UpstreamConnectTime
                | Variable::UpstreamHeaderTime
                | Variable::UpstreamResponseTime
                | Variable::Connection
                | Variable::ConnectionRequests
        )
    }

    /// Whether nginx (and ferry) define a variable of this name.
    pub fn is_builtin(name: &str) -> bool {
        Variable::from_name(name).is_some()
    }

    /// Whether `set` may give a built-in variable a value (nginx's
    /// changeable variables with a set handler).
    pub fn is_settable(name: &str) -> bool {
        name == "limit_rate"
    }

    pub(super) fn from_name(name: &str) -> Option<Variable> {
        Some(match name {
            "remote_addr" | "binary_remote_addr" => Variable::RemoteAddr,
            "remote_port" => Variable::RemotePort,
            "realip_remote_addr" => Variable::RealipRemoteAddr,
            "realip_remote_port" => Variable::RealipRemotePort,
            "proxy_protocol_addr" => Variable::ProxyProtocolAddr,
            "proxy_protocol_port" => Variable::ProxyProtocolPort,
            "proxy_protocol_server_addr" => Variable::ProxyProtocolServerAddr,
            "proxy_protocol_server_port" => Variable::ProxyProtocolServerPort,
            "request_uri" => Variable::RequestUri,
            "uri" | "document_uri" => Variable::Uri,
            "document_root" => Variable::DocumentRoot,
            "proxy_host" => Variable::ProxyHost,
            "request_filename" => Variable::RequestFilename,
            "args" | "query_string" => Variable::Args,
            "is_args" => Variable::IsArgs,
            // The request's fields as sent, as `$http_content_type` reads.
            "content_type" => Variable::Http("content-type".into()),
            "content_length" => Variable::Http("content-length".into()),
            "host" => Variable::Host,
            "request_method" => Variable::RequestMethod,
            "scheme" => Variable::Scheme,
            "https" => Variable::Https,
            "ssl_protocol" => Variable::SslProtocol,
            "ssl_cipher" => Variable::SslCipher,
            "ssl_server_name" => Variable::SslServerName,
            "ssl_session_reused" => Variable::SslSessionReused,
            "ssl_early_data" => Variable::SslEarlyData,
            "request" => Variable::Request,
            "server_protocol" => Variable::ServerProtocol,
            "proxy_add_x_forwarded_for" => Variable::ProxyAddXForwardedFor,
            "server_name" => Variable::ServerName,
            "server_port" => Variable::ServerPort,
            "remote_user" => Variable::RemoteUser,
            "limit_rate" => Variable::LimitRate { set: None },
            "status" => Variable::Status,
            "body_bytes_sent" => Variable::BodyBytesSent,
            "bytes_sent" => Variable::BytesSent,
            "request_length" => Variable::RequestLength,
            "request_time" => Variable::RequestTime,
            "time_local" => Variable::TimeLocal,
            "time_iso8601" => Variable::TimeIso8601,
            "msec" => Variable::Msec,
            "upstream_addr" => Variable::UpstreamAddr,
            "upstream_status" => Variable::UpstreamStatus,
            "upstream_connect_time" => Variable::UpstreamConnectTime,
            "upstream_header_time" => Variable::UpstreamHeaderTime,
            "upstream_response_time" => Variable::UpstreamResponseTime,
            "connection" => Variable::Connection,
            "connection_requests" => Variable::ConnectionRequests,
            "request_id" => Variable::RequestId,
            "pid" => Variable::Pid,
            "hostname" => Variable::Hostname,
            _ => {
                if let Some(field) = name.strip_prefix("http_") {
                    Variable::Http(field.replace('_', "-"))
                } else if let Some(arg) = name.strip_prefix("arg_") {
                    Variable::Arg(arg.to_string())
                } else if let Some(cookie) = name.strip_prefix("cookie_") {
                    Variable::Cookie(cookie.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}
