//! Header field rules shared by requests and responses: list syntax,
//! `Connection` options, hop-by-hop fields, `Content-Length` and
//! `Transfer-Encoding` validation.
//!
//! All functions are pure and work on httparse's borrowed headers; nothing
//! here allocates.
//!
//! In the course (docs/learn): chapter 6 (`Connection` as a case-insensitive
//! token list) and chapter 5 (lengths).

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
    field(name).is_hop_by_hop()
}

/// Which request field names nginx passes on (`ignore_invalid_headers`,
/// on by default, and `underscores_in_headers`, off by default): with the
/// first on, a name of anything but letters, digits and `-` (and `_` with
/// the second on) is dropped, never forwarded. Names that differ only in
/// `_` and `-` would otherwise reach CGI-style backends as the same
/// variable (`X_Forwarded_For` as `X-Forwarded-For`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldNameRule {
    pub ignore_invalid: bool,
    pub underscores: bool,
}

impl Default for FieldNameRule {
    fn default() -> FieldNameRule {
        FieldNameRule {
            ignore_invalid: true,
            underscores: false,
        }
    }
}

impl FieldNameRule {
    /// Whether a field called `name` is passed on.
    pub fn passes(self, name: &str) -> bool {
        !self.ignore_invalid
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (b == b'_' && self.underscores))
    }
}

/// The fields ferry acts on, told apart by name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    Host,
    Expect,
    /// Hop-by-hop and not one of the above: `Keep-Alive`,
    /// `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`.
    OtherHopByHop,
    Other,
}

impl Field {
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::Connection | Field::TransferEncoding | Field::OtherHopByHop
        )
    }
}

/// Classifies a field name (case-insensitively) with one length switch
/// and at most two comparisons: every relayed field passes here once per
/// hop, and most are none of these.
pub fn field(name: &str) -> Field {
    let is = |known: &str| token_eq_lowercase(name.as_bytes(), known.as_bytes());
    match name.len() {
        2 if is("te") => Field::OtherHopByHop,
        4 if is("date") => Field::Date,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("trailer") || is("upgrade") => Field::OtherHopByHop,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::OtherHopByHop,
        14 if is("content-length") => Field::ContentLength,
        16 if is("proxy-connection") => Field::OtherHopByHop,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        _ => Field::Other,
    }
}

/// Whether `name` is `lower` (lowercase letters and `-`) in any case.
/// Setting bit 5 lowercases a letter and leaves `-` as it is; the only
/// other byte it maps onto one of these is CR (onto `-`), which no field
/// name or value can hold (httparse refuses it), so this is exact here.
/// No early exit: with `lower` a constant the loop unrolls to a few
/// instructions.
fn token_eq_lowercase(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name.iter().zip(lower).fold(0u8, |differs, (byte, want)| {
            differs | ((byte | 0x20) ^ want)
        }) == 0
}

/// What one pass over a head's fields finds: its framing, its `Connection`
/// options, whether `Connection` names other fields (which then become
/// hop-by-hop for this message), its `Date`, and the request fields ferry
/// checks (`Host`, `Expect`). Every head is scanned once, by
/// [`FieldFacts::scan`], and the parsers decide from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldFacts<'b> {
    /// Strict framing: exactly one `Content-Length` of digits, or
    /// `Transfer-Encoding` exactly `chunked`, once, and never both. An
    /// error is kept, not returned at once, so that the parsers can rank it
    /// among their own checks.
    pub framing: Result<DeclaredFraming, FramingHeaderError>,
    /// The `Transfer-Encoding` value, for checks on its raw bytes.
    pub transfer_encoding: Option<&'b [u8]>,
    pub connection: ConnectionOptions,
    pub connection_names_others: bool,
    pub has_date: bool,
    /// The first `Host` value, and whether there was another.
    pub host: Option<&'b [u8]>,
    pub duplicate_host: bool,
    /// `Expect` fields: one says `100-continue`, one says anything else.
    pub expect_continue: bool,
    pub expect_other: bool,
}

