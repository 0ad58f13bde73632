//! The examples quoted in README.md and docs/ are what ferry really does:
//! each test runs the documented scenario and compares its output with the
//! quoted text, addresses, ports and times masked. When ferry's output
//! changes, these fail until the docs are updated, so the docs cannot go
//! stale. (Figures from the benchmark are written by the benchmark itself
//! into docs/benchmarks.md; `Connection`'s size is checked by a unit test.)

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use util::*;

/// What curl sends for `curl http://localhost:8080/`.
const CURL_GET: &[u8] =
    b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

/// The documented scenario: `ferry demo`, and a client that fetches `/`
/// twice on one connection, then closes it.
fn run_demo_scenario(log_filter: &str) -> Ferry {
    let port = free_port().to_string();
    let origin_port = free_port().to_string();
    let args = ["demo", "--port", &port, "--origin-port", &origin_port];
    fetch_twice(Ferry::start_logging(&args, log_filter))
}

/// The scenario's client: `/` twice on one connection, then goodbye.
fn fetch_twice(ferry: Ferry) -> Ferry {
    let mut client = connect(ferry.addr);
    for _ in 0..2 {
        client.write_all(CURL_GET).unwrap();
        let mut got = Vec::new();
        let mut block = [0u8; 4096];
        while !got.ends_with(b"</html>\n") {
            let n = client.read(&mut block).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&block[..n]);
        }
        // Let the exchange finish (and log) before the next one starts.
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    ferry
}

/// Waits until `ferry`'s stderr has a line containing `needle`.
fn wait_for_line(ferry: &Ferry, needle: &str) {
    assert!(
        ferry.wait_for_stderr(Duration::from_secs(5), needle),
        "no {needle:?} in {:?}",
        ferry.stderr()
    );
}

/// Replaces ports, clock times and durations with placeholders.
fn mask(text: &str) -> String {
    let ports = regex_lite::Regex::new(r"(127\.0\.0\.1|\]):\d+").unwrap();
    let clock = regex_lite::Regex::new(r"\[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d \+0000\]").unwrap();
    let seconds = regex_lite::Regex::new(r"\b\d+\.\d{3}\b").unwrap();
    let text = ports.replace_all(text, "${1}:PORT");
    let text = clock.replace_all(&text, "[TIME]");
    seconds.replace_all(&text, "SECONDS").into_owned()
}

/// The lines of the first ```text block after `heading` in `doc`.
fn quoted_block(doc: &str, heading: &str) -> Vec<String> {
    let after = doc
        .split_once(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))
        .1;
    let block = after
        .split_once("```text\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a text block")
        .0;
    block.lines().map(str::to_string).collect()
}

#[test]
fn the_readme_access_log_line_is_what_ferry_writes() {
    let ferry = run_demo_scenario("warn");
    let started = Instant::now();
    while ferry.access_log().len() < 2 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = ferry.access_log();
    let line = written
        .iter()
        .find(|l| l.contains("\"GET / HTTP/1.1\""))
        .expect("an access log line");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let quoted = quoted_block(&readme, "**Logs.**");
    assert_eq!(quoted.len(), 1, "{quoted:?}");
    assert_eq!(
        mask(&quoted[0]),
        mask(line),
        "README.md's sample line is stale"
    );
}

/// docs/architecture.md, "One request, traced": the trace of the demo
/// scenario at `RUST_LOG=ferry=trace`. Readiness lines (`ready …`) are
/// left out of the comparison: how the kernel batches events into poll
/// wake-ups depends on timing; every other line is deterministic.
#[test]
fn the_architecture_trace_is_what_ferry_writes() {
    let ferry = run_demo_scenario("ferry=trace");
    wait_for_line(&ferry, "#0 closed");
    let stamp = regex_lite::Regex::new(r"^\[\S+Z ").unwrap();
    let normalize = |line: &str| -> Option<String> {
        // `[2026-11-29T05:59:42Z TRACE] #0 …` as printed, `TRACE] #0 …  note`
        // as quoted: keep `LEVEL] message`, drop notes after two spaces.
        let line = stamp.replace(line, "");
        let line = line.split("  ").next().unwrap_or("").trim_end();
        (line.contains("] #0") && !line.contains(" ready ")).then(|| mask(line))
    };
    let printed: Vec<String> = ferry.stderr().iter().filter_map(|l| normalize(l)).collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md"))
        .unwrap();
    let quoted: Vec<String> = quoted_block(&doc, "## One request, traced")
        .iter()
        .filter_map(|l| normalize(l))
        .collect();
    assert_eq!(
        quoted,
        printed,
        "docs/architecture.md's trace is stale; ferry printed:\n{}",
        ferry.stderr().join("\n")
    );
}

/// docs/learn/README.md, "Watching the loop": `ferry demo --explain` (no
/// `RUST_LOG`) tells the scenario's story in the seed's words.
#[test]
fn the_explained_demo_is_what_the_course_quotes() {
    let port = free_port().to_string();
    let origin_port = free_port().to_string();
    let args = [
        "demo",
        "--explain",
        "--port",
        &port,
        "--origin-port",
        &origin_port,
    ];
    let ferry = fetch_twice(Ferry::start_default_log(&args));
    wait_for_line(&ferry, "#0 closed");
    assert!(
        ferry.stderr()[0].starts_with("ferry explains:"),
        "{:?}",
        ferry.stderr()
    );
    let stamp = regex_lite::Regex::new(r"^\s*\d+\.\d{3} ms  ").unwrap();
    let story = |line: &str| -> Option<String> {
        let line = stamp.replace(line, "");
        (line.starts_with("#0") && !line.contains(" ready ")).then(|| mask(&line))
    };
    let told: Vec<String> = ferry.stderr().iter().filter_map(|l| story(l)).collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/learn/README.md"))
        .unwrap();
    let quoted: Vec<String> = quoted_block(&doc, "## Watching the loop")
        .iter()
        .filter_map(|l| story(l))
        .collect();
    assert_eq!(quoted, told, "docs/learn/README.md's story is stale");
    for words in [
        "New connection from",
        "Connected to",
        "Keeping connection alive",
        "Client disconnected",
    ] {
        assert!(
            told.iter().any(|l| l.contains(words)),
            "no {words:?} in {told:#?}"
        );
    }
}

/// Every `loop turn` line quoted in the docs has the form ferry prints.
#[test]
fn quoted_loop_turns_have_the_printed_form() {
    let form = regex_lite::Regex::new(
        r"loop turn \d+: \d+ events? after \d+ ms \((slept with no deadline, until an event|would have slept \d+ ms, until (#\d+'s deadline|a deadline #\d+ no longer has|an idle upstream connection expires)|no sleep: .*)\)$",
    )
    .unwrap();
    for path in ["/docs/architecture.md", "/docs/learn/README.md"] {
        let doc = std::fs::read_to_string(format!("{}{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let turns: Vec<&str> = doc.lines().filter(|l| l.contains("loop turn ")).collect();
        assert!(turns.len() >= 5, "{path}");
        for line in turns {
            let turn = &line[line.find("loop turn ").unwrap()..];
            assert!(form.is_match(turn.trim_end()), "{path}: {turn:?}");
        }
    }
}
