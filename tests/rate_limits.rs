//! `limit_req` and `limit_conn`, ferry and nginx on one file: the same
//! requests refused (with `limit_req_status`), delayed by the same steps
//! (within timing tolerance), let through in a dry run, and the same
//! concurrent requests refused by a connection limit, which is given back
//! when they end.

mod util;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use util::{free_port, require_tool, Ferry, Nginx, Origin};

fn site(root: &std::path::Path, slow_origin: SocketAddr) -> String {
    format!(
        "limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;\n\
         limit_req_zone $binary_remote_addr zone=two:1m rate=1r/s;\n\
         limit_req_zone $binary_remote_addr zone=three:1m rate=1r/m;\n\
         limit_req_zone $binary_remote_addr zone=slow:1m rate=5r/s;\n\
         limit_req_zone $arg_key zone=keyed:1m rate=1r/m;\n\
         limit_conn_zone $binary_remote_addr zone=addr:1m;\n\
         server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           location /nodelay/ {{ limit_req zone=one burst=3 nodelay; }}\n\
           location /status429/ {{ limit_req zone=two; limit_req_status 429; }}\n\
           location /delay/ {{ limit_req zone=slow burst=3; }}\n\
           location /dry/ {{ limit_req zone=three; limit_req_dry_run on; }}\n\
           location /keyed/ {{ limit_req zone=keyed; }}\n\
           location /conn/ {{ limit_conn addr 1; proxy_pass http://{slow_origin}; }}\n\
           location = /status {{ stub_status; }}\n\
         }}\n",
        root = root.display()
    )
}

fn get(addr: SocketAddr, path: &str) -> u16 {
    util::request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    )
    .status
}

/// Requests fired together, each on its own connection: (status, how
/// long it took in steps of `step`), sorted.
fn together(addr: SocketAddr, path: &str, count: usize, step: Duration) -> Vec<(u16, u128)> {
    let started = Instant::now();
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                let status = get(addr, &path);
                (status, started.elapsed())
            })
        })
        .collect();
    let mut results: Vec<(u16, u128)> = threads
        .into_iter()
        .map(|t| {
            let (status, took) = t.join().unwrap();
            (
                status,
                (took.as_millis() + step.as_millis() / 2) / step.as_millis(),
            )
        })
        .collect();
    results.sort();
    results
}

fn answers(addr: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    let rapid = |path: &str, n: usize| -> Vec<u16> { (0..n).map(|_| get(addr, path)).collect() };
    out.push(format!("nodelay {:?}", rapid("/nodelay/", 6)));
    out.push(format!("status429 {:?}", rapid("/status429/", 3)));
    out.push(format!("dry {:?}", rapid("/dry/", 3)));
    // An empty key is not limited; each key has its own bucket.
    out.push(format!(
        "keyed {:?}",
        [
            "/keyed/",
            "/keyed/",
            "/keyed/?key=a",
            "/keyed/?key=a",
            "/keyed/?key=b"
        ]
        .iter()
        .map(|p| get(addr, p))
        .collect::<Vec<_>>()
    ));
    // 5 r/s, burst=3: one at once, three 200 ms apart, one refused.
    out.push(format!(
        "delay {:?}",
        together(addr, "/delay/", 5, Duration::from_millis(200))
    ));
    // The slow origin answers after 600 ms: one at a time.
    out.push(format!(
        "conn {:?}",
        together(addr, "/conn/", 3, Duration::from_millis(600))
    ));
    out.push(format!("conn after {}", get(addr, "/conn/")));
    out
}

#[test]
fn limits_decide_as_nginx_decides() {
    let dir = util::scratch_dir("limits");
    for sub in ["nodelay", "status429", "delay", "dry", "keyed"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("index.html"), "page\n").unwrap();
    }
    let slow = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            std::thread::sleep(Duration::from_millis(600));
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n") {
                return;
            }
        }
    });
    let body = site(&dir, slow.addr);
    let (ferry, _) = Ferry::start_config("limits", &body);
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "nodelay [200, 200, 200, 200, 503, 503]",
            "status429 [200, 429, 429]",
            "dry [200, 200, 200]",
            "keyed [200, 200, 200, 503, 200]",
            "delay [(200, 0), (200, 1), (200, 2), (200, 3), (503, 0)]",
            "conn [(200, 1), (503, 0), (503, 0)]",
            "conn after 200",
        ]
    );
    assert!(ferry.wait_for_stderr(Duration::from_secs(2), "by zone \"one\""));
    assert!(ferry.wait_for_stderr(Duration::from_secs(2), "delaying request, excess:"));
    assert!(ferry.wait_for_stderr(Duration::from_secs(2), "limiting requests, dry run"));
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(2),
        "limiting connections by zone \"addr\""
    ));
    // The Prometheus page counts per zone.
    let page = util::request(
        ferry.addr,
        "GET /status?format=prometheus HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .text();
    for line in [
        "ferry_limit_req_total{zone=\"one\",result=\"refused\"} 2",
        "ferry_limit_req_total{zone=\"slow\",result=\"delayed\"} 3",
        "ferry_limit_req_total{zone=\"three\",result=\"refused\"} 2",
        "ferry_limit_conn_refused_total{zone=\"addr\"} 2",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} in {page}");
    }
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "limits",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr));
}

