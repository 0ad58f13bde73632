//! `auth_basic`, `auth_basic_user_file` and `satisfy`, ferry and nginx on
//! one file: htpasswd lines in each format nginx reads, wrong passwords,
//! unknown users, malformed fields, a missing and an unreadable user file,
//! `satisfy any|all` with allow/deny; then a bcrypt check that must not
//! hold up a concurrent request.

mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use util::{free_port, require_tool, Ferry, Nginx, Origin};

/// Password "secret" in every format (openssl passwd, libxcrypt crypt(3)).
const USERS: &str = "# one user per format\n\
plain:{PLAIN}secret\n\
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\
ssha:{SSHA}gVK8WC9YyFT1gMsQHTGCgT3sSv5zYWx0\n\
apr1:$apr1$SALTsalt$4HhuoIpo48AkoW2glxrUJ/\n\
md5:$1$saltsalt$9xy1btjgzLYfb7hivXtC//\n\
sha256:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA\n\
sha512:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n\
bcrypt:$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n\
des:abNANd1rDfiNc:a comment\r\n\
slow:$2y$12$abcdefghijklmnopqrstuuYS6.zrse7z7/rYaBI5UCEGzEfxQI4OO\n";

fn site(dir: &Path, origin: SocketAddr) -> String {
    let users = dir.join("users");
    format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           auth_basic \"Restricted Area\";\n\
           auth_basic_user_file {users};\n\
           location /files/ {{ }}\n\
           location /api/ {{ proxy_set_header X-User $remote_user; proxy_pass http://{origin}; }}\n\
           location /open/ {{ auth_basic off; }}\n\
           location /missing/ {{ auth_basic_user_file {root}/no-such-file; }}\n\
           location /unreadable/ {{ auth_basic_user_file {root}/files; }}\n\
           location /any/ {{ satisfy any; allow 127.0.0.1; deny all; }}\n\
           location /any-deny/ {{ satisfy any; deny all; }}\n\
           location /all-deny/ {{ deny all; }}\n\
           location = /status {{ auth_basic off; stub_status; }}\n\
         }}\n",
        root = dir.display(),
        users = users.display(),
    )
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}\r\n")
}

fn cases() -> Vec<(&'static str, String)> {
    let mut cases = vec![
        ("/files/", String::new()),
        ("/files/", basic("plain", "wrong")),
        ("/files/", basic("nobody", "secret")),
        ("/files/", "Authorization: Basic !!!\r\n".to_string()),
        ("/files/", "Authorization: Bearer abc\r\n".to_string()),
        ("/files/", basic("# one user per format", "secret")),
        ("/open/", String::new()),
        ("/missing/", basic("plain", "secret")),
        ("/unreadable/", basic("plain", "secret")),
        ("/any/", String::new()),
        ("/any-deny/", String::new()),
        ("/any-deny/", basic("plain", "secret")),
        ("/all-deny/", basic("plain", "secret")),
        ("/api/", basic("apr1", "secret")),
        ("/api/", basic("apr1", "nope")),
    ];
    for user in [
        "plain", "sha", "ssha", "apr1", "md5", "sha256", "sha512", "bcrypt", "des",
    ] {
        cases.push(("/files/", basic(user, "secret")));
        cases.push(("/files/", basic(user, "Secret")));
    }
    cases
}

fn answers(addr: SocketAddr, origin: &Origin) -> Vec<String> {
    cases()
        .iter()
        .map(|(path, fields)| {
            let (response, upstream) = util::get_through(addr, origin, path, fields);
            let body = match (response.status, upstream) {
                (200, Some(seen)) => format!("upstream X-User={:?}", seen.header("x-user")),
                (200, None) => response.text(),
                _ => String::new(),
            };
            format!(
                "{path} {fields:?} -> {} {:?} {body}",
                response.status,
                response.header("WWW-Authenticate")
            )
        })
        .collect()
}

fn prepare(name: &str) -> std::path::PathBuf {
    let dir = util::scratch_dir(name);
    for sub in [
        "files",
        "open",
        "missing",
        "unreadable",
        "any",
        "any-deny",
        "all-deny",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("index.html"), format!("{sub} page\n")).unwrap();
    }
    std::fs::write(dir.join("users"), USERS).unwrap();
    dir
}

