//! `stub_status`: nginx's status page, byte for byte, with numbers that
//! match what the test did. nginx 1.22 answers the same steps with the same
//! text (checked by hand with the same config, `return` in place of the
//! origin).

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use util::*;

/// Sends one keep-alive request on `stream` and returns the response.
fn exchange(reader: &mut BufReader<TcpStream>, method: &str, target: &str) -> Response {
    reader
        .get_mut()
        .write_all(format!("{method} {target} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes())
        .unwrap();
    read_response(reader, method).expect("a response")
}

#[test]
fn stub_status_counts_in_nginx_format() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "stub-status",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location = /basic_status {{ stub_status; }}\n\
             location / {{ proxy_pass http://{}; }} }}",
            origin.addr
        ),
    );
    within(Duration::from_secs(20), move || {
        // A: two proxied requests, then idle (Waiting).
        let mut idle = BufReader::new(ferry.connect());
        for _ in 0..2 {
            assert_eq!(exchange(&mut idle, "GET", "/").status, 200);
        }
        // B: half a request head (Reading).
        let mut reading = ferry.connect();
        reading.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        thread::sleep(Duration::from_millis(300));

        // C: the status request itself counts as Writing.
        let mut status = BufReader::new(ferry.connect());
        let response = exchange(&mut status, "GET", "/basic_status");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type").as_deref(),
            Some("text/plain")
        );
        assert_eq!(
            response.text(),
            "Active connections: 3 \nserver accepts handled requests\n 3 3 4 \n\
             Reading: 1 Writing: 1 Waiting: 1 \n"
        );

        drop(idle);
        drop(reading);
        thread::sleep(Duration::from_millis(300));
        let response = exchange(&mut status, "GET", "/basic_status");
        assert_eq!(
            response.text(),
            "Active connections: 1 \nserver accepts handled requests\n 3 3 5 \n\
             Reading: 0 Writing: 1 Waiting: 0 \n"
        );
        // nginx answers only GET and HEAD here.
        assert_eq!(exchange(&mut status, "POST", "/basic_status").status, 405);
        drop(ferry);
    });
    let _ = std::fs::remove_dir_all(dir);
}
