//! Header field rules shared by requests and responses: list syntax,
//! `Connection` options, hop-by-hop fields, `Content-Length` and
//! `Transfer-Encoding` validation.
//!
//! All functions are pure and work on httparse's borrowed headers; nothing
//! here allocates.

/// Fields that describe one hop and are never forwarded
/// ([RFC 9110 §7.6.1](https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1)).
/// `Transfer-Encoding` is listed because ferry re-frames bodies itself, and
/// `Proxy-Connection` because old clients still send it.
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Splits a comma-separated field value into its non-empty members, with
/// optional whitespace trimmed ([RFC 9110 §5.6.1](https://www.rfc-editor.org/rfc/rfc9110#section-5.6.1)).
pub fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|member| !member.is_empty())
}

pub fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Trims spaces only (not tabs), as nginx does around field values.
fn trim_spaces(mut value: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' '] = value {
        value = rest;
    }
    value
}

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
}

/// What a message's `Connection` fields ask for
/// ([RFC 9112 §9.6](https://www.rfc-editor.org/rfc/rfc9112#section-9.6)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    /// `Connection: upgrade`, asking to switch protocols.
    pub upgrade: bool,
}

impl ConnectionOptions {
    pub fn from_headers(headers: &[httparse::Header<'_>]) -> ConnectionOptions {
        let mut options = ConnectionOptions::default();
        for header in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            for member in list_members(header.value) {
                if member.eq_ignore_ascii_case(b"close") {
                    options.close = true;
                } else if member.eq_ignore_ascii_case(b"keep-alive") {
                    options.keep_alive = true;
                } else if member.eq_ignore_ascii_case(b"upgrade") {
                    options.upgrade = true;
                }
            }
        }
        options
    }
}

/// Whether `name` is listed as an option in any `Connection` field, which
/// makes it hop-by-hop for this message.
pub fn named_in_connection(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_members(h.value))
        .any(|member| member.eq_ignore_ascii_case(name.as_bytes()))
}

/// Whether the field must not be forwarded: hop-by-hop by definition or by
/// the message's own `Connection` field.
pub fn is_hop_by_hop_here(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    is_hop_by_hop(name) || named_in_connection(name, headers)
}

/// [`is_hop_by_hop_here`] for every field of one head, with one look at its
/// `Connection` fields instead of one per field: most heads name nothing
/// there but `close`, `keep-alive` or `upgrade`, and then a field's own
/// name decides.
pub struct HopByHop<'h, 'b> {
    headers: &'h [httparse::Header<'b>],
    /// `Connection` names a field that is not hop-by-hop by definition.
    names_others: bool,
}

impl<'h, 'b> HopByHop<'h, 'b> {
    pub fn new(headers: &'h [httparse::Header<'b>]) -> HopByHop<'h, 'b> {
        let names_others = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| list_members(h.value))
            .any(|member| {
                !member.eq_ignore_ascii_case(b"close")
                    && !std::str::from_utf8(member).is_ok_and(is_hop_by_hop)
            });
        HopByHop {
            headers,
            names_others,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        is_hop_by_hop(name) || (self.names_others && named_in_connection(name, self.headers))
    }
}

/// Appends `value` in decimal, without the formatting machinery.
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends an address as `Display` writes it, IPv4 without formatting.
pub fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            // Infallible: writing to a Vec.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Why `Content-Length` / `Transfer-Encoding` cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingHeaderError {
    /// Empty, signed, non-digit, overflowing, a list, or repeated.
    InvalidContentLength,
    /// Both fields present: a classic smuggling vector
    /// ([RFC 9112 §6.3](https://www.rfc-editor.org/rfc/rfc9112#section-6.3), rule 3).
    ContentLengthWithTransferEncoding,
    /// Anything but exactly `chunked`: other codings, lists, stray bytes.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` twice, or with no value.
    InvalidTransferEncoding,
}

/// The framing fields of one message head, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredFraming {
    None,
    ContentLength(u64),
    Chunked,
}

/// Reads `Content-Length` and `Transfer-Encoding` strictly: exactly one
/// `Content-Length` of digits; `Transfer-Encoding` exactly one final
/// `chunked`.
pub fn declared_framing(
    headers: &[httparse::Header<'_>],
) -> Result<DeclaredFraming, FramingHeaderError> {
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            // One field, one number. RFC 9110 §8.6 would let identical
            // repeats pass; nginx refuses them, and so does ferry: two
            // parsers must never have a choice to make here.
            if length.is_some() {
                return Err(FramingHeaderError::InvalidContentLength);
            }
            let value = parse_decimal(trim_ows(header.value))
                .ok_or(FramingHeaderError::InvalidContentLength)?;
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Exactly `chunked` (spaces around it aside), once: nginx's rule,
            // and stricter than RFC 9112's lists. `chunked\t`, `xchunked`
            // and `gzip, chunked` are all refused.
            if transfer_encoding {
                return Err(FramingHeaderError::InvalidTransferEncoding);
            }
            transfer_encoding = true;
            let value = trim_spaces(header.value);
            if value.is_empty() {
                return Err(FramingHeaderError::InvalidTransferEncoding);
            }
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(FramingHeaderError::UnsupportedTransferEncoding);
            }
            chunked = true;
        }
    }
    match (transfer_encoding, length) {
        (true, Some(_)) => Err(FramingHeaderError::ContentLengthWithTransferEncoding),
        (true, None) if chunked => Ok(DeclaredFraming::Chunked),
        (true, None) => Err(FramingHeaderError::UnsupportedTransferEncoding),
        (false, Some(n)) => Ok(DeclaredFraming::ContentLength(n)),
        (false, None) => Ok(DeclaredFraming::None),
    }
}

