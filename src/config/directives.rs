//! The directives ferry understands: where each may appear, how many
//! arguments it takes, and what it sets in [`Config`].
//!
//! Validation follows nginx's order and wording, so that a file either means
//! the same to both or is refused with the message nginx would print:
//! `unknown directive "x"`, `"x" directive is not allowed here`,
//! `invalid number of arguments in "x" directive`, `"x" directive is
//! duplicate`, `host not found in upstream "x"`. Directives nginx accepts but
//! ferry does not implement yet are refused with a message that says so,
//! never ignored: a file ferry runs must mean what it means to nginx.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{ConfigError, Directive};
use super::{
    parse_duration, parse_size, AccessLogTarget, AccessRule, Action, AddHeader, Balance, Config,
    ErrorLogConfig, ListenerRoutes, LocationConfig, LocationMatch, ServerConfig, ServerName,
    Settings, UpstreamGroup, UpstreamServer,
};
use crate::variables::Template;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Main,
    Events,
    Http,
    Server,
    Location,
    Upstream,
}

#[derive(Clone, Copy, Debug)]
enum Arity {
    Exactly(usize),
    Between(usize, usize),
    AtLeast(usize),
}

impl Arity {
    fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::Between(low, high) => (low..=high).contains(&n),
            Arity::AtLeast(k) => n >= k,
        }
    }
}

struct Spec {
    name: &'static str,
    contexts: &'static [Context],
    arity: Arity,
    block: bool,
}

use Context::{Events, Http, Location, Main, Server, Upstream};

const HSL: &[Context] = &[Http, Server, Location];
const HS: &[Context] = &[Http, Server];

/// Every directive ferry accepts. Order is irrelevant; names are unique.
const SPECS: &[Spec] = &[
    // main
    spec("worker_processes", &[Main], Arity::Exactly(1), false),
    spec(
        "error_log",
        &[Main, Http, Server, Location],
        Arity::Between(1, 2),
        false,
    ),
    spec("pid", &[Main], Arity::Exactly(1), false),
    spec("worker_shutdown_timeout", &[Main], Arity::Exactly(1), false),
    spec("worker_cpu_affinity", &[Main], Arity::AtLeast(1), false),
    spec("user", &[Main], Arity::Between(1, 2), false),
    spec("daemon", &[Main], Arity::Exactly(1), false),
    spec("master_process", &[Main], Arity::Exactly(1), false),
    spec("worker_rlimit_nofile", &[Main], Arity::Exactly(1), false),
    spec("events", &[Main], Arity::Exactly(0), true),
    spec("http", &[Main], Arity::Exactly(0), true),
    // events
    spec("worker_connections", &[Events], Arity::Exactly(1), false),
    spec("use", &[Events], Arity::Exactly(1), false),
    spec("multi_accept", &[Events], Arity::Exactly(1), false),
    // http: accepted, meaningless to a proxy that serves no files
    spec("sendfile", HSL, Arity::Exactly(1), false),
    spec("tcp_nopush", HSL, Arity::Exactly(1), false),
    spec("tcp_nodelay", HSL, Arity::Exactly(1), false),
    spec("types", HSL, Arity::Exactly(0), true),
    spec("default_type", HSL, Arity::Exactly(1), false),
    spec("server_tokens", HSL, Arity::Exactly(1), false),
    // http / server / location
    spec("access_log", HSL, Arity::Between(1, 3), false),
    spec("client_max_body_size", HSL, Arity::Exactly(1), false),
    spec("client_header_timeout", HS, Arity::Exactly(1), false),
    spec("client_body_timeout", HSL, Arity::Exactly(1), false),
    spec("send_timeout", HSL, Arity::Exactly(1), false),
    spec(
        "keepalive_timeout",
        &[Http, Server, Location, Upstream],
        Arity::Between(1, 2),
        false,
    ),
    spec(
        "keepalive_requests",
        &[Http, Server, Location, Upstream],
        Arity::Exactly(1),
        false,
    ),
    spec("large_client_header_buffers", HS, Arity::Exactly(2), false),
    spec("lingering_time", HSL, Arity::Exactly(1), false),
    spec("lingering_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_pass", &[Location], Arity::Exactly(1), false),
    spec("proxy_set_header", HSL, Arity::Exactly(2), false),
    spec("proxy_hide_header", HSL, Arity::Exactly(1), false),
    spec("add_header", HSL, Arity::Between(2, 3), false),
    spec("log_format", &[Http], Arity::AtLeast(2), false),
    spec("proxy_http_version", HSL, Arity::Exactly(1), false),
    spec("proxy_connect_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_read_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_send_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_buffering", HSL, Arity::Exactly(1), false),
    spec("proxy_next_upstream", HSL, Arity::AtLeast(1), false),
    spec("proxy_next_upstream_tries", HSL, Arity::Exactly(1), false),
    spec("proxy_next_upstream_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_request_buffering", HSL, Arity::Exactly(1), false),
    // proxy_ssl (read by tls::upstream)
    spec("proxy_ssl_verify", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_verify_depth", HSL, Arity::Exactly(1), false),
    spec(
        "proxy_ssl_trusted_certificate",
        HSL,
        Arity::Exactly(1),
        false,
    ),
    spec("proxy_ssl_server_name", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_name", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_protocols", HSL, Arity::AtLeast(1), false),
    spec("proxy_ssl_ciphers", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_certificate", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_certificate_key", HSL, Arity::Exactly(1), false),
    spec("proxy_ssl_session_reuse", HSL, Arity::Exactly(1), false),
    // server
    spec("server", &[Http, Upstream], Arity::AtLeast(0), false),
    spec("listen", &[Server], Arity::AtLeast(1), false),
    spec("server_name", &[Server], Arity::AtLeast(1), false),
    spec("location", &[Server, Location], Arity::Between(1, 2), true),
    spec("return", &[Server, Location], Arity::Between(1, 2), false),
    // nginx also takes it at server level and ignores its argument.
    spec("stub_status", &[Location], Arity::Between(0, 1), false),
    // ssl (read by tls::config)
    spec("ssl_certificate", &[Http, Server], Arity::Exactly(1), false),
    spec(
        "ssl_certificate_key",
        &[Http, Server],
        Arity::Exactly(1),
        false,
    ),
    spec("ssl_protocols", &[Http, Server], Arity::AtLeast(1), false),
    spec("ssl_ciphers", &[Http, Server], Arity::Exactly(1), false),
    spec(
        "ssl_prefer_server_ciphers",
        &[Http, Server],
        Arity::Exactly(1),
        false,
    ),
    spec(
        "ssl_session_cache",
        &[Http, Server],
        Arity::Between(1, 2),
        false,
    ),
    spec(
        "ssl_session_timeout",
        &[Http, Server],
        Arity::Exactly(1),
        false,
    ),
    spec(
        "ssl_session_tickets",
        &[Http, Server],
        Arity::Exactly(1),
        false,
    ),
    spec("ssl_dhparam", &[Http, Server], Arity::Exactly(1), false),
    spec("ssl_ecdh_curve", &[Http, Server], Arity::Exactly(1), false),
    spec("ssl_stapling", &[Http, Server], Arity::Exactly(1), false),
    spec("allow", HSL, Arity::Exactly(1), false),
    spec("deny", HSL, Arity::Exactly(1), false),
    // upstream
    spec("upstream", &[Http], Arity::Exactly(1), true),
    spec("keepalive", &[Upstream], Arity::Exactly(1), false),
    spec("least_conn", &[Upstream], Arity::Exactly(0), false),
    spec("ip_hash", &[Upstream], Arity::Exactly(0), false),
    spec("hash", &[Upstream], Arity::Between(1, 2), false),
];

const fn spec(name: &'static str, contexts: &'static [Context], arity: Arity, block: bool) -> Spec {
    Spec {
        name,
        contexts,
        arity,
        block,
    }
}

fn find_spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.name == name)
}

