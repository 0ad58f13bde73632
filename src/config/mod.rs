//! The validated, typed settings the event loop runs with, and how they are
//! read from an nginx.conf.
//!
//! Two stages, as in ripgrep's flags: [`parse`] turns the text (through
//! [`lexer`]) into a tree of directives with file:line spans, and
//! [`directives`] checks that tree against what ferry supports and fills a
//! [`Config`] over nginx's defaults. Command-line flags ([`crate::cli`])
//! apply on top. Field names follow nginx's directives.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

pub mod directives;
pub mod lexer;
pub mod parse;
pub mod rewrite;
mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::units::{parse_duration, parse_seconds, parse_size};
pub use crate::upstream::group::{Balance, UpstreamGroup, UpstreamServer};
pub use crate::variables::MapDef;
pub use directives::stream::StreamServerConfig;
pub use parse::{ConfigError, SourceFile};
pub use rewrite::{
    Condition, ConditionTest, FileTest, Rewrite, RewriteFlag, ScriptBuffers, ScriptOutcome,
    ScriptStep,
};
pub use settings::{
    access_allowed, access_verdict, builtin_log_formats, next_upstream, AccessLogTarget,
    AccessRule, AddHeader, ErrorPage, ErrorPageStatus, ErrorPageTarget, LimitExcept, Limits,
    Settings, UpstreamBody, COMBINED_FORMAT, UPSTREAM_FORMAT,
};

use crate::variables::Template;

/// What `ferry` runs without `-c`: the seed post's setup, as an nginx.conf
/// (`ferry -T` prints it).
pub const EMBEDDED_DEFAULT: &str = "\
# ferry's embedded default: the seed post's setup.
events {
    worker_connections 512;
}

http {
    server {
        listen 127.0.0.1:8080;

        location / {
            proxy_pass http://127.0.0.1:3000;
        }
    }
}
";

/// How the embedded default is named in messages.
pub const EMBEDDED_NAME: &str = "(embedded default)";

/// `error_log FILE LEVEL`: a file (or stderr) and an env_logger filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLogConfig {
    pub path: Option<PathBuf>,
    pub filter: String,
}

/// A listening socket's options, as `listen` parameters set them; `None`:
/// the system's (or, for the backlog, nginx's 511).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenOptions {
    pub backlog: Option<i32>,
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    /// `[::]` addresses are IPv6-only unless `ipv6only=off`.
    pub ipv6only: Option<bool>,
    /// `so_keepalive=on|off|IDLE:INTERVAL:COUNT`, inherited by the accepted
    /// sockets.
    pub keepalive: Option<KeepaliveProbes>,
    /// `SO_REUSEPORT` even with one worker (several workers always set it).
    pub reuseport: bool,
}

/// `so_keepalive`: on or off, and the probes' timing when given (seconds,
/// seconds, count; each optional, as in nginx).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveProbes {
    pub on: bool,
    pub idle: Option<u32>,
    pub interval: Option<u32>,
    pub count: Option<u32>,
}

/// One listening address (`listen`, merged over every server that names
/// it): how its sockets are opened, what its clients speak first, and
/// which servers it serves, for routing by `Host`.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// Clients speak TLS (`listen … ssl`).
    pub ssl: bool,
    /// Connections open with a PROXY protocol header (`listen …
    /// proxy_protocol`).
    pub proxy_protocol: bool,
    /// The socket's options (`backlog=`, `rcvbuf=`, `sndbuf=`,
    /// `ipv6only=`, `so_keepalive=`, `reuseport`).
    pub options: ListenOptions,
    pub servers: Vec<usize>,
    /// `listen … default_server`, else the first server with this address.
    pub default_server: usize,
    /// A `stream` server's address: that server (an index into
    /// `Config::stream_servers`), and no HTTP on it.
    pub stream: Option<usize>,
}

