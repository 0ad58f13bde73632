//! The `ferry` command: parse the flags, read the configuration, start the
//! loop, map the outcome to an exit code. Everything else lives in the
//! library. Messages meant for the person at the terminal (listening on…,
//! configuration errors) are printed here, apart from the error log.
//!
//! In the course (docs/learn): chapter 7: the command line, around the loop.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use ferry::cli::{self, Args, Command, USAGE};
use ferry::config::{self, Config, Loaded, EMBEDDED_NAME};
use ferry::control::Reloader;
use ferry::event_loop::EventLoop;
use ferry::workers::Workers;

fn main() -> ExitCode {
    ferry::log::init_console_log();
    let args = match cli::parse(std::env::args()) {
        Ok(args) => args,
        Err(e) => return fail(&e.to_string()),
    };
    match args.command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("ferry {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Test { dump } => test_config(&args, dump),
        Command::Signal { signal } => send_signal(args.config_file.as_deref(), signal),
        Command::Demo {
            origin_port,
            explain,
            ..
        } => {
            if explain {
                ferry::log::explain();
            }
            let origin = SocketAddr::from(([127, 0, 0, 1], origin_port));
            match ferry::demo::start_origin(origin) {
                Ok(bound) => {
                    println!("ferry: demo origin serving the seed's page on http://{bound}");
                    // Port 0 picks a free port: proxy to the one picked.
                    start(args, Some(bound))
                }
                Err(e) => fail(&format!("cannot start the demo origin on {origin}: {e}")),
            }
        }
        Command::Proxy => start(args, None),
    }
}

/// Reads the configuration and runs it; a reload reads it again the same
/// way.
fn start(args: Args, demo_origin: Option<SocketAddr>) -> ExitCode {
    let reload: Reloader = Box::new(move || configure(&args, demo_origin).map(|l| l.config));
    match reload() {
        Ok(config) => run(config, reload),
        Err(e) => fail(&e),
    }
}

/// The configuration file (or the embedded default), then the flags.
fn configure(args: &Args, demo_origin: Option<SocketAddr>) -> Result<Loaded, String> {
    let loaded = config::load(args.config_file.as_deref()).map_err(|e| format!("[emerg] {e}"))?;
    let mut config = args
        .clone()
        .into_config(loaded.config)
        .map_err(|e| e.to_string())?;
    if let Some(origin) = demo_origin {
        config.set_upstream(origin);
    }
    Ok(Loaded {
        config,
        files: loaded.files,
    })
}

/// `ferry -t` / `-T`, worded as `nginx -t` words it: everything a start
/// checks before it listens (the file, the flags, the certificates, the log
/// files it must open).
fn test_config(args: &Args, dump: bool) -> ExitCode {
    let path = args.config_file.as_deref();
    let name = path.map_or_else(|| EMBEDDED_NAME.to_string(), |p| p.display().to_string());
    let checked = configure(args, None).and_then(|loaded| {
        ferry::log::check_log_files(&loaded.config).map_err(|e| format!("[emerg] {e}"))?;
        Ok(loaded)
    });
    match checked {
        Ok(Loaded { files, .. }) => {
            eprintln!("ferry: the configuration file {name} syntax is ok");
            eprintln!("ferry: configuration file {name} test is successful");
            if dump {
                let mut out = std::io::stdout().lock();
                for file in files {
                    let _ = writeln!(
                        out,
                        "# configuration file {}:\n{}",
                        file.path.display(),
                        file.text
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let e = e.strip_prefix("[emerg] ").unwrap_or(&e);
            eprintln!("ferry: [emerg] {e}");
            eprintln!("ferry: configuration file {name} test failed");
            ExitCode::from(1)
        }
    }
}

/// `ferry -s`: reads the `pid` file the configuration names and signals
/// that process. kill(1) sends it because the crate forbids `unsafe`, and
/// kill(2) has no safe binding in the standard library.
fn send_signal(path: Option<&Path>, signal: &str) -> ExitCode {
    let config = match config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => return fail(&e.to_string()),
    };
    let Some(pid_file) = config.pid else {
        return fail(
            "the configuration has no \"pid\" directive: no way to find the running ferry",
        );
    };
    let pid = match std::fs::read_to_string(&pid_file) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) => pid,
            Err(_) => return fail(&format!("invalid PID in {}", pid_file.display())),
        },
        Err(e) => return fail(&format!("cannot read {}: {e}", pid_file.display())),
    };
    match std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
    {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => fail(&format!("kill -{signal} {pid} failed")),
        Err(e) => fail(&format!("cannot run kill(1): {e}")),
    }
}

fn run(config: Config, reload: Reloader) -> ExitCode {
    if let Err(e) = ferry::log::init_error_log(config.error_log.as_ref()) {
        return fail(&format!("cannot open the error log: {e}"));
    }
    let upstream = config.upstream_summary();
    let pid_file = config.pid.clone();
    let user = config.user.clone();
    let workers = config.worker_processes;
    let schemes: Vec<&str> = config
        .listen
        .iter()
        .map(|l| match (l.stream, l.ssl) {
            (Some(_), _) => "tcp",
            (None, true) => "https",
            (None, false) => "http",
        })
        .collect();
    let running = if workers > 1 {
        match Workers::start(&config, workers) {
            Ok(workers) => Running::Many(workers, reload),
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        // One worker runs on this thread and takes the signals itself.
        if config.worker_cpu_affinity {
            ferry::workers::pin_worker(0);
        }
        match EventLoop::bind(config, reload) {
            Ok(event_loop) => Running::One(Box::new(event_loop)),
            Err(e) => return fail(&e.to_string()),
        }
    };
    // Before "listening on": whoever waits for that line may use -s.
    if let Some(path) = &pid_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            return fail(&format!(
                "cannot write the pid file {}: {e}",
                path.display()
            ));
        }
    }
    // Everything root was needed for is done: the addresses are bound, the
    // logs and the pid file open.
    if let Some(identity) = &user {
        if let Err(e) = ferry::privileges::become_user(identity) {
            return fail(&format!("[emerg] {e}"));
        }
        log::info!("serving as user \"{}\"", identity.user);
    }
    for (index, addr) in running.local_addrs().into_iter().enumerate() {
        let scheme = schemes.get(index).copied().unwrap_or("http");
        println!("ferry: listening on {scheme}://{addr}, proxying to {upstream}");
    }
    if workers > 1 {
        println!("ferry: {workers} workers");
    }
    let _ = std::io::stdout().flush();
    let outcome = running.run();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The event loops, bound and ready to run.
enum Running {
    One(Box<EventLoop>),
    Many(Workers, Reloader),
}

impl Running {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        match self {
            Running::One(event_loop) => event_loop.local_addrs(),
            Running::Many(workers, _) => workers.local_addrs().to_vec(),
        }
    }

    fn run(self) -> Result<(), String> {
        match self {
            Running::One(mut event_loop) => event_loop
                .run()
                .map_err(|e| format!("event loop failed: {e}")),
            Running::Many(workers, reload) => workers.run(reload),
        }
    }
}

/// One clear line on stderr and exit code 1, like `nginx -t`.
fn fail(message: &str) -> ExitCode {
    eprintln!("ferry: {message}");
    ExitCode::from(1)
}