/// Downloads `path` on a fresh connection; (status, bytes, seconds).
fn download(addr: SocketAddr, path: &str) -> (u16, usize, f64) {
    use std::io::{BufReader, Read, Write};
    let started = Instant::now();
    let mut stream = util::connect(addr);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut all = Vec::new();
    BufReader::new(stream).read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = std::str::from_utf8(&all[9..12]).unwrap().parse().unwrap();
    (status, all.len() - split, started.elapsed().as_secs_f64())
}

/// `limit_rate 100k` after `limit_rate_after 100k`: a 399 KiB file takes
/// about two seconds from both (RATE per started second), paced by timers:
/// ferry spends next to no CPU meanwhile.
#[test]
fn limit_rate_paces_as_nginx_paces() {
    let dir = util::scratch_dir("limit-rate");
    std::fs::create_dir_all(dir.join("files")).unwrap();
    // A little under four budgets, so the head fits too.
    std::fs::write(dir.join("files/big"), vec![b'x'; 400 * 1024 - 1024]).unwrap();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           location /files/ {{ limit_rate 100k; limit_rate_after 100k; }}\n\
           location /fast/ {{ alias {root}/files/; }}\n\
         }}\n",
        root = dir.display()
    );
    let (ferry, _) = Ferry::start_config("limit-rate", &body);
    let cpu_before = ferry.cpu_time();
    let (status, bytes, seconds) = download(ferry.addr, "/files/big");
    let cpu = ferry.cpu_time() - cpu_before;
    assert_eq!((status, bytes), (200, 399 * 1024));
    assert!((1.5..2.8).contains(&seconds), "ferry took {seconds:.2} s");
    assert!(
        cpu < Duration::from_millis(300),
        "ferry used {cpu:?} of CPU while pacing"
    );
    let (_, _, unpaced) = download(ferry.addr, "/fast/big");
    assert!(unpaced < 0.5, "{unpaced:.2} s without limit_rate");
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "limit-rate",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let (nginx_status, nginx_bytes, nginx_seconds) = download(addr, "/files/big");
    assert_eq!((nginx_status, nginx_bytes), (200, 399 * 1024));
    println!("399 KiB at 100k after 100k: ferry {seconds:.2} s, nginx {nginx_seconds:.2} s");
    // nginx counts seconds on the wall clock, from the second the request
    // began in (so it takes up to one second longer); ferry from the
    // request's start.
    assert!(
        (1.5..3.2).contains(&nginx_seconds) && (nginx_seconds - seconds).abs() < 1.1,
        "ferry {seconds:.2} s, nginx {nginx_seconds:.2} s"
    );
}