/// Checks that every directive exists, is allowed where it is, has the right
/// number of arguments and the right shape (block or not).
fn check(directives: &[Directive], context: Context) -> Result<(), ConfigError> {
    for directive in directives {
        let name = directive.name.as_str();
        // `server` is a block in http and a simple directive in upstream.
        let is_server_block = name == "server" && context == Http;
        let Some(spec) = find_spec(name) else {
            return Err(ConfigError::at(
                format!("unknown directive \"{name}\""),
                directive.location(),
            ));
        };
        if !spec.contexts.contains(&context) {
            return Err(ConfigError::at(
                format!("\"{name}\" directive is not allowed here"),
                directive.location(),
            ));
        }
        let wants_block = spec.block || is_server_block;
        match (&directive.block, wants_block) {
            (None, true) => {
                return Err(ConfigError::at(
                    format!("directive \"{name}\" has no opening \"{{\""),
                    directive.location(),
                ))
            }
            (Some(_), false) => {
                return Err(ConfigError::at(
                    format!("directive \"{name}\" is not terminated by \";\""),
                    directive.location(),
                ))
            }
            _ => {}
        }
        let arity = if is_server_block {
            Arity::Exactly(0)
        } else {
            spec.arity
        };
        if !arity.accepts(directive.args.len())
            || (name == "server" && context == Upstream && directive.args.is_empty())
        {
            return Err(ConfigError::at(
                format!("invalid number of arguments in \"{name}\" directive"),
                directive.location(),
            ));
        }
        if let Some(block) = &directive.block {
            let inner = match name {
                "events" => Events,
                "http" => Http,
                "server" => Server,
                "location" => Location,
                "upstream" => Upstream,
                // `types { text/html html; }`: MIME types, not directives.
                _ => continue,
            };
            check(block, inner)?;
        }
    }
    Ok(())
}

/// Per-request settings that inherit http -> server -> location, as in
/// nginx: a value set at an inner level wins.
#[derive(Clone, Default)]
struct Inherited {
    client_max_body_size: Option<u64>,
    client_header_timeout: Option<Duration>,
    client_body_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u32>,
    max_head: Option<usize>,
    lingering_time: Option<Duration>,
    lingering_timeout: Option<Duration>,
    proxy_connect_timeout: Option<Duration>,
    proxy_read_timeout: Option<Duration>,
    proxy_send_timeout: Option<Duration>,
    access_log: Option<AccessLogTarget>,
    next_upstream: Option<u16>,
    next_upstream_tries: Option<u32>,
    next_upstream_timeout: Option<Duration>,
    log_format: Option<usize>,
    proxy_set_headers: Option<Vec<(String, Template)>>,
    hide_headers: Option<Vec<String>>,
    add_headers: Option<Vec<AddHeader>>,
    access_rules: Option<Vec<AccessRule>>,
    /// The `proxy_ssl_*` lines in force, at most one per name: read only
    /// where a location proxies to `https://` (`crate::tls::upstream`).
    proxy_ssl: Vec<Directive>,
}

impl Inherited {
    /// `self` (inner level) over `outer`.
    fn over(self, outer: &Inherited) -> Inherited {
        Inherited {
            client_max_body_size: self.client_max_body_size.or(outer.client_max_body_size),
            client_header_timeout: self.client_header_timeout.or(outer.client_header_timeout),
            client_body_timeout: self.client_body_timeout.or(outer.client_body_timeout),
            send_timeout: self.send_timeout.or(outer.send_timeout),
            keepalive_timeout: self.keepalive_timeout.or(outer.keepalive_timeout),
            keepalive_requests: self.keepalive_requests.or(outer.keepalive_requests),
            max_head: self.max_head.or(outer.max_head),
            lingering_time: self.lingering_time.or(outer.lingering_time),
            lingering_timeout: self.lingering_timeout.or(outer.lingering_timeout),
            proxy_connect_timeout: self.proxy_connect_timeout.or(outer.proxy_connect_timeout),
            proxy_read_timeout: self.proxy_read_timeout.or(outer.proxy_read_timeout),
            proxy_send_timeout: self.proxy_send_timeout.or(outer.proxy_send_timeout),
            access_log: self.access_log.clone().or_else(|| outer.access_log.clone()),
            next_upstream: self.next_upstream.or(outer.next_upstream),
            next_upstream_tries: self.next_upstream_tries.or(outer.next_upstream_tries),
            next_upstream_timeout: self.next_upstream_timeout.or(outer.next_upstream_timeout),
            log_format: self.log_format.or(outer.log_format),
            proxy_set_headers: self
                .proxy_set_headers
                .or_else(|| outer.proxy_set_headers.clone()),
            hide_headers: self.hide_headers.or_else(|| outer.hide_headers.clone()),
            add_headers: self.add_headers.or_else(|| outer.add_headers.clone()),
            access_rules: self.access_rules.or_else(|| outer.access_rules.clone()),
            proxy_ssl: {
                let mut lines = self.proxy_ssl;
                let inherited: Vec<Directive> = outer
                    .proxy_ssl
                    .iter()
                    .filter(|line| !lines.iter().any(|own| own.name == line.name))
                    .cloned()
                    .collect();
                lines.extend(inherited);
                lines
            },
        }
    }

