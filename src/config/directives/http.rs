//! ngx_http_core_module: the `http` block's servers, their addresses and
//! names, locations, and the client-side limits and timeouts.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::net::SocketAddr;

use super::listen::{listen_directive, Listen};
use super::{
    check_number, check_size, check_time, duration, flag, not_yet, number, on_off, settings, size,
    spec, Arity, Directive, Handler, Http, Inherited, Location, Server, Spec, Upstream, HS, HSL,
};
use crate::config::parse::ConfigError;
use crate::config::{
    Action, Config, ListenConfig, ListenOptions, LocationConfig, LocationMatch, ServerConfig,
    ServerName,
};

/// nginx sizes its lookup hash tables with these; ferry's tables size
/// themselves.
/// What nginx's resolver is for, and why ferry needs none.
const RESOLVER: &str = "ferry resolves names when it loads the configuration, as nginx \
                        does for `proxy_pass` and `server` lines; nginx's resolver serves \
                        lookups made as it runs: OCSP fetches, which ferry does not make \
                        (see `ssl_stapling`), and a `proxy_pass` naming its server by \
                        variables, which ferry refuses beside a `resolver`";

const HASH_TABLES: &str = "sizes of nginx's lookup hash tables; ferry's own size themselves";

macro_rules! hash_table {
    ($name:literal, $check:ident) => {
        spec(
            $name,
            &[Http],
            Arity::Exactly(1),
            Handler::NoEffect {
                check: $check,
                why: HASH_TABLES,
            },
        )
    };
}

pub(super) const DIRECTIVES: &[Spec] = &[
    // `server` is a block in http and a simple directive in upstream
    // (read by `upstream::upstream_block`).
    spec("server", &[Http, Upstream], Arity::AtLeast(0), Handler::Structure).repeatable(),
    spec("listen", &[Server], Arity::AtLeast(1), Handler::Structure).repeatable(),
    spec("server_name", &[Server], Arity::AtLeast(1), Handler::Structure).repeatable(),
    spec("location", &[Server, Location], Arity::Between(1, 2), Handler::Structure)
        .block()
        .repeatable(),
    spec("limit_except", &[Location], Arity::AtLeast(1), Handler::Structure).block(),
    // A location only internal redirects reach (404 to clients).
    spec("internal", &[Location], Arity::Exactly(0), Handler::Structure),
    spec("client_max_body_size", HSL, Arity::Exactly(1), Handler::Setting(client_max_body_size)),
    spec("client_header_timeout", HS, Arity::Exactly(1), Handler::Setting(client_header_timeout)),
    spec("client_body_timeout", HSL, Arity::Exactly(1), Handler::Setting(client_body_timeout)),
    spec("send_timeout", HSL, Arity::Exactly(1), Handler::Setting(send_timeout)),
    spec(
        "keepalive_timeout",
        &[Http, Server, Location, Upstream],
        Arity::Between(1, 2),
        Handler::Setting(keepalive_timeout),
    ),
    spec(
        "keepalive_requests",
        &[Http, Server, Location, Upstream],
        Arity::Exactly(1),
        Handler::Setting(keepalive_requests),
    ),
    spec(
        "large_client_header_buffers",
        HS,
        Arity::Exactly(2),
        Handler::Setting(large_client_header_buffers),
    ),
    spec("error_page", HSL, Arity::AtLeast(2), Handler::Setting(super::error_pages::error_page))
        .repeatable(),
    spec("lingering_time", HSL, Arity::Exactly(1), Handler::Setting(lingering_time)),
    spec("lingering_timeout", HSL, Arity::Exactly(1), Handler::Setting(lingering_timeout)),
    spec(
        "tcp_nopush",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry holds a response head for its body itself (MSG_MORE), as tcp_nopush does with sendfile",
        },
    ),
    spec(
        "tcp_nodelay",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry always sets TCP_NODELAY, nginx's default",
        },
    ),
    spec(
        "server_tokens",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry's own pages and Server field name no version",
        },
    ),
    spec(
        "ignore_invalid_headers",
        HS,
        Arity::Exactly(1),
        Handler::Setting(ignore_invalid_headers),
    ),
    spec(
        "underscores_in_headers",
        HS,
        Arity::Exactly(1),
        Handler::Setting(underscores_in_headers),
    ),
    spec(
        "keepalive_disable",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(keepalive_disable),
    ),
    hash_table!("types_hash_max_size", check_number),
    hash_table!("types_hash_bucket_size", check_size),
    hash_table!("server_names_hash_max_size", check_number),
    hash_table!("server_names_hash_bucket_size", check_size),
    hash_table!("variables_hash_max_size", check_number),
    hash_table!("variables_hash_bucket_size", check_size),
    spec(
        "client_body_buffer_size",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_size,
            why: "ferry streams request bodies through its ring buffer, never to a file",
        },
    ),
    not_yet("absolute_redirect"),
    not_yet("aio"),
    not_yet("auth_delay"),
    not_yet("chunked_transfer_encoding"),
    not_yet("client_body_in_file_only"),
    not_yet("client_body_in_single_buffer"),
    not_yet("client_body_temp_path"),
    not_yet("client_header_buffer_size"),
    not_yet("connection_pool_size"),
    not_yet("directio"),
    not_yet("keepalive_time"),
    not_yet("merge_slashes"),
    not_yet("msie_padding"),
    not_yet("msie_refresh"),
    not_yet("output_buffers"),
    not_yet("port_in_redirect"),
    not_yet("postpone_output"),
    not_yet("read_ahead"),
    not_yet("recursive_error_pages"),
    not_yet("request_pool_size"),
    not_yet("reset_timedout_connection"),
    spec(
        "resolver",
        HSL,
        Arity::AtLeast(1),
        Handler::NoEffect {
            check: super::upstream::check_resolver,
            why: RESOLVER,
        },
    ),
    spec(
        "resolver_timeout",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_time,
            why: RESOLVER,
        },
    ),
    not_yet("send_lowat"),
    not_yet("server_name_in_redirect"),
    not_yet("subrequest_output_buffer_size"),
    // Modules of their own that ferry has none of yet.
    not_yet("split_clients"),
    not_yet("auth_request"),
    not_yet("sub_filter"),
    not_yet("ssi"),
    not_yet("fastcgi_pass"),
    not_yet("uwsgi_pass"),
    not_yet("scgi_pass"),
    not_yet("grpc_pass"),
    not_yet("http2"),
];

