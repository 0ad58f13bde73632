//! The command line: help, version, and one clear line with exit code 1 for
//! every startup error.

mod util;

use std::net::TcpListener;
use std::process::Command;

fn ferry(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = ferry(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--listen HOST:PORT") && out.contains("ferry demo"));
    assert!(out.contains("-s reload|quit|stop|reopen"), "{out}");
    let (code, out, _) = ferry(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ferry {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_port_in_use_is_one_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = ferry(&["--listen", &addr]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("ferry: cannot listen on {addr}: ")),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_addresses_and_flags_are_one_line_and_exit_1() {
    for args in [
        &["--listen", "localhost"][..],
        &["--upstream", "300.1.1.1:80"],
        &["--client-max-body-size", "lots"],
        &["--no-such-flag"],
        &["--listen"],
    ] {
        let (code, _, err) = ferry(args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ferry: "), "{err}");
    }
}

#[test]
fn default_run_says_what_it_does() {
    let origin = util::Origin::standard();
    let upstream = origin.addr.to_string();
    let ferry = util::Ferry::start_with(&["--listen", "[::1]:0", "--upstream", &upstream]);
    assert!(ferry.addr.is_ipv6());
    let response = util::request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.text(), "hello");
}

/// The seed post proxies to `localhost:3000`: a name works as in nginx.
#[test]
fn upstream_by_name() {
    let origin = util::Origin::standard();
    let upstream = format!("localhost:{}", origin.addr.port());
    let proxy = util::Ferry::start_with(&["--listen", "127.0.0.1:0", "--upstream", &upstream]);
    let response = util::request(proxy.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.text(), "hello");
    let (code, _, err) = ferry(&["--upstream", "localhost"]);
    assert_eq!(code, 1);
    assert!(err.contains("HOST:PORT"), "{err}");
}

/// The start-up line names every server of the group (or, for a big one,
/// its name and size).
#[test]
fn the_start_line_names_the_upstream_group() {
    let (a, b) = (util::dead_address(), util::dead_address());
    let (ferry, dir) = util::Ferry::start_config(
        "start-line",
        &format!(
            "upstream app {{ server {a}; server {b}; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://app; }} }}"
        ),
    );
    let stdout = ferry.stdout();
    assert!(
        stdout
            .iter()
            .any(|l| l.ends_with(&format!("proxying to upstream \"app\" ({a}, {b})"))),
        "{stdout:?}"
    );
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
}
