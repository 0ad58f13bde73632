//! What an upstream group is, as the configuration describes it: its
//! servers with their weights and failure limits, and how it balances. The
//! configuration builds groups (`upstream` blocks, `proxy_pass HOST:PORT`);
//! the balancer and the pools read them.
//!
//! In the course (docs/learn): chapter 7, "The order": upstreams (chapters 4
//! and 6 at full size).

use std::time::Duration;

use super::addr::ServerAddr;

/// How a group picks a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    IpHash,
    /// `hash KEY [consistent]`; the key is compiled.
    Hash {
        key: crate::variables::Template,
        consistent: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamServer {
    pub addr: ServerAddr,
    /// As written in the configuration, for logs.
    pub name: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
}

/// An `upstream` block, or the implicit group of `proxy_pass http://host:port`.
#[derive(Clone, Debug)]
pub struct UpstreamGroup {
    pub name: String,
    /// Made by `proxy_pass http[s]://HOST[:PORT]`, not an `upstream` block.
    pub implicit: bool,
    /// A `stream` block's group: http's `proxy_pass` never names it.
    pub stream: bool,
    pub servers: Vec<UpstreamServer>,
    pub balance: Balance,
    /// Idle connections kept per server: `keepalive N` (nginx's meaning),
    /// or, without the directive, as many as the server's recent peak of
    /// connections in use (see `Upstreams::check_in`).
    pub keepalive: Option<usize>,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
}

impl UpstreamGroup {
    /// The implicit group of `proxy_pass http://ADDR`.
    pub fn single(addr: ServerAddr) -> UpstreamGroup {
        UpstreamGroup {
            name: addr.to_string(),
            implicit: true,
            stream: false,
            servers: vec![UpstreamServer {
                addr,
                name: addr.to_string(),
                weight: 1,
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                backup: false,
                down: false,
            }],
            balance: Balance::RoundRobin,
            keepalive: None,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 1000,
        }
    }
}
