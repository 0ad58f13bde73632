//! The value of one variable for one request: borrowed from the request
//! where it lies ([`borrowed_value`]), else rendered into the caller's
//! buffer ([`render_variable`]).
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

use super::{RequestView, TlsFacts, Variable};
use crate::http::headers::{push_decimal, push_ip};

/// `$remote_port` or `$realip_remote_port`; 0, printed as nothing as
/// nginx does, for a real address a field named without a port.
pub(super) fn port(variable: &Variable, request: &RequestView<'_>) -> u16 {
    match variable {
        Variable::RemotePort => request.client.port(),
        _ => request.peer.port(),
    }
}

/// Variables whose value is a slice of the request.
pub(super) fn borrowed_value<'a>(variable: &Variable, request: &'a RequestView<'_>) -> &'a [u8] {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (request.target, ""),
    };
    match variable {
        Variable::RequestUri => request.target.as_bytes(),
        Variable::Uri if !request.uri.is_empty() => request.uri,
        Variable::Uri => path.as_bytes(),
        Variable::Args => request.args.unwrap_or(query.as_bytes()),
        Variable::RequestMethod => request.method.as_bytes(),
        Variable::Scheme if request.tls.is_some() => b"https",
        Variable::Scheme => b"http",
        Variable::Https if request.tls.is_some() => b"on",
        Variable::Https => b"",
        Variable::SslProtocol => request.tls.map_or(&b""[..], |t| t.protocol.as_bytes()),
        Variable::SslCipher => request.tls.map_or(&b""[..], |t| t.cipher.as_bytes()),
        Variable::SslServerName => request
            .tls
            .as_ref()
            .map_or(&b""[..], |t| t.server_name.as_bytes()),
        // nginx: "r" if the session was reused, "." otherwise.
        Variable::SslSessionReused => match request.tls {
            Some(TlsFacts { reused: true, .. }) => b"r",
            Some(_) => b".",
            None => b"",
        },
        Variable::Host => {
            // nginx: the request's host without port, else the server's name.
            let host = request.host;
            let host = match host.iter().rposition(|&b| b == b':') {
                Some(colon) if host.first() != Some(&b'[') => &host[..colon],
                _ => host,
            };
            if host.is_empty() {
                request.server_name.as_bytes()
            } else {
                host
            }
        }
        Variable::Http(name) => request.field(name),
        Variable::Cookie(name) => cookie(request, name.as_bytes()),
        Variable::IsArgs => match request.args.unwrap_or(query.as_bytes()) {
            [] => b"",
            _ => b"?",
        },
        Variable::Arg(name) => request
            .args
            .unwrap_or(query.as_bytes())
            .split(|&b| b == b'&')
            .find_map(|pair| {
                let at = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
                let (key, value) = pair.split_at(at);
                (key == name.as_bytes()).then(|| value.get(1..).unwrap_or_default())
            })
            .unwrap_or_default(),
        Variable::ServerProtocol => request.version.as_bytes(),
        Variable::ServerName => request.server_name.as_bytes(),
        Variable::ProxyHost => request.proxy_host.as_bytes(),
        Variable::Hostname => hostname().as_bytes(),
        // Rendered by `render_variable`, or only known after the response.
        _ => b"",
    }
}

/// The machine's name (`gethostname`), lower-cased as nginx keeps it; read
/// once, when a template first asks.
fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    })
}

/// `$limit_rate` while the request is handled: what `set $limit_rate`
/// gave it, as bytes (nginx keeps the parsed number), else 0, as nginx's
/// is until the response's first write; a value that is no size was
/// logged and ignored by the set.
pub(super) fn set_limit_rate(
    set: Option<usize>,
    maps: usize,
    sets: &super::SetValues<'_>,
    out: &mut Vec<u8>,
) {
    let rate = set
        .and_then(|index| index.checked_sub(maps))
        .and_then(|index| std::str::from_utf8(sets.get(index)).ok())
        .and_then(crate::units::parse_size)
        .unwrap_or(0);
    push_decimal(out, rate);
}

