//! HTTP/1.x as pure functions over bytes: parse a head, decide its framing
//! and persistence, re-serialize it for the next hop.
//!
//! Nothing in here performs I/O or reads a clock. The connection state machine
//! hands these functions the bytes in its buffers and acts on their answers;
//! see `docs/architecture.md` for the whole journey of a request.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

pub mod browsers;
pub mod date;
pub mod error_page;
mod field_rewrites;
pub mod framing;
pub mod gzip;
pub mod headers;
pub mod host;
pub mod realip;
pub mod request;
pub mod response;
mod upstream_head;

use std::fmt;

/// Most header fields in one head; httparse needs a fixed array and 100 is
/// what common servers allow.
pub const MAX_HEADERS: usize = 100;

/// Room for a head's fields. httparse writes each field it parses, so the
/// room is left uninitialised: no 3 KiB of empty fields written per parse.
pub type HeaderSlots<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh [`HeaderSlots`], at no cost.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// The HTTP/1.x minor version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a head's end is, found without parsing: `\n\r\n` or `\n\n` (a bare
/// LF ending is accepted, see docs/nginx-differences.md). Lets the
/// connection skip re-parsing a head that arrives in pieces until it can be
/// complete; one pass over the bytes not searched yet (and the three before
/// them, where a terminator may have begun).
pub fn head_may_be_complete(buf: &[u8], searched: usize) -> bool {
    let from = searched.saturating_sub(3).min(buf.len());
    let window = buf.get(from..).unwrap_or_default();
    window
        .iter()
        .enumerate()
        .filter(|(_, &byte)| byte == b'\n')
        .any(|(at, _)| {
            matches!(
                window.get(at + 1..),
                Some([b'\n', ..]) | Some([b'\r', b'\n', ..])
            )
        })
}

/// Whether the bytes before the first LF, within `limit`, exist: if not, the
/// start line alone is over the head limit.
pub fn start_line_fits(buf: &[u8], limit: usize) -> bool {
    buf.iter().take(limit).any(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_detection_spans_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(head_may_be_complete(head, 0));
        assert!(!head_may_be_complete(&head[..head.len() - 1], 0));
        // The terminator split across two reads is still found.
        assert!(head_may_be_complete(head, head.len() - 1));
        assert!(head_may_be_complete(b"GET / HTTP/1.0\n\n", 15));
    }
}
