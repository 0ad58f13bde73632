//! The per-request settings: what each `location` (and, before a location
//! is chosen, each `server`) resolves from the directives in force at its
//! level, as nginx merges http -> server -> location; the access rules, the
//! header lists, the log formats and the retry conditions they carry.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::path::PathBuf;
use std::time::Duration;

use crate::http::headers::FieldNameRule;
use crate::variables::Template;

/// Where access log lines go.
/// nginx's default `charset_types`.
pub const CHARSET_TYPES: &[&str] = &[
    "text/html",
    "text/xml",
    "text/plain",
    "text/vnd.wap.wml",
    "application/javascript",
    "application/rss+xml",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
    Off,
}

/// Settings that apply per request and inherit http -> server -> location,
/// as in nginx: each location holds its own resolved copy.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Largest request body; 0 means no limit (`client_max_body_size`).
    pub client_max_body_size: u64,
    /// Time for a whole request head (`client_header_timeout`), also the
    /// wait for a new connection's first request.
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body (`client_body_timeout`).
    pub client_body_timeout: Duration,
    /// Idle time allowed between requests; 0 disables keep-alive
    /// (`keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// Requests one client connection may carry (`keepalive_requests`).
    pub keepalive_requests: u32,
    /// Longest pause between two writes to a client (`send_timeout`).
    pub send_timeout: Duration,
    /// Largest request head (nginx: `large_client_header_buffers`).
    pub max_head: usize,
    /// Largest response head from an upstream (nginx: `proxy_buffer_size`);
    /// `None`: the request head's limit.
    pub max_response_head: Option<usize>,
    /// How long a closing connection keeps reading (and discarding) what the
    /// client still sends, so the response is not destroyed by a TCP reset
    /// (`lingering_time` / `lingering_timeout`).
    pub lingering_time: Duration,
    pub lingering_timeout: Duration,
    pub proxy_connect_timeout: Duration,
    /// Longest pause between two writes to the upstream (`proxy_send_timeout`).
    pub proxy_send_timeout: Duration,
    /// Longest pause between two reads from the upstream (`proxy_read_timeout`).
    pub proxy_read_timeout: Duration,
    pub access_log: AccessLogTarget,
    /// When to try the next server (`proxy_next_upstream`), as
    /// [`next_upstream`] flags.
    pub next_upstream: u16,
    /// Most servers tried for one request; 0: no limit
    /// (`proxy_next_upstream_tries`).
    pub next_upstream_tries: u32,
    /// How long, from the first attempt, the request may still be passed
    /// to another server (`proxy_next_upstream_timeout`; zero: no limit).
    pub next_upstream_timeout: Duration,
    /// The access log's format: an index into `Config::log_formats`.
    pub log_format: usize,
    /// `access_log … if=CONDITION`: a line is written only when the
    /// condition's value is neither empty nor `0`.
    pub access_log_if: Option<Template>,
    /// `proxy_set_header NAME VALUE`: replace (or, with an empty value,
    /// drop) the field sent upstream. A level that has any replaces the
    /// inherited list, as in nginx.
    pub proxy_set_headers: Vec<(String, Template)>,
    /// `proxy_hide_header NAME`: response fields not passed to the client.
    pub hide_headers: Vec<String>,
    /// `proxy_pass_header NAME`: fields nginx hides by default (`X-Pad`,
    /// `X-Accel-…`) that are passed after all.
    pub pass_headers: Vec<String>,
    /// `proxy_pass_request_headers`: the client's fields go upstream (on).
    pub pass_request_headers: bool,
    /// `proxy_pass_request_body` / `proxy_set_body`: what body the upstream
    /// gets.
    pub upstream_body: UpstreamBody,
    /// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`.
    pub real_ip: crate::http::realip::RealIp,
    /// `auth_basic REALM` (`None`: off); checked only with a user file, as
    /// nginx does.
    pub auth_realm: Option<Template>,
    /// `auth_basic_user_file`, resolved against the configuration's
    /// directory.
    pub auth_user_file: Option<PathBuf>,
    /// `satisfy any`: allow/deny or the password suffices (else both are
    /// needed).
    pub satisfy_any: bool,
    /// `gzip` and its companions.
    pub gzip: crate::http::gzip::GzipSettings,
    /// `limit_req*` and `limit_conn*`.
    pub limits: Limits,
    /// `proxy_redirect`, resolved for the location: a `Location` or
    /// `Refresh` URL that starts with a pattern gets its replacement
    /// instead, the first pattern that matches winning.
    pub proxy_redirects: Vec<(String, String)>,
    /// `proxy_cookie_domain` / `proxy_cookie_path`: `Set-Cookie` domain and
    /// path attributes rewritten, the first rule that matches winning.
    pub cookie_domains: Vec<(String, String)>,
    pub cookie_paths: Vec<(String, String)>,
    /// `add_header NAME VALUE [always]`.
    pub add_headers: Vec<AddHeader>,
    /// `allow` / `deny`, in order; the first that matches decides, and a
    /// client no rule matches is allowed.
    pub access_rules: Vec<AccessRule>,
    /// The location's `limit_except` block, if it has one.
    pub limit_except: Option<LimitExcept>,
    /// Which request fields are passed on by their names
    /// (`ignore_invalid_headers`, `underscores_in_headers`).
    pub field_names: FieldNameRule,
    /// `root`, `index`, `try_files`, `types`…: how files are served.
    pub files: crate::files::FileSettings,
    /// `error_page` lines: a level with any replaces the inherited list.
    pub error_pages: Vec<ErrorPage>,
    /// `proxy_intercept_errors`: upstream answers of a listed code get the
    /// error page instead.
    pub intercept_errors: bool,
    /// `charset`: added to the `Content-Type` of answers whose type is one
    /// of `charset_types` and that name no charset (`None`: off).
    pub charset: Option<String>,
    pub charset_types: Vec<String>,
    /// `rewrite_log`: each `rewrite` that matches is logged (at info).
    pub rewrite_log: bool,
    /// `keepalive_disable`: `http::browsers` flags.
    pub keepalive_disable: u8,
}

