//! Upstream sockets: choosing a server, opening connections, lending them to
//! client connections, and keeping the idle ones for reuse.
//!
//! Every upstream socket has a *link*: an entry in a slab that says who owns
//! the socket right now (a client connection's slot, or the idle pool). The
//! socket's poll token names the link (see [`crate::token`]), so a socket can
//! move between owners without a single `epoll_ctl`. The socket itself is
//! always owned by exactly one Rust value: the client connection's phase, or
//! the [`pool::IdlePool`].
//!
//! Which server of a group gets a request is [`balancer`]'s business; this
//! module keeps the balancer's per-group state next to the sockets, so that
//! "active connections" (for `least_conn`) are counted where sockets are
//! opened and closed.
//!
//! In the course (docs/learn): chapter 4 (one token per socket) and chapter 6
//! (sockets moving between a client and the pool).

pub mod addr;
pub mod balancer;
pub mod group;
pub mod pool;

use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry};
use slab::Slab;

use crate::config::{Config, UpstreamTlsRef};
use crate::connection::io::Readiness;
use crate::connection::transport::Stream;
use crate::stats::{epoch_ms, ServerStats, WorkerStats};
use crate::token::Target;

pub use addr::ServerAddr;
pub use balancer::Tried;
pub use pool::IdlePool;

/// Whether some group of `config` has a server at `addr`.
fn serves(config: &Config, addr: ServerAddr) -> bool {
    config
        .upstreams
        .iter()
        .any(|group| group.servers.iter().any(|server| server.addr == addr))
}

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
    /// Plain TCP, or TLS for `proxy_pass https://`.
    pub stream: Stream,
    pub link: usize,
    pub ready: Readiness,
    /// The group and the server within it (u32: a connection stays small);
    /// its address is the configuration's (see `Upstreams::addr_of`).
    pub group: u32,
    pub server: u32,
    /// Requests this connection has carried, counting the current one.
    pub requests: u32,
}

/// A server chosen for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub group: u32,
    pub server: u32,
    pub addr: ServerAddr,
}

/// All upstream sockets, the idle pool and the balancers' state.
pub struct Upstreams {
    links: Slab<Owner>,
    pub idle: IdlePool,
    /// The balancers of each configuration still in use, the newest last.
    /// Group and server indexes mean something only within one
    /// configuration, so exchanges begun before a reload keep picking,
    /// counting and failing servers in the state of the configuration they
    /// run on, and a reload starts the new groups afresh (as nginx's new
    /// workers do).
    generations: Vec<Balancers>,
    /// This worker's counters; the status pages show the newest
    /// configuration's servers.
    stats: Arc<WorkerStats>,
}

struct Balancers {
    config: Rc<Config>,
    groups: Vec<balancer::GroupState>,
    /// Each group's servers' counters, parallel to `groups`.
    servers: Vec<Vec<Arc<ServerStats>>>,
}

impl Balancers {
    fn new(config: &Rc<Config>) -> Balancers {
        Balancers {
            config: Rc::clone(config),
            groups: config
                .upstreams
                .iter()
                .map(balancer::GroupState::new)
                .collect(),
            servers: config
                .upstreams
                .iter()
                .map(|group| {
                    group
                        .servers
                        .iter()
                        .map(|s| Arc::new(ServerStats::new(&group.name, s.addr, s.down)))
                        .collect()
                })
                .collect(),
        }
    }
}

impl Upstreams {
    pub fn new(config: &Rc<Config>, stats: Arc<WorkerStats>) -> Upstreams {
        let mut upstreams = Upstreams {
            links: Slab::new(),
            idle: IdlePool::default(),
            generations: Vec::new(),
            stats,
        };
        upstreams.add_generation(config);
        upstreams
    }

    fn add_generation(&mut self, config: &Rc<Config>) {
        let balancers = Balancers::new(config);
        self.stats
            .set_servers(balancers.servers.iter().flatten().cloned().collect());
        self.generations.push(balancers);
    }