    /// The settings in force: what is set here or above, else nginx's
    /// default.
    fn resolve(&self) -> Settings {
        let mut settings = Settings::default();
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field.clone() { settings.$field = value; })*
            };
        }
        set!(
            client_max_body_size,
            client_header_timeout,
            client_body_timeout,
            send_timeout,
            keepalive_timeout,
            keepalive_requests,
            max_head,
            lingering_time,
            lingering_timeout,
            proxy_connect_timeout,
            proxy_read_timeout,
            proxy_send_timeout,
            access_log,
            next_upstream,
            next_upstream_tries,
            next_upstream_timeout,
            log_format,
            proxy_set_headers,
            hide_headers,
            add_headers,
            access_rules,
        );
        settings
    }
}

/// Builds a [`Config`] from a parsed file.
pub fn build(tree: &[Directive]) -> Result<Config, ConfigError> {
    check(tree, Main)?;
    let mut config = Config::default();
    let mut http = None;
    for directive in tree {
        match directive.name.as_str() {
            "worker_processes" => config.worker_processes = worker_processes(directive)?,
            "error_log" => config.error_log = Some(error_log(directive)?),
            "pid" => config.pid = Some(PathBuf::from(&directive.args[0])),
            "user" => {
                let place = format!("{}:{}", directive.file.display(), directive.line);
                config.user = crate::privileges::resolve(
                    &directive.args[0],
                    directive.args.get(1).map(String::as_str),
                    &place,
                )
                .map_err(|message| ConfigError::at(message, directive.location()))?;
            }
            "worker_shutdown_timeout" => {
                config.shutdown_timeout = Some(duration(directive, 0)?);
            }
            "worker_cpu_affinity" => {
                // nginx's masks (`0101 1010`) would pin workers to sets of
                // CPUs; `auto` (one CPU each, in order) is what ferry does.
                if directive.args != ["auto"] {
                    return Err(ConfigError::at(
                        "CPU masks in \"worker_cpu_affinity\" are not supported yet; use \"auto\""
                            .to_string(),
                        directive.location(),
                    ));
                }
                config.worker_cpu_affinity = true;
            }
            "events" => {
                for inner in directive.block.iter().flatten() {
                    if inner.name == "worker_connections" {
                        config.worker_connections = number(inner, 0)?;
                        config.max_buffer_sets = config.worker_connections;
                    }
                }
            }
            "http" => {
                if http.is_some() {
                    return Err(ConfigError::at(
                        "\"http\" directive is duplicate",
                        directive.location(),
                    ));
                }
                http = Some(directive);
            }
            // daemon, master_process, worker_rlimit_nofile: process
            // management that ferry leaves to its supervisor.
            _ => {}
        }
    }
    let Some(http) = http else {
        return Err(ConfigError::nowhere(
            "no \"http\" block: ferry needs http { server { … } }",
        ));
    };
    build_http(http, &mut config)?;
    Ok(config)
}

