//! The location's rules for the fields of an upstream's response head,
//! applied as `response::write_client_head` relays them: `proxy_redirect`
//! for `Location` and `Refresh` (made absolute with the request's
//! [`Origin`], as nginx's `absolute_redirect`), `proxy_cookie_domain` and
//! `proxy_cookie_path` for `Set-Cookie`, and the fields `expires` replaces
//! and `charset` completes.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

use super::headers;
use super::response::ExtraFields;

/// The scheme, host and port this request came to, for absolute redirects:
/// the `Host` without its port (else the local address) and the local
/// port, left out when it is the scheme's default.
#[derive(Clone, Copy, Default)]
pub struct Origin<'a> {
    pub https: bool,
    pub host: &'a [u8],
    /// 0: the socket's local port (and, without a host, its address).
    pub port: u16,
    pub socket: Option<&'a mio::net::TcpStream>,
}

impl Origin<'_> {
    /// Appends `scheme://host[:port]`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let local = if self.port == 0 || self.host.is_empty() {
            self.socket.and_then(|s| s.local_addr().ok())
        } else {
            None
        };
        out.extend_from_slice(if self.https { b"https://" } else { b"http://" });
        match (self.host.is_empty(), local) {
            (true, Some(addr)) => match addr.ip() {
                std::net::IpAddr::V4(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
                std::net::IpAddr::V6(ip) => out.extend_from_slice(format!("[{ip}]").as_bytes()),
            },
            _ => out.extend_from_slice(self.host),
        }
        let port = match (self.port, local) {
            (0, Some(addr)) => addr.port(),
            (port, _) => port,
        };
        let default = if self.https { 443 } else { 80 };
        if port != default && port != 0 {
            out.push(b':');
            headers::push_decimal(out, u64::from(port));
        }
    }
}

/// The location's rules for a field: `Set-Cookie` (`proxy_cookie_*`),
/// `Location` and `Refresh` (`proxy_redirect`), the fields `expires`
/// replaces (dropped here; the location's are in `extra.add`) and the
/// `Content-Type` `charset` names a charset in. True if `header` was
/// written (rewritten) or dropped.
pub(super) fn rewritten(
    out: &mut Vec<u8>,
    header: &httparse::Header<'_>,
    extra: &ExtraFields<'_>,
) -> bool {
    let rewrites_cookies = !extra.cookie_domains.is_empty() || !extra.cookie_paths.is_empty();
    if rewrites_cookies
        && header.name.eq_ignore_ascii_case("set-cookie")
        && write_cookie(out, header.name, header.value, extra)
    {
        return true;
    }
    if !extra.redirects.is_empty()
        && write_redirected(
            out,
            header.name,
            header.value,
            extra.redirects,
            &extra.origin,
        )
    {
        return true;
    }
    if extra.replaces_cache_fields
        && (header.name.eq_ignore_ascii_case("expires")
            || header.name.eq_ignore_ascii_case("cache-control"))
    {
        return true;
    }
    if extra.charset.is_some() && header.name.eq_ignore_ascii_case("content-type") {
        if let Some(charset) =
            headers::charset_for(header.value, extra.charset, extra.charset_types)
        {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(header.value);
            out.extend_from_slice(b"; charset=");
            out.extend_from_slice(charset.as_bytes());
            out.extend_from_slice(b"\r\n");
            return true;
        }
    }
    false
}

/// `value` with its first `proxy_redirect` pattern that starts at `from`
/// replaced, or `None` if none does: as nginx rewrites `Location` (from 0)
/// and `Refresh` (from after `url=`).
pub(super) fn redirected(
    value: &[u8],
    from: usize,
    rules: &[(String, String)],
    origin: Option<&Origin<'_>>,
    out: &mut Vec<u8>,
) -> bool {
    let Some(rest) = value.get(from..) else {
        return false;
    };
    let Some((pattern, replacement)) = rules
        .iter()
        .find(|(pattern, _)| rest.starts_with(pattern.as_bytes()))
    else {
        return false;
    };
    out.extend_from_slice(value.get(..from).unwrap_or_default());
    let relative = match replacement.as_bytes().first() {
        Some(b'/') => true,
        None => rest.get(pattern.len()) == Some(&b'/'),
        Some(_) => false,
    };
    if let (true, Some(origin)) = (relative, origin) {
        origin.write(out);
    }
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(rest.get(pattern.len()..).unwrap_or_default());
    true
}

