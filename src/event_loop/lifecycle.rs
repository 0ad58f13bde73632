//! What the loop does when it is told something (`control::Command`):
//! graceful and fast shutdown, reopening logs, and reload, where a new
//! configuration takes over new connections and requests while exchanges
//! under way finish on the one they began with.
//!
//! In the course (docs/learn): chapter 3 at full size (chapter 7).

use super::*;

impl EventLoop {
    /// Carries out the commands that arrived (see `control`).
    pub(super) fn on_commands(&mut self, now: Instant, wall_clock: SystemTime) -> Stop {
        for command in self.control.pending() {
            match command {
                Command::Stop => {
                    info!(
                        "shutting down now, closing {} connections",
                        self.connections.len()
                    );
                    return Stop::Now;
                }
                Command::Quit => self.shut_down_gracefully(now, wall_clock),
                Command::Reopen => {
                    info!("reopening the access log files");
                    self.access_log.reopen();
                }
                Command::Reload(config) => self.reload(*config, now, wall_clock),
            }
        }
        Stop::NotYet
    }

    /// nginx's graceful shutdown: stop accepting, close idle connections,
    /// let the others finish their exchange (without keep-alive), and exit
    /// when the slab is empty or `worker_shutdown_timeout` has passed.
    pub(super) fn shut_down_gracefully(&mut self, now: Instant, wall_clock: SystemTime) {
        if self.draining_since.is_some() {
            return;
        }
        info!(
            "shutting down gracefully, {} connections to finish",
            self.connections.len()
        );
        self.draining_since = Some(now);
        // Closing the listening sockets makes new connections fail at once
        // instead of waiting in a backlog nobody will accept from.
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.drain_connections(now, wall_clock, |_| true);
    }

    /// Tells the connections `which` picks to finish their exchange and
    /// close; the idle ones close now.
    pub(super) fn drain_connections(
        &mut self,
        now: Instant,
        wall_clock: SystemTime,
        which: impl Fn(&Connection) -> bool,
    ) {
        let slots: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, connection)| which(connection))
            .map(|(slot, _)| slot)
            .collect();
        for slot in slots {
            let Some(connection) = self.connections.get_mut(slot) else {
                continue;
            };
            let mut ctx = context!(self, slot, connection, now, wall_clock);
            if connection.drain(&mut ctx) {
                self.connections.remove(slot);
                self.stats.active.set(self.connections.len() as u64);
            }
        }
    }

    /// Moves to a new configuration (already read and checked) without
    /// dropping anything: listeners it keeps keep their sockets, so no
    /// connection is refused; new ones are opened first, and if one cannot
    /// be (or an access log cannot be opened) the reload is refused and the
    /// old configuration stays. Requests under way finish on the old
    /// configuration; connections take the new one at their next request.
    /// Connections that came in on a listener the reload removes finish
    /// their exchange and close, and idle upstream connections to servers
    /// no longer configured are closed.
    pub(super) fn reload(&mut self, new: Config, now: Instant, wall_clock: SystemTime) {
        if self.draining_since.is_some() {
            warn!("reload ignored: shutting down");
            return;
        }
        let mut opened = Vec::new();
        for configured in &new.listen {
            let addr = configured.addr;
            if self.listeners.iter().any(|l| l.configured == addr) {
                continue;
            }
            match listen(
                resolve(&self.resolved, addr),
                self.reuse_port,
                &configured.options,
            ) {
                Ok(socket) => opened.push(Listener {
                    configured: addr,
                    socket,
                }),
                Err(e) => {
                    error!("reload refused, the running configuration stays: cannot listen on {addr}: {e}");
                    return;
                }
            }
        }
        if let Err(e) = self.access_log.add_targets(&new.access_logs()) {
            error!(
                "reload refused, the running configuration stays: cannot open an access log: {e}"
            );
            return;
        }

        let mut old = std::mem::take(&mut self.listeners);
        for (index, addr) in new.listen_addrs().enumerate() {
            let (mut listener, kept) = match old.iter().position(|l| l.configured == addr) {
                Some(at) => (old.swap_remove(at), true),
                None => match opened.iter().position(|l| l.configured == addr) {
                    Some(at) => (opened.swap_remove(at), false),
                    // Unreachable: every address not kept was bound above.
                    None => continue,
                },
            };
            let token = Target::Listener { index }.token();
            let registry = self.poll.registry();
            let registered = if kept {
                registry.reregister(&mut listener.socket, token, Interest::READABLE)
            } else {
                info!("now listening on {addr}");
                registry.register(&mut listener.socket, token, Interest::READABLE)
            };
            if let Err(e) = registered {
                error!("cannot register the listener on {addr}: {e}");
            }
            self.listeners.push(listener);
        }
        for listener in &old {
            info!("no longer listening on {}", listener.configured);
        }
        // Dropping a socket closes it and takes it out of the poll.
        drop(old);

        if self.index == 0 {
            warn_restart_needed(&self.config, &new);
        }
        let config = Rc::new(new);
        // As nginx's new cycle does, log files are opened again by name, so
        // a reload after moving them also starts new files.
        self.access_log.reopen();
        self.upstreams.reload(&config);
        self.buffers
            .reconfigure(config.buffer_size, config.max_buffer_sets);
        self.config = Rc::clone(&config);
        self.drain_connections(now, wall_clock, |connection| {
            connection
                .listen_addr()
                .is_none_or(|addr| config.listen_position(addr).is_none())
        });
        info!(
            "configuration reloaded: {} listeners, {} servers, {} upstream groups",
            config.listen.len(),
            config.servers.len(),
            config.upstreams.len()
        );
        // The listeners may have been renumbered, and new ones may already
        // hold connections: accept from all of them now.
        for index in 0..self.listeners.len() {
            self.accept(index, now);
        }
    }
}

/// Says which changes a reload does not apply: they shape the process
/// (its threads, its error log, its pid file), which stays.
fn warn_restart_needed(old: &Config, new: &Config) {
    let unapplied = [
        (
            "worker_processes",
            old.worker_processes != new.worker_processes,
        ),
        ("error_log", old.error_log != new.error_log),
        ("pid", old.pid != new.pid),
        ("user", old.user != new.user),
    ];
    for (directive, changed) in unapplied {
        if changed {
            warn!("reload: a changed \"{directive}\" takes effect at the next restart");
        }
    }
}
