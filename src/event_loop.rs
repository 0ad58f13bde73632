//! The poll loop: one `mio::Poll`, the listeners, a slab of connections.
//!
//! Each turn: wait for readiness (or the nearest deadline), read the clock
//! once, then for every event find its owner through the token
//! ([`crate::token`]) and let that connection run its state machine until it
//! waits again. Connections that yielded with work left (fairness cap) are
//! driven again next turn with a zero timeout; connections waiting for a
//! buffer set get one as sets come back; expired deadlines are handled after
//! the events; idle upstream connections expire; the access log is written
//! out last.
//!
//! Accepting stops while `worker_connections` (client and upstream sockets
//! together, as in nginx) are open, and for a short back-off after the
//! process runs out of descriptors; the kernel's backlog holds new clients
//! meanwhile, and accepting resumes by itself.
//!
//! Nothing here interprets bytes: that is the connection's job.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, trace};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::buffer::BufferPool;
use crate::config::Config;
use crate::connection::{Activity, Connection, Context, Counters, Driven};
use crate::log::AccessLog;
use crate::timer::{TimerEntry, Timers};
use crate::token::{Side, SocketName, Target};
use crate::upstream::{Owner, Upstreams};

/// Buffer sets kept for reuse when connections go idle.
const SPARE_BUFFER_SETS: usize = 256;

/// How long accepting pauses after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why ferry could not start.
#[derive(Debug)]
pub enum StartError {
    Poll(io::Error),
    Listen(SocketAddr, io::Error),
    AccessLog(io::Error),
    Signals(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Poll(e) => write!(f, "cannot create the event poll: {e}"),
            StartError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            StartError::Signals(e) => write!(f, "cannot receive signals: {e}"),
        }
    }
}

/// A `Context` for the connection in `$slot`, borrowing the loop's parts
/// field by field (a method could not: the connection is borrowed too).
macro_rules! context {
    ($loop:ident, $slot:expr, $now:expr, $wall_clock:expr, $counters:expr) => {
        Context {
            slot: $slot,
            now: $now,
            wall_clock: $wall_clock,
            registry: $loop.poll.registry(),
            config: &$loop.config,
            buffers: &mut $loop.buffers,
            buffer_waiters: &mut $loop.buffer_waiters,
            upstreams: &mut $loop.upstreams,
            access_log: &mut $loop.access_log,
            counters: $counters,
            activity: &mut $loop.activity,
        }
    };
}

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    /// SIGINT, SIGQUIT, SIGTERM and SIGUSR1, delivered as readiness (never handled
    /// inside a signal handler).
    signals: Signals,
    /// SIGQUIT arrived at this time: no more accepting, closing when the
    /// last connection is done.
    draining_since: Option<Instant>,
    connections: Slab<Connection>,
    upstreams: Upstreams,
    buffers: BufferPool,
    timers: Timers,
    access_log: AccessLog,
    config: Config,
    next_connection_id: u64,
    /// stub_status's requests, Reading and Writing.
    activity: Activity,
    /// Connections that yielded with work left.
    again: Vec<usize>,
    /// Idle connections waiting for a buffer set, in arrival order.
    buffer_waiters: VecDeque<usize>,
    /// Accepting is paused: at the connection limit, or backing off.
    accept_paused: bool,
    accept_resume_at: Option<Instant>,
    last_descriptor_warning: Option<Instant>,
}

