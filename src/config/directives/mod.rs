//! The directives ferry understands, grouped by the nginx module they come
//! from, as nginx's own `ngx_command_t` arrays are: each file here holds one
//! module's table (name, contexts, arity, handler) and its handlers.
//!
//! | file | nginx module |
//! |---|---|
//! | `core.rs` | core and events: workers, pid, user, error_log |
//! | `http.rs` | ngx_http_core_module: server, location, client and keep-alive limits (`listen.rs`: the addresses and their socket options) |
//! | `proxy.rs` | ngx_http_proxy_module, with `proxy_ssl_*` |
//! | `upstream.rs` | ngx_http_upstream_module and its balancers |
//! | `rewrite.rs` | ngx_http_rewrite_module (`return`) |
//! | `log.rs` | ngx_http_log_module |
//! | `map.rs` | ngx_http_map_module |
//! | `headers.rs` | ngx_http_headers_module |
//! | `access.rs` | ngx_http_access_module |
//! | `ssl.rs` | ngx_http_ssl_module (read by `crate::tls::config`) |
//! | `status.rs` | ngx_http_stub_status_module |
//! | `charset.rs` | ngx_http_charset_module (the name only, no recoding) |
//! | `static_files.rs` | ngx_http_static_module, index, autoindex, and the core module's `root`, `alias`, `try_files`, `types` (`expires` too) |
//! | `realip.rs` | ngx_http_realip_module |
//! | `auth.rs` | ngx_http_auth_basic_module, and the core module's `satisfy` |
//! | `gzip.rs` | ngx_http_gzip_module, and the core module's `gzip_*` lines |
//! | `limit.rs` | ngx_http_limit_req_module, ngx_http_limit_conn_module, `limit_rate` |
//!
//! `inherited.rs` holds what a level sets for requests and how levels merge.
//!
//! Loading runs in nginx's order: `check` walks the tree and refuses what
//! no table has, what is out of its context or has the wrong number of
//! arguments; then [`build`] applies each directive's handler. A handler
//! either sets a per-request value inherited http -> server -> location
//! (`Handler::Setting`), sets a process-wide value (`Handler::Main`), is
//! read where the structure it belongs to is built (servers, locations,
//! upstream blocks), is read by another module, or is accepted with no effect
//! on a proxy that streams (each with the reason, for the docs).
//!
//! Messages follow nginx's wording, so that a file either means the same to
//! both or is refused with the message nginx would print: `unknown directive
//! "x"`, `"x" directive is not allowed here`, `invalid number of arguments in
//! "x" directive`, `"x" directive is duplicate`, `host not found in upstream
//! "x"`. Directives nginx accepts but ferry does not implement yet are
//! refused with a message that says so, never ignored: a file ferry runs must
//! mean what it means to nginx.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

mod access;
mod auth;
mod charset;
mod core;
mod error_pages;
mod gzip;
mod headers;
mod http;
mod inherited;
mod limit;
mod listen;
mod log;
mod map;
mod proxy;
mod proxy_rewrites;
mod realip;
mod rewrite;
mod ssl;
mod static_files;
mod status;
pub mod stream;
mod upstream;

use std::time::Duration;

use super::parse::{ConfigError, Directive};
use super::{parse_duration, parse_size, Config};

use inherited::Inherited;

pub use crate::config::settings::CHARSET_TYPES;
pub use upstream::resolve_address;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Main,
    Events,
    Http,
    Server,
    Location,
    Upstream,
    /// The `stream` block and its `server` and `upstream` blocks: a
    /// namespace of their own (`stream.rs`).
    Stream,
    StreamServer,
    StreamUpstream,
}

