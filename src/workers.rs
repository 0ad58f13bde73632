//! `worker_processes N`: N event loops on N threads, steered from the main
//! thread. Each loop has its own poll, slab, upstream pools and
//! `SO_REUSEPORT` listeners; the main thread owns the signal pipe, turns a
//! signal into a [`Command`] once (`control`) and sends it to every worker
//! through a channel, waking its poll with a [`mio::Waker`].
//!
//! In the course (docs/learn): chapter 7; it sits above the event loop and
//! the control module, and nothing below it knows it exists.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use log::{error, info, warn};
use mio::{Events, Interest, Poll, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::control::{command_for, Command, Reloader, SIGNALS};
use crate::event_loop::{EventLoop, StartError, WorkerSetup};
use crate::stats::WorkerStats;
use crate::token::Target;

/// N event loops on N threads, steered from the main thread.
pub struct Workers {
    /// The main thread's poll: the signal pipe, and a waker each worker
    /// pulls when it ends.
    poll: Poll,
    signals: Signals,
    /// Each worker says here that it ended (then pulls `ended_waker`).
    ended: Receiver<usize>,
    /// Held here too: if the last worker held the last reference, its
    /// eventfd would close, and the wake-up with it, before this thread
    /// saw it.
    ended_waker: Arc<Waker>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    /// Each worker's command channel and the waker of its poll.
    senders: Vec<(Sender<Command>, Arc<Waker>)>,
    addrs: Vec<SocketAddr>,
}

/// What a worker thread reports once it has bound its listeners.
type Started = Result<(Arc<Waker>, Vec<SocketAddr>), StartError>;

impl Workers {
    /// Starts `count` workers and waits until each has bound its listeners.
    /// The first binds the configured addresses; the others bind the same
    /// sockets' addresses (so `listen 127.0.0.1:0` gives one port to all).
    pub fn start(config: &Config, count: usize) -> Result<Workers, StartError> {
        let stats: Vec<Arc<WorkerStats>> = (0..count).map(|_| Arc::default()).collect();
        // Signals are taken before any worker starts, so that one sent as
        // soon as ferry says it listens is not lost (or fatal).
        let poll = Poll::new().map_err(StartError::Poll)?;
        let mut signals = Signals::new(SIGNALS).map_err(StartError::Signals)?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)
            .map_err(StartError::Signals)?;
        let ended_waker = Arc::new(
            Waker::new(poll.registry(), Target::Commands.token()).map_err(StartError::Signals)?,
        );
        let (ended_sender, ended) = mpsc::channel();
        let mut workers = Workers {
            poll,
            signals,
            ended,
            ended_waker,
            threads: Vec::new(),
            senders: Vec::new(),
            addrs: Vec::new(),
        };
        let mut resolved: Vec<(SocketAddr, SocketAddr)> = Vec::new();
        for index in 0..count {
            let (sender, receiver) = mpsc::channel();
            let (started_sender, started) = mpsc::sync_channel::<Started>(1);
            let setup = WorkerSetup {
                index,
                stats: stats.clone(),
                reuse_port: true,
                resolved: resolved.clone(),
            };
            let worker_config = config.clone();
            let notice = EndNotice {
                index,
                sender: ended_sender.clone(),
                waker: Arc::clone(&workers.ended_waker),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ferry-worker-{index}"))
                .spawn(move || {
                    let _notice = notice;
                    worker_main(worker_config, receiver, setup, started_sender)
                })
                .map_err(StartError::Worker)?;
            workers.threads.push(thread);
            let (waker, addrs) = match started.recv() {
                Ok(Ok(started)) => started,
                Ok(Err(e)) => {
                    workers.stop();
                    return Err(e);
                }
                Err(_) => {
                    workers.stop();
                    return Err(StartError::Worker(io::Error::other("it died at start")));
                }
            };
            if index == 0 {
                resolved = config.listen_addrs().zip(addrs.iter().copied()).collect();
                workers.addrs = addrs;
            }
            workers.senders.push((sender, waker));
        }
        Ok(workers)
    }

    /// The addresses the workers listen on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Turns signals into commands for every worker until all have exited.
    /// `Err` if a worker failed.
    pub fn run(mut self, reload: Reloader) -> Result<(), String> {
        let mut events = Events::with_capacity(8);
        let mut running = self.threads.len();
        let mut shutting_down = false;
        while running > 0 {
            // Woken by a signal or by a worker ending (`EndNotice`).
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
            let commands: Vec<Command> = self
                .signals
                .pending()
                .filter_map(|signal| command_for(signal, &reload))
                .collect();
            for command in &commands {
                shutting_down |= matches!(command, Command::Quit | Command::Stop);
                self.send(command);
            }
            let ended = self.ended.try_iter().count();
            running = running.saturating_sub(ended);
            if ended > 0 && !shutting_down {
                // A worker ended by itself: its event loop failed. The
                // others stop too rather than serve the port half-staffed.
                error!("a worker ended unexpectedly; stopping the others");
                shutting_down = true;
                self.send(&Command::Stop);
            }
        }
        let mut outcome = Ok(());
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => outcome = Err(e),
                Err(_) => outcome = Err("a worker thread panicked".to_string()),
            }
        }
        outcome
    }

    fn send(&self, command: &Command) {
        for (sender, waker) in &self.senders {
            // A worker that has exited has dropped its receiver: nothing to do.
            if sender.send(command.clone()).is_ok() {
                if let Err(e) = waker.wake() {
                    error!("cannot wake a worker: {e}");
                }
            }
        }
    }

    /// Start failed: stop the workers already running.
    fn stop(&mut self) {
        self.send(&Command::Stop);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Tells the main thread that a worker thread ended, however it ended
/// (dropped as the thread's closure returns or unwinds).
struct EndNotice {
    index: usize,
    sender: Sender<usize>,
    waker: Arc<Waker>,
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        // The message first: the main thread counts messages when woken.
        let _ = self.sender.send(self.index);
        let _ = self.waker.wake();
    }
}

/// `worker_cpu_affinity auto`: runs the calling thread (worker `index`) on
/// the `index`-th CPU this process may use, wrapping around, as nginx
/// binds its workers. A failure is logged; the worker runs unpinned.
pub fn pin_worker(index: usize) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let Some(&core) = cores.get(index % cores.len().max(1)) else {
        warn!("worker_cpu_affinity: cannot read the CPUs this process may use");
        return;
    };
    if core_affinity::set_for_current(core) {
        info!("worker {index} runs on CPU {}", core.id);
    } else {
        warn!(
            "worker_cpu_affinity: cannot pin worker {index} to CPU {}",
            core.id
        );
    }
}

/// A worker thread: bind, report, run.
fn worker_main(
    config: Config,
    commands: Receiver<Command>,
    setup: WorkerSetup,
    started: mpsc::SyncSender<Started>,
) -> Result<(), String> {
    let index = setup.index;
    if config.worker_cpu_affinity {
        pin_worker(index);
    }
    let mut event_loop = match EventLoop::bind_worker(config, commands, setup) {
        Ok(event_loop) => event_loop,
        Err(e) => {
            let message = e.to_string();
            let _ = started.send(Err(e));
            return Err(message);
        }
    };
    let Some(waker) = event_loop.waker() else {
        return Err(format!("worker {index} has no command waker"));
    };
    let _ = started.send(Ok((waker, event_loop.local_addrs())));
    event_loop
        .run()
        .map_err(|e| format!("worker {index}: event loop failed: {e}"))
}
