//! ferry: a small, fast reverse proxy like nginx.
//!
//! One single-threaded [`mio`] poll loop ([`event_loop`]) owns a slab of
//! client connections, each a state machine ([`connection`]) that moves bytes
//! between its client and an upstream through fixed-size ring buffers
//! ([`buffer`]), asking pure HTTP/1.1 functions ([`http`]) what the bytes
//! mean. Start with `docs/learn/` (a course from the seed's blocking proxy
//! to this loop) or `docs/architecture.md` (the reference).
//!
//! The HTTP layer is pure and can be used on its own, for example to see
//! what a request head means:
//!
//! ```
//! use ferry::http::{framing::BodyKind, request};
//!
//! let bytes = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
//! let mut headers = ferry::http::header_slots();
//! let head = request::parse(bytes, &mut headers, 8192).unwrap().unwrap();
//! assert_eq!(head.summary.body, BodyKind::Length(5));
//! assert!(head.summary.keep_alive);
//! assert_eq!(&bytes[head.head_len..], b"hello");
//! ```
//!
//! In the course (docs/learn): all of it; docs/learn/07-reading-ferry.md
//! gives the order to read these modules in, bottom-up (no two of them
//! need each other: `tests/layering.rs`).

#![forbid(unsafe_code)]

pub mod auth;
pub mod buffer;
pub mod checksum;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod connection;
pub mod control;
pub mod demo;
pub mod error;
pub mod event_loop;
pub mod files;
pub mod http;
pub mod limits;
pub mod log;
pub mod privileges;
pub mod proxy_protocol;
pub mod routing;
pub mod stats;
pub mod status;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;
pub mod token;
pub mod units;
pub mod upstream;
pub mod variables;
pub mod workers;
