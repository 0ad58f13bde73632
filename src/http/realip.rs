//! The real client address (ngx_http_realip_module): when a request comes
//! through a trusted proxy or load balancer, the address that proxy names
//! in a request field (or in the PROXY protocol header) replaces the TCP
//! peer's for everything after it: `$remote_addr`, allow/deny, logs, the
//! `X-Forwarded-For` ferry appends to, `ip_hash`.
//!
//! Sans-IO: [`real_address`] reads a parsed head and returns the address,
//! or `None` to keep the peer's. It decides as nginx's
//! `ngx_http_get_forwarded_addr` does: the peer must be trusted
//! (`set_real_ip_from`); then the field's last address is taken, and with
//! `real_ip_recursive on` the walk goes on leftwards for as long as the
//! address just taken is itself trusted. Several `X-Forwarded-For` fields
//! read as one list, last field last. An address that does not parse ends
//! the walk with what was taken before it (or nothing).
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

use std::net::{IpAddr, SocketAddr};

use httparse::Header;

/// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealIp {
    /// Trusted peers; empty: the module is off.
    pub from: Vec<TrustedSource>,
    pub header: RealIpHeader,
    pub recursive: bool,
}

/// A `set_real_ip_from` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustedSource {
    /// An address or a CIDR network (address, prefix length).
    Network(IpAddr, u8),
    /// `unix:`: clients on a Unix socket (ferry listens on TCP only, so it
    /// trusts no client by this).
    Unix,
}

/// Where the real address is read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default): the first such field.
    #[default]
    XRealIp,
    /// `X-Forwarded-For`: every such field, as one list.
    XForwardedFor,
    /// `proxy_protocol`: the source address of the connection's PROXY
    /// protocol header.
    ProxyProtocol,
    /// Any other field, by name: the first such field.
    Field(String),
}

impl TrustedSource {
    fn trusts(&self, address: IpAddr) -> bool {
        match *self {
            TrustedSource::Network(network, prefix) => crate::cidr::holds(network, prefix, address),
            TrustedSource::Unix => false,
        }
    }
}

impl RealIp {
    pub fn is_on(&self) -> bool {
        !self.from.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.from.iter().any(|source| source.trusts(address))
    }
}

/// How one field's walk ended (nginx's NGX_OK, NGX_DONE, NGX_DECLINED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// The whole list was walked: the next field may go on.
    Through,
    /// Stopped at an untrusted or unreadable entry after taking one.
    Stopped,
    /// Nothing taken from this field.
    Nothing,
}

