//! Test helpers: the real `ferry` binary on a free loopback port, origins
//! that behave (or misbehave on purpose), raw HTTP clients, and tool skips.
//!
//! Every blocking operation here has a timeout, so a wedged ferry fails a
//! test instead of hanging it.

#![allow(dead_code)]

#[cfg(feature = "tls")]
pub mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single read or write in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ===== ferry =====

pub struct Ferry {
    child: Child,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Ferry {
    /// Starts ferry on a free port in front of `upstream`, with extra flags.
    pub fn start(upstream: SocketAddr, extra: &[&str]) -> Ferry {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        let upstream = upstream.to_string();
        args.extend(["--upstream", upstream.as_str()]);
        args.extend(extra);
        Ferry::start_with(&args)
    }

    /// Starts ferry with exactly these arguments; waits for its
    /// "listening on" line.
    pub fn start_with(args: &[&str]) -> Ferry {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.args(args);
        Ferry::spawn(command)
    }

    /// Starts ferry with exactly these arguments and `RUST_LOG=filter`.
    pub fn start_logging(args: &[&str], filter: &str) -> Ferry {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.args(args).env("RUST_LOG", filter);
        Ferry::spawn(command)
    }

    /// Starts ferry as an operator would: no `RUST_LOG`, so the error log
    /// is at its default level.
    pub fn start_default_log(args: &[&str]) -> Ferry {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command.args(args).env_remove("RUST_LOG");
        Ferry::spawn(command)
    }

    /// Starts ferry with its descriptor limit (RLIMIT_NOFILE) lowered.
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Ferry {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .args(args);
        Ferry::spawn(command)
    }

    fn spawn(mut command: Command) -> Ferry {
        // ferry inherits the test's descriptor limit: as high as allowed.
        raise_descriptor_limit();
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env(
                "RUST_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "ferry=info".into()),
            );
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let sink = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .strip_prefix("ferry: listening on http://")
                    .or_else(|| line.strip_prefix("ferry: listening on https://"))
                    .or_else(|| line.strip_prefix("ferry: listening on tcp://"))
                    .map(|rest| rest.split(',').next().unwrap_or("").to_string());
                // Kept before the start is announced: a test that reads
                // stdout right after start must see this line.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("FERRY_TEST_LOG").is_some() {
                    eprintln!("[ferry] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the stderr reader a moment to collect the reason.
                thread::sleep(Duration::from_millis(50));
                panic!("ferry did not start: {:?}", stderr.lock().unwrap());
            }
        };
        Ferry {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// Writes an nginx.conf around `http_body` (with `PORT` replaced by a
    /// free port), checks that `nginx -t` accepts it too, and starts ferry
    /// with it. A port taken in the meantime by another test is retried.
    pub fn start_config(name: &str, http_body: &str) -> (Ferry, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ferry.conf");
        for attempt in 0..3 {
            let port = free_port();
            let text = format!(
                "events {{}}\nhttp {{\naccess_log off;\n{}\n}}\n",
                http_body.replace("PORT", &port.to_string())
            );
            std::fs::write(&path, text).unwrap();
            if attempt == 0 {
                assert_nginx_accepts(&path);
            }
            let args = ["-c", path.to_str().unwrap()];
            match std::panic::catch_unwind(|| Ferry::start_with(&args)) {
                Ok(ferry) => return (ferry, dir),
                Err(panic) if attempt == 2 => std::panic::resume_unwind(panic),
                Err(_) => continue,
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Access log lines so far.
    /// Everything ferry printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn access_log(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with("ferry:"))
            .cloned()
            .collect()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors, from /proc.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits up to `limit` for `check` to hold on the access log.
    pub fn wait_for_log(&self, limit: Duration, check: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(&self.access_log()) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits up to `limit` for an error-log line containing `needle`.
    pub fn wait_for_stderr(&self, limit: Duration, needle: &str) -> bool {
        self.wait_for_stderr_count(limit, needle, 1)
    }

    /// Error-log lines so far that contain `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits up to `limit` for `count` error-log lines containing `needle`.
    pub fn wait_for_stderr_count(&self, limit: Duration, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stderr_count(needle) >= count {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (`QUIT`, `TERM`…) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit code once ferry exits, or `None` if it is still running
    /// after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration ferry takes must mean the same to nginx: `nginx -t`
/// must accept it (skipped, with a reason, when nginx is missing).
pub fn assert_nginx_accepts(path: &std::path::Path) {
    if let Some(nginx) = require_tool("nginx") {
        let output = Command::new(nginx)
            .args(["-t", "-q", "-c"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `ferry -t` refuses a server with `server_body` (on `127.0.0.1:1`) and
/// says `message`, as nginx's words go.
pub fn assert_ferry_refuses(dir: &std::path::Path, server_body: &str, message: &str) {
    let path = dir.join("ferry.conf");
    std::fs::write(
        &path,
        format!("events {{}}\nhttp {{ server {{ listen 127.0.0.1:1; {server_body} }} }}\n"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted: {server_body}");
    assert!(stderr.contains(message), "{server_body}: {stderr}");
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A free loopback port for a configuration file (nginx.conf cannot say
/// "port 0"); the tiny race with other processes is acceptable in tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A fresh directory for one test's files (configurations, logs, pid files).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads `reader` until the peer closes, hashing the bytes on top of what
/// `so_far` already counted: `(bytes, hash)`.
pub fn hash_until_closed(reader: &mut impl Read, so_far: (u64, Hash)) -> (u64, Hash) {
    let (mut received, mut hash) = so_far;
    let mut block = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut block).unwrap();
        if n == 0 {
            return (received, hash);
        }
        hash.update(&block[..n]);
        received += n as u64;
    }
}

/// A loopback address where nothing listens.
pub fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

// ===== bytes =====

/// The deterministic test pattern: byte `i` of a body. Its period (251)
/// does not divide any buffer size, so reordered blocks change the hash.
pub fn pattern(offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = ((offset + i as u64) % 251) as u8;
    }
}

/// FNV-1a, incremental.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hash(pub u64);

impl Default for Hash {
    fn default() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325)
    }
}

impl Hash {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    pub fn of_pattern(len: u64) -> Hash {
        let mut hash = Hash::default();
        let mut block = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(block.len() as u64) as usize;
            pattern(done, &mut block[..n]);
            hash.update(&block[..n]);
            done += n as u64;
        }
        hash
    }
}

// ===== HTTP on the wire =====

/// A response as a test client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response head from `reader` (interim 1xx heads included as
/// separate responses when `keep_interim`).
pub fn read_head(reader: &mut impl BufRead) -> Option<(u16, String)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).ok()?;
        if n == 0 {
            return None;
        }
        let end = line == "\r\n" || line == "\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head))
}

/// Reads a whole response to a request with method `method`, hashing the
/// body instead of keeping it when it is larger than `keep` bytes.
pub fn read_response_hashed(
    reader: &mut impl BufRead,
    method: &str,
    keep: usize,
) -> Option<(Response, u64, Hash)> {
    let (mut status, mut head) = read_head(reader)?;
    while (100..200).contains(&status) {
        (status, head) = read_head(reader)?;
    }
    let mut response = Response {
        status,
        head,
        body: Vec::new(),
    };
    let mut hash = Hash::default();
    let mut total = 0u64;
    let mut take = |bytes: &[u8], response: &mut Response| {
        hash.update(bytes);
        total += bytes.len() as u64;
        if response.body.len() < keep {
            response.body.extend_from_slice(bytes);
        }
    };
    let no_body = method == "HEAD" || status == 204 || status == 304;
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let framing = if no_body {
        BodyFraming::None
    } else if chunked {
        BodyFraming::Chunked
    } else if let Some(length) = response.header("content-length") {
        BodyFraming::Length(length.parse().ok()?)
    } else {
        BodyFraming::UntilClose
    };
    read_body(reader, framing, |bytes| take(bytes, &mut response))?;
    Some((response, total, hash))
}

pub fn read_response(reader: &mut impl BufRead, method: &str) -> Option<Response> {
    read_response_hashed(reader, method, usize::MAX).map(|(r, _, _)| r)
}

/// How a message body on the wire ends.
#[derive(Clone, Copy)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one body from `reader`, handing its bytes to `take` as they come.
pub fn read_body(
    reader: &mut impl BufRead,
    framing: BodyFraming,
    mut take: impl FnMut(&[u8]),
) -> Option<()> {
    let mut block = vec![0u8; 64 * 1024];
    let mut read_exactly =
        |reader: &mut dyn BufRead, mut left: u64, take: &mut dyn FnMut(&[u8])| -> Option<()> {
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                reader.read_exact(&mut block[..n]).ok()?;
                take(&block[..n]);
                left -= n as u64;
            }
            Some(())
        };
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(length) => read_exactly(reader, length, &mut take)?,
        BodyFraming::Chunked => loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).ok()?;
            let size = u64::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                loop {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer).ok()?;
                    if trailer == "\r\n" || trailer.is_empty() {
                        break;
                    }
                }
                break;
            }
            read_exactly(reader, size, &mut take)?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        },
        BodyFraming::UntilClose => {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                take(&chunk[..n]);
            }
        }
    }
    Some(())
}

/// Sends one request on a fresh connection and reads the response.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut stream = connect(addr);
    stream.write_all(raw.as_bytes()).unwrap();
    let method = raw.split_whitespace().next().unwrap_or("GET").to_string();
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, &method).expect("a response")
}