impl Context {
    fn is_stream(self) -> bool {
        matches!(
            self,
            Context::Stream | Context::StreamServer | Context::StreamUpstream
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Arity {
    Exactly(usize),
    Between(usize, usize),
    AtLeast(usize),
}

impl Arity {
    fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::Between(low, high) => (low..=high).contains(&n),
            Arity::AtLeast(k) => n >= k,
        }
    }
}

/// What loading does with a directive.
#[derive(Clone, Copy)]
enum Handler {
    /// Sets a per-request value at its level (http, server, location),
    /// inherited inward unless set again.
    Setting(fn(&Directive, &Config, &mut Inherited) -> Result<(), ConfigError>),
    /// Sets a process-wide value (main and events context).
    Main(fn(&Directive, &mut Config) -> Result<(), ConfigError>),
    /// Read where what it shapes is built: blocks, `listen`, `server_name`,
    /// `proxy_pass`, `return`, an upstream's `server` lines.
    Structure,
    /// Read by another part of ferry (`crate::tls` for the `ssl_*` lines).
    Elsewhere,
    /// Accepted, and changes nothing ferry does: the value is checked, and
    /// `why` says why it does not matter (docs/configuration.md).
    NoEffect {
        check: fn(&Directive) -> Result<(), ConfigError>,
        why: &'static str,
    },
    /// nginx has it, ferry does not yet: refused as such, wherever it is,
    /// rather than as an unknown directive.
    NotYet,
}

/// One directive: nginx's `ngx_command_t`.
struct Spec {
    name: &'static str,
    contexts: &'static [Context],
    arity: Arity,
    block: bool,
    /// May appear more than once at one level (`"x" directive is
    /// duplicate` otherwise, as nginx says for single-value slots).
    repeatable: bool,
    handler: Handler,
    /// For a directive kept only to be checked as nginx checks it: why it
    /// changes nothing ferry does (docs/configuration.md).
    no_effect: Option<&'static str>,
}

use Context::{Events, Http, Location, Main, Server, Upstream};

const HSL: &[Context] = &[Http, Server, Location];
const HS: &[Context] = &[Http, Server];

const fn spec(
    name: &'static str,
    contexts: &'static [Context],
    arity: Arity,
    handler: Handler,
) -> Spec {
    Spec {
        name,
        contexts,
        arity,
        block: false,
        repeatable: false,
        handler,
        no_effect: None,
    }
}

/// An nginx directive ferry refuses as "not supported yet".
const fn not_yet(name: &'static str) -> Spec {
    Spec {
        name,
        contexts: &[],
        arity: Arity::AtLeast(0),
        block: false,
        repeatable: true,
        handler: Handler::NotYet,
        no_effect: None,
    }
}

impl Spec {
    /// Takes a `{ … }` block.
    const fn block(mut self) -> Spec {
        self.block = true;
        self
    }

    /// Kept only to be checked as nginx checks it; `why` it does nothing.
    const fn no_effect(mut self, why: &'static str) -> Spec {
        self.no_effect = Some(why);
        self
    }

    /// May be repeated at one level.
    const fn repeatable(mut self) -> Spec {
        self.repeatable = true;
        self
    }
}

/// Every module's table. Names are unique across them.
const MODULES: &[(&str, &[Spec])] = &[
    ("core", core::DIRECTIVES),
    ("http", http::DIRECTIVES),
    ("proxy", proxy::DIRECTIVES),
    ("upstream", upstream::DIRECTIVES),
    ("rewrite", rewrite::DIRECTIVES),
    ("log", log::DIRECTIVES),
    ("map", map::DIRECTIVES),
    ("headers", headers::DIRECTIVES),
    ("access", access::DIRECTIVES),
    ("ssl", ssl::DIRECTIVES),
    ("status", status::DIRECTIVES),
    ("static", static_files::DIRECTIVES),
    ("charset", charset::DIRECTIVES),
    ("realip", realip::DIRECTIVES),
    ("auth", auth::DIRECTIVES),
    ("gzip", gzip::DIRECTIVES),
    ("limit", limit::DIRECTIVES),
];

fn find_spec(name: &str) -> Option<&'static Spec> {
    MODULES
        .iter()
        .flat_map(|(_, specs)| specs.iter())
        .find(|spec| spec.name == name)
}

