//! Reloading the configuration (SIGHUP, `ferry -s reload`) while clients
//! keep coming: nothing is dropped, new requests see the new routes, an
//! invalid configuration changes nothing, listeners and upstream pools
//! follow the configuration.

mod util;

use std::io::{BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Generation `generation` of a configuration: `/generation` names it, and
/// `/g<generation>/…` is a route only that generation has.
fn generation_config(ports: &[u16], generation: u32, upstream: SocketAddr) -> String {
    let listen: String = ports
        .iter()
        .map(|port| format!("    listen 127.0.0.1:{port};\n"))
        .collect();
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  upstream backend {{ server {upstream}; keepalive 8; }}\n  server {{\n{listen}\
         \x20   location = /generation {{ return 200 \"generation {generation}\\n\"; }}\n\
         \x20   location /g{generation}/ {{ proxy_pass http://backend/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
         \x20   location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n"
    )
}

fn start_generation(dir: &Path, ports: &[u16], upstream: SocketAddr) -> (Ferry, PathBuf) {
    let path = dir.join("ferry.conf");
    std::fs::write(&path, generation_config(ports, 0, upstream)).unwrap();
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap(), "--status-path", "/_status"]);
    (ferry, path)
}

fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    )
}

/// Asks new connections for `/generation` until it says `generation`.
fn wait_for_generation(addr: SocketAddr, generation: u32) {
    let expected = format!("generation {generation}\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if get(addr, "/generation").text() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "generation {generation} never took effect"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Checks one `/bytes/N/len` response: whole, in order, status 200.
fn check_bytes(response: Option<Response>, size: u64) -> Result<Response, String> {
    let response = response.ok_or("no response")?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    let mut expected = vec![0u8; size as usize];
    pattern(0, &mut expected);
    if response.body != expected {
        return Err(format!(
            "a body of {} bytes, not the pattern",
            response.body.len()
        ));
    }
    Ok(response)
}

/// A client that sends requests until `stop`, counting successes and
/// recording failures: on one keep-alive connection (reopened only when
/// ferry says `Connection: close`), or one new connection per request.
fn client(
    addr: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut connection: Option<BufReader<TcpStream>> = None;
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let size = 1 + (n * 7919) % 20_000;
            let close = if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            };
            let raw = format!("GET /bytes/{size}/len HTTP/1.1\r\nHost: a\r\n{close}\r\n");
            let reader = match &mut connection {
                Some(reader) if keep_alive => reader,
                _ => match TcpStream::connect(addr) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        connection.insert(BufReader::new(stream))
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("connect: {e}"));
                        continue;
                    }
                },
            };
            if let Err(e) = reader.get_mut().write_all(raw.as_bytes()) {
                failures.lock().unwrap().push(format!("write: {e}"));
                connection = None;
                continue;
            }
            match check_bytes(read_response(reader, "GET"), size) {
                Ok(response) => {
                    done.fetch_add(1, Ordering::SeqCst);
                    let closing = response
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if closing || !keep_alive {
                        connection = None;
                    }
                }
                Err(e) => {
                    failures.lock().unwrap().push(format!(
                        "request {n} ({}): {e}",
                        if keep_alive {
                            "keep-alive"
                        } else {
                            "new connection"
                        }
                    ));
                    connection = None;
                }
            }
        }
    })
}

#[test]
fn five_reloads_under_load_drop_nothing_and_change_the_routes() {
    reloads_under_load(1);
}

#[test]
fn five_reloads_under_load_with_two_workers() {
    reloads_under_load(2);
}

