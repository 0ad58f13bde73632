//! The response head parser and the client head ferry writes from it: never
//! panics, never loops, for any bytes and any request method.
#![no_main]

use ferry::http::framing::BodyKind;
use ferry::http::request::{Method, RequestSummary};
use ferry::http::response::{self, ExtraFields};
use ferry::http::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    let request = RequestSummary {
        method: if flags & 1 == 0 { Method::Get } else { Method::Head },
        version: if flags & 2 == 0 { Version::Http11 } else { Version::Http10 },
        body: BodyKind::Empty,
        keep_alive: flags & 4 == 0,
        expect_continue: false,
        upgrade: flags & 8 != 0,
    };
    let mut headers = ferry::http::header_slots();
    let Ok(Some(head)) = response::parse(bytes, &mut headers, &request, 8192) else {
        return;
    };
    assert!(head.head_len <= bytes.len());
    let (framing, keep_alive) = response::client_framing(&head, &request, flags & 16 != 0);
    let mut out = Vec::new();
    response::write_client_head(&head, &request, framing, keep_alive, &ExtraFields::default(), &mut out);
    assert!(out.ends_with(b"\r\n\r\n"));
});