/// True if the peer closed the connection (EOF or reset) within `limit`.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    let closed = matches!(stream.read(&mut byte), Ok(0))
        || matches!(stream.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    closed
}

/// True if the connection is still open after `wait` (nothing arrives,
/// nothing closes).
pub fn still_open(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let open = matches!(stream.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open
}

// ===== origins =====

/// A request as an origin received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_hash: Hash,
    pub body_prefix: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head and body, by Content-Length or chunked) from an
/// origin's connection. `None` at EOF.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut lines = head.lines();
    let request_line = lines.next()?.to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut received = Received {
        method,
        path,
        head: head.clone(),
        headers,
        body_len: 0,
        body_hash: Hash::default(),
        body_prefix: Vec::new(),
    };
    let take = |bytes: &[u8], r: &mut Received| {
        r.body_hash.update(bytes);
        r.body_len += bytes.len() as u64;
        if r.body_prefix.len() < 4096 {
            r.body_prefix
                .extend_from_slice(&bytes[..bytes.len().min(4096)]);
        }
    };
    let framing = if received
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        BodyFraming::Chunked
    } else if let Some(length) = received.header("content-length") {
        BodyFraming::Length(length.parse().ok()?)
    } else {
        BodyFraming::None
    };
    read_body(reader, framing, |bytes| take(bytes, &mut received))?;
    Some(received)
}

