//! The `stream { … }` block: nginx's TCP proxy (ngx_stream_core_module,
//! ngx_stream_proxy_module, ngx_stream_upstream_module). A stream server
//! accepts connections and copies their bytes to an upstream and back, with
//! no HTTP in between; `proxy_protocol on` opens each upstream connection
//! with a PROXY protocol v1 line naming the client, which is how nginx (and
//! so ferry) tells HAProxy-style backends who the client is.
//!
//! Its directives are a namespace of their own, as nginx's stream modules
//! are: `server`, `listen`, `upstream` and `proxy_*` mean stream things
//! here, so this file holds its own table, looked up only in the stream
//! contexts (`find`). What the connection does with it is in
//! `crate::connection::stream`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::net::SocketAddr;
use std::time::Duration;

use super::listen::{listen_directive, Listen};
use super::upstream::{upstream_address, upstream_block};
use super::{
    check_size, duration, flag, not_yet, number, spec, Arity, Context, Directive, Handler, Spec,
};
use crate::config::parse::ConfigError;
use crate::config::{Config, ListenConfig, UpstreamGroup};

use Context::{Stream, StreamServer, StreamUpstream};

const SS: &[Context] = &[Stream, StreamServer];

/// A stream or stream-server line with one value, read where the stream
/// servers are built (`build_stream`), as its `proxy_*` lines are.
const fn one_value(name: &'static str) -> Spec {
    spec(name, SS, Arity::Exactly(1), Handler::Structure)
}

/// The stream modules' directives (nginx 1.22's names). Values set in
/// `stream` are inherited by its servers, as nginx merges them.
pub(super) const DIRECTIVES: &[Spec] = &[
    // A block in `stream` (see `check`), a server line in `upstream`.
    spec(
        "server",
        &[Stream, StreamUpstream],
        Arity::AtLeast(1),
        Handler::Structure,
    )
    .repeatable(),
    spec("upstream", &[Stream], Arity::Exactly(1), Handler::Structure)
        .block()
        .repeatable(),
    spec(
        "listen",
        &[StreamServer],
        Arity::AtLeast(1),
        Handler::Structure,
    )
    .repeatable(),
    spec(
        "proxy_pass",
        &[StreamServer],
        Arity::Exactly(1),
        Handler::Structure,
    ),
    one_value("proxy_protocol"),
    one_value("proxy_connect_timeout"),
    one_value("proxy_timeout"),
    one_value("proxy_half_close"),
    one_value("proxy_next_upstream"),
    one_value("proxy_next_upstream_tries"),
    one_value("proxy_next_upstream_timeout"),
    spec(
        "proxy_buffer_size",
        SS,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_size,
            why: "each direction uses ferry's ring buffer (`proxy_buffer_size` of http)",
        },
    ),
    // The upstream block's own lines; `server` there is a simple directive
    // and is read by `upstream_block`, as in http.
    spec(
        "least_conn",
        &[StreamUpstream],
        Arity::Exactly(0),
        Handler::Structure,
    ),
    not_yet("hash"),
    not_yet("random"),
    not_yet("zone"),
    not_yet("access_log"),
    not_yet("log_format"),
    not_yet("error_log"),
    not_yet("resolver"),
    not_yet("resolver_timeout"),
    not_yet("tcp_nodelay"),
    not_yet("preread_buffer_size"),
    not_yet("preread_timeout"),
    not_yet("proxy_protocol_timeout"),
    not_yet("proxy_bind"),
    not_yet("proxy_download_rate"),
    not_yet("proxy_upload_rate"),
    not_yet("proxy_responses"),
    not_yet("proxy_requests"),
    not_yet("proxy_socket_keepalive"),
    not_yet("proxy_ssl"),
    not_yet("ssl_preread"),
    not_yet("ssl_certificate"),
    not_yet("ssl_certificate_key"),
    not_yet("set_real_ip_from"),
    not_yet("allow"),
    not_yet("deny"),
    not_yet("limit_conn"),
    not_yet("limit_conn_zone"),
    not_yet("map"),
    not_yet("geo"),
    not_yet("split_clients"),
    not_yet("return"),
    not_yet("set"),
    not_yet("variables_hash_max_size"),
    not_yet("variables_hash_bucket_size"),
];

/// A directive of the stream modules, by name.
pub(super) fn find(name: &str) -> Option<&'static Spec> {
    DIRECTIVES.iter().find(|spec| spec.name == name)
}

/// A stream server, as the connection runs it.
#[derive(Clone, Copy, Debug)]
pub struct StreamServerConfig {
    /// Its upstream group in `Config::upstreams`.
    pub group: usize,
    /// `proxy_protocol on`: a PROXY v1 line opens each upstream connection.
    pub proxy_protocol: bool,
    pub connect_timeout: Duration,
    /// `proxy_timeout`: the longest time with no byte moved either way.
    pub timeout: Duration,
    /// `proxy_half_close`: pass one side's end on and keep the other
    /// direction open; without it (nginx's default) either end ends the
    /// session once what came before it is delivered.
    pub half_close: bool,
    /// `proxy_next_upstream`, `…_tries` (0: no limit), `…_timeout` (zero:
    /// none): whether a failed connect moves on to another server.
    pub next_upstream: bool,
    pub next_upstream_tries: u32,
    pub next_upstream_timeout: Duration,
    /// Its first `listen` address, for log lines (nginx's `server:`).
    pub listen: SocketAddr,
}

