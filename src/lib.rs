//! ferry: a small, fast reverse proxy like nginx.
//!
//! One single-threaded [`mio`] poll loop ([`event_loop`]) owns a slab of
//! client connections, each a state machine ([`connection`]) that moves bytes
//! between its client and an upstream through fixed-size ring buffers
//! ([`buffer`]), asking pure HTTP/1.1 functions ([`http`]) what the bytes
//! mean. Start with `docs/architecture.md`.

#![forbid(unsafe_code)]

pub mod buffer;
pub mod cli;
pub mod config;
pub mod connection;
pub mod demo;
pub mod error;
pub mod event_loop;
pub mod http;
pub mod log;
pub mod routing;
pub mod timer;
pub mod token;
pub mod upstream;
pub mod variables;
