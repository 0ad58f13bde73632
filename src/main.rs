//! The `ferry` command: parse the flags, read the configuration, start the
//! loop, map the outcome to an exit code. Everything else lives in the
//! library. Messages meant for the person at the terminal (listening on…,
//! configuration errors) are printed here, apart from the error log.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use ferry::cli::{self, Args, Command, USAGE};
use ferry::config::{self, Config, Loaded, EMBEDDED_NAME};
use ferry::event_loop::EventLoop;

fn main() -> ExitCode {
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
        Command::Test { dump } => test_config(args.config_file.as_deref(), dump),
        Command::Signal { signal } => send_signal(args.config_file.as_deref(), signal),
        Command::Demo { origin_port, .. } => {
            let mut config = match configure(args) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let origin = SocketAddr::from(([127, 0, 0, 1], origin_port));
            match ferry::demo::start_origin(origin) {
                Ok(bound) => {
                    println!("ferry: demo origin serving the seed's page on http://{bound}");
                    // Port 0 picks a free port: proxy to the one picked.
                    config.set_upstream(bound);
                }
                Err(e) => return fail(&format!("cannot start the demo origin on {origin}: {e}")),
            }
            run(config)
        }
        Command::Proxy => match configure(args) {
            Ok(config) => run(config),
            Err(code) => code,
        },
    }
}

/// The configuration file (or the embedded default), then the flags.
fn configure(args: Args) -> Result<Config, ExitCode> {
    let loaded = match config::load(args.config_file.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return Err(fail(&format!("[emerg] {e}"))),
    };
    args.into_config(loaded.config)
        .map_err(|e| fail(&e.to_string()))
}

/// `ferry -t` / `-T`, worded as `nginx -t` words it.
fn test_config(path: Option<&Path>, dump: bool) -> ExitCode {
    let name = path.map_or_else(|| EMBEDDED_NAME.to_string(), |p| p.display().to_string());
    match config::load(path) {
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

fn run(config: Config) -> ExitCode {
    if let Err(e) = ferry::log::init_error_log(config.error_log.as_ref()) {
        return fail(&format!("cannot open the error log: {e}"));
    }
    // The first upstream group says where the simple setups proxy to.
    let upstream = match (config.upstreams.len(), config.first_upstream()) {
        (1, Some(addr)) => addr.to_string(),
        _ => format!("{} upstream groups", config.upstreams.len()),
    };
    let pid_file = config.pid.clone();
    let mut event_loop = match EventLoop::bind(config) {
        Ok(event_loop) => event_loop,
        Err(e) => return fail(&e.to_string()),
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
    for addr in event_loop.local_addrs() {
        println!("ferry: listening on http://{addr}, proxying to {upstream}");
    }
    let _ = std::io::stdout().flush();
    let outcome = event_loop.run();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("event loop failed: {e}")),
    }
}

/// One clear line on stderr and exit code 1, like `nginx -t`.
fn fail(message: &str) -> ExitCode {
    eprintln!("ferry: {message}");
    ExitCode::from(1)
}