/// `limit_rate $var`, `limit_rate_after $var` and `set $limit_rate`
/// (which wins over the directive), as nginx reads them: the same 399 KiB
/// file is paced (about two seconds) or not (a bad size counts as no
/// limit) by both, all downloads at once.
#[test]
fn limit_rate_with_variables_paces_as_nginx_paces() {
    let dir = util::scratch_dir("limit-rate-vars");
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::write(dir.join("files/big"), vec![b'x'; 400 * 1024 - 1024]).unwrap();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           location /arg/ {{ alias {root}/files/; limit_rate $arg_rate; limit_rate_after 100k; }}\n\
           location /after/ {{ alias {root}/files/; limit_rate 100k; limit_rate_after $arg_after; }}\n\
           location /set/ {{ alias {root}/files/; limit_rate 10m; limit_rate_after 100k; set $limit_rate 100k; }}\n\
           location /bad/ {{ alias {root}/files/; limit_rate 100k; limit_rate_after 100k; set $limit_rate lots; }}\n\
         }}\n",
        root = dir.display()
    );
    let paths: [&'static str; 6] = [
        "/arg/big?rate=100k",
        "/arg/big?rate=bogus",
        "/after/big?after=100k",
        "/after/big?after=1m",
        "/set/big",
        "/bad/big",
    ];
    let paced = |addr: SocketAddr| -> Vec<String> {
        let downloads: Vec<_> = paths
            .iter()
            .map(|&path| std::thread::spawn(move || download(addr, path)))
            .collect();
        paths
            .iter()
            .zip(downloads)
            .map(|(path, download)| {
                let (status, bytes, seconds) = download.join().unwrap();
                let pace = match seconds {
                    s if s < 0.5 => "unpaced",
                    s if (1.5..3.2).contains(&s) => "paced",
                    _ => "other",
                };
                format!("{path}: {status} {bytes} {pace} ({seconds:.2} s)")
            })
            .collect()
    };
    let (ferry, _) = Ferry::start_config("limit-rate-vars", &body);
    let from_ferry = paced(ferry.addr);
    let expected = ["paced", "unpaced", "paced", "unpaced", "paced", "paced"];
    for (line, pace) in from_ferry.iter().zip(expected) {
        assert!(line.contains(&format!("200 408576 {pace} ")), "{line}");
    }
    assert!(ferry.wait_for_stderr(Duration::from_secs(1), "invalid size \"bogus\""));
    assert!(ferry.wait_for_stderr(Duration::from_secs(1), "invalid $limit_rate \"lots\""));
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "limit-rate-vars",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let from_nginx = paced(addr);
    let class = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|line| line.split(" (").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        class(&from_ferry),
        class(&from_nginx),
        "{from_ferry:?} {from_nginx:?}"
    );
}

/// `$limit_rate` reads as nginx's: what `set` gave it (as bytes) while
/// the request is handled, 0 without it, even under a `limit_rate` line,
/// since nginx takes the directive's rate only at the response's first
/// write; a log line reads the rate the response was paced at. ferry and
/// nginx on one file: the same bodies, headers, fields sent upstream and
/// log lines.
#[test]
fn limit_rate_variable_reads_as_nginx_reads_it() {
    let origin = Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let body = format!("seen={}\n", request.header("x-rate").unwrap_or("-"));
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if !(conn.send(head.as_bytes()) && conn.send(body.as_bytes())) {
                return;
            }
        }
    });
    let dir = util::scratch_dir("limit-rate-variable");
    let body = |log: &std::path::Path| {
        format!(
            "log_format rates '$request_uri $limit_rate';\n\
             server {{\n\
               listen 127.0.0.1:PORT;\n\
               access_log {log} rates;\n\
               add_header X-Rate $limit_rate always;\n\
               location /none/ {{ return 200 \"r=$limit_rate\\n\"; }}\n\
               location /directive/ {{ limit_rate 5k; return 200 \"r=$limit_rate\\n\"; }}\n\
               location /set/ {{ limit_rate 5k; set $limit_rate 10k; return 200 \"r=$limit_rate\\n\"; }}\n\
               location /bad/ {{ limit_rate 5k; set $limit_rate lots; return 200 \"r=$limit_rate\\n\"; }}\n\
               location /proxied/ {{ limit_rate 7k; proxy_set_header X-Rate $limit_rate; proxy_pass http://{origin}; }}\n\
             }}\n",
            log = log.display(),
            origin = origin.addr
        )
    };
    let paths = ["/none/", "/directive/", "/set/", "/bad/", "/proxied/"];
    let answers = |addr: SocketAddr| -> Vec<String> {
        paths
            .iter()
            .map(|path| {
                let response = util::request(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                );
                format!(
                    "{path} {} {:?} {}",
                    response.status,
                    response.header("x-rate"),
                    response.text().trim_end()
                )
            })
            .collect()
    };
    let log_lines = |log: &std::path::Path| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= paths.len() || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ferry_log = dir.join("ferry-access.log");
    let (ferry, _) = Ferry::start_config("limit-rate-variable", &body(&ferry_log));
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "/none/ 200 Some(\"0\") r=0",
            "/directive/ 200 Some(\"0\") r=0",
            "/set/ 200 Some(\"10240\") r=10240",
            "/bad/ 200 Some(\"0\") r=0",
            "/proxied/ 200 Some(\"0\") seen=0",
        ]
    );
    let ferry_lines = log_lines(&ferry_log);
    assert_eq!(
        ferry_lines,
        [
            "/none/ 0",
            "/directive/ 5120",
            "/set/ 10240",
            "/bad/ 5120",
            "/proxied/ 7168"
        ]
    );
    assert!(ferry.wait_for_stderr(Duration::from_secs(1), "invalid $limit_rate \"lots\""));
    let nginx_log = dir.join("nginx-access.log");
    let Some((_nginx, addr)) = Nginx::beside("limit-rate-variable", &body(&nginx_log)) else {
        return;
    };
    let from_nginx = answers(addr);
    assert_eq!(from_ferry, from_nginx);
    assert_eq!(ferry_lines, log_lines(&nginx_log));
}