/// The http block: upstream groups first (servers refer to them by name),
/// then servers, their listen addresses and locations.
fn build_http(http: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    let block = http.block.as_deref().unwrap_or_default();
    for directive in block.iter().filter(|d| d.name == "log_format") {
        let name = &directive.args[0];
        if config.log_formats.iter().any(|(known, _)| known == name) {
            return Err(ConfigError::at(
                format!("duplicate \"log_format\" name \"{name}\""),
                directive.location(),
            ));
        }
        let mut strings = &directive.args[1..];
        if strings.first().is_some_and(|s| s.starts_with("escape=")) {
            if strings[0] != "escape=default" {
                return Err(ConfigError::at(
                    format!("\"{}\" is not supported yet", strings[0]),
                    directive.location(),
                ));
            }
            strings = &strings[1..];
        }
        let template = Template::compile_log_format(&strings.concat())
            .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
        config.log_formats.push((name.clone(), template));
    }
    let http_settings = settings(block, config)?;
    config.http = http_settings.resolve();
    config.upstreams.clear();
    config.servers.clear();
    config.listen.clear();
    config.listen_ssl.clear();
    config.listeners.clear();
    for directive in block.iter().filter(|d| d.name == "upstream") {
        let name = &directive.args[0];
        if config.upstreams.iter().any(|g| &g.name == name) {
            return Err(ConfigError::at(
                format!("duplicate upstream \"{name}\""),
                directive.location(),
            ));
        }
        config.upstreams.push(upstream_block(directive)?);
    }
    let mut defaults: Vec<(SocketAddr, usize)> = Vec::new();
    for directive in block.iter().filter(|d| d.name == "server") {
        let index = config.servers.len();
        let server_block = directive.block.as_deref().unwrap_or_default();
        let server_settings = settings(server_block, config)?.over(&http_settings);
        let mut server = ServerConfig {
            names: Vec::new(),
            settings: server_settings.resolve(),
            locations: Vec::new(),
            top_level: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        };
        let mut listens = Vec::new();
        for inner in server_block {
            match inner.name.as_str() {
                "listen" => listens.push(listen_directive(inner)?),
                "server_name" => {
                    for name in &inner.args {
                        if let Some(server_name) = server_name(name, inner)? {
                            server.names.push(server_name);
                        }
                    }
                }
                _ => {}
            }
        }
        if listens.is_empty() {
            // nginx's default when run as root.
            listens.push(Listen {
                addr: SocketAddr::from(([0, 0, 0, 0], 80)),
                default_server: false,
                ssl: false,
            });
        }
        let listen_ssl = server_block
            .iter()
            .filter(|d| d.name == "listen")
            .zip(&listens)
            .find(|(_, listen)| listen.ssl)
            .map(|(directive, _)| directive);
        #[cfg(feature = "tls")]
        {
            let base = directive.file.parent().unwrap_or(std::path::Path::new("."));
            server.tls = crate::tls::config::server_tls(block, server_block, listen_ssl, base)?;
        }
        #[cfg(not(feature = "tls"))]
        if let Some(listen) = listen_ssl {
            return Err(ConfigError::at(
                "\"ssl\" on \"listen\": this ferry was built without TLS \
                 (cargo build with the default \"tls\" feature)",
                listen.location(),
            ));
        }
        // A server-level `return` answers everything, before any location.
        let server_return = server_block.iter().find(|d| d.name == "return");
        let mut top_level = Vec::new();
        for inner in server_block.iter().filter(|d| d.name == "location") {
            let location =
                build_location(inner, None, &server_settings, config, &mut server.locations)?;
            top_level.push(location);
        }
        if let Some(directive) = server_return {
            // Modelled as a prefix location "/" that no other can beat.
            let action = return_action(directive)?;
            server.locations.push(LocationConfig {
                matcher: LocationMatch::Prefix {
                    path: String::new(),
                    stops_regex: true,
                },
                settings: server.settings.clone(),
                action,
                nested: Vec::new(),
            });
            top_level = vec![server.locations.len() - 1];
        }
        server.top_level = top_level;
        config.servers.push(server);
        for Listen {
            addr,
            default_server,
            ssl,
        } in listens
        {
            let position = match config.listen.iter().position(|a| *a == addr) {
                Some(position) => {
                    // nginx: listen options belong to the socket; `ssl` on
                    // any line for the address makes it a TLS socket.
                    if let Some(tls) = config.listen_ssl.get_mut(position) {
                        *tls |= ssl;
                    }
                    position
                }
                None => {
                    config.listen.push(addr);
                    config.listen_ssl.push(ssl);
                    config.listeners.push(ListenerRoutes {
                        servers: Vec::new(),
                        default_server: index,
                    });
                    config.listen.len() - 1
                }
            };
            let routes = &mut config.listeners[position];
            if !routes.servers.contains(&index) {
                routes.servers.push(index);
            }
            if default_server {
                if defaults.iter().any(|(a, _)| *a == addr) {
                    return Err(ConfigError::at(
                        format!("a duplicate default server for {addr}"),
                        directive.location(),
                    ));
                }
                defaults.push((addr, index));
                routes.default_server = index;
            }
        }
    }
    if config.servers.is_empty() {
        return Err(ConfigError::at(
            "no \"server\" block in \"http\"",
            http.location(),
        ));
    }
    Ok(())
}

/// One `location` (and, recursively, its nested locations); returns its
/// index in `locations`.
fn build_location(
    directive: &Directive,
    parent: Option<&LocationMatch>,
    outer: &Inherited,
    config: &mut Config,
    locations: &mut Vec<LocationConfig>,
) -> Result<usize, ConfigError> {
    let matcher = location_match(directive)?;
    match (parent, &matcher) {
        (Some(LocationMatch::Exact(path)), _) => {
            return Err(ConfigError::at(
                format!(
                    "location \"{}\" cannot be inside the exact location \"{path}\"",
                    directive.args.join(" ")
                ),
                directive.location(),
            ))
        }
        (
            Some(LocationMatch::Prefix {
                path: outer_path, ..
            }),
            LocationMatch::Prefix { path, .. } | LocationMatch::Exact(path),
        ) if !path.starts_with(outer_path.as_str()) => {
            return Err(ConfigError::at(
                format!("location \"{path}\" is outside location \"{outer_path}\""),
                directive.location(),
            ))
        }
        _ => {}
    }
    let block = directive.block.as_deref().unwrap_or_default();
    let inherited = settings(block, config)?.over(outer);
    let proxy_pass = block.iter().find(|d| d.name == "proxy_pass");
    let returns = block.iter().find(|d| d.name == "return");
    let stub_status = block.iter().find(|d| d.name == "stub_status");
    if let (Some(directive), Some(_)) = (stub_status, proxy_pass) {
        // nginx lets the later of the two win; ferry refuses to guess.
        return Err(ConfigError::at(
            "\"stub_status\" and \"proxy_pass\" in one location are not supported",
            directive.location(),
        ));
    }
    let action = match (returns, proxy_pass) {
        (Some(directive), _) => return_action(directive)?,
        (None, _) if stub_status.is_some() => Action::StubStatus,
        (None, Some(directive)) => {
            let (group, uri, https) = proxy_target(directive, &matcher, config)?;
            let tls = match https {
                None => None,
                Some(proxy_host) => Some(upstream_tls(
                    directive,
                    &proxy_host,
                    &inherited.proxy_ssl,
                    config,
                )?),
            };
            Action::Proxy { group, uri, tls }
        }
        (None, None) => Action::NotFound,
    };
    let index = locations.len();
    locations.push(LocationConfig {
        matcher: matcher.clone(),
        settings: inherited.resolve(),
        action,
        nested: Vec::new(),
    });
    let mut nested = Vec::new();
    for inner in block.iter().filter(|d| d.name == "location") {
        nested.push(build_location(
            inner,
            Some(&matcher),
            &inherited,
            config,
            locations,
        )?);
    }
    if let Some(location) = locations.get_mut(index) {
        location.nested = nested;
    }
    Ok(index)
}