/// Five reloads, each changing the routes, while four clients send
/// requests without pause: none may fail, and each reload must show.
fn reloads_under_load(workers: usize) {
    let origin = Origin::standard();
    let dir = scratch_dir(&format!("reload-load-{workers}"));
    let port = free_port();
    let config = |generation| {
        format!(
            "worker_processes {workers};\n{}",
            generation_config(&[port], generation, origin.addr)
        )
    };
    let path = dir.join("ferry.conf");
    std::fs::write(&path, config(0)).unwrap();
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    let addr = ferry.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = [true, true, false, false]
        .into_iter()
        .map(|keep_alive| {
            client(
                addr,
                keep_alive,
                stop.clone(),
                done.clone(),
                failures.clone(),
            )
        })
        .collect();

    // One keep-alive connection that lives through every reload.
    let mut kept = BufReader::new(ferry.connect());
    let ask = |kept: &mut BufReader<TcpStream>| {
        kept.get_mut()
            .write_all(b"GET /generation HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        read_response(kept, "GET")
            .expect("the kept connection answers")
            .text()
    };
    assert_eq!(ask(&mut kept), "generation 0\n");

    for generation in 1..=5 {
        thread::sleep(Duration::from_millis(400));
        std::fs::write(&path, config(generation)).unwrap();
        ferry.signal("HUP");
        // Every worker has reloaded.
        let reloads = workers * generation as usize;
        assert!(
            ferry.wait_for_stderr_count(Duration::from_secs(5), "configuration reloaded", reloads),
            "generation {generation} did not reach every worker"
        );
        wait_for_generation(addr, generation);
        // Its next request runs on the new configuration, on the same
        // connection.
        assert_eq!(ask(&mut kept), format!("generation {generation}\n"));
        // The route only this generation has works; the last one's is gone
        // (it falls through to `location /`, which the origin answers
        // "hello").
        let new_route = check_bytes(
            Some(get(addr, &format!("/g{generation}/bytes/5000/len"))),
            5000,
        );
        assert!(new_route.is_ok(), "generation {generation}: {new_route:?}");
        let old_route = get(addr, &format!("/g{}/bytes/5000/len", generation - 1));
        assert_eq!(old_route.text(), "hello", "generation {generation}");
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let done = done.load(Ordering::SeqCst);
    // The origin answers in two writes, so delayed ACKs hold each client
    // to some 25 requests a second: 4 clients over 2.4 s.
    assert!(done > 100, "only {done} requests went through");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let origin = Origin::standard();
    let dir = scratch_dir("reload-invalid");
    let port = free_port();
    let (ferry, path) = start_generation(&dir, &[port], origin.addr);
    let mut kept = BufReader::new(ferry.connect());

    for broken in [
        "events {}\nhttp { server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:1; } }\n",
        "events {}\nhttp { server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:1; frobnicate on; } } }\n",
    ] {
        std::fs::write(&path, broken).unwrap();
        let refusals = ferry.stderr_count("reload refused");
        ferry.signal("HUP");
        assert!(
            ferry.wait_for_stderr_count(Duration::from_secs(5), "reload refused", refusals + 1),
            "no error logged for {broken:?}"
        );
        // The old configuration serves, on new and old connections.
        assert_eq!(get(ferry.addr, "/generation").text(), "generation 0\n");
        assert!(check_bytes(Some(get(ferry.addr, "/g0/bytes/100/len")), 100).is_ok());
        kept.get_mut()
            .write_all(b"GET /generation HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut kept, "GET").unwrap().text(), "generation 0\n");
    }
    let errors = ferry.stderr().join("\n");
    assert!(
        errors.contains("ferry.conf"),
        "the error names the file: {errors}"
    );

    // Fixed: the next reload takes.
    std::fs::write(&path, generation_config(&[port], 1, origin.addr)).unwrap();
    ferry.signal("HUP");
    wait_for_generation(ferry.addr, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn listeners_follow_the_configuration() {
    let origin = Origin::standard();
    let dir = scratch_dir("reload-listeners");
    let (first, second) = (free_port(), free_port());
    let (ferry, path) = start_generation(&dir, &[first], origin.addr);
    let first_addr: SocketAddr = format!("127.0.0.1:{first}").parse().unwrap();
    let second_addr: SocketAddr = format!("127.0.0.1:{second}").parse().unwrap();

    // Added: the new port serves, the old one still does.
    std::fs::write(&path, generation_config(&[first, second], 1, origin.addr)).unwrap();
    ferry.signal("HUP");
    wait_for_generation(first_addr, 1);
    assert_eq!(get(second_addr, "/generation").text(), "generation 1\n");

    // A download under way on the first port, and an idle connection there.
    const SIZE: u64 = 8 << 20;
    let mut download = BufReader::new(connect(first_addr));
    download
        .get_mut()
        .write_all(format!("GET /bytes/{SIZE}/len HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    let (status, _) = read_head(&mut download).unwrap();
    assert_eq!(status, 200);
    let mut idle = BufReader::new(connect(first_addr));
    idle.get_mut()
        .write_all(b"GET /generation HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, "GET").unwrap().status, 200);

    // Removed: the first port refuses new connections, its idle connection
    // closes, the download finishes whole.
    std::fs::write(&path, generation_config(&[second], 2, origin.addr)).unwrap();
    ferry.signal("HUP");
    wait_for_generation(second_addr, 2);
    match TcpStream::connect_timeout(&first_addr, Duration::from_secs(1)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("the removed listener still accepts: {other:?}"),
    }
    assert!(closed_within(idle.get_mut(), Duration::from_secs(3)));
    let received = within(Duration::from_secs(30), move || {
        hash_until_closed(&mut download, (0, Hash::default()))
    });
    assert_eq!(received.0, SIZE);
    assert_eq!(received.1, Hash::of_pattern(SIZE));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn idle_upstream_connections_to_removed_servers_close() {
    let (old_origin, new_origin) = (Origin::standard(), Origin::standard());
    let dir = scratch_dir("reload-pools");
    let port = free_port();
    let (ferry, path) = start_generation(&dir, &[port], old_origin.addr);
    assert!(check_bytes(Some(get(ferry.addr, "/bytes/10/len")), 10).is_ok());
    ferry.wait_for_counters(Duration::from_secs(3), |c| {
        c["pooled_upstream_connections"] == 1
    });

    std::fs::write(&path, generation_config(&[port], 1, new_origin.addr)).unwrap();
    ferry.signal("HUP");
    wait_for_generation(ferry.addr, 1);
    ferry.wait_for_counters(Duration::from_secs(3), |c| {
        c["pooled_upstream_connections"] == 0 && c["upstream_connections"] == 0
    });
    assert!(check_bytes(Some(get(ferry.addr, "/bytes/10/len")), 10).is_ok());
    assert_eq!(new_origin.accepts(), 1);
    assert_eq!(old_origin.accepts(), 1);

    // Reloading the same servers keeps their pooled connections.
    ferry.signal("HUP");
    thread::sleep(Duration::from_millis(200));
    assert!(check_bytes(Some(get(ferry.addr, "/bytes/10/len")), 10).is_ok());
    assert_eq!(new_origin.accepts(), 1, "the pooled connection was reused");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn process_wide_changes_wait_for_a_restart() {
    let origin = Origin::standard();
    let dir = scratch_dir("reload-restart-needed");
    let port = free_port();
    let (ferry, path) = start_generation(&dir, &[port], origin.addr);
    let text = format!(
        "worker_processes 2;\n{}",
        generation_config(&[port], 1, origin.addr)
    );
    std::fs::write(&path, text).unwrap();
    assert_nginx_accepts(&path);
    ferry.signal("HUP");
    // The routes change; the number of workers does not, and the log says so.
    wait_for_generation(ferry.addr, 1);
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(3),
        "a changed \"worker_processes\" takes effect at the next restart"
    ));
    let threads = std::fs::read_dir(format!("/proc/{}/task", ferry.pid()))
        .unwrap()
        .count();
    assert_eq!(threads, 1, "a reload started worker threads");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_opens_the_access_logs_again() {
    let origin = Origin::standard();
    let dir = scratch_dir("reload-logs");
    let (port, log, moved) = (
        free_port(),
        dir.join("access.log"),
        dir.join("access.log.1"),
    );
    let config = |generation: u32| {
        generation_config(&[port], generation, origin.addr)
            .replace("access_log off;", &format!("access_log {};", log.display()))
    };
    let path = dir.join("ferry.conf");
    std::fs::write(&path, config(0)).unwrap();
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    assert_eq!(get(ferry.addr, "/generation").status, 200);
    std::fs::rename(&log, &moved).unwrap();

    std::fs::write(&path, config(1)).unwrap();
    ferry.signal("HUP");
    wait_for_generation(ferry.addr, 1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no new access.log after the reload"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The moved file kept what came before the reload.
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("GET /generation"), "{old}");
    let _ = std::fs::remove_dir_all(dir);
}