/// A `server_name` entry, by nginx's kinds.
#[derive(Clone, Debug)]
pub enum ServerName {
    Exact(String),
    /// `*.example.com` (or `.example.com`, which also matches the bare name):
    /// stored as the suffix `.example.com`.
    LeadingWildcard {
        suffix: String,
        bare_too: bool,
    },
    /// `www.example.*`: stored as the prefix `www.example.`.
    TrailingWildcard(String),
    Regex(regex_lite::Regex),
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub names: Vec<ServerName>,
    /// Server-level settings: used before a location is known.
    pub settings: Settings,
    pub locations: Vec<LocationConfig>,
    /// Indexes into `locations` of the server's own (not nested) locations.
    pub top_level: Vec<usize>,
    /// The server's rewrite-module lines (`if`, `rewrite`, `break`), run
    /// before a location is chosen.
    pub script: Vec<ScriptStep>,
    /// Its certificates and TLS settings, when a `listen … ssl` serves it.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `ssl_reject_handshake on`: a TLS client that lands on this server
    /// (by its name, or as the address's default) is refused in the
    /// handshake, with or without certificates.
    #[cfg(feature = "tls")]
    pub reject_handshake: bool,
}

/// How a `location` matches a path.
#[derive(Clone, Debug)]
pub enum LocationMatch {
    /// `location = /path`.
    Exact(String),
    /// `location /prefix` or, with `stops_regex`, `location ^~ /prefix`.
    Prefix { path: String, stops_regex: bool },
    /// `location ~ re` / `location ~* re` (case-insensitive).
    Regex(regex_lite::Regex),
    /// `location @name`: never matched by a path, only reached by name
    /// (`try_files … @name`).
    Named(String),
}

#[derive(Clone, Debug)]
pub struct LocationConfig {
    pub matcher: LocationMatch,
    pub settings: Settings,
    /// The location's rewrite-module lines, run in order before its action
    /// (up to its own `return`, which is the action).
    pub script: Vec<ScriptStep>,
    pub action: Action,
    /// `internal`: a client's own request for it is 404; only internal
    /// redirects reach its action.
    pub internal: bool,
    /// Indexes of locations nested in this one.
    pub nested: Vec<usize>,
}

/// How a `proxy_pass https://` location speaks TLS to its servers
/// (`crate::tls::upstream`); without the `tls` feature there is none.
#[cfg(feature = "tls")]
pub type UpstreamTlsRef = std::sync::Arc<crate::tls::upstream::UpstreamTls>;
#[cfg(not(feature = "tls"))]
pub type UpstreamTlsRef = std::convert::Infallible;

