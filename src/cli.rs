//! Command line -> [`Args`]: raw flags only, no I/O. Validation into a
//! [`crate::config::Config`] happens in [`Args::into_config`].
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::fmt;
use std::net::SocketAddr;

use crate::config::{parse_size, AccessLogTarget, Config};

pub const USAGE: &str = "\
ferry: a small, fast reverse proxy

USAGE:
    ferry [OPTIONS]          proxy as the configuration says (-c FILE, or the
                             embedded default: 127.0.0.1:8080 to 127.0.0.1:3000)
    ferry demo [OPTIONS]     run the seed's origin on 127.0.0.1:3000 and ferry
                             on 127.0.0.1:8080 in front of it

OPTIONS:
    -c FILE                       read this nginx.conf (a subset of nginx's syntax)
    -t                            test the configuration and exit
    -T                            test the configuration, print it, and exit
    -s reload|quit|stop|reopen    signal the ferry whose `pid` file the configuration
                                  names (SIGHUP, SIGQUIT, SIGTERM, SIGUSR1)
    --listen HOST:PORT            address to accept clients on [127.0.0.1:8080]
    --upstream HOST:PORT          upstream server to proxy to [127.0.0.1:3000];
                                  a name (localhost:3000) is resolved at start
    --client-max-body-size SIZE   largest request body, 0 = no limit [1m]
    --buffer-size SIZE            ring buffer per direction [16k]
    --max-head-size SIZE          largest request or response head [8k]
    --upstream-keepalive N        idle connections kept per upstream [as many
                                  as its recent peak of busy connections]
    --access-log stdout|off       where access log lines go [stdout]
    --worker-connections N        client + upstream connections at once [512]
    --buffer-sets N               busy connections holding buffers at once [512]
    --status-path PATH            answer PATH with ferry's counters [off]
    --poll-spin-us N              keep polling this long after the last event
                                  before sleeping, 0 = sleep at once [0]
    --set DIRECTIVE=VALUE         an nginx directive, e.g. proxy_read_timeout=5s;
                                  repeatable. Known: client_header_timeout,
                                  client_body_timeout, keepalive_timeout,
                                  keepalive_requests, send_timeout,
                                  proxy_connect_timeout, proxy_send_timeout,
                                  proxy_read_timeout, upstream_keepalive_timeout,
                                  lingering_time, lingering_timeout,
                                  worker_connections, client_max_body_size
    -h, --help                    print this help
    -v, --version                 print the version

DEMO OPTIONS:
    --port N                      ferry's port [8080]
    --origin-port N               the demo origin's port [3000]
    --explain                     tell each connection's story as it goes:
                                  every turn of the loop, every state change

Logs: RUST_LOG=ferry=debug shows connections, RUST_LOG=ferry=trace every
state transition. Sizes take nginx's suffixes: k, m, g.
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Proxy,
    /// `-t` (and `-T`, which also prints the configuration).
    Test {
        dump: bool,
    },
    Demo {
        port: u16,
        origin_port: u16,
        /// `--explain`: tell the story of each connection on the terminal.
        explain: bool,
    },
    /// `-s`: the signal's name for kill(1).
    Signal {
        signal: &'static str,
    },
    Help,
    Version,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    /// `-c FILE`.
    pub config_file: Option<std::path::PathBuf>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub client_max_body_size: Option<String>,
    pub buffer_size: Option<String>,
    pub max_head_size: Option<String>,
    pub upstream_keepalive: Option<String>,
    pub access_log: Option<String>,
    pub worker_connections: Option<String>,
    pub buffer_sets: Option<String>,
    pub status_path: Option<String>,
    pub poll_spin_us: Option<String>,
    /// `--set name=value` pairs, in order.
    pub directives: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, UsageError> {
    let mut args = Args {
        command: Command::Proxy,
        config_file: None,
        listen: None,
        upstream: None,
        client_max_body_size: None,
        buffer_size: None,
        max_head_size: None,
        upstream_keepalive: None,
        access_log: None,
        worker_connections: None,
        buffer_sets: None,
        status_path: None,
        poll_spin_us: None,
        directives: Vec::new(),
    };
    let mut demo_ports = (8080u16, 3000u16);
    let mut demo = false;
    let mut explain = false;
    let mut argv = argv.into_iter().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = |name: &str| {
            argv.next()
                .ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "demo" if !demo => demo = true,
            "-h" | "--help" => args.command = Command::Help,
            "-c" => args.config_file = Some(value("-c")?.into()),
            "-t" => args.command = Command::Test { dump: false },
            "-T" => args.command = Command::Test { dump: true },
            "-s" => {
                let signal = match value("-s")?.as_str() {
                    "quit" => "QUIT",
                    "stop" => "TERM",
                    "reopen" => "USR1",
                    "reload" => "HUP",
                    other => return Err(UsageError(format!("invalid option \"-s {other}\""))),
                };
                args.command = Command::Signal { signal };
            }
            "-v" | "--version" => args.command = Command::Version,
            "--listen" => args.listen = Some(value("--listen")?),
            "--upstream" => args.upstream = Some(value("--upstream")?),
            "--client-max-body-size" => args.client_max_body_size = Some(value(&flag)?),
            "--buffer-size" => args.buffer_size = Some(value(&flag)?),
            "--max-head-size" => args.max_head_size = Some(value(&flag)?),
            "--upstream-keepalive" => args.upstream_keepalive = Some(value(&flag)?),
            "--access-log" => args.access_log = Some(value(&flag)?),
            "--worker-connections" => args.worker_connections = Some(value(&flag)?),
            "--buffer-sets" => args.buffer_sets = Some(value(&flag)?),
            "--status-path" => args.status_path = Some(value(&flag)?),
            "--poll-spin-us" => args.poll_spin_us = Some(value(&flag)?),
            "--set" => args.directives.push(value(&flag)?),
            "--port" if demo => demo_ports.0 = parse_port(&value(&flag)?)?,
            "--origin-port" if demo => demo_ports.1 = parse_port(&value(&flag)?)?,
            "--explain" if demo => explain = true,
            other => {
                return Err(UsageError(format!(
                    "unknown argument \"{other}\" (see ferry --help)"
                )))
            }
        }
    }
    if demo && args.command == Command::Proxy {
        args.command = Command::Demo {
            port: demo_ports.0,
            origin_port: demo_ports.1,
            explain,
        };
    }
    Ok(args)
}