    /// A reload: new balancers for the new configuration, and the idle
    /// connections to servers it no longer names are closed.
    pub fn reload(&mut self, config: &Rc<Config>) {
        self.add_generation(config);
        while let Some((addr, conn)) = self.idle.take_matching(|addr| !serves(config, addr)) {
            debug!("closing the idle connection to {addr}: no longer configured");
            self.forget_pooled(addr, conn);
        }
        for addr in self.idle.addrs() {
            self.pool_changed(addr);
        }
    }

    /// The counters of server `server` of group `group` of `config`.
    fn server_stats(&self, config: &Config, group: usize, server: usize) -> Option<&ServerStats> {
        self.generations
            .iter()
            .rev()
            .find(|b| std::ptr::eq(&*b.config, config))?
            .servers
            .get(group)?
            .get(server)
            .map(|s| &**s)
    }

    /// The idle connections to `addr` changed: the status pages' count.
    fn pool_changed(&self, addr: ServerAddr) {
        let pooled = self.idle.count(addr) as u64;
        if let Some(newest) = self.generations.last() {
            for server in newest.servers.iter().flatten() {
                if server.addr == addr {
                    server.pooled.set(pooled);
                }
            }
        }
    }

    /// Forgets the balancers of configurations no exchange runs on any more.
    /// Cheap when there was no reload: one length check per loop turn.
    pub fn retire_old_generations(&mut self) -> bool {
        if self.generations.len() < 2 {
            return false;
        }
        let newest = self.generations.len() - 1;
        let mut index = 0;
        self.generations.retain(|balancers| {
            index += 1;
            // Only this list holds it: no connection runs on it.
            index - 1 == newest || Rc::strong_count(&balancers.config) > 1
        });
        self.generations.len() == 1
    }

    /// The balancers of `config` (compared by address: each reload is a new
    /// `Rc`).
    fn groups(&self, config: &Config) -> Option<&Vec<balancer::GroupState>> {
        self.generations
            .iter()
            .rev()
            .find(|b| std::ptr::eq(&*b.config, config))
            .map(|b| &b.groups)
    }

    fn groups_mut(&mut self, config: &Config) -> Option<&mut Vec<balancer::GroupState>> {
        self.generations
            .iter_mut()
            .rev()
            .find(|b| std::ptr::eq(&*b.config, config))
            .map(|b| &mut b.groups)
    }

    fn newest(&self) -> Option<&Rc<Config>> {
        self.generations.last().map(|b| &b.config)
    }

    /// Chooses a server of `group` for a request from `client`, skipping
    /// those in `tried`. `None`: no live upstreams.
    pub fn pick(
        &mut self,
        config: &Config,
        group: usize,
        client: IpAddr,
        key_hash: u32,
        now: Instant,
        tried: Tried,
    ) -> Option<Peer> {
        let (Some(state), Some(definition)) = (
            self.groups_mut(config).and_then(|g| g.get_mut(group)),
            config.upstreams.get(group),
        ) else {
            return None;
        };
        let server = state.pick(definition, client, key_hash, now, tried)?;
        if let Some(stats) = self.server_stats(config, group, server) {
            stats.requests.add(1);
        }
        Some(Peer {
            // Indexes into the configuration, which cannot hold 2^32 of them.
            group: u32::try_from(group).ok()?,
            server: u32::try_from(server).ok()?,
            addr: definition.servers.get(server)?.addr,
        })
    }

    /// Whether some server of `group` not in `tried` could take a request.
    pub fn has_candidate(&self, config: &Config, group: usize, tried: Tried, now: Instant) -> bool {
        match (
            self.groups(config).and_then(|g| g.get(group)),
            config.upstreams.get(group),
        ) {
            (Some(state), Some(definition)) => state.any_available(definition, now, tried),
            _ => false,
        }
    }