#[test]
fn passwords_are_checked_as_nginx_checks_them() {
    let dir = prepare("auth-basic");
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config("auth-basic", &site(&dir, origin.addr));
    let from_ferry = answers(ferry.addr, &origin);
    let challenge = "Some(\"Basic realm=\\\"Restricted Area\\\"\")";
    let expected_start = [
        format!("/files/ \"\" -> 401 {challenge} "),
        format!("/files/ {:?} -> 401 {challenge} ", basic("plain", "wrong")),
        format!(
            "/files/ {:?} -> 401 {challenge} ",
            basic("nobody", "secret")
        ),
        format!("/files/ \"Authorization: Basic !!!\\r\\n\" -> 401 {challenge} "),
        format!("/files/ \"Authorization: Bearer abc\\r\\n\" -> 401 {challenge} "),
        format!(
            "/files/ {:?} -> 401 {challenge} ",
            basic("# one user per format", "secret")
        ),
        "/open/ \"\" -> 200 None open page\n".to_string(),
        format!("/missing/ {:?} -> 403 None ", basic("plain", "secret")),
        format!("/unreadable/ {:?} -> 500 None ", basic("plain", "secret")),
        "/any/ \"\" -> 200 None any page\n".to_string(),
        format!("/any-deny/ \"\" -> 401 {challenge} "),
        format!(
            "/any-deny/ {:?} -> 200 None any-deny page\n",
            basic("plain", "secret")
        ),
        format!("/all-deny/ {:?} -> 403 None ", basic("plain", "secret")),
        format!(
            "/api/ {:?} -> 200 None upstream X-User=Some(\"apr1\")",
            basic("apr1", "secret")
        ),
        format!("/api/ {:?} -> 401 {challenge} ", basic("apr1", "nope")),
    ];
    assert_eq!(from_ferry[..expected_start.len()], expected_start);
    for pair in from_ferry[expected_start.len()..].chunks(2) {
        assert!(pair[0].contains("-> 200 None files page"), "{}", pair[0]);
        assert!(pair[1].contains("-> 401 "), "{}", pair[1]);
    }
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "auth-basic",
        &site(&dir, origin.addr).replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr, &origin));
}

/// A bcrypt hash of cost 12 takes a good part of a second to check; the
/// loop goes on serving a concurrent client meanwhile, and the second
/// request with the same password is answered from the cache at once.
#[test]
fn a_slow_hash_does_not_hold_up_other_clients() {
    let dir = prepare("auth-basic-slow");
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config("auth-basic-slow", &site(&dir, origin.addr));
    let addr = ferry.addr;
    let slow = basic("slow", "slow-secret");
    let raw = format!("GET /files/ HTTP/1.1\r\nHost: a\r\n{slow}Connection: close\r\n\r\n");
    let started = Instant::now();
    let checking = {
        let raw = raw.clone();
        std::thread::spawn(move || util::request(addr, &raw).status)
    };
    std::thread::sleep(Duration::from_millis(20));
    let mut slowest = Duration::ZERO;
    let mut served = 0u32;
    while !checking.is_finished() && started.elapsed() < Duration::from_secs(20) {
        let asked = Instant::now();
        let response = util::request(
            addr,
            "GET /open/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200);
        slowest = slowest.max(asked.elapsed());
        served += 1;
    }
    let first_check = started.elapsed();
    assert_eq!(checking.join().unwrap(), 200);
    println!(
        "bcrypt cost 12 checked in {first_check:?}; {served} concurrent requests meanwhile, \
         slowest {slowest:?}"
    );
    assert!(served >= 3, "the check took {first_check:?}");
    assert!(slowest < Duration::from_millis(50), "{slowest:?}");
    // The pair is remembered: no second bcrypt run.
    let asked = Instant::now();
    assert_eq!(util::request(addr, &raw).status, 200);
    assert!(asked.elapsed() < first_check / 4, "{:?}", asked.elapsed());
}

/// The Prometheus page counts the 401s `auth_basic` answered.
#[test]
fn the_status_page_counts_auth_failures() {
    let dir = prepare("auth-basic-status");
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config("auth-basic-status", &site(&dir, origin.addr));
    for fields in [
        String::new(),
        basic("plain", "wrong"),
        basic("plain", "secret"),
    ] {
        util::request(
            ferry.addr,
            &format!("GET /files/ HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n"),
        );
    }
    let page = util::request(
        ferry.addr,
        "GET /status?format=prometheus HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .text();
    assert!(
        page.lines().any(|l| l == "ferry_auth_failures_total 2"),
        "{page}"
    );
}
