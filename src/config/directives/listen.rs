//! `listen`: the addresses a server accepts clients on, and the options
//! of their sockets, as ngx_http_core_module reads them.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::net::SocketAddr;

use super::upstream::{resolve, split_host_port};
use super::Directive;
use crate::config::parse::ConfigError;
use crate::config::{KeepaliveProbes, ListenOptions};

/// `listen ADDR[:PORT] [default_server]`, `listen PORT`, `listen [::1]:PORT`.
/// One `listen` line.
pub(super) struct Listen {
    pub addr: SocketAddr,
    pub default_server: bool,
    pub ssl: bool,
    /// `proxy_protocol`: each connection opens with a PROXY header.
    pub proxy_protocol: bool,
    pub options: ListenOptions,
    /// Socket options were given on this line (nginx allows them once per
    /// address).
    pub has_options: bool,
}

pub(super) fn listen_directive(directive: &Directive) -> Result<Listen, ConfigError> {
    let mut default_server = false;
    let mut ssl = false;
    let mut proxy_protocol = false;
    let mut options = ListenOptions::default();
    let mut has_options = false;
    // nginx's words: `invalid backlog "backlog=x"`.
    let invalid_value = |name: &str, parameter: &str| {
        ConfigError::at(
            format!("invalid {name} \"{parameter}\""),
            directive.location(),
        )
    };
    for parameter in &directive.args[1..] {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match name {
            "backlog" | "rcvbuf" | "sndbuf" | "ipv6only" | "so_keepalive" | "reuseport"
            | "deferred" | "fastopen" => has_options = true,
            _ => {}
        }
        match parameter.as_str() {
            "default_server" | "default" => default_server = true,
            "ssl" => ssl = true,
            "proxy_protocol" => proxy_protocol = true,
            "reuseport" => options.reuseport = true,
            // ferry binds every address with a socket of its own already.
            "bind" => {}
            _ if name == "backlog" => {
                options.backlog = Some(
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| invalid_value("backlog", parameter))?,
                )
            }
            _ if name == "rcvbuf" || name == "sndbuf" => {
                let size = crate::config::parse_size(value)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| invalid_value(name, parameter))?;
                if name == "rcvbuf" {
                    options.rcvbuf = Some(size);
                } else {
                    options.sndbuf = Some(size);
                }
            }
            _ if name == "ipv6only" => {
                options.ipv6only = Some(match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid_value("ipv6only flags", parameter)),
                })
            }
            _ if name == "so_keepalive" => {
                options.keepalive = Some(keepalive_probes(value).ok_or_else(|| {
                    ConfigError::at(
                        format!("invalid so_keepalive value: \"{parameter}\""),
                        directive.location(),
                    )
                })?)
            }
            // TCP_DEFER_ACCEPT and TCP_FASTOPEN decide when accept(2)
            // returns and whether a SYN may carry the first request; what
            // ferry answers is the same either way. Neither option has a
            // safe interface in std (`set_deferaccept` is unstable) or in
            // socket2/nix, and the crate forbids unsafe code.
            "deferred" => no_effect(directive, "deferred"),
            _ if name == "fastopen" => {
                value
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| invalid_value("fastopen", parameter))?;
                no_effect(directive, "fastopen");
            }
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
        proxy_protocol,
        options,
        has_options,
    })
}

/// A `listen` parameter ferry accepts without acting on it, said once at
/// load.
fn no_effect(directive: &Directive, parameter: &str) {
    log::warn!(
        "\"listen ... {parameter}\" has no effect in ferry (no safe interface to the socket \
         option): connections are accepted as without it, in {}:{}",
        directive.file.display(),
        directive.line
    );
}

/// `so_keepalive=on|off|[IDLE]:[INTERVAL]:[COUNT]` (times in seconds, or
/// with nginx's units).
fn keepalive_probes(value: &str) -> Option<KeepaliveProbes> {
    match value {
        "on" => {
            return Some(KeepaliveProbes {
                on: true,
                ..KeepaliveProbes::default()
            })
        }
        "off" => return Some(KeepaliveProbes::default()),
        _ => {}
    }
    let mut parts = value.split(':');
    let (idle, interval, count) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let seconds = |text: &str| -> Option<Option<u32>> {
        if text.is_empty() {
            return Some(None);
        }
        let duration = crate::config::parse_seconds(text)?;
        u32::try_from(duration.as_secs())
            .ok()
            .filter(|s| *s > 0)
            .map(Some)
    };
    Some(KeepaliveProbes {
        on: true,
        idle: seconds(idle)?,
        interval: seconds(interval)?,
        count: if count.is_empty() {
            None
        } else {
            Some(count.parse().ok().filter(|c| *c > 0)?)
        },
    })
}