/// What a location does with a request.
#[derive(Clone, Debug)]
pub enum Action {
    /// `proxy_pass`: to upstream group `group`; with `uri`, the part of the
    /// path the location matched is replaced by it (nginx's rule); with
    /// `tls`, over TLS (`https://`).
    Proxy {
        group: usize,
        uri: Option<String>,
        tls: Option<UpstreamTlsRef>,
        /// `proxy_pass http://$var`: the group is the `upstream` block the
        /// rendered name names, per request (`group` is unused).
        by_name: Option<crate::variables::Template>,
    },
    /// `return CODE [TEXT|URL]`; `template` when the text has variables
    /// (`return 301 https://$host$request_uri`), rendered per request.
    Return {
        status: u16,
        text: Option<String>,
        template: Option<crate::variables::Template>,
    },
    /// `stub_status`: nginx's connection and request counters.
    StubStatus,
    /// None of these: the location serves files (`crate::files`).
    Static,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to accept clients on, each once (`listen`); a
    /// listener's position here is its token and the index connections
    /// keep.
    pub listen: Vec<ListenConfig>,
    pub servers: Vec<ServerConfig>,
    pub upstreams: Vec<UpstreamGroup>,
    /// The `stream` block's servers (TCP proxying, `connection::stream`).
    pub stream_servers: Vec<StreamServerConfig>,
    /// http-level settings; `--set` changes them everywhere.
    pub http: Settings,
    /// Capacity of each direction's ring buffer (nginx: `proxy_buffer_size`).
    pub buffer_size: usize,
    /// `error_log`, when the configuration sets one.
    pub error_log: Option<ErrorLogConfig>,
    /// `pid`: where the running ferry writes its process id, for `-s`.
    pub pid: Option<PathBuf>,
    /// `user USER [GROUP]`, resolved: whom ferry serves as once it has
    /// bound and opened everything (`None` without the line, or when not
    /// started as root).
    pub user: Option<crate::privileges::Identity>,
    /// `worker_shutdown_timeout`: how long a graceful shutdown may wait
    /// for exchanges under way (none: as long as they take).
    pub shutdown_timeout: Option<Duration>,
    /// Event loops, each on its own thread (`worker_processes`).
    pub worker_processes: usize,
    /// `worker_cpu_affinity auto`: worker N runs on the Nth CPU this
    /// process may use.
    pub worker_cpu_affinity: bool,
    /// Client and upstream connections together (`worker_connections`).
    pub worker_connections: usize,
    /// Buffer sets (2 x buffer_size each) lent at once; a connection that
    /// finds none waits for one.
    pub max_buffer_sets: usize,
    /// A path answered by ferry itself with its counters, for tests and
    /// debugging; off unless set.
    pub status_path: Option<String>,
    /// How long the loop keeps polling without sleeping after its last
    /// event (`--poll-spin-us`; zero: it sleeps at once). See
    /// `EventLoop::turn`.
    pub poll_spin: Duration,
    /// `log_format` definitions, the built-in ones first.
    pub log_formats: Vec<(String, Template)>,
    /// `map` blocks, in file order; `map_names` are their variables' names
    /// (without `$`), which templates compile against.
    pub maps: Vec<MapDef>,
    pub map_names: Vec<String>,
    /// The `set` slot of `$limit_rate`, when some `set` gives it a value:
    /// that value paces the response (nginx's settable variable).
    pub limit_rate_set: Option<usize>,
    /// `limit_req_zone` and `limit_conn_zone`, shared by every worker.
    pub limit_zones: Vec<std::sync::Arc<crate::limits::LimitZone>>,
    /// The TLS settings `proxy_pass https://` locations use, each distinct
    /// set once (two locations with the same lines share sessions).
    pub upstream_tls: Vec<UpstreamTlsRef>,
    /// Where relative paths (`root`, `alias`) start: the main
    /// configuration file's directory, as nginx's are from its prefix.
    pub prefix: PathBuf,
}

impl Config {
    /// One server on `listen`, one `location /` proxying to `upstream`: the
    /// embedded default, and what `--listen`/`--upstream` ask for.
    pub fn simple(
        listen: Vec<SocketAddr>,
        upstream: impl Into<crate::upstream::addr::ServerAddr>,
    ) -> Config {
        let http = Settings::default();
        let listen = listen
            .into_iter()
            .map(|addr| ListenConfig {
                addr,
                ssl: false,
                proxy_protocol: false,
                options: ListenOptions::default(),
                servers: vec![0],
                default_server: 0,
                stream: None,
            })
            .collect();
        Config {
            stream_servers: Vec::new(),
            limit_zones: Vec::new(),
            listen,
            servers: vec![ServerConfig {
                names: Vec::new(),
                settings: http.clone(),
                locations: vec![LocationConfig {
                    script: Vec::new(),
                    matcher: LocationMatch::Prefix {
                        path: "/".into(),
                        stops_regex: false,
                    },
                    settings: http.clone(),
                    action: Action::Proxy {
                        group: 0,
                        uri: None,
                        tls: None,
                        by_name: None,
                    },
                    internal: false,
                    nested: Vec::new(),
                }],
                script: Vec::new(),
                top_level: vec![0],
                #[cfg(feature = "tls")]
                tls: None,
                #[cfg(feature = "tls")]
                reject_handshake: false,
            }],
            upstreams: vec![UpstreamGroup::single(upstream.into())],
            http,
            buffer_size: 16 * 1024,
            error_log: None,
            pid: None,
            shutdown_timeout: None,
            worker_processes: 1,
            worker_cpu_affinity: false,
            worker_connections: 512,
            max_buffer_sets: 512,
            status_path: None,
            poll_spin: Duration::ZERO,
            log_formats: builtin_log_formats(),
            upstream_tls: Vec::new(),
            prefix: PathBuf::from("."),
            maps: Vec::new(),
            map_names: Vec::new(),
            limit_rate_set: None,
            user: None,
        }
    }

