//! Signals with nginx's meanings: SIGQUIT finishes what is under way and
//! exits 0, SIGTERM and SIGINT exit at once.

mod util;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::*;

const DOWNLOAD: u64 = 100 << 20;

#[test]
fn graceful_quit_finishes_a_download_and_refuses_new_connections() {
    let origin = Origin::standard();
    let mut ferry = Ferry::start(origin.addr, &[]);
    let addr = ferry.addr;

    // An idle keep-alive connection, which the shutdown closes at once.
    let mut idle = BufReader::new(ferry.connect());
    idle.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, "GET").unwrap().status, 200);

    // A 100 MiB download, started but far from done.
    let mut download = BufReader::new(ferry.connect());
    download
        .get_mut()
        .write_all(format!("GET /bytes/{DOWNLOAD}/len HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    let (status, _) = read_head(&mut download).unwrap();
    assert_eq!(status, 200);
    let mut hash = Hash::default();
    let mut received = 0u64;
    let mut block = vec![0u8; 64 * 1024];
    while received < (1 << 20) {
        let n = download.read(&mut block).unwrap();
        assert!(n > 0, "download ended early");
        hash.update(&block[..n]);
        received += n as u64;
    }

    ferry.signal("QUIT");

    // The idle connection is closed, new connections are refused.
    assert!(closed_within(idle.get_mut(), Duration::from_secs(3)));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ => assert!(Instant::now() < deadline, "still accepting after SIGQUIT"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ferry.is_running(), "exited with a download under way");

    // The download completes, whole and in order, then the connection closes.
    let rest = within(Duration::from_secs(60), move || {
        hash_until_closed(&mut download, (received, hash))
    });
    assert_eq!(rest.0, DOWNLOAD);
    assert_eq!(rest.1, Hash::of_pattern(DOWNLOAD));
    assert_eq!(ferry.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn term_and_int_stop_at_once() {
    for signal in ["TERM", "INT"] {
        let origin = Origin::standard();
        let mut ferry = Ferry::start(origin.addr, &[]);
        // A download in progress does not hold a fast shutdown up.
        let mut download = ferry.connect();
        download
            .write_all(format!("GET /bytes/{DOWNLOAD}/len HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        let mut first = [0u8; 1024];
        assert!(download.read(&mut first).unwrap() > 0);
        let started = Instant::now();
        ferry.signal(signal);
        assert_eq!(ferry.wait_exit(Duration::from_secs(3)), Some(0), "{signal}");
        assert!(started.elapsed() < Duration::from_secs(2), "{signal}");
    }
}

#[test]
fn usr1_reopens_a_rotated_access_log() {
    let origin = Origin::standard();
    let logs = std::env::temp_dir().join(format!("ferry-usr1-logs-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("access.log");
    let (ferry, dir) = Ferry::start_config(
        "usr1",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             access_log {};\n\
             location / {{ proxy_pass http://{}; }} }}",
            log.display(),
            origin.addr
        ),
    );
    let get = |target: &str| {
        let response = request(ferry.addr, &format!("GET {target} HTTP/1.0\r\n\r\n"));
        assert_eq!(response.status, 200);
    };
    let lines_with = |path: &std::path::Path, needle: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    };
    let wait_for = |path: &std::path::Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        while lines_with(path, needle) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        lines_with(path, needle)
    };

    get("/before");
    assert_eq!(wait_for(&log, "/before"), 1);
    let rotated = logs.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until USR1, lines follow the moved file, as with nginx.
    get("/moved");
    assert_eq!(wait_for(&rotated, "/moved"), 1);
    assert!(!log.exists());

    ferry.signal("USR1");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !log.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    get("/after");
    assert_eq!(wait_for(&log, "/after"), 1);
    assert_eq!(lines_with(&rotated, "/after"), 0);
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(logs);
}

/// Starts ferry from `dir/ferry.conf` with `main` directives at the top
/// level (which `Ferry::start_config` cannot place) and `http` ones in the
/// http block, proxying everything to `origin`. nginx must accept it too.
fn start_main_config(
    dir: &std::path::Path,
    main: &str,
    http: &str,
    origin: &Origin,
) -> (Ferry, std::path::PathBuf) {
    let config = dir.join("ferry.conf");
    std::fs::write(
        &config,
        format!(
            "{main}\nevents {{}}\nhttp {{\n {http}\n\
             server {{ listen 127.0.0.1:{};\n location / {{ proxy_pass http://{}; }} }}\n}}\n",
            free_port(),
            origin.addr
        ),
    )
    .unwrap();
    assert_nginx_accepts(&config);
    let ferry = Ferry::start_with(&["-c", config.to_str().unwrap()]);
    (ferry, config)
}

/// Runs `ferry -s SIGNAL -c CONFIG`; returns its exit code and stderr.
fn ferry_dash_s(signal: &str, config: &std::path::Path) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-s", signal, "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dash_s_finds_ferry_through_the_pid_file() {
    let origin = Origin::standard();
    let dir = scratch_dir("dash-s");
    let (pid_file, log) = (dir.join("ferry.pid"), dir.join("access.log"));
    let (mut ferry, config) = start_main_config(
        &dir,
        &format!("pid {};", pid_file.display()),
        &format!("access_log {};", log.display()),
        &origin,
    );
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), ferry.pid().to_string());

    // reopen: after a rename, the next line lands in a new file.
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    assert_eq!(ferry_dash_s("reopen", &config).0, 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !log.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(log.exists(), "-s reopen did not reopen the access log");

    // reload: the same file read again, and said so in the error log.
    assert_eq!(ferry_dash_s("reload", &config).0, 0);
    assert!(ferry.wait_for_stderr(Duration::from_secs(3), "configuration reloaded"));
    assert_eq!(
        request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").status,
        200
    );

    // quit: ferry exits 0 and removes its pid file.
    assert_eq!(ferry_dash_s("quit", &config).0, 0);
    assert_eq!(ferry.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!pid_file.exists());

    // Nobody to signal now: a clear error, exit 1.
    let (code, stderr) = ferry_dash_s("stop", &config);
    assert_eq!(code, 1);
    assert!(stderr.contains("ferry.pid"), "{stderr}");
    let (code, stderr) = ferry_dash_s("reload", &config);
    assert_eq!(code, 1);
    assert!(stderr.contains("ferry.pid"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn worker_shutdown_timeout_bounds_a_graceful_quit() {
    let origin = Origin::standard();
    let dir = scratch_dir("shutdown-timeout");
    let (mut ferry, _) = start_main_config(
        &dir,
        "worker_shutdown_timeout 1s;",
        "access_log off;",
        &origin,
    );
    // A download whose client stops reading: it cannot finish by itself.
    let mut stalled = ferry.connect();
    stalled
        .write_all(format!("GET /bytes/{DOWNLOAD}/len HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 1024];
    assert!(stalled.read(&mut first).unwrap() > 0);

    let started = Instant::now();
    ferry.signal("QUIT");
    assert!(
        ferry.wait_exit(Duration::from_millis(500)).is_none(),
        "quit before worker_shutdown_timeout"
    );
    assert_eq!(ferry.wait_exit(Duration::from_secs(5)), Some(0));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
