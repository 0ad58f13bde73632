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
//! Commands (from signals, see [`crate::control`]) are carried out here:
//! `reload` swaps in a new configuration without dropping anything,
//! `shut_down_gracefully` drains, a stop returns at once. With
//! `worker_processes N` there are N of these loops, one per thread, each
//! with its own everything.
//!
//! Nothing here interprets bytes: that is the connection's job.
//!
//! In the course (docs/learn): chapter 3 (Poll, tokens, a slab) at full size,
//! and chapter 7, steps 1, 2 and 9.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, trace, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::buffer::BufferPool;
use crate::config::Config;
use crate::connection::phase::ExchangeState;
use crate::connection::{Connection, Context, Driven};
use crate::control::{Command, Control, Reloader};
use crate::http::date::HttpDate;
use crate::log::AccessLog;
use crate::stats::WorkerStats;
use crate::status;
use crate::timer::{LoopClock, TimerEntry, Timers};
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
    /// A worker thread could not be started, or died before it listened.
    Worker(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Poll(e) => write!(f, "cannot create the event poll: {e}"),
            StartError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            StartError::Signals(e) => write!(f, "cannot receive signals: {e}"),
            StartError::Worker(e) => write!(f, "cannot start a worker: {e}"),
        }
    }
}

/// A `Context` for the connection in `$slot`, borrowing the loop's parts
/// field by field (a method could not: the connection is borrowed too).
macro_rules! context {
    ($loop:ident, $slot:expr, $connection:expr, $now:expr, $wall_clock:expr) => {
        Context {
            slot: $slot,
            now: $now,
            now_ms: $loop.clock.now_ms(),
            wall_clock: $wall_clock,
            date: &$loop.date,
            registry: $loop.poll.registry(),
            config: Rc::clone($connection.config()),
            latest: &$loop.config,
            buffers: &mut $loop.buffers,
            buffer_waiters: &mut $loop.buffer_waiters,
            upstreams: &mut $loop.upstreams,
            access_log: &mut $loop.access_log,
            timers: &$loop.timers,
            stats: &$loop.stats,
            workers: &$loop.workers,
            connection_list: None,
            spare_states: &mut $loop.spare_states,
            passwords: &mut $loop.passwords,
            gzip_streams: &mut $loop.gzip_streams,
        }
    };
}

// After `context!`: macros are in scope below their definition only.
mod lifecycle;
mod sleeping;
mod sockets;

use sockets::{listen, resolve};

/// Whether the loop goes on after a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Continue,
    /// Shut down: a signal's work is done.
    Done,
}

/// What a worker needs to know of the others.
pub struct WorkerSetup {
    /// Its position among the workers (0 with one worker).
    pub index: usize,
    /// Every worker's counters; its own at `index`.
    pub stats: Vec<Arc<WorkerStats>>,
    /// Several workers listen on the same addresses (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// Configured address -> the address the first worker bound, so that
    /// a port 0 means one port for every worker.
    pub resolved: Vec<(SocketAddr, SocketAddr)>,
}

impl WorkerSetup {
    /// The only worker.
    pub fn single() -> WorkerSetup {
        WorkerSetup {
            index: 0,
            stats: vec![Arc::default()],
            reuse_port: false,
            resolved: Vec::new(),
        }
    }
}

/// A listening socket and the `listen` address it was configured as (a
/// reload keeps the sockets whose address the new configuration still has).
struct Listener {
    configured: SocketAddr,
    socket: TcpListener,
}

