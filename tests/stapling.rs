//! `ssl_stapling` and the lines that come with it in Mozilla's and
//! certbot's recommended TLS servers (`ssl_stapling_verify`,
//! `ssl_trusted_certificate`, `resolver`), ferry and nginx on the same
//! files: the same load-time decisions and warnings for each kind of
//! certificate, and the same OCSP response stapled from `ssl_stapling_file`.
#![cfg(feature = "tls")]

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use util::pki::Pki;
use util::*;

/// A short DER element (contents under 128 bytes).
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, u8::try_from(contents.len()).unwrap()];
    out.extend_from_slice(contents);
    out
}

/// Authority Information Access naming `url` as the OCSP responder.
fn ocsp_responder(url: &str) -> rcgen::CustomExtension {
    let ocsp = [0x2B, 6, 1, 5, 5, 7, 0x30, 1];
    let access = der(
        0x30,
        &[der(0x06, &ocsp), der(0x86, url.as_bytes())].concat(),
    );
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der(0x30, &access))
}

/// The TLS feature `status_request`: "must staple" (RFC 7633).
fn must_staple() -> rcgen::CustomExtension {
    rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 24],
        der(0x30, &der(0x02, &[5])),
    )
}

/// `NAME-full.pem`: the leaf followed by its CA, as certbot's fullchain.
fn full_chain(pki: &Pki, leaf: &Path) -> PathBuf {
    let path = pki.dir.join(format!(
        "{}-full.pem",
        leaf.file_stem().unwrap().to_string_lossy()
    ));
    let chain = std::fs::read_to_string(leaf).unwrap() + &std::fs::read_to_string(&pki.ca).unwrap();
    std::fs::write(&path, chain).unwrap();
    path
}

/// A whole nginx.conf: one TLS server with `certificate`, `key` and the
/// stapling lines Mozilla's generator gives, then `extra`.
fn site(port: u16, certificate: &Path, key: &Path, extra: &str) -> String {
    format!(
        "events {{}}\nhttp {{\n access_log off;\n\
         server {{\n  listen 127.0.0.1:{port} ssl;\n  server_name localhost;\n\
           ssl_certificate {};\n  ssl_certificate_key {};\n\
           ssl_stapling on;\n  ssl_stapling_verify on;\n\
           resolver 127.0.0.1 [::1]:53 valid=300s;\n  resolver_timeout 5s;\n{extra}\n\
           location / {{ return 200 \"ok\\n\"; }}\n }}\n}}\n",
        certificate.display(),
        key.display()
    )
}

/// What `-t` said of a file: whether it passed, and its `[warn]` and
/// `[emerg]` messages without the program's prefix and the file position.
#[derive(Debug, PartialEq)]
struct Verdict {
    ok: bool,
    messages: Vec<String>,
}

fn verdict(output: std::process::Output) -> Verdict {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let messages = text
        .lines()
        .filter_map(|line| {
            let (level, rest) = ["warn", "emerg"]
                .iter()
                .find_map(|level| Some((*level, line.split_once(&format!("[{level}] "))?.1)))?;
            // nginx puts `PID#TID: ` before the message.
            let message = match rest.split_once(": ") {
                Some((pid, message)) if pid.contains('#') => message,
                _ => rest,
            };
            let message = message.split(" in /").next().unwrap_or(message);
            Some(format!("{level}: {message}"))
        })
        .collect();
    Verdict {
        ok: output.status.success(),
        messages,
    }
}

/// `ferry -t` on `text`, and `nginx -t` when nginx is installed.
fn both_test(dir: &Path, text: &str) -> (Verdict, Option<Verdict>) {
    let path = dir.join("site.conf");
    std::fs::write(&path, text).unwrap();
    let ferry = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let nginx = require_tool("nginx").map(|nginx| {
        Command::new(nginx)
            .args(["-t", "-c"])
            .arg(&path)
            .output()
            .unwrap()
    });
    (verdict(ferry), nginx.map(verdict))
}