impl EventLoop {
    /// Creates the poll and binds every listener; nothing is accepted yet.
    pub fn bind(config: Config) -> Result<EventLoop, StartError> {
        let poll = Poll::new().map_err(StartError::Poll)?;
        let mut listeners = Vec::new();
        for (index, addr) in config.listen.iter().enumerate() {
            let mut listener = listen(*addr).map_err(|e| StartError::Listen(*addr, e))?;
            poll.registry()
                .register(
                    &mut listener,
                    Target::Listener { index }.token(),
                    Interest::READABLE,
                )
                .map_err(|e| StartError::Listen(*addr, e))?;
            listeners.push(listener);
        }
        let mut signals =
            Signals::new([SIGINT, SIGQUIT, SIGTERM, SIGUSR1]).map_err(StartError::Signals)?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)
            .map_err(StartError::Signals)?;
        Ok(EventLoop {
            poll,
            listeners,
            signals,
            draining_since: None,
            connections: Slab::new(),
            upstreams: Upstreams::new(&config),
            buffers: BufferPool::new(
                config.buffer_size,
                SPARE_BUFFER_SETS,
                config.max_buffer_sets,
            ),
            timers: Timers::default(),
            access_log: AccessLog::open(&config.access_logs()).map_err(StartError::AccessLog)?,
            config,
            next_connection_id: 0,
            activity: Activity::default(),
            again: Vec::new(),
            buffer_waiters: VecDeque::new(),
            accept_paused: false,
            accept_resume_at: None,
            last_descriptor_warning: None,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Runs until a shutdown signal's work is done, or the poll fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let wall_clock = SystemTime::now();
            for event in events.iter() {
                match Target::from_token(event.token()) {
                    Some(Target::Listener { index }) => self.accept(index, now),
                    Some(Target::Signals) => {
                        if self.on_signals(now, wall_clock) == Stop::Now {
                            self.access_log.flush();
                            return Ok(());
                        }
                    }
                    Some(Target::Client { slot }) => {
                        if let Some(connection) = self.connections.get_mut(slot) {
                            trace!(
                                "{} ready{}",
                                SocketName(slot, Side::Client),
                                EventFlags(event)
                            );
                            connection.on_client_event(event);
                            self.drive(slot, now, wall_clock);
                        }
                    }
                    Some(Target::Upstream { link }) => match self.upstreams.owner(link) {
                        Some(Owner::Client(slot)) => {
                            if let Some(connection) = self.connections.get_mut(slot) {
                                trace!(
                                    "{} ready{}",
                                    SocketName(slot, Side::Upstream),
                                    EventFlags(event)
                                );
                                connection.on_upstream_event(event);
                                self.drive(slot, now, wall_clock);
                            }
                        }
                        Some(Owner::Pooled) => self.upstreams.on_idle_event(link),
                        None => {}
                    },
                    None => error!("event for an unknown token {:?}", event.token()),
                }
            }
            for slot in std::mem::take(&mut self.again) {
                self.drive(slot, now, wall_clock);
            }
            self.expire_deadlines(now, wall_clock);
            self.upstreams.expire_idle(now);
            self.hand_out_buffers(now, wall_clock);
            self.resume_accepting(now);
            self.access_log.flush();
            if self.draining_since.is_some() && self.connections.is_empty() {
                info!("graceful shutdown complete");
                return Ok(());
            }
            if self.shutdown_deadline().is_some_and(|at| at <= now) {
                info!(
                    "worker_shutdown_timeout: closing {} connections still open",
                    self.connections.len()
                );
                return Ok(());
            }
        }
    }