/// A cookie's value as nginx finds it (`ngx_http_parse_cookie_lines`):
/// in each `Cookie` field, pairs split at `;`, the name compared without
/// case, spaces allowed around `=`; the first match wins.
fn cookie<'a>(request: &'a RequestView<'_>, name: &[u8]) -> &'a [u8] {
    let fields = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"));
    for field in fields {
        for pair in field.value.split(|&b| b == b';') {
            let pair = pair.trim_ascii_start();
            let Some((candidate, rest)) = pair.split_at_checked(name.len()) else {
                continue;
            };
            if !candidate.eq_ignore_ascii_case(name) {
                continue;
            }
            if let Some(value) = rest.trim_ascii_start().strip_prefix(b"=") {
                return value.trim_ascii_start();
            }
        }
    }
    b""
}

pub(super) fn render_variable(variable: &Variable, request: &RequestView<'_>, out: &mut Vec<u8>) {
    match variable {
        Variable::RemoteUser => {
            // The user of a `Basic` Authorization field, checked or not (as
            // nginx's); decoded only for requests that send one.
            let field = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| h.value);
            if field.is_some() {
                let mut decoded = Vec::new();
                if let Some(colon) = crate::auth::credentials(field, &mut decoded) {
                    out.extend_from_slice(decoded.get(..colon).unwrap_or_default());
                }
            }
        }
        Variable::Request => {
            out.extend_from_slice(request.method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(request.target.as_bytes());
            out.push(b' ');
            out.extend_from_slice(request.version.as_bytes());
        }
        Variable::ProxyAddXForwardedFor => {
            for header in request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            {
                let value = crate::http::headers::trim_ows(header.value);
                if !value.is_empty() {
                    out.extend_from_slice(value);
                    out.extend_from_slice(b", ");
                }
            }
            push_ip(out, request.client.ip());
        }
        Variable::ServerPort => push_decimal(out, u64::from(request.server_port)),
        Variable::RequestId => out.extend_from_slice(&request.request_id.get()),
        Variable::Map(index) => match request.maps.get(*index) {
            Some(map) => map.render(request, out),
            // Past the maps: the variables `set` defines.
            None => out.extend_from_slice(request.script.sets.get(index - request.maps.len())),
        },
        Variable::Capture(n) => out.extend_from_slice(request.script.capture(*n)),
        Variable::LimitRate { set } => {
            set_limit_rate(*set, request.maps.len(), &request.script.sets, out);
        }
        Variable::Pid => push_decimal(out, u64::from(std::process::id())),
        Variable::DocumentRoot => {
            if let Some(root) = request.root {
                let (crate::files::root::DocumentRoot::Root(path)
                | crate::files::root::DocumentRoot::Alias { path, .. }) = root;
                out.extend_from_slice(path.as_os_str().as_encoded_bytes());
            }
        }
        Variable::RequestFilename => {
            if let Some(root) = request.root {
                let uri = if request.uri.is_empty() {
                    request.target.split('?').next().unwrap_or("").as_bytes()
                } else {
                    request.uri
                };
                crate::files::root::append_path(root, uri, out);
            }
        }
        Variable::RemoteAddr => push_ip(out, request.client.ip()),
        Variable::RealipRemoteAddr => push_ip(out, request.peer.ip()),
        Variable::ProxyProtocolAddr
        | Variable::ProxyProtocolPort
        | Variable::ProxyProtocolServerAddr
        | Variable::ProxyProtocolServerPort => {
            let header = request.proxy_protocol;
            let address = match variable {
                Variable::ProxyProtocolAddr | Variable::ProxyProtocolPort => {
                    header.and_then(|h| h.source())
                }
                _ => header.and_then(|h| h.destination()),
            };
            match (variable, address) {
                (_, None) => {}
                (Variable::ProxyProtocolAddr | Variable::ProxyProtocolServerAddr, Some(a)) => {
                    push_ip(out, a.ip())
                }
                (_, Some(a)) => push_decimal(out, u64::from(a.port())),
            }
        }
        Variable::RemotePort | Variable::RealipRemotePort => match port(variable, request) {
            0 => {}
            port => push_decimal(out, u64::from(port)),
        },
        Variable::Host => {
            let host = borrowed_value(variable, request);
            out.extend(host.iter().map(u8::to_ascii_lowercase));
        }
        other => out.extend_from_slice(borrowed_value(other, request)),
    }
}