#[test]
fn stapling_is_decided_per_certificate_as_nginx_decides() {
    let dir = scratch_dir("stapling-decisions");
    let pki = Pki::new(&dir);
    let names = ["localhost", "127.0.0.1"];
    let (plain, plain_key) = pki.leaf("plain", &names);
    let (https_url, https_key) = pki.leaf_with(
        "https-url",
        &names,
        vec![ocsp_responder("https://ocsp.example/")],
    );
    let (http_url, http_key) = pki.leaf_with(
        "http-url",
        &names,
        vec![ocsp_responder("http://127.0.0.1:9/")],
    );
    let (must, must_key) = pki.leaf_with(
        "must",
        &names,
        vec![ocsp_responder("http://127.0.0.1:9/"), must_staple()],
    );
    let ca_key = pki.ca_key();
    let port = free_port();
    let warn = |text: &str, name: &Path| {
        format!(
            "warn: \"ssl_stapling\" ignored, {text} \"{}\"",
            name.display()
        )
    };
    let same = |label: &str, text: String, expected: Vec<String>| {
        let (ferry, nginx) = both_test(&dir, &text);
        assert_eq!(
            ferry,
            Verdict {
                ok: true,
                messages: expected
            },
            "{label}"
        );
        if let Some(nginx) = nginx {
            assert_eq!(ferry, nginx, "{label}");
        }
    };

    // No issuer: the CA's own self-signed certificate.
    same(
        "self-signed",
        site(port, &pki.ca, &ca_key, ""),
        vec![warn(
            "issuer certificate not found for certificate",
            &pki.ca,
        )],
    );
    // The issuer in the chain (Let's Encrypt's case today): no responder.
    let plain_full = full_chain(&pki, &plain);
    same(
        "full chain",
        site(port, &plain_full, &plain_key, ""),
        vec![warn(
            "no OCSP responder URL in the certificate",
            &plain_full,
        )],
    );
    // The issuer among the trusted certificates instead.
    same(
        "trusted",
        site(
            port,
            &plain,
            &plain_key,
            &format!("ssl_trusted_certificate {};", pki.ca.display()),
        ),
        vec![warn("no OCSP responder URL in the certificate", &plain)],
    );
    let https_full = full_chain(&pki, &https_url);
    same(
        "https responder",
        site(port, &https_full, &https_key, ""),
        vec![format!(
            "warn: \"ssl_stapling\" ignored, invalid URL prefix in OCSP responder \
             \"https://ocsp.example/\" in the certificate \"{}\"",
            https_full.display()
        )],
    );
    // Off, nothing is decided.
    same(
        "off",
        site(port, &plain_full, &plain_key, "").replace("ssl_stapling on;", "ssl_stapling off;"),
        Vec::new(),
    );

    // Where nginx would fetch responses, ferry says it does not.
    let http_full = full_chain(&pki, &http_url);
    let (ferry, nginx) = both_test(&dir, &site(port, &http_full, &http_key, ""));
    assert!(ferry.ok, "{ferry:?}");
    assert_eq!(ferry.messages.len(), 1, "{ferry:?}");
    assert!(
        ferry.messages[0]
            .contains("ferry does not fetch OCSP responses from \"http://127.0.0.1:9/\""),
        "{ferry:?}"
    );
    if let Some(nginx) = nginx {
        assert_eq!(
            nginx,
            Verdict {
                ok: true,
                messages: Vec::new()
            }
        );
    }
    // A certificate that must be stapled would fail every handshake.
    let must_full = full_chain(&pki, &must);
    let (ferry, _) = both_test(&dir, &site(port, &must_full, &must_key, ""));
    assert!(!ferry.ok);
    assert!(
        ferry.messages.iter().any(|m| m.contains("must be stapled")),
        "{ferry:?}"
    );

    // Files that are not there, or not a response, stop both.
    for (label, file) in [
        ("missing", dir.join("nowhere.der")),
        ("not a response", plain.clone()),
    ] {
        let text = site(
            port,
            &plain_full,
            &plain_key,
            &format!("ssl_stapling_file {};", file.display()),
        );
        let (ferry, nginx) = both_test(&dir, &text);
        assert!(!ferry.ok, "{label}: {ferry:?}");
        if let Some(nginx) = nginx {
            assert!(!nginx.ok, "{label}: {nginx:?}");
        }
    }
}

