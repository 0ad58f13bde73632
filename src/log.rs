//! The two logs, as in nginx: the error log (`log` macros through
//! env_logger, on stderr, filtered by `RUST_LOG`) and the access log (one
//! line per request, on stdout, written by [`AccessLog`]).
//!
//! Access log lines are formatted into a reused buffer and written once per
//! event-loop turn, so logging costs no allocation and at most one `write`
//! per turn, however many requests the turn finished.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogTarget, ErrorLogConfig};
use crate::http::date::civil_from_days;

/// The logger the `log` macros reach: one for the whole process, whose
/// output can be switched once the configuration says where it goes. Before
/// that (while the configuration loads, and for `ferry -t`), warnings go to
/// stderr as nginx words them: `ferry: [warn] …`.
struct SwitchableLog;

static ERROR_LOG: std::sync::OnceLock<std::sync::RwLock<env_logger::Logger>> =
    std::sync::OnceLock::new();

impl log::Log for SwitchableLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        ERROR_LOG
            .get()
            .and_then(|logger| Some(logger.read().ok()?.enabled(metadata)))
            .unwrap_or(false)
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(Ok(logger)) = ERROR_LOG.get().map(|l| l.read()) {
            logger.log(record);
        }
    }

    fn flush(&self) {
        if let Some(Ok(logger)) = ERROR_LOG.get().map(|l| l.read()) {
            logger.flush();
        }
    }
}

/// Starts logging to stderr for what happens before the error log is
/// known: loading the configuration (its warnings: an expired certificate,
/// `listen … http2`), or `ferry -t`. `RUST_LOG` overrides the level.
pub fn init_console_log() {
    let mut builder = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(with_quiet_libraries("warn")),
    );
    builder.format(|out, record| {
        let level = record.level().as_str().to_ascii_lowercase();
        writeln!(out, "ferry: [{level}] {}", record.args())
    });
    install(builder.build());
}

/// `ferry demo --explain`: the error log becomes the story of each
/// connection, told on the terminal at trace level (unless `RUST_LOG` says
/// otherwise): milliseconds since start, then what happened, with the seed
/// post's words where it has them ("New connection from …", "Connected to
/// …", "Keeping connection alive", "Client disconnected").
pub fn explain() {
    EXPLAIN.store(true, std::sync::atomic::Ordering::Relaxed);
}

static EXPLAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What `--explain` prints before the story: how to read it.
const LEGEND: &str = "\
ferry explains: each line is milliseconds since start, then one event.
  loop turn N        the loop woke up: how many sockets had news, how long it slept and why
  #3                 the connection in slab slot 3 (#3/upstream: its upstream socket)
  A -> B             the connection's state machine moved from state A to state B
  -> * 78B           78 bytes read from the client       * -> 131B   written to the upstream
  * <- 327B          read from the upstream               <- * 364B   written to the client
";

/// The seed post's words for some of ferry's lines.
fn in_the_seeds_words(message: &str) -> std::borrow::Cow<'_, str> {
    const WORDS: [(&str, &str); 4] = [
        ("new connection from", "New connection from"),
        ("/upstream connected to", " Connected to"),
        ("keeping the connection alive", "Keeping connection alive"),
        ("client closed the connection", "Client disconnected"),
    ];
    for (ours, seeds) in WORDS {
        if let Some(at) = message.find(ours) {
            return format!("{}{seeds}{}", &message[..at], &message[at + ours.len()..]).into();
        }
    }
    message.into()
}

/// Starts the error log: `error_log`'s file and level when configured,
/// else stderr at `warn`. `RUST_LOG`, when set, overrides the level.
pub fn init_error_log(configured: Option<&ErrorLogConfig>) -> io::Result<()> {
    let explaining = EXPLAIN.load(std::sync::atomic::Ordering::Relaxed);
    let default_filter = match configured {
        _ if explaining => "ferry=trace",
        Some(configured) => configured.filter.as_str(),
        None => "warn",
    };
    let mut builder = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(with_quiet_libraries(default_filter)),
    );
    builder.format_target(false);
    // Milliseconds: two clients' lines in one second can be told apart.
    builder.format_timestamp_millis();
    if explaining {
        let started = std::time::Instant::now();
        eprint!("{LEGEND}");
        builder.format(move |out, record| {
            let message = record.args().to_string();
            writeln!(
                out,
                "{:>9.3} ms  {}",
                started.elapsed().as_secs_f64() * 1000.0,
                in_the_seeds_words(&message)
            )
        });
    }
    if let Some(path) = configured.and_then(|c| c.path.as_ref()) {
        let file = open_file(path)?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    install(builder.build());
    Ok(())
}

