//! Published configurations from tests/configs/real, run as they are (only
//! the port and the document root adapted) by ferry and by nginx side by
//! side: the same answers to the same requests.

mod util;

use std::net::SocketAddr;
use std::path::Path;

use util::{Ferry, Nginx};

fn corpus(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs/real")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// A document root like a fresh install's.
fn docroot(name: &str) -> std::path::PathBuf {
    let dir = util::scratch_dir(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>Welcome</h1>\n").unwrap();
    std::fs::write(dir.join("index.nginx-debian.html"), "<h1>Debian</h1>\n").unwrap();
    std::fs::write(dir.join("50x.html"), "<h1>An error occurred.</h1>\n").unwrap();
    std::fs::write(dir.join("sub/index.htm"), "<p>sub</p>\n").unwrap();
    std::fs::write(dir.join("style.css"), "p {}\n").unwrap();
    std::fs::write(dir.join("app.js"), "x();\n").unwrap();
    dir
}

const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/index.html"),
    ("GET", "/50x.html"),
    ("GET", "/style.css"),
    ("GET", "/app.js"),
    ("GET", "/missing"),
    ("GET", "/sub"),
    ("GET", "/sub/"),
    ("GET", "/sub/index.htm"),
    ("POST", "/index.html"),
];

fn answers(addr: SocketAddr, port: u16) -> Vec<String> {
    REQUESTS
        .iter()
        .map(|(method, path)| {
            let response = util::request(
                addr,
                &format!(
                    "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                ),
            );
            let body = if response.text().contains("<hr><center>") {
                "(built-in page)".to_string()
            } else {
                response.text()
            };
            format!(
                "{method} {path}: {} {} {} {} {body}",
                response.status,
                response.header("Content-Type").unwrap_or_default(),
                response.header("ETag").unwrap_or_default(),
                response
                    .header("Location")
                    .unwrap_or_default()
                    .replace(&port.to_string(), "PORT"),
            )
        })
        .collect()
}

fn same_answers(name: &str, http_body: &str) -> Vec<String> {
    let (ferry, _) = Ferry::start_config(name, http_body);
    let from_ferry = answers(ferry.addr, ferry.addr.port());
    if let Some((_nginx, addr)) = Nginx::beside(name, http_body) {
        assert_eq!(
            from_ferry,
            answers(addr, addr.port()),
            "{name}: ferry, then nginx"
        );
    }
    from_ferry
}

/// The official Docker image's conf.d/default.conf, with its nginx.conf's
/// types.
#[test]
fn the_docker_image_s_default_site() {
    let root = docroot("corpus-docker");
    let site = corpus("docker-conf.d/default.conf")
        .replace("listen       80;", "listen 127.0.0.1:PORT;")
        .replace("listen  [::]:80;", "")
        .replace("/usr/share/nginx/html", &root.display().to_string());
    let types = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/real/mime.types");
    let body = format!(
        "include {};\ndefault_type application/octet-stream;\n{site}",
        types.display()
    );
    let answers = same_answers("corpus-docker", &body);
    assert!(
        answers[0].starts_with("GET /: 200 text/html"),
        "{answers:?}"
    );
    assert!(
        answers[5].starts_with("GET /app.js: 200 application/javascript"),
        "{answers:?}"
    );
    assert!(answers[6].starts_with("GET /missing: 404"), "{answers:?}");
}

/// Debian's sites-available/default: `try_files $uri $uri/ =404`.
#[test]
fn debian_s_default_site() {
    let root = docroot("corpus-debian");
    let file = corpus("debian-default-site.conf");
    let start = file.find("\tserver {").unwrap();
    let end = file[..file.rfind('}').unwrap()].rfind('}').unwrap() + 1;
    let site = file[start..end]
        .replace(
            "listen 80 default_server;",
            "listen 127.0.0.1:PORT default_server;",
        )
        .replace("listen [::]:80 default_server;", "")
        .replace("/var/www/html", &root.display().to_string());
    let types = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/real/mime.types");
    let body = format!(
        "include {};\ndefault_type application/octet-stream;\n{site}",
        types.display()
    );
    let answers = same_answers("corpus-debian", &body);
    assert!(
        answers[0].starts_with("GET /: 200 text/html"),
        "{answers:?}"
    );
    assert!(
        answers[8].starts_with("GET /sub/: 200 text/html"),
        "{answers:?}"
    );
}
