//! The core and events modules: processes, workers, the pid file, the
//! user to serve as, the error log (`ngx_core_module`,
//! `ngx_events_module`, `ngx_event_core_module`).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::path::PathBuf;

use super::{
    check_nothing, check_number, duration, not_yet, number, on_off, spec, Arity, Directive, Events,
    Handler, Http, Location, Main, Server, Spec, Upstream,
};
use crate::config::parse::ConfigError;
use crate::config::{Config, ErrorLogConfig};

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "worker_processes",
        &[Main],
        Arity::Exactly(1),
        Handler::Main(set_worker_processes),
    ),
    spec(
        "error_log",
        &[Main, Http, Server, Location],
        Arity::Between(1, 2),
        Handler::Main(set_error_log),
    )
    .repeatable(),
    spec("pid", &[Main], Arity::Exactly(1), Handler::Main(set_pid)),
    spec(
        "worker_shutdown_timeout",
        &[Main],
        Arity::Exactly(1),
        Handler::Main(set_shutdown_timeout),
    ),
    spec(
        "worker_cpu_affinity",
        &[Main],
        Arity::AtLeast(1),
        Handler::Main(set_cpu_affinity),
    ),
    spec(
        "user",
        &[Main],
        Arity::Between(1, 2),
        Handler::Main(set_user),
    ),
    spec(
        "daemon",
        &[Main],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry runs in the foreground; its supervisor (systemd, a container) keeps it",
        },
    ),
    spec(
        "master_process",
        &[Main],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "one process: the workers are threads (worker_processes)",
        },
    ),
    spec(
        "worker_rlimit_nofile",
        &[Main],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_number,
            why: "the descriptor limit is the supervisor's (LimitNOFILE=, ulimit -n)",
        },
    ),
    // Expanded by the parser (`config::parse`) before any table is read.
    spec(
        "include",
        &[Main, Events, Http, Server, Location, Upstream],
        Arity::Exactly(1),
        Handler::Structure,
    )
    .repeatable(),
    spec("events", &[Main], Arity::Exactly(0), Handler::Structure).block(),
    spec("http", &[Main], Arity::Exactly(0), Handler::Structure).block(),
    spec(
        "worker_connections",
        &[Events],
        Arity::Exactly(1),
        Handler::Main(set_worker_connections),
    ),
    spec(
        "use",
        &[Events],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_nothing,
            why: "mio picks the poll (epoll on Linux)",
        },
    ),
    spec(
        "multi_accept",
        &[Events],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry accepts until the listener is drained, as multi_accept on does",
        },
    ),
    not_yet("env"),
    // The stream module is built in; nginx packages load it.
    spec(
        "load_module",
        &[Main],
        Arity::Exactly(1),
        Handler::Main(load_module),
    )
    .repeatable(),
    spec("stream", &[Main], Arity::Exactly(0), Handler::Structure).block(),
    not_yet("include_module"),
    not_yet("lock_file"),
    not_yet("pcre_jit"),
    not_yet("thread_pool"),
    not_yet("timer_resolution"),
    not_yet("worker_priority"),
    not_yet("working_directory"),
    not_yet("worker_aio_requests"),
    not_yet("accept_mutex"),
    not_yet("accept_mutex_delay"),
    not_yet("debug_connection"),
];

/// `load_module …/ngx_stream_module.so`: ferry has that module built in;
/// any other module it does not have.
fn load_module(directive: &Directive, _: &mut Config) -> Result<(), ConfigError> {
    let path = std::path::Path::new(&directive.args[0]);
    match path.file_name().and_then(|name| name.to_str()) {
        Some("ngx_stream_module.so") => Ok(()),
        _ => Err(ConfigError::at(
            format!(
                "module \"{}\" is not supported yet (ferry loads no modules; its stream \
                 module is built in)",
                directive.args[0]
            ),
            directive.location(),
        )),
    }
}

fn set_worker_processes(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    config.worker_processes = worker_processes(directive)?;
    Ok(())
}

fn set_error_log(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    config.error_log = Some(error_log(directive)?);
    Ok(())
}

fn set_pid(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    config.pid = Some(PathBuf::from(&directive.args[0]));
    Ok(())
}

fn set_shutdown_timeout(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    config.shutdown_timeout = Some(duration(directive, 0)?);
    Ok(())
}

fn set_cpu_affinity(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    // nginx's masks (`0101 1010`) would pin workers to sets of CPUs;
    // `auto` (one CPU each, in order) is what ferry does.
    if directive.args != ["auto"] {
        return Err(ConfigError::at(
            "CPU masks in \"worker_cpu_affinity\" are not supported yet; use \"auto\"",
            directive.location(),
        ));
    }
    config.worker_cpu_affinity = true;
    Ok(())
}

fn set_user(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    let place = format!("{}:{}", directive.file.display(), directive.line);
    config.user = crate::privileges::resolve(
        &directive.args[0],
        directive.args.get(1).map(String::as_str),
        &place,
    )
    .map_err(|message| ConfigError::at(message, directive.location()))?;
    Ok(())
}

fn set_worker_connections(directive: &Directive, config: &mut Config) -> Result<(), ConfigError> {
    config.worker_connections = number(directive, 0)?;
    config.max_buffer_sets = config.worker_connections;
    Ok(())
}

/// How many event loops to run: a number, or `auto` for one per core.
fn worker_processes(directive: &Directive) -> Result<usize, ConfigError> {
    let value = directive.args[0].as_str();
    if value == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match value.parse::<usize>() {
        Ok(n @ 1..=MAX_WORKERS) => Ok(n),
        _ => Err(ConfigError::at(
            format!("invalid value \"{value}\" in \"worker_processes\" directive (1 to {MAX_WORKERS}, or auto)"),
            directive.location(),
        )),
    }
}

/// More workers than this would be a typo, not a machine.
const MAX_WORKERS: usize = 1024;

fn error_log(directive: &Directive) -> Result<ErrorLogConfig, ConfigError> {
    let path = &directive.args[0];
    let level = directive.args.get(1).map_or("error", String::as_str);
    let filter = match level {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" => "warn",
        "error" | "crit" | "alert" | "emerg" => "error",
        other => {
            return Err(ConfigError::at(
                format!("invalid log level \"{other}\""),
                directive.location(),
            ))
        }
    };
    Ok(ErrorLogConfig {
        path: (path != "stderr").then(|| PathBuf::from(path)),
        filter: filter.to_string(),
    })
}
