//! `map` blocks, as loaded: their entries and how a value is chosen. A
//! map is a variable computed from another, so it lives with the variables
//! (the configuration builds it, `config::directives::map`).
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

use super::Template;

/// `map SOURCE $NAME { … }`: `$NAME` is the value of the first entry the
/// source's value matches: an exact string (with `hostnames`, a host name
/// compared without case, and `*.example.com`, `.example.com`,
/// `www.example.*` patterns), then the regular expressions in file order,
/// else `default` (empty without one). Computed when used, never stored.
#[derive(Clone, Debug)]
pub struct MapDef {
    pub name: String,
    pub source: Template,
    pub exact: Vec<(String, Template)>,
    pub wildcards: Vec<(String, Template)>,
    pub regexes: Vec<(regex_lite::Regex, Template)>,
    pub default: Option<Template>,
    pub hostnames: bool,
    /// A `geo` block's networks, which then take the place of the string
    /// entries.
    pub geo: Option<GeoTable>,
}

/// `geo [SOURCE] $NAME { NETWORK VALUE; … }`: the source's value (the
/// client's address by default) read as an address; the value of the
/// longest network that holds it, the later of two equal ones (nginx
/// replaces a duplicate), else `default`. An address that does not parse
/// is nginx's `255.255.255.255`.
#[derive(Clone, Debug, Default)]
pub struct GeoTable {
    pub networks: Vec<(std::net::IpAddr, u8, Template)>,
}

impl GeoTable {
    fn choose(&self, key: &[u8]) -> Option<&Template> {
        let address = std::str::from_utf8(key)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST));
        let mut best: Option<(u8, &Template)> = None;
        for (network, prefix, value) in &self.networks {
            let holds = crate::cidr::holds(*network, *prefix, address);
            if holds && best.is_none_or(|(longest, _)| *prefix >= longest) {
                best = Some((*prefix, value));
            }
        }
        best.map(|(_, value)| value)
    }
}

impl MapDef {
    /// Appends the value for `request` to `out`. The source's value is
    /// rendered into `out` itself, looked up and taken back: no buffer of
    /// its own.
    pub fn render(&self, request: &super::RequestView<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        self.source.render(request, out);
        let key = out.get(start..).unwrap_or_default();
        match self.choose(key) {
            None => out.truncate(start),
            Some((value, None)) => {
                out.truncate(start);
                value.render(request, out);
            }
            Some((value, Some(regex))) => {
                // `~^/old/(.*)$ /new/$1;`: the value reads the key's groups.
                let key = key.to_vec();
                out.truncate(start);
                let (mut captured, mut spans) = (Vec::new(), Vec::new());
                let text = std::str::from_utf8(&key).unwrap_or_default();
                super::capture(regex, text, &mut captured, &mut spans);
                let values = crate::variables::ScriptValues {
                    haystack: &captured,
                    captures: &spans,
                    sets: request.script.sets,
                };
                value.render_in_script(request, &values, out);
            }
        }
    }

    /// The entry `key` chooses, and its regex when the value may read the
    /// regex's groups.
    fn choose(&self, key: &[u8]) -> Option<(&Template, Option<&regex_lite::Regex>)> {
        if let Some(geo) = &self.geo {
            return geo.choose(key).or(self.default.as_ref()).map(|v| (v, None));
        }
        let key = match (self.hostnames, key.strip_suffix(b".")) {
            (true, Some(stripped)) => stripped,
            _ => key,
        };
        let same = |entry: &str| {
            if self.hostnames {
                entry.as_bytes().eq_ignore_ascii_case(key)
            } else {
                entry.as_bytes() == key
            }
        };
        if let Some((_, value)) = self.exact.iter().find(|(entry, _)| same(entry)) {
            return Some((value, None));
        }
        let wildcard = self
            .wildcards
            .iter()
            .find(|(pattern, _)| host_pattern_matches(pattern, key));
        if let Some((_, value)) = wildcard {
            return Some((value, None));
        }
        if let Ok(text) = std::str::from_utf8(key) {
            let regex = self.regexes.iter().find(|(regex, _)| regex.is_match(text));
            if let Some((regex, value)) = regex {
                return Some((value, (regex.captures_len() > 1).then_some(regex)));
            }
        }
        self.default.as_ref().map(|value| (value, None))
    }
}

/// nginx's host name patterns (already lower case): `*.example.com`
/// (subdomains), `.example.com` (the name and its subdomains),
/// `www.example.*` (any last labels); the host is compared without case.
fn host_pattern_matches(pattern: &str, host: &[u8]) -> bool {
    let ends_with = |suffix: &[u8]| {
        host.len() >= suffix.len()
            && host
                .get(host.len() - suffix.len()..)
                .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
    };
    if let Some(suffix) = pattern.strip_prefix('*') {
        host.len() > suffix.len() && ends_with(suffix.as_bytes())
    } else if let Some(domain) = pattern.strip_prefix('.') {
        host.eq_ignore_ascii_case(domain.as_bytes())
            || (host.len() > domain.len()
                && ends_with(domain.as_bytes())
                && host.get(host.len() - domain.len() - 1) == Some(&b'.'))
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        host.len() > prefix.len()
            && host
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
    } else {
        false
    }
}
