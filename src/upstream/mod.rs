//! Upstream sockets: opening them, lending them to client connections, and
//! keeping the idle ones for reuse.
//!
//! Every upstream socket has a *link*: an entry in a slab that says who owns
//! the socket right now (a client connection's slot, or the idle pool). The
//! socket's poll token names the link (see [`crate::token`]), so a socket can
//! move between owners without a single `epoll_ctl`. The socket itself is
//! always owned by exactly one Rust value: the client connection's phase, or
//! the [`pool::IdlePool`].

pub mod pool;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use slab::Slab;

use crate::connection::io::Readiness;
use crate::token::Target;

pub use pool::IdlePool;

/// Who owns an upstream socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In use by the client connection in this slab slot.
    Client(usize),
    /// Waiting in the idle pool.
    Pooled,
}

/// An open (or opening) connection to an upstream server.
#[derive(Debug)]
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub link: usize,
    pub ready: Readiness,
    pub addr: SocketAddr,
    /// Requests this connection has carried, counting the current one.
    pub requests: u32,
    /// When it last went into the idle pool.
    pub idle_since: Instant,
}

/// All upstream sockets: the link table and the idle pool.
pub struct Upstreams {
    links: Slab<Owner>,
    pub idle: IdlePool,
}

impl Upstreams {
    pub fn new(idle_per_server: usize) -> Upstreams {
        Upstreams {
            links: Slab::new(),
            idle: IdlePool::new(idle_per_server),
        }
    }

    /// Starts a non-blocking connect to `addr` for the connection in `slot`.
    /// Completion is reported by a writable event.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        slot: usize,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<UpstreamConn> {
        let mut stream = TcpStream::connect(addr)?;
        let entry = self.links.vacant_entry();
        let link = entry.key();
        registry.register(
            &mut stream,
            Target::Upstream { link }.token(),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Owner::Client(slot));
        Ok(UpstreamConn {
            stream,
            link,
            ready: Readiness::default(),
            addr,
            requests: 0,
            idle_since: now,
        })
    }

    /// An idle pooled connection to `addr`, now owned by `slot`.
    pub fn checkout(&mut self, addr: SocketAddr, slot: usize) -> Option<UpstreamConn> {
        let conn = self.idle.take(addr)?;
        if let Some(owner) = self.links.get_mut(conn.link) {
            *owner = Owner::Client(slot);
        }
        Some(conn)
    }

    /// Returns a connection whose last response ended cleanly on its framing
    /// boundary; closes it instead when the pool for its server is full.
    pub fn check_in(&mut self, mut conn: UpstreamConn, now: Instant) {
        // The socket was drained by the last read; nothing is pending.
        conn.ready.readable = false;
        conn.idle_since = now;
        if let Some(owner) = self.links.get_mut(conn.link) {
            *owner = Owner::Pooled;
        }
        if let Some(rejected) = self.idle.put(conn) {
            debug!("upstream {} pool full, closing", rejected.addr);
            self.close(rejected);
        }
    }

    /// Closes the socket and forgets its link.
    pub fn close(&mut self, conn: UpstreamConn) {
        self.links.try_remove(conn.link);
        // Dropping the stream closes the descriptor, which also removes it
        // from the epoll set: no deregister syscall needed.
        drop(conn);
    }

    pub fn owner(&self, link: usize) -> Option<Owner> {
        self.links.get(link).copied()
    }

    /// An event on an idle pooled socket: the upstream closed it, reset it,
    /// or sent bytes nobody asked for. Either way it can't be reused.
    pub fn on_idle_event(&mut self, link: usize) {
        if let Some(conn) = self.idle.check_after_event(link) {
            debug!(
                "pooled upstream connection to {} closed by the upstream",
                conn.addr
            );
            self.close(conn);
        }
    }

    /// Closes pooled connections idle for `timeout` or longer (the upstream
    /// block's `keepalive_timeout`).
    pub fn expire_idle(&mut self, now: Instant, timeout: Duration) {
        while let Some(conn) = self.idle.take_expired(now, timeout) {
            debug!("idle upstream connection to {} expired", conn.addr);
            self.close(conn);
        }
    }

    /// Upstream sockets open (owned by clients or pooled).
    pub fn open_count(&self) -> usize {
        self.links.len()
    }
}