pub struct EventLoop {
    poll: Poll,
    /// In the order of `config.listen`: a listener's token is its position.
    listeners: Vec<Listener>,
    /// Signals or commands, delivered as readiness (see `control`).
    control: Control,
    /// Wakes this loop when a command is sent (several workers only).
    waker: Option<Arc<Waker>>,
    /// SIGQUIT arrived at this time: no more accepting, closing when the
    /// last connection is done.
    draining_since: Option<Instant>,
    connections: Slab<Connection>,
    upstreams: Upstreams,
    buffers: BufferPool,
    timers: Timers,
    access_log: AccessLog,
    /// The newest configuration: new connections and new requests use it.
    /// Connections keep the one their exchange began on.
    config: Rc<Config>,
    next_connection_id: u64,
    /// This worker's counters for the status pages, and every worker's.
    stats: Arc<WorkerStats>,
    workers: Vec<Arc<WorkerStats>>,
    reuse_port: bool,
    resolved: Vec<(SocketAddr, SocketAddr)>,
    /// This turn's time; connection ages count from its start.
    clock: LoopClock,
    /// Its position among the workers.
    index: usize,
    /// Connections that yielded with work left, and the list being driven
    /// (swapped each turn, see `turn`).
    again: Vec<usize>,
    again_spare: Vec<usize>,
    /// Idle connections waiting for a buffer set, in arrival order.
    buffer_waiters: VecDeque<usize>,
    /// Accepting is paused: at the connection limit, or backing off.
    accept_paused: bool,
    accept_resume_at: Option<Instant>,
    last_descriptor_warning: Option<Instant>,
    /// The `Date` field's text, refreshed once per loop turn.
    date: HttpDate,
    /// State boxes of finished exchanges (see `Context::retire`), at most
    /// one per buffer set. Boxes, not values: they are handed out and
    /// taken back as the boxes exchanges own, so none is ever allocated.
    #[allow(clippy::vec_box)]
    spare_states: Vec<Box<ExchangeState>>,
    /// `auth_basic`'s password cache and thread (started when first needed).
    passwords: crate::auth::checker::PasswordChecks,
    /// Compressors kept between `gzip` responses.
    gzip_streams: crate::http::gzip::GzipPool,
    /// Connections whose last write carried `MSG_MORE`, in this turn and in
    /// the one before: a connection gets one more turn for the rest of its
    /// response to arrive, then it is flushed (and always before the loop
    /// sleeps), so a busy loop that never sleeps holds nothing for long
    /// (see `Connection::flush`).
    corked: Vec<usize>,
    corked_before: Vec<usize>,
    /// Poll without sleeping until this moment: events came recently (see
    /// `turn`).
    spin_until: Option<Instant>,
    /// Turns of the loop so far, counted only at trace level (each turn's
    /// line carries its number).
    turns: u64,
}

impl EventLoop {
    /// The only worker: creates the poll, takes the signals and binds
    /// every listener; nothing is accepted yet.
    pub fn bind(config: Config, reload: Reloader) -> Result<EventLoop, StartError> {
        let poll = Poll::new().map_err(StartError::Poll)?;
        let control = Control::signals(reload, &poll).map_err(StartError::Signals)?;
        EventLoop::new(poll, config, control, None, WorkerSetup::single())
    }

    /// One of several workers, steered by commands from the main thread.
    pub fn bind_worker(
        config: Config,
        commands: Receiver<Command>,
        setup: WorkerSetup,
    ) -> Result<EventLoop, StartError> {
        let poll = Poll::new().map_err(StartError::Poll)?;
        let waker =
            Waker::new(poll.registry(), Target::Commands.token()).map_err(StartError::Signals)?;
        EventLoop::new(
            poll,
            config,
            Control::Commands(commands),
            Some(Arc::new(waker)),
            setup,
        )
    }

    fn new(
        poll: Poll,
        config: Config,
        control: Control,
        waker: Option<Arc<Waker>>,
        setup: WorkerSetup,
    ) -> Result<EventLoop, StartError> {
        let mut listeners = Vec::new();
        for (index, configured) in config.listen.iter().enumerate() {
            let addr = configured.addr;
            let bind_to = resolve(&setup.resolved, addr);
            let mut socket = listen(bind_to, setup.reuse_port, &configured.options)
                .map_err(|e| StartError::Listen(addr, e))?;
            poll.registry()
                .register(
                    &mut socket,
                    Target::Listener { index }.token(),
                    Interest::READABLE,
                )
                .map_err(|e| StartError::Listen(addr, e))?;
            listeners.push(Listener {
                configured: addr,
                socket,
            });
        }
        let stats = setup.stats.get(setup.index).cloned().unwrap_or_default();
        let max_buffer_sets = config.max_buffer_sets;
        let config = Rc::new(config);
        Ok(EventLoop {
            poll,
            listeners,
            control,
            waker,
            draining_since: None,
            connections: Slab::new(),
            upstreams: Upstreams::new(&config, Arc::clone(&stats)),
            buffers: BufferPool::new(
                config.buffer_size,
                SPARE_BUFFER_SETS,
                config.max_buffer_sets,
            ),
            timers: Timers::default(),
            access_log: AccessLog::open(&config.access_logs()).map_err(StartError::AccessLog)?,
            config,
            next_connection_id: 0,
            stats,
            workers: setup.stats,
            reuse_port: setup.reuse_port,
            resolved: setup.resolved,
            clock: LoopClock::new(),
            index: setup.index,
            again: Vec::with_capacity(64),
            again_spare: Vec::with_capacity(64),
            buffer_waiters: VecDeque::new(),
            accept_paused: false,
            accept_resume_at: None,
            last_descriptor_warning: None,
            date: HttpDate::default(),
            spare_states: Vec::with_capacity(max_buffer_sets),
            passwords: crate::auth::checker::PasswordChecks::default(),
            gzip_streams: crate::http::gzip::GzipPool::default(),
            corked: Vec::with_capacity(1024),
            corked_before: Vec::with_capacity(1024),
            spin_until: None,
            turns: 0,
        })
    }

