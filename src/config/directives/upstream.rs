//! ngx_http_upstream_module and its balancers (`least_conn`, `ip_hash`,
//! `hash`, `keepalive`): `upstream` blocks and their servers, and the
//! addresses of upstream servers, resolved when the configuration loads.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{duration, not_yet, number, spec, Arity, Directive, Handler, Http, Spec, Upstream};
use crate::config::parse::ConfigError;
use crate::config::{parse_seconds, Balance, UpstreamGroup, UpstreamServer};
use crate::upstream::ServerAddr;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("upstream", &[Http], Arity::Exactly(1), Handler::Structure)
        .block()
        .repeatable(),
    spec(
        "keepalive",
        &[Upstream],
        Arity::Exactly(1),
        Handler::Structure,
    ),
    spec(
        "least_conn",
        &[Upstream],
        Arity::Exactly(0),
        Handler::Structure,
    ),
    spec(
        "ip_hash",
        &[Upstream],
        Arity::Exactly(0),
        Handler::Structure,
    ),
    spec(
        "hash",
        &[Upstream],
        Arity::Between(1, 2),
        Handler::Structure,
    ),
    not_yet("random"),
    // The group's state in memory every worker shares (see `check_zone`).
    spec(
        "zone",
        &[Upstream],
        Arity::Between(1, 2),
        Handler::Structure,
    ),
];

pub(super) fn upstream_block(
    directive: &Directive,
    maps: &[String],
) -> Result<UpstreamGroup, ConfigError> {
    let name = &directive.args[0];
    let mut group = UpstreamGroup {
        implicit: false,
        stream: false,
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
                let key = crate::variables::Template::compile_with(&inner.args[0], maps)
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
            "zone" => check_zone(inner)?,
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

/// `zone NAME SIZE`, checked as nginx checks it. nginx keeps the group's
/// balancing state there so its worker processes share it; ferry's worker
/// threads each keep their own, as nginx's do without `zone`: the same
/// with one worker (with several, `build_http` says so at load).
fn check_zone(directive: &Directive) -> Result<(), ConfigError> {
    let name = &directive.args[0];
    if name.is_empty() {
        return Err(ConfigError::at(
            format!("invalid zone name \"{name}\""),
            directive.location(),
        ));
    }
    let Some(size) = directive.args.get(1) else {
        // nginx takes the size from another group's line of that name.
        return Err(ConfigError::at(
            format!("\"zone {name}\" without a size is not supported yet"),
            directive.location(),
        ));
    };
    match crate::config::parse_size(size) {
        None => Err(ConfigError::at(
            format!("invalid zone size \"{size}\""),
            directive.location(),
        )),
        // nginx's minimum: 8 pages.
        Some(bytes) if bytes < 8 * 4096 => Err(ConfigError::at(
            format!("zone \"{name}\" is too small"),
            directive.location(),
        )),
        Some(_) => Ok(()),
    }
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
            server.fail_timeout = parse_seconds(value).ok_or_else(|| invalid(parameter))?;
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

/// `HOST[:PORT]` or `[V6]:PORT`, with a default port.
pub(super) fn split_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
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
pub(super) fn upstream_address(text: &str, default_port: u16) -> Result<ServerAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("no path in the unix domain socket \"{text}\""));
        }
        return Ok(ServerAddr::unix(std::path::Path::new(path)));
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
        return Ok(addr.into());
    }
    let host = match text.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => text.rsplit_once(':').map_or(text, |(host, _)| host),
    };
    if host.is_empty() {
        return Err(format!("no host in upstream \"{text}\""));
    }
    resolve(host, port)
        .map(ServerAddr::from)
        .ok_or_else(|| format!("host not found in upstream \"{text}\""))
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

/// `resolver ADDRESS … [valid=TIME] [ipv6=on|off]`, nginx 1.22's
/// parameters: each address (a name, IPv4, `[V6]`, port 53 unless given)
/// resolved now, as nginx resolves them at load.
pub(super) fn check_resolver(d: &Directive) -> Result<(), ConfigError> {
    for arg in &d.args {
        let valid = match (arg.strip_prefix("valid="), arg.strip_prefix("ipv6=")) {
            (Some(time), _) => parse_seconds(time).is_some(),
            (_, Some(flag)) => flag == "on" || flag == "off",
            (None, None) => {
                let (host, port) = split_host_port(arg, 53)
                    .filter(|(host, port)| {
                        *port != 0 && (arg.starts_with('[') || !host.contains(':'))
                    })
                    .ok_or_else(|| {
                        ConfigError::at(format!("invalid port in resolver \"{arg}\""), d.location())
                    })?;
                if resolve(&host, port).is_none() {
                    return Err(ConfigError::at(
                        format!("host not found in resolver \"{arg}\""),
                        d.location(),
                    ));
                }
                true
            }
        };
        if !valid {
            return Err(ConfigError::at(
                format!("invalid parameter: {arg}"),
                d.location(),
            ));
        }
    }
    Ok(())
}

/// Resolves at load time, as nginx does; IPv4 first, as nginx lists them.
pub(super) fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
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