/// `location [= | ^~ | ~ | ~*] URI`.
fn location_match(directive: &Directive) -> Result<LocationMatch, ConfigError> {
    let args = &directive.args;
    let regex = |pattern: &str, case_insensitive: bool| {
        let pattern = if case_insensitive {
            format!("(?i){pattern}")
        } else {
            pattern.to_string()
        };
        regex_lite::Regex::new(&pattern).map_err(|e| {
            ConfigError::at(
                format!(
                    "invalid regular expression \"{}\": {e}",
                    args[args.len() - 1]
                ),
                directive.location(),
            )
        })
    };
    Ok(match args.as_slice() {
        [path] if path.starts_with('=') && path.len() > 1 => {
            LocationMatch::Exact(path[1..].to_string())
        }
        [path] if path.starts_with('~') && path.len() > 1 => {
            let (pattern, insensitive) = match path.strip_prefix("~*") {
                Some(rest) => (rest, true),
                None => (&path[1..], false),
            };
            LocationMatch::Regex(regex(pattern, insensitive)?)
        }
        [path] => LocationMatch::Prefix {
            path: path.clone(),
            stops_regex: false,
        },
        [modifier, path] => match modifier.as_str() {
            "=" => LocationMatch::Exact(path.clone()),
            "^~" => LocationMatch::Prefix {
                path: path.clone(),
                stops_regex: true,
            },
            "~" => LocationMatch::Regex(regex(path, false)?),
            "~*" => LocationMatch::Regex(regex(path, true)?),
            _ => {
                return Err(ConfigError::at(
                    format!("invalid location modifier \"{modifier}\""),
                    directive.location(),
                ))
            }
        },
        _ => {
            return Err(ConfigError::at(
                "invalid number of arguments in \"location\" directive",
                directive.location(),
            ))
        }
    })
}

/// `return CODE [TEXT]`, `return CODE URL` or `return URL` (302).
fn return_action(directive: &Directive) -> Result<Action, ConfigError> {
    let args = &directive.args;
    let template = |text: &String| -> Result<Option<Template>, ConfigError> {
        if !text.contains('$') {
            return Ok(None);
        }
        Template::compile(text)
            .map(Some)
            .map_err(|e| ConfigError::at(e.to_string(), directive.location()))
    };
    let is_url = |text: &str| text.starts_with("http://") || text.starts_with("https://");
    match args.as_slice() {
        [url] if is_url(url) => Ok(Action::Return {
            status: 302,
            text: Some(url.clone()),
            template: template(url)?,
        }),
        [code, rest @ ..] => {
            let status: u16 = code.parse().ok().filter(|s| *s <= 999).ok_or_else(|| {
                ConfigError::at(
                    format!("invalid return code \"{code}\""),
                    directive.location(),
                )
            })?;
            Ok(Action::Return {
                status,
                text: rest.first().cloned(),
                template: rest.first().map(template).transpose()?.flatten(),
            })
        }
        [] => Err(ConfigError::at(
            "invalid number of arguments in \"return\" directive",
            directive.location(),
        )),
    }
}

/// A `server_name` entry; `""` (no name) gives `None`.
fn server_name(name: &str, directive: &Directive) -> Result<Option<ServerName>, ConfigError> {
    if name.is_empty() {
        return Ok(None);
    }
    if let Some(pattern) = name.strip_prefix('~') {
        let regex = regex_lite::Regex::new(pattern).map_err(|e| {
            ConfigError::at(
                format!("invalid regular expression \"{pattern}\": {e}"),
                directive.location(),
            )
        })?;
        return Ok(Some(ServerName::Regex(regex)));
    }
    let name = name.to_ascii_lowercase();
    if let Some(rest) = name.strip_prefix("*.") {
        return Ok(Some(ServerName::LeadingWildcard {
            suffix: format!(".{rest}"),
            bare_too: false,
        }));
    }
    if let Some(rest) = name.strip_prefix('.') {
        return Ok(Some(ServerName::LeadingWildcard {
            suffix: format!(".{rest}"),
            bare_too: true,
        }));
    }
    if let Some(prefix) = name.strip_suffix(".*") {
        return Ok(Some(ServerName::TrailingWildcard(format!("{prefix}."))));
    }
    if name.contains('*') {
        return Err(ConfigError::at(
            format!("invalid server name or wildcard \"{name}\""),
            directive.location(),
        ));
    }
    Ok(Some(ServerName::Exact(name)))
}

/// `listen ADDR[:PORT] [default_server]`, `listen PORT`, `listen [::1]:PORT`.
/// One `listen` line.
struct Listen {
    addr: SocketAddr,
    default_server: bool,
    ssl: bool,
}

