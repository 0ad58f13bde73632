//! The validated, typed settings the event loop runs with.
//!
//! Today they come from command-line flags ([`crate::cli`]) over nginx's
//! defaults; the names follow nginx's directives so that the nginx.conf
//! reader can fill the same struct.

use std::net::SocketAddr;
use std::time::Duration;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
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
    /// Requests one client connection may carry (`keepalive_requests`).
    pub keepalive_requests: u32,
    /// How long a closing connection keeps reading (and discarding) what the
    /// client still sends, so the response is not destroyed by a TCP reset
    /// (`lingering_time` / `lingering_timeout`).
    pub lingering_time: Duration,
    pub lingering_timeout: Duration,
    pub access_log: AccessLogTarget,
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
            keepalive_requests: 1000,
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            access_log: AccessLogTarget::Stdout,
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

#[cfg(test)]
mod tests {
    use super::*;

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
