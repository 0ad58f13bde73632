//! Access rules that no spelling of a path can bypass, and request-target
//! checks. (Part of the hardening work; the differential test against nginx
//! and the fuzz targets are still to come.)

mod util;

use util::*;

fn status(ferry: &Ferry, target: &str) -> u16 {
    request(
        ferry.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n"),
    )
    .status
}

#[test]
fn deny_covers_every_spelling_of_the_path() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "deny",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location / {{ proxy_pass http://{0}; }}\n\
             location /admin {{ deny all; proxy_pass http://{0}; }} }}",
            origin.addr
        ),
    );
    for target in [
        "/admin",
        "/%61dmin",
        "/%61%64%6D%69%6E",
        "//admin",
        "///admin/",
        "/x/../admin",
        "/./admin",
        "/x/%2e%2e/admin",
        "/x%2F..%2Fadmin",
        "/admin/",
        "/admin?x",
        "/admin#x",
        "/admin/../admin/panel",
    ] {
        assert_eq!(status(&ferry, target), 403, "{target} got past `deny all`");
    }
    assert_eq!(status(&ferry, "/public"), 200);
    assert_eq!(status(&ferry, "/admix"), 200);
    // Above the root, or broken escapes: refused outright.
    for target in ["/..", "/a/../../admin", "/%zz", "/a%00"] {
        assert_eq!(status(&ferry, target), 400, "{target}");
    }
    assert!(
        origin.requests().iter().all(|r| !r.path.contains("admin")),
        "{:?}",
        origin.requests()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn allow_and_deny_by_network_in_order() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "networks",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location /local/ {{ allow 127.0.0.0/8; deny all; proxy_pass http://{0}; }}\n\
             location /remote/ {{ allow 10.0.0.0/8; allow 192.0.2.1; deny all; proxy_pass http://{0}; }}\n\
             location /v6/ {{ deny ::1; allow all; proxy_pass http://{0}; }} }}",
            origin.addr
        ),
    );
    assert_eq!(status(&ferry, "/local/x"), 200);
    assert_eq!(status(&ferry, "/remote/x"), 403);
    assert_eq!(
        status(&ferry, "/v6/x"),
        200,
        "an IPv6 rule does not match an IPv4 client"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_upstream_gets_the_target_as_sent_without_a_uri_part() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "as-sent",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location / {{ proxy_pass http://{0}; }}\n\
             location /api/ {{ proxy_pass http://{0}/v1/; }} }}",
            origin.addr
        ),
    );
    request(
        ferry.addr,
        "GET /a/./b//c%41?q=%2e HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    request(
        ferry.addr,
        "GET /api//x/../y%20z?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/a/./b//c%41?q=%2e", "/v1/y%20z?q=1"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// RFC 9112 §3.2.2: with an absolute-form target the received Host is
/// ignored and the target's authority is the request's host (issue 12; it
/// used to be a 400). The origin sees one Host, the target's.
#[test]
fn absolute_form_authority_replaces_host() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(
        ferry.addr,
        "GET http://good.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = origin.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("host"), Some("good.test"));
    assert!(
        !received[0].head.contains("evil.test"),
        "{}",
        received[0].head
    );
}

#[test]
fn values_from_variables_cannot_split_headers() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "injection",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location / {{ proxy_pass http://{0}; proxy_set_header X-Arg $arg_x; add_header X-Echo $arg_x; }} }}",
            origin.addr
        ),
    );
    let response = request(
        ferry.addr,
        "GET /echo?x=a%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = &origin.requests()[0];
    assert_eq!(received.header("x-injected"), None);
    assert_eq!(received.header("x-arg"), Some("a%0d%0aX-Injected:%201"));
    assert_eq!(response.header("x-injected"), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn header_names_in_the_configuration_must_be_tokens() {
    let dir = std::env::temp_dir().join(format!("ferry-badname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ferry.conf");
    std::fs::write(
        &path,
        "events {}\nhttp { server { listen 127.0.0.1:8080; location / { proxy_pass http://127.0.0.1:1; add_header \"X-A: b\" c; } } }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-t", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid header name"));
    let _ = std::fs::remove_dir_all(dir);
}
