//! Which server and which location a request belongs to, by nginx's
//! algorithm, and the path the upstream receives. Pure functions over the
//! configuration and the request's bytes.
//!
//! Server: among the servers on the listening address the request came in
//! on, by `Host`: an exact name, then the longest leading wildcard
//! (`*.example.com`), then the longest trailing wildcard (`www.example.*`),
//! then the first matching regex, else the address's default server.
//!
//! Location: an exact (`=`) match wins at once; otherwise the longest prefix
//! is remembered (looking into its nested locations for longer ones); if it
//! is `^~`, it wins; otherwise regexes are tried in file order, those nested
//! in the remembered prefix first, and the first match wins; otherwise the
//! remembered prefix; otherwise there is no location (404).
//!
//! The path matched is nginx's `$uri`: the request-target's path (before `?`
//! or `#`), percent-decoded, with `//` merged and `.` and `..` segments
//! resolved ([`normalize_path`]), so that `location /admin` also covers
//! `/%61dmin`, `//admin` and `/x/../admin`.
//!
//! In the course (docs/learn): chapter 7, "The order".

use crate::config::{Config, LocationMatch, ServerConfig, ServerName};

/// Locations nested deeper than this are not searched.
const MAX_NESTING: usize = 16;

/// The server and location a request was routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub server: usize,
    /// `None`: no location matched.
    pub location: Option<usize>,
}

