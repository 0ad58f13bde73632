//! `cargo bench --bench vs_nginx [-- --quick] [--reps N] [--seconds S] [--write-docs]`
//!
//! ferry against nginx (and HAProxy, and no proxy at all) on this machine, in
//! one run, as ratios:
//!
//! * a real, fast origin: nginx serving static files (100 B, 4 KiB, 64 KiB,
//!   1 MiB), one worker, no access log;
//! * ferry and nginx in front of it from the very same generated nginx.conf
//!   (one worker, upstream keep-alive 32, HTTP/1.1, no access log), HAProxy
//!   (`nbthread 1`, `http-reuse always`) as a second reference, and "direct"
//!   (no proxy) as the upper bound;
//! * the proxy under test pinned to CPU 0, load generator and origin to CPU 1
//!   (`taskset`), peers run interleaved (A B C A B C …) so drift cancels out,
//!   medians and per-repetition ratios to nginx;
//! * workloads: small, 4k, 64k, 1m (keep-alive), close (a connection per
//!   request), idle (RSS per idle keep-alive client), and, on small, CPU
//!   microseconds and syscalls per request;
//! * before timing, every peer must return the right bytes for every file; a
//!   peer that errs under load is reported as failed, not fast.
//!
//! Results: a table on stdout, JSON in `target/bench-vs-nginx/results.json`,
//! and with `--write-docs` (the default for full runs) `docs/benchmarks.md`
//! with an SVG chart. `--quick` runs everything briefly (under a minute), as CI
//! does so that the harness never rots; it asserts no speed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILES: [(&str, usize); 4] = [("100b", 100), ("4k", 4096), ("64k", 65536), ("1m", 1 << 20)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Ferry,
    Nginx,
    Haproxy,
    Direct,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Ferry => "ferry",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
            Peer::Direct => "direct",
        }
    }
}

struct Workload {
    name: &'static str,
    path: &'static str,
    connections: u32,
    close: bool,
    /// Over TLS (ferry and nginx only: same file, same certificate), and
    /// with which server of the file.
    tls: Tls,
    /// To the file's `gzip on` server (ferry and nginx only), asking for
    /// gzip: the response is compressed at `gzip_comp_level 1`.
    gzip: bool,
}

/// The TLS servers of the proxy file: an ECDSA P-256 and an RSA 2048
/// certificate, each on a server that lets clients resume sessions (cache
/// and tickets) and on one that does not (every handshake a full one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tls {
    Plain,
    Ecdsa,
    EcdsaFull,
    Rsa,
    RsaFull,
}

impl Tls {
    const SERVERS: [Tls; 4] = [Tls::Ecdsa, Tls::EcdsaFull, Tls::Rsa, Tls::RsaFull];

    fn key(self) -> &'static str {
        match self {
            Tls::Rsa | Tls::RsaFull => "rsa",
            _ => "ecdsa",
        }
    }

    fn resumes(self) -> bool {
        matches!(self, Tls::Ecdsa | Tls::Rsa)
    }
}

/// Idle upstream connections each proxy keeps: as many as the keep-alive
/// workloads have clients, so no proxy reconnects because the file said
/// too few (nginx's examples say 32; with 50 clients both ferry and nginx
/// would reconnect on a few percent of requests).
const KEEPALIVE: u32 = 50;

/// Every server of the proxy file proxies the same way.
const LOCATION: &str = "        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
";

const WORKLOADS: [Workload; 14] = [
    Workload {
        name: "small",
        path: "/100b",
        connections: 50,
        close: false,
        tls: Tls::Plain,
        gzip: false,
    },
    Workload {
        name: "4k",
        path: "/4k",
        connections: 50,
        close: false,
        tls: Tls::Plain,
        gzip: false,
    },
    Workload {
        name: "64k",
        path: "/64k",
        connections: 50,
        close: false,
        tls: Tls::Plain,
        gzip: false,
    },
    Workload {
        name: "gzip-64k",
        path: "/64k.txt",
        connections: 50,
        close: false,
        tls: Tls::Plain,
        gzip: true,
    },
    Workload {
        name: "1m",
        path: "/1m",
        connections: 10,
        close: false,
        tls: Tls::Plain,
        gzip: false,
    },
    Workload {
        name: "close",
        path: "/100b",
        connections: 50,
        close: true,
        tls: Tls::Plain,
        gzip: false,
    },
    Workload {
        name: "tls-small",
        path: "/100b",
        connections: 50,
        close: false,
        tls: Tls::Ecdsa,
        gzip: false,
    },
    Workload {
        name: "tls-new",
        path: "/100b",
        connections: 50,
        close: true,
        tls: Tls::EcdsaFull,
        gzip: false,
    },
    Workload {
        name: "tls-resumed",
        path: "/100b",
        connections: 50,
        close: true,
        tls: Tls::Ecdsa,
        gzip: false,
    },
    Workload {
        name: "tls-1m",
        path: "/1m",
        connections: 10,
        close: false,
        tls: Tls::Ecdsa,
        gzip: false,
    },
    Workload {
        name: "tls-small-rsa",
        path: "/100b",
        connections: 50,
        close: false,
        tls: Tls::Rsa,
        gzip: false,
    },
    Workload {
        name: "tls-new-rsa",
        path: "/100b",
        connections: 50,
        close: true,
        tls: Tls::RsaFull,
        gzip: false,
    },
    Workload {
        name: "tls-resumed-rsa",
        path: "/100b",
        connections: 50,
        close: true,
        tls: Tls::Rsa,
        gzip: false,
    },
    Workload {
        name: "tls-1m-rsa",
        path: "/1m",
        connections: 10,
        close: false,
        tls: Tls::Rsa,
        gzip: false,
    },
];

/// One measurement of one peer on one workload.
#[derive(Clone, Debug, Default)]
struct Sample {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    /// New connections the origin accepted per request: how often the
    /// proxy reconnected upstream.
    connects_per_request: f64,
    /// CPU time of the whole machine (proxy, origin, load generator and
    /// kernel) per request: what a request costs everyone.
    machine_cpu_us_per_request: f64,
    /// The origin's CPU per request: what the proxy makes it do.
    origin_cpu_us_per_request: f64,
    /// TCP segments sent on the machine per request (every hop, ACKs
    /// included: on loopback each is also one received).
    segments_per_request: f64,
    /// Times the proxy and the origin went to sleep per request (their
    /// voluntary context switches): each costs a wake-up later.
    proxy_sleeps_per_request: f64,
    origin_sleeps_per_request: f64,
    errors: u64,
}

struct Options {
    /// `--only NAME`: that workload alone (no docs are written).
    only: Option<String>,
    quick: bool,
    reps: usize,
    seconds: u64,
    write_docs: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let options = Options {
        write_docs: only.is_none() && (!quick || args.iter().any(|a| a == "--write-docs")),
        only,
        quick,
        reps: value("--reps").map_or(if quick { 1 } else { 5 }, |n| n as usize),
        seconds: value("--seconds").unwrap_or(if quick { 1 } else { 5 }),
    };
    if let Err(message) = run(&options) {
        eprintln!("vs_nginx: {message}");
        std::process::exit(1);
    }
}