    /// Counts a connect error or timeout against the server.
    pub fn failed(&mut self, config: &Config, peer: Peer, now: Instant) {
        let (Some(state), Some(group)) = (
            self.groups_mut(config)
                .and_then(|g| g.get_mut(peer.group as usize)),
            config.upstreams.get(peer.group as usize),
        ) else {
            return;
        };
        let disabled = state.failed(group, peer.server as usize, now);
        let stats = self.server_stats(config, peer.group as usize, peer.server as usize);
        if let Some(stats) = stats {
            stats.failures.add(1);
        }
        let Some(server) = group.servers.get(peer.server as usize).filter(|_| disabled) else {
            return;
        };
        if let Some(stats) = stats {
            let fail_timeout = u64::try_from(server.fail_timeout.as_millis()).unwrap_or(u64::MAX);
            stats.mark_unavailable_until(epoch_ms(SystemTime::now()).saturating_add(fail_timeout));
        }
        warn!(
            "upstream server temporarily disabled: {} in upstream \"{}\"",
            server.name, group.name
        );
    }

    /// The server answered: its failures are forgiven.
    pub fn succeeded(&mut self, config: &Config, peer: Peer) {
        if let Some(stats) = self.server_stats(config, peer.group as usize, peer.server as usize) {
            stats.mark_available();
        }
        if let Some(state) = self
            .groups_mut(config)
            .and_then(|g| g.get_mut(peer.group as usize))
        {
            state.succeeded(peer.server as usize);
        }
    }

    fn count_active(&mut self, config: &Config, group: usize, server: usize, up: bool) {
        if let Some(peer) = self
            .groups_mut(config)
            .and_then(|g| g.get_mut(group))
            .and_then(|g| g.peers.get_mut(server))
        {
            peer.active = if up {
                peer.active + 1
            } else {
                peer.active.saturating_sub(1)
            };
            peer.peak = peer.peak.max(peer.active);
        }
    }