/// Picks the server for `host` (the `Host` field, port and case ignored)
/// among those on listener `listener`.
pub fn select_server(config: &Config, listener: usize, host: Option<&[u8]>) -> usize {
    let Some(routes) = config.listen.get(listener) else {
        return 0;
    };
    let Some(host) = host.map(host_name) else {
        return routes.default_server;
    };
    let candidates = routes
        .servers
        .iter()
        .filter_map(|&i| Some((i, config.servers.get(i)?)));
    let mut leading: Option<(usize, usize)> = None;
    let mut trailing: Option<(usize, usize)> = None;
    let mut regex: Option<usize> = None;
    for (index, server) in candidates {
        for name in &server.names {
            match name {
                ServerName::Exact(exact) if exact.as_bytes().eq_ignore_ascii_case(host) => {
                    return index
                }
                ServerName::LeadingWildcard { suffix, bare_too } => {
                    let suffix = suffix.as_bytes();
                    let matched = (host.len() > suffix.len()
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
                        || (*bare_too && host.eq_ignore_ascii_case(&suffix[1..]));
                    if matched && leading.is_none_or(|(_, len)| suffix.len() > len) {
                        leading = Some((index, suffix.len()));
                    }
                }
                ServerName::TrailingWildcard(prefix) => {
                    let prefix = prefix.as_bytes();
                    let matched = host.len() > prefix.len()
                        && host[..prefix.len()].eq_ignore_ascii_case(prefix);
                    if matched && trailing.is_none_or(|(_, len)| prefix.len() > len) {
                        trailing = Some((index, prefix.len()));
                    }
                }
                ServerName::Regex(pattern) => {
                    if regex.is_none() {
                        if let Ok(text) = std::str::from_utf8(host) {
                            if pattern.is_match(text) {
                                regex = Some(index);
                            }
                        }
                    }
                }
                ServerName::Exact(_) => {}
            }
        }
    }
    leading
        .map(|(index, _)| index)
        .or(trailing.map(|(index, _)| index))
        .or(regex)
        .unwrap_or(routes.default_server)
}

/// `Host` without its port (IPv6 literals keep their brackets).
fn host_name(host: &[u8]) -> &[u8] {
    let host = crate::http::headers::trim_ows(host);
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// The location for `path` in `server`, by nginx's rules (see the module
/// docs), or `None`.
pub fn select_location(server: &ServerConfig, path: &[u8]) -> Option<usize> {
    // The chain of ever longer prefix matches, outermost first. A fixed
    // array: routing runs per request and allocates nothing; nesting deeper
    // than this is not searched further.
    let mut chain = [0usize; MAX_NESTING];
    let mut depth = 0;
    let mut level: &[usize] = &server.top_level;
    while depth < MAX_NESTING {
        let mut best: Option<(usize, usize)> = None;
        for &index in level {
            let Some(location) = server.locations.get(index) else {
                continue;
            };
            match &location.matcher {
                LocationMatch::Exact(exact) if exact.as_bytes() == path => return Some(index),
                LocationMatch::Prefix { path: prefix, .. }
                    if path.starts_with(prefix.as_bytes())
                        && best.is_none_or(|(_, len)| prefix.len() > len) =>
                {
                    best = Some((index, prefix.len()));
                }
                _ => {}
            }
        }
        let Some((index, _)) = best else { break };
        chain[depth] = index;
        depth += 1;
        match server.locations.get(index) {
            Some(location) if !location.nested.is_empty() => level = &location.nested,
            _ => break,
        }
    }
    let chain = &chain[..depth];
    let longest = chain.last().copied();
    if let Some(index) = longest {
        if let Some(LocationMatch::Prefix {
            stops_regex: true, ..
        }) = server.locations.get(index).map(|l| &l.matcher)
        {
            return Some(index);
        }
    }
    // Regexes nested in the matched prefixes, deepest first, then the
    // server's own.
    let nested_levels = chain
        .iter()
        .rev()
        .filter_map(|&i| server.locations.get(i))
        .map(|l| l.nested.as_slice());
    for level in nested_levels.chain(std::iter::once(server.top_level.as_slice())) {
        for &index in level {
            if let Some(LocationMatch::Regex(pattern)) =
                server.locations.get(index).map(|l| &l.matcher)
            {
                // regex-lite matches text: a path that is not UTF-8 after
                // decoding matches no regex.
                if std::str::from_utf8(path).is_ok_and(|text| pattern.is_match(text)) {
                    return Some(index);
                }
            }
        }
    }
    longest
}

/// Why a path cannot be normalized (answered with 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`/…`): absolute-form is not routed by path here.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A decoded NUL byte.
    Nul,
    /// `..` above the root.
    AboveRoot,
}

/// nginx's `$uri` from a request-target, into `out` (cleared first): the
/// path before `?` or `#`, percent-decoded (`%2F` included, as nginx does),
/// `//` merged (`merge_slashes on`), `.` segments removed and `..` segments
/// resolved; escaping above `/` is an error. The result may hold any bytes
/// but NUL, so matching compares bytes.
pub fn normalize_path(target: &str, out: &mut Vec<u8>) -> Result<(), PathError> {
    out.clear();
    let path = target.split(['?', '#']).next().unwrap_or("");
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Decode first, then resolve segments on the decoded bytes: `%2e%2e`
    // is `..` for routing, as in nginx.
    let mut index = 0;
    while index < raw.len() {
        let byte = match raw[index] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(high), Some(low)) = (
                    raw.get(index + 1).and_then(|&b| hex(b)),
                    raw.get(index + 2).and_then(|&b| hex(b)),
                ) else {
                    return Err(PathError::BadEscape);
                };
                index += 3;
                (high * 16 + low) as u8
            }
            other => {
                index += 1;
                other
            }
        };
        if byte == 0 {
            return Err(PathError::Nul);
        }
        out.push(byte);
    }
    resolve_segments(out)
}

/// Merges slashes and resolves `.` and `..` in place.
fn resolve_segments(path: &mut Vec<u8>) -> Result<(), PathError> {
    let ends_with_slash = path.last() == Some(&b'/');
    let mut write = 0;
    let mut read = 0;
    let len = path.len();
    while read < len {
        // At a '/': skip repeated slashes.
        while read < len && path[read] == b'/' {
            read += 1;
        }
        let start = read;
        while read < len && path[read] != b'/' {
            read += 1;
        }
        let segment_len = read - start;
        let trailing = read == len;
        match &path[start..read] {
            b"" => {}
            b"." => {
                if trailing {
                    path[write] = b'/';
                    write += 1;
                }
            }
            b".." => {
                if write == 0 {
                    return Err(PathError::AboveRoot);
                }
                // Drop the last written segment ("/name").
                let cut = path[..write].iter().rposition(|&b| b == b'/').unwrap_or(0);
                write = cut;
                if trailing {
                    path[write] = b'/';
                    write += 1;
                }
            }
            _ => {
                path[write] = b'/';
                write += 1;
                path.copy_within(start..start + segment_len, write);
                write += segment_len;
            }
        }
    }
    if write == 0 || (ends_with_slash && path[write - 1] != b'/') {
        // "/" alone, or a trailing slash that must stay.
        if write < path.len() {
            path[write] = b'/';
        } else {
            path.push(b'/');
        }
        write += 1;
    }
    path.truncate(write);
    Ok(())
}