/// `1*DIGIT` as a `u64`; `None` for anything else, including overflow.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Writes `Name: value\r\n`.
pub fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `Name: value\r\n` with the value rendered from `template`; an
/// empty value writes nothing (nginx's rule for `proxy_set_header`). CR, LF
/// and NUL can never come out of a template (every source was validated by
/// the parser), but are dropped here all the same: no value ferry builds can
/// split a header.
pub fn write_rendered_field(
    out: &mut Vec<u8>,
    name: &str,
    template: &crate::variables::Template,
    view: &crate::variables::RequestView<'_>,
) {
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let value_start = out.len();
    template.render(view, out);
    if out.len() == value_start {
        out.truncate(start);
        return;
    }
    let mut kept = value_start;
    for index in value_start..out.len() {
        let byte = out[index];
        if !matches!(byte, b'\r' | b'\n' | 0) {
            out[kept] = byte;
            kept += 1;
        }
    }
    out.truncate(kept);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_addresses_as_display_writes_them() {
        for value in [0u64, 7, 10, 404, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }
    use httparse::Header;

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn connection_tokens_are_a_case_insensitive_list() {
        let headers = [
            h("Connection", "Keep-Alive, foo"),
            h("connection", " ,CLOSE"),
        ];
        let options = ConnectionOptions::from_headers(&headers);
        assert!(options.keep_alive && options.close);
        assert!(named_in_connection("Foo", &headers));
        assert!(named_in_connection("FOO", &headers));
        assert!(!named_in_connection("fo", &headers));
    }

    #[test]
    fn hop_by_hop_includes_connection_named_fields() {
        let headers = [h("Connection", "x-secret")];
        assert!(is_hop_by_hop_here("X-Secret", &headers));
        assert!(is_hop_by_hop_here("TE", &headers));
        assert!(is_hop_by_hop_here("Proxy-Connection", &headers));
        assert!(!is_hop_by_hop_here("Host", &headers));
        let hop_by_hop = HopByHop::new(&headers);
        for name in [
            "X-Secret",
            "TE",
            "Proxy-Connection",
            "Host",
            "Keep-Alive",
            "X-Other",
        ] {
            assert_eq!(
                hop_by_hop.contains(name),
                is_hop_by_hop_here(name, &headers),
                "{name}"
            );
        }
    }

    #[test]
    fn content_length_is_strict() {
        let ok = |v: &str| declared_framing(&[h("Content-Length", v)]);
        assert_eq!(ok("42"), Ok(DeclaredFraming::ContentLength(42)));
        assert_eq!(ok("0"), Ok(DeclaredFraming::ContentLength(0)));
        for bad in [
            "42, 42",
            "",
            "+1",
            "-1",
            "1a",
            "0x10",
            "1 2",
            "42, 43",
            "99999999999999999999",
            ",",
        ] {
            assert_eq!(
                ok(bad),
                Err(FramingHeaderError::InvalidContentLength),
                "{bad:?}"
            );
        }
        let two = [h("Content-Length", "1"), h("Content-Length", "2")];
        assert_eq!(
            declared_framing(&two),
            Err(FramingHeaderError::InvalidContentLength)
        );
        let same = [h("Content-Length", "2"), h("Content-Length", "2")];
        assert_eq!(
            declared_framing(&same),
            Err(FramingHeaderError::InvalidContentLength)
        );
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        let te = |v: &str| declared_framing(&[h("Transfer-Encoding", v)]);
        assert_eq!(te("chunked"), Ok(DeclaredFraming::Chunked));
        assert_eq!(te("Chunked"), Ok(DeclaredFraming::Chunked));
        assert_eq!(te(" chunked "), Ok(DeclaredFraming::Chunked));
        for unsupported in [
            "gzip, chunked",
            "chunked, identity",
            "chunked, chunked",
            "xchunked",
            "chunked\t",
            "gzip",
        ] {
            assert_eq!(
                te(unsupported),
                Err(FramingHeaderError::UnsupportedTransferEncoding),
                "{unsupported:?}"
            );
        }
        assert_eq!(te(""), Err(FramingHeaderError::InvalidTransferEncoding));
        let both = [h("Transfer-Encoding", "chunked"), h("Content-Length", "3")];
        assert_eq!(
            declared_framing(&both),
            Err(FramingHeaderError::ContentLengthWithTransferEncoding)
        );
        let repeated = [
            h("Transfer-Encoding", "chunked"),
            h("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(
            declared_framing(&repeated),
            Err(FramingHeaderError::InvalidTransferEncoding)
        );
    }
}
