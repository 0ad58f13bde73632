//! The request head as the upstream sees it: the client's head
//! re-serialized with the location's target, ferry's framing and
//! forwarding fields, `proxy_set_header` lines and the field-name rules,
//! without the hop-by-hop fields (RFC 9110 §7.6.1).
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

use super::framing::BodyKind;
use super::headers::{self, Field};
use super::request::{upgrade_protocol, RequestHead};
use crate::config::UpstreamBody;
use crate::routing::UpstreamTarget;
use crate::variables::{RequestView, Template};

/// Fields ferry writes itself, so the client's copies are not forwarded.
fn replaced_by_ferry(name: &str, kind: Field) -> bool {
    match kind {
        Field::ContentLength | Field::Expect => true,
        Field::Other => match name.len() {
            15 => name.eq_ignore_ascii_case("x-forwarded-for"),
            17 => name.eq_ignore_ascii_case("x-forwarded-proto"),
            _ => false,
        },
        _ => false,
    }
}

/// What, besides the client's head, decides the head sent upstream.
pub struct UpstreamHead<'a> {
    /// The request-target, as `routing::upstream_target` decided it.
    pub target: UpstreamTarget<'a>,
    /// Sent as `Host` when the client sent none (HTTP/1.0), since HTTP/1.1
    /// requires one: an absolute-form target's authority (which replaces
    /// the client's Host), else the `proxy_pass` host, as nginx's
    /// `$proxy_host`.
    pub fallback_host: &'a str,
    /// The location's `proxy_set_header` list.
    pub set_headers: &'a [(String, Template)],
    /// Which client fields are passed on by their names.
    pub field_names: headers::FieldNameRule,
    /// `proxy_pass_request_headers off`: none of the client's fields go.
    pub pass_client_fields: bool,
    /// The client's body, none, or `proxy_set_body`'s.
    pub body: &'a UpstreamBody,
    /// The request, for variables.
    pub view: &'a RequestView<'a>,
}

/// Writes the head ferry sends upstream for `head` into `out`: the same
/// request line and end-to-end fields, HTTP/1.1, hop-by-hop fields removed,
/// framing re-declared, the `proxy_set_header` fields in place of the
/// client's fields of those names, then `X-Forwarded-For` (appended to) and
/// `X-Forwarded-Proto` unless `proxy_set_header` set them. Ferry's own
/// fields come last so that no name listed in `Connection` can remove them.
pub fn write_upstream_head(
    head: &RequestHead<'_, '_>,
    upstream: &UpstreamHead<'_>,
    out: &mut Vec<u8>,
) {
    let set = |name: &str| {
        upstream
            .set_headers
            .iter()
            .any(|(set, _)| set.eq_ignore_ascii_case(name))
    };
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    match upstream.target {
        UpstreamTarget::AsSent(target) => {
            // `http://h?q` arrives as `?q`, and `http://h` as nothing.
            if target.is_empty() || target.starts_with('?') {
                out.push(b'/');
            }
            out.extend_from_slice(target.as_bytes());
        }
        UpstreamTarget::Replaced { uri, rest, query } => {
            out.extend_from_slice(uri.as_bytes());
            crate::routing::escape_path(rest, out);
            out.extend_from_slice(query.as_bytes());
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    let hop_by_hop = headers::HopByHop::new(head.headers, head.connection_names_others);
    for header in head.headers {
        let kind = headers::field(header.name);
        if !upstream.pass_client_fields
            || hop_by_hop.contains(header.name, kind)
            || replaced_by_ferry(header.name, kind)
            || (kind == Field::Other && !upstream.field_names.passes(header.name))
            || set(header.name)
            // An absolute-form target's authority replaces the client's
            // Host (RFC 9112 §3.2.2): `fallback_host` carries it.
            || (head.absolute && kind == Field::Host)
        {
            continue;
        }
        has_host |= kind == Field::Host;
        headers::write_field(out, header.name, header.value);
    }
    for (name, value) in upstream.set_headers {
        // nginx's WebSocket recipe (`proxy_set_header Upgrade $http_upgrade;
        // proxy_set_header Connection "upgrade";`) is accepted, but these two
        // fields are ferry's to decide: below, for upgrade requests only.
        // (`Content-Length` and `Transfer-Encoding` lines never get this
        // far: the directive drops them, as the framing is ferry's.)
        if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        let before = out.len();
        headers::write_rendered_field(out, name, value, upstream.view);
        has_host |= out.len() > before && name.eq_ignore_ascii_case("host");
    }
    if head.summary.upgrade {
        if let Some(protocol) = upgrade_protocol(head.headers) {
            headers::write_field(out, "Upgrade", protocol);
            out.extend_from_slice(b"Connection: upgrade\r\n");
        }
    }
    if !has_host {
        headers::write_field(out, "Host", upstream.fallback_host.as_bytes());
    }
    match (head.summary.body, upstream.body) {
        (_, UpstreamBody::None | UpstreamBody::Set(_)) => {}
        (BodyKind::Length(n), UpstreamBody::Client) => {
            // Infallible: writing to a Vec.
            out.extend_from_slice(b"Content-Length: ");
            headers::push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        (BodyKind::Chunked, UpstreamBody::Client) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        (BodyKind::Empty | BodyKind::UntilClose, UpstreamBody::Client) => {}
    }
    if !set("x-forwarded-for") {
        out.extend_from_slice(b"X-Forwarded-For: ");
        for header in head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            let value = headers::trim_ows(header.value);
            if !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
        headers::push_ip(out, upstream.view.client.ip());
        out.extend_from_slice(b"\r\n");
    }
    if !set("x-forwarded-proto") {
        out.extend_from_slice(if upstream.view.tls.is_some() {
            b"X-Forwarded-Proto: https\r\n"
        } else {
            b"X-Forwarded-Proto: http\r\n"
        });
    }
    if let UpstreamBody::Set(template) = upstream.body {
        // The body is rendered behind the fields, then its Content-Length
        // line and the blank line are written after it and rotated in front
        // of it: one rendering, no buffer of its own.
        let fields_end = out.len();
        template.render(upstream.view, out);
        let body_len = out.len() - fields_end;
        out.extend_from_slice(b"Content-Length: ");
        headers::push_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out[fields_end..].rotate_left(body_len);
        return;
    }
    out.extend_from_slice(b"\r\n");
}