fn find(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
}

struct Tools {
    nginx: PathBuf,
    wrk: PathBuf,
    haproxy: Option<PathBuf>,
    taskset: Option<PathBuf>,
    strace: Option<PathBuf>,
    valgrind: Option<PathBuf>,
}

fn tools() -> Result<Tools, String> {
    let missing =
        |tool: &str, package: &str| format!("{tool} is required: apt-get install {package}");
    let haproxy = find("haproxy");
    if haproxy.is_none() {
        println!("haproxy not found (apt-get install haproxy): skipping that peer");
    }
    let strace = find("strace");
    if strace.is_none() {
        println!("strace not found (apt-get install strace): no syscall counts");
    }
    let valgrind = find("valgrind");
    if valgrind.is_none() {
        println!("valgrind not found (apt-get install valgrind): no instruction counts");
    }
    let taskset = find("taskset");
    if taskset.is_none() {
        println!("taskset not found (apt-get install util-linux): processes not pinned");
    }
    Ok(Tools {
        nginx: find("nginx").ok_or_else(|| missing("nginx", "nginx"))?,
        wrk: find("wrk").ok_or_else(|| missing("wrk", "wrk"))?,
        haproxy,
        taskset,
        strace,
        valgrind,
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The byte at `offset` of every test file: a pattern checksums catch.
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Text for the gzip workload: an HTML table's rows, which compress about
/// 10:1, as pages do.
fn text_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut row = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "<tr><td>{row}</td><td>row {} of the table</td></tr>\n",
                row * 7919 % 1013
            )
            .as_bytes(),
        );
        row += 1;
    }
    out.truncate(len);
    out
}

/// A process that is killed when dropped.
struct Running {
    child: Child,
    /// The process whose CPU and memory are measured (nginx's worker).
    measured_pid: u32,
}