/// The client address the request's proxy vouches for, or `None` to keep
/// `peer`. `proxy_protocol` is the connection's PROXY header source, if any.
/// A port ferry learns only from the PROXY header; an address from a field
/// has port 0 unless the field gave one (`$remote_port` is then empty, as
/// in nginx).
pub fn real_address(
    settings: &RealIp,
    peer: SocketAddr,
    headers: &[Header<'_>],
    proxy_protocol: Option<SocketAddr>,
) -> Option<SocketAddr> {
    if !settings.is_on() {
        return None;
    }
    let first = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let mut address = peer;
    match &settings.header {
        RealIpHeader::XForwardedFor => {
            let mut taken = false;
            let fields = headers
                .iter()
                .rev()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
            for field in fields {
                match walk(settings, &mut address, field.value) {
                    Walk::Nothing if taken => break,
                    Walk::Nothing => return None,
                    Walk::Stopped => return Some(address),
                    Walk::Through => taken = true,
                }
                if !settings.recursive {
                    break;
                }
            }
            taken.then_some(address)
        }
        RealIpHeader::ProxyProtocol => {
            let source = proxy_protocol?;
            // The source is taken whole, its port too.
            settings.trusts(peer.ip()).then_some(source)
        }
        RealIpHeader::XRealIp => single(settings, address, first("x-real-ip")?),
        RealIpHeader::Field(name) => single(settings, address, first(name)?),
    }
}

fn single(settings: &RealIp, mut address: SocketAddr, value: &[u8]) -> Option<SocketAddr> {
    match walk(settings, &mut address, value) {
        Walk::Nothing => None,
        Walk::Through | Walk::Stopped => Some(address),
    }
}

/// Walks one field's list from its end (nginx's
/// `ngx_http_get_forwarded_addr_internal`).
fn walk(settings: &RealIp, address: &mut SocketAddr, list: &[u8]) -> Walk {
    let mut rest = list;
    let mut taken = false;
    loop {
        if !settings.trusts(address.ip()) {
            return if taken { Walk::Stopped } else { Walk::Nothing };
        }
        // The last entry: trailing separators skipped, then back to the
        // separator before it.
        let end = rest
            .iter()
            .rposition(|b| *b != b' ' && *b != b',')
            .map_or(0, |i| i + 1);
        let trimmed = rest.get(..end).unwrap_or_default();
        let start = trimmed
            .iter()
            .rposition(|b| *b == b' ' || *b == b',')
            .map_or(0, |i| i + 1);
        let Some(entry) = parse_addr_port(trimmed.get(start..).unwrap_or_default()) else {
            return if taken { Walk::Stopped } else { Walk::Nothing };
        };
        *address = entry;
        taken = true;
        if !settings.recursive || start == 0 {
            return Walk::Through;
        }
        rest = trimmed.get(..start - 1).unwrap_or_default();
    }
}

/// `ADDRESS`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT` (nginx's
/// `ngx_parse_addr_port`); port 0 when none is given.
pub fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(address, 0));
    }
    let (address, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']')?;
        if after.is_empty() {
            return Some(SocketAddr::new(IpAddr::V6(address.parse().ok()?), 0));
        }
        (address, after.strip_prefix(':')?)
    } else {
        text.split_once(':')?
    };
    let port = port
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .filter(|port| *port >= 1)?;
    Some(SocketAddr::new(address.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(from: &[&str], header: RealIpHeader, recursive: bool) -> RealIp {
        RealIp {
            from: from
                .iter()
                .map(|text| {
                    let (address, prefix) = text.split_once('/').unwrap();
                    TrustedSource::Network(address.parse().unwrap(), prefix.parse().unwrap())
                })
                .collect(),
            header,
            recursive,
        }
    }

    fn real(settings: &RealIp, peer: &str, fields: &[(&str, &str)]) -> Option<String> {
        let headers: Vec<Header<'_>> = fields
            .iter()
            .map(|(name, value)| Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        real_address(settings, peer.parse().unwrap(), &headers, None).map(|a| a.to_string())
    }

    const LB: &str = "10.0.0.1:4000";
    const STRANGER: &str = "203.0.113.9:4000";

    #[test]
    fn the_last_address_of_a_trusted_peer_is_taken() {
        let s = settings(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, false);
        let xff = [("X-Forwarded-For", "1.1.1.1, 10.0.0.2, 2.2.2.2")];
        assert_eq!(real(&s, LB, &xff).as_deref(), Some("2.2.2.2:0"));
        assert_eq!(real(&s, STRANGER, &xff), None);
        assert_eq!(real(&s, LB, &[]), None);
        assert_eq!(real(&s, LB, &[("X-Forwarded-For", "junk")]), None);
        assert_eq!(
            real(&s, LB, &[("X-Forwarded-For", "1.1.1.1:8080 ,, ")]).as_deref(),
            Some("1.1.1.1:8080")
        );
    }

    #[test]
    fn recursion_skips_trusted_hops_only() {
        let s = settings(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, true);
        let chain = [("X-Forwarded-For", "6.6.6.6, 1.1.1.1, 10.0.0.3, 10.0.0.2")];
        assert_eq!(real(&s, LB, &chain).as_deref(), Some("1.1.1.1:0"));
        // All trusted: the leftmost.
        let all = [("X-Forwarded-For", "10.1.1.1, 10.0.0.2")];
        assert_eq!(real(&s, LB, &all).as_deref(), Some("10.1.1.1:0"));
        // An unreadable entry stops the walk at what was taken.
        let junk = [("X-Forwarded-For", "1.1.1.1, nonsense, 10.0.0.2")];
        assert_eq!(real(&s, LB, &junk).as_deref(), Some("10.0.0.2:0"));
        // Two fields are one list, the last field last.
        let two = [
            ("X-Forwarded-For", "7.7.7.7"),
            ("X-Forwarded-For", "10.0.0.5"),
        ];
        assert_eq!(real(&s, LB, &two).as_deref(), Some("7.7.7.7:0"));
    }

    #[test]
    fn other_fields_take_their_first_occurrence() {
        let s = settings(&["10.0.0.0/8"], RealIpHeader::XRealIp, false);
        let fields = [("X-Real-IP", "3.3.3.3"), ("X-Real-IP", "4.4.4.4")];
        assert_eq!(real(&s, LB, &fields).as_deref(), Some("3.3.3.3:0"));
        let s = settings(
            &["10.0.0.0/8"],
            RealIpHeader::Field("CF-Connecting-IP".into()),
            false,
        );
        let fields = [("cf-connecting-ip", "[2001:db8::1]:443")];
        assert_eq!(real(&s, LB, &fields).as_deref(), Some("[2001:db8::1]:443"));
    }

    #[test]
    fn addresses_read_as_nginx_reads_them() {
        let parse = |t: &str| parse_addr_port(t.as_bytes()).map(|a| a.to_string());
        assert_eq!(parse("1.2.3.4").as_deref(), Some("1.2.3.4:0"));
        assert_eq!(parse("1.2.3.4:80").as_deref(), Some("1.2.3.4:80"));
        assert_eq!(parse("::1").as_deref(), Some("[::1]:0"));
        assert_eq!(parse("[::1]").as_deref(), Some("[::1]:0"));
        assert_eq!(parse("[::1]:8").as_deref(), Some("[::1]:8"));
        for bad in [
            "",
            "1.2.3.4:0",
            "1.2.3.4:70000",
            "1.2.3.4:+1",
            "[::1]x",
            "host:80",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