/// Checks that every directive exists, is allowed where it is, has the right
/// number of arguments and the right shape (block or not).
fn check(directives: &[Directive], context: Context) -> Result<(), ConfigError> {
    for directive in directives {
        let name = directive.name.as_str();
        // `server` is a block in http (and stream) and a simple directive
        // in upstream.
        let is_server_block = name == "server" && matches!(context, Http | Context::Stream);
        let spec = if context.is_stream() {
            stream::find(name)
        } else {
            find_spec(name)
        };
        let Some(spec) = spec else {
            return Err(ConfigError::at(
                format!("unknown directive \"{name}\""),
                directive.location(),
            ));
        };
        if let Handler::NotYet = spec.handler {
            return Err(ConfigError::at(
                format!("\"{name}\" directive is not supported yet"),
                directive.location(),
            ));
        }
        if !spec.contexts.contains(&context) {
            return Err(ConfigError::at(
                format!("\"{name}\" directive is not allowed here"),
                directive.location(),
            ));
        }
        let wants_block = spec.block || is_server_block;
        match (&directive.block, wants_block) {
            (None, true) => {
                return Err(ConfigError::at(
                    format!("directive \"{name}\" has no opening \"{{\""),
                    directive.location(),
                ))
            }
            (Some(_), false) => {
                return Err(ConfigError::at(
                    format!("directive \"{name}\" is not terminated by \";\""),
                    directive.location(),
                ))
            }
            _ => {}
        }
        let arity = if is_server_block {
            Arity::Exactly(0)
        } else {
            spec.arity
        };
        let upstream_server = matches!(context, Upstream | Context::StreamUpstream);
        if !arity.accepts(directive.args.len())
            || (name == "server" && upstream_server && directive.args.is_empty())
        {
            return Err(ConfigError::at(
                format!("invalid number of arguments in \"{name}\" directive"),
                directive.location(),
            ));
        }
        if let Some(block) = &directive.block {
            let inner = match (name, context) {
                ("stream", _) => Context::Stream,
                ("server", Context::Stream) => Context::StreamServer,
                ("upstream", Context::Stream) => Context::StreamUpstream,
                ("events", _) => Events,
                ("http", _) => Http,
                ("server", _) => Server,
                ("location", _) => Location,
                ("upstream", _) => Upstream,
                // `types { text/html html; }`: MIME types, not directives.
                _ => continue,
            };
            check(block, inner)?;
        }
    }
    Ok(())
}

/// The configuration in `tree` (a parsed file): checked, then built.
pub fn build(tree: &[Directive]) -> Result<Config, ConfigError> {
    let prefix = tree.first().and_then(|d| d.file.parent()).map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    build_with_prefix(tree, &prefix)
}

/// [`build`], with relative paths (`root`, `alias`) taken from `prefix`.
pub fn build_with_prefix(
    tree: &[Directive],
    prefix: &std::path::Path,
) -> Result<Config, ConfigError> {
    check(tree, Main)?;
    let mut config = Config {
        prefix: prefix.to_path_buf(),
        ..Config::default()
    };
    let mut http = None;
    let mut stream = None;
    for directive in tree {
        match directive.name.as_str() {
            "stream" => {
                if stream.is_some() {
                    return Err(ConfigError::at(
                        "\"stream\" directive is duplicate",
                        directive.location(),
                    ));
                }
                stream = Some(directive);
            }
            "events" => {
                for inner in directive.block.iter().flatten() {
                    apply_main(inner, &mut config)?;
                }
            }
            "http" => {
                if http.is_some() {
                    return Err(ConfigError::at(
                        "\"http\" directive is duplicate",
                        directive.location(),
                    ));
                }
                http = Some(directive);
            }
            _ => apply_main(directive, &mut config)?,
        }
    }
    match (http, stream) {
        (None, None) => {
            return Err(ConfigError::nowhere(
                "no \"http\" or \"stream\" block: ferry needs http { server { … } }",
            ))
        }
        (Some(http), _) => http::build_http(http, &mut config)?,
        // Only TCP servers: none of the default's http parts stay.
        (None, Some(_)) => config.clear_servers(),
    }
    if let Some(stream) = stream {
        stream::build_stream(stream, &mut config)?;
    }
    Ok(config)
}

/// A main or events directive: its handler, if it has one there.
fn apply_main(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    match find_spec(&directive.name).map(|spec| spec.handler) {
        Some(Handler::Main(handler)) => handler(directive, config),
        Some(Handler::NoEffect { check, .. }) => check(directive),
        _ => Ok(()),
    }
}

/// The per-request settings set directly in `block` (not in nested
/// blocks), each by its module's handler; and the checks of the
/// directives that set nothing but must be valid.
fn settings(block: &[Directive], config: &Config) -> Result<Inherited, ConfigError> {
    let mut settings = Inherited::default();
    let mut seen: Vec<&str> = Vec::new();
    for directive in block {
        let name = directive.name.as_str();
        let Some(spec) = find_spec(name) else {
            continue;
        };
        if !spec.repeatable && seen.contains(&name) {
            return Err(ConfigError::at(
                format!("\"{name}\" directive is duplicate"),
                directive.location(),
            ));
        }
        seen.push(name);
        match spec.handler {
            Handler::Setting(handler) => handler(directive, config, &mut settings)?,
            Handler::NoEffect { check, .. } => check(directive)?,
            Handler::Main(_) | Handler::Structure | Handler::Elsewhere | Handler::NotYet => {}
        }
    }
    Ok(settings)
}