fn parse_port(text: &str) -> Result<u16, UsageError> {
    text.parse()
        .map_err(|_| UsageError(format!("invalid port \"{text}\"")))
}

/// `IP:PORT` or `NAME:PORT` (resolved now, IPv4 first, as nginx resolves
/// names in its configuration at start-up).
fn parse_addr(flag: &str, text: &str) -> Result<SocketAddr, UsageError> {
    crate::config::directives::resolve_address(text).ok_or_else(|| {
        UsageError(format!(
            "invalid address \"{text}\" in {flag}: expected HOST:PORT, like 127.0.0.1:8080, localhost:8080 or [::1]:8080"
        ))
    })
}

fn parse_size_flag(flag: &str, text: &str) -> Result<u64, UsageError> {
    parse_size(text).ok_or_else(|| UsageError(format!("invalid size \"{text}\" in {flag}")))
}

impl Args {
    /// Validates the flags over `base`, the configuration file's settings.
    pub fn into_config(self, base: Config) -> Result<Config, UsageError> {
        let mut config = base;
        if let Command::Demo {
            port, origin_port, ..
        } = self.command
        {
            config.simplify(
                Some(SocketAddr::from(([127, 0, 0, 1], port))),
                Some(SocketAddr::from(([127, 0, 0, 1], origin_port))),
            );
        }
        let listen = self
            .listen
            .as_deref()
            .map(|l| parse_addr("--listen", l))
            .transpose()?;
        let upstream = self
            .upstream
            .as_deref()
            .map(|u| parse_addr("--upstream", u))
            .transpose()?;
        if listen.is_some() || upstream.is_some() {
            config.simplify(listen, upstream);
        }
        if let Some(size) = &self.client_max_body_size {
            let size = parse_size_flag("--client-max-body-size", size)?;
            config.set_settings(|s| s.client_max_body_size = size);
        }
        if let Some(size) = &self.max_head_size {
            let size = parse_size_flag("--max-head-size", size)? as usize;
            config.set_settings(|s| s.max_head = size);
        }
        if let Some(size) = &self.buffer_size {
            config.buffer_size = parse_size_flag("--buffer-size", size)? as usize;
        }
        let max_head = config.http.max_head;
        if max_head < 256 || config.buffer_size < max_head {
            return Err(UsageError(format!(
                "--buffer-size ({}) must hold a whole head (--max-head-size {max_head}, at least 256)",
                config.buffer_size
            )));
        }
        let largest_response_head = std::iter::once(&config.http)
            .chain(config.servers.iter().flat_map(|s| {
                std::iter::once(&s.settings).chain(s.locations.iter().map(|l| &l.settings))
            }))
            .filter_map(|s| s.max_response_head)
            .max();
        if let Some(size) = largest_response_head.filter(|size| *size > config.buffer_size) {
            return Err(UsageError(format!(
                "\"proxy_buffer_size\" {size} is larger than ferry's buffer ({} bytes): \
                 run ferry with --buffer-size {size}",
                config.buffer_size
            )));
        }
        if let Some(n) = &self.upstream_keepalive {
            let n: usize = n.parse().map_err(|_| {
                UsageError(format!("invalid number \"{n}\" in --upstream-keepalive"))
            })?;
            for group in &mut config.upstreams {
                group.keepalive = Some(n);
            }
        }
        let count = |flag: &str, text: &Option<String>| -> Result<Option<usize>, UsageError> {
            text.as_deref()
                .map(|n| {
                    n.parse::<usize>()
                        .map_err(|_| UsageError(format!("invalid number \"{n}\" in {flag}")))
                })
                .transpose()
        };
        if let Some(n) = count("--worker-connections", &self.worker_connections)? {
            config.worker_connections = n;
        }
        if let Some(n) = count("--buffer-sets", &self.buffer_sets)? {
            config.max_buffer_sets = n;
        }
        config.status_path = self.status_path.clone();
        if let Some(n) = count("--poll-spin-us", &self.poll_spin_us)? {
            // Beyond a millisecond spinning is no longer a short wait.
            config.poll_spin = std::time::Duration::from_micros(n.min(1000) as u64);
        }
        for directive in &self.directives {
            let (name, value) = directive.split_once('=').ok_or_else(|| {
                UsageError(format!("--set needs DIRECTIVE=VALUE, got \"{directive}\""))
            })?;
            config
                .set_directive(name.trim(), value.trim())
                .map_err(UsageError)?;
        }
        if config.worker_connections < 2 || config.max_buffer_sets == 0 {
            return Err(UsageError(
                "worker_connections must be at least 2 and --buffer-sets at least 1".into(),
            ));
        }
        match self.access_log.as_deref() {
            None => {}
            Some("stdout") => config.set_settings(|s| s.access_log = AccessLogTarget::Stdout),
            Some("off") => config.set_settings(|s| s.access_log = AccessLogTarget::Off),
            Some(other) => {
                return Err(UsageError(format!(
                    "invalid --access-log \"{other}\": stdout or off"
                )))
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        std::iter::once("ferry")
            .chain(line.split_whitespace())
            .map(String::from)
            .collect()
    }

    #[test]
    fn defaults_are_the_seed_setup() {
        let config = parse(argv(""))
            .unwrap()
            .into_config(Config::default())
            .unwrap();
        let listen: Vec<SocketAddr> = config.listen_addrs().collect();
        assert_eq!(listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(
            config.first_upstream(),
            Some("127.0.0.1:3000".parse::<SocketAddr>().unwrap().into())
        );
        assert_eq!(config.http.client_max_body_size, 1 << 20);
    }

    #[test]
    fn flags_override() {
        let config = parse(argv(
            "--listen [::1]:0 --upstream 127.0.0.1:9 --client-max-body-size 0 --access-log off",
        ))
        .unwrap()
        .into_config(Config::default())
        .unwrap();
        let listen: Vec<SocketAddr> = config.listen_addrs().collect();
        assert_eq!(listen, vec!["[::1]:0".parse().unwrap()]);
        assert_eq!(
            config.servers[0].locations[0].settings.client_max_body_size,
            0
        );
        assert_eq!(config.http.access_log, AccessLogTarget::Off);
    }

    #[test]
    fn demo_ports() {
        let args = parse(argv("demo --port 9000 --origin-port 9001")).unwrap();
        assert_eq!(
            args.command,
            Command::Demo {
                port: 9000,
                origin_port: 9001,
                explain: false
            }
        );
    }

    #[test]
    fn errors_are_one_line() {
        let error = parse(argv("--listen nowhere"))
            .unwrap()
            .into_config(Config::default())
            .unwrap_err();
        assert!(error.0.contains("invalid address \"nowhere\""));
        assert!(parse(argv("--bogus")).is_err());
        assert!(parse(argv("--listen")).is_err());
    }
}
