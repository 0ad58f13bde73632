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

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{ConfigError, Directive};
use super::{parse_duration, parse_size, AccessLogTarget, Config, ErrorLogConfig};

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
    spec("proxy_http_version", HSL, Arity::Exactly(1), false),
    spec("proxy_connect_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_read_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_send_timeout", HSL, Arity::Exactly(1), false),
    spec("proxy_buffering", HSL, Arity::Exactly(1), false),
    spec("proxy_request_buffering", HSL, Arity::Exactly(1), false),
    // server
    spec("server", &[Http, Upstream], Arity::AtLeast(0), false),
    spec("listen", &[Server], Arity::AtLeast(1), false),
    spec("server_name", &[Server], Arity::AtLeast(1), false),
    spec("location", &[Server, Location], Arity::Between(1, 2), true),
    // upstream
    spec("upstream", &[Http], Arity::Exactly(1), true),
    spec("keepalive", &[Upstream], Arity::Exactly(1), false),
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
        }
    }

    fn apply(&self, config: &mut Config) {
        macro_rules! set {
            ($($field:ident => $target:ident),* $(,)?) => {
                $(if let Some(value) = self.$field.clone() { config.$target = value; })*
            };
        }
        set!(
            client_max_body_size => client_max_body_size,
            client_header_timeout => client_header_timeout,
            client_body_timeout => client_body_timeout,
            send_timeout => send_timeout,
            keepalive_timeout => keepalive_timeout,
            keepalive_requests => keepalive_requests,
            max_head => max_head,
            lingering_time => lingering_time,
            lingering_timeout => lingering_timeout,
            proxy_connect_timeout => proxy_connect_timeout,
            proxy_read_timeout => proxy_read_timeout,
            proxy_send_timeout => proxy_send_timeout,
            access_log => access_log,
        );
    }
}

/// An `upstream NAME { … }` block.
struct UpstreamBlock {
    servers: Vec<SocketAddr>,
    keepalive: Option<usize>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u32>,
}