/// What an origin connection handler gets.
pub struct OriginConn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
    pub log: Arc<Mutex<Vec<Received>>>,
}

impl OriginConn {
    pub fn next_request(&mut self) -> Option<Received> {
        let received = read_request(&mut self.reader)?;
        self.log.lock().unwrap().push(received.clone());
        Some(received)
    }

    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }
}

/// A test origin: a thread per connection running `handler`.
pub struct Origin {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    pub fn start<F>(handler: F) -> Origin
    where
        F: Fn(OriginConn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (a, r, s) = (accepts.clone(), received.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                // As real servers do: a head and a body written separately
                // must not wait for the proxy's delayed ACK (Nagle).
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let log = r.clone();
                let _ = thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let reader = BufReader::new(stream.try_clone().unwrap());
                        handler(OriginConn {
                            reader,
                            stream,
                            log,
                        });
                    });
            }
        });
        Origin {
            addr,
            accepts,
            received,
            stop,
        }
    }

    /// The general-purpose origin, keep-alive, routed by path:
    /// * `/bytes/N/length|chunked|close`: N pattern bytes framed that way;
    /// * `/echo`: the request head as received, as the body;
    /// * `/upload`: `LEN HASH` of the request body it received;
    /// * anything else: `hello`.
    pub fn standard() -> Origin {
        Origin::start(|mut conn| {
            while let Some(request) = conn.next_request() {
                if !respond_standard(&mut conn, &request) {
                    return;
                }
            }
        })
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

/// GETs `path` with the extra `fields` (whole lines) on a fresh
/// connection: the response, and the request `origin` received for it, if
/// the request reached it.
pub fn get_through(
    addr: SocketAddr,
    origin: &Origin,
    path: &str,
    fields: &str,
) -> (Response, Option<Received>) {
    let before = origin.requests().len();
    let response = request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n"),
    );
    let seen = origin.requests();
    let upstream = (seen.len() > before)
        .then(|| seen.last().cloned())
        .flatten();
    (response, upstream)
}

/// The standard origin's answer to one request; false when the
/// connection must end.
pub fn respond_standard(conn: &mut OriginConn, request: &Received) -> bool {
    let path = request.path.clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["bytes", size, mode] => {
            let size: u64 = size.parse().unwrap_or(0);
            send_pattern(conn, size, mode, request.method == "HEAD")
        }
        ["echo"] => {
            let body = request.head.as_bytes();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.send(head.as_bytes()) && conn.send(body)
        }
        ["upload"] => {
            let body = format!("{} {:016x}", request.body_len, request.body_hash.0);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.send(head.as_bytes()) && conn.send(body.as_bytes())
        }
        _ => conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    }
}

fn send_pattern(conn: &mut OriginConn, size: u64, mode: &str, head_only: bool) -> bool {
    let head = match mode {
        "chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        "close" => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
        _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n"),
    };
    if !conn.send(head.as_bytes()) {
        return false;
    }
    if head_only {
        return mode != "close";
    }
    let mut block = vec![0u8; 61 * 1024];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(block.len() as u64) as usize;
        pattern(done, &mut block[..n]);
        let ok = if mode == "chunked" {
            conn.send(format!("{n:x}\r\n").as_bytes())
                && conn.send(&block[..n])
                && conn.send(b"\r\n")
        } else {
            conn.send(&block[..n])
        };
        if !ok {
            return false;
        }
        done += n as u64;
    }
    match mode {
        "chunked" => conn.send(b"0\r\n\r\n"),
        "close" => {
            let _ = conn.stream.shutdown(Shutdown::Both);
            false
        }
        _ => true,
    }
}