    /// Replaces the routing with a single server and location (flags), keeping
    /// the process-wide settings and the http-level settings.
    pub fn simplify(&mut self, listen: Option<SocketAddr>, upstream: Option<SocketAddr>) {
        let listen = listen.map_or_else(|| self.listen_addrs().collect(), |addr| vec![addr]);
        let upstream = upstream
            .map(crate::upstream::addr::ServerAddr::from)
            .or_else(|| {
                self.upstreams
                    .first()
                    .and_then(|g| g.servers.first())
                    .map(|s| s.addr)
            })
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)).into());
        let mut simple = Config::simple(listen, upstream);
        let keepalive = self
            .upstreams
            .first()
            .map(|g| (g.keepalive, g.keepalive_timeout, g.keepalive_requests));
        if let (Some((keepalive, timeout, requests)), Some(group)) =
            (keepalive, simple.upstreams.first_mut())
        {
            group.keepalive = keepalive;
            group.keepalive_timeout = timeout;
            group.keepalive_requests = requests;
        }
        simple.set_settings(|s| *s = self.http.clone());
        self.listen = simple.listen;
        self.servers = simple.servers;
        self.upstreams = simple.upstreams;
    }

    /// Proxies every request to `upstream` (the demo's origin).
    pub fn set_upstream(&mut self, upstream: SocketAddr) {
        self.simplify(None, Some(upstream));
    }

    /// Applies `change` to the settings of the http level, every server and
    /// every location.
    pub fn set_settings(&mut self, change: impl Fn(&mut Settings)) {
        change(&mut self.http);
        for server in &mut self.servers {
            change(&mut server.settings);
            for location in &mut server.locations {
                change(&mut location.settings);
            }
        }
    }

    /// Every access log target in use, each once.
    pub fn access_logs(&self) -> Vec<AccessLogTarget> {
        let mut targets: Vec<AccessLogTarget> = Vec::new();
        let all = std::iter::once(&self.http.access_log).chain(self.servers.iter().flat_map(|s| {
            std::iter::once(&s.settings.access_log)
                .chain(s.locations.iter().map(|l| &l.settings.access_log))
        }));
        for target in all {
            if *target != AccessLogTarget::Off && !targets.contains(target) {
                targets.push(target.clone());
            }
        }
        targets
    }

    pub fn location(&self, server: usize, location: usize) -> Option<&LocationConfig> {
        self.servers.get(server)?.locations.get(location)
    }

    /// A server's first plain name (`$server_name`), or "".
    pub fn server_name(&self, server: usize) -> &str {
        self.servers
            .get(server)
            .and_then(|s| {
                s.names.iter().find_map(|name| match name {
                    ServerName::Exact(name) => Some(name.as_str()),
                    _ => None,
                })
            })
            .unwrap_or("")
    }

    /// The addresses ferry accepts clients on, in `listen`'s order.
    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listen.iter().map(|l| l.addr)
    }

    /// The position in `listen` of `addr`, when ferry listens on it.
    pub fn listen_position(&self, addr: SocketAddr) -> Option<usize> {
        self.listen.iter().position(|l| l.addr == addr)
    }

    /// No http servers, listeners or upstreams (a file with only a
    /// `stream` block).
    pub fn clear_servers(&mut self) {
        self.servers.clear();
        self.upstreams.clear();
        self.listen.clear();
    }

    /// A server's own settings; the http level's for an unknown index.
    pub fn server_settings(&self, server: usize) -> &Settings {
        self.servers.get(server).map_or(&self.http, |s| &s.settings)
    }

    /// What ferry proxies to, for its start-up line: the one server's
    /// address; a group's name and every server (or, past a handful, how
    /// many); several groups by name and size.
    pub fn upstream_summary(&self) -> String {
        const LISTED: usize = 4;
        let group_text = |group: &UpstreamGroup| {
            let servers: Vec<String> = group.servers.iter().map(|s| s.addr.to_string()).collect();
            match servers.len() {
                0 => format!("upstream \"{}\" (no servers)", group.name),
                n if n <= LISTED => format!("upstream \"{}\" ({})", group.name, servers.join(", ")),
                n => format!("upstream \"{}\" ({n} servers)", group.name),
            }
        };
        match self.upstreams.as_slice() {
            [] => "no upstream".to_string(),
            [group]
                if group.servers.len() == 1 && group.name == group.servers[0].addr.to_string() =>
            {
                group.name.clone()
            }
            [group] => group_text(group),
            groups if groups.len() <= LISTED => {
                let named: Vec<String> = groups.iter().map(group_text).collect();
                format!("{} upstream groups: {}", groups.len(), named.join("; "))
            }
            groups => format!("{} upstream groups", groups.len()),
        }
    }

    pub fn first_upstream(&self) -> Option<crate::upstream::addr::ServerAddr> {
        self.upstreams
            .first()
            .and_then(|g| g.servers.first())
            .map(|s| s.addr)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::simple(
            vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            SocketAddr::from(([127, 0, 0, 1], 3000)),
        )
    }
}

