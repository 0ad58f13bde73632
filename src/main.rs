//! The `ferry` command: parse the flags, start the loop, map the outcome to
//! an exit code. Everything else lives in the library.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use ferry::cli::{self, Command, USAGE};
use ferry::config::Config;
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
        Command::Demo { origin_port, .. } => {
            let mut config = match args.into_config() {
                Ok(config) => config,
                Err(e) => return fail(&e.to_string()),
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
        Command::Proxy => match args.into_config() {
            Ok(config) => run(config),
            Err(e) => fail(&e.to_string()),
        },
    }
}

fn run(config: Config) -> ExitCode {
    ferry::log::init_error_log();
    let upstream = config.upstream;
    let mut event_loop = match EventLoop::bind(config) {
        Ok(event_loop) => event_loop,
        Err(e) => return fail(&e.to_string()),
    };
    for addr in event_loop.local_addrs() {
        println!("ferry: listening on http://{addr}, proxying to {upstream}");
    }
    let _ = std::io::stdout().flush();
    match event_loop.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("event loop failed: {e}")),
    }
}

/// One clear line on stderr and exit code 1, like `nginx -t`.
fn fail(message: &str) -> ExitCode {
    eprintln!("ferry: {message}");
    ExitCode::from(1)
}