impl Settings {
    /// The `charset` to name for a `Content-Type`, if any applies.
    pub fn charset_for(&self, content_type: &[u8]) -> Option<&str> {
        crate::http::headers::charset_for(
            content_type,
            self.charset.as_deref(),
            &self.charset_types,
        )
    }
}

/// `limit_except METHOD… { allow …; deny …; }`: requests with a method
/// not listed (GET brings HEAD) must pass these rules too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExcept {
    /// Upper case, as methods are matched (case-sensitively, RFC 9110).
    pub methods: Vec<String>,
    pub rules: Vec<AccessRule>,
}

impl LimitExcept {
    /// Whether a request with `method` is let through by `client`.
    pub fn allows(&self, method: &str, client: std::net::IpAddr) -> bool {
        let listed = self.methods.iter().any(|m| m == method)
            || (method == "HEAD" && self.methods.iter().any(|m| m == "GET"));
        listed || access_allowed(&self.rules, client)
    }
}

/// One `allow` or `deny` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    pub allow: bool,
    /// The network (address and prefix length); `None` for `all`.
    pub network: Option<(std::net::IpAddr, u8)>,
}

impl AccessRule {
    pub fn matches(&self, client: std::net::IpAddr) -> bool {
        self.network
            .is_none_or(|(network, prefix)| crate::cidr::holds(network, prefix, client))
    }
}

impl Settings {
    /// Whether nginx's ACCESS phase has anything to check here: allow/deny,
    /// `limit_except` or `auth_basic` (one test for requests without any).
    pub fn has_access_phase(&self) -> bool {
        !self.access_rules.is_empty() || self.limit_except.is_some() || self.auth_realm.is_some()
    }
}

