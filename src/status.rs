//! The status pages of a `stub_status` location, rendered from counters.
//!
//! * no query: nginx's `stub_status` text, byte for byte, summed over the
//!   workers, so exporters and dashboards written for nginx read it;
//! * `?format=prometheus`: the same counters and more (responses by status
//!   class, per-worker counts, per-upstream-server requests, failures,
//!   state and pooled connections) in Prometheus' text format;
//! * `?connections`: one line per live connection of the worker that
//!   answers, with its phase, age, bytes and upstream: the event loop's
//!   slab, made visible.
//!
//! Pure functions over numbers and bytes; the connection that asks gets the
//! counters from [`crate::stats`] and the event loop lists the connections.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::connection::phase::Busy;
use crate::stats::{ServerStats, Totals, WorkerStats};

/// Which page a request to a `stub_status` location asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPage {
    Nginx,
    Prometheus,
    Connections,
}

impl StatusPage {
    /// From the request target's query; anything unknown gets nginx's page,
    /// as nginx ignores the query of a `stub_status` request.
    pub fn from_target(target: &str) -> StatusPage {
        let Some((_, query)) = target.split_once('?') else {
            return StatusPage::Nginx;
        };
        let mut page = StatusPage::Nginx;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (name, value) {
                ("format", "prometheus") => page = StatusPage::Prometheus,
                ("connections", _) => page = StatusPage::Connections,
                _ => {}
            }
        }
        page
    }
}

/// Totals with the asking connection counted as Writing, as nginx counts
/// it; its own count only moves after its step, and `asking_was` says where
/// it is counted now.
fn as_seen_by_request(mut totals: Totals, asking_was: Busy) -> Totals {
    match asking_was {
        Busy::Reading => totals.reading = totals.reading.saturating_sub(1),
        Busy::Writing => totals.writing = totals.writing.saturating_sub(1),
        Busy::Waiting => {}
    }
    totals.writing += 1;
    totals
}

/// nginx's `stub_status` page. ferry never drops an accepted connection for
/// lack of room (it stops accepting instead), so handled equals accepts.
pub fn write_nginx(out: &mut Vec<u8>, totals: Totals, asking_was: Busy) {
    let t = as_seen_by_request(totals, asking_was);
    let waiting = t.active.saturating_sub(t.reading + t.writing);
    let mut text = String::with_capacity(160);
    let _ = write!(
        text,
        "Active connections: {} \nserver accepts handled requests\n {} {} {} \n\
         Reading: {} Writing: {} Waiting: {} \n",
        t.active, t.accepted, t.accepted, t.requests, t.reading, t.writing, waiting
    );
    out.extend_from_slice(text.as_bytes());
}

/// One upstream server over all workers.
struct ServerTotal {
    group: String,
    addr: crate::upstream::ServerAddr,
    requests: u64,
    failures: u64,
    up: bool,
    pooled: u64,
}

/// Adds up each (group, server) over the workers. A server is reported
/// down if any worker has it down: each worker keeps its own failure
/// counts, as nginx's workers do without a shared zone.
fn server_totals(workers: &[Arc<WorkerStats>], now_ms: u64) -> Vec<ServerTotal> {
    let mut totals: Vec<ServerTotal> = Vec::new();
    for worker in workers {
        for server in worker.servers() {
            let ServerStats { group, addr, .. } = &*server;
            let index = match totals
                .iter()
                .position(|t| t.group == *group && t.addr == *addr)
            {
                Some(index) => index,
                None => {
                    totals.push(ServerTotal {
                        group: group.clone(),
                        addr: *addr,
                        requests: 0,
                        failures: 0,
                        up: true,
                        pooled: 0,
                    });
                    totals.len() - 1
                }
            };
            if let Some(total) = totals.get_mut(index) {
                total.requests += server.requests.get();
                total.failures += server.failures.get();
                total.up &= server.is_up(now_ms);
                total.pooled += server.pooled.get();
            }
        }
    }
    totals
}