    /// Starts a non-blocking connect to `peer` for the connection in `slot`,
    /// with TLS on it if `tls` says so. Completion is reported by a
    /// writable event; the TLS handshake follows (`step_connecting`).
    pub fn connect(
        &mut self,
        config: &Config,
        peer: Peer,
        slot: usize,
        registry: &Registry,
        tls: Option<&UpstreamTlsRef>,
    ) -> io::Result<UpstreamConn> {
        let entry = self.links.vacant_entry();
        let link = entry.key();
        let token = Target::Upstream { link }.token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        let mut socket = match peer.addr {
            ServerAddr::Inet(addr) => TcpStream::connect(addr)?,
            ServerAddr::Unix(path) => {
                let mut socket = mio::net::UnixStream::connect(path)?;
                registry.register(&mut socket, token, interest)?;
                entry.insert(Owner::Client(slot));
                self.count_active(config, peer.group as usize, peer.server as usize, true);
                return Ok(UpstreamConn {
                    stream: Stream::Unix(socket),
                    link,
                    ready: Readiness::default(),
                    group: peer.group,
                    server: peer.server,
                    requests: 0,
                });
            }
        };
        registry.register(&mut socket, token, interest)?;
        let stream = match tls {
            None => Stream::Plain(socket),
            #[cfg(feature = "tls")]
            Some(tls) => {
                let session = tls.session().map_err(io::Error::other)?;
                Stream::Tls(Box::new(crate::tls::TlsStream::client(
                    socket, session, tls.id,
                )))
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        };
        entry.insert(Owner::Client(slot));
        self.count_active(config, peer.group as usize, peer.server as usize, true);
        Ok(UpstreamConn {
            stream,
            link,
            ready: Readiness::default(),
            group: peer.group,
            server: peer.server,
            requests: 0,
        })
    }

    /// An idle pooled connection to `peer`, made with the TLS settings
    /// `tls_id` names (0: plain TCP), now owned by `slot`.
    pub fn checkout(
        &mut self,
        config: &Config,
        peer: Peer,
        slot: usize,
        tls_id: u64,
    ) -> Option<UpstreamConn> {
        let mut conn = self.idle.take(peer.addr, tls_id)?;
        if let Some(owner) = self.links.get_mut(conn.link) {
            *owner = Owner::Client(slot);
        }
        self.pool_changed(peer.addr);
        // It may have been pooled under an older configuration.
        conn.group = peer.group;
        conn.server = peer.server;
        self.count_active(config, peer.group as usize, peer.server as usize, true);
        Some(conn)
    }

    /// Returns a connection whose last response ended cleanly on its framing
    /// boundary; closes it instead when the pool for its server is full or
    /// it has carried its `keepalive_requests`.
    pub fn check_in(&mut self, config: &Config, mut conn: UpstreamConn, now: Instant) {
        self.count_active(config, conn.group as usize, conn.server as usize, false);
        let group = config.upstreams.get(conn.group as usize);
        let Some((group, server)) =
            group.and_then(|g| Some((g, g.servers.get(conn.server as usize)?)))
        else {
            self.forget(conn);
            return;
        };
        let addr = server.addr;
        let reloaded_away = self
            .newest()
            .is_some_and(|newest| !std::ptr::eq(&**newest, config) && !serves(newest, addr));
        if reloaded_away {
            debug!("upstream {addr} is no longer configured; closing its connection");
            self.forget(conn);
            return;
        }
        if conn.requests >= group.keepalive_requests {
            debug!("upstream connection to {addr} reached keepalive_requests");
            self.forget(conn);
            return;
        }
        // The socket was drained by the last read; nothing is pending.
        conn.ready.readable = false;
        if let Some(owner) = self.links.get_mut(conn.link) {
            *owner = Owner::Pooled;
        }
        let expires_at = now + group.keepalive_timeout;
        let limit = match group.keepalive {
            Some(limit) => limit,
            // ferry's default: keep what the recent peak needed, so a steady
            // load never reconnects; idle ones still expire, and the pool
            // never holds more than half the sockets a worker may open.
            None => self
                .groups_mut(config)
                .and_then(|g| g.get_mut(conn.group as usize))
                .and_then(|g| g.peers.get_mut(conn.server as usize))
                .map_or(0, |peer| {
                    peer.recent_peak(now, group.keepalive_timeout) as usize
                })
                .min(config.worker_connections / 2),
        };
        if let Some(rejected) = self.idle.put(addr, conn, limit, expires_at) {
            debug!("upstream {addr} pool full, closing");
            self.forget(rejected);
        }
        self.pool_changed(addr);
    }

    /// Closes a connection owned by a client connection.
    pub fn close(&mut self, config: &Config, conn: UpstreamConn) {
        self.count_active(config, conn.group as usize, conn.server as usize, false);
        self.forget(conn);
    }

    /// Closes the socket and forgets its link.
    fn forget(&mut self, conn: UpstreamConn) {
        self.links.try_remove(conn.link);
        // Dropping the stream closes the descriptor, which also removes it
        // from the epoll set: no deregister syscall needed.
        drop(conn);
    }

    /// Closes a connection taken out of the idle pool.
    fn forget_pooled(&mut self, addr: ServerAddr, conn: UpstreamConn) {
        self.forget(conn);
        self.pool_changed(addr);
    }

    pub fn owner(&self, link: usize) -> Option<Owner> {
        self.links.get(link).copied()
    }

    /// An event on an idle pooled socket: the upstream closed it, reset it,
    /// or sent bytes nobody asked for. Either way it can't be reused.
    /// A writable-only event says none of that (the send buffer drained
    /// after the last request: the edge comes once per use) and costs no
    /// probe.
    pub fn on_idle_event(&mut self, link: usize, event: &mio::event::Event) {
        let may_be_gone = event.is_readable()
            || event.is_read_closed()
            || event.is_write_closed()
            || event.is_error();
        if !may_be_gone {
            return;
        }
        if let Some((addr, conn)) = self.idle.check_after_event(link) {
            debug!("pooled upstream connection to {addr} closed by the upstream");
            self.forget_pooled(addr, conn);
        }
    }

    /// Closes pooled connections whose `keepalive_timeout` has passed.
    pub fn expire_idle(&mut self, now: Instant) {
        while let Some((addr, conn)) = self.idle.take_expired(now) {
            debug!("idle upstream connection to {addr} expired");
            self.forget_pooled(addr, conn);
        }
    }

    /// Upstream sockets open (owned by clients or pooled).
    pub fn open_count(&self) -> usize {
        self.links.len()
    }
}