/// The values a `stream` or `server` level sets, before inheritance.
#[derive(Clone, Copy, Default)]
struct Level {
    proxy_protocol: Option<bool>,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    half_close: Option<bool>,
    next_upstream: Option<bool>,
    next_upstream_tries: Option<u32>,
    next_upstream_timeout: Option<Duration>,
}

impl Level {
    fn read(block: &[Directive]) -> Result<Level, ConfigError> {
        let mut level = Level::default();
        let mut seen: Vec<&str> = Vec::new();
        for directive in block {
            let name = directive.name.as_str();
            if find(name).is_some_and(|spec| !spec.repeatable) {
                if seen.contains(&name) {
                    return Err(ConfigError::at(
                        format!("\"{name}\" directive is duplicate"),
                        directive.location(),
                    ));
                }
                seen.push(name);
            }
            match name {
                "proxy_protocol" => level.proxy_protocol = Some(flag(directive)?),
                "proxy_connect_timeout" => level.connect_timeout = Some(duration(directive, 0)?),
                "proxy_timeout" => level.timeout = Some(duration(directive, 0)?),
                "proxy_half_close" => level.half_close = Some(flag(directive)?),
                "proxy_next_upstream" => level.next_upstream = Some(flag(directive)?),
                "proxy_next_upstream_tries" => {
                    level.next_upstream_tries = Some(number(directive, 0)?)
                }
                "proxy_next_upstream_timeout" => {
                    level.next_upstream_timeout = Some(duration(directive, 0)?)
                }
                "proxy_buffer_size" => check_size(directive)?,
                _ => {}
            }
        }
        Ok(level)
    }

    /// This level's values over `outer`'s.
    fn over(self, outer: Level) -> Level {
        Level {
            proxy_protocol: self.proxy_protocol.or(outer.proxy_protocol),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            timeout: self.timeout.or(outer.timeout),
            half_close: self.half_close.or(outer.half_close),
            next_upstream: self.next_upstream.or(outer.next_upstream),
            next_upstream_tries: self.next_upstream_tries.or(outer.next_upstream_tries),
            next_upstream_timeout: self.next_upstream_timeout.or(outer.next_upstream_timeout),
        }
    }
}

/// Builds the `stream` block into `config`: its upstream groups (after the
/// http ones, in a namespace of their own), its servers, and their listening
/// addresses (after http's).
pub(super) fn build_stream(stream: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    let block = stream.block.as_deref().unwrap_or_default();
    let outer = Level::read(block)?;
    let first_group = config.upstreams.len();
    for directive in block.iter().filter(|d| d.name == "upstream") {
        let name = &directive.args[0];
        if config.upstreams[first_group..]
            .iter()
            .any(|g| &g.name == name)
        {
            return Err(ConfigError::at(
                format!("duplicate upstream \"{name}\""),
                directive.location(),
            ));
        }
        let mut group = upstream_block(directive, &[])?;
        group.stream = true;
        config.upstreams.push(group);
    }
    for directive in block.iter().filter(|d| d.name == "server") {
        let server_block = directive.block.as_deref().unwrap_or_default();
        let level = Level::read(server_block)?.over(outer);
        let mut listens: Vec<Listen> = Vec::new();
        for inner in server_block.iter().filter(|d| d.name == "listen") {
            let listen = listen_directive(inner)?;
            if listen.ssl || listen.proxy_protocol || listen.default_server {
                let parameter = if listen.ssl {
                    "ssl"
                } else if listen.proxy_protocol {
                    "proxy_protocol"
                } else {
                    "default_server"
                };
                return Err(ConfigError::at(
                    format!("\"listen\" parameter \"{parameter}\" of a stream server is not supported yet"),
                    inner.location(),
                ));
            }
            if config.listen_position(listen.addr).is_some() {
                return Err(ConfigError::at(
                    format!("duplicate \"{}\" address and port pair", listen.addr),
                    inner.location(),
                ));
            }
            listens.push(listen);
        }
        let Some(first) = listens.first() else {
            return Err(ConfigError::at(
                "no \"listen\" is defined for server",
                directive.location(),
            ));
        };
        let listen = first.addr;
        let Some(pass) = server_block.iter().find(|d| d.name == "proxy_pass") else {
            return Err(ConfigError::at(
                "no handler for server",
                directive.location(),
            ));
        };
        let group = proxy_pass_group(pass, first_group, config)?;
        let index = config.stream_servers.len();
        config.stream_servers.push(StreamServerConfig {
            group,
            proxy_protocol: level.proxy_protocol.unwrap_or(false),
            connect_timeout: level.connect_timeout.unwrap_or(Duration::from_secs(60)),
            timeout: level.timeout.unwrap_or(Duration::from_secs(600)),
            half_close: level.half_close.unwrap_or(false),
            next_upstream: level.next_upstream.unwrap_or(true),
            next_upstream_tries: level.next_upstream_tries.unwrap_or(0),
            next_upstream_timeout: level.next_upstream_timeout.unwrap_or(Duration::ZERO),
            listen,
        });
        for Listen { addr, options, .. } in listens {
            config.listen.push(ListenConfig {
                addr,
                ssl: false,
                proxy_protocol: false,
                options,
                servers: Vec::new(),
                default_server: 0,
                stream: Some(index),
            });
        }
    }
    Ok(())
}

