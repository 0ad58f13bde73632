//! The request head parser and everything ferry derives from a head: never
//! panics, never loops, whatever the bytes. A parsed head must re-serialize
//! to a head that parses again, with the same framing.
#![no_main]

use ferry::http::request::{self, UpstreamHead};
use ferry::http::MAX_HEADERS;
use ferry::routing::{self, UpstreamTarget};
use ferry::variables::RequestView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = ferry::http::header_slots();
    let Ok(Some(head)) = request::parse(data, &mut headers, 8192) else {
        return;
    };
    let mut path = Vec::new();
    let _ = routing::normalize_path(head.target, &mut path);
    let view = RequestView {
        method: head.method,
        target: head.target,
        uri: &path,
        args: None,
        root: None,
        proxy_host: "upstream",
        script: ferry::variables::ScriptValues::NONE,
        host: head.host.unwrap_or_default(),
        version: head.version.as_str(),
        headers: head.headers,
        client: "192.0.2.1:1234".parse().unwrap(),
        peer: "192.0.2.1:1234".parse().unwrap(),
        proxy_protocol: None,
        server_name: "fuzz",
        server_port: 80,
        tls: None,
        request_id: ferry::variables::RequestId::default(),
        maps: &[],
    };
    // As the connection does: origin-form upstream, and an absolute-form
    // target's authority as the Host when the client sent none.
    let authority = head.host.and_then(|h| std::str::from_utf8(h).ok());
    let fallback_host = match (head.absolute, authority) {
        (true, Some(authority)) => authority,
        _ => "upstream:80",
    };
    let upstream = UpstreamHead {
        target: UpstreamTarget::AsSent(head.origin_form),
        fallback_host,
        set_headers: &[],
        field_names: ferry::http::headers::FieldNameRule::default(),
        pass_client_fields: true,
        body: &ferry::config::UpstreamBody::Client,
        view: &view,
    };
    let mut out = Vec::new();
    request::write_upstream_head(&head, &upstream, &mut out);
    // What ferry sends must itself be a valid head, framed the same way.
    let mut again = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS + 8];
    let reparsed = request::parse(&out, &mut again, 64 * 1024);
    let Ok(Some(reparsed)) = reparsed else {
        panic!("ferry wrote a head it cannot parse: {:?}", String::from_utf8_lossy(&out));
    };
    assert_eq!(reparsed.summary.body, head.summary.body);
    assert_eq!(reparsed.head_len, out.len());
});