fn client_max_body_size(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.client_max_body_size = Some(size(d, 0)?);
    Ok(())
}

fn client_header_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.client_header_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn client_body_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.client_body_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn send_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.send_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn keepalive_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.keepalive_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn keepalive_requests(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.keepalive_requests = Some(number(d, 0)?);
    Ok(())
}

fn lingering_time(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.lingering_time = Some(duration(d, 0)?);
    Ok(())
}

fn lingering_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.lingering_timeout = Some(duration(d, 0)?);
    Ok(())
}

/// `keepalive_disable none | msie6 | safari …`: browsers whose requests
/// close the connection after the answer (nginx's default: `msie6`, for
/// MSIE 6's POST requests).
fn keepalive_disable(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut browsers = 0;
    for browser in &d.args {
        browsers |= match browser.as_str() {
            "none" => 0,
            "msie6" => crate::http::browsers::MSIE6,
            "safari" => crate::http::browsers::SAFARI,
            other => {
                return Err(ConfigError::at(
                    format!("invalid value \"{other}\""),
                    d.location(),
                ))
            }
        };
    }
    s.keepalive_disable = Some(browsers);
    Ok(())
}

fn ignore_invalid_headers(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.ignore_invalid_headers = Some(flag(d)?);
    Ok(())
}

fn underscores_in_headers(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.underscores_in_headers = Some(flag(d)?);
    Ok(())
}

/// `large_client_header_buffers N SIZE`: the largest request head, which
/// must fit ferry's buffer.
fn large_client_header_buffers(
    directive: &Directive,
    config: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
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
    Ok(())
}