    /// SIGTERM and SIGINT stop at once (nginx's fast shutdown); SIGQUIT
    /// stops accepting, closes idle connections and lets the others finish
    /// their exchange (graceful shutdown); SIGUSR1 reopens the access logs.
    fn on_signals(&mut self, now: Instant, wall_clock: SystemTime) -> Stop {
        let mut graceful = false;
        for signal in self.signals.pending() {
            match signal {
                SIGTERM | SIGINT => {
                    let name = if signal == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    info!(
                        "{name}: shutting down now, closing {} connections",
                        self.connections.len()
                    );
                    return Stop::Now;
                }
                SIGQUIT => graceful = true,
                SIGUSR1 => {
                    info!("SIGUSR1: reopening the access log files");
                    self.access_log.reopen();
                }
                _ => {}
            }
        }
        if !graceful || self.draining_since.is_some() {
            return Stop::NotYet;
        }
        info!(
            "SIGQUIT: shutting down gracefully, {} connections to finish",
            self.connections.len()
        );
        self.draining_since = Some(now);
        for listener in &mut self.listeners {
            let _ = self.poll.registry().deregister(listener);
        }
        // Closing the listening sockets makes new connections fail at once
        // instead of waiting in a backlog nobody will accept from.
        self.listeners.clear();
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(connection) = self.connections.get_mut(slot) else {
                continue;
            };
            let mut ctx = context!(self, slot, now, wall_clock, Counters::default());
            if connection.drain(&mut ctx) {
                self.connections.remove(slot);
            }
        }
        Stop::NotYet
    }

    /// When a graceful shutdown stops waiting (`worker_shutdown_timeout`).
    fn shutdown_deadline(&self) -> Option<Instant> {
        Some(self.draining_since? + self.config.shutdown_timeout?)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        // Rounded up to the next millisecond: epoll cannot wait less, and
        // waking a hair early would spin until the deadline.
        let pool_expiry = self.upstreams.idle.next_expiry();
        [
            self.timers.next_deadline(),
            pool_expiry,
            self.accept_resume_at,
            self.shutdown_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    /// Sockets open now, counted as nginx counts `worker_connections`.
    fn open_sockets(&self) -> usize {
        self.connections.len() + self.upstreams.open_count()
    }

    fn accept(&mut self, index: usize, now: Instant) {
        if self.accept_paused {
            return;
        }
        loop {
            if self.open_sockets() >= self.config.worker_connections {
                debug!(
                    "{} worker_connections reached; accepting paused",
                    self.config.worker_connections
                );
                self.accept_paused = true;
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.accept_failed(&e, now);
                    return;
                }
            };
            let entry = self.connections.vacant_entry();
            let slot = entry.key();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Target::Client { slot }.token(),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                error!("cannot register a client socket: {e}");
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                debug!("#{slot} TCP_NODELAY: {e}");
            }
            self.next_connection_id += 1;
            debug!("#{slot} new connection from {peer}");
            let connection = entry.insert(Connection::new(
                self.next_connection_id,
                stream,
                peer,
                now,
                index,
                &self.config,
            ));
            // The first request must arrive within client_header_timeout.
            if let Some(at) = connection.deadline(&self.config) {
                connection.scheduled = Some(at);
                self.timers.schedule(TimerEntry {
                    at,
                    slot,
                    id: connection.id,
                });
            }
        }
    }

    /// accept() failed: out of descriptors (EMFILE, ENFILE) or memory, or a
    /// connection aborted before we took it. Back off briefly instead of
    /// spinning on a listener that stays readable, and say so at most once a
    /// second.
    fn accept_failed(&mut self, error: &io::Error, now: Instant) {
        if error.kind() == io::ErrorKind::ConnectionAborted {
            return;
        }
        let quiet = self
            .last_descriptor_warning
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1));
        if !quiet {
            error!("accept() failed: {error}; pausing accepting for {ACCEPT_BACKOFF:?}");
            self.last_descriptor_warning = Some(now);
        }
        self.accept_paused = true;
        self.accept_resume_at = Some(now + ACCEPT_BACKOFF);
    }

    /// Accepting resumes when the back-off is over and there is room under
    /// `worker_connections`. The listeners' readiness edge was consumed while
    /// paused, so their backlogs are drained here rather than on an event.
    fn resume_accepting(&mut self, now: Instant) {
        if !self.accept_paused {
            return;
        }
        if self.accept_resume_at.is_some_and(|at| at > now) {
            return;
        }
        if self.open_sockets() >= self.config.worker_connections {
            return;
        }
        self.accept_paused = false;
        self.accept_resume_at = None;
        for index in 0..self.listeners.len() {
            self.accept(index, now);
        }
    }

    /// Gives buffer sets that came back to the connections waiting for one.
    fn hand_out_buffers(&mut self, now: Instant, wall_clock: SystemTime) {
        while self.buffers.has_room() {
            let Some(slot) = self.buffer_waiters.pop_front() else {
                return;
            };
            self.drive(slot, now, wall_clock);
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            connections: self.connections.len(),
            upstream_connections: self.upstreams.open_count(),
            pooled_upstream_connections: self.upstreams.idle.len(),
            buffer_sets_lent: self.buffers.lent(),
            timers: self.timers.len(),
            accepted: self.next_connection_id,
        }
    }

    /// Lets the connection in `slot` run, then files it: removed if closed,
    /// queued if it yielded, its deadline scheduled otherwise.
    fn drive(&mut self, slot: usize, now: Instant, wall_clock: SystemTime) {
        let counters = self.counters();
        let Some(connection) = self.connections.get_mut(slot) else {
            return;
        };
        let mut ctx = context!(self, slot, now, wall_clock, counters);
        match connection.drive(&mut ctx) {
            Driven::Closed => {
                self.connections.remove(slot);
                debug!("#{slot} closed");
                return;
            }
            Driven::MoreWork => self.again.push(slot),
            Driven::Waiting => {}
        }
        if let Some(at) = connection.deadline(&self.config) {
            if connection.scheduled.is_none_or(|scheduled| at < scheduled) {
                connection.scheduled = Some(at);
                self.timers.schedule(TimerEntry {
                    at,
                    slot,
                    id: connection.id,
                });
            }
        }
    }

    fn expire_deadlines(&mut self, now: Instant, wall_clock: SystemTime) {
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(connection) = self.connections.get_mut(entry.slot) else {
                continue;
            };
            if connection.id != entry.id || connection.scheduled != Some(entry.at) {
                continue; // stale: closed, or superseded by an earlier entry
            }
            connection.scheduled = None;
            match connection.deadline(&self.config) {
                Some(at) if at <= now => {
                    let mut ctx = context!(self, entry.slot, now, wall_clock, Counters::default());
                    connection.on_deadline(&mut ctx);
                    self.drive(entry.slot, now, wall_clock);
                }
                Some(_) | None => {
                    // Moved later (or gone): re-file at the real deadline.
                    self.drive(entry.slot, now, wall_clock);
                }
            }
        }
    }
}

/// nginx's default listen backlog on Linux: clients beyond
/// `worker_connections` wait here until ferry accepts them.
const LISTEN_BACKLOG: i32 = 511;

/// Binds a non-blocking listener with nginx's backlog and `SO_REUSEADDR`
/// (mio's own `bind` leaves the backlog at 128).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// ` readable writable hup` for the trace log.
struct EventFlags<'a>(&'a mio::event::Event);

impl fmt::Display for EventFlags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event = self.0;
        for (on, name) in [
            (event.is_readable(), " readable"),
            (event.is_writable(), " writable"),
            (event.is_read_closed(), " read-closed"),
            (event.is_write_closed(), " write-closed"),
            (event.is_error(), " error"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// What a batch of signals asks of the loop.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Now,
    NotYet,
}