fn listen_directive(directive: &Directive) -> Result<Listen, ConfigError> {
    let mut default_server = false;
    let mut ssl = false;
    for parameter in &directive.args[1..] {
        match parameter.as_str() {
            "default_server" | "default" => default_server = true,
            "ssl" => ssl = true,
            "http2" => {
                log::warn!(
                    "\"http2\" is not served yet, clients use HTTP/1.1 (offered by ALPN) in {}:{}",
                    directive.file.display(),
                    directive.line
                );
            }
            _ => {
                return Err(ConfigError::at(
                    format!("\"listen\" parameter \"{parameter}\" is not supported yet"),
                    directive.location(),
                ))
            }
        }
    }
    let text = directive.args[0].as_str();
    let invalid = || {
        ConfigError::at(
            format!("invalid address \"{text}\" in \"listen\""),
            directive.location(),
        )
    };
    let addr = if let Ok(port) = text.parse::<u16>() {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else {
        let (host, port) = split_host_port(text, 80).ok_or_else(invalid)?;
        resolve(&host, port).ok_or_else(|| {
            ConfigError::at(
                format!("host not found in \"{text}\" of the \"listen\" directive"),
                directive.location(),
            )
        })?
    };
    if addr.port() == 0 {
        // nginx refuses it too; `--listen 127.0.0.1:0` picks a free port.
        return Err(ConfigError::at(
            format!("invalid port in \"{text}\" of the \"listen\" directive"),
            directive.location(),
        ));
    }
    Ok(Listen {
        addr,
        default_server,
        ssl,
    })
}

fn upstream_block(directive: &Directive) -> Result<UpstreamGroup, ConfigError> {
    let name = &directive.args[0];
    let mut group = UpstreamGroup {
        implicit: false,
        name: name.clone(),
        servers: Vec::new(),
        balance: Balance::RoundRobin,
        keepalive: None,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_requests: 1000,
    };
    let mut method_set = false;
    for inner in directive.block.iter().flatten() {
        let mut set_method = |balance: Balance| {
            if method_set {
                return Err(ConfigError::at(
                    "load balancing method redefined",
                    inner.location(),
                ));
            }
            method_set = true;
            group.balance = balance;
            Ok(())
        };
        match inner.name.as_str() {
            "least_conn" => set_method(Balance::LeastConn)?,
            "ip_hash" => set_method(Balance::IpHash)?,
            "hash" => {
                let consistent = match inner.args.get(1).map(String::as_str) {
                    None => false,
                    Some("consistent") => true,
                    Some(other) => {
                        return Err(ConfigError::at(
                            format!("invalid parameter \"{other}\""),
                            inner.location(),
                        ))
                    }
                };
                let key = crate::variables::Template::compile(&inner.args[0])
                    .map_err(|e| ConfigError::at(e.to_string(), inner.location()))?;
                set_method(Balance::Hash { key, consistent })?
            }
            _ => {}
        }
    }
    for inner in directive.block.iter().flatten() {
        match inner.name.as_str() {
            "server" => group.servers.push(upstream_server(inner, &group.balance)?),
            "keepalive" => group.keepalive = Some(number(inner, 0)?),
            "keepalive_timeout" => group.keepalive_timeout = duration(inner, 0)?,
            "keepalive_requests" => group.keepalive_requests = number(inner, 0)?,
            _ => {}
        }
    }
    if group.servers.is_empty() {
        return Err(ConfigError::at(
            format!("no servers are inside upstream \"{name}\""),
            directive.location(),
        ));
    }
    Ok(group)
}

/// `server ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down]`.
fn upstream_server(
    directive: &Directive,
    balance: &Balance,
) -> Result<UpstreamServer, ConfigError> {
    let text = &directive.args[0];
    let addr = upstream_address(text, 80)
        .map_err(|message| ConfigError::at(message, directive.location()))?;
    let mut server = UpstreamServer {
        addr,
        name: text.clone(),
        weight: 1,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
        down: false,
    };
    let invalid = |parameter: &str| {
        ConfigError::at(
            format!("invalid parameter \"{parameter}\""),
            directive.location(),
        )
    };
    for parameter in &directive.args[1..] {
        if let Some(value) = parameter.strip_prefix("weight=") {
            server.weight = value
                .parse()
                .ok()
                .filter(|w| *w > 0)
                .ok_or_else(|| invalid(parameter))?;
        } else if let Some(value) = parameter.strip_prefix("max_fails=") {
            server.max_fails = value.parse().map_err(|_| invalid(parameter))?;
        } else if let Some(value) = parameter.strip_prefix("fail_timeout=") {
            server.fail_timeout = parse_duration(value).ok_or_else(|| invalid(parameter))?;
        } else if parameter == "backup" {
            if matches!(balance, Balance::IpHash | Balance::Hash { .. }) {
                return Err(ConfigError::at(
                    "balancing method does not support parameter \"backup\"",
                    directive.location(),
                ));
            }
            server.backup = true;
        } else if parameter == "down" {
            server.down = true;
        } else {
            return Err(invalid(parameter));
        }
    }
    Ok(server)
}

/// The TLS settings of a `proxy_pass https://` location.
#[cfg(feature = "tls")]
fn upstream_tls(
    proxy_pass: &Directive,
    proxy_host: &str,
    lines: &[Directive],
    config: &mut Config,
) -> Result<crate::config::UpstreamTlsRef, ConfigError> {
    let base = proxy_pass
        .file
        .parent()
        .unwrap_or(std::path::Path::new("."));
    crate::tls::upstream::upstream_tls(
        lines,
        proxy_host,
        proxy_pass,
        base,
        &mut config.upstream_tls,
    )
}

#[cfg(not(feature = "tls"))]
fn upstream_tls(
    proxy_pass: &Directive,
    _proxy_host: &str,
    _lines: &[Directive],
    _config: &mut Config,
) -> Result<crate::config::UpstreamTlsRef, ConfigError> {
    Err(ConfigError::at(
        "\"proxy_pass https://\": this ferry was built without TLS \
         (build with the default features)",
        proxy_pass.location(),
    ))
}

/// `proxy_pass http[s]://NAME_OR_HOST[:PORT][/URI]`: an upstream block by
/// name, or a host resolved now (an implicit group). Returns the group's
/// index, the URI part, if any, and for `https://` the host as written
/// (nginx's `$proxy_host`, the default name for the TLS handshake).
fn proxy_target(
    directive: &Directive,
    matcher: &LocationMatch,
    config: &mut Config,
) -> Result<(usize, Option<String>, Option<String>), ConfigError> {
    let text = directive.args[0].as_str();
    if text.contains('$') {
        return Err(ConfigError::at(
            "variables in \"proxy_pass\" are not supported yet",
            directive.location(),
        ));
    }
    let (rest, https) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => {
            return Err(ConfigError::at(
                format!("invalid URL prefix in \"{text}\""),
                directive.location(),
            ))
        }
    };
    let default_port = if https { 443 } else { 80 };
    if rest.starts_with("unix:") {
        return Err(ConfigError::at(
            format!("unix domain sockets are not supported yet in upstream \"{rest}\""),
            directive.location(),
        ));
    }
    let (authority, uri) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(rest[slash..].to_string())),
        None => (rest, None),
    };
    if uri.is_some() && matches!(matcher, LocationMatch::Regex(_)) {
        return Err(ConfigError::at(
            "\"proxy_pass\" cannot have URI part in location given by regular expression",
            directive.location(),
        ));
    }
    let proxy_host = https.then(|| authority.to_string());
    // An `upstream` block by that name; or the implicit group of the same
    // host, unless it was the other scheme's default port.
    let port_written = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let same = |group: &UpstreamGroup| {
        group.name == authority
            && (!group.implicit
                || port_written
                || group
                    .servers
                    .first()
                    .is_some_and(|server| server.addr.port() == default_port))
    };
    if let Some(index) = config.upstreams.iter().position(same) {
        return Ok((index, uri, proxy_host));
    }
    let addr = upstream_address(authority, default_port)
        .map_err(|message| ConfigError::at(message, directive.location()))?;
    let mut group = UpstreamGroup::single(addr);
    group.name = authority.to_string();
    group.implicit = true;
    config.upstreams.push(group);
    Ok((config.upstreams.len() - 1, uri, proxy_host))
}

