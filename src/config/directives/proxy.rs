//! ngx_http_proxy_module: where a location's requests go (`proxy_pass`),
//! what the upstream is sent and what comes back, the upstream timeouts and
//! retries, and TLS to upstreams (`proxy_ssl_*`, read by
//! `crate::tls::upstream`).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::proxy_rewrites::{proxy_cookie, proxy_redirect};
use super::{
    check_nothing, check_number, check_size, duration, field_name, not_yet, number, on_off, spec,
    Arity, Directive, Handler, Http, Inherited, Location, Spec, HSL,
};
use crate::config::parse::ConfigError;
use crate::config::{Action, Config, LocationMatch, UpstreamGroup};
use crate::variables::Template;

/// Streaming both ways is what ferry does, whatever these say.
const STREAMS: &str = "ferry streams request and response bodies through bounded buffers \
                       (docs/nginx-differences.md)";

/// nginx's table of the fields it hides or passes; ferry's needs no sizing.
const HEADER_TABLE: &str = "sizes of nginx's proxy header hash table; ferry's needs no sizing";

/// nginx spills large responses to temporary files; ferry never does.
const NO_TEMP_FILES: &str = "ferry never writes a response to a temporary file: it streams \
                             through bounded buffers with back-pressure";

/// `proxy_cache_bypass` and `proxy_no_cache` say when a cache is skipped;
/// ferry refuses `proxy_cache`, so there is none to skip.
const NO_CACHE: &str = "ferry has no `proxy_cache` (refused), and without one nginx \
                        neither reads nor stores cached responses";

macro_rules! proxy_ssl {
    ($name:literal) => {
        spec(
            $name,
            HSL,
            Arity::Exactly(1),
            Handler::Setting(proxy_ssl_line),
        )
    };
}

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "proxy_pass",
        &[Location],
        Arity::Exactly(1),
        Handler::Structure,
    ),
    spec(
        "proxy_cookie_domain",
        HSL,
        Arity::Between(1, 2),
        Handler::Setting(proxy_cookie),
    )
    .repeatable(),
    spec(
        "proxy_cookie_path",
        HSL,
        Arity::Between(1, 2),
        Handler::Setting(proxy_cookie),
    )
    .repeatable(),
    spec(
        "proxy_ignore_headers",
        HSL,
        Arity::AtLeast(1),
        Handler::NoEffect {
            check: ignore_headers,
            why: "ferry acts on none of these upstream fields (no cache, no X-Accel-* \
                  instructions): they pass to the client as they would with the directive",
        },
    ),
    spec(
        "proxy_intercept_errors",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(super::error_pages::proxy_intercept_errors),
    ),
    spec(
        "proxy_pass_header",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_pass_header),
    )
    .repeatable(),
    spec(
        "proxy_pass_request_headers",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_pass_request_headers),
    ),
    spec(
        "proxy_pass_request_body",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_pass_request_body),
    ),
    spec(
        "proxy_set_body",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_set_body),
    ),
    spec(
        "proxy_redirect",
        HSL,
        Arity::Between(1, 2),
        Handler::Setting(proxy_redirect),
    )
    .repeatable(),
    spec(
        "proxy_set_header",
        HSL,
        Arity::Exactly(2),
        Handler::Setting(proxy_set_header),
    )
    .repeatable(),
    spec(
        "proxy_hide_header",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_hide_header),
    )
    .repeatable(),
    spec(
        "proxy_http_version",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_http_version),
    ),
    spec(
        "proxy_connect_timeout",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_connect_timeout),
    ),
    spec(
        "proxy_read_timeout",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_read_timeout),
    ),
    spec(
        "proxy_send_timeout",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_send_timeout),
    ),
    spec(
        "proxy_buffering",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: STREAMS,
        },
    ),
    spec(
        "proxy_request_buffering",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: STREAMS,
        },
    ),
    spec(
        "proxy_next_upstream",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(proxy_next_upstream),
    ),
    spec(
        "proxy_next_upstream_tries",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_next_upstream_tries),
    ),
    spec(
        "proxy_next_upstream_timeout",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_next_upstream_timeout),
    ),
    proxy_ssl!("proxy_ssl_verify"),
    proxy_ssl!("proxy_ssl_verify_depth"),
    proxy_ssl!("proxy_ssl_trusted_certificate"),
    proxy_ssl!("proxy_ssl_server_name"),
    proxy_ssl!("proxy_ssl_name"),
    spec(
        "proxy_ssl_protocols",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(proxy_ssl_line),
    ),
    proxy_ssl!("proxy_ssl_ciphers"),
    proxy_ssl!("proxy_ssl_certificate"),
    proxy_ssl!("proxy_ssl_certificate_key"),
    proxy_ssl!("proxy_ssl_session_reuse"),
    spec(
        "proxy_headers_hash_max_size",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_number,
            why: HEADER_TABLE,
        },
    ),
    spec(
        "proxy_headers_hash_bucket_size",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_size,
            why: HEADER_TABLE,
        },
    ),
    spec(
        "proxy_buffers",
        HSL,
        Arity::Exactly(2),
        Handler::Setting(set_proxy_buffers),
    )
    .no_effect(STREAMS),
    spec(
        "proxy_buffer_size",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(proxy_buffer_size),
    ),
    spec(
        "proxy_busy_buffers_size",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(set_busy),
    )
    .no_effect(STREAMS),
    spec(
        "proxy_max_temp_file_size",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(set_max_temp),
    )
    .no_effect(NO_TEMP_FILES),
    spec(
        "proxy_temp_file_write_size",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(set_temp_write),
    )
    .no_effect(NO_TEMP_FILES),
    spec(
        "proxy_temp_path",
        &[Http],
        Arity::Between(1, 4),
        Handler::NoEffect {
            check: check_nothing,
            why: NO_TEMP_FILES,
        },
    ),
    not_yet("proxy_bind"),
    not_yet("proxy_cache"),
    // Node.js guides pair `proxy_cache_bypass $http_upgrade` with
    // WebSocket lines; with no `proxy_cache` it decides nothing in nginx.
    spec(
        "proxy_cache_bypass",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(check_predicates),
    )
    .no_effect(NO_CACHE),
    spec(
        "proxy_no_cache",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(check_predicates),
    )
    .no_effect(NO_CACHE),
    not_yet("proxy_cache_background_update"),
    not_yet("proxy_cache_convert_head"),
    not_yet("proxy_cache_key"),
    not_yet("proxy_cache_lock"),
    not_yet("proxy_cache_lock_age"),
    not_yet("proxy_cache_lock_timeout"),
    not_yet("proxy_cache_methods"),
    not_yet("proxy_cache_min_uses"),
    not_yet("proxy_cache_path"),
    not_yet("proxy_cache_revalidate"),
    not_yet("proxy_cache_use_stale"),
    not_yet("proxy_cache_valid"),
    not_yet("proxy_cookie_flags"),
    not_yet("proxy_force_ranges"),
    not_yet("proxy_ignore_client_abort"),
    not_yet("proxy_limit_rate"),
    not_yet("proxy_method"),
    not_yet("proxy_socket_keepalive"),
    not_yet("proxy_ssl_conf_command"),
    not_yet("proxy_ssl_crl"),
    not_yet("proxy_ssl_key_log"),
    not_yet("proxy_ssl_password_file"),
    not_yet("proxy_store"),
    not_yet("proxy_store_access"),
];

