//! Chapter 7: one request through ferry's real code (docs/learn/07-reading-ferry.md).
//!
//! Runs ferry's own event loop in this process (the library, not the
//! binary), in front of the seed's origin, sends one request, and prints
//! each line ferry logs at trace level with the place in src/ that wrote
//! it. Run it with `cargo run --example ch7_reading_ferry`.

use std::io::{Read, Write};
use std::sync::{mpsc, Mutex};

use ferry::control::Command;
use ferry::event_loop::{EventLoop, WorkerSetup};

/// Where each kind of trace line is written: what the line contains, the
/// format string in the source, the file and the function (the first row
/// that matches a line wins). The test checks each row against src/.
const GUIDE: &str = "\
loop turn                    | loop turn {}                    | src/event_loop/mod.rs           | turn
new connection from          | new connection from {peer}      | src/event_loop/mod.rs           | accept
 ready                       | {} ready{}                      | src/event_loop/mod.rs           | turn
 -> *                        | -> * {n}B                       | src/connection/reading.rs       | step_reading
request 1 from               | request {} from {}              | src/connection/starting.rs      | start_exchange
/upstream connecting to      | /upstream connecting to {}      | src/connection/upstream_side.rs | connect_upstream
/upstream connected to       | /upstream connected to {}       | src/connection/upstream_side.rs | step_connecting
 * ->                        | * -> {n}B                       | src/connection/forwarding.rs    | step_forwarding
 * <-                        | * <- {n}B                       | src/connection/forwarding.rs    | step_forwarding
 <- *                        | <- * {n}B                       | src/connection/forwarding.rs    | write_client
back to the idle pool        | /upstream back to the idle pool | src/connection/upstream_side.rs | upstream_done
keeping the connection alive | keeping the connection alive    | src/connection/finishing.rs     | finish_exchange
client closed the connection | client closed the connection    | src/connection/reading.rs       | step_reading
 closed                      | #{slot} closed                  | src/event_loop/mod.rs           | drive
 ->                          | {from} -> {}                    | src/connection/mod.rs           | set_phase";

/// The rows of `GUIDE`: (needle, format string, file, function). A
/// needle's leading space is kept (` -> *` is not `-> *` inside `<- *`).
fn guide() -> impl Iterator<Item = [&'static str; 4]> {
    GUIDE.lines().map(|row| {
        let mut cells = row.split('|');
        let mut next = |trim_start: bool| {
            let cell = cells.next().unwrap_or("").trim_end();
            let cell = if trim_start { cell.trim_start() } else { cell };
            cell.strip_suffix(' ').unwrap_or(cell)
        };
        let needle = next(false);
        [needle, next(true), next(true), next(true)]
    })
}

/// Keeps ferry's log lines (ferry logs through the `log` facade).
struct Collect;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Collect {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("ferry")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            LINES.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Runs ferry's loop on a thread, proxies one request to the seed's
/// origin, stops the loop; ferry's log lines.
fn trace_one_request() -> Vec<String> {
    let _ = log::set_logger(&Collect);
    log::set_max_level(log::LevelFilter::Trace);
    let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = ferry::config::Config::simple(vec!["127.0.0.1:0".parse().unwrap()], origin);
    config.http.access_log = ferry::config::AccessLogTarget::Off;
    let (commands, receiver) = mpsc::channel();
    // A loop is not `Send` (it holds `Rc`s): it is made on its own thread,
    // which reports where it listens and how to wake it.
    let (started, bound) = mpsc::channel();
    let running = std::thread::spawn(move || {
        let mut event_loop =
            EventLoop::bind_worker(config, receiver, WorkerSetup::single()).unwrap();
        started
            .send((event_loop.local_addrs()[0], event_loop.waker().unwrap()))
            .unwrap();
        event_loop.run()
    });
    let (addr, waker) = bound.recv().unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut page = Vec::new();
    let mut buf = [0u8; 4096];
    while !page.ends_with(b"</html>\n") {
        let n = client.read(&mut buf).unwrap();
        page.extend_from_slice(&buf[..n]);
    }
    drop(client);
    std::thread::sleep(std::time::Duration::from_millis(100));
    commands.send(Command::Stop).unwrap();
    waker.wake().unwrap();
    running.join().unwrap().unwrap();
    std::mem::take(&mut *LINES.lock().unwrap())
}

/// The GUIDE row for a line (the first that matches): file and function.
fn place(line: &str) -> Option<(&'static str, &'static str)> {
    guide()
        .find(|[needle, ..]| line.contains(needle))
        .map(|[_, _, file, function]| (file, function))
}

/// Each line with the place in src/ that wrote it.
fn annotated(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| match place(line) {
            Some((file, function)) => format!("{line:<48} {file}: {function}"),
            None => line.clone(),
        })
        .collect()
}

fn main() {
    for line in annotated(&trace_one_request()) {
        println!("{line}");
    }
}

#[cfg(test)]
#[path = "quoted.rs"]
mod quoted;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row's format string is in the function the guide names, so
    /// the guide cannot point at code that moved.
    #[test]
    fn the_guide_points_where_the_code_is() {
        for [_, literal, file, function] in guide() {
            let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path).unwrap();
            let start = source
                .find(&format!("fn {function}("))
                .unwrap_or_else(|| panic!("no fn {function} in {file}"));
            let rest = &source[start + 3..];
            let end = rest
                .find("\n    fn ")
                .into_iter()
                .chain(rest.find("\n    pub"))
                .chain(rest.find("\nfn "))
                .min()
                .unwrap_or(rest.len());
            assert!(
                rest[..end].contains(literal),
                "{literal:?} is not in {file}: {function}"
            );
        }
    }

    /// Every line one request makes has a place in the guide, the request
    /// went through the steps the chapter walks, and the chapter quotes
    /// them (numbers masked; `loop turn` and `ready` lines left out: how
    /// the kernel batches events varies).
    #[test]
    fn one_request_is_traced_through_the_guide() {
        let lines = trace_one_request();
        let steady = |line: &str| !line.starts_with("loop turn") && !line.contains(" ready ");
        let page = include_str!("07-reading-ferry.md");
        let printed = annotated(&lines);
        super::quoted::assert_quoted(page, &printed, super::quoted::numbers_masked, steady);
        for line in &lines {
            let ferrys_story = line.starts_with('#') || line.starts_with("loop");
            assert!(
                place(line).is_some() || !ferrys_story,
                "no place for {line:?}"
            );
        }
        for step in [
            "new connection from",
            "Idle -> ReadingRequest",
            "/upstream connected to",
            "<- * ",
            "client closed",
        ] {
            assert!(
                lines.iter().any(|l| l.contains(step)),
                "no {step:?} in {lines:#?}"
            );
        }
    }
}