/// The inheritable settings set directly in `block` (not in nested blocks),
/// plus checks of the directives that set nothing but must be valid.
fn settings(block: &[Directive], config: &Config) -> Result<Inherited, ConfigError> {
    let mut settings = Inherited::default();
    let mut seen: Vec<&str> = Vec::new();
    for directive in block {
        let name = directive.name.as_str();
        let duplicate_matters = !matches!(
            name,
            "listen"
                | "server"
                | "location"
                | "upstream"
                | "proxy_set_header"
                | "access_log"
                | "error_log"
                | "server_name"
                | "log_format"
                | "proxy_hide_header"
                | "add_header"
                | "allow"
                | "deny"
        );
        if duplicate_matters && seen.contains(&name) {
            return Err(ConfigError::at(
                format!("\"{name}\" directive is duplicate"),
                directive.location(),
            ));
        }
        seen.push(name);
        match name {
            "client_max_body_size" => settings.client_max_body_size = Some(size(directive, 0)?),
            "client_header_timeout" => {
                settings.client_header_timeout = Some(duration(directive, 0)?)
            }
            "client_body_timeout" => settings.client_body_timeout = Some(duration(directive, 0)?),
            "send_timeout" => settings.send_timeout = Some(duration(directive, 0)?),
            "keepalive_timeout" => settings.keepalive_timeout = Some(duration(directive, 0)?),
            "keepalive_requests" => settings.keepalive_requests = Some(number(directive, 0)?),
            "large_client_header_buffers" => {
                let _count: usize = number(directive, 0)?;
                let buffer = size(directive, 1)?;
                let max_head = usize::try_from(buffer).unwrap_or(usize::MAX);
                if max_head > config.buffer_size {
                    return Err(ConfigError::at(
                        format!(
                            "\"large_client_header_buffers\" size {buffer} is larger than ferry's buffer ({})",
                            config.buffer_size
                        ),
                        directive.location(),
                    ));
                }
                settings.max_head = Some(max_head);
            }
            "lingering_time" => settings.lingering_time = Some(duration(directive, 0)?),
            "lingering_timeout" => settings.lingering_timeout = Some(duration(directive, 0)?),
            "proxy_connect_timeout" => {
                settings.proxy_connect_timeout = Some(duration(directive, 0)?)
            }
            "proxy_read_timeout" => settings.proxy_read_timeout = Some(duration(directive, 0)?),
            "proxy_send_timeout" => settings.proxy_send_timeout = Some(duration(directive, 0)?),
            "access_log" => {
                let (target, format) = access_log(directive, config)?;
                settings.access_log = Some(target);
                settings.log_format = Some(format);
            }
            "proxy_set_header" => {
                let (name, value) = (&directive.args[0], &directive.args[1]);
                field_name(directive, name)?;
                let template = Template::compile(value)
                    .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
                settings
                    .proxy_set_headers
                    .get_or_insert_with(Vec::new)
                    .push((name.clone(), template));
            }
            "proxy_hide_header" => settings
                .hide_headers
                .get_or_insert_with(Vec::new)
                .push(directive.args[0].clone()),
            name if name.starts_with("proxy_ssl_") => settings.proxy_ssl.push(directive.clone()),
            "allow" | "deny" => {
                let rule = access_rule(directive)?;
                settings
                    .access_rules
                    .get_or_insert_with(Vec::new)
                    .push(rule);
            }
            "add_header" => {
                field_name(directive, &directive.args[0])?;
                let always = match directive.args.get(2).map(String::as_str) {
                    None => false,
                    Some("always") => true,
                    Some(other) => {
                        return Err(ConfigError::at(
                            format!("invalid parameter \"{other}\""),
                            directive.location(),
                        ))
                    }
                };
                let value = Template::compile(&directive.args[1])
                    .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
                settings
                    .add_headers
                    .get_or_insert_with(Vec::new)
                    .push(AddHeader {
                        name: directive.args[0].clone(),
                        value,
                        always,
                    });
            }
            "proxy_next_upstream" => {
                let mut flags = 0;
                for word in &directive.args {
                    let flag = super::next_upstream::parse(word).ok_or_else(|| {
                        ConfigError::at(format!("invalid value \"{word}\""), directive.location())
                    })?;
                    if word == "off" && directive.args.len() > 1 {
                        return Err(ConfigError::at(
                            "invalid value \"off\"",
                            directive.location(),
                        ));
                    }
                    flags |= flag;
                }
                settings.next_upstream = Some(flags);
            }
            "proxy_next_upstream_tries" => {
                settings.next_upstream_tries = Some(number(directive, 0)?)
            }
            "proxy_next_upstream_timeout" => {
                settings.next_upstream_timeout = Some(duration(directive, 0)?)
            }
            "proxy_http_version" if directive.args[0] != "1.1" => {
                return Err(ConfigError::at(
                    "ferry speaks HTTP/1.1 to upstreams: only \"proxy_http_version 1.1\" is supported",
                    directive.location(),
                ));
            }

            "proxy_buffering"
            | "proxy_request_buffering"
            | "sendfile"
            | "tcp_nopush"
            | "tcp_nodelay"
            | "server_tokens"
            | "multi_accept" => on_off(directive)?,
            _ => {}
        }
    }
    Ok(settings)
}

