//! The parts of `Connection::parse_request`'s routing loop (in
//! `reading.rs`) that are not the loop itself: running a server's or
//! location's rewrite-module script, what a static location's lookup comes
//! to (an answer or an internal redirect, counted against nginx's limit),
//! the upstream block `proxy_pass http://$name` names, a regex location's
//! captures, `keepalive_disable`'s browsers and `expires` on ferry's own
//! answers. Each is called only where its feature is configured, so the
//! loop's path for a plain proxied request stays short.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use log::error;

use super::files::StaticStep;
use super::starting::Target;
use crate::config::{LocationMatch, ScriptBuffers, ScriptOutcome, ScriptStep};
use crate::files;
use crate::http::error_page::ErrorResponse;
use crate::http::request::Method;
use crate::variables::RequestView;

/// nginx's limit on internal redirects (index files, `try_files`).
pub(super) const MAX_INTERNAL_REDIRECTS: u8 = 10;

/// What routing does after a static location's lookup.
pub(super) enum StaticRoute {
    Answer(Target),
    /// Route again with the uri in `redirect`.
    Uri,
    /// Go to this named location.
    Named(usize),
}

/// A static location's lookup, as the router takes it: an answer, or an
/// internal redirect counted against nginx's limit (500 past it, as nginx).
/// Kept out of `parse_request`, whose proxying path it would only slow.
#[inline(never)]
pub(super) fn route_static(
    step: StaticStep,
    settings: &crate::config::Settings,
    server: Option<&crate::config::ServerConfig>,
    redirects: &mut u8,
    redirect: &[u8],
) -> StaticRoute {
    let failed = Target::Page(ErrorResponse::InternalServerError);
    match step {
        StaticStep::Done(target) => StaticRoute::Answer(target),
        StaticStep::Redirect => {
            *redirects += 1;
            if *redirects > MAX_INTERNAL_REDIRECTS {
                error!(
                    "rewrite or internal redirection cycle while internally redirecting to \"{}\"",
                    String::from_utf8_lossy(redirect)
                );
                return StaticRoute::Answer(failed);
            }
            StaticRoute::Uri
        }
        StaticStep::Named => {
            let name = match &settings.files.try_files {
                Some(files::TryFiles {
                    fallback: files::Fallback::Named(name),
                    ..
                }) => name.as_str(),
                _ => "",
            };
            let found = server.and_then(|s| {
                s.locations
                    .iter()
                    .position(|l| matches!(&l.matcher, LocationMatch::Named(n) if n == name))
            });
            *redirects += 1;
            match found {
                Some(index) if *redirects <= MAX_INTERNAL_REDIRECTS => StaticRoute::Named(index),
                _ => {
                    error!("could not find named location \"{name}\"");
                    StaticRoute::Answer(failed)
                }
            }
        }
    }
}

/// An internal redirect's target becomes the uri routed next; its
/// arguments (if any) are kept apart, as nginx's `$args`.
#[inline(never)]
pub(super) fn split_redirect(normalized: &mut Vec<u8>, redirect: &mut Vec<u8>, args: &mut Vec<u8>) {
    let split = redirect.iter().position(|&b| b == b'?');
    args.clear();
    if let Some(at) = split {
        args.extend_from_slice(redirect.get(at + 1..).unwrap_or_default());
        redirect.truncate(at);
    }
    std::mem::swap(normalized, redirect);
}

/// nginx's `$proxy_host`: the group's name, or the `host:port` of a
/// `proxy_pass` without a group (`localhost` for a Unix socket).
#[inline(always)]
pub(super) fn proxy_host(config: &crate::config::Config, group: usize) -> &str {
    config.upstreams.get(group).map_or("", |g| {
        if g.implicit && g.name.starts_with("unix:") {
            "localhost"
        } else {
            g.name.as_str()
        }
    })
}