fn proxy_set_header(
    directive: &Directive,
    config: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let (name, value) = (&directive.args[0], &directive.args[1]);
    field_name(directive, name)?;
    let template = Template::compile_with(value, &config.map_names)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
    // The level has its own list (nginx inherits none then), but a body's
    // framing is ferry's to declare: these two are dropped here, once,
    // rather than skipped on every request (docs/nginx-differences.md).
    let set = settings.proxy_set_headers.get_or_insert_with(Vec::new);
    if !name.eq_ignore_ascii_case("content-length")
        && !name.eq_ignore_ascii_case("transfer-encoding")
    {
        set.push((name.clone(), template));
    }
    Ok(())
}

fn proxy_hide_header(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.hide_headers
        .get_or_insert_with(Vec::new)
        .push(d.args[0].clone());
    Ok(())
}

fn proxy_http_version(d: &Directive, _: &Config, _: &mut Inherited) -> Result<(), ConfigError> {
    if d.args[0] != "1.1" {
        return Err(ConfigError::at(
            "ferry speaks HTTP/1.1 to upstreams: only \"proxy_http_version 1.1\" is supported",
            d.location(),
        ));
    }
    Ok(())
}

/// nginx's response buffering, which ferry does not do (it streams): the
/// sizes are kept only to refuse what nginx refuses.
fn set_proxy_buffers(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let count: u64 = number(d, 0)?;
    if count < 2 {
        return Err(ConfigError::at(
            "there must be at least 2 \"proxy_buffers\"",
            d.location(),
        ));
    }
    s.proxy_buffers = Some((count, super::size(d, 1)?));
    Ok(())
}

fn set_busy(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_busy_buffers_size = Some(super::size(d, 0)?);
    Ok(())
}

fn set_temp_write(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_temp_file_write_size = Some(super::size(d, 0)?);
    Ok(())
}

fn set_max_temp(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_max_temp_file_size = Some(super::size(d, 0)?);
    Ok(())
}