/// A header name in `proxy_set_header` or `add_header` must be an RFC 9110
/// token: nothing in it can end a line or a field.
fn field_name(directive: &Directive, name: &str) -> Result<(), ConfigError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::at(
            format!(
                "invalid header name \"{}\" in \"{}\" directive",
                name.escape_debug(),
                directive.name
            ),
            directive.location(),
        ));
    }
    Ok(())
}

/// `on` or `off`, as a value.
fn flag(directive: &Directive) -> Result<bool, ConfigError> {
    on_off(directive)?;
    Ok(directive.args[0] == "on")
}

fn on_off(directive: &Directive) -> Result<(), ConfigError> {
    match directive.args[0].as_str() {
        "on" | "off" => Ok(()),
        other => Err(ConfigError::at(
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                directive.name
            ),
            directive.location(),
        )),
    }
}

fn number<T: std::str::FromStr>(directive: &Directive, index: usize) -> Result<T, ConfigError> {
    let text = &directive.args[index];
    text.parse().map_err(|_| {
        ConfigError::at(
            format!(
                "invalid number \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}

fn duration(directive: &Directive, index: usize) -> Result<Duration, ConfigError> {
    let text = &directive.args[index];
    parse_duration(text).ok_or_else(|| {
        ConfigError::at(
            format!(
                "invalid time \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}

fn size(directive: &Directive, index: usize) -> Result<u64, ConfigError> {
    let text = &directive.args[index];
    parse_size(text).ok_or_else(|| {
        ConfigError::at(
            format!(
                "invalid size \"{text}\" in \"{}\" directive",
                directive.name
            ),
            directive.location(),
        )
    })
}

/// The status of every directive of every module, as a Markdown table per
/// module: what docs/configuration.md shows (a test keeps them equal).
pub fn directive_tables() -> String {
    let mut out = String::new();
    let stream: (&str, &[Spec]) = ("stream (a namespace of its own)", stream::DIRECTIVES);
    for (module, specs) in MODULES.iter().chain(std::iter::once(&stream)) {
        out.push_str(&format!(
            "\n### {module}\n\n| directive | ferry |\n|---|---|\n"
        ));
        let mut sorted: Vec<&Spec> = specs.iter().collect();
        sorted.sort_by_key(|spec| spec.name);
        for spec in sorted {
            let status = match spec.handler {
                _ if spec.no_effect.is_some() => {
                    format!(
                        "accepted, no effect: {}",
                        spec.no_effect.unwrap_or_default()
                    )
                }
                Handler::Setting(_)
                | Handler::Main(_)
                | Handler::Structure
                | Handler::Elsewhere => "as nginx (see below where it differs)".to_string(),
                Handler::NoEffect { why, .. } => format!("accepted, no effect: {why}"),
                Handler::NotYet => "not supported yet (refused)".to_string(),
            };
            out.push_str(&format!("| `{}` | {status} |\n", spec.name));
        }
    }
    out
}

/// Checks shared by the no-effect directives: their value is still
/// nginx's kind of value, so a typo is refused as nginx refuses it.
fn check_size(directive: &Directive) -> Result<(), ConfigError> {
    size(directive, 0).map(|_| ())
}

fn check_time(directive: &Directive) -> Result<(), ConfigError> {
    duration(directive, 0).map(|_| ())
}

fn check_number(directive: &Directive) -> Result<(), ConfigError> {
    number::<u64>(directive, 0).map(|_| ())
}

fn check_nothing(_: &Directive) -> Result<(), ConfigError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_across_modules() {
        let mut names: Vec<&str> = MODULES
            .iter()
            .flat_map(|(_, specs)| specs.iter().map(|spec| spec.name))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    /// docs/configuration.md carries the tables between two markers;
    /// `FERRY_WRITE_DOCS=1 cargo test` rewrites them.
    #[test]
    fn the_docs_list_every_directive_as_the_tables_say() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let text = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- directives:begin -->\n", "<!-- directives:end -->");
        let start = text.find(begin).expect("begin marker") + begin.len();
        let stop = text.find(end).expect("end marker");
        let generated = directive_tables();
        if text[start..stop] != generated && std::env::var_os("FERRY_WRITE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &text[..start], &text[stop..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert!(
            text[start..stop] == generated,
            "docs/configuration.md is stale: FERRY_WRITE_DOCS=1 cargo test --lib directives"
        );
    }
}