/// `keepalive_disable`: whether this browser's request must close the
/// connection (MSIE 6 after a POST, old Safari always). The `User-Agent`
/// is read only when a listed browser could matter.
pub(super) fn closes_for_browser(
    browsers: u8,
    method: Method,
    headers: &[httparse::Header<'_>],
) -> bool {
    use crate::http::browsers::{detect, MSIE6, SAFARI};
    let msie6 = browsers & MSIE6 != 0 && method == Method::Post;
    if !msie6 && browsers & SAFARI == 0 {
        return false;
    }
    let Some(agent) = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
    else {
        return false;
    };
    let found = detect(agent.value);
    (msie6 && found & MSIE6 != 0) || (browsers & SAFARI != 0 && found & SAFARI != 0)
}

/// The request's `limit_rate` and `limit_rate_after` when variables decide
/// them (`limit_rate $rate`, `set $limit_rate`), read as nginx reads them
/// at the first write: a bad size is logged and counts as 0, a bad
/// `$limit_rate` is logged and ignored. `None`: the location's numbers
/// stand (no variables: nothing is rendered).
pub(super) fn rendered_rates(
    limits: &crate::config::Limits,
    limit_rate_set: Option<usize>,
    view: &RequestView<'_>,
    slot: usize,
) -> Option<(u64, u64)> {
    let set = limit_rate_set
        .map(|index| view.script.sets.get(index))
        .filter(|value| !value.is_empty());
    if set.is_none() && !limits.rate_is_rendered() {
        return None;
    }
    let size = |template: &Option<crate::variables::Template>, fixed: u64| {
        let Some(template) = template else {
            return fixed;
        };
        let mut text = Vec::new();
        template.render(view, &mut text);
        let text = String::from_utf8_lossy(&text);
        crate::config::parse_size(&text).unwrap_or_else(|| {
            log::error!("#{slot} invalid size \"{text}\"");
            0
        })
    };
    let from_set = set.and_then(|value| {
        let text = String::from_utf8_lossy(value);
        let size = crate::config::parse_size(&text);
        if size.is_none() {
            log::error!("#{slot} invalid $limit_rate \"{text}\"");
        }
        size
    });
    let rate = from_set.unwrap_or_else(|| size(&limits.rate_rendered, limits.rate));
    let after = size(&limits.rate_after_rendered, limits.rate_after);
    Some((rate, after))
}

/// `proxy_pass http://$name`: the group for the rendered value (left in
/// `scratch`), as nginx's `ngx_http_upstream_init_request` finds one
/// without a resolver: an `upstream` block of that name when the value has
/// no port, or the group another `proxy_pass` line made for that host and
/// port (80 when none); names compare without case.
pub(super) fn group_by_name(
    config: &crate::config::Config,
    name: &crate::variables::Template,
    view: &RequestView<'_>,
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    scratch.clear();
    name.render(view, scratch);
    let (host, port) = authority_parts(scratch)?;
    config.upstreams.iter().position(|group| {
        if group.stream {
            return false;
        }
        if !group.implicit {
            return port.is_none() && group.name.as_bytes().eq_ignore_ascii_case(host);
        }
        let server_port = group.servers.first().and_then(|s| match s.addr {
            crate::upstream::ServerAddr::Inet(addr) => Some(addr.port()),
            crate::upstream::ServerAddr::Unix(_) => None,
        });
        authority_parts(group.name.as_bytes())
            .is_some_and(|(written, _)| written.eq_ignore_ascii_case(host))
            && server_port == Some(port.unwrap_or(80))
    })
}

/// Whether a rendered `proxy_pass` host is an IP address, which nginx
/// connects to without a resolver (ferry: not supported yet).
pub(super) fn is_address(authority: &[u8]) -> bool {
    authority_parts(authority)
        .and_then(|(host, _)| std::str::from_utf8(host).ok())
        .is_some_and(|host| host.parse::<std::net::IpAddr>().is_ok())
}

/// `HOST`, `HOST:PORT` or `[V6]:PORT`: the host and the port, if given;
/// `None` if the port is not a number.
fn authority_parts(text: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = match text.strip_prefix(b"[") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b']')?;
            let (host, after) = rest.split_at(end);
            (host, after.get(1..)?.strip_prefix(b":"))
        }
        None => match text.iter().filter(|&&b| b == b':').count() {
            0 => (text, None),
            1 => {
                let colon = text.iter().position(|&b| b == b':')?;
                (text.get(..colon)?, text.get(colon + 1..))
            }
            _ => (text, None),
        },
    };
    let port = match port {
        None => None,
        Some(digits) => Some(std::str::from_utf8(digits).ok()?.parse().ok()?),
    };
    Some((host, port))
}

/// A regex location's groups, for `$1`…`$9`.
#[inline(never)]
pub(super) fn capture_location(
    regex: &regex_lite::Regex,
    uri: &[u8],
    captured: &mut Vec<u8>,
    spans: &mut crate::config::rewrite::CaptureSpans,
) {
    if regex.captures_len() > 1 {
        if let Ok(text) = std::str::from_utf8(uri) {
            crate::config::rewrite::capture(regex, text, captured, spans);
        }
    }
}

/// The query of an origin-form target, without `?`.
pub(super) fn query_of(target: &str) -> &[u8] {
    target
        .split_once('?')
        .map_or(&b""[..], |(_, query)| query.as_bytes())
}

/// `expires` on an answer that is not a file, rendered with the others.
#[cold]
pub(super) fn write_expires(
    expires: files::Expires,
    now: std::time::SystemTime,
    out: &mut Vec<u8>,
) {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    expires.write(now, None, out);
}

/// A server's or location's rewrite-module script (called for those that
/// have one: kept out of the routing path of those that do not).
#[inline(never)]
pub(super) fn run_script<'c>(
    steps: &'c [ScriptStep],
    view: &RequestView<'_>,
    mut buffers: ScriptBuffers<'_>,
    log: bool,
    if_headers: &mut Option<&'c [crate::config::AddHeader]>,
) -> ScriptOutcome<'c> {
    crate::config::rewrite::run(steps, view, &mut buffers, log, if_headers)
}
