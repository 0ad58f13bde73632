//! Keeping slow password hashes off the event loop.
//!
//! Each worker owns one [`PasswordChecks`]: a cache of (stored hash,
//! password) pairs verified recently, and a password thread started the
//! first time a crypt(3) hash must be checked. A connection whose pair is
//! not cached hands a [`Job`] to the thread and waits in the
//! `Authenticating` phase; the thread verifies, sends the [`Checked`]
//! outcome back and wakes the loop through a `mio::Waker`, and the loop
//! gives the outcome to the connection (if it is still the same one: its
//! id is in the job). Meanwhile the loop serves everyone else.
//!
//! The cache holds 128-bit fingerprints, keyed with random keys per
//! worker, never passwords: a fingerprint says "this password matched this
//! stored hash", so a changed hash in the user file misses it. The queue to
//! the thread is bounded; when it is full a request is answered 503 rather
//! than queued without limit (a flood of wrong passwords cannot grow
//! memory).
//!
//! In the course (docs/learn): chapter 7, "The order": auth_basic, and a
//! thread kept off the loop.

use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use mio::{Registry, Token, Waker};

use super::{verify, UnknownScheme};

/// Checks waiting for the thread, at most.
const QUEUE: usize = 64;
/// Verified pairs remembered, per worker (4 KiB).
const REMEMBERED: usize = 256;

/// A password to check against a stored hash, for one connection.
pub struct Job {
    pub slot: usize,
    pub connection: u64,
    pub password: Vec<u8>,
    pub stored: Vec<u8>,
    pub fingerprint: u128,
}

/// What the thread found.
pub struct Checked {
    pub slot: usize,
    pub connection: u64,
    pub outcome: Result<bool, UnknownScheme>,
    fingerprint: u128,
}

/// The thread has too many checks waiting.
#[derive(Debug)]
pub struct Busy;

struct Thread {
    jobs: SyncSender<Job>,
    done: Receiver<Checked>,
}

/// A worker's password cache and thread.
pub struct PasswordChecks {
    thread: Option<Thread>,
    keys: (std::hash::RandomState, std::hash::RandomState),
    remembered: Vec<u128>,
    next: usize,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks {
            thread: None,
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            remembered: Vec::new(),
            next: 0,
        }
    }
}

impl PasswordChecks {
    /// The pair's fingerprint: two independently keyed SipHashes.
    pub fn fingerprint(&self, stored: &[u8], password: &[u8]) -> u128 {
        let half = |keys: &std::hash::RandomState| {
            let mut hasher = keys.build_hasher();
            hasher.write(stored);
            hasher.write_u8(0xff);
            hasher.write(password);
            hasher.finish()
        };
        (u128::from(half(&self.keys.0)) << 64) | u128::from(half(&self.keys.1))
    }

    /// Whether the pair was verified recently.
    pub fn is_remembered(&self, fingerprint: u128) -> bool {
        self.remembered.contains(&fingerprint)
    }

    fn remember(&mut self, fingerprint: u128) {
        if self.remembered.len() < REMEMBERED {
            self.remembered.push(fingerprint);
        } else if let Some(slot) = self.remembered.get_mut(self.next) {
            *slot = fingerprint;
        }
        self.next = (self.next + 1) % REMEMBERED;
    }

    /// Hands `job` to the thread, starting it the first time; it wakes
    /// the loop through `token` when done.
    pub fn submit(&mut self, registry: &Registry, token: Token, job: Job) -> Result<(), Busy> {
        if self.thread.is_none() {
            self.thread = Some(start(registry, token).map_err(|e| {
                log::error!("cannot start the password thread: {e}");
                Busy
            })?);
        }
        let thread = self.thread.as_ref().ok_or(Busy)?;
        match thread.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// The next finished check, if any; a match is remembered.
    pub fn take_checked(&mut self) -> Option<Checked> {
        let checked = self.thread.as_ref()?.done.try_recv().ok()?;
        if checked.outcome == Ok(true) {
            self.remember(checked.fingerprint);
        }
        Some(checked)
    }
}

fn start(registry: &Registry, token: Token) -> std::io::Result<Thread> {
    let waker = Arc::new(Waker::new(registry, token)?);
    let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
    let (finished, done) = mpsc::channel();
    std::thread::Builder::new()
        .name("ferry-passwords".into())
        .spawn(move || {
            // Ends when the worker drops its sender.
            for mut job in queue {
                let outcome = verify(&job.password, &job.stored);
                job.password.fill(0);
                std::hint::black_box(&job.password);
                let checked = Checked {
                    slot: job.slot,
                    connection: job.connection,
                    outcome,
                    fingerprint: job.fingerprint,
                };
                if finished.send(checked).is_err() {
                    break;
                }
                let _ = waker.wake();
            }
        })?;
    Ok(Thread { jobs, done })
}
