//! The real client address (`set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive`), ferry and nginx on one file: the same
//! `$remote_addr`, `$remote_port` and `$realip_remote_addr`, the same
//! allow/deny decisions, the same `X-Forwarded-For` upstream and the same
//! access log addresses, for X-Forwarded-For chains with trusted and
//! untrusted hops.

mod util;

use std::net::SocketAddr;
use std::path::Path;

use util::{Ferry, Nginx, Origin};

const SHOW: &str = "return 200 \"$remote_addr $realip_remote_addr\\n\";";

/// A proxied location reports what the upstream was told: nginx applies a
/// location's `set_real_ip_from` after the rewrite phase (PREACCESS), so a
/// `return` sees only the server's.
fn up(origin: SocketAddr, seen: &str) -> String {
    format!("proxy_set_header X-Seen \"{seen}\"; proxy_pass http://{origin};")
}

fn site(origin: SocketAddr, log: &Path) -> String {
    let show = up(origin, "$remote_addr $realip_remote_addr");
    let port = up(origin, "$remote_addr [$remote_port]");
    format!(
        "log_format real '$remote_addr $realip_remote_addr \"$request\" $status';\n\
         server {{\n\
           listen 127.0.0.1:PORT;\n\
           access_log {log} real;\n\
           set_real_ip_from 127.0.0.1;\n\
           location /xri/ {{ {SHOW} }}\n\
           location /xri-up/ {{ {show} }}\n\
           location /xff/ {{ real_ip_header X-Forwarded-For; {show} }}\n\
           location /xff-return/ {{ real_ip_header X-Forwarded-For; {SHOW} }}\n\
           location /rec/ {{\n\
             set_real_ip_from 127.0.0.0/8;\n\
             real_ip_header X-Forwarded-For;\n\
             real_ip_recursive on;\n\
             {show}\n\
           }}\n\
           location /port/ {{ real_ip_header X-Forwarded-For; {port} }}\n\
           location /cf/ {{ real_ip_header CF-Connecting-IP; {show} }}\n\
           location /untrusted/ {{\n\
             set_real_ip_from 10.0.0.0/8;\n\
             set_real_ip_from unix:;\n\
             real_ip_header X-Forwarded-For;\n\
             {show}\n\
           }}\n\
           location /admin/ {{\n\
             real_ip_header X-Forwarded-For;\n\
             allow 10.0.0.0/8;\n\
             deny all;\n\
             {show}\n\
           }}\n\
           location /admin-return/ {{\n\
             deny all;\n\
             return 200 \"return comes before deny\\n\";\n\
           }}\n\
           location /up/ {{\n\
             real_ip_header X-Forwarded-For;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             {show}\n\
           }}\n\
         }}\n",
        log = log.display()
    )
}

/// (path, extra fields) asked in turn.
const CASES: &[(&str, &str)] = &[
    ("/xri/", ""),
    ("/xri/", "X-Real-IP: 203.0.113.7\r\n"),
    (
        "/xri/",
        "X-Real-IP: 203.0.113.7\r\nX-Real-IP: 198.51.100.1\r\n",
    ),
    ("/xri/", "X-Real-IP: not-an-address\r\n"),
    ("/xri/", "X-Forwarded-For: 203.0.113.7\r\n"),
    ("/xri-up/", "X-Real-IP: 203.0.113.8\r\n"),
    ("/xff/", "X-Forwarded-For: 9.9.9.9, 127.0.0.2\r\n"),
    ("/xff-return/", "X-Forwarded-For: 9.9.9.9, 127.0.0.2\r\n"),
    // The server's X-Real-IP applied first (nginx's POST_READ phase).
    (
        "/xff/",
        "X-Real-IP: 192.0.2.1\r\nX-Forwarded-For: 9.9.9.9\r\n",
    ),
    (
        "/rec/",
        "X-Forwarded-For: 9.9.9.9, 127.0.0.3, 127.0.0.2\r\n",
    ),
    ("/rec/", "X-Forwarded-For: 127.0.0.9, 127.0.0.3\r\n"),
    ("/rec/", "X-Forwarded-For: 6.6.6.6, junk, 127.0.0.2\r\n"),
    (
        "/rec/",
        "X-Forwarded-For: 5.5.5.5\r\nX-Forwarded-For: 127.0.0.4\r\n",
    ),
    ("/rec/", "X-Forwarded-For: ,, \r\n"),
    ("/port/", "X-Forwarded-For: 1.2.3.4:5678\r\n"),
    ("/port/", "X-Forwarded-For: [2001:db8::1]:443\r\n"),
    ("/port/", "X-Forwarded-For: 2001:db8::2\r\n"),
    ("/cf/", "CF-Connecting-IP: 198.51.100.20\r\n"),
    ("/untrusted/", "X-Forwarded-For: 9.9.9.9\r\n"),
    ("/admin/", "X-Forwarded-For: 10.1.2.3\r\n"),
    ("/admin/", "X-Forwarded-For: 8.8.8.8\r\n"),
    ("/admin/", ""),
    ("/admin-return/", ""),
    ("/up/", "X-Forwarded-For: 9.9.9.9, 10.0.0.1\r\n"),
];

