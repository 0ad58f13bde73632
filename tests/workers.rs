//! `worker_processes 2`: two event loops on one port (SO_REUSEPORT), both
//! serving, counted together by stub_status and apart by the Prometheus
//! page, and both reached by reload and shutdown.

mod util;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use util::*;

const CONNECTIONS: usize = 200;

fn config(port: u16, generation: u32, upstream: SocketAddr) -> String {
    format!(
        "worker_processes 2;\nevents {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n\
         \x20   location = /status {{ stub_status; }}\n\
         \x20   location = /generation {{ return 200 \"generation {generation}\\n\"; }}\n\
         \x20   location / {{ proxy_pass http://{upstream}; }}\n  }}\n}}\n"
    )
}

fn start(dir: &Path, upstream: SocketAddr) -> (Ferry, PathBuf, u16) {
    let path = dir.join("ferry.conf");
    let port = free_port();
    std::fs::write(&path, config(port, 0, upstream)).unwrap();
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    (ferry, path, port)
}

fn get(addr: SocketAddr, target: &str) -> Response {
    request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    )
}

/// Each worker's `ferry_worker_…_total` samples.
fn per_worker(page: &str, metric: &str) -> Vec<u64> {
    (0..2)
        .map(|worker| {
            let name = format!("{metric}{{worker=\"{worker}\"}} ");
            page.lines()
                .find_map(|l| l.strip_prefix(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{page}"))
        })
        .collect()
}

#[test]
fn two_workers_share_the_port_and_the_counts() {
    let origin = Origin::standard();
    let dir = scratch_dir("workers-share");
    let (ferry, _, _) = start(&dir, origin.addr);
    let threads = ferry_threads(ferry.pid());
    assert!(
        threads
            .iter()
            .filter(|(name, _)| name.starts_with("ferry-worker"))
            .count()
            == 2,
        "{threads:?}"
    );

    for _ in 0..CONNECTIONS {
        assert_eq!(get(ferry.addr, "/bytes/100/len").status, 200);
    }
    // The kernel spreads connections over both workers' sockets.
    let page = get(ferry.addr, "/status?format=prometheus").text();
    let accepted = per_worker(&page, "ferry_worker_connections_accepted_total");
    assert!(
        accepted.iter().all(|&n| n > 0),
        "one worker idle: {accepted:?}"
    );
    assert_eq!(accepted.iter().sum::<u64>(), CONNECTIONS as u64 + 1);

    // stub_status adds the workers up: every connection so far, this one
    // the only one open.
    // A worker may not have seen the last client's close yet when another
    // answers: asked again (each asking is one more connection) until it has.
    let mut page = String::new();
    for attempt in 0..50 {
        let total = CONNECTIONS + 2 + attempt;
        page = get(ferry.addr, "/status").text();
        let expected = format!(
            "Active connections: 1 \nserver accepts handled requests\n {total} {total} {total} \n\
             Reading: 0 Writing: 1 Waiting: 0 \n"
        );
        if page == expected {
            break;
        }
        assert!(attempt < 49, "{page}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(page.starts_with("Active connections: 1 "), "{page}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reload_and_quit_reach_every_worker() {
    let origin = Origin::standard();
    let dir = scratch_dir("workers-signals");
    let (mut ferry, path, port) = start(&dir, origin.addr);

    // Idle keep-alive connections, spread over both workers.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut reader = BufReader::new(ferry.connect());
        reader
            .get_mut()
            .write_all(b"GET /generation HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, "GET").unwrap();
        assert_eq!(response.text(), "generation 0\n");
        idle.push(reader);
    }
    let before = per_worker(
        &get(ferry.addr, "/status?format=prometheus").text(),
        "ferry_worker_requests_total",
    );

    std::fs::write(&path, config(port, 1, origin.addr)).unwrap();
    ferry.signal("HUP");
    assert!(
        ferry.wait_for_stderr_count(Duration::from_secs(5), "configuration reloaded", 2),
        "a worker did not reload"
    );
    // Every connection, new or kept, on either worker, sees the new routes.
    for _ in 0..50 {
        assert_eq!(get(ferry.addr, "/generation").text(), "generation 1\n");
    }
    for reader in &mut idle {
        reader
            .get_mut()
            .write_all(b"GET /generation HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(reader, "GET").unwrap().text(),
            "generation 1\n"
        );
    }
    let after = per_worker(
        &get(ferry.addr, "/status?format=prometheus").text(),
        "ferry_worker_requests_total",
    );
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "both workers served after the reload: {before:?} -> {after:?}"
    );

    // Quit: every worker closes its idle connections and stops listening,
    // and the process exits 0.
    ferry.signal("QUIT");
    for reader in &mut idle {
        assert!(closed_within(reader.get_mut(), Duration::from_secs(3)));
    }
    assert_eq!(ferry.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(TcpStream::connect_timeout(&ferry.addr, Duration::from_millis(500)).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stop_ends_every_worker_at_once() {
    let origin = Origin::standard();
    let dir = scratch_dir("workers-stop");
    let (mut ferry, _, _) = start(&dir, origin.addr);
    // A download under way does not hold a fast shutdown back.
    let mut download = ferry.connect();
    download
        .write_all(b"GET /bytes/1073741824/len HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    ferry.signal("TERM");
    assert_eq!(ferry.wait_exit(Duration::from_secs(2)), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// A process's threads: each one's name and its /proc directory.
fn ferry_threads(pid: u32) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            Some((name.trim().to_string(), path))
        })
        .collect()
}

#[test]
fn graceful_quit_waits_for_every_workers_downloads() {
    const SIZE: u64 = 16 << 20;
    let origin = Origin::standard();
    let dir = scratch_dir("workers-quit-downloads");
    let (mut ferry, _, _) = start(&dir, origin.addr);

    // Downloads the client does not read yet, until each worker holds one:
    // `?connections` lists the connections of the worker that answers.
    let mut downloads: Vec<(u16, TcpStream)> = Vec::new();
    let mut holders = [false, false];
    for _ in 0..40 {
        let mut stream = ferry.connect();
        stream
            .write_all(format!("GET /bytes/{SIZE}/len HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        downloads.push((stream.local_addr().unwrap().port(), stream));
        thread::sleep(Duration::from_millis(50));
        for _ in 0..10 {
            let page = get(ferry.addr, "/status?connections").text();
            let worker = usize::from(page.starts_with("# worker 1"));
            let holds = downloads.iter().any(|(port, _)| {
                page.lines()
                    .any(|l| l.contains(&format!(":{port} ")) && l.contains("Forwarding"))
            });
            holders[worker] |= holds;
        }
        if holders == [true, true] {
            break;
        }
    }
    assert_eq!(
        holders,
        [true, true],
        "the downloads never spread over both workers"
    );

    ferry.signal("QUIT");
    thread::sleep(Duration::from_millis(300));
    assert!(ferry.is_running(), "exited with downloads under way");
    // Every download completes, whole, on both workers.
    let results = within(Duration::from_secs(60), move || {
        downloads
            .into_iter()
            .map(|(_, stream)| {
                let mut reader = BufReader::new(stream);
                let (status, _) = read_head(&mut reader).unwrap();
                let (received, hash) = hash_until_closed(&mut reader, (0, Hash::default()));
                (status, received, hash)
            })
            .collect::<Vec<_>>()
    });
    for (status, received, hash) in results {
        assert_eq!((status, received), (200, SIZE));
        assert_eq!(hash, Hash::of_pattern(SIZE));
    }
    assert_eq!(ferry.wait_exit(Duration::from_secs(5)), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// The CPUs in a `Cpus_allowed_list` line of /proc/…/status (`0-1,4`).
fn allowed_cpus(status: &str) -> Vec<u32> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split(',')
        .flat_map(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            low.parse::<u32>().unwrap()..=high.parse::<u32>().unwrap()
        })
        .collect()
}

#[test]
fn worker_cpu_affinity_auto_gives_each_worker_its_cpu() {
    let origin = Origin::standard();
    let dir = scratch_dir("workers-affinity");
    let path = dir.join("ferry.conf");
    let text = format!(
        "worker_cpu_affinity auto;\n{}",
        config(free_port(), 0, origin.addr)
    );
    std::fs::write(&path, text).unwrap();
    assert_nginx_accepts(&path);
    let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
    assert_eq!(get(ferry.addr, "/generation").status, 200);

    // As nginx binds: worker N on the Nth CPU this process may use.
    let ours = allowed_cpus(&std::fs::read_to_string("/proc/self/status").unwrap());
    let threads = ferry_threads(ferry.pid());
    for worker in 0..2 {
        let (_, task) = threads
            .iter()
            .find(|(name, _)| *name == format!("ferry-worker-{worker}"))
            .unwrap_or_else(|| panic!("no thread ferry-worker-{worker}: {threads:?}"));
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        assert_eq!(
            allowed_cpus(&status),
            [ours[worker % ours.len()]],
            "worker {worker}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