/// nginx's checks of its buffering sizes, made where it makes them (each
/// level's merge), with its messages; defaults are one memory page
/// (`proxy_buffer_size 4k`, `proxy_buffers 8 4k`).
pub(super) fn check_buffering(settings: &Inherited, at: &Directive) -> Result<(), ConfigError> {
    const PAGE: u64 = 4096;
    let (count, each) = settings.proxy_buffers.unwrap_or((8, PAGE));
    let head = settings.max_response_head.map_or(PAGE, |h| h as u64);
    let size = head.max(each);
    let refuse = |message: &str| Err(ConfigError::at(message.to_string(), at.location()));
    let busy = settings.proxy_busy_buffers_size.unwrap_or(2 * size);
    if busy < size {
        return refuse(
            "\"proxy_busy_buffers_size\" must be equal to or greater than the maximum of the \
             value of \"proxy_buffer_size\" and one of the \"proxy_buffers\"",
        );
    }
    if busy > (count - 1) * each {
        return refuse(
            "\"proxy_busy_buffers_size\" must be less than the size of all \"proxy_buffers\" \
             minus one buffer",
        );
    }
    if settings.proxy_temp_file_write_size.unwrap_or(2 * size) < size {
        return refuse(
            "\"proxy_temp_file_write_size\" must be equal to or greater than the maximum of \
             the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\"",
        );
    }
    let max_temp = settings
        .proxy_max_temp_file_size
        .unwrap_or(1024 * 1024 * 1024);
    if max_temp != 0 && max_temp < size {
        return refuse(
            "\"proxy_max_temp_file_size\" must be equal to zero to disable temporary files \
             usage or must be equal to or greater than the maximum of the value of \
             \"proxy_buffer_size\" and one of the \"proxy_buffers\"",
        );
    }
    Ok(())
}

/// `proxy_buffer_size SIZE`: in nginx, the buffer the response head must
/// fit (`upstream sent too big header` otherwise); ferry's limit for the
/// upstream's head. That it fits ferry's ring buffer is checked once the
/// command line's `--buffer-size` is known (`cli::Args::into_config`).
fn proxy_buffer_size(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let size = super::size(directive, 0)?;
    settings.max_response_head = Some(usize::try_from(size).unwrap_or(usize::MAX));
    Ok(())
}

fn proxy_connect_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_connect_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn proxy_read_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_read_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn proxy_send_timeout(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_send_timeout = Some(duration(d, 0)?);
    Ok(())
}