fn answers(addr: SocketAddr, origin: &Origin) -> Vec<String> {
    CASES
        .iter()
        .map(|(path, fields)| {
            let (response, upstream) = util::get_through(addr, origin, path, fields);
            let body = if let Some(request) = upstream {
                let xff = request.header("x-forwarded-for");
                let xff = if path.starts_with("/up/") { xff } else { None };
                format!(
                    "upstream saw {:?} {xff:?}",
                    request.header("x-seen").unwrap_or("")
                )
            } else if response.status == 200 {
                response.text()
            } else {
                String::new()
            };
            format!("{path} {fields:?} -> {} {body}", response.status)
        })
        .collect()
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn real_addresses_are_taken_as_nginx_takes_them() {
    let dir = util::scratch_dir("realip");
    let origin = Origin::standard();
    let ferry_log = dir.join("ferry-access.log");
    let (ferry, _) = Ferry::start_config("realip", &site(origin.addr, &ferry_log));
    let from_ferry = answers(ferry.addr, &origin);
    let expected = [
        "/xri/ \"\" -> 200 127.0.0.1 127.0.0.1\n",
        "/xri/ \"X-Real-IP: 203.0.113.7\\r\\n\" -> 200 203.0.113.7 127.0.0.1\n",
        "/xri/ \"X-Real-IP: 203.0.113.7\\r\\nX-Real-IP: 198.51.100.1\\r\\n\" -> 200 203.0.113.7 127.0.0.1\n",
        "/xri/ \"X-Real-IP: not-an-address\\r\\n\" -> 200 127.0.0.1 127.0.0.1\n",
        "/xri/ \"X-Forwarded-For: 203.0.113.7\\r\\n\" -> 200 127.0.0.1 127.0.0.1\n",
        "/xri-up/ \"X-Real-IP: 203.0.113.8\\r\\n\" -> 200 upstream saw \"203.0.113.8 127.0.0.1\" None",
        "/xff/ \"X-Forwarded-For: 9.9.9.9, 127.0.0.2\\r\\n\" -> 200 upstream saw \"127.0.0.2 127.0.0.1\" None",
        "/xff-return/ \"X-Forwarded-For: 9.9.9.9, 127.0.0.2\\r\\n\" -> 200 127.0.0.1 127.0.0.1\n",
        "/xff/ \"X-Real-IP: 192.0.2.1\\r\\nX-Forwarded-For: 9.9.9.9\\r\\n\" -> 200 upstream saw \"192.0.2.1 127.0.0.1\" None",
        "/rec/ \"X-Forwarded-For: 9.9.9.9, 127.0.0.3, 127.0.0.2\\r\\n\" -> 200 upstream saw \"9.9.9.9 127.0.0.1\" None",
        "/rec/ \"X-Forwarded-For: 127.0.0.9, 127.0.0.3\\r\\n\" -> 200 upstream saw \"127.0.0.9 127.0.0.1\" None",
        "/rec/ \"X-Forwarded-For: 6.6.6.6, junk, 127.0.0.2\\r\\n\" -> 200 upstream saw \"127.0.0.2 127.0.0.1\" None",
        "/rec/ \"X-Forwarded-For: 5.5.5.5\\r\\nX-Forwarded-For: 127.0.0.4\\r\\n\" -> 200 upstream saw \"5.5.5.5 127.0.0.1\" None",
        "/rec/ \"X-Forwarded-For: ,, \\r\\n\" -> 200 upstream saw \"127.0.0.1 127.0.0.1\" None",
        "/port/ \"X-Forwarded-For: 1.2.3.4:5678\\r\\n\" -> 200 upstream saw \"1.2.3.4 [5678]\" None",
        "/port/ \"X-Forwarded-For: [2001:db8::1]:443\\r\\n\" -> 200 upstream saw \"2001:db8::1 [443]\" None",
        "/port/ \"X-Forwarded-For: 2001:db8::2\\r\\n\" -> 200 upstream saw \"2001:db8::2 []\" None",
        "/cf/ \"CF-Connecting-IP: 198.51.100.20\\r\\n\" -> 200 upstream saw \"198.51.100.20 127.0.0.1\" None",
        "/untrusted/ \"X-Forwarded-For: 9.9.9.9\\r\\n\" -> 200 upstream saw \"127.0.0.1 127.0.0.1\" None",
        "/admin/ \"X-Forwarded-For: 10.1.2.3\\r\\n\" -> 200 upstream saw \"10.1.2.3 127.0.0.1\" None",
        "/admin/ \"X-Forwarded-For: 8.8.8.8\\r\\n\" -> 403 ",
        "/admin/ \"\" -> 403 ",
        "/admin-return/ \"\" -> 200 return comes before deny\n",
        "/up/ \"X-Forwarded-For: 9.9.9.9, 10.0.0.1\\r\\n\" -> 200 upstream saw \"10.0.0.1 127.0.0.1\" Some(\"9.9.9.9, 10.0.0.1, 10.0.0.1\")",
    ];
    assert_eq!(from_ferry, expected);
    assert!(ferry.wait_for_log(std::time::Duration::from_secs(2), |_| {
        log_lines(&ferry_log).len() == CASES.len()
    }));
    let nginx_log = dir.join("nginx-access.log");
    let Some((nginx, addr)) = Nginx::beside("realip", &site(origin.addr, &nginx_log)) else {
        return;
    };
    assert_eq!(from_ferry, answers(addr, &origin));
    // nginx writes a line once the request is finalized, which may come
    // after its client has read the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while log_lines(&nginx_log).len() < CASES.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(nginx);
    assert_eq!(log_lines(&ferry_log), log_lines(&nginx_log));
}
