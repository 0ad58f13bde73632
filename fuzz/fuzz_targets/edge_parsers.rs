//! The parsers of what edge modules read from clients and load balancers:
//! the PROXY protocol header, the addresses of X-Forwarded-For, the
//! `Accept-Encoding` gzip test, and Basic credentials against an htpasswd
//! file. None panics or loops, for any bytes; a header's length is never
//! more than the bytes given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, len))) = ferry::proxy_protocol::parse(data) {
        assert!(len <= data.len());
    }
    let _ = ferry::http::realip::parse_addr_port(data);
    let _ = ferry::http::gzip::accepts_gzip(data);
    let mut decoded = Vec::new();
    if let Some(colon) = ferry::auth::credentials(Some(data), &mut decoded) {
        assert!(colon < decoded.len());
        let user = &decoded[..colon];
        let _ = ferry::auth::find_user(data, user);
    }
    // Cheap schemes only: a fuzzer must not spend its time in bcrypt.
    if !ferry::auth::is_costly(data) {
        let _ = ferry::auth::verify(b"password", data);
    }
});
