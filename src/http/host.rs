//! Hosts as requests name them: the `Host` field (RFC 9112 §3.2, RFC 3986
//! §3.2.2) and the authority of an absolute-form target, checked as pure
//! functions over bytes.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

/// The `Host` field (RFC 9112 §3.2, RFC 3986 §3.2.2): `host [":" port]`,
/// where host is a reg-name (unreserved, sub-delims, percent-escapes), an
/// IPv4 address or a bracketed IPv6 literal, and port is digits. nginx's
/// own check (`ngx_http_validate_host`) adds: no `..`.
pub fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.first() {
        Some(b'[') => match host.iter().position(|&b| b == b']') {
            Some(end) => (&host[..=end], &host[end + 1..]),
            None => return false,
        },
        _ => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &b""[..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok && !name.is_empty() && !name.windows(2).any(|pair| pair == b"..") && {
        match name {
            [b'[', literal @ .., b']'] => valid_ipv6_literal(literal),
            _ => valid_reg_name(name),
        }
    }
}

/// reg-name = *( unreserved / pct-encoded / sub-delims ), which covers
/// IPv4 addresses too.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut index = 0;
    while let Some(&byte) = name.get(index) {
        let ok = match byte {
            b'%' => {
                let escape = name.get(index + 1..index + 3);
                index += 2;
                escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            }
            b'-' | b'.' | b'_' | b'~' => true,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => true,
            _ => byte.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
        index += 1;
    }
    true
}

fn valid_ipv6_literal(literal: &[u8]) -> bool {
    !literal.is_empty()
        && literal.contains(&b':')
        && literal
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// The authority of an absolute-form target: a host name, IPv4 address or
/// bracketed IPv6 literal, with an optional port. Stricter than RFC 3986
/// (no user info, no percent-escapes), as nginx's request-line parser is.
pub fn valid_authority(authority: &str) -> bool {
    // It becomes the upstream's Host when the client sent none.
    if !valid_host(authority.as_bytes()) {
        return false;
    }
    if let Some(literal) = authority.strip_prefix('[') {
        let Some((address, after)) = literal.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok
            && !address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    let (host, port_ok) = match authority.split_once(':') {
        Some((host, port)) => (host, valid_port(port)),
        None => (authority, true),
    };
    port_ok
        && !host.is_empty()
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn valid_port(digits: &str) -> bool {
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, item 4: Host is `host [":" port]` (RFC 9112 §3.2).
    #[test]
    fn host_values_must_be_a_host_and_an_optional_port() {
        for host in [
            &b"a"[..],
            b"a.example:8080",
            b"10.0.0.1",
            b"[::1]:80",
            b"xn--bcher-kva.example",
            b"a_b~c!$&'()*+,;=d",
            b"a%41",
        ] {
            assert!(valid_host(host), "{}", String::from_utf8_lossy(host));
        }
        for host in [
            &b"a\x82"[..],
            b"user@a",
            b"a:xyz",
            b"a\"<b",
            b"a:",
            b"",
            b":80",
            b"a..b",
            b"a/b",
            b"a\\b",
            b"[::1",
            b"[::1]x",
            b"[]",
            b"a%4",
            b"a%zz",
            b"a b",
        ] {
            assert!(!valid_host(host), "{}", String::from_utf8_lossy(host));
        }
    }
}