/// Builds a [`Config`] from a parsed file, over `base` (the defaults).
pub fn build(tree: &[Directive], base: Config) -> Result<Config, ConfigError> {
    check(tree, Main)?;
    let mut config = base;
    let mut http = None;
    for directive in tree {
        match directive.name.as_str() {
            "worker_processes" => worker_processes(directive)?,
            "error_log" => config.error_log = Some(error_log(directive)?),
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
            // user, pid, daemon, master_process, worker_rlimit_nofile:
            // process management that ferry leaves to its supervisor.
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

fn build_http(http: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    let block = http.block.as_deref().unwrap_or_default();
    let http_settings = settings(block, config)?;
    let mut upstreams: HashMap<String, UpstreamBlock> = HashMap::new();
    let mut servers = Vec::new();
    for directive in block {
        match directive.name.as_str() {
            "upstream" => {
                let name = directive.args[0].clone();
                if upstreams.contains_key(&name) {
                    return Err(ConfigError::at(
                        format!("duplicate upstream \"{name}\""),
                        directive.location(),
                    ));
                }
                upstreams.insert(name, upstream_block(directive)?);
            }
            "server" => servers.push(directive),
            _ => {}
        }
    }
    let [server] = servers.as_slice() else {
        let location = servers
            .get(1)
            .map_or_else(|| http.location(), |s| s.location());
        return Err(ConfigError::at(
            if servers.is_empty() {
                "no \"server\" block in \"http\"".to_string()
            } else {
                "more than one \"server\" block is not supported yet".to_string()
            },
            location,
        ));
    };
    let server_block = server.block.as_deref().unwrap_or_default();
    let server_settings = settings(server_block, config)?.over(&http_settings);
    let mut listen = Vec::new();
    let mut locations = Vec::new();
    for directive in server_block {
        match directive.name.as_str() {
            "listen" => listen.push(listen_address(directive)?),
            "location" => locations.push(directive),
            _ => {}
        }
    }
    if listen.is_empty() {
        // nginx's default when run as root.
        listen.push(SocketAddr::from(([0, 0, 0, 0], 80)));
    }
    config.listen = listen;
    let [location] = locations.as_slice() else {
        return Err(ConfigError::at(
            if locations.is_empty() {
                "no \"location / { proxy_pass … }\" in \"server\"".to_string()
            } else {
                "more than one \"location\" is not supported yet".to_string()
            },
            locations
                .get(1)
                .map_or_else(|| server.location(), |l| l.location()),
        ));
    };
    if location.args != ["/"] {
        return Err(ConfigError::at(
            "only \"location /\" is supported yet",
            location.location(),
        ));
    }
    let location_block = location.block.as_deref().unwrap_or_default();
    if let Some(nested) = location_block.iter().find(|d| d.name == "location") {
        return Err(ConfigError::at(
            "nested \"location\" is not supported yet",
            nested.location(),
        ));
    }
    let effective = settings(location_block, config)?.over(&server_settings);
    effective.apply(config);
    let Some(proxy_pass) = location_block.iter().find(|d| d.name == "proxy_pass") else {
        return Err(ConfigError::at(
            "\"location /\" needs a \"proxy_pass\"",
            location.location(),
        ));
    };
    let (addr, group) = proxy_target(proxy_pass, &upstreams)?;
    config.set_upstream(addr);
    if let Some(group) = group {
        if let Some(keepalive) = group.keepalive {
            config.upstream_keepalive = keepalive;
        }
        if let Some(timeout) = group.keepalive_timeout {
            config.upstream_keepalive_timeout = timeout;
        }
        if let Some(requests) = group.keepalive_requests {
            config.upstream_keepalive_requests = requests;
        }
    }
    Ok(())
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
            "access_log" => settings.access_log = Some(access_log(directive)?),
            "proxy_http_version" if directive.args[0] != "1.1" => {
                return Err(ConfigError::at(
                    "ferry speaks HTTP/1.1 to upstreams: only \"proxy_http_version 1.1\" is supported",
                    directive.location(),
                ));
            }
            "proxy_set_header" => proxy_set_header(directive)?,
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

fn worker_processes(directive: &Directive) -> Result<(), ConfigError> {
    let value = directive.args[0].as_str();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match value {
        "1" => Ok(()),
        "auto" if cores == 1 => Ok(()),
        _ => Err(ConfigError::at(
            format!("\"worker_processes {value}\": ferry runs one worker for now; use \"worker_processes 1\""),
            directive.location(),
        )),
    }
}

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

fn access_log(directive: &Directive) -> Result<AccessLogTarget, ConfigError> {
    let path = directive.args[0].as_str();
    if path == "off" {
        if directive.args.len() > 1 {
            return Err(ConfigError::at(
                "invalid parameter after \"off\" in \"access_log\" directive",
                directive.location(),
            ));
        }
        return Ok(AccessLogTarget::Off);
    }
    if let Some(format) = directive.args.get(1) {
        if format != "combined" {
            return Err(ConfigError::at(
                format!("unknown log format \"{format}\" (only \"combined\" is supported yet)"),
                directive.location(),
            ));
        }
    }
    if directive.args.len() > 2 {
        return Err(ConfigError::at(
            format!(
                "\"access_log\" parameter \"{}\" is not supported yet",
                directive.args[2]
            ),
            directive.location(),
        ));
    }
    Ok(match path {
        "/dev/stdout" => AccessLogTarget::Stdout,
        _ => AccessLogTarget::File(PathBuf::from(path)),
    })
}

/// `proxy_set_header` is limited to what ferry does anyway until variables
/// land: `Connection ""` (ferry never forwards the client's `Connection`).
fn proxy_set_header(directive: &Directive) -> Result<(), ConfigError> {
    let (name, value) = (&directive.args[0], &directive.args[1]);
    if name.eq_ignore_ascii_case("connection") && value.is_empty() {
        return Ok(());
    }
    Err(ConfigError::at(
        format!("\"proxy_set_header {name} {value}\" is not supported yet (only Connection \"\")"),
        directive.location(),
    ))
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

/// `listen ADDR[:PORT] [default_server]`, `listen PORT`, `listen [::1]:PORT`.
fn listen_address(directive: &Directive) -> Result<SocketAddr, ConfigError> {
    for parameter in &directive.args[1..] {
        if parameter != "default_server" {
            return Err(ConfigError::at(
                format!("\"listen\" parameter \"{parameter}\" is not supported yet"),
                directive.location(),
            ));
        }
    }
    let text = directive.args[0].as_str();
    let addr = listen_text(text, directive)?;
    if addr.port() == 0 {
        // nginx refuses it too; `--listen 127.0.0.1:0` picks a free port.
        return Err(ConfigError::at(
            format!("invalid port in \"{text}\" of the \"listen\" directive"),
            directive.location(),
        ));
    }
    Ok(addr)
}

fn listen_text(text: &str, directive: &Directive) -> Result<SocketAddr, ConfigError> {
    let invalid = || {
        ConfigError::at(
            format!("invalid address \"{text}\" in \"listen\""),
            directive.location(),
        )
    };
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = split_host_port(text, 80).ok_or_else(invalid)?;
    resolve(&host, port).ok_or_else(|| {
        ConfigError::at(
            format!("host not found in \"{text}\" of the \"listen\" directive"),
            directive.location(),
        )
    })
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

fn upstream_block(directive: &Directive) -> Result<UpstreamBlock, ConfigError> {
    let name = &directive.args[0];
    let mut group = UpstreamBlock {
        servers: Vec::new(),
        keepalive: None,
        keepalive_timeout: None,
        keepalive_requests: None,
    };
    for inner in directive.block.iter().flatten() {
        match inner.name.as_str() {
            "server" => {
                if let Some(parameter) = inner.args.get(1) {
                    return Err(ConfigError::at(
                        format!("server parameter \"{parameter}\" in upstream \"{name}\" is not supported yet"),
                        inner.location(),
                    ));
                }
                let text = &inner.args[0];
                let addr = text.parse::<SocketAddr>().ok().or_else(|| {
                    let (host, port) = split_host_port(text, 80)?;
                    resolve(&host, port)
                });
                let addr = addr.ok_or_else(|| {
                    ConfigError::at(
                        format!("host not found in upstream \"{text}\""),
                        inner.location(),
                    )
                })?;
                group.servers.push(addr);
            }
            "keepalive" => group.keepalive = Some(number(inner, 0)?),
            "keepalive_timeout" => group.keepalive_timeout = Some(duration(inner, 0)?),
            "keepalive_requests" => group.keepalive_requests = Some(number(inner, 0)?),
            _ => {}
        }
    }
    match group.servers.len() {
        0 => Err(ConfigError::at(
            format!("no servers are inside upstream \"{name}\""),
            directive.location(),
        )),
        1 => Ok(group),
        _ => Err(ConfigError::at(
            format!("several servers in upstream \"{name}\": load balancing is not supported yet"),
            directive.location(),
        )),
    }
}

/// `proxy_pass http://NAME_OR_HOST[:PORT][/]`: an upstream block by name, or
/// a host resolved now.
fn proxy_target<'a>(
    directive: &Directive,
    upstreams: &'a HashMap<String, UpstreamBlock>,
) -> Result<(SocketAddr, Option<&'a UpstreamBlock>), ConfigError> {
    let text = directive.args[0].as_str();
    let Some(rest) = text.strip_prefix("http://") else {
        return Err(ConfigError::at(
            format!("invalid URL prefix in \"{text}\" (ferry proxies to http:// upstreams)"),
            directive.location(),
        ));
    };
    let (authority, uri) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    if !uri.is_empty() && uri != "/" {
        return Err(ConfigError::at(
            format!("a URI part in \"proxy_pass {text}\" is not supported yet"),
            directive.location(),
        ));
    }
    if let Some(group) = upstreams.get(authority) {
        return Ok((group.servers[0], Some(group)));
    }
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok((addr, None));
    }
    let not_found = || {
        ConfigError::at(
            format!("host not found in upstream \"{authority}\""),
            directive.location(),
        )
    };
    let (host, port) = split_host_port(authority, 80).ok_or_else(not_found)?;
    Ok((resolve(&host, port).ok_or_else(not_found)?, None))
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