/// The rule that decides for `client`: `Some(allow)`, or `None` when no
/// rule matches (nginx's access module then declines).
pub fn access_verdict(rules: &[AccessRule], client: std::net::IpAddr) -> Option<bool> {
    rules
        .iter()
        .find(|rule| rule.matches(client))
        .map(|rule| rule.allow)
}

/// Whether `client` may pass `rules` (nginx's access module).
pub fn access_allowed(rules: &[AccessRule], client: std::net::IpAddr) -> bool {
    rules
        .iter()
        .find(|rule| rule.matches(client))
        .is_none_or(|rule| rule.allow)
}

/// An `error_page CODE… [=[RESPONSE]] TARGET` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    pub codes: Vec<u16>,
    pub status: ErrorPageStatus,
    pub target: ErrorPageTarget,
}

/// The `limit_req*` and `limit_conn*` lines in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub requests: Vec<crate::limits::LimitReq>,
    pub request_status: u16,
    pub request_log_level: log::Level,
    pub request_dry_run: bool,
    pub connections: Vec<crate::limits::LimitConn>,
    pub connection_status: u16,
    pub connection_log_level: log::Level,
    pub connection_dry_run: bool,
    /// `limit_rate`: bytes per second to the client (0: unpaced), after
    /// `limit_rate_after` bytes.
    pub rate: u64,
    pub rate_after: u64,
    /// The same two with variables, rendered per request instead (nginx
    /// evaluates them at the response's first write).
    pub rate_rendered: Option<crate::variables::Template>,
    pub rate_after_rendered: Option<crate::variables::Template>,
}

/// A size that is a number, or has variables and is rendered per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeValue {
    Fixed(u64),
    Rendered(crate::variables::Template),
}

impl Limits {
    /// `limit_rate` and `limit_rate_after` vary per request (variables).
    pub fn rate_is_rendered(&self) -> bool {
        self.rate_rendered.is_some() || self.rate_after_rendered.is_some()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests: Vec::new(),
            request_status: 503,
            request_log_level: log::Level::Error,
            request_dry_run: false,
            connections: Vec::new(),
            connection_status: 503,
            connection_log_level: log::Level::Error,
            connection_dry_run: false,
            rate: 0,
            rate_after: 0,
            rate_rendered: None,
            rate_after_rendered: None,
        }
    }
}

impl Limits {
    /// Whether the PREACCESS phase has anything to do here.
    pub fn any(&self) -> bool {
        !self.requests.is_empty() || !self.connections.is_empty()
    }
}

/// The body a proxied request carries upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamBody {
    /// The client's body, streamed (the default).
    Client,
    /// `proxy_pass_request_body off`: none. The client's body is read and
    /// dropped, and the upstream head declares no body at all (nginx still
    /// sends the client's `Content-Length`, announcing bytes that never
    /// come; docs/nginx-differences.md).
    None,
    /// `proxy_set_body VALUE`: the value, with its own `Content-Length`;
    /// the client's body is read and dropped.
    Set(Template),
}

/// The status an error page is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPageStatus {
    /// The error's own (no `=`).
    Kept,
    /// `=CODE`.
    Replaced(u16),
    /// `=` alone: what the target answers (200 for a file).
    Target,
}

/// Where an error page comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorPageTarget {
    /// `/50x.html`: routed as a GET of that uri in the same server.
    Uri(String),
    /// `@name`.
    Named(String),
    /// `http://…`: a redirect (302 unless `=301`, `=303`, `=307`, `=308`).
    Redirect(String),
}

impl ErrorPage {
    /// The line for `status` in a location's list, if any.
    pub fn find(pages: &[ErrorPage], status: u16) -> Option<&ErrorPage> {
        pages.iter().find(|page| page.codes.contains(&status))
    }
}

/// An `add_header` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHeader {
    pub name: String,
    pub value: Template,
    /// Added to every response, not only to 2xx and 3xx.
    pub always: bool,
}