/// The request-target the upstream receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamTarget<'a> {
    /// `proxy_pass` without a URI part: the client's target, as sent
    /// (nginx's rule: not the normalized path).
    AsSent(&'a str),
    /// With a URI part: it replaces the part of the normalized path the
    /// location matched; the rest of the path is re-escaped, and the query
    /// follows as sent.
    Replaced {
        uri: &'a str,
        rest: &'a [u8],
        query: &'a str,
    },
}

/// Decides the upstream's target for a request routed to a location with
/// `matcher` and `proxy_pass` URI part `uri`. `normalized` is the path from
/// [`normalize_path`].
pub fn upstream_target<'a>(
    target: &'a str,
    normalized: &'a [u8],
    matcher: &LocationMatch,
    uri: Option<&'a str>,
) -> UpstreamTarget<'a> {
    let Some(uri) = uri else {
        return UpstreamTarget::AsSent(target);
    };
    let matched = match matcher {
        LocationMatch::Prefix { path, .. } => path.len().min(normalized.len()),
        LocationMatch::Exact(_) => normalized.len(),
        // Refused at load time: proxy_pass with a URI in a regex or named
        // location.
        LocationMatch::Regex(_) | LocationMatch::Named(_) => 0,
    };
    let query = target.find('?').map_or("", |q| &target[q..]);
    UpstreamTarget::Replaced {
        uri,
        rest: normalized.get(matched..).unwrap_or_default(),
        query,
    }
}

