//! Where an upstream server listens: a TCP address, or a Unix domain socket
//! (`server unix:/run/app.sock;`, `proxy_pass http://unix:/run/app.sock;`:
//! gunicorn, puma and the like).
//!
//! A socket path is interned when the configuration is loaded: kept for the
//! life of the process, so a [`ServerAddr`] stays `Copy` like a socket
//! address, and the same path compares equal across reloads (the idle pool
//! and the counters key servers by it). That costs the bytes of each
//! distinct path ever configured, once.
//!
//! In the course (docs/learn): chapter 7, "The order": upstreams (chapters 4
//! and 6 at full size).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    Inet(SocketAddr),
    Unix(&'static Path),
}

impl ServerAddr {
    /// The address for a Unix socket at `path`.
    pub fn unix(path: &Path) -> ServerAddr {
        static PATHS: Mutex<Vec<&'static Path>> = Mutex::new(Vec::new());
        let mut paths = PATHS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let interned = match paths.iter().find(|known| **known == path) {
            Some(known) => known,
            None => {
                let leaked: &'static Path = Box::leak(path.to_path_buf().into_boxed_path());
                paths.push(leaked);
                leaked
            }
        };
        ServerAddr::Unix(interned)
    }

    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            ServerAddr::Inet(addr) => Some(*addr),
            ServerAddr::Unix(_) => None,
        }
    }
}

/// `127.0.0.1:3000`, `[::1]:3000` or `unix:/run/app.sock` (no name
/// resolution: the configuration resolves names when it loads).
impl std::str::FromStr for ServerAddr {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<ServerAddr, Self::Err> {
        match text.strip_prefix("unix:") {
            Some(path) => Ok(ServerAddr::unix(Path::new(path))),
            None => text.parse::<SocketAddr>().map(ServerAddr::Inet),
        }
    }
}

impl From<SocketAddr> for ServerAddr {
    fn from(addr: SocketAddr) -> ServerAddr {
        ServerAddr::Inet(addr)
    }
}

/// As nginx writes them in `$upstream_addr` and its logs: `127.0.0.1:3000`,
/// `unix:/run/app.sock`.
impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Inet(addr) => write!(f, "{addr}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_interned_and_written_as_nginx_writes_them() {
        let a = ServerAddr::unix(Path::new("/run/app.sock"));
        let b = ServerAddr::unix(&std::path::PathBuf::from("/run/app.sock"));
        assert_eq!(a, b);
        assert_ne!(a, ServerAddr::unix(Path::new("/run/other.sock")));
        assert_eq!(a.to_string(), "unix:/run/app.sock");
        let inet = ServerAddr::from(SocketAddr::from(([127, 0, 0, 1], 3000)));
        assert_eq!(inet.to_string(), "127.0.0.1:3000");
    }
}
