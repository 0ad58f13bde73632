//! The validated, typed settings the event loop runs with, and how they are
//! read from an nginx.conf.
//!
//! Two stages, as in ripgrep's flags: [`parse`] turns the text (through
//! [`lexer`]) into a tree of directives with file:line spans, and
//! [`directives`] checks that tree against what ferry supports and fills a
//! [`Config`] over nginx's defaults. Command-line flags ([`crate::cli`])
//! apply on top. Field names follow nginx's directives.

pub mod directives;
pub mod lexer;
pub mod parse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::{ConfigError, SourceFile};

/// What `ferry` runs without `-c`: the seed post's setup, as an nginx.conf
/// (`ferry -T` prints it).
pub const EMBEDDED_DEFAULT: &str = "\
# ferry's embedded default: the seed post's setup.
events {
    worker_connections 512;
}

http {
    server {
        listen 127.0.0.1:8080;

        location / {
            proxy_pass http://127.0.0.1:3000;
        }
    }
}
";

/// How the embedded default is named in messages.
pub const EMBEDDED_NAME: &str = "(embedded default)";

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
    Off,
}

/// `error_log FILE LEVEL`: a file (or stderr) and an env_logger filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLogConfig {
    pub path: Option<PathBuf>,
    pub filter: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to accept clients on (`listen`).
    pub listen: Vec<SocketAddr>,
    /// The upstream server requests are proxied to (`proxy_pass`).
    pub upstream: SocketAddr,
    /// `upstream` as text, sent as `Host` when a client sent none (nginx's
    /// `$proxy_host`).
    pub upstream_host: String,
    /// Capacity of each direction's ring buffer (nginx: `proxy_buffer_size`).
    pub buffer_size: usize,
    /// Largest request or response head (nginx: `large_client_header_buffers`).
    pub max_head: usize,
    /// Largest request body; 0 means no limit (`client_max_body_size`).
    pub client_max_body_size: u64,
    /// Idle connections kept per upstream server (`keepalive`).
    pub upstream_keepalive: usize,
    /// Requests one upstream connection may carry (the upstream block's
    /// `keepalive_requests`).
    pub upstream_keepalive_requests: u32,
    /// `error_log`, when the configuration sets one.
    pub error_log: Option<ErrorLogConfig>,
    /// Requests one client connection may carry (`keepalive_requests`).
    pub keepalive_requests: u32,
    /// How long a closing connection keeps reading (and discarding) what the
    /// client still sends, so the response is not destroyed by a TCP reset
    /// (`lingering_time` / `lingering_timeout`).
    pub lingering_time: Duration,
    pub lingering_timeout: Duration,
    pub access_log: AccessLogTarget,
    /// Time for a whole request head (`client_header_timeout`), also the
    /// wait for a new connection's first request.
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body (`client_body_timeout`).
    pub client_body_timeout: Duration,
    /// Idle time allowed between requests; 0 disables keep-alive
    /// (`keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// Longest pause between two writes to a client (`send_timeout`).
    pub send_timeout: Duration,
    pub proxy_connect_timeout: Duration,
    /// Longest pause between two writes to the upstream (`proxy_send_timeout`).
    pub proxy_send_timeout: Duration,
    /// Longest pause between two reads from the upstream (`proxy_read_timeout`).
    pub proxy_read_timeout: Duration,
    /// How long an idle pooled upstream connection is kept (the upstream
    /// block's `keepalive_timeout`).
    pub upstream_keepalive_timeout: Duration,
    /// Client and upstream connections together (`worker_connections`).
    pub worker_connections: usize,
    /// Buffer sets (2 x buffer_size each) lent at once; a connection that
    /// finds none waits for one.
    pub max_buffer_sets: usize,
    /// A path answered by ferry itself with its counters, for tests and
    /// debugging; off unless set.
    pub status_path: Option<String>,
}