/// A request waiting out its delay holds no buffer set: with two sets in
/// all and three requests delayed, a request elsewhere is answered at once.
#[test]
fn delayed_requests_hold_no_buffers() {
    let dir = util::scratch_dir("limit-req-buffers");
    for sub in ["slow", "fast"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("index.html"), "page\n").unwrap();
    }
    let port = free_port();
    let path = dir.join("ferry.conf");
    std::fs::write(
        &path,
        format!(
            "events {{}}\nhttp {{\n\
             limit_req_zone $binary_remote_addr zone=hold:1m rate=1r/s;\n\
             server {{\n listen 127.0.0.1:{port};\n root {root};\n\
               location /slow/ {{ limit_req zone=hold burst=10; }}\n\
               location /fast/ {{ }}\n}}\n}}\n",
            root = dir.display()
        ),
    )
    .unwrap();
    util::assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap(), "--buffer-sets", "2"]);
    assert_eq!(get(ferry.addr, "/slow/"), 200);
    let addr = ferry.addr;
    let delayed: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/slow/")))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    assert_eq!(get(addr, "/fast/"), 200);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "waited {:?} for a buffer set",
        asked.elapsed()
    );
    for request in delayed {
        assert_eq!(request.join().unwrap(), 200);
    }
}

/// `geo`, and the whitelist nginx's own rate-limiting guide builds with it
/// (`geo` → `map` → an empty `limit_req_zone` key for trusted clients):
/// the same values as nginx for the same addresses (longest network, the
/// later of two equal ones, IPv6, IPv4-mapped, an unparsable address as
/// nginx's 255.255.255.255, values taken as written), and the trusted
/// client never limited.
#[test]
fn geo_picks_networks_and_whitelists_as_nginx_does() {
    let body = "geo $limited { default 1; 127.0.0.1 0; 10.0.0.0/8 0; }\n\
                map $limited $limit_key { 0 \"\"; 1 $binary_remote_addr; }\n\
                limit_req_zone $limit_key zone=whitelisted:1m rate=1r/m;\n\
                geo $arg_ip $net {\n default none;\n 10.0.0.0/8 ten;\n 10.1.0.0/16 ten-one;\n\
                  2001:db8::/32 doc6;\n 192.0.2.1 one;\n 192.0.2.1 replaced;\n\
                  255.255.255.0/24 broadcast;\n 198.51.100.0/24 $literal;\n }\n\
                server {\n listen 127.0.0.1:PORT;\n\
                  location /limited/ { limit_req zone=whitelisted; return 200 \"limited=$limited\\n\"; }\n\
                  location /net/ { return 200 \"$net\\n\"; }\n\
                }\n";
    let ips = [
        "10.2.3.4",
        "10.1.2.3",
        "2001:db8::5",
        "192.0.2.1",
        "198.51.100.7",
        "::ffff:10.1.0.1",
        "junk",
        "",
        "203.0.113.9",
    ];
    let answers = |addr: SocketAddr| -> Vec<String> {
        let mut seen: Vec<String> = ips
            .iter()
            .map(|ip| {
                let response = util::request(
                    addr,
                    &format!("GET /net/?ip={ip} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                );
                format!("{ip}={}", response.text().trim_end())
            })
            .collect();
        // The limit is 1 a minute: five in a row pass only if trusted.
        for _ in 0..5 {
            let response = util::request(
                addr,
                "GET /limited/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            );
            seen.push(format!(
                "{} {}",
                response.status,
                response.text().trim_end()
            ));
        }
        seen
    };
    let (ferry, _) = Ferry::start_config("geo", body);
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry[..ips.len()],
        [
            "10.2.3.4=ten",
            "10.1.2.3=ten-one",
            "2001:db8::5=doc6",
            "192.0.2.1=replaced",
            "198.51.100.7=$literal",
            "::ffff:10.1.0.1=ten-one",
            "junk=broadcast",
            "=broadcast",
            "203.0.113.9=none",
        ]
    );
    assert!(
        from_ferry[ips.len()..].iter().all(|a| a == "200 limited=0"),
        "{from_ferry:?}"
    );
    if let Some((_nginx, addr)) = Nginx::beside("geo", body) {
        assert_eq!(from_ferry, answers(addr));
    }
}