/// The `limit_req_zone`/`limit_conn_zone` counters, after the others (a
/// zone is shared by every worker: its counts are already totals).
pub fn write_limit_zones(out: &mut Vec<u8>, zones: &[std::sync::Arc<crate::limits::LimitZone>]) {
    use crate::limits::ZoneKind;
    let mut text = String::new();
    let escape = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
    let requests: Vec<_> = zones
        .iter()
        .filter(|z| matches!(z.kind, ZoneKind::Requests { .. }))
        .collect();
    if !requests.is_empty() {
        let _ = writeln!(
            text,
            "# HELP ferry_limit_req_total Requests limit_req refused or delayed, by zone.\n\
             # TYPE ferry_limit_req_total counter"
        );
        for zone in requests {
            let name = escape(&zone.name);
            let _ = writeln!(
                text,
                "ferry_limit_req_total{{zone=\"{name}\",result=\"refused\"}} {}",
                zone.refused.load(std::sync::atomic::Ordering::Relaxed)
            );
            let _ = writeln!(
                text,
                "ferry_limit_req_total{{zone=\"{name}\",result=\"delayed\"}} {}",
                zone.delayed.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    let connections: Vec<_> = zones
        .iter()
        .filter(|z| matches!(z.kind, ZoneKind::Connections { .. }))
        .collect();
    if !connections.is_empty() {
        let _ = writeln!(
            text,
            "# HELP ferry_limit_conn_refused_total Requests limit_conn refused, by zone.\n\
             # TYPE ferry_limit_conn_refused_total counter"
        );
        for zone in connections {
            let _ = writeln!(
                text,
                "ferry_limit_conn_refused_total{{zone=\"{}\"}} {}",
                escape(&zone.name),
                zone.refused.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn write_prometheus(
    out: &mut Vec<u8>,
    workers: &[Arc<WorkerStats>],
    asking_was: Busy,
    now_ms: u64,
) {
    let t = as_seen_by_request(Totals::of(workers), asking_was);
    let mut text = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    let plain = |value: u64| vec![(String::new(), value)];
    // `{state="reading"}`-style samples, one per (value of `label`, number).
    let by = |label: &str, samples: &[(&str, u64)]| -> Vec<(String, u64)> {
        samples
            .iter()
            .map(|(value, n)| (format!("{{{label}=\"{value}\"}}"), *n))
            .collect()
    };
    metric(
        "ferry_connections_active",
        "gauge",
        "Client connections open now.",
        &plain(t.active),
    );
    metric(
        "ferry_connections",
        "gauge",
        "Client connections by what they are doing (nginx's Reading, Writing, Waiting).",
        &by(
            "state",
            &[
                ("reading", t.reading),
                ("writing", t.writing),
                ("waiting", t.active.saturating_sub(t.reading + t.writing)),
            ],
        ),
    );
    metric(
        "ferry_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &plain(t.accepted),
    );
    metric(
        "ferry_connections_handled_total",
        "counter",
        "Client connections handled (ferry never drops an accepted one).",
        &plain(t.accepted),
    );
    // Completed handshakes (of them, resumed sessions) and failed ones.
    let handshakes = |completed, resumed, failed| {
        by(
            "result",
            &[
                ("completed", completed),
                ("resumed", resumed),
                ("failed", failed),
            ],
        )
    };
    metric(
        "ferry_tls_handshakes_total",
        "counter",
        "TLS handshakes with clients: completed (of them, resumed sessions) and failed.",
        &handshakes(t.tls_handshakes, t.tls_resumed, t.tls_failures),
    );
    metric(
        "ferry_upstream_tls_handshakes_total",
        "counter",
        "TLS handshakes with upstream servers: completed (of them, resumed sessions) and failed.",
        &handshakes(
            t.upstream_tls_handshakes,
            t.upstream_tls_resumed,
            t.upstream_tls_failures,
        ),
    );
    metric(
        "ferry_gzip_responses_total",
        "counter",
        "Responses compressed by gzip.",
        &plain(t.gzip_responses),
    );
    metric(
        "ferry_gzip_bytes_total",
        "counter",
        "Bytes of compressed responses before and after gzip (the difference is saved).",
        &by(
            "stage",
            &[("in", t.gzip_bytes_in), ("out", t.gzip_bytes_out)],
        ),
    );
    metric(
        "ferry_auth_failures_total",
        "counter",
        "Requests auth_basic answered 401 (no, unknown or wrong credentials).",
        &plain(t.auth_failures),
    );
    metric(
        "ferry_requests_total",
        "counter",
        "Client requests, counted from their first byte.",
        &plain(t.requests),
    );
    let [r1, r2, r3, r4, r5] = t.responses;
    metric(
        "ferry_responses_total",
        "counter",
        "Responses to clients by status class.",
        &by(
            "class",
            &[
                ("1xx", r1),
                ("2xx", r2),
                ("3xx", r3),
                ("4xx", r4),
                ("5xx", r5),
            ],
        ),
    );
    let per_worker = |get: fn(&WorkerStats) -> u64| -> Vec<(String, u64)> {
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), get(w)))
            .collect()
    };
    metric(
        "ferry_worker_connections_accepted_total",
        "counter",
        "Client connections accepted, by worker.",
        &per_worker(|w| w.accepted.get()),
    );
    metric(
        "ferry_worker_requests_total",
        "counter",
        "Client requests, by worker.",
        &per_worker(|w| w.requests.get()),
    );
    metric(
        "ferry_upstream_connections",
        "gauge",
        "Upstream connections open (in use or idle), and idle in the keep-alive pools.",
        &by(
            "state",
            &[
                ("open", t.upstream_connections),
                ("idle", t.pooled_connections),
            ],
        ),
    );
    let servers = server_totals(workers, now_ms);
    let per_server = |get: fn(&ServerTotal) -> u64| -> Vec<(String, u64)> {
        servers
            .iter()
            .map(|s| {
                (
                    format!(
                        "{{upstream=\"{}\",server=\"{}\"}}",
                        escape_label(&s.group),
                        s.addr
                    ),
                    get(s),
                )
            })
            .collect()
    };
    metric(
        "ferry_upstream_requests_total",
        "counter",
        "Requests sent to an upstream server (each try counts).",
        &per_server(|s| s.requests),
    );
    metric(
        "ferry_upstream_failures_total",
        "counter",
        "Connect errors and timeouts of an upstream server (max_fails failures).",
        &per_server(|s| s.failures),
    );
    metric(
        "ferry_upstream_up",
        "gauge",
        "1 if the server may be picked; 0 if marked down or failed max_fails times within fail_timeout.",
        &per_server(|s| u64::from(s.up)),
    );
    metric(
        "ferry_upstream_pooled_connections",
        "gauge",
        "Idle keep-alive connections to the server's address.",
        &per_server(|s| s.pooled),
    );
    out.extend_from_slice(text.as_bytes());
}

/// Prometheus label values escape backslash, quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One live connection, as the `?connections` page shows it.
pub struct ConnectionLine<'a> {
    pub id: u64,
    pub client: SocketAddr,
    pub phase: &'a str,
    pub age_s: u32,
    pub requests: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream: Option<crate::upstream::ServerAddr>,
}

/// The header of the `?connections` page.
pub fn write_connections_header(out: &mut Vec<u8>, worker: usize, workers: usize, count: usize) {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# worker {worker} of {workers}: {count} connections (each worker lists its own)"
    );
    let _ = writeln!(
        text,
        "{:<8} {:<40} {:<18} {:>8} {:>8} {:>12} {:>12} upstream",
        "id", "client", "phase", "age", "requests", "bytes_in", "bytes_out"
    );
    out.extend_from_slice(text.as_bytes());
}

pub fn write_connection_line(out: &mut Vec<u8>, line: &ConnectionLine<'_>) {
    let mut text = String::new();
    let upstream = line
        .upstream
        .map_or_else(|| "-".to_string(), |addr| addr.to_string());
    let _ = writeln!(
        text,
        "{:<8} {:<40} {:<18} {:>7}s {:>8} {:>12} {:>12} {upstream}",
        line.id,
        line.client.to_string(),
        line.phase,
        line.age_s,
        line.requests,
        line.bytes_in,
        line.bytes_out
    );
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_the_query() {
        assert_eq!(StatusPage::from_target("/status"), StatusPage::Nginx);
        assert_eq!(StatusPage::from_target("/status?"), StatusPage::Nginx);
        assert_eq!(
            StatusPage::from_target("/status?format=prometheus"),
            StatusPage::Prometheus
        );
        assert_eq!(
            StatusPage::from_target("/s?x=1&format=prometheus"),
            StatusPage::Prometheus
        );
        assert_eq!(
            StatusPage::from_target("/status?connections"),
            StatusPage::Connections
        );
        assert_eq!(
            StatusPage::from_target("/status?format=json"),
            StatusPage::Nginx
        );
    }

    #[test]
    fn nginx_page_to_the_byte() {
        let totals = Totals {
            accepted: 7,
            requests: 12,
            active: 3,
            reading: 1,
            writing: 0,
            ..Totals::default()
        };
        let mut out = Vec::new();
        write_nginx(&mut out, totals, Busy::Reading);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Active connections: 3 \nserver accepts handled requests\n 7 7 12 \n\
             Reading: 0 Writing: 1 Waiting: 2 \n"
        );
    }

    #[test]
    fn prometheus_sums_workers_and_servers() {
        let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        for (i, worker) in workers.iter().enumerate() {
            worker.accepted.add(i as u64 + 1);
            worker.count_response(200);
            let server = Arc::new(ServerStats::new("back\"end", addr.into(), false));
            server.requests.add(5);
            if i == 1 {
                server.failures.add(2);
                server.mark_unavailable_until(2_000);
            }
            worker.set_servers(vec![server]);
        }
        let mut out = Vec::new();
        write_prometheus(&mut out, &workers, Busy::Waiting, 1_000);
        let text = String::from_utf8(out).unwrap();
        for line in [
            "ferry_connections_accepted_total 3",
            "ferry_responses_total{class=\"2xx\"} 2",
            "ferry_worker_connections_accepted_total{worker=\"1\"} 2",
            "ferry_connections{state=\"writing\"} 1",
            "ferry_upstream_requests_total{upstream=\"back\\\"end\",server=\"127.0.0.1:9000\"} 10",
            "ferry_upstream_failures_total{upstream=\"back\\\"end\",server=\"127.0.0.1:9000\"} 2",
            "ferry_upstream_up{upstream=\"back\\\"end\",server=\"127.0.0.1:9000\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // After fail_timeout the server is up again.
        let mut out = Vec::new();
        write_prometheus(&mut out, &workers, Busy::Waiting, 2_000);
        let text = String::from_utf8(out).unwrap();
        assert!(text
            .contains("ferry_upstream_up{upstream=\"back\\\"end\",server=\"127.0.0.1:9000\"} 1"));
    }

    #[test]
    fn connection_lines() {
        let mut out = Vec::new();
        write_connections_header(&mut out, 0, 1, 1);
        write_connection_line(
            &mut out,
            &ConnectionLine {
                id: 4,
                client: "127.0.0.1:5000".parse().unwrap(),
                phase: "Forwarding",
                age_s: 3,
                requests: 2,
                bytes_in: 100,
                bytes_out: 2000,
                upstream: Some("127.0.0.1:9000".parse::<SocketAddr>().unwrap().into()),
            },
        );
        let text = String::from_utf8(out).unwrap();
        let line = text.lines().nth(2).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "4",
                "127.0.0.1:5000",
                "Forwarding",
                "3s",
                "2",
                "100",
                "2000",
                "127.0.0.1:9000"
            ]
        );
    }
}