/// The attributes of a `Set-Cookie` value, as nginx splits them: at `;`,
/// each `name[=value]` trimmed of spaces.
pub(super) fn cookie_attributes(value: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    fn trim(mut part: &[u8]) -> &[u8] {
        while let [b' ', rest @ ..] = part {
            part = rest;
        }
        while let [rest @ .., b' '] = part {
            part = rest;
        }
        part
    }
    value.split(|&b| b == b';').map(move |attribute| {
        match attribute.iter().position(|&b| b == b'=') {
            Some(at) => (
                trim(attribute.get(..at).unwrap_or_default()),
                Some(trim(attribute.get(at + 1..).unwrap_or_default())),
            ),
            None => (trim(attribute), None),
        }
    })
}

/// The rewritten cookie attribute `value` of `name` (`domain` or `path`),
/// if a rule matches: a domain equal to the pattern (without case, after
/// its leading dot, which stays), a path that starts with it.
pub(super) fn cookie_rewrite<'r>(
    name: &[u8],
    value: &[u8],
    extra: &'r ExtraFields<'_>,
) -> Option<(usize, &'r str, usize)> {
    if name.eq_ignore_ascii_case(b"domain") {
        let dot = usize::from(value.first() == Some(&b'.'));
        let rest = value.get(dot..)?;
        extra
            .cookie_domains
            .iter()
            .find(|(pattern, _)| pattern.as_bytes().eq_ignore_ascii_case(rest))
            .map(|(pattern, replacement)| (dot, replacement.as_str(), pattern.len()))
    } else if name.eq_ignore_ascii_case(b"path") {
        extra
            .cookie_paths
            .iter()
            .find(|(pattern, _)| value.starts_with(pattern.as_bytes()))
            .map(|(pattern, replacement)| (0, replacement.as_str(), pattern.len()))
    } else {
        None
    }
}

/// Writes a `Set-Cookie` field with its domain and path rewritten by
/// `proxy_cookie_domain` / `proxy_cookie_path`, re-joined as nginx joins
/// them (`; `); `false` (nothing written) if no rule applies.
pub(super) fn write_cookie(
    out: &mut Vec<u8>,
    name: &str,
    value: &[u8],
    extra: &ExtraFields<'_>,
) -> bool {
    let mut attributes = cookie_attributes(value);
    if !matches!(attributes.next(), Some((_, Some(_)))) {
        return false;
    }
    let applies = attributes
        .any(|(key, value)| value.is_some_and(|value| cookie_rewrite(key, value, extra).is_some()));
    if !applies {
        return false;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for (index, (key, value)) in cookie_attributes(value).enumerate() {
        if index > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(key);
        let Some(value) = value else {
            continue;
        };
        out.push(b'=');
        match cookie_rewrite(key, value, extra).filter(|_| index > 0) {
            Some((keep, replacement, replaced)) => {
                out.extend_from_slice(value.get(..keep).unwrap_or_default());
                out.extend_from_slice(replacement.as_bytes());
                out.extend_from_slice(value.get(keep + replaced..).unwrap_or_default());
            }
            None => out.extend_from_slice(value),
        }
    }
    out.extend_from_slice(b"\r\n");
    true
}

/// Where the URL of a `Refresh` value starts: after `url=`, any case.
pub(super) fn refresh_url(value: &[u8]) -> Option<usize> {
    value
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"url="))
        .map(|at| at + 4)
}

/// Writes `name: value` with the value's URL rewritten by `rules`, if it
/// is a `Location` or `Refresh` field one of them matches; `false` if not.
/// A rewritten `Location` that is a path is made absolute with `origin`
/// (nginx's header filter does so for `absolute_redirect on`); `Refresh`
/// keeps what the rule gives.
pub(super) fn write_redirected(
    out: &mut Vec<u8>,
    name: &str,
    value: &[u8],
    rules: &[(String, String)],
    origin: &Origin<'_>,
) -> bool {
    let (from, origin) = if name.eq_ignore_ascii_case("location") {
        (0, Some(origin))
    } else if name.eq_ignore_ascii_case("refresh") {
        match refresh_url(value) {
            Some(at) => (at, None),
            None => return false,
        }
    } else {
        return false;
    };
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if !redirected(value, from, rules, origin, out) {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(b"\r\n");
    true
}