/// Appends `path` percent-encoded where a path may not hold the byte as is.
pub fn escape_path(path: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in path {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{directives, parse};

    fn config(text: &str) -> Config {
        let (tree, _) = parse::parse_text("t.conf", text).unwrap();
        directives::build(&tree).unwrap()
    }

    fn servers(names: &[&str]) -> Config {
        let mut text = String::from("events {}\nhttp {\n");
        for (i, name) in names.iter().enumerate() {
            text.push_str(&format!(
                "server {{ listen 127.0.0.1:8080; server_name {name}; location / {{ return 200 s{i}; }} }}\n"
            ));
        }
        text.push_str("}\n");
        config(&text)
    }

    #[test]
    fn server_names_by_nginx_priority() {
        let config = servers(&[
            "default.test",
            "~^www\\d+\\.example\\.com$",
            "www.example.*",
            "*.example.com",
            "*.www.example.com",
            "www.example.com",
            ".example.org",
        ]);
        let pick = |host: &str| select_server(&config, 0, Some(host.as_bytes()));
        assert_eq!(pick("www.example.com"), 5, "exact first");
        assert_eq!(pick("WWW.Example.COM:8080"), 5, "case and port ignored");
        assert_eq!(pick("a.www.example.com"), 4, "longest leading wildcard");
        assert_eq!(pick("mail.example.com"), 3, "leading wildcard");
        assert_eq!(pick("www.example.net"), 2, "trailing wildcard");
        assert_eq!(pick("www7.example.com"), 3, "wildcards beat regexes");
        assert_eq!(pick("example.org"), 6, ".name matches the bare name");
        assert_eq!(pick("a.example.org"), 6);
        assert_eq!(pick("nothing.test"), 0, "first server is the default");
        assert_eq!(select_server(&config, 0, None), 0);
    }

    #[test]
    fn regex_server_names_in_order() {
        let config = servers(&["a.test", "~^api\\.", "~^api\\.v2\\."]);
        assert_eq!(select_server(&config, 0, Some(b"api.v2.test")), 1);
    }

    #[test]
    fn default_server_flag() {
        let config = config(
            "events {}\nhttp {\nserver { listen 127.0.0.1:8080; server_name a; return 200 a; }\n\
             server { listen 127.0.0.1:8080 default_server; server_name b; return 200 b; }\n}\n",
        );
        assert_eq!(select_server(&config, 0, Some(b"zzz")), 1);
        assert_eq!(select_server(&config, 0, Some(b"a")), 0);
    }

    fn locations() -> Config {
        // The example from nginx's documentation of `location`, plus nesting.
        config(
            "events {}\nhttp { server { listen 127.0.0.1:8080;\n\
             location = / { return 200 A; }\n\
             location / { return 200 B; }\n\
             location /documents/ { return 200 C; }\n\
             location ^~ /images/ { return 200 D; }\n\
             location ~* \\.(gif|jpg|jpeg)$ { return 200 E; }\n\
             location /api/ { return 200 F; location /api/v2/ { return 200 G; location ~ \\.json$ { return 200 H; } } }\n\
             location ~ ^/api/v2/x { return 200 I; }\n\
             } }\n",
        )
    }

    fn returned(config: &Config, path: &str) -> String {
        let server = &config.servers[0];
        match select_location(server, path.as_bytes()).map(|i| &server.locations[i].action) {
            Some(crate::config::Action::Return {
                text: Some(text), ..
            }) => text.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn locations_by_nginx_priority() {
        let config = locations();
        let cases = [
            ("/", "A"),
            ("/index.html", "B"),
            ("/documents/document.html", "C"),
            ("/images/1.gif", "D"),
            ("/documents/1.jpg", "E"),
            ("/documents/1.JPG", "E"),
            ("/api/x", "F"),
            ("/api/v2/y", "G"),
            ("/api/v2/y.json", "H"),
            ("/api/v2/x", "I"),
        ];
        for (path, expected) in cases {
            assert_eq!(returned(&config, path), expected, "{path}");
        }
    }

    #[test]
    fn no_match_is_none() {
        let config = config("events {}\nhttp { server { listen 127.0.0.1:8080; location /only/ { return 200 x; } } }\n");
        assert_eq!(select_location(&config.servers[0], b"/other"), None);
    }

    #[test]
    fn paths_are_normalized_as_nginx_does() {
        let normal = |target: &str| {
            let mut out = Vec::new();
            normalize_path(target, &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
        };
        let cases = [
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("//admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/./admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/admin?x=/../y", "/admin"),
            ("/admin#frag", "/admin"),
            ("/a%2Fb", "/a/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/", "/"),
            ("/a//b///c", "/a/b/c"),
        ];
        for (target, expected) in cases {
            assert_eq!(normal(target).as_deref(), Ok(expected), "{target}");
        }
        assert_eq!(normal("/.."), Err(PathError::AboveRoot));
        assert_eq!(normal("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(normal("/%zz"), Err(PathError::BadEscape));
        assert_eq!(normal("/%2"), Err(PathError::BadEscape));
        assert_eq!(normal("/a%00b"), Err(PathError::Nul));
        assert_eq!(normal("http://h/x"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn proxy_pass_uri_replacement() {
        let prefix = |path: &str| LocationMatch::Prefix {
            path: path.into(),
            stops_regex: false,
        };
        let target = |raw: &'static str, matcher: &LocationMatch, uri: Option<&'static str>| {
            let mut normalized = Vec::new();
            normalize_path(raw, &mut normalized).unwrap();
            let mut out = Vec::new();
            match upstream_target(raw, &normalized, matcher, uri) {
                UpstreamTarget::AsSent(sent) => out.extend_from_slice(sent.as_bytes()),
                UpstreamTarget::Replaced { uri, rest, query } => {
                    out.extend_from_slice(uri.as_bytes());
                    escape_path(rest, &mut out);
                    out.extend_from_slice(query.as_bytes());
                }
            }
            String::from_utf8(out).unwrap()
        };
        // nginx's documented examples.
        assert_eq!(
            target("/name/x?a=1", &prefix("/name/"), Some("/remote/")),
            "/remote/x?a=1"
        );
        assert_eq!(target("/name/x", &prefix("/name/"), None), "/name/x");
        assert_eq!(
            target("//name/./x", &prefix("/name/"), None),
            "//name/./x",
            "as sent without a URI"
        );
        assert_eq!(target("/name/x", &prefix("/name/"), Some("/")), "/x");
        assert_eq!(target("/namex", &prefix("/name"), Some("/a")), "/ax");
        assert_eq!(
            target(
                "/exact?q",
                &LocationMatch::Exact("/exact".into()),
                Some("/other")
            ),
            "/other?q"
        );
        assert_eq!(
            target("/name/a%20b/../c%3F", &prefix("/name/"), Some("/r/")),
            "/r/c%3F"
        );
    }
}