impl Config {
    /// The seed's setup: listen on 127.0.0.1:8080, proxy to 127.0.0.1:3000.
    pub fn default_for(listen: SocketAddr, upstream: SocketAddr) -> Config {
        Config {
            listen: vec![listen],
            upstream,
            upstream_host: upstream.to_string(),
            buffer_size: 16 * 1024,
            max_head: 8 * 1024,
            client_max_body_size: 1024 * 1024,
            upstream_keepalive: 32,
            upstream_keepalive_requests: 1000,
            error_log: None,
            keepalive_requests: 1000,
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            access_log: AccessLogTarget::Stdout,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            proxy_connect_timeout: Duration::from_secs(60),
            proxy_send_timeout: Duration::from_secs(60),
            proxy_read_timeout: Duration::from_secs(60),
            upstream_keepalive_timeout: Duration::from_secs(60),
            worker_connections: 512,
            max_buffer_sets: 512,
            status_path: None,
        }
    }
}

impl Config {
    pub fn upstream_host(&self) -> &str {
        &self.upstream_host
    }

    pub fn set_upstream(&mut self, upstream: SocketAddr) {
        self.upstream = upstream;
        self.upstream_host = upstream.to_string();
    }
}

/// A configuration read from a file (or the embedded default), with the
/// files it came from, for `ferry -T`.
pub struct Loaded {
    pub config: Config,
    pub files: Vec<SourceFile>,
}

/// Reads and validates `path`, or the embedded default when `None`.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (tree, files) = match path {
        Some(path) => parse::parse_file(path)?,
        None => parse::parse_text(EMBEDDED_NAME, EMBEDDED_DEFAULT)?,
    };
    let config = directives::build(&tree, Config::default())?;
    Ok(Loaded { config, files })
}

impl Default for Config {
    fn default() -> Config {
        Config::default_for(
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            SocketAddr::from(([127, 0, 0, 1], 3000)),
        )
    }
}

/// Parses an nginx size: `1024`, `16k`, `1m`, `1g` (case-insensitive).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, ' '),
    };
    let multiplier = match unit {
        ' ' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Parses an nginx time: `60`, `60s`, `500ms`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "" | "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(value).ok()?)?)?;
    }
    Some(total)
}

impl Config {
    /// Sets one nginx directive by name, as `--set name=value` does.
    pub fn set_directive(&mut self, name: &str, value: &str) -> Result<(), String> {
        let duration =
            || parse_duration(value).ok_or_else(|| format!("invalid time \"{value}\" in {name}"));
        let size =
            || parse_size(value).ok_or_else(|| format!("invalid size \"{value}\" in {name}"));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("invalid number \"{value}\" in {name}"))
        };
        match name {
            "client_header_timeout" => self.client_header_timeout = duration()?,
            "client_body_timeout" => self.client_body_timeout = duration()?,
            "keepalive_timeout" => self.keepalive_timeout = duration()?,
            "send_timeout" => self.send_timeout = duration()?,
            "proxy_connect_timeout" => self.proxy_connect_timeout = duration()?,
            "proxy_send_timeout" => self.proxy_send_timeout = duration()?,
            "proxy_read_timeout" => self.proxy_read_timeout = duration()?,
            "upstream_keepalive_timeout" => self.upstream_keepalive_timeout = duration()?,
            "lingering_time" => self.lingering_time = duration()?,
            "lingering_timeout" => self.lingering_timeout = duration()?,
            "keepalive_requests" => {
                self.keepalive_requests =
                    u32::try_from(number()?).map_err(|_| format!("{name} is too large"))?
            }
            "worker_connections" => self.worker_connections = number()?,
            "client_max_body_size" => self.client_max_body_size = size()?,
            _ => return Err(format!("unknown directive \"{name}\" in --set")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_nginx() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("75s"), Some(Duration::from_secs(75)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "s", "1x", "-1s", "1.5s", "99999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn directives_by_name() {
        let mut config = Config::default();
        config.set_directive("proxy_read_timeout", "2s").unwrap();
        assert_eq!(config.proxy_read_timeout, Duration::from_secs(2));
        config.set_directive("keepalive_requests", "3").unwrap();
        assert_eq!(config.keepalive_requests, 3);
        assert!(config.set_directive("gzip", "on").is_err());
        assert!(config.set_directive("send_timeout", "soon").is_err());
    }

    #[test]
    fn sizes_like_nginx() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16k"), Some(16384));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "k", "1x", "-1", "1.5m", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