/// The built-in log formats' indexes in `Config::log_formats`.
pub const COMBINED_FORMAT: usize = 0;
pub const UPSTREAM_FORMAT: usize = 1;

/// nginx's `combined`.
const COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

/// ferry's default: `combined` plus the upstream's address, status and
/// timings.
const UPSTREAM: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time uct=$upstream_connect_time uht=$upstream_header_time urt=$upstream_response_time request_length=$request_length";

/// The formats every configuration has.
pub fn builtin_log_formats() -> Vec<(String, Template)> {
    [("combined", COMBINED), ("upstream", UPSTREAM)]
        .into_iter()
        .filter_map(|(name, text)| {
            Some((
                name.to_string(),
                Template::compile_log_format(text, crate::variables::LogEscape::Default, &[])
                    .ok()?,
            ))
        })
        .collect()
}

/// `proxy_next_upstream` conditions, as bit flags.
pub mod next_upstream {
    pub const ERROR: u16 = 1;
    pub const TIMEOUT: u16 = 1 << 1;
    pub const INVALID_HEADER: u16 = 1 << 2;
    pub const HTTP_500: u16 = 1 << 3;
    pub const HTTP_502: u16 = 1 << 4;
    pub const HTTP_503: u16 = 1 << 5;
    pub const HTTP_504: u16 = 1 << 6;
    pub const HTTP_429: u16 = 1 << 7;
    pub const NON_IDEMPOTENT: u16 = 1 << 8;

    /// The flag for a response status, if it has one.
    pub fn for_status(status: u16) -> u16 {
        match status {
            500 => HTTP_500,
            502 => HTTP_502,
            503 => HTTP_503,
            504 => HTTP_504,
            429 => HTTP_429,
            _ => 0,
        }
    }

    /// Parses one `proxy_next_upstream` argument.
    pub fn parse(word: &str) -> Option<u16> {
        Some(match word {
            "error" => ERROR,
            "timeout" => TIMEOUT,
            "invalid_header" => INVALID_HEADER,
            "http_500" => HTTP_500,
            "http_502" => HTTP_502,
            "http_503" => HTTP_503,
            "http_504" => HTTP_504,
            "http_429" => HTTP_429,
            "non_idempotent" => NON_IDEMPOTENT,
            "off" => 0,
            _ => return None,
        })
    }
}

impl Default for Settings {
    /// nginx's defaults.
    fn default() -> Settings {
        Settings {
            client_max_body_size: 1024 * 1024,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            send_timeout: Duration::from_secs(60),
            max_head: 8 * 1024,
            max_response_head: None,
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            proxy_connect_timeout: Duration::from_secs(60),
            proxy_send_timeout: Duration::from_secs(60),
            proxy_read_timeout: Duration::from_secs(60),
            access_log: AccessLogTarget::Stdout,
            next_upstream: next_upstream::ERROR | next_upstream::TIMEOUT,
            next_upstream_tries: 0,
            next_upstream_timeout: Duration::ZERO,
            log_format: UPSTREAM_FORMAT,
            access_log_if: None,
            proxy_set_headers: Vec::new(),
            hide_headers: Vec::new(),
            pass_headers: Vec::new(),
            pass_request_headers: true,
            upstream_body: UpstreamBody::Client,
            real_ip: crate::http::realip::RealIp::default(),
            auth_realm: None,
            auth_user_file: None,
            satisfy_any: false,
            gzip: crate::http::gzip::GzipSettings::default(),
            limits: Limits::default(),
            proxy_redirects: Vec::new(),
            cookie_domains: Vec::new(),
            cookie_paths: Vec::new(),
            add_headers: Vec::new(),
            access_rules: Vec::new(),
            limit_except: None,
            field_names: FieldNameRule::default(),
            files: crate::files::FileSettings::default(),
            error_pages: Vec::new(),
            intercept_errors: false,
            charset: None,
            rewrite_log: false,
            keepalive_disable: crate::http::browsers::MSIE6,
            charset_types: CHARSET_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }
}
