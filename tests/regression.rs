//! Bugs found (by the fuzzers or otherwise), each kept as a test.

mod util;

use util::*;

/// Found by `fuzz/fuzz_targets/request_parser.rs`: an HTTP/1.0 request with
/// an absolute-form target and no Host was forwarded with the absolute-form
/// target and the upstream's name as Host, a head that contradicts itself.
/// Upstreams now get origin-form, and the target's authority as Host.
#[test]
fn absolute_form_without_host_goes_upstream_as_origin_form() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(
        ferry.addr,
        "GET http://h/p?q HTTP/1.0\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = &origin.requests()[0];
    assert_eq!(received.path, "/p?q");
    assert_eq!(received.header("host"), Some("h"));
    assert_eq!(received.header("upgrade"), None);
}

/// Found by `fuzz/fuzz_targets/request_parser.rs`: `C http://? HTTP/1.0`
/// has an absolute-form target with an empty host, and ferry forwarded it
/// with an empty `Host`, which no upstream can parse. RFC 9110 §4.2.1: such
/// a URI is invalid; nginx answers 400, and so does ferry now.
#[test]
fn absolute_form_with_an_empty_or_odd_host_is_refused() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    for target in [
        "http://?",
        "http://",
        "http:///p",
        "http://user@h/",
        "http://h:/",
        "http://h:8x/",
        "http://[::1/",
    ] {
        let response = request(ferry.addr, &format!("GET {target} HTTP/1.0\r\n\r\n"));
        assert_eq!(response.status, 400, "{target}");
    }
    for target in ["http://h:8080/p", "http://[::1]:80/p", "http://h?q"] {
        let response = request(ferry.addr, &format!("GET {target} HTTP/1.0\r\n\r\n"));
        assert_eq!(response.status, 200, "{target}");
    }
    assert_eq!(origin.requests().len(), 3);
}