/// `proxy_pass NAME` (a stream `upstream` block) or `proxy_pass HOST:PORT`
/// (a group of its own, as nginx makes an implicit one). No scheme: a
/// stream has none.
fn proxy_pass_group(
    pass: &Directive,
    first_group: usize,
    config: &mut Config,
) -> Result<usize, ConfigError> {
    let target = &pass.args[0];
    if target.contains('$') {
        return Err(ConfigError::at(
            "variables in a stream \"proxy_pass\" are not supported yet",
            pass.location(),
        ));
    }
    if let Some(offset) = config.upstreams[first_group..]
        .iter()
        .position(|g| !g.implicit && &g.name == target)
    {
        return Ok(first_group + offset);
    }
    if target.contains("://") {
        return Err(ConfigError::at(
            format!("invalid URL prefix in \"{target}\""),
            pass.location(),
        ));
    }
    // nginx: a name without a port that is no upstream block is an error.
    let has_port = target.starts_with("unix:")
        || target
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && !port.contains(']'));
    if !has_port {
        return Err(ConfigError::at(
            format!("no port in upstream \"{target}\""),
            pass.location(),
        ));
    }
    let addr = upstream_address(target, 0).map_err(|m| ConfigError::at(m, pass.location()))?;
    let mut group = UpstreamGroup::single(addr);
    group.stream = true;
    config.upstreams.push(group);
    Ok(config.upstreams.len() - 1)
}

#[cfg(test)]
mod tests {
    fn load(text: &str) -> Result<crate::config::Config, String> {
        let (tree, _) =
            crate::config::parse::parse_text("test.conf", text).map_err(|e| e.to_string())?;
        super::super::build(&tree).map_err(|e| e.to_string())
    }

    #[test]
    fn a_stream_server_inherits_the_stream_level() {
        let config = load(
            "events {}
             stream {
                 proxy_protocol on;
                 proxy_timeout 5s;
                 upstream backends { server 127.0.0.1:9001; server 127.0.0.1:9002 backup; }
                 server { listen 127.0.0.1:9000; proxy_pass backends; proxy_timeout 7s; }
                 server { listen 127.0.0.1:9100; proxy_pass 127.0.0.1:9003; proxy_protocol off; }
             }",
        )
        .unwrap();
        assert_eq!(config.stream_servers.len(), 2);
        let (first, second) = (&config.stream_servers[0], &config.stream_servers[1]);
        assert!(first.proxy_protocol && !second.proxy_protocol);
        assert_eq!(first.timeout.as_secs(), 7);
        assert_eq!(second.timeout.as_secs(), 5);
        assert_eq!(first.connect_timeout.as_secs(), 60);
        assert_eq!(config.upstreams[first.group].servers.len(), 2);
        assert!(config.upstreams.iter().all(|g| g.stream));
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.listen[1].stream, Some(1));
        assert!(config.servers.is_empty());
    }

    #[test]
    fn stream_and_http_names_do_not_mix() {
        // An http upstream is not a stream one, and the reverse.
        let refused = load(
            "events {}
             http { upstream app { server 127.0.0.1:9001; }
                    server { listen 127.0.0.1:8000; location / { proxy_pass http://app; } } }
             stream { server { listen 127.0.0.1:9000; proxy_pass app; } }",
        )
        .unwrap_err();
        assert!(refused.contains("no port in upstream \"app\""), "{refused}");
        let refused = load(
            "events {}
             stream { server { listen 127.0.0.1:9000; proxy_pass 127.0.0.1:9001; proxy_set_header A b; } }",
        )
        .unwrap_err();
        assert!(
            refused.contains("unknown directive \"proxy_set_header\""),
            "{refused}"
        );
        let refused = load(
            "events {}
             stream { server { listen 127.0.0.1:9000; proxy_pass 127.0.0.1:9001; tcp_nodelay on; } }",
        )
        .unwrap_err();
        assert!(refused.contains("not supported yet"), "{refused}");
    }

    #[test]
    fn a_stream_server_needs_a_listen_and_a_proxy_pass() {
        let refused = load("events {} stream { server { proxy_pass 127.0.0.1:1; } }").unwrap_err();
        assert!(refused.contains("no \"listen\""), "{refused}");
        let refused = load("events {} stream { server { listen 127.0.0.1:9000; } }").unwrap_err();
        assert!(refused.contains("no handler for server"), "{refused}");
        let refused = load(
            "events {} stream { server { listen 127.0.0.1:9000; proxy_pass http://127.0.0.1:1; } }",
        )
        .unwrap_err();
        assert!(refused.contains("invalid URL prefix"), "{refused}");
    }
}