    /// What wakes this loop for a command (`bind_worker` loops only).
    pub fn waker(&self) -> Option<Arc<Waker>> {
        self.waker.clone()
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// Runs until a shutdown signal's work is done, or the poll fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while self.turn(&mut events)? == Turn::Continue {}
        Ok(())
    }

    /// One turn of the loop: wait for events (or the nearest deadline),
    /// handle them, then the deadlines and the loop's own bookkeeping.
    /// `run` is these turns until one says `Turn::Done`; tests that need
    /// to look between turns (the allocation count) call it directly.
    ///
    /// Sleeping is not free: each time the loop blocks in `epoll_wait` and
    /// is woken again, the kernel sends the waking CPU an interrupt and
    /// switches tasks, and on a loaded machine that costs the other
    /// processes (the clients, the upstreams) more than it saves ferry. So
    /// while events keep coming, the loop can poll without sleeping
    /// (`--poll-spin-us` after the last event; off by default, see
    /// docs/architecture.md for what it measured); once that much time
    /// passes with nothing to do, it sleeps until the next event or
    /// deadline, so an idle ferry burns no CPU. Before it sleeps, bytes held
    /// back by `MSG_MORE` are flushed: a partial response waits for the rest
    /// of its body only while the loop is awake.
    pub fn turn(&mut self, events: &mut Events) -> io::Result<Turn> {
        let mut timeout = self.poll_timeout();
        if self.spin_until.is_some() && timeout != Some(Duration::ZERO) {
            timeout = Some(Duration::ZERO);
        }
        if timeout != Some(Duration::ZERO) {
            self.flush_corked();
            self.flush_corked();
        }
        // At trace level, one line per turn says what woke the loop.
        let told =
            log::log_enabled!(log::Level::Trace).then(|| (self.waiting_for(), Instant::now()));
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Turn::Continue),
            Err(e) => return Err(e),
        }
        if let Some((waiting_for, slept_from)) = told {
            self.turns += 1;
            let count = events.iter().count();
            trace!(
                "loop turn {}: {count} event{} after {} ms ({waiting_for})",
                self.turns,
                if count == 1 { "" } else { "s" },
                slept_from.elapsed().as_millis()
            );
        }
        self.clock.tick();
        let now = self.clock.now();
        if !events.is_empty() {
            self.spin_until =
                Some(now + self.config.poll_spin).filter(|_| !self.config.poll_spin.is_zero());
        } else if self.spin_until.is_some_and(|until| until <= now) {
            self.spin_until = None;
        }
        let wall_clock = self.clock.wall_clock();
        self.date.update(wall_clock);
        for event in events.iter() {
            match Target::from_token(event.token()) {
                Some(Target::Listener { index }) => self.accept(index, now),
                Some(Target::Passwords) => self.passwords_checked(now, wall_clock),
                Some(Target::Signals | Target::Commands) => {
                    if self.on_commands(now, wall_clock) == Stop::Now {
                        self.access_log.flush();
                        return Ok(Turn::Done);
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
                    Some(Owner::Pooled) => self.upstreams.on_idle_event(link, event),
                    None => {}
                },
                None => error!("event for an unknown token {:?}", event.token()),
            }
        }
        // Connections that yielded with work left. The list is swapped with
        // a spare (not taken) so that neither loses its capacity: no
        // allocation per turn.
        std::mem::swap(&mut self.again, &mut self.again_spare);
        let mut index = 0;
        while let Some(&slot) = self.again_spare.get(index) {
            self.drive(slot, now, wall_clock);
            index += 1;
        }
        self.again_spare.clear();
        self.expire_deadlines(now, wall_clock);
        self.compact_timers();
        self.upstreams.expire_idle(now);
        self.hand_out_buffers(now, wall_clock);
        self.resume_accepting(now);
        if self.upstreams.retire_old_generations() {
            debug!("no exchange runs on an older configuration any more");
            self.access_log.retain(&self.config.access_logs());
        }
        self.flush_corked();
        self.publish_gauges();
        self.access_log.flush();
        if self.draining_since.is_some() && self.connections.is_empty() {
            info!("graceful shutdown complete");
            return Ok(Turn::Done);
        }
        if self.shutdown_deadline().is_some_and(|at| at <= now) {
            info!(
                "worker_shutdown_timeout: closing {} connections still open",
                self.connections.len()
            );
            return Ok(Turn::Done);
        }
        Ok(Turn::Continue)
    }

    /// The `?connections` page: every connection in the slab.
    fn connection_list(&self, now: Instant) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 * (self.connections.len() + 2));
        status::write_connections_header(
            &mut out,
            self.index,
            self.workers.len(),
            self.connections.len(),
        );
        let now_s = seconds(now.saturating_duration_since(self.clock.started()));
        for (_, connection) in &self.connections {
            status::write_connection_line(&mut out, &connection.status_line(now_s));
        }
        out
    }

    /// The counters other threads read but that are cheaper to copy once a
    /// turn than to keep current at every change.
    fn publish_gauges(&self) {
        self.stats
            .upstream_connections
            .set(self.upstreams.open_count() as u64);
        self.stats
            .pooled_connections
            .set(self.upstreams.idle.len() as u64);
    }

    /// When a graceful shutdown stops waiting (`worker_shutdown_timeout`).
    fn shutdown_deadline(&self) -> Option<Instant> {
        Some(self.draining_since? + self.config.shutdown_timeout?)
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
            let (mut stream, peer) = match listener.socket.accept() {
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
            self.stats.accepted.add(1);
            debug!("#{slot} new connection from {peer}");
            let connection = entry.insert(Connection::new(
                self.next_connection_id,
                stream,
                peer,
                now,
                seconds(now.saturating_duration_since(self.clock.started())),
                index,
                &self.config,
            ));
            // The first request must arrive within client_header_timeout.
            if let Some(at) = connection.deadline() {
                connection.scheduled = Some(at);
                self.timers.schedule(TimerEntry {
                    at,
                    slot,
                    id: connection.id,
                });
            }
            self.stats.active.set(self.connections.len() as u64);
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

    /// The password thread woke the loop: each finished check goes to its
    /// connection, if that connection is still the one that asked.
    fn passwords_checked(&mut self, now: Instant, wall_clock: SystemTime) {
        while let Some(checked) = self.passwords.take_checked() {
            let Some(connection) = self.connections.get_mut(checked.slot) else {
                continue;
            };
            if connection.id != checked.connection {
                continue;
            }
            connection.password_checked(checked.outcome);
            self.drive(checked.slot, now, wall_clock);
        }
    }

    /// Lets the connection in `slot` run, then files it: removed if closed,
    /// queued if it yielded, its deadline scheduled otherwise.
    fn drive(&mut self, slot: usize, now: Instant, wall_clock: SystemTime) {
        let Some(connection) = self.connections.get_mut(slot) else {
            return;
        };
        let mut ctx = context!(self, slot, connection, now, wall_clock);
        let mut driven = connection.drive(&mut ctx);
        let connection = if connection.wants_connection_list() {
            // Rare: the slab is walked, then the connection driven again.
            let list = self.connection_list(now);
            let Some(connection) = self.connections.get_mut(slot) else {
                return;
            };
            let mut ctx = context!(self, slot, connection, now, wall_clock);
            ctx.connection_list = Some(&list);
            driven = connection.drive(&mut ctx);
            connection
        } else {
            connection
        };
        match driven {
            Driven::Closed => {
                self.connections.remove(slot);
                self.stats.active.set(self.connections.len() as u64);
                debug!("#{slot} closed");
                return;
            }
            Driven::MoreWork => self.again.push(slot),
            Driven::Waiting => {}
        }
        if connection.corked {
            self.corked.push(slot);
        }
        if let Some(at) = connection.deadline() {
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

    /// Sends what `MSG_MORE` writes of the turn before left held (see
    /// `Connection::flush`); this turn's wait one more turn.
    fn flush_corked(&mut self) {
        for &slot in &self.corked_before {
            if let Some(connection) = self.connections.get_mut(slot) {
                connection.flush();
            }
        }
        self.corked_before.clear();
        std::mem::swap(&mut self.corked, &mut self.corked_before);
    }

    /// Drops the heap's stale entries (closed connections, superseded
    /// deadlines) once they outnumber the live ones; see `timer.rs`.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.connections.len() + 64 {
            return;
        }
        let connections = &self.connections;
        self.timers.retain(|entry| {
            connections
                .get(entry.slot)
                .is_some_and(|c| c.id == entry.id && c.scheduled == Some(entry.at))
        });
        trace!("timer heap compacted to {} entries", self.timers.len());
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
            match connection.deadline() {
                Some(at) if at <= now => {
                    let mut ctx = context!(self, entry.slot, connection, now, wall_clock);
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

fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
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