impl Drop for Running {
    /// SIGTERM (nginx's fast shutdown, which also stops its worker), then
    /// SIGKILL for anything still alive: a worker left behind would keep the
    /// port and answer for the next peer.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        while Instant::now() < deadline
            && Path::new(&format!("/proc/{}", self.measured_pid)).exists()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.measured_pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

fn pinned(tools: &Tools, cpu: u32, program: &Path) -> Command {
    match &tools.taskset {
        Some(taskset) => {
            let mut command = Command::new(taskset);
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn wait_for_port(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listening on port {port}"))
}

/// nginx's worker: the master's only child, once it exists.
fn nginx_worker(master: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        if let Some(worker) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return worker;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    master
}

fn start_nginx(tools: &Tools, cpu: u32, config: &Path, port: u16) -> Result<Running, String> {
    let child = pinned(tools, cpu, &tools.nginx)
        .arg("-c")
        .arg(config)
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let pid = child.id();
    wait_for_port(port)?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(Running {
        measured_pid: nginx_worker(pid),
        child,
    })
}

struct Setup {
    dir: PathBuf,
    origin_port: u16,
    proxy_port: u16,
    /// The proxies' TLS addresses (one per `Tls::SERVERS`), when openssl
    /// could make the certificates.
    tls_ports: Vec<(Tls, u16)>,
    /// The proxies' `gzip on` server.
    gzip_port: u16,
    proxy_config: PathBuf,
    haproxy_config: PathBuf,
}

fn write_setup() -> Result<Setup, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-vs-nginx");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    for (name, len) in FILES {
        std::fs::write(www.join(name), file_bytes(len)).map_err(|e| e.to_string())?;
    }
    std::fs::write(www.join("64k.txt"), text_bytes(65536)).map_err(|e| e.to_string())?;
    let gzip_port = free_port();
    let (origin_port, proxy_port) = (free_port(), free_port());
    // An ECDSA P-256 and an RSA 2048 certificate for the TLS workloads,
    // made by openssl.
    let mut made = true;
    for (name, algorithm) in [
        (
            "ecdsa",
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        ),
        (
            "rsa",
            ["-newkey", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
    ] {
        made &= Command::new("openssl")
            .args(["req", "-x509"])
            .args(algorithm)
            .args(["-nodes", "-days", "30", "-subj", "/CN=localhost"])
            .args([
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
            ])
            .arg(dir.join(format!("{name}-key.pem")))
            .arg("-out")
            .arg(dir.join(format!("{name}-cert.pem")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    if !made {
        println!("openssl not found (apt-get install openssl): no TLS workloads");
    }
    let tls_ports: Vec<(Tls, u16)> = if made {
        Tls::SERVERS.iter().map(|&tls| (tls, free_port())).collect()
    } else {
        Vec::new()
    };
    // Each TLS server proxies like the plain one; those that resume keep a
    // shared cache and send tickets (nginx's default), the others refuse
    // both, so every handshake is a full one.
    let mut tls_servers = String::new();
    for &(tls, port) in &tls_ports {
        let resumption = if tls.resumes() {
            "ssl_session_cache shared:SSL:10m;"
        } else {
            "ssl_session_cache off;\n        ssl_session_tickets off;"
        };
        tls_servers.push_str(&format!(
            "    server {{\n        listen 127.0.0.1:{port} ssl;\n\
             \x20       ssl_certificate {dir}/{key}-cert.pem;\n        ssl_certificate_key {dir}/{key}-key.pem;\n\
             \x20       ssl_protocols TLSv1.2 TLSv1.3;\n        {resumption}\n{LOCATION}    }}\n",
            dir = dir.display(),
            key = tls.key(),
        ));
    }
    let origin = format!(
        "worker_processes 1;\npid {dir}/origin.pid;\nerror_log {dir}/origin-error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000;\n    sendfile on;\n\
             server {{\n        listen 127.0.0.1:{origin_port};\n        root {www};\n\
                 location = /origin_status {{ stub_status; }}\n    }}\n}}\n",
        dir = dir.display(),
        www = www.display()
    );
    std::fs::write(dir.join("origin.conf"), origin).map_err(|e| e.to_string())?;
    let proxy = format!(
        "# Generated by benches/vs_nginx.rs: ferry and nginx both run this file.\n\
         worker_processes 1;\npid {dir}/proxy.pid;\nerror_log {dir}/proxy-error.log error;\n\
         events {{\n    worker_connections 20000;\n}}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000;\n\
         \x20   upstream origin {{\n        server 127.0.0.1:{origin_port};\n        keepalive {keepalive};\n    }}\n\
         \x20   server {{\n        listen 127.0.0.1:{proxy_port};\n{LOCATION}    }}\n\
         \x20   server {{\n        listen 127.0.0.1:{gzip_port};\n        gzip on;\n        gzip_comp_level 1;\n\
         \x20       gzip_types text/plain;\n{LOCATION}    }}\n{tls_servers}}}\n",
        dir = dir.display(),
        keepalive = KEEPALIVE,
    );
    let proxy_config = dir.join("proxy.conf");
    std::fs::write(&proxy_config, proxy).map_err(|e| e.to_string())?;
    let haproxy = format!(
        "global\n    nbthread 1\n    maxconn 9900\n\
         defaults\n    mode http\n    timeout connect 60s\n    timeout client 60s\n    timeout server 60s\n    http-reuse always\n\
         frontend front\n    bind 127.0.0.1:{proxy_port}\n    default_backend origin\n\
         backend origin\n    option forwardfor\n    http-request set-header X-Forwarded-Proto http\n\
             server origin 127.0.0.1:{origin_port}\n"
    );
    let haproxy_config = dir.join("haproxy.cfg");
    std::fs::write(&haproxy_config, haproxy).map_err(|e| e.to_string())?;
    Ok(Setup {
        dir,
        origin_port,
        proxy_port,
        tls_ports,
        gzip_port,
        proxy_config,
        haproxy_config,
    })
}

fn start_peer(peer: Peer, tools: &Tools, setup: &Setup) -> Result<Option<Running>, String> {
    let port = setup.proxy_port;
    // The previous peer must be gone, or its leftovers would be measured.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        if Instant::now() > deadline {
            return Err(format!(
                "port {port} is still taken before starting {}",
                peer.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match peer {
        Peer::Direct => Ok(None),
        Peer::Nginx => start_nginx(tools, 0, &setup.proxy_config, port).map(Some),
        Peer::Ferry => {
            let child = pinned(tools, 0, Path::new(env!("CARGO_BIN_EXE_ferry")))
                .arg("-c")
                .arg(&setup.proxy_config)
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start ferry: {e}"))?;
            wait_for_port(port)?;
            Ok(Some(Running {
                measured_pid: child.id(),
                child,
            }))
        }
        Peer::Haproxy => {
            let Some(haproxy) = &tools.haproxy else {
                return Ok(None);
            };
            // maxconn stays under half the descriptor limit, or HAProxy
            // refuses to start; its idle figure counts what it accepted.
            let mut command = pinned(tools, 0, haproxy);
            let child = command
                .arg("-f")
                .arg(&setup.haproxy_config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start haproxy: {e}"))?;
            wait_for_port(port)?;
            Ok(Some(Running {
                measured_pid: child.id(),
                child,
            }))
        }
    }
}

/// Where `peer` serves `workload`: `None` if it does not (TLS is measured
/// for ferry and nginx, which run the same file).
fn target_of(peer: Peer, workload: &Workload, setup: &Setup) -> Option<(&'static str, u16)> {
    if workload.gzip {
        return matches!(peer, Peer::Ferry | Peer::Nginx).then_some(("http", setup.gzip_port));
    }
    if workload.tls == Tls::Plain {
        return Some(("http", port_of(peer, setup)));
    }
    match peer {
        Peer::Ferry | Peer::Nginx => setup
            .tls_ports
            .iter()
            .find(|(tls, _)| *tls == workload.tls)
            .map(|&(_, port)| ("https", port)),
        Peer::Haproxy | Peer::Direct => None,
    }
}

fn port_of(peer: Peer, setup: &Setup) -> u16 {
    if peer == Peer::Direct {
        setup.origin_port
    } else {
        setup.proxy_port
    }
}

/// GETs `path` and returns the body, by Content-Length.
fn fetch(port: u16, path: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut length = None;
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    if !status.contains(" 200 ") {
        return Err(format!("status {}", status.trim()));
    }
    let mut body = vec![0; length.ok_or("no Content-Length")?];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// The correctness guard: every file, byte for byte.
fn verify(peer: Peer, setup: &Setup) -> Result<(), String> {
    for (name, len) in FILES {
        let body = fetch(port_of(peer, setup), &format!("/{name}"))?;
        if body != file_bytes(len) {
            return Err(format!("wrong bytes for /{name}"));
        }
    }
    Ok(())
}

/// utime + stime of `pid`, in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

/// Busy time of the whole machine (every CPU, user + system + interrupts),
/// in clock ticks, from the first line of /proc/stat.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// Voluntary context switches of every thread of `pid`: how often it slept.
fn sleeps(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// TCP segments sent by the machine so far (`OutSegs` in /proc/net/snmp).
fn tcp_segments() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "OutSegs")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// wrk's latency figures (`50%  1.23ms`) in milliseconds.
fn wrk_latency(line: &str) -> Option<f64> {
    let value = line.split_whitespace().nth(1)?;
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// The origin nginx's `accepts` counter (its stub_status page).
fn origin_accepts(origin_port: u16) -> Option<u64> {
    let page = fetch(origin_port, "/origin_status").ok()?;
    let text = String::from_utf8_lossy(&page);
    // "Active connections: N \nserver accepts handled requests\n A H R \n…"
    text.lines().nth(2)?.split_whitespace().next()?.parse().ok()
}

fn run_wrk(
    tools: &Tools,
    (scheme, port): (&str, u16),
    origin: (u16, u32),
    workload: &Workload,
    seconds: u64,
    measured: Option<u32>,
) -> Sample {
    let (origin_port, origin_pid) = origin;
    let mut command = pinned(tools, 1, &tools.wrk);
    command
        .arg("-t1")
        .arg(format!("-c{}", workload.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if workload.close {
        command.arg("-H").arg("Connection: close");
    }
    if workload.gzip {
        command.arg("-H").arg("Accept-Encoding: gzip");
    }
    command.arg(format!("{scheme}://127.0.0.1:{port}{}", workload.path));
    let accepts_before = origin_accepts(origin_port);
    let before = measured.map(cpu_ticks);
    let sleeps_before = measured.map(sleeps);
    let origin_before = (cpu_ticks(origin_pid), sleeps(origin_pid));
    let segments_before = tcp_segments();
    let machine_before = machine_ticks();
    let output = command
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let machine_after = machine_ticks();
    let segments_after = tcp_segments();
    let origin_after = (cpu_ticks(origin_pid), sleeps(origin_pid));
    let sleeps_after = measured.map(sleeps);
    let after = measured.map(cpu_ticks);
    let accepts_after = origin_accepts(origin_port);
    let mut sample = Sample::default();
    let mut requests = 0u64;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Requests/sec:") {
            sample.requests_per_second = rest.trim().parse().unwrap_or(0.0);
        } else if trimmed.starts_with("50%") {
            sample.p50_ms = wrk_latency(trimmed).unwrap_or(0.0);
        } else if trimmed.starts_with("99%") {
            sample.p99_ms = wrk_latency(trimmed).unwrap_or(0.0);
        } else if trimmed.contains("requests in") {
            requests = trimmed
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if trimmed.starts_with("Non-2xx") || trimmed.starts_with("Socket errors") {
            sample.errors += trimmed
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if workload.close {
        // wrk counts the connects it had to redo as "connect" errors; they
        // are the workload, not failures.
        sample.errors = output
            .lines()
            .find(|l| l.trim().starts_with("Non-2xx"))
            .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
            .unwrap_or(0);
    }
    if let (Some(before), Some(after)) = (before, after) {
        if requests > 0 {
            sample.cpu_us_per_request = (after - before) as f64 * 10_000.0 / requests as f64;
        }
    }
    if requests > 0 {
        let per_request =
            |before: u64, after: u64| after.saturating_sub(before) as f64 / requests as f64;
        sample.machine_cpu_us_per_request = per_request(machine_before, machine_after) * 10_000.0;
        sample.origin_cpu_us_per_request = per_request(origin_before.0, origin_after.0) * 10_000.0;
        sample.segments_per_request = per_request(segments_before, segments_after);
        sample.origin_sleeps_per_request = per_request(origin_before.1, origin_after.1);
        if let (Some(before), Some(after)) = (sleeps_before, sleeps_after) {
            sample.proxy_sleeps_per_request = per_request(before, after);
        }
    }
    if let (Some(before), Some(after), true) = (accepts_before, accepts_after, requests > 0) {
        // The second status request was itself one accept.
        let connects = after.saturating_sub(before).saturating_sub(1);
        sample.connects_per_request = connects as f64 / requests as f64;
    }
    if requests == 0 {
        sample.errors += 1;
    }
    sample
}

/// Opens `count` keep-alive connections, one request each, and returns
/// the RSS growth of `pid` per connection, in bytes.
fn idle_rss(port: u16, pid: u32, count: usize) -> f64 {
    idle_growth(pid, count, || {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        Some(stream)
    })
}

/// As `idle_rss`, over TLS (TLS 1.3, the proxy's certificate taken as it
/// is): what an idle TLS keep-alive client costs the proxy.
#[cfg(feature = "tls")]
fn idle_tls_rss(port: u16, pid: u32, count: usize) -> f64 {
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate))
            .with_no_client_auth(),
    );
    idle_growth(pid, count, || {
        let socket = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
        let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
        let session = rustls::ClientConnection::new(config.clone(), name).ok()?;
        Some(rustls::StreamOwned::new(session, socket))
    })
}

/// The RSS growth of `pid` per client, in bytes, once `count` clients
/// opened by `open` have each had one small response and stay idle. Stops
/// early when the peer stops answering (its connection limit) and counts
/// what was opened.
fn idle_growth<S: Read + Write>(
    pid: u32,
    count: usize,
    mut open: impl FnMut() -> Option<S>,
) -> f64 {
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(mut stream) = open() else {
            break;
        };
        if stream
            .write_all(b"GET /100b HTTP/1.1\r\nHost: bench\r\n\r\n")
            .is_err()
        {
            break;
        }
        let mut buf = [0u8; 512];
        let mut got = 0;
        while got < 100 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        if got < 100 {
            break;
        }
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    let opened = held.len().max(1);
    (after.saturating_sub(before) * 1024) as f64 / opened as f64
}

/// The benchmark's client takes the proxy's certificate as it is: it
/// measures, it does not need to trust.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct AnyCertificate;

#[cfg(feature = "tls")]
impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `strace -c -f` over a short wrk run of `connections` clients fetching
/// `path`: syscalls per request, in total and by name.
fn syscalls(
    tools: &Tools,
    pid: u32,
    port: u16,
    seconds: u64,
    path: &str,
    connections: u32,
) -> Option<(f64, Vec<(String, f64)>)> {
    let strace = tools.strace.as_ref()?;
    let out = std::env::temp_dir().join(format!("vs-nginx-strace-{pid}"));
    let mut tracer = Command::new(strace)
        .args(["-c", "-f", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let mut command = pinned(tools, 1, &tools.wrk);
    let output = command
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())?;
    // strace prints its summary when interrupted.
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(tracer.id().to_string())
        .status();
    let _ = tracer.wait();
    let summary = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let mut by_name = Vec::new();
    let mut total = 0.0;
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if fields.len() >= 5 && fields[0].parse::<f64>().is_ok() {
            let calls: f64 = fields[3].parse().unwrap_or(0.0);
            let name = fields[fields.len() - 1].to_string();
            if name == "total" {
                continue;
            }
            total += calls;
            by_name.push((name, calls / requests.max(1.0)));
        }
    }
    by_name.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    Some((total / requests.max(1.0), by_name))
}

/// User-space instructions per small keep-alive request: the peer runs
/// under callgrind twice, serving `counts.0` and then `counts.1` requests
/// on one connection before it is stopped; the difference of the two totals
/// over the difference of the counts leaves start-up and shutdown out.
/// Not a timing: the figure is the same on a busy machine.
fn instructions(
    tools: &Tools,
    peer: Peer,
    setup: &Setup,
    counts: (u64, u64),
) -> Option<(f64, f64)> {
    let valgrind = tools.valgrind.as_ref()?;
    let mut totals = Vec::new();
    let mut allocations = Vec::new();
    for count in [counts.0, counts.1] {
        let out = setup.dir.join(format!("callgrind-{}.out", peer.name()));
        let _ = std::fs::remove_file(&out);
        let mut command = Command::new(valgrind);
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match peer {
            Peer::Ferry => {
                command
                    .arg(env!("CARGO_BIN_EXE_ferry"))
                    .arg("-c")
                    .arg(&setup.proxy_config)
                    .env("RUST_LOG", "error");
            }
            Peer::Nginx => {
                command
                    .arg(&tools.nginx)
                    .arg("-c")
                    .arg(&setup.proxy_config)
                    .arg("-g")
                    .arg("daemon off; master_process off;");
            }
            Peer::Haproxy => {
                command
                    .arg(tools.haproxy.as_ref()?)
                    .arg("-db")
                    .arg("-f")
                    .arg(&setup.haproxy_config);
            }
            Peer::Direct => return None,
        }
        let mut child = command.spawn().ok()?;
        let port = setup.proxy_port;
        let served = wait_for_port(port).ok().and_then(|()| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .ok()?;
            let mut reader = BufReader::new(stream.try_clone().ok()?);
            for _ in 0..count {
                stream
                    .write_all(b"GET /100b HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .ok()?;
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).ok()?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().ok()?;
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).ok()?;
            }
            Some(())
        });
        // Every peer exits on SIGTERM, and callgrind writes its totals then.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        served?;
        let text = std::fs::read_to_string(&out).ok()?;
        let total: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        totals.push(total);
        allocations.push(allocation_calls(&text));
    }
    let requests = (counts.1 - counts.0) as f64;
    let per_request = (totals[1] - totals[0]) / requests;
    let allocations_per_request = (allocations[1] - allocations[0]) / requests;
    (per_request > 0.0).then_some((per_request, allocations_per_request))
}

/// Calls to the C allocator recorded in a callgrind profile. Callgrind
/// names a function once (`cfn=(12) malloc`) and by number after that
/// (`cfn=(12)`); the line after a `cfn=` line says how many calls.
fn allocation_calls(profile: &str) -> f64 {
    const ALLOCATORS: [&str; 4] = ["malloc", "calloc", "realloc", "posix_memalign"];
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut calling_allocator = false;
    let mut calls = 0.0;
    for line in profile.lines() {
        if let Some(calls_line) = line.strip_prefix("calls=") {
            if calling_allocator {
                calls += calls_line
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
            calling_allocator = false;
            continue;
        }
        let (is_call, rest) = if let Some(rest) = line.strip_prefix("cfn=") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("fn=") {
            (false, rest)
        } else {
            continue;
        };
        // "(id) name" or "(id)".
        let name = match rest.split_once(' ') {
            Some((id, name)) => {
                names.insert(id.to_string(), name.to_string());
                name.to_string()
            }
            None => names.get(rest).cloned().unwrap_or_default(),
        };
        if is_call {
            calling_allocator = ALLOCATORS.contains(&name.as_str());
        }
    }
    calls
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

#[derive(Default)]
struct Report {
    /// (workload, peer) -> samples, one per repetition.
    samples: BTreeMap<(String, Peer), Vec<Sample>>,
    failed: BTreeMap<Peer, String>,
    idle_bytes: BTreeMap<Peer, f64>,
    /// RSS growth per idle TLS keep-alive client (ferry and nginx).
    idle_tls_bytes: BTreeMap<Peer, f64>,
    idle_rss_kib: BTreeMap<Peer, u64>,
    /// Small keep-alive requests from 10 clients: total and by name.
    syscalls: BTreeMap<Peer, (f64, Vec<(String, f64)>)>,
    /// The same with 50 clients, and 1 MiB responses with 10.
    syscalls_small_50: BTreeMap<Peer, f64>,
    syscalls_1m: BTreeMap<Peer, f64>,
    /// User-space instructions per small keep-alive request (callgrind).
    instructions: BTreeMap<Peer, f64>,
    /// Heap allocations per small keep-alive request (calls to malloc,
    /// calloc, realloc and posix_memalign counted by the same callgrind run).
    allocations: BTreeMap<Peer, f64>,
}

fn run(options: &Options) -> Result<(), String> {
    let tools = tools()?;
    let setup = write_setup()?;
    println!(
        "vs_nginx: {} repetition(s) of {} s per workload{}",
        options.reps,
        options.seconds,
        if options.quick { " (--quick)" } else { "" }
    );
    let origin_config = setup.dir.join("origin.conf");
    let origin = start_nginx(&tools, 1, &origin_config, setup.origin_port)?;
    let mut peers = vec![Peer::Ferry, Peer::Nginx];
    if tools.haproxy.is_some() {
        peers.push(Peer::Haproxy);
    }
    peers.push(Peer::Direct);
    let mut report = Report::default();
    for rep in 0..options.reps {
        for workload in &WORKLOADS {
            if options
                .only
                .as_deref()
                .is_some_and(|only| only != workload.name)
            {
                continue;
            }
            for &peer in &peers {
                if report.failed.contains_key(&peer) {
                    continue;
                }
                let Some(target) = target_of(peer, workload, &setup) else {
                    continue;
                };
                let running = start_peer(peer, &tools, &setup)?;
                if let Err(e) = verify(peer, &setup) {
                    report
                        .failed
                        .insert(peer, format!("returned wrong data: {e}"));
                    continue;
                }
                let measured = running.as_ref().map(|r| r.measured_pid);
                // Warm up the upstream pool and caches (the verification's
                // requests are enough for a quick run).
                if !options.quick {
                    run_wrk(
                        &tools,
                        target,
                        (setup.origin_port, origin.measured_pid),
                        workload,
                        1,
                        None,
                    );
                }
                let sample = run_wrk(
                    &tools,
                    target,
                    (setup.origin_port, origin.measured_pid),
                    workload,
                    options.seconds,
                    measured,
                );
                if sample.errors > 0 {
                    report.failed.insert(
                        peer,
                        format!("{} errors under load ({})", sample.errors, workload.name),
                    );
                }
                if rep == 0 && workload.name == "small" {
                    if let Some(pid) = measured {
                        report.idle_rss_kib.insert(peer, rss_kib(pid));
                        let count = if options.quick { 1000 } else { 10_000 };
                        report
                            .idle_bytes
                            .insert(peer, idle_rss(port_of(peer, &setup), pid, count));
                    }
                }
                #[cfg(feature = "tls")]
                if rep == 0 && workload.name == "tls-small" {
                    if let (Some(pid), (_, port)) = (measured, target) {
                        let count = if options.quick { 200 } else { 1000 };
                        report
                            .idle_tls_bytes
                            .insert(peer, idle_tls_rss(port, pid, count));
                    }
                }
                drop(running);
                if rep == 0 && workload.name == "small" {
                    // A fresh process, so the idle clients above are gone.
                    let running = start_peer(peer, &tools, &setup)?;
                    if let Some(pid) = running.as_ref().map(|r| r.measured_pid) {
                        let seconds = if options.quick { 1 } else { 3 };
                        let port = port_of(peer, &setup);
                        if let Some(counts) = syscalls(&tools, pid, port, seconds, "/100b", 10) {
                            report.syscalls.insert(peer, counts);
                        }
                        if let Some((total, _)) = syscalls(&tools, pid, port, seconds, "/100b", 50)
                        {
                            report.syscalls_small_50.insert(peer, total);
                        }
                        if let Some((total, _)) = syscalls(&tools, pid, port, seconds, "/1m", 10) {
                            report.syscalls_1m.insert(peer, total);
                        }
                    }
                }
                println!(
                    "  rep {} {:6} {:8} {:>10.0} req/s  p50 {:6.2} ms  p99 {:6.2} ms  {:6.1} us/req  {:.3} connects/req",
                    rep + 1,
                    workload.name,
                    peer.name(),
                    sample.requests_per_second,
                    sample.p50_ms,
                    sample.p99_ms,
                    sample.cpu_us_per_request,
                    sample.connects_per_request
                );
                report
                    .samples
                    .entry((workload.name.to_string(), peer))
                    .or_default()
                    .push(sample);
            }
        }
    }
    // Instructions are counted, not timed: one pass after the timed runs.
    // A quick run counts ferry's alone, on few requests, so CI keeps the
    // code path alive without paying valgrind's slowdown for every peer.
    let counts = if options.quick { (20, 60) } else { (500, 1500) };
    for &peer in peers.iter().filter(|p| **p != Peer::Direct) {
        if options.quick && peer != Peer::Ferry {
            continue;
        }
        if let Some((count, allocations)) = instructions(&tools, peer, &setup, counts) {
            println!(
                "  {:8} {count:>10.0} instructions and {allocations:.2} allocations per small request",
                peer.name()
            );
            report.instructions.insert(peer, count);
            report.allocations.insert(peer, allocations);
        }
    }
    let table = table(&report, &peers);
    println!("\n{table}");
    let json = json(&report, &peers, options);
    std::fs::write(setup.dir.join("results.json"), &json).map_err(|e| e.to_string())?;
    println!("raw results: {}", setup.dir.join("results.json").display());
    if options.write_docs {
        write_docs(&report, &peers, &table, &setup, &tools)?;
        println!("wrote docs/benchmarks.md and docs/benchmarks.svg");
    }
    Ok(())
}

/// Median of a field over the repetitions.
fn med(report: &Report, workload: &str, peer: Peer, field: fn(&Sample) -> f64) -> Option<f64> {
    let samples = report.samples.get(&(workload.to_string(), peer))?;
    let mut values: Vec<f64> = samples.iter().map(field).collect();
    Some(median(&mut values))
}

/// ferry/nginx per repetition, then the median of those ratios.
fn ratio(report: &Report, workload: &str, field: fn(&Sample) -> f64) -> Option<f64> {
    let ferry = report.samples.get(&(workload.to_string(), Peer::Ferry))?;
    let nginx = report.samples.get(&(workload.to_string(), Peer::Nginx))?;
    let mut ratios: Vec<f64> = ferry
        .iter()
        .zip(nginx)
        .filter(|(_, n)| field(n) > 0.0)
        .map(|(f, n)| field(f) / field(n))
        .collect();
    (!ratios.is_empty()).then(|| median(&mut ratios))
}

fn table(report: &Report, peers: &[Peer]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| workload | peer | req/s | p50 ms | p99 ms | CPU µs/req | machine CPU µs/req | upstream connects/req | ferry/nginx req/s | ferry/nginx CPU |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for workload in &WORKLOADS {
        for &peer in peers {
            let Some(rps) = med(report, workload.name, peer, |s| s.requests_per_second) else {
                continue;
            };
            let p50 = med(report, workload.name, peer, |s| s.p50_ms).unwrap_or(0.0);
            let p99 = med(report, workload.name, peer, |s| s.p99_ms).unwrap_or(0.0);
            let cpu = med(report, workload.name, peer, |s| s.cpu_us_per_request).unwrap_or(0.0);
            let connects =
                med(report, workload.name, peer, |s| s.connects_per_request).unwrap_or(0.0);
            let machine = med(report, workload.name, peer, |s| {
                s.machine_cpu_us_per_request
            })
            .unwrap_or(0.0);
            let (rps_ratio, cpu_ratio) = if peer == Peer::Ferry {
                (
                    ratio(report, workload.name, |s| s.requests_per_second)
                        .map_or("-".into(), |r| format!("{r:.2}")),
                    ratio(report, workload.name, |s| s.cpu_us_per_request)
                        .map_or("-".into(), |r| format!("{r:.2}")),
                )
            } else {
                ("".into(), "".into())
            };
            let cpu = if peer == Peer::Direct {
                "-".to_string()
            } else {
                format!("{cpu:.1}")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {rps:.0} | {p50:.2} | {p99:.2} | {cpu} | {machine:.1} | {connects:.3} | {rps_ratio} | {cpu_ratio} |",
                workload.name,
                peer.name()
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| peer | instructions/req (small) | allocations/req (small) | syscalls/req (small, 10 clients) | top syscalls | syscalls/req (small, 50 clients) | syscalls per 1 MiB response | RSS idle | RSS per idle keep-alive client | RSS per idle TLS keep-alive client |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for &peer in peers.iter().filter(|p| **p != Peer::Direct) {
        let (total, top) = report.syscalls.get(&peer).map_or(
            ("-".to_string(), String::new()),
            |(total, names)| {
                let top = names
                    .iter()
                    .take(4)
                    .map(|(n, c)| format!("{n} {c:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (format!("{total:.2}"), top)
            },
        );
        let idle = report
            .idle_rss_kib
            .get(&peer)
            .map_or("-".into(), |k| format!("{k} KiB"));
        let per = report
            .idle_bytes
            .get(&peer)
            .map_or("-".into(), |b| format!("{b:.0} B"));
        let per_tls = report
            .idle_tls_bytes
            .get(&peer)
            .map_or("-".into(), |b| format!("{b:.0} B"));
        let instructions = report
            .instructions
            .get(&peer)
            .map_or("-".into(), |n| format!("{n:.0}"));
        let allocations = report
            .allocations
            .get(&peer)
            .map_or("-".into(), |n| format!("{n:.2}"));
        let small_50 = report
            .syscalls_small_50
            .get(&peer)
            .map_or("-".into(), |n| format!("{n:.2}"));
        let one_mib = report
            .syscalls_1m
            .get(&peer)
            .map_or("-".into(), |n| format!("{n:.1}"));
        let _ = writeln!(
            out,
            "| {} | {instructions} | {allocations} | {total} | {top} | {small_50} | {one_mib} | {idle} | {per} | {per_tls} |",
            peer.name()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| workload | peer | proxy CPU µs/req | origin CPU µs/req | rest of the machine µs/req | TCP segments/req | proxy sleeps/req | origin sleeps/req |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for workload in WORKLOADS.iter().filter(|w| w.path == "/100b") {
        for &peer in peers {
            let field = |f: fn(&Sample) -> f64| med(report, workload.name, peer, f);
            let Some(machine) = field(|s| s.machine_cpu_us_per_request) else {
                continue;
            };
            let proxy = field(|s| s.cpu_us_per_request).unwrap_or(0.0);
            let origin = field(|s| s.origin_cpu_us_per_request).unwrap_or(0.0);
            let segments = field(|s| s.segments_per_request).unwrap_or(0.0);
            let proxy_sleeps = field(|s| s.proxy_sleeps_per_request).unwrap_or(0.0);
            let origin_sleeps = field(|s| s.origin_sleeps_per_request).unwrap_or(0.0);
            let (proxy, proxy_sleeps) = if peer == Peer::Direct {
                ("-".to_string(), "-".to_string())
            } else {
                (format!("{proxy:.1}"), format!("{proxy_sleeps:.3}"))
            };
            let rest = machine - origin - field(|s| s.cpu_us_per_request).unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| {} | {} | {proxy} | {origin:.1} | {rest:.1} | {segments:.2} | {proxy_sleeps} | {origin_sleeps:.3} |",
                workload.name,
                peer.name()
            );
        }
    }
    for (peer, why) in &report.failed {
        let _ = writeln!(out, "\n**{} FAILED**: {why}", peer.name());
    }
    out
}

fn json(report: &Report, peers: &[Peer], options: &Options) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(
        out,
        "  \"quick\": {},\n  \"repetitions\": {},\n  \"seconds\": {},",
        options.quick, options.reps, options.seconds
    );
    out.push_str("  \"samples\": [\n");
    let mut first = true;
    for ((workload, peer), samples) in &report.samples {
        for (rep, s) in samples.iter().enumerate() {
            if !first {
                out.push_str(",\n");
            }
            first = false;
            let _ = write!(
                out,
                "    {{\"workload\": \"{workload}\", \"peer\": \"{}\", \"rep\": {rep}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"cpu_us_per_req\": {:.2}, \"machine_cpu_us_per_req\": {:.2}, \"origin_cpu_us_per_req\": {:.2}, \"segments_per_req\": {:.3}, \"proxy_sleeps_per_req\": {:.4}, \"origin_sleeps_per_req\": {:.4}, \"connects_per_req\": {:.4}, \"errors\": {}}}",
                peer.name(),
                s.requests_per_second,
                s.p50_ms,
                s.p99_ms,
                s.cpu_us_per_request,
                s.machine_cpu_us_per_request,
                s.origin_cpu_us_per_request,
                s.segments_per_request,
                s.proxy_sleeps_per_request,
                s.origin_sleeps_per_request,
                s.connects_per_request,
                s.errors
            );
        }
    }
    out.push_str("\n  ],\n  \"peers\": {\n");
    let entries: Vec<String> = peers
        .iter()
        .filter(|p| **p != Peer::Direct)
        .map(|peer| {
            format!(
                "    \"{}\": {{\"instructions_per_req\": {:.0}, \"allocations_per_req\": {:.2}, \"syscalls_per_req\": {:.3}, \"syscalls_per_req_50_clients\": {:.3}, \"syscalls_per_1m_response\": {:.1}, \"idle_rss_kib\": {}, \"bytes_per_idle_client\": {:.0}, \"bytes_per_idle_tls_client\": {:.0}, \"failed\": {}}}",
                peer.name(),
                report.instructions.get(peer).copied().unwrap_or(0.0),
                report.allocations.get(peer).copied().unwrap_or(0.0),
                report.syscalls.get(peer).map_or(0.0, |s| s.0),
                report.syscalls_small_50.get(peer).copied().unwrap_or(0.0),
                report.syscalls_1m.get(peer).copied().unwrap_or(0.0),
                report.idle_rss_kib.get(peer).copied().unwrap_or(0),
                report.idle_bytes.get(peer).copied().unwrap_or(0.0),
                report.idle_tls_bytes.get(peer).copied().unwrap_or(0.0),
                report.failed.get(peer).map_or("null".to_string(), |why| format!("\"{}\"", why.replace('"', "'")))
            )
        })
        .collect();
    out.push_str(&entries.join(",\n"));
    out.push_str("\n  }\n}\n");
    out
}

/// Bars of req/s relative to nginx, per workload.
fn svg(report: &Report, peers: &[Peer]) -> String {
    let shown: Vec<Peer> = peers
        .iter()
        .copied()
        .filter(|p| *p != Peer::Direct)
        .collect();
    let colors = ["#d9822b", "#3c7ac9", "#6a9f3e"];
    let (width, height, left, bottom, top) = (760.0, 360.0, 60.0, 60.0, 40.0);
    let plot_height = height - bottom - top;
    let group = (width - left - 20.0) / WORKLOADS.len() as f64;
    let bar = group / (shown.len() as f64 + 1.0);
    let max_ratio = 2.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"15\">Requests per second relative to nginx (1.0 = nginx), median of repetitions</text>\n"
    );
    for tick in [0.0, 0.5, 1.0, 1.5, 2.0] {
        let y = top + plot_height * (1.0 - tick / max_ratio);
        let stroke = if tick == 1.0 { "#888" } else { "#ddd" };
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>",
            width - 20.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick:.1}</text>",
            left - 6.0,
            y + 4.0
        );
    }
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let x0 = left + group * w as f64 + bar * 0.5;
        let nginx = med(report, workload.name, Peer::Nginx, |s| {
            s.requests_per_second
        })
        .unwrap_or(0.0);
        for (p, peer) in shown.iter().enumerate() {
            let value = med(report, workload.name, *peer, |s| s.requests_per_second).unwrap_or(0.0);
            let ratio = if nginx > 0.0 {
                (value / nginx).min(max_ratio)
            } else {
                0.0
            };
            let h = plot_height * ratio / max_ratio;
            let x = x0 + bar * p as f64;
            let y = top + plot_height - h;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                bar * 0.9,
                colors[p % colors.len()]
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + bar * shown.len() as f64 / 2.0,
            height - bottom + 18.0,
            workload.name
        );
    }
    for (p, peer) in shown.iter().enumerate() {
        let x = left + 140.0 * p as f64;
        let y = height - 18.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>",
            y - 10.0,
            colors[p % colors.len()]
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{y}\">{}</text>",
            x + 18.0,
            peer.name()
        );
    }
    out.push_str("</svg>\n");
    out
}

fn version(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn write_docs(
    report: &Report,
    peers: &[Peer],
    table: &str,
    setup: &Setup,
    tools: &Tools,
) -> Result<(), String> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::write(docs.join("benchmarks.svg"), svg(report, peers)).map_err(|e| e.to_string())?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let proxy = std::fs::read_to_string(&setup.proxy_config).unwrap_or_default();
    let haproxy = std::fs::read_to_string(&setup.haproxy_config).unwrap_or_default();
    let origin = std::fs::read_to_string(setup.dir.join("origin.conf")).unwrap_or_default();
    let haproxy_version = tools
        .haproxy
        .as_ref()
        .map_or("not installed".to_string(), |h| version(h, "-v"));
    let text = format!(
        "# Benchmarks\n\n\
         Written by `cargo bench --bench vs_nginx` (benches/vs_nginx.rs): one run, all peers\n\
         interleaved, medians over the repetitions. Re-run it on your machine; the numbers\n\
         below are this machine's.\n\n\
         ![req/s relative to nginx](benchmarks.svg)\n\n\
         ## Results\n\n{table}\n\
         ## Machine and versions\n\n\
         - CPU: {cpu}, {cores} cores; the proxy pinned to CPU 0, wrk and the origin to CPU 1.\n\
         - ferry {ferry}, {nginx}, {haproxy_version}, {wrk}.\n\n\
         ## How to read the numbers\n\n\
         - **req/s** is what one worker of each proxy sustains with wrk on the other core. On a\n\
           2-core machine the origin and wrk share one core, so the request rate is often\n\
           bounded by that core for every peer: then the **CPU µs per request** of the proxy\n\
           (from /proc, user + system) is the fairer comparison. Ratios are ferry / nginx,\n\
           computed per repetition, then the median.\n\
         - **gzip-64k** asks the file's `gzip on` server for a 64 KiB HTML-like text with\n\
           `Accept-Encoding: gzip` (ferry and nginx only: the same file, `gzip_comp_level 1`).\n\
           Both compress every response; ferry's zlib-rs level 1 is zlib-ng's quick strategy,\n\
           faster than nginx's zlib level 1 and with larger output (about 10.0 KB against\n\
           6.1 KB for this text; docs/nginx-differences.md).\n\
         - **direct** is wrk against the origin with no proxy: the upper bound.\n\
         - **syscalls/req** comes from `strace -c -f` on the proxy during a short run (the\n\
           floor for a proxy is 4: one read and one write per side).\n\
         - **RSS per idle keep-alive client** is the growth of the proxy's resident memory\n\
           with 10,000 (1,000 with --quick) idle clients, divided by their number.\n\
           Over TLS (ferry and nginx), 1,000 (200) rustls clients, TLS 1.3, one request each.\n\
         - **instructions/req** are user-space instructions per small keep-alive request,\n\
           counted by callgrind (not timed): each proxy serves 500 and then 1,500 requests on\n\
           one connection under valgrind, and the difference of the two totals is divided by\n\
           1,000, so start-up and shutdown cancel out. A quick run counts ferry's alone.\n\
         - **upstream connects/req** is how many new connections the origin accepted per\n\
           request (its stub_status `accepts`): 0 when every upstream connection is reused.\n\
         - **machine CPU µs/req** is the busy time of both CPUs (/proc/stat) per request:\n\
         proxy, origin, load generator and kernel together. The third table splits it:\n\
         the origin's own CPU, the rest (wrk and interrupts), TCP segments sent on the\n\
         machine (`OutSegs`, ACKs included), and how often the proxy and the origin slept\n\
         (voluntary context switches) per request.\n\
         - **allocations/req** counts calls to malloc, calloc, realloc and posix_memalign in\n\
         the same callgrind runs as the instructions (nginx allocates from its per-request\n\
         pool, which takes a few blocks from malloc per request).\n\
         - **syscalls per 1 MiB response** is `strace -c` over 10 clients fetching 1 MiB.\n\
         \n\
         ## Why the peers differ\n\
         \n\
         - **Instructions and syscalls.** ferry runs fewer user-space instructions per\n\
         small request than nginx and HAProxy (callgrind; here all three render the same\n\
         `X-Forwarded-For` and `X-Forwarded-Proto`), allocates nothing per request, and\n\
         makes about 4.1-4.2 syscalls per keep-alive request: one read and one write per\n\
         side, and an `epoll_wait` every few requests.\n\
         - **Small responses are bound by the other core.** The load generator and the\n\
         origin share CPU 1, and `perf record -a` shows it 100 % busy for every peer,\n\
         while CPU 0 idles 13 % of the time with ferry (6 % with nginx, 3 % with HAProxy).\n\
         So a small request's rate is set by what each proxy makes CPU 1 spend on it,\n\
         which the third table splits into the origin's CPU, the rest of the machine\n\
         (wrk, interrupts) and TCP segments. Measured on 2026-11-29 with `perf record -a\n\
         -g -e cpu-clock` over 4 s per peer: CPU 1 spent 16.0 µs per request behind ferry,\n\
         15.1 behind HAProxy and 14.7 behind nginx, the difference spread thinly over the\n\
         kernel's network path (waking a sleeping receiver and the interrupt that sends\n\
         the wake-up: +0.3 µs against HAProxy; freeing socket buffers another CPU\n\
         allocated: +0.2 µs).\n\
         - **Sleeping.** ferry does its part of a request sooner, so it runs out of work\n\
         and sleeps in `epoll_wait` more often (see \"proxy sleeps/req\"), and each\n\
         sleep turns the next packet from CPU 1 into a cross-CPU wake-up. Polling on for\n\
         a while after events instead (`--poll-spin-us 50`) brings ferry's sleeps down\n\
         to HAProxy's (0.016 per request), but over four alternating 4-second runs the\n\
         request rate moved by +0.8 %, inside the run-to-run spread of ±8 %: the knob\n\
         stays, off by default (docs/architecture.md, \"Sleeping, waking, and packets\").\n\
         - **Packets.** `nstat` counts 6.1-6.2 TCP segments per small request through\n\
         ferry against 6.0 through nginx and HAProxy: about 0.06 more data segments (a\n\
         response head flushed before its body arrived, when the loop was about to\n\
         sleep) and 0.07 more pure ACKs.\n\
         - **What is left.** The origin itself spends about 1 µs more per request behind\n\
         ferry than behind HAProxy, with the same request bytes, the same number of\n\
         upstream connections and the same number of sleeps; why is not explained yet.\n\
         - **Large bodies.** A transfer that keeps filling its 16 KiB ring gets a 256 KiB\n\
         one, so a 1 MiB response costs ferry about 15 syscalls (nginx ~190, HAProxy\n\
         ~140), and ferry's CPU per MiB is the lowest of the three.\n\
         - **TLS.** ferry and nginx run the same file: each TLS workload has an ECDSA\n\
         P-256 and an RSA 2048 row, on a server that lets clients resume (a shared\n\
         cache and tickets: `tls-resumed`, wrk resumes its sessions) or one that refuses\n\
         (`tls-new`: every handshake a full one). Keep-alive requests over TLS cost ferry\n\
         about 20 % less CPU than nginx, with nginx's segments per request (one record\n\
         per response: head and body are sealed together); the request rate, set by the\n\
         other core, is a few percent lower. A full ECDSA handshake costs ferry about half of nginx's CPU,\n\
         and it serves more of them. With RSA 2048 the handshake is the server's RSA\n\
         signature, and ring's is slower than OpenSSL's: ferry spends about 10 % more\n\
         CPU per full handshake and serves about 10 % fewer. Resumed handshakes cost\n\
         ferry about 40 % less CPU, but it serves about 15 % fewer: it finishes each\n\
         handshake flight and sleeps until the next (about 2 sleeps per request; nginx,\n\
         busy all the time, none), and each wake-up costs the core that runs wrk and the\n\
         origin. `--poll-spin-us 200` levels it by burning the idle CPU; the default\n\
         stays off. On 1 MiB over TLS ferry leads (by 10-20 %). An idle TLS keep-alive\n\
         client costs ferry rustls's session and buffers, about half of what nginx's\n\
         costs with OpenSSL but some 30 times a plain one (last table): rustls's\n\
         buffered API keeps its buffers between requests, and its unbuffered API, where\n\
         ferry would own them, is the way down.\n\
         - Nobody reconnects upstream: `keepalive 50` matches the 50 clients, and ferry\n\
         without a `keepalive` line keeps as many idle connections as its recent peak\n\
         needed.\n\
         \n\
         ## What is fair and what is not\n\n\
         - nginx 1.22 proxies with HTTP/1.0 and no upstream keep-alive by default; here it is\n\
           tuned (`keepalive 50`, one per client, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`),\n\
           which is what ferry does by default. Both run the very same file.\n\
         - nginx buffers responses (`proxy_buffering on`) while ferry streams through 16 KiB\n\
           buffers; for large bodies this favours whichever copies less, not the design.\n\
         - Access logs are off everywhere; the origin serves from the page cache.\n\
         - Loopback TCP puts most of the cost in the kernel, on the proxy's own CPU: what a\n\
           proxy saves is syscalls and wake-ups, not parsing.\n\
         - Every peer sends the origin the same fields: ferry and nginx by the file's\n\
           `proxy_set_header X-Forwarded-For` / `X-Forwarded-Proto` lines, HAProxy by\n\
           `option forwardfor` and `http-request set-header X-Forwarded-Proto http`.\n\n\
         ## Configurations\n\n\
         The proxy configuration, run by ferry and nginx alike:\n\n```nginx\n{proxy}```\n\n\
         HAProxy:\n\n```\n{haproxy}```\n\n\
         The origin (nginx serving files):\n\n```nginx\n{origin}```\n",
        ferry = env!("CARGO_PKG_VERSION"),
        nginx = version(&tools.nginx, "-v"),
        wrk = version(&tools.wrk, "--version")
            .split(" [")
            .next()
            .unwrap_or("wrk"),
    );
    std::fs::write(docs.join("benchmarks.md"), text).map_err(|e| e.to_string())
}
