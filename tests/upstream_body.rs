//! `proxy_set_body` and `proxy_pass_request_body off`: the body the
//! upstream gets instead of the client's, beside nginx on one file, and the
//! client's body read and dropped so that its connection goes on.

mod util;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::time::Duration;

use util::{free_port, require_tool, Ferry, Nginx, Origin};

fn site(origin: SocketAddr) -> String {
    format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           location /set/ {{ proxy_set_body \"name=$arg_name\"; proxy_pass http://{origin}; }}\n\
           location /none/ {{\n\
             proxy_pass_request_body off;\n\
             proxy_set_header Content-Length \"\";\n\
             proxy_pass http://{origin};\n\
           }}\n\
           location /bare/ {{\n\
             proxy_pass_request_body off;\n\
             client_max_body_size 8m;\n\
             proxy_pass http://{origin};\n\
           }}\n\
           location /forced/ {{ proxy_set_header Content-Length 99; proxy_pass http://{origin}; }}\n\
         }}\n"
    )
}

/// Requests sent one after another on one keep-alive connection.
const REQUESTS: &[&str] = &[
    "POST /set/?name=ferry HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nclient-bytes",
    "POST /set/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /set/?name=get HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /none/ HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nclient-bytes",
    "POST /none/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
];

/// What the origin saw of each request, after each answer reached the
/// client on the same connection.
fn upstream_views(addr: SocketAddr, origin: &Origin) -> Vec<String> {
    let mut stream = util::connect(addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut views = Vec::new();
    for raw in REQUESTS {
        let before = origin.requests().len();
        stream.write_all(raw.as_bytes()).unwrap();
        let response = util::read_response(&mut reader, "POST").expect("an answer");
        assert_eq!((response.status, response.text().as_str()), (200, "hello"));
        let seen = origin.requests();
        assert_eq!(seen.len(), before + 1, "one request upstream for {raw:?}");
        let request = seen.last().unwrap();
        views.push(format!(
            "{} {} length={:?} chunked={:?} body={:?}",
            request.method,
            request.path,
            request.header("content-length"),
            request.header("transfer-encoding"),
            String::from_utf8_lossy(&request.body_prefix)
        ));
    }
    views
}

#[test]
fn set_body_and_no_body_reach_the_upstream_as_nginx_sends_them() {
    let origin = Origin::standard();
    let body = site(origin.addr);
    let (ferry, _) = Ferry::start_config("upstream-body", &body);
    let from_ferry = upstream_views(ferry.addr, &origin);
    assert_eq!(
        from_ferry,
        [
            "POST /set/?name=ferry length=Some(\"10\") chunked=None body=\"name=ferry\"",
            "POST /set/ length=Some(\"5\") chunked=None body=\"name=\"",
            "GET /set/?name=get length=Some(\"8\") chunked=None body=\"name=get\"",
            "POST /none/ length=None chunked=None body=\"\"",
            "POST /none/ length=None chunked=None body=\"\"",
        ]
    );
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "upstream-body",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, upstream_views(addr, &origin));
}

/// Without nginx's `proxy_set_header Content-Length ""` companion line,
/// nginx would announce the client's length and send nothing; ferry
/// declares no body, and drops the client's, however large, before the
/// next request on the connection.
#[test]
fn a_body_not_passed_is_read_and_dropped_and_the_connection_goes_on() {
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config("upstream-body-bare", &site(origin.addr));
    let stream = util::connect(ferry.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let large = 4 << 20;
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let head =
                format!("POST /bare/ HTTP/1.1\r\nHost: a\r\nContent-Length: {large}\r\n\r\n");
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&vec![b'x'; large]).unwrap();
            stream
                .write_all(b"GET /bare/next HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
        })
    };
    for _ in 0..2 {
        let response = util::read_response(&mut reader, "GET").expect("an answer");
        assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    }
    writer.join().unwrap();
    let seen = origin.requests();
    let paths: Vec<_> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/bare/", "/bare/next"]);
    assert_eq!(seen[0].header("content-length"), None);
    assert_eq!(seen[0].body_len, 0);
}

/// The framing fields are ferry's: a `proxy_set_header Content-Length`
/// cannot announce a length the body does not have (nginx would send it).
#[test]
fn proxy_set_header_cannot_change_the_framing() {
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config("upstream-body-forced", &site(origin.addr));
    let response = util::request(
        ferry.addr,
        "POST /forced/ HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\n\r\nclient-bytes",
    );
    assert_eq!(response.status, 200);
    let seen = origin.requests();
    let lengths: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(lengths, ["12"]);
    assert_eq!(seen[0].body_prefix, b"client-bytes");
}