impl<'b> FieldFacts<'b> {
    pub fn scan(headers: &[httparse::Header<'b>]) -> FieldFacts<'b> {
        let mut facts = FieldFacts {
            framing: Ok(DeclaredFraming::None),
            transfer_encoding: None,
            connection: ConnectionOptions::default(),
            connection_names_others: false,
            has_date: false,
            host: None,
            duplicate_host: false,
            expect_continue: false,
            expect_other: false,
        };
        let mut length: Option<u64> = None;
        let mut framing_error = None;
        for header in headers {
            match field(header.name) {
                Field::ContentLength if framing_error.is_none() => {
                    // One field, one number. RFC 9110 §8.6 would let
                    // identical repeats pass; nginx refuses them, and so
                    // does ferry: two parsers must never have a choice to
                    // make here.
                    match parse_decimal(trim_ows(header.value)) {
                        Some(value) if length.is_none() => length = Some(value),
                        _ => framing_error = Some(FramingHeaderError::InvalidContentLength),
                    }
                }
                Field::TransferEncoding if framing_error.is_none() => {
                    // Exactly `chunked` (spaces around it aside), once:
                    // nginx's rule, and stricter than RFC 9112's lists.
                    // `chunked\t`, `xchunked` and `gzip, chunked` are all
                    // refused.
                    let value = trim_spaces(header.value);
                    framing_error = if facts.transfer_encoding.is_some() || value.is_empty() {
                        Some(FramingHeaderError::InvalidTransferEncoding)
                    } else if !value.eq_ignore_ascii_case(b"chunked") {
                        Some(FramingHeaderError::UnsupportedTransferEncoding)
                    } else {
                        None
                    };
                    facts.transfer_encoding = Some(header.value);
                }
                Field::Connection => {
                    for member in list_members(header.value) {
                        if member.eq_ignore_ascii_case(b"close") {
                            facts.connection.close = true;
                        } else if member.eq_ignore_ascii_case(b"keep-alive") {
                            facts.connection.keep_alive = true;
                        } else if member.eq_ignore_ascii_case(b"upgrade") {
                            facts.connection.upgrade = true;
                        } else if !std::str::from_utf8(member).is_ok_and(is_hop_by_hop) {
                            facts.connection_names_others = true;
                        }
                    }
                }
                Field::Date => facts.has_date = true,
                Field::Host => {
                    facts.duplicate_host |= facts.host.is_some();
                    facts.host.get_or_insert(header.value);
                }
                Field::Expect => {
                    if header.value.eq_ignore_ascii_case(b"100-continue") {
                        facts.expect_continue = true;
                    } else {
                        facts.expect_other = true;
                    }
                }
                _ => {}
            }
        }
        facts.framing = match (framing_error, facts.transfer_encoding, length) {
            (Some(error), _, _) => Err(error),
            (None, Some(_), Some(_)) => Err(FramingHeaderError::ContentLengthWithTransferEncoding),
            (None, Some(_), None) => Ok(DeclaredFraming::Chunked),
            (None, None, Some(n)) => Ok(DeclaredFraming::ContentLength(n)),
            (None, None, None) => Ok(DeclaredFraming::None),
        };
        facts
    }
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
            .filter(|h| field(h.name) == Field::Connection)
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
        .filter(|h| field(h.name) == Field::Connection)
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
    /// For a head whose [`FieldFacts`] said whether `Connection` names
    /// other fields.
    pub fn new(headers: &'h [httparse::Header<'b>], names_others: bool) -> HopByHop<'h, 'b> {
        HopByHop {
            headers,
            names_others,
        }
    }

    /// Whether the field (already classified as `kind`) stays on this hop.
    pub fn contains(&self, name: &str, kind: Field) -> bool {
        kind.is_hop_by_hop() || (self.names_others && named_in_connection(name, self.headers))
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
            // Rendered on the stack and appended once: this runs for every
            // request (X-Forwarded-For).
            let mut text = [0u8; 15];
            let mut len = 0;
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
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
/// `chunked` (see [`FieldFacts::scan`]).
pub fn declared_framing(
    headers: &[httparse::Header<'_>],
) -> Result<DeclaredFraming, FramingHeaderError> {
    FieldFacts::scan(headers).framing
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

/// nginx's `charset`: the name to add to `content_type` (`text/html` ->
/// `text/html; charset=utf-8`) when its media type is `text/html` or one of
/// `types` (or `types` has `*`) and it names no charset of its own.
pub fn charset_for<'a>(
    content_type: &[u8],
    charset: Option<&'a str>,
    types: &[String],
) -> Option<&'a str> {
    let charset = charset?;
    let (media, params) = match content_type.iter().position(|&b| b == b';') {
        Some(at) => content_type.split_at(at),
        None => (content_type, &b""[..]),
    };
    let media = media.trim_ascii();
    // `charset_types` lists types "in addition to text/html" (nginx).
    let listed = media.eq_ignore_ascii_case(b"text/html")
        || types
            .iter()
            .any(|t| t == "*" || t.as_bytes().eq_ignore_ascii_case(media));
    let named = params
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"charset="));
    (listed && !named).then_some(charset)
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
            "9.99.100.109",
            "127.0.0.1",
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
        let facts = FieldFacts::scan(&headers);
        let hop_by_hop = HopByHop::new(&headers, facts.connection_names_others);
        for name in [
            "X-Secret",
            "TE",
            "Proxy-Connection",
            "Host",
            "Keep-Alive",
            "X-Other",
        ] {
            assert_eq!(
                hop_by_hop.contains(name, field(name)),
                is_hop_by_hop_here(name, &headers),
                "{name}"
            );
        }
    }