/// `filter`, with rustls's own messages kept to errors: it warns about
/// what clients send (an IP address as SNI, from wrk or curl, on every
/// handshake), which is not the operator's problem; ferry logs why a
/// handshake failed itself, at `info`, as nginx does. `RUST_LOG` can still
/// ask for them.
fn with_quiet_libraries(filter: &str) -> String {
    format!("{filter},rustls=error")
}

/// Makes `logger` the one the macros reach (the first call registers the
/// switch with `log`).
fn install(logger: env_logger::Logger) {
    let level = logger.filter();
    match ERROR_LOG.get() {
        Some(current) => {
            if let Ok(mut current) = current.write() {
                *current = logger;
            }
        }
        None => {
            let _ = ERROR_LOG.set(std::sync::RwLock::new(logger));
            let _ = log::set_logger(&SwitchableLog);
        }
    }
    log::set_max_level(level);
}

/// The clock as log lines show it.
pub struct LogTimes<'a> {
    /// `28/Nov/2026:14:25:50 +0000`
    pub local: &'a [u8],
    /// `2026-11-28T14:25:50+00:00`
    pub iso8601: &'a [u8],
    pub since_epoch: Duration,
}

pub struct AccessLog {
    /// Each target in use, with its file (`None`: stdout) and the lines of
    /// this loop turn.
    sinks: Vec<Sink>,
    clock: LogClock,
}

struct Sink {
    target: AccessLogTarget,
    file: Option<std::fs::File>,
    pending: Vec<u8>,
}

/// Opens an access log file for appending, as nginx does.
fn open_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open() \"{}\" failed ({e})", path.display()),
            )
        })
}

/// Opens (creating them, as nginx does) every log file `config` names, so
/// that `ferry -t` fails where a start would: the first that cannot be
/// opened, by its path.
pub fn check_log_files(config: &crate::config::Config) -> io::Result<()> {
    for target in config.access_logs() {
        if let AccessLogTarget::File(path) = target {
            open_file(&path)?;
        }
    }
    if let Some(path) = config.error_log.as_ref().and_then(|c| c.path.as_ref()) {
        open_file(path)?;
    }
    Ok(())
}

impl AccessLog {
    /// Opens every target's file.
    pub fn open(targets: &[AccessLogTarget]) -> io::Result<AccessLog> {
        let mut log = AccessLog {
            sinks: Vec::new(),
            clock: LogClock::default(),
        };
        log.add_targets(targets)?;
        Ok(log)
    }

    /// A reload: opens the targets the new configuration adds. Nothing
    /// changes if one cannot be opened (the reload is refused). Targets it
    /// no longer uses stay open for the exchanges still running on the old
    /// configuration, until `retain` drops them.
    pub fn add_targets(&mut self, targets: &[AccessLogTarget]) -> io::Result<()> {
        let mut added = Vec::new();
        for target in targets {
            if self.sinks.iter().any(|sink| sink.target == *target)
                || added.iter().any(|sink: &Sink| sink.target == *target)
            {
                continue;
            }
            let file = match target {
                AccessLogTarget::File(path) => Some(open_file(path)?),
                AccessLogTarget::Stdout => None,
                AccessLogTarget::Off => continue,
            };
            added.push(Sink {
                target: target.clone(),
                file,
                pending: Vec::with_capacity(16 * 1024),
            });
        }
        self.sinks.append(&mut added);
        Ok(())
    }

    /// Closes the targets not in `targets` (no exchange can use them now).
    pub fn retain(&mut self, targets: &[AccessLogTarget]) {
        self.flush();
        self.sinks.retain(|sink| targets.contains(&sink.target));
    }