/// The http block: upstream groups first (servers refer to them by name),
/// then servers, their listen addresses and locations.
pub(super) fn build_http(http: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    let block = http.block.as_deref().unwrap_or_default();
    super::map::maps(block, config)?;
    super::rewrite::set_names(block, config)?;
    // `set $limit_rate`: nginx's settable variable; its `set` slot.
    config.limit_rate_set = config
        .map_names
        .iter()
        .position(|name| name == "limit_rate")
        .and_then(|at| at.checked_sub(config.maps.len()));
    super::log::log_formats(block, config)?;
    super::limit::zones(block, config)?;
    // nginx: `default` needs the `proxy_pass` of its own location.
    let servers = block.iter().filter(|d| d.name == "server");
    let outer_lines = block
        .iter()
        .chain(servers.flat_map(|s| s.block.iter().flatten()));
    for line in outer_lines {
        if line.name == "proxy_redirect" && line.args == ["default"] {
            return Err(ConfigError::at(
                "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
                line.location(),
            ));
        }
    }
    let http_settings = settings(block, config)?;
    super::proxy::check_buffering(&http_settings, http)?;
    config.http = http_settings.resolve(config);
    config.clear_servers();
    for directive in block.iter().filter(|d| d.name == "upstream") {
        let name = &directive.args[0];
        if config.upstreams.iter().any(|g| &g.name == name) {
            return Err(ConfigError::at(
                format!("duplicate upstream \"{name}\""),
                directive.location(),
            ));
        }
        config.upstreams.push(super::upstream::upstream_block(
            directive,
            &config.map_names,
        )?);
        let zone = directive.block.iter().flatten().any(|d| d.name == "zone");
        if zone && config.worker_processes > 1 {
            log::warn!(
                "upstream \"{name}\": ferry's {} workers each balance on their own; \
                 \"zone\" shares nothing between them (docs/nginx-differences.md)",
                config.worker_processes
            );
        }
    }
    let mut defaults: Vec<(SocketAddr, usize)> = Vec::new();
    let mut options_given: Vec<SocketAddr> = Vec::new();
    for directive in block.iter().filter(|d| d.name == "server") {
        let index = config.servers.len();
        let server_block = directive.block.as_deref().unwrap_or_default();
        let server_settings = settings(server_block, config)?.over(&http_settings);
        super::proxy::check_buffering(&server_settings, directive)?;
        let mut server = ServerConfig {
            names: Vec::new(),
            settings: server_settings.resolve(config),
            locations: Vec::new(),
            top_level: Vec::new(),
            script: super::rewrite::script(server_block, config, false)?,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            reject_handshake: false,
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
                proxy_protocol: false,
                options: ListenOptions::default(),
                has_options: false,
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
            server.reject_handshake = crate::tls::config::rejects_handshake(block, server_block)?;
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
            let action = super::rewrite::return_action(directive, &config.map_names)?;
            server.locations.push(LocationConfig {
                matcher: LocationMatch::Prefix {
                    path: String::new(),
                    stops_regex: true,
                },
                settings: server.settings.clone(),
                script: Vec::new(),
                action,
                internal: false,
                nested: Vec::new(),
            });
            top_level = vec![server.locations.len() - 1];
        }
        server.top_level = top_level;
        super::error_pages::check_targets(&server, directive)?;
        config.servers.push(server);
        for Listen {
            addr,
            default_server,
            ssl,
            proxy_protocol,
            options,
            has_options,
        } in listens
        {
            let position = match config.listen_position(addr) {
                Some(position) => position,
                None => {
                    config.listen.push(ListenConfig {
                        addr,
                        ssl: false,
                        proxy_protocol: false,
                        options: ListenOptions::default(),
                        servers: Vec::new(),
                        default_server: index,
                        stream: None,
                    });
                    config.listen.len() - 1
                }
            };
            let Some(listening) = config.listen.get_mut(position) else {
                continue;
            };
            // nginx: listen options belong to the socket; `ssl` on any line
            // for the address makes it a TLS socket, and socket options are
            // given once per address.
            listening.ssl |= ssl;
            listening.proxy_protocol |= proxy_protocol;
            if has_options {
                if options_given.contains(&addr) {
                    return Err(ConfigError::at(
                        format!("duplicate listen options for {addr}"),
                        directive.location(),
                    ));
                }
                listening.options = options;
                options_given.push(addr);
            }
            if !listening.servers.contains(&index) {
                listening.servers.push(index);
            }
            if default_server {
                if defaults.iter().any(|(a, _)| *a == addr) {
                    return Err(ConfigError::at(
                        format!("a duplicate default server for {addr}"),
                        directive.location(),
                    ));
                }
                defaults.push((addr, index));
                listening.default_server = index;
            }
        }
    }
    if config.servers.is_empty() {
        return Err(ConfigError::at(
            "no \"server\" block in \"http\"",
            http.location(),
        ));
    }
    super::proxy::check_resolver_use(http, config)
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
    if let (Some(_), LocationMatch::Named(name)) = (parent, &matcher) {
        return Err(ConfigError::at(
            format!("named location \"{name}\" can be on the server level only"),
            directive.location(),
        ));
    }
    let block = directive.block.as_deref().unwrap_or_default();
    let mut inherited = settings(block, config)?.over(outer);
    if let Some(alias) = block.iter().find(|d| d.name == "alias") {
        let root = super::static_files::alias(alias, block, &matcher, config)?;
        super::static_files::set_root(&mut inherited, root);
    }
    super::proxy::check_buffering(&inherited, directive)?;
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
    if let (Some(try_files), Some(_)) = (block.iter().find(|d| d.name == "try_files"), proxy_pass) {
        // nginx would proxy the uri try_files found, a combination ferry
        // does not make yet.
        return Err(ConfigError::at(
            "\"try_files\" with \"proxy_pass\" in one location is not supported yet",
            try_files.location(),
        ));
    }
    let location_directive = directive;
    let mut redirects = Vec::new();
    let action = match (returns, proxy_pass) {
        (Some(directive), _) => super::rewrite::return_action(directive, &config.map_names)?,
        (None, _) if stub_status.is_some() => Action::StubStatus,
        (None, Some(directive)) if directive.args[0].contains('$') => Action::Proxy {
            group: 0,
            uri: None,
            tls: None,
            by_name: Some(super::proxy::proxy_by_name(directive, config)?),
        },
        (None, Some(directive)) => {
            let (group, uri, https) = super::proxy::proxy_target(directive, &matcher, config)?;
            let name = match &matcher {
                LocationMatch::Exact(path) | LocationMatch::Prefix { path, .. } => path.as_str(),
                LocationMatch::Regex(_) | LocationMatch::Named(_) => {
                    location_directive.args.last().map_or("", String::as_str)
                }
            };
            redirects = super::proxy_rewrites::redirect_rules(
                inherited.proxy_redirect.as_ref(),
                directive,
                uri.is_some(),
                name,
                block,
            )?;
            let tls = match https {
                None => None,
                Some(proxy_host) => Some(super::proxy::upstream_tls(
                    directive,
                    &proxy_host,
                    &inherited.proxy_ssl,
                    config,
                )?),
            };
            Action::Proxy {
                group,
                uri,
                tls,
                by_name: None,
            }
        }
        (None, None) => Action::Static,
    };
    // `internal`: only internal redirects (an index file, `try_files`)
    // reach it; a client's request gets 404 (see `connection::reading`).
    let internal = block.iter().any(|d| d.name == "internal");
    let limit_except = block
        .iter()
        .find(|d| d.name == "limit_except")
        .map(super::access::limit_except)
        .transpose()?;
    let index = locations.len();
    let mut settings = inherited.resolve(config);
    settings.proxy_redirects = redirects;
    settings.limit_except = limit_except;
    locations.push(LocationConfig {
        matcher: matcher.clone(),
        settings,
        script: super::rewrite::script(block, config, true)?,
        action,
        internal,
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
        [name] if name.starts_with('@') && name.len() > 1 => LocationMatch::Named(name.clone()),
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