fn proxy_next_upstream(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let mut flags = 0;
    for word in &directive.args {
        let flag = crate::config::next_upstream::parse(word).ok_or_else(|| {
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
    Ok(())
}

fn proxy_next_upstream_tries(
    d: &Directive,
    _: &Config,
    s: &mut Inherited,
) -> Result<(), ConfigError> {
    s.next_upstream_tries = Some(number(d, 0)?);
    Ok(())
}

fn proxy_next_upstream_timeout(
    d: &Directive,
    _: &Config,
    s: &mut Inherited,
) -> Result<(), ConfigError> {
    s.next_upstream_timeout = Some(duration(d, 0)?);
    Ok(())
}

/// `proxy_ignore_headers`: nginx's field names, checked.
fn ignore_headers(directive: &Directive) -> Result<(), ConfigError> {
    const FIELDS: [&str; 9] = [
        "X-Accel-Redirect",
        "X-Accel-Expires",
        "X-Accel-Limit-Rate",
        "X-Accel-Buffering",
        "X-Accel-Charset",
        "Expires",
        "Cache-Control",
        "Set-Cookie",
        "Vary",
    ];
    for name in &directive.args {
        if !FIELDS.iter().any(|field| field.eq_ignore_ascii_case(name)) {
            return Err(ConfigError::at(
                format!("invalid value \"{name}\" in \"proxy_ignore_headers\" directive"),
                directive.location(),
            ));
        }
    }
    Ok(())
}

fn proxy_pass_header(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.pass_headers
        .get_or_insert_with(Vec::new)
        .push(d.args[0].clone());
    Ok(())
}

fn proxy_pass_request_headers(
    d: &Directive,
    _: &Config,
    s: &mut Inherited,
) -> Result<(), ConfigError> {
    s.pass_request_headers = Some(super::flag(d)?);
    Ok(())
}

fn proxy_pass_request_body(
    d: &Directive,
    _: &Config,
    s: &mut Inherited,
) -> Result<(), ConfigError> {
    s.pass_request_body = Some(super::flag(d)?);
    Ok(())
}

fn proxy_set_body(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let template = Template::compile_with(&d.args[0], &config.map_names)
        .map_err(|e| ConfigError::at(e.to_string(), d.location()))?;
    s.set_body = Some(template);
    Ok(())
}

/// A `proxy_ssl_*` line: kept as written, read only where a location
/// proxies to `https://` (`crate::tls::upstream`).
fn proxy_ssl_line(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.proxy_ssl.push(d.clone());
    Ok(())
}

/// The TLS settings of a `proxy_pass https://` location.
#[cfg(feature = "tls")]
pub(super) fn upstream_tls(
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
pub(super) fn upstream_tls(
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

/// `proxy_pass http://$VARIABLE`: the name of an `upstream` block, found
/// per request. Without a resolver, nginx too can only send such a request
/// to a group it knows by name (see `check_resolver_use`).
pub(super) fn proxy_by_name(
    directive: &Directive,
    config: &Config,
) -> Result<crate::variables::Template, ConfigError> {
    let text = directive.args[0].as_str();
    let not_yet = |what: &str| {
        ConfigError::at(
            format!("variables in \"proxy_pass\" {what} are not supported yet"),
            directive.location(),
        )
    };
    let Some(authority) = text.strip_prefix("http://") else {
        return Err(not_yet("other than \"http://$name\""));
    };
    if authority.contains('/') {
        return Err(not_yet("with a URI part"));
    }
    crate::variables::Template::compile_with(authority, &config.map_names)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))
}

/// `proxy_pass http[s]://NAME_OR_HOST[:PORT][/URI]`: an upstream block by
/// name, or a host resolved now (an implicit group). Returns the group's
/// index, the URI part, if any, and for `https://` the host as written
/// (nginx's `$proxy_host`, the default name for the TLS handshake).
pub(super) fn proxy_target(
    directive: &Directive,
    matcher: &LocationMatch,
    config: &mut Config,
) -> Result<(usize, Option<String>, Option<String>), ConfigError> {
    let text = directive.args[0].as_str();
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
    // `unix:/run/app.sock:/uri`: the path runs to the first `:` (nginx's
    // rule); otherwise the authority runs to the first `/`.
    let (authority, uri) = match rest.strip_prefix("unix:") {
        Some(path) => match path.find(':') {
            Some(colon) => (&rest[..5 + colon], Some(path[colon + 1..].to_string())),
            None => (rest, None),
        },
        None => match rest.find('/') {
            Some(slash) => (&rest[..slash], Some(rest[slash..].to_string())),
            None => (rest, None),
        },
    };
    let uri = uri.filter(|uri| !uri.is_empty());
    if https && authority.starts_with("unix:") {
        return Err(ConfigError::at(
            "TLS to a unix domain socket upstream is not supported yet",
            directive.location(),
        ));
    }
    if uri.is_some() && matches!(matcher, LocationMatch::Regex(_) | LocationMatch::Named(_)) {
        return Err(ConfigError::at(
            "\"proxy_pass\" cannot have URI part in location given by regular expression, \
             or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
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
                || group.servers.first().is_some_and(|server| {
                    server.addr.inet().map(|a| a.port()) == Some(default_port)
                }))
    };
    if let Some(index) = config.upstreams.iter().position(same) {
        return Ok((index, uri, proxy_host));
    }
    let addr = super::upstream::upstream_address(authority, default_port)
        .map_err(|message| ConfigError::at(message, directive.location()))?;
    let mut group = UpstreamGroup::single(addr);
    group.name = authority.to_string();
    group.implicit = true;
    config.upstreams.push(group);
    Ok((config.upstreams.len() - 1, uri, proxy_host))
}

/// `proxy_cache_bypass` / `proxy_no_cache` values: checked as nginx checks
/// them (each a value with known variables), then unused (`NO_CACHE`).
fn check_predicates(d: &Directive, config: &Config, _: &mut Inherited) -> Result<(), ConfigError> {
    for value in &d.args {
        Template::compile_with(value, &config.map_names)
            .map_err(|e| ConfigError::at(e.to_string(), d.location()))?;
    }
    Ok(())
}

/// A `resolver` changes what ferry would do only where nginx resolves a
/// name as it runs: a `proxy_pass` naming its server by variables. ferry
/// resolves names at load alone, so that pair is refused.
pub(super) fn check_resolver_use(http: &Directive, config: &Config) -> Result<(), ConfigError> {
    fn first_resolver(lines: &[Directive]) -> Option<&Directive> {
        lines.iter().find_map(|line| {
            if line.name == "resolver" {
                return Some(line);
            }
            first_resolver(line.block.as_deref().unwrap_or_default())
        })
    }
    let Some(resolver) = first_resolver(http.block.as_deref().unwrap_or_default()) else {
        return Ok(());
    };
    let by_name = config
        .servers
        .iter()
        .flat_map(|server| &server.locations)
        .any(|location| {
            matches!(
                location.action,
                Action::Proxy {
                    by_name: Some(_),
                    ..
                }
            )
        });
    if by_name {
        return Err(ConfigError::at(
            "\"resolver\" with a \"proxy_pass\" that names its server by variables is not \
             supported yet: ferry resolves names when it loads the configuration, and finds \
             such a server among the \"upstream\" blocks only",
            resolver.location(),
        ));
    }
    Ok(())
}
