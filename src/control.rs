//! How an operator steers a running ferry: signals, and the worker threads
//! they reach.
//!
//! The signals mean what they mean to nginx: HUP reloads the configuration,
//! QUIT shuts down gracefully, TERM and INT shut down at once, USR1 reopens
//! the access logs. They arrive through `signal-hook-mio` as readiness on a
//! pipe, so they are acted on in the poll loop, never inside a signal
//! handler. Each one becomes a [`Command`]; a reload reads and checks the
//! new configuration first, and an invalid one is logged and changes
//! nothing.
//!
//! With one worker (the default) the worker's loop owns the signal pipe and
//! carries out its commands itself: no extra thread, nothing shared. With
//! `worker_processes N`, the main thread owns the pipe and
//! [`crate::workers::Workers`] sends each command to every worker's loop.
//!
//! In the course (docs/learn): chapter 7, after the loop itself; this
//! module needs nothing from the loop, the loop reads its commands.

use std::io;

use log::{error, info};
use std::sync::mpsc::Receiver;

use mio::{Interest, Poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::token::Target;

/// The signals ferry acts on.
pub const SIGNALS: [i32; 5] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1];

/// What a worker is asked to do.
#[derive(Clone, Debug)]
pub enum Command {
    /// Serve new requests with this (already checked) configuration.
    Reload(Box<Config>),
    /// Stop accepting, finish the exchanges under way, exit.
    Quit,
    /// Exit now.
    Stop,
    /// Reopen the access log files by name.
    Reopen,
}

/// Reads the configuration again, as it was read at start (the same file,
/// the same command-line overrides).
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send>;

/// Where a worker's commands come from.
pub enum Control {
    /// The only worker: signals straight from the pipe.
    Signals { signals: Signals, reload: Reloader },
    /// One of several workers: commands from the main thread.
    Commands(Receiver<Command>),
}

impl Control {
    /// The signal pipe, registered with `poll` under [`Target::Signals`].
    pub fn signals(reload: Reloader, poll: &Poll) -> io::Result<Control> {
        let mut signals = Signals::new(SIGNALS)?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)?;
        Ok(Control::Signals { signals, reload })
    }

    /// The commands that arrived since the last call.
    pub fn pending(&mut self) -> Vec<Command> {
        match self {
            Control::Signals { signals, reload } => signals
                .pending()
                .filter_map(|signal| command_for(signal, reload))
                .collect(),
            Control::Commands(receiver) => receiver.try_iter().collect(),
        }
    }
}

/// What `signal` asks for. For SIGHUP the configuration is read here, once;
/// if it is invalid the error is logged and nothing else happens, as nginx
/// keeps its old workers when `nginx -s reload` finds an error.
pub fn command_for(signal: i32, reload: &Reloader) -> Option<Command> {
    match signal {
        SIGHUP => match reload() {
            Ok(config) => {
                info!("SIGHUP: configuration read and checked; reloading");
                Some(Command::Reload(Box::new(config)))
            }
            Err(e) => {
                error!("SIGHUP: reload refused, the running configuration stays: {e}");
                None
            }
        },
        SIGQUIT => Some(Command::Quit),
        SIGTERM | SIGINT => Some(Command::Stop),
        SIGUSR1 => Some(Command::Reopen),
        _ => None,
    }
}
