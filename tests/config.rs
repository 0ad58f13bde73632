//! The nginx.conf subset: `-t`/`-T`, nginx's error messages with file:line,
//! include with globs, quoting, inheritance, and that every configuration
//! shipped in the repository is also accepted by `nginx -t`.

mod util;

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

fn ferry(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` as `name` in a fresh directory and runs `ferry -t -c` on it.
/// `nginx -t` on `text` (written into `dir`): whether it passed, and what
/// it said; `None` when nginx is not installed.
fn nginx_test(dir: &Path, text: &str) -> Option<(bool, String)> {
    let nginx = require_tool("nginx")?;
    let path = dir.join("nginx.conf");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(nginx)
        .args(["-t", "-q", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    Some((output.status.success(), said))
}

fn test_text(name: &str, text: &str) -> (i32, String) {
    let dir = temp_dir(name);
    let path = dir.join("ferry.conf");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = ferry(&["-t", "-c", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    (code, err.replace(path.to_str().unwrap(), "ferry.conf"))
}

#[test]
fn test_flag_reports_like_nginx() {
    let (code, out, err) = ferry(&["-t"]);
    assert_eq!(code, 0);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "ferry: the configuration file (embedded default) syntax is ok\n\
         ferry: configuration file (embedded default) test is successful\n"
    );
    let (code, out, _) = ferry(&["-T"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("# configuration file (embedded default):\n"),
        "{out}"
    );
    assert!(out.contains("proxy_pass http://127.0.0.1:3000;"));
}

#[test]
fn test_checks_what_a_start_checks() {
    // Flags, as a start applies them.
    let (code, _, err) = ferry(&["-t", "--set", "foo=bar"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("foo"), "{err}");
    // Log files, opened (and created) as a start opens them, by their path.
    let dir = temp_dir("test-logs");
    let path = dir.join("ferry.conf");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let missing = dir.join("missing");
    for (text, broken) in [
        (
            format!(
                "events {{}}\nhttp {{ access_log {}/access.log;\n\
                 server {{ listen 127.0.0.1:1; }} }}\n",
                missing.display()
            ),
            "missing/access.log",
        ),
        (
            format!(
                "error_log {}/error.log;\nevents {{}}\nhttp {{ server {{ listen 127.0.0.1:1; }} }}\n",
                missing.display()
            ),
            "missing/error.log",
        ),
    ] {
        let line = &text;
        std::fs::write(&path, &text).unwrap();
        let (code, _, err) = ferry(&["-t", "-c", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{line}: {err}");
        assert!(
            err.starts_with("ferry: [emerg] open() \"") && err.contains(broken),
            "{line}: {err}"
        );
    }
    std::fs::write(
        &path,
        format!(
            "events {{}}\nhttp {{ access_log {}/access.log;\n server {{ listen 127.0.0.1:1; }} }}\n",
            logs.display()
        ),
    )
    .unwrap();
    let (code, _, err) = ferry(&["-t", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        logs.join("access.log").exists(),
        "created, as nginx -t does"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_the_file_line_and_directive() {
    let http = |inner: &str| format!("events {{}}\nhttp {{\n{inner}\n}}\n");
    let server = |inner: &str| http(&format!("server {{\nlisten 127.0.0.1:8080;\n{inner}\n}}"));
    let cases: Vec<(String, &str)> = vec![
        (http("gzipp on;"), "unknown directive \"gzipp\" in ferry.conf:3"),
        (http("proxy_ignore_headers Cookie;"), "invalid value \"Cookie\" in \"proxy_ignore_headers\" directive in ferry.conf:3"),
        // nginx's own checks of its buffering sizes (which ferry does not use).
        (server("location / { proxy_buffer_size 16k; proxy_pass http://127.0.0.1:1; }"), "\"proxy_busy_buffers_size\" must be less than the size of all \"proxy_buffers\" minus one buffer"),
        (server("location / { proxy_buffers 1 4k; proxy_pass http://127.0.0.1:1; }"), "there must be at least 2 \"proxy_buffers\""),
        (server("if ($host = $http_x) { return 404; }"), "variables on the right of an \"if\" condition are not supported yet in ferry.conf:5"),
        (server("location / { if ($arg_x) { proxy_pass http://127.0.0.1:1; } }"), "\"proxy_pass\" inside \"if\" is not supported yet (\"return\", \"rewrite\", \"break\", \"set\" and \"add_header\" are) in ferry.conf:5"),
        (server("if $host = x { return 404; }"), "invalid condition \"$host = x\" in ferry.conf:5"),
        (http("proxy_redirect default;\nserver { listen 127.0.0.1:8080; location / { proxy_pass http://127.0.0.1:1; } }"), "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive in ferry.conf:3"),
        (server("location / { proxy_redirect default; proxy_pass http://127.0.0.1:1; }"), "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive in ferry.conf:5"),
        (server("location / { proxy_pass http://127.0.0.1:1; proxy_redirect ~^http://(.*) /$1; }"), "\"proxy_redirect\" with a regular expression or variables is not supported yet"),
        // nginx has it, ferry not yet: said so, wherever it is.
        (http("gzip_static on;"), "\"gzip_static\" directive is not supported yet in ferry.conf:3"),
        (server("location / { proxy_cache zone; proxy_pass http://127.0.0.1:1; }"), "\"proxy_cache\" directive is not supported yet in ferry.conf:5"),
        // Accepted with no effect, but nginx's kind of value is still checked.
        (http("types_hash_max_size lots;"), "invalid number \"lots\" in \"types_hash_max_size\" directive in ferry.conf:3"),
        (http("proxy_pass http://127.0.0.1:1;"), "\"proxy_pass\" directive is not allowed here in ferry.conf:3"),
        (server("listen;\nlocation / { proxy_pass http://127.0.0.1:1; }"), "invalid number of arguments in \"listen\" directive in ferry.conf:5"),
        // An empty host name: refused without asking a resolver (tests never
        // send DNS queries).
        (server("location / { proxy_pass http://:8; }"), "no host in upstream \":8\" in ferry.conf:5"),
        (http("upstream x { server :80; }"), "no host in upstream \":80\" in ferry.conf:3"),
        (server("location / { proxy_pass http://127.0.0.1:0; }"), "invalid port in upstream \"127.0.0.1:0\" in ferry.conf:5"),
        (server("location / { proxy_pass http://127.0.0.1:99999; }"), "invalid port in upstream \"127.0.0.1:99999\" in ferry.conf:5"),
        (server("location / { proxy_pass http://127.0.0.1:abc; }"), "invalid port in upstream \"127.0.0.1:abc\" in ferry.conf:5"),
        (server("location / { proxy_pass http://[::1; }"), "invalid host in upstream \"[::1\" in ferry.conf:5"),
        (http("upstream x { server 127.0.0.1:0; }"), "invalid port in upstream \"127.0.0.1:0\" in ferry.conf:3"),
        (server("location / { proxy_pass https://unix:/run/app.sock; }"), "TLS to a unix domain socket upstream is not supported yet in ferry.conf:5"),
        (server("location / { proxy_pass http://127.0.0.1:1; }\n}"), "unexpected \"}\" in ferry.conf:8"),
        (http("server { listen 1;"), "unexpected end of file, expecting \"}\" in ferry.conf:4"),
        (server("client_max_body_size 1m;\nclient_max_body_size 2m;\nlocation / { proxy_pass http://127.0.0.1:1; }"), "\"client_max_body_size\" directive is duplicate in ferry.conf:6"),
        (format!("worker_processes 0;\n{}", server("location / { proxy_pass http://127.0.0.1:1; }")), "invalid value \"0\" in \"worker_processes\" directive"),
        (format!("worker_processes many;\n{}", server("location / { proxy_pass http://127.0.0.1:1; }")), "invalid value \"many\" in \"worker_processes\" directive"),
        (format!("worker_cpu_affinity 01 10;\n{}", server("location / { proxy_pass http://127.0.0.1:1; }")), "CPU masks in \"worker_cpu_affinity\" are not supported yet"),
        (server("location / { proxy_pass http://127.0.0.1:1; proxy_http_version 1.0; }"), "only \"proxy_http_version 1.1\" is supported"),
        (server("location / { proxy_pass http://127.0.0.1:1; keepalive_timeout soon; }"), "invalid time \"soon\" in \"keepalive_timeout\" directive in ferry.conf:5"),
        ("events {}\n".to_string(), "no \"http\" or \"stream\" block"),
        // The stream namespace: http's directives are unknown there.
        ("events {}\nstream { server { listen 127.0.0.1:9; proxy_pass 127.0.0.1:1; proxy_read_timeout 1s; } }\n".to_string(), "unknown directive \"proxy_read_timeout\" in ferry.conf:2"),
        ("load_module modules/ngx_http_geoip_module.so;\nevents {}\n".to_string(), "module \"modules/ngx_http_geoip_module.so\" is not supported yet"),
        (server("listen 127.0.0.1:0;\nlocation / { proxy_pass http://127.0.0.1:1; }"), "invalid port in \"127.0.0.1:0\" of the \"listen\" directive in ferry.conf:5"),
    ];
    for (text, expected) in cases {
        let (code, err) = test_text("errors", &text);
        assert_eq!(code, 1, "{text}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("ferry: [emerg] "), "{err}");
        assert!(
            first.contains(expected),
            "expected {expected:?}, got {first:?}\n{text}"
        );
        assert!(err.contains("test failed"), "{err}");
    }
}

#[test]
fn stock_nginx_directives_are_accepted() {
    let text = "user www-data;\nworker_processes auto;\npid /run/nginx.pid;\ndaemon off;\nmaster_process on;\n\
                worker_rlimit_nofile 4096;\nerror_log stderr warn;\n\
                events { worker_connections 768; use epoll; multi_accept off; }\n\
                http {\n sendfile on;\n tcp_nopush on;\n types { text/html html htm; image/jpeg jpg; }\n\
                default_type application/octet-stream;\n server_tokens off;\n\
                types_hash_max_size 2048;\n server_names_hash_bucket_size 64;\n\
                variables_hash_max_size 1024;\n proxy_headers_hash_max_size 1024;\n\
                log_not_found off;\n client_body_buffer_size 16k;\n proxy_buffers 8 4k;\n\
                proxy_busy_buffers_size 8k;\n proxy_max_temp_file_size 0;\n\
                proxy_ignore_headers Cache-Control Expires X-Accel-Expires;\n proxy_intercept_errors off;\n\
                server { listen 127.0.0.1:8080 default_server; server_name _;\n\
                location / { proxy_pass http://127.0.0.1:1; proxy_buffering off; } }\n}\n";
    let (code, err) = test_text("stock", text);
    assert_eq!(code, 0, "{err}");
}

/// The proxy block Node.js deployment guides give, with its
/// `proxy_cache_bypass $http_upgrade`: accepted by both (no cache, so
/// nothing to bypass); a value naming an unknown variable is refused by
/// both.
#[test]
fn cache_bypass_lines_without_a_cache_are_accepted() {
    let text = "events {}\nhttp {\n map $http_cookie $no_cache { default 0; ~nocache 1; }\n\
                server { listen 127.0.0.1:8080;\n\
                location / {\n proxy_pass http://127.0.0.1:3000;\n proxy_http_version 1.1;\n\
                proxy_set_header Upgrade $http_upgrade;\n proxy_set_header Connection 'upgrade';\n\
                proxy_set_header Host $host;\n proxy_cache_bypass $http_upgrade;\n\
                proxy_no_cache $no_cache $arg_nocache;\n } }\n}\n";
    let dir = temp_dir("cache-bypass-nginx");
    let path = dir.join("ferry.conf");
    std::fs::write(&path, text).unwrap();
    assert_nginx_accepts(&path);
    let (code, err) = test_text("cache-bypass", text);
    assert_eq!(code, 0, "{err}");
    let unknown = text.replace("$no_cache $arg_nocache", "$nowhere");
    let (code, err) = test_text("cache-bypass-unknown", &unknown);
    assert_ne!(code, 0);
    assert!(err.contains("unknown \"nowhere\" variable"), "{err}");
    if let Some((accepted, _)) = nginx_test(&dir, &unknown) {
        assert!(!accepted, "nginx accepted {unknown}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// nginx's times, in a directive it counts in seconds (`expires`) and in
/// one it counts in milliseconds (`proxy_read_timeout`): `y` and `M` only
/// in the first, `ms` only in the second, units in descending order. ferry
/// accepts exactly what nginx accepts.
#[test]
fn times_are_read_as_nginx_reads_them() {
    let values = [
        "1y",
        "1M",
        "1w",
        "30d",
        "1h30",
        "30s5",
        "1h30m",
        "500ms",
        "1s500ms",
        "2M1y",
        "30s1m",
        "1m1m",
        "0",
        "-1",
        "1.5s",
        "1x",
        "1y2M3w4d5h6m7s",
    ];
    let dir = temp_dir("times-nginx");
    let mut accepted = Vec::new();
    for value in values {
        for directive in ["expires", "proxy_read_timeout"] {
            let text = format!(
                "events {{}}\nhttp {{ server {{ listen 127.0.0.1:8080; \
                 location / {{ {directive} {value}; return 204; }} }} }}\n"
            );
            let (code, err) = test_text("times", &text);
            let case = format!("{directive} {value}");
            if code == 0 {
                accepted.push(case.clone());
            }
            if let Some((accepted, said)) = nginx_test(&dir, &text) {
                assert_eq!(code == 0, accepted, "{case}: ferry {err} nginx {said}");
            }
        }
    }
    assert!(accepted.contains(&"expires 1y".to_string()), "{accepted:?}");
    assert!(
        !accepted.contains(&"expires 500ms".to_string()),
        "{accepted:?}"
    );
    assert!(
        !accepted.contains(&"proxy_read_timeout 1M".to_string()),
        "{accepted:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `zone` in an `upstream` block (Vaultwarden's and many others'
/// examples), checked as nginx checks it; with several workers ferry says
/// at load that its workers balance on their own.
#[test]
fn upstream_zones_are_checked_as_nginx_checks_them() {
    let dir = temp_dir("zone-nginx");
    let file = |main: &str, zone: &str| {
        format!(
            "{main}events {{}}\nhttp {{ upstream app {{ {zone}; server 127.0.0.1:8000; keepalive 2; }}\n\
             server {{ listen 127.0.0.1:8080; location / {{ proxy_pass http://app; }} }} }}\n"
        )
    };
    for (zone, ok) in [
        ("zone app 64k", true),
        ("zone app 4k", false),
        ("zone app lots", false),
        ("zone \"\" 64k", false),
        ("zone app 64k 1", false),
    ] {
        let text = file("", zone);
        let (code, err) = test_text("zone", &text);
        assert_eq!(code == 0, ok, "{zone}: {err}");
        if let Some((accepted, said)) = nginx_test(&dir, &text) {
            assert_eq!(accepted, ok, "nginx: {zone} {said}");
        }
    }
    let (code, err) = test_text(
        "zone-workers",
        &file("worker_processes 2;\n", "zone app 64k"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("each balance on their own"), "{err}");
    let (_, err) = test_text("zone-worker", &file("", "zone app 64k"));
    assert!(!err.contains("[warn]"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Copies tests/configs to a temp dir with the test origin's port filled in.
fn configs_for(origin: &Origin, port: u16) -> PathBuf {
    let dir = temp_dir("run");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    copy_tree(&source, &dir, &origin.addr.to_string(), port);
    dir
}

fn copy_tree(from: &Path, to: &Path, upstream: &str, port: u16) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, upstream, port);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let text = text
                .replace("127.0.0.1:9;", &format!("{upstream};"))
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
            std::fs::write(target, text).unwrap();
        }
    }
}

#[test]
fn includes_quotes_and_inheritance_work_end_to_end() {
    // Answers after 2 s: longer than the http-level proxy_read_timeout (1s),
    // shorter than the location's (5s), which must win.
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            std::thread::sleep(Duration::from_secs(2));
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        }
    });
    let dir = configs_for(&origin, free_port());
    let path = dir.join("include.conf");
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    let started = Instant::now();
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn access_log_to_a_file_and_off() {
    let origin = Origin::standard();
    let dir = temp_dir("access");
    let log = dir.join("access.log");
    let conf = |access: &str| {
        format!(
            "events {{}}\nhttp {{\n access_log {access};\n server {{\n  listen 127.0.0.1:8080;\n  \
             location / {{ proxy_pass http://{}; }}\n }}\n}}\n",
            origin.addr
        )
    };
    let path = dir.join("file.conf");
    std::fs::write(&path, conf(&format!("{} combined", log.display()))).unwrap();
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    request(ferry.addr, "GET /logged HTTP/1.1\r\nHost: a\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("GET /logged HTTP/1.1")
    {
        assert!(Instant::now() < deadline, "nothing in {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ferry.access_log().is_empty());
    drop(ferry);

    let path = dir.join("off.conf");
    std::fs::write(&path, conf("off")).unwrap();
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream), "GET")
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(ferry.access_log().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flags_override_the_file() {
    let origin = Origin::standard();
    let dir = temp_dir("override");
    let path = dir.join("ferry.conf");
    std::fs::write(
        &path,
        "events {}\nhttp { server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:2; } } }\n",
    )
    .unwrap();
    let upstream = origin.addr.to_string();
    let ferry = Ferry::start_with(&[
        "-c",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ]);
    assert_eq!(
        request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").text(),
        "hello"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_shipped_configuration_is_accepted_by_ferry_and_nginx() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // tests/configs/real: configurations as their sources publish them
    // (each names its source), only ports, hosts and paths adapted.
    let mut files: Vec<PathBuf> = ["docs/examples", "tests/configs", "tests/configs/real"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        // A build without TLS refuses TLS configurations, with a reason.
        .filter(|path| {
            cfg!(feature = "tls") || !std::fs::read_to_string(path).unwrap().contains(" ssl")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let (code, _, err) = ferry(&["-t", "-c", file.to_str().unwrap()]);
        assert_eq!(code, 0, "ferry -t {}: {err}", file.display());
    }
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    for file in &files {
        let output = Command::new(&nginx)
            .args(["-t", "-q", "-c"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nginx -t {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The effective user id of `pid`, from /proc.
fn effective_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn user_is_who_ferry_serves_as_after_binding() {
    let dir = temp_dir("user");
    let path = dir.join("ferry.conf");
    let origin = Origin::standard();
    let port = free_port();
    let write = |user: &str| {
        std::fs::write(
            &path,
            format!(
                "user {user};\nevents {{}}\nhttp {{ server {{ listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://{}; }} }} }}\n",
                origin.addr
            ),
        )
        .unwrap();
    };
    let root = effective_uid(std::process::id()) == Some(0);
    // Debian's stock nginx.conf says `user www-data;`.
    write("www-data");
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    assert_eq!(
        request(ferry.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    if root {
        let www_data = Command::new("id")
            .args(["-u", "www-data"])
            .output()
            .unwrap();
        let expected: u32 = String::from_utf8_lossy(&www_data.stdout)
            .trim()
            .parse()
            .unwrap();
        assert_eq!(effective_uid(ferry.pid()), Some(expected));
        // A reload as that user reads the file again without complaint.
        ferry.signal("HUP");
        assert!(ferry.wait_for_stderr(Duration::from_secs(5), "configuration reloaded"));
        assert_eq!(ferry.stderr_count("ignored"), 0, "{:?}", ferry.stderr());
        // A user that does not exist: refused, as nginx -t refuses it.
        write("no-such-user-ferry");
        let (code, _, err) = ferry_t(&path);
        assert_eq!(code, 1);
        assert!(
            err.contains("getpwnam(\"no-such-user-ferry\") failed"),
            "{err}"
        );
        if let Some(nginx) = require_tool("nginx") {
            let status = Command::new(nginx)
                .args(["-t", "-q", "-c"])
                .arg(&path)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "nginx refuses it too");
        }
    } else {
        assert!(
            ferry.wait_for_stderr(Duration::from_secs(5), "makes sense only if"),
            "{:?}",
            ferry.stderr()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn ferry_t(path: &Path) -> (i32, String, String) {
    ferry(&["-t", "-c", path.to_str().unwrap()])
}

/// `ss` lines about the TCP sockets on `port`, listening (`-l`) or not.
fn ss(args: &[&str], port: u16) -> Option<String> {
    let ss = require_tool("ss")?;
    let output = Command::new(ss)
        .args(args)
        .arg(format!("sport = :{port}"))
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn listen_parameters_set_the_socket_options() {
    let (ferry, _) = Ferry::start_config(
        "listen-options",
        "server { listen 127.0.0.1:PORT backlog=77 rcvbuf=64k sndbuf=32k so_keepalive=30s:10s:3 reuseport bind \
         deferred fastopen=256;\n\
         location / { return 200 \"ok\\n\"; } }",
    );
    let port = ferry.addr.port();
    // Accepted, and said to have no effect (docs/nginx-differences.md).
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(2),
        "\"listen ... deferred\" has no effect"
    ));
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(2),
        "\"listen ... fastopen\" has no effect"
    ));
    let Some(listening) = ss(&["-lntm"], port) else {
        return;
    };
    // Send-Q of a listening socket is its backlog; Linux doubles the
    // buffer sizes it is given (rb, tb).
    assert!(listening.contains(" 77 "), "{listening}");
    assert!(listening.contains("rb131072"), "{listening}");
    assert!(listening.contains("tb65536"), "{listening}");
    // Accepted sockets inherit the keep-alive probes.
    let _client = ferry.connect();
    std::thread::sleep(Duration::from_millis(100));
    let accepted = ss(&["-nto"], port).unwrap();
    assert!(accepted.contains("timer:(keepalive,"), "{accepted}");
    // nginx's messages for what it refuses.
    for (line, expected) in [
        (
            "listen 127.0.0.1:8080 backlog=x;",
            "invalid backlog \"backlog=x\"",
        ),
        (
            "listen 127.0.0.1:8080 rcvbuf=lots;",
            "invalid rcvbuf \"rcvbuf=lots\"",
        ),
        (
            "listen 127.0.0.1:8080 so_keepalive=maybe;",
            "invalid so_keepalive value: \"so_keepalive=maybe\"",
        ),
        (
            "listen [::1]:8080 ipv6only=yes;",
            "invalid ipv6only flags \"ipv6only=yes\"",
        ),
        (
            "listen 127.0.0.1:8080 backlog=10;\n} server { listen 127.0.0.1:8080 backlog=20;",
            "duplicate listen options for 127.0.0.1:8080",
        ),
        (
            "listen 127.0.0.1:8080 fastopen=many;",
            "invalid fastopen \"fastopen=many\"",
        ),
        (
            "listen 127.0.0.1:8080 quic;",
            "\"listen\" parameter \"quic\" is not supported yet",
        ),
    ] {
        let (code, err) = test_text(
            "listen-refused",
            &format!("events {{}}\nhttp {{ server {{ {line} }} }}\n"),
        );
        assert_eq!(code, 1, "{line}");
        assert!(err.contains(expected), "{line}: {err}");
    }
}