// ===== descriptors =====

/// Raises this process's open-file soft limit to its hard limit, once.
/// Desktops often start shells at 1024, which the load tests exceed;
/// children (ferry, nginx) inherit the raised limit.
pub fn raise_descriptor_limit() -> u64 {
    static RAISED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RAISED.get_or_init(|| {
        let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
            return 0;
        };
        if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
            return hard;
        }
        soft
    })
}

/// Whether the test may open `needed` descriptors (raising the soft limit
/// first). If the hard limit is too low the test is skipped with a printed
/// reason, or fails under FERRY_REQUIRE_TOOLS=1 (CI), which must not skip.
pub fn need_descriptors(needed: u64) -> bool {
    let limit = raise_descriptor_limit();
    if limit >= needed {
        return true;
    }
    let reason = format!(
        "this test needs {needed} open files and the hard limit is {limit} (raise it: ulimit -Hn)"
    );
    if std::env::var("FERRY_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

// ===== outside tools =====

/// Finds `tool` on PATH. Without it the test is skipped with a printed
/// reason, unless FERRY_REQUIRE_TOOLS=1 (CI), where it fails.
pub fn require_tool(tool: &str) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
            .map(|path| path.to_string_lossy().into_owned())
    });
    if found.is_none() {
        if std::env::var("FERRY_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{tool} is required (FERRY_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test thread panicked"),
    }
}

// ===== counters =====

impl Ferry {
    /// Reads ferry's counters from its status path (started with
    /// `--status-path /_status`). The request's own connection is not
    /// counted in the answer's `connections`... it is: subtract 1.
    pub fn counters(&self) -> std::collections::HashMap<String, i64> {
        let response = request(
            self.addr,
            "GET /_status HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
        );
        response
            .text()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// Waits until `check` holds on the counters (less the status request's
    /// own connection), or fails after `limit`.
    pub fn wait_for_counters(
        &self,
        limit: Duration,
        check: impl Fn(&std::collections::HashMap<String, i64>) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let mut counters = self.counters();
            if let Some(connections) = counters.get_mut("connections") {
                *connections -= 1;
            }
            if check(&counters) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "counters never settled: {counters:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time (user + system) ferry has used, from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

/// nginx itself, for tests that compare: one worker, no daemon, one server
/// on a free port whose block holds `server_body`.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    /// nginx with one server on a free port, `server_body` inside it.
    pub fn start(nginx: &str, name: &str, server_body: &str) -> Nginx {
        let port = free_port();
        let servers = format!("server {{ listen 127.0.0.1:{port};\n{server_body} }}");
        Nginx::start_http(nginx, name, &servers, port)
    }

    /// nginx on the `http_body` a ferry test used (`PORT` in it replaced by
    /// a free port), and its address; `None` when nginx is not installed.
    pub fn beside(name: &str, http_body: &str) -> Option<(Nginx, SocketAddr)> {
        let nginx = require_tool("nginx")?;
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            name,
            &http_body.replace("PORT", &port.to_string()),
            port,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
        Some((nginx, addr))
    }

    /// nginx with `http_body` (servers listening on `port`) in its http
    /// block.
    pub fn start_http(nginx: &str, name: &str, http_body: &str, port: u16) -> Nginx {
        let dir = std::env::temp_dir().join(format!("ferry-nginx-{name}-{}", std::process::id()));
        let main = format!(
            "events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {dir};\n proxy_temp_path {dir};\n\
             {http_body}\n}}\n",
            dir = dir.display()
        );
        Nginx::start_main(nginx, name, &main, port)
    }

    /// nginx on a whole configuration, `main`, after the lines that keep
    /// it in the foreground with its files in a directory of its own;
    /// started once it accepts on `port`.
    pub fn start_main(nginx: &str, name: &str, main: &str, port: u16) -> Nginx {
        let dir = std::env::temp_dir().join(format!("ferry-nginx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (modules, rest): (Vec<&str>, Vec<&str>) = main
            .lines()
            .partition(|line| line.trim_start().starts_with("load_module"));
        // nginx wants `load_module` before everything else.
        let config = format!(
            "{}\nworker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log;\n{}\n",
            modules.join("\n"),
            rest.join("\n"),
            dir = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            // Gone already (a port taken meanwhile): say so now, with why.
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited at start ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }

    /// What nginx wrote to its error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