#[test]
fn resolver_lines_are_checked_as_nginx_checks_them() {
    let dir = scratch_dir("stapling-resolver");
    let pki = Pki::new(&dir);
    let (plain, key) = pki.leaf("plain", &["localhost"]);
    let port = free_port();
    let with = |resolver: &str| {
        site(port, &plain, &key, "").replace("resolver 127.0.0.1 [::1]:53 valid=300s;", resolver)
    };
    for (resolver, ok) in [
        ("resolver localhost:5353 ipv6=off;", true),
        ("resolver ::1;", false),
        ("resolver 127.0.0.1 valid=often;", false),
        // Newer than nginx 1.22, which takes it for a host name.
        ("resolver 127.0.0.1 ipv4=off;", false),
        ("resolver nosuchhost.invalid;", false),
    ] {
        let (ferry, nginx) = both_test(&dir, &with(resolver));
        assert_eq!(ferry.ok, ok, "{resolver} {ferry:?}");
        if let Some(nginx) = nginx {
            assert_eq!(nginx.ok, ok, "{resolver} {nginx:?}");
        }
    }
    // With a resolver, nginx looks up a `proxy_pass` host given by
    // variables as it runs; ferry cannot, so it refuses the pair.
    let by_variables = with("resolver 127.0.0.1;").replace(
        "location / { return 200 \"ok\\n\"; }",
        "location / { proxy_pass http://$arg_host; }",
    );
    let (ferry, nginx) = both_test(&dir, &by_variables);
    assert!(!ferry.ok);
    assert!(
        ferry
            .messages
            .iter()
            .any(|m| m.contains("names its server by variables")),
        "{ferry:?}"
    );
    if let Some(nginx) = nginx {
        assert!(nginx.ok, "{nginx:?}");
    }
}

/// An OCSP response for `leaf` from the test CA, made by `openssl ocsp`.
fn ocsp_response(openssl: &str, pki: &Pki, leaf: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let output = Command::new(openssl)
            .args(args)
            .current_dir(&pki.dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let leaf = leaf.to_str().unwrap();
    let ca = pki.ca.to_str().unwrap();
    let ca_key = pki.ca_key();
    let serial = run(&["x509", "-in", leaf, "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    // The responder's database: this serial, valid until 2049.
    std::fs::write(
        pki.dir.join("index.txt"),
        format!("V\t491231235959Z\t\t{serial}\tunknown\t/CN=localhost\n"),
    )
    .unwrap();
    run(&[
        "ocsp",
        "-issuer",
        ca,
        "-cert",
        leaf,
        "-no_nonce",
        "-reqout",
        "request.der",
    ]);
    run(&[
        "ocsp",
        "-index",
        "index.txt",
        "-rsigner",
        ca,
        "-rkey",
        ca_key.to_str().unwrap(),
        "-CA",
        ca,
        "-reqin",
        "request.der",
        "-respout",
        "response.der",
        "-ndays",
        "1",
    ]);
    pki.dir.join("response.der")
}

/// What `openssl s_client -status` printed of the stapled response.
fn stapled(openssl: &str, port: u16) -> String {
    let output = Command::new(openssl)
        .args([
            "s_client",
            "-status",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = text.find("OCSP response:").unwrap_or(0);
    let end = text[start..]
        .find("\n---")
        .map_or(text.len(), |at| start + at);
    text[start..end].to_string()
}

#[test]
fn a_stapling_file_reaches_the_client_as_nginx_sends_it() {
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let dir = scratch_dir("stapling-file");
    let pki = Pki::new(&dir);
    let (leaf, key) = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    let full = full_chain(&pki, &leaf);
    let response = ocsp_response(&openssl, &pki, &leaf);
    let body = |port: &str| {
        let text = site(
            0,
            &full,
            &key,
            &format!("ssl_stapling_file {};", response.display()),
        );
        let server = text.split_once("http {\n access_log off;\n").unwrap().1;
        let server = server.strip_suffix("}\n").unwrap();
        server.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
    };
    let (ferry, _) = Ferry::start_config("stapling-file", &body("PORT"));
    let from_ferry = stapled(&openssl, ferry.addr.port());
    assert!(
        from_ferry.contains("OCSP Response Status: successful"),
        "{from_ferry}"
    );
    assert!(from_ferry.contains("Cert Status: good"), "{from_ferry}");
    // Without the file: nothing stapled, as nginx for this certificate.
    let (unstapled, _) = Ferry::start_config(
        "stapling-none",
        &body("PORT").replace(&format!("ssl_stapling_file {};", response.display()), ""),
    );
    assert_eq!(
        stapled(&openssl, unstapled.addr.port()).lines().next(),
        Some("OCSP response: no response sent")
    );
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(&nginx, "stapling-file", &body(&port.to_string()), port);
        assert_eq!(from_ferry, stapled(&openssl, nginx.port));
    }
}
