//! The listening sockets: bound with nginx's backlog, `SO_REUSEADDR`
//! (and `SO_REUSEPORT` when workers share an address) and the `listen`
//! line's options, before the loop registers them with mio.
//!
//! In the course (docs/learn): chapter 3 at full size (chapter 7).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpListener;

/// nginx's default listen backlog on Linux: clients beyond
/// `worker_connections` wait here until ferry accepts them.
const LISTEN_BACKLOG: i32 = 511;

/// Where to bind the configured `addr` (see `WorkerSetup::resolved`).
pub(super) fn resolve(resolved: &[(SocketAddr, SocketAddr)], addr: SocketAddr) -> SocketAddr {
    resolved
        .iter()
        .find(|(configured, _)| *configured == addr)
        .map_or(addr, |(_, bound)| *bound)
}

/// Binds a non-blocking listener with nginx's backlog and `SO_REUSEADDR`
/// (mio's own `bind` leaves the backlog at 128), and with `SO_REUSEPORT`
/// when several workers share the address: the kernel then spreads new
/// connections over their sockets, and no worker wakes for another's.
///
/// `options` are the `listen` line's: the backlog, buffer sizes and
/// keep-alive probes are set on the listening socket, and Linux gives them
/// to every socket it accepts.
pub(super) fn listen(
    addr: SocketAddr,
    reuse_port: bool,
    options: &crate::config::ListenOptions,
) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(options.ipv6only.unwrap_or(true))?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port || options.reuseport {
        socket.set_reuse_port(true)?;
    }
    if let Some(size) = options.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.sndbuf {
        socket.set_send_buffer_size(size)?;
    }
    if let Some(probes) = options.keepalive {
        socket.set_keepalive(probes.on)?;
        let mut params = socket2::TcpKeepalive::new();
        if let Some(idle) = probes.idle {
            params = params.with_time(Duration::from_secs(u64::from(idle)));
        }
        if let Some(interval) = probes.interval {
            params = params.with_interval(Duration::from_secs(u64::from(interval)));
        }
        if let Some(count) = probes.count {
            params = params.with_retries(count);
        }
        if probes.on && (probes.idle, probes.interval, probes.count) != (None, None, None) {
            socket.set_tcp_keepalive(&params)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(options.backlog.unwrap_or(LISTEN_BACKLOG))?;
    Ok(TcpListener::from_std(socket.into()))
}