/// A header name in `proxy_set_header` or `add_header` must be an RFC 9110
/// token: nothing in it can end a line or a field.
fn field_name(directive: &Directive, name: &str) -> Result<(), ConfigError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::at(
            format!(
                "invalid header name \"{}\" in \"{}\" directive",
                name.escape_debug(),
                directive.name
            ),
            directive.location(),
        ));
    }
    Ok(())
}

/// `allow|deny ADDRESS | CIDR | all`.
fn access_rule(directive: &Directive) -> Result<AccessRule, ConfigError> {
    let allow = directive.name == "allow";
    let text = directive.args[0].as_str();
    if text == "all" {
        return Ok(AccessRule {
            allow,
            network: None,
        });
    }
    let invalid = || {
        ConfigError::at(
            format!("invalid parameter \"{text}\""),
            directive.location(),
        )
    };
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| invalid())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        Some(prefix) => prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    Ok(AccessRule {
        allow,
        network: Some((address, prefix)),
    })
}

/// How many event loops to run: a number, or `auto` for one per core.
fn worker_processes(directive: &Directive) -> Result<usize, ConfigError> {
    let value = directive.args[0].as_str();
    if value == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match value.parse::<usize>() {
        Ok(n @ 1..=MAX_WORKERS) => Ok(n),
        _ => Err(ConfigError::at(
            format!("invalid value \"{value}\" in \"worker_processes\" directive (1 to {MAX_WORKERS}, or auto)"),
            directive.location(),
        )),
    }
}

/// More workers than this would be a typo, not a machine.
const MAX_WORKERS: usize = 1024;

fn error_log(directive: &Directive) -> Result<ErrorLogConfig, ConfigError> {
    let path = &directive.args[0];
    let level = directive.args.get(1).map_or("error", String::as_str);
    let filter = match level {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" => "warn",
        "error" | "crit" | "alert" | "emerg" => "error",
        other => {
            return Err(ConfigError::at(
                format!("invalid log level \"{other}\""),
                directive.location(),
            ))
        }
    };
    Ok(ErrorLogConfig {
        path: (path != "stderr").then(|| PathBuf::from(path)),
        filter: filter.to_string(),
    })
}

fn access_log(
    directive: &Directive,
    config: &Config,
) -> Result<(AccessLogTarget, usize), ConfigError> {
    let path = directive.args[0].as_str();
    if path == "off" {
        if directive.args.len() > 1 {
            return Err(ConfigError::at(
                "invalid parameter after \"off\" in \"access_log\" directive",
                directive.location(),
            ));
        }
        return Ok((AccessLogTarget::Off, super::UPSTREAM_FORMAT));
    }
    // nginx's default format for an explicit access_log is `combined`.
    let format = match directive.args.get(1) {
        None => super::COMBINED_FORMAT,
        Some(name) => config
            .log_formats
            .iter()
            .position(|(known, _)| known == name)
            .ok_or_else(|| {
                ConfigError::at(
                    format!("unknown log format \"{name}\""),
                    directive.location(),
                )
            })?,
    };
    if directive.args.len() > 2 {
        return Err(ConfigError::at(
            format!(
                "\"access_log\" parameter \"{}\" is not supported yet",
                directive.args[2]
            ),
            directive.location(),
        ));
    }
    let target = match path {
        "/dev/stdout" => AccessLogTarget::Stdout,
        _ => AccessLogTarget::File(PathBuf::from(path)),
    };
    Ok((target, format))
}

fn on_off(directive: &Directive) -> Result<(), ConfigError> {
    match directive.args[0].as_str() {
        "on" | "off" => Ok(()),
        other => Err(ConfigError::at(
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                directive.name
            ),
            directive.location(),
        )),
    }
}

/// `HOST[:PORT]` or `[V6]:PORT`, with a default port.
fn split_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((text.to_string(), default_port)),
    }
}

/// An upstream server's `HOST[:PORT]` (a name, an IPv4 address or `[V6]`),
/// resolved now, or nginx's message for why not (`ngx_parse_url`'s words,
/// `… in upstream "TEXT"`).
fn upstream_address(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if text.starts_with("unix:") {
        return Err(format!(
            "unix domain sockets are not supported yet in upstream \"{text}\""
        ));
    }
    let port_text = match text.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, after)) => after.strip_prefix(':'),
            None => return Err(format!("invalid host in upstream \"{text}\"")),
        },
        None => text.rsplit_once(':').map(|(_, port)| port),
    };
    let port = match port_text {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("invalid port in upstream \"{text}\""))?,
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let host = match text.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => text.rsplit_once(':').map_or(text, |(host, _)| host),
    };
    if host.is_empty() {
        return Err(format!("no host in upstream \"{text}\""));
    }
    resolve(host, port).ok_or_else(|| format!("host not found in upstream \"{text}\""))
}

/// `HOST:PORT` (a name, an IPv4 address or `[V6]`) resolved now, as the
/// command line's `--listen` and `--upstream` take it: the port is required.
pub fn resolve_address(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (host, port) = split_host_port(text, 0)?;
    // An address that did not parse is not a name to look up.
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || host.contains(':');
    if numeric || (port == 0 && !text.ends_with(":0")) {
        return None;
    }
    resolve(&host, port)
}

/// Resolves at load time, as nginx does; IPv4 first, as nginx lists them.
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if host.is_empty() {
        return None;
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

fn number<T: std::str::FromStr>(directive: &Directive, index: usize) -> Result<T, ConfigError> {
    let text = &directive.args[index];
    text.parse().map_err(|_| {
        ConfigError::at(
            format!(
                "invalid number \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}

fn duration(directive: &Directive, index: usize) -> Result<Duration, ConfigError> {
    let text = &directive.args[index];
    parse_duration(text).ok_or_else(|| {
        ConfigError::at(
            format!(
                "invalid time \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}

fn size(directive: &Directive, index: usize) -> Result<u64, ConfigError> {
    let text = &directive.args[index];
    parse_size(text).ok_or_else(|| {
        ConfigError::at(
            format!(
                "invalid size \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}