    /// Whether any location logs at all.
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Lets `write` append one line for `target`, given the clock's texts.
    pub fn write_line(
        &mut self,
        target: &AccessLogTarget,
        now: SystemTime,
        write: impl FnOnce(&LogTimes<'_>, &mut Vec<u8>),
    ) {
        let Some(sink) = self.sinks.iter_mut().find(|sink| sink.target == *target) else {
            return;
        };
        let (local, iso8601) = self.clock.texts(now);
        let times = LogTimes {
            local,
            iso8601,
            since_epoch: now.duration_since(UNIX_EPOCH).unwrap_or_default(),
        };
        write(&times, &mut sink.pending);
    }

    /// SIGUSR1: after a rotation moved the files away, opens them again
    /// by name. A file that cannot be opened keeps its old descriptor,
    /// so lines are never lost, and the failure is logged.
    pub fn reopen(&mut self) {
        self.flush();
        for sink in &mut self.sinks {
            let AccessLogTarget::File(path) = &sink.target else {
                continue;
            };
            match open_file(path) {
                Ok(file) => sink.file = Some(file),
                Err(e) => log::error!("cannot reopen {}: {e}", path.display()),
            }
        }
    }

    /// Writes out the lines of this loop turn.
    pub fn flush(&mut self) {
        for sink in &mut self.sinks {
            if sink.pending.is_empty() {
                continue;
            }
            let result = match &mut sink.file {
                Some(file) => file.write_all(&sink.pending),
                None => {
                    let mut stdout = io::stdout().lock();
                    stdout
                        .write_all(&sink.pending)
                        .and_then(|()| stdout.flush())
                }
            };
            if let Err(e) = result {
                log::error!("cannot write the access log: {e}");
            }
            sink.pending.clear();
        }
    }
}

/// Formats `$time_local` and `$time_iso8601` at most once per second.
/// Ferry has no time-zone database, so times are UTC; see
/// docs/nginx-differences.md.
#[derive(Default)]
struct LogClock {
    second: u64,
    local: [u8; 26],
    iso8601: [u8; 25],
}

impl LogClock {
    fn texts(&mut self, now: SystemTime) -> (&[u8], &[u8]) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second || self.local[0] == 0 {
            self.second = second;
            let _ = write!(
                io::Cursor::new(&mut self.local[..]),
                "{}",
                LocalTime(second)
            );
            let _ = write!(
                io::Cursor::new(&mut self.iso8601[..]),
                "{}",
                Iso8601(second)
            );
        }
        (&self.local, &self.iso8601)
    }
}

/// `2026-11-28T14:25:50+00:00` for a Unix time in seconds.
pub struct Iso8601(pub u64);

impl fmt::Display for Iso8601 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days((self.0 / 86_400) as i64);
        let rem = self.0 % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// `28/Nov/2026:14:25:50 +0000` for a Unix time in seconds.
pub struct LocalTime(pub u64);

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        let month_name = MONTHS.get(month as usize - 1).copied().unwrap_or("???");
        write!(
            f,
            "{day:02}/{month_name}/{year:04}:{:02}:{:02}:{:02} +0000",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_format() {
        assert_eq!(LocalTime(0).to_string(), "01/Jan/1970:00:00:00 +0000");
        // 2026-11-28 14:25:50 UTC
        assert_eq!(
            LocalTime(1_795_875_950).to_string(),
            "28/Nov/2026:14:25:50 +0000"
        );
        // A leap day.
        assert_eq!(
            LocalTime(951_782_400).to_string(),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    #[test]
    fn iso8601_format() {
        assert_eq!(
            Iso8601(1_795_875_950).to_string(),
            "2026-11-28T14:25:50+00:00"
        );
    }

    #[test]
    fn lines_go_to_their_target_only() {
        let mut log = AccessLog::open(&[AccessLogTarget::Stdout]).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_795_875_950);
        log.write_line(&AccessLogTarget::Stdout, now, |times, out| {
            out.extend_from_slice(times.local);
            out.push(b' ');
            out.extend_from_slice(times.iso8601);
        });
        log.write_line(&AccessLogTarget::Off, now, |_, out| {
            out.extend_from_slice(b"never")
        });
        assert_eq!(
            log.sinks[0].pending,
            b"28/Nov/2026:14:25:50 +0000 2026-11-28T14:25:50+00:00"
        );
    }
}