    #[test]
    fn field_names_are_classified_whatever_their_case() {
        for name in HOP_BY_HOP {
            assert!(field(name).is_hop_by_hop(), "{name}");
            assert!(field(&name.to_ascii_uppercase()).is_hop_by_hop(), "{name}");
        }
        assert_eq!(field("Content-Length"), Field::ContentLength);
        assert_eq!(field("DATE"), Field::Date);
        assert_eq!(field("host"), Field::Host);
        assert_eq!(field("Expect"), Field::Expect);
        // Same lengths as known names, different names.
        for other in [
            "tx",
            "data",
            "hosts",
            "expecT1",
            "connexion",
            "content-lengtx",
            "x",
        ] {
            assert_eq!(field(other), Field::Other, "{other}");
        }
    }

    #[test]
    fn the_bit_five_comparison_confuses_only_cr_with_a_hyphen() {
        let known = b"content-length";
        for at in 0..known.len() {
            for byte in 0..=255u8 {
                let mut name = known.to_vec();
                name[at] = byte;
                let same = byte.to_ascii_lowercase() == known[at];
                let confused = known[at] == b'-' && byte == b'\r';
                assert_eq!(
                    token_eq_lowercase(&name, known),
                    same || confused,
                    "{byte:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn one_scan_finds_every_fact() {
        let headers = [
            h("Host", "a"),
            h("Date", "x"),
            h("Connection", "keep-alive, X-Secret"),
            h("Expect", "100-continue"),
            h("Content-Length", "7"),
            h("host", "b"),
        ];
        let facts = FieldFacts::scan(&headers);
        assert_eq!(facts.framing, Ok(DeclaredFraming::ContentLength(7)));
        assert!(facts.connection.keep_alive && !facts.connection.close);
        assert!(facts.connection_names_others && facts.has_date);
        assert_eq!(facts.host, Some(&b"a"[..]));
        assert!(facts.duplicate_host && facts.expect_continue && !facts.expect_other);
        // `close` and the hop-by-hop names are not "others".
        let facts = FieldFacts::scan(&[h("Connection", "close, TE, upgrade")]);
        assert!(!facts.connection_names_others && facts.connection.upgrade);
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

    #[test]
    fn field_names_pass_as_nginx_passes_them() {
        let default = FieldNameRule::default();
        let underscores = FieldNameRule {
            underscores: true,
            ..default
        };
        let anything = FieldNameRule {
            ignore_invalid: false,
            ..default
        };
        for (name, by_default, with_underscores) in [
            ("X-Request-Id", true, true),
            ("x9-ok", true, true),
            ("X_Forwarded_For", false, true),
            ("X.Dotted", false, false),
            ("X!Bang", false, false),
        ] {
            assert_eq!(default.passes(name), by_default, "{name}");
            assert_eq!(underscores.passes(name), with_underscores, "{name}");
            assert!(anything.passes(name), "{name}");
        }
    }
}
