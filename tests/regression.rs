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