/// A configuration read from a file (or the embedded default), with the
/// files it came from, for `ferry -T`.
pub struct Loaded {
    pub config: Config,
    pub files: Vec<SourceFile>,
}

/// Reads and validates `path`, or the embedded default when `None`.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (tree, files) = match path {
        Some(path) => parse::parse_file(path)?,
        None => parse::parse_text(EMBEDDED_NAME, EMBEDDED_DEFAULT)?,
    };
    let prefix = path.and_then(Path::parent).unwrap_or(Path::new("."));
    let config = directives::build_with_prefix(&tree, prefix)?;
    Ok(Loaded { config, files })
}

impl Config {
    /// Sets one nginx directive by name, as `--set name=value` does.
    pub fn set_directive(&mut self, name: &str, value: &str) -> Result<(), String> {
        let duration =
            || parse_duration(value).ok_or_else(|| format!("invalid time \"{value}\" in {name}"));
        let size =
            || parse_size(value).ok_or_else(|| format!("invalid size \"{value}\" in {name}"));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("invalid number \"{value}\" in {name}"))
        };
        let set = |config: &mut Config, change: &dyn Fn(&mut Settings)| config.set_settings(change);
        match name {
            "client_header_timeout" => {
                let value = duration()?;
                set(self, &|s| s.client_header_timeout = value)
            }
            "client_body_timeout" => {
                let value = duration()?;
                set(self, &|s| s.client_body_timeout = value)
            }
            "keepalive_timeout" => {
                let value = duration()?;
                set(self, &|s| s.keepalive_timeout = value)
            }
            "send_timeout" => {
                let value = duration()?;
                set(self, &|s| s.send_timeout = value)
            }
            "proxy_connect_timeout" => {
                let value = duration()?;
                set(self, &|s| s.proxy_connect_timeout = value)
            }
            "proxy_send_timeout" => {
                let value = duration()?;
                set(self, &|s| s.proxy_send_timeout = value)
            }
            "proxy_read_timeout" => {
                let value = duration()?;
                set(self, &|s| s.proxy_read_timeout = value)
            }
            "lingering_time" => {
                let value = duration()?;
                set(self, &|s| s.lingering_time = value)
            }
            "lingering_timeout" => {
                let value = duration()?;
                set(self, &|s| s.lingering_timeout = value)
            }
            "keepalive_requests" => {
                let value = u32::try_from(number()?).map_err(|_| format!("{name} is too large"))?;
                set(self, &|s| s.keepalive_requests = value)
            }
            "client_max_body_size" => {
                let value = size()?;
                set(self, &|s| s.client_max_body_size = value)
            }
            "upstream_keepalive_timeout" => {
                let value = duration()?;
                for group in &mut self.upstreams {
                    group.keepalive_timeout = value;
                }
            }
            "worker_connections" => self.worker_connections = number()?,
            _ => return Err(format!("unknown directive \"{name}\" in --set")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_by_name() {
        let mut config = Config::default();
        config.set_directive("proxy_read_timeout", "2s").unwrap();
        assert_eq!(
            config.servers[0].locations[0].settings.proxy_read_timeout,
            Duration::from_secs(2)
        );
        config.set_directive("keepalive_requests", "3").unwrap();
        assert_eq!(config.http.keepalive_requests, 3);
        assert!(config.set_directive("gzip", "on").is_err());
        assert!(config.set_directive("send_timeout", "soon").is_err());
    }
}
