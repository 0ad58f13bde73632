//! Responses ferry makes itself, and the ends of exchanges.
//!
//! Local answers (`return`, `deny`, the status path)
//! go through `answer_locally`; failures (`ProxyError`, mapped to a status
//! in `error.rs`) through `fail`, which answers if no response head has
//! gone to the client yet and aborts otherwise; timeouts through
//! `timed_out`. Every exchange, however it ends, is written to the access
//! log by `log_access`.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use std::io::{Cursor, Write};

use log::{debug, error, info, warn};

use super::phase::{Direction, Exchange, Phase, ResponseState};
use super::{Abort, Connection, Context};
use crate::config::next_upstream;
use crate::config::{AccessLogTarget, Action, LocationConfig};
use crate::error::ProxyError;
use crate::http::error_page;
use crate::http::error_page::{ErrorResponse, Reply};
use crate::http::request::Method;
use crate::stats::{epoch_ms, Totals};
use crate::status::{self, StatusPage};
use crate::upstream::UpstreamConn;
use crate::variables::{ExchangeVars, UpstreamAttempt};

/// nginx's non-standard code for `return 444`: close the connection without
/// sending anything (scanners and unwanted hosts get nothing to read).
const CLOSE_WITHOUT_RESPONSE: u16 = 444;

impl Connection {
    /// One direction of a busy exchange waited longer than its timeout.
    pub(super) fn timed_out(
        &mut self,
        exchange: Exchange,
        upstream: Option<UpstreamConn>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some((_, direction)) = exchange.next_timeout(&ctx.config) else {
            // Nothing was waiting after all: keep going.
            return match upstream {
                Some(upstream) => (Phase::Forwarding { exchange, upstream }, false),
                None => (Phase::WritingResponse { exchange }, false),
            };
        };
        let directive = direction.directive();
        match direction {
            Direction::ClientWrite => self.abort(
                exchange,
                upstream,
                Abort::ClientGone("stopped reading the response (send_timeout)"),
                ctx,
            ),
            Direction::ClientRead => {
                if let Some(upstream) = upstream {
                    ctx.upstreams.close(&ctx.config, upstream);
                }
                self.fail(exchange, ProxyError::ClientTimeout(directive), ctx)
            }
            Direction::UpstreamRead | Direction::UpstreamWrite => self.next_upstream(
                exchange,
                upstream,
                ProxyError::UpstreamTimeout(directive),
                next_upstream::TIMEOUT,
                ctx,
            ),
        }
    }

    /// Queues a response of ferry's own and moves to `WritingResponse`.
    /// `write` gets the head buffer and how to reply (keep-alive, HEAD,
    /// date), and returns the status and the body length. The whole
    /// response is in hand, so it goes through `gzip` here.
    pub(super) fn answer_locally(
        &mut self,
        exchange: Exchange,
        ctx: &mut Context<'_>,
        write: impl FnOnce(&mut Vec<u8>, &Reply<'_>) -> (u16, usize),
    ) -> (Phase, bool) {
        self.queue_local(exchange, ctx, write, true)
    }

    /// A file's head: like `answer_locally`, but its body comes later
    /// from the file, and `files.rs` made the gzip decision already (a
    /// second pass would add a second `Vary`).
    pub(super) fn queue_file_head(
        &mut self,
        exchange: Exchange,
        ctx: &mut Context<'_>,
        write: impl FnOnce(&mut Vec<u8>, &Reply<'_>) -> (u16, usize),
    ) -> (Phase, bool) {
        self.queue_local(exchange, ctx, write, false)
    }

    fn queue_local(
        &mut self,
        mut exchange: Exchange,
        ctx: &mut Context<'_>,
        write: impl FnOnce(&mut Vec<u8>, &Reply<'_>) -> (u16, usize),
        body_in_hand: bool,
    ) -> (Phase, bool) {
        let settings = exchange.settings(&ctx.config);
        let keep_alive = exchange.keep_alive && self.may_keep_alive(settings);
        exchange.keep_alive = keep_alive;
        let buffers = &mut *exchange.buffers;
        let reply = Reply {
            keep_alive,
            head_only: exchange.state.request.method == Method::Head,
            date: ctx.date.as_bytes(),
            added: &buffers.extra_headers,
            always_end: exchange.state.always_headers_end as usize,
            charset: settings.charset.as_deref(),
            charset_types: &settings.charset_types,
            default_type: &settings.files.default_type,
        };
        let (status, mut body_len) = write(&mut buffers.client_head, &reply);
        // `gzip`: a body in hand goes through the filter too (nginx's
        // filters see its own pages as any other response).
        if body_in_hand && exchange.state.gzip_facts != 0 && (body_len > 0 || reply.head_only) {
            body_len = gzip_own(&mut exchange, body_len, ctx);
        }
        exchange.log.status = status;
        exchange.log.body_bytes_sent = body_len as u64;
        exchange.response = ResponseState::Local;
        (Phase::WritingResponse { exchange }, true)
    }

    /// Answers with one of ferry's own pages (404 for no location).
    pub(super) fn answer_page(
        &mut self,
        exchange: Exchange,
        page: ErrorResponse,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let exchange = match self.error_page(exchange, page.status(), ctx) {
            Ok(answered) => return answered,
            Err(exchange) => exchange,
        };
        self.answer_locally(exchange, ctx, |out, reply| {
            (page.status(), page.write_to(out, reply))
        })
    }

    /// `return CODE [TEXT|URL]`: a redirect with `Location`, a page of
    /// ferry's for error codes without text, or the text as the body; for
    /// nginx's own code 444, no response at all.
    ///
    /// `rendered`: `Some(has_text)` when the text was put in
    /// `buffers.return_text` at routing (an `if`'s `return`); `None` to
    /// take it from the location's `return`.
    pub(super) fn answer_return(
        &mut self,
        exchange: Exchange,
        status: u16,
        rendered: Option<bool>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let mut exchange = exchange;
        if status == CLOSE_WITHOUT_RESPONSE {
            debug!("#{} return 444: closing without a response", ctx.slot);
            exchange.log.status = status;
            self.log_access(&exchange, ctx);
            ctx.retire(exchange);
            return (Phase::Closed, true);
        }
        let config = std::rc::Rc::clone(&ctx.config);
        // Rendered when the request was routed (see `parse_request`); taken
        // out while the answer is written, then put back, so its capacity
        // stays with the buffer set.
        let mut text_buffer = std::mem::take(&mut exchange.buffers.return_text);
        let location = config.location(exchange.route_server(), exchange.route_location());
        let text = match (rendered, location) {
            (Some(true), _) => Some(&text_buffer[..]),
            (Some(false), _) => None,
            (
                None,
                Some(LocationConfig {
                    action:
                        Action::Return {
                            template: Some(_), ..
                        },
                    ..
                }),
            ) => Some(&text_buffer[..]),
            (
                None,
                Some(LocationConfig {
                    action: Action::Return { text, .. },
                    ..
                }),
            ) => text.as_deref().map(str::as_bytes),
            _ => None,
        };
        if text.is_none() {
            // `return 404;` is an error like any other: its error_page
            // applies. (With text, the text is the answer, as in nginx.)
            text_buffer.clear();
            exchange.buffers.return_text = text_buffer;
            let exchange = match self.error_page(exchange, status, ctx) {
                Ok(answered) => return answered,
                Err(exchange) => exchange,
            };
            return self.answer_return_as_is(exchange, status, ctx);
        }
        // nginx's `absolute_redirect on`: a redirect to a path gets this
        // request's scheme, host and port in front.
        let mut absolute = std::mem::take(&mut exchange.buffers.redirect);
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        let text = match text {
            Some(path) if redirect && path.starts_with(b"/") => {
                absolute.clear();
                self.origin(&exchange.buffers.host, &config)
                    .write(&mut absolute);
                absolute.extend_from_slice(path);
                Some(&absolute[..])
            }
            text => text,
        };
        let (mut phase, progress) = self.answer_locally(exchange, ctx, |out, reply| {
            (status, error_page::write_return(out, status, text, reply))
        });
        if let Phase::WritingResponse { exchange } = &mut phase {
            text_buffer.clear();
            exchange.buffers.return_text = text_buffer;
            absolute.clear();
            exchange.buffers.redirect = absolute;
        }
        (phase, progress)
    }

    /// `return CODE` without text, past its error page: ferry's page for
    /// the code, or an empty body.
    pub(super) fn answer_return_as_is(
        &mut self,
        exchange: Exchange,
        status: u16,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.answer_locally(exchange, ctx, |out, reply| {
            (status, error_page::write_return(out, status, None, reply))
        })
    }

    /// Answers the status path with this worker's counters, as plain text.
    pub(super) fn answer_status(
        &mut self,
        exchange: Exchange,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let stats = ctx.stats;
        let mut text = [0u8; 512];
        let mut cursor = Cursor::new(&mut text[..]);
        let _ = write!(
            cursor,
            "connections {}\nupstream_connections {}\npooled_upstream_connections {}\n\
             buffer_sets_lent {}\nlarge_buffers_lent {}\ntimers {}\naccepted {}\n",
            stats.active.get(),
            ctx.upstreams.open_count(),
            ctx.upstreams.idle.len(),
            ctx.buffers.lent(),
            ctx.buffers.large_lent(),
            ctx.timers.len(),
            stats.accepted.get(),
        );
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        self.answer_text(exchange, text.get(..len).unwrap_or_default(), ctx)
    }

    /// A `stub_status` location: nginx's page (to the byte, so exporters
    /// and dashboards written for nginx read it), its Prometheus form, or
    /// the list of connections, which only the event loop can see: the
    /// first time here the connection asks for it and waits in
    /// `WritingResponse`, and the loop drives it again with the list.
    pub(super) fn answer_stub_status(
        &mut self,
        exchange: Exchange,
        page: StatusPage,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if !matches!(exchange.request.method, Method::Get | Method::Head) {
            return self.answer_page(exchange, ErrorResponse::MethodNotAllowed, ctx);
        }
        let mut body = Vec::new();
        match page {
            StatusPage::Nginx => {
                status::write_nginx(&mut body, Totals::of(ctx.workers), self.counted_as);
            }
            StatusPage::Prometheus => {
                status::write_prometheus(
                    &mut body,
                    ctx.workers,
                    self.counted_as,
                    epoch_ms(ctx.wall_clock),
                );
                status::write_limit_zones(&mut body, &ctx.config.limit_zones);
            }
            StatusPage::Connections => {
                let Some(list) = ctx.connection_list else {
                    self.wants_connection_list = true;
                    return (Phase::WritingResponse { exchange }, false);
                };
                self.wants_connection_list = false;
                body.extend_from_slice(list);
            }
        }
        self.answer_text(exchange, &body, ctx)
    }

    /// A 200 with a plain-text body.
    fn answer_text(
        &mut self,
        exchange: Exchange,
        body: &[u8],
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.answer_locally(exchange, ctx, |out, reply| {
            (200, error_page::write_ok(out, "text/plain", body, reply))
        })
    }

    /// Answers a failure with ferry's own response if the client has not yet
    /// been sent a final response head; otherwise closes the connection.
    /// Logs it first (upstream failures with nginx's context).
    pub(super) fn fail(
        &mut self,
        exchange: Exchange,
        error: ProxyError,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if !exchange.response_committed() {
            match &error {
                e if e.is_client_fault() => info!("#{} {e}, client: {}", ctx.slot, self.peer),
                e => {
                    let context = self.error_context(&exchange, ctx);
                    let during = e.during();
                    match e {
                        ProxyError::UpstreamConnect(_) | ProxyError::UpstreamTimeout(_) => {
                            error!("#{} {e}{during}{context}", ctx.slot)
                        }
                        _ => warn!("#{} {e}{during}{context}", ctx.slot),
                    }
                }
            }
        }
        self.answer_error(exchange, error, ctx)
    }

    /// [`Connection::fail`] without the log line, for failures already
    /// logged where they happened.
    pub(super) fn answer_error(
        &mut self,
        mut exchange: Exchange,
        error: ProxyError,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if exchange.response_committed() {
            return self.abort(
                exchange,
                None,
                Abort::UpstreamBroken(error.to_string()),
                ctx,
            );
        }
        let status = error.response();
        if !error.is_client_fault() && exchange.request_body.fully_received() {
            exchange = match self.error_page(exchange, status.status(), ctx) {
                Ok(answered) => return answered,
                Err(exchange) => exchange,
            };
        }
        // Keep the connection only if the request was read whole and framed
        // sanely; after a refused head or body the stream is not trustworthy.
        let keep_alive = exchange.keep_alive
            && !error.is_client_fault()
            && exchange.request_body.fully_received()
            && self.may_keep_alive(exchange.settings(&ctx.config));
        exchange.keep_alive = keep_alive;
        // Part of an interim head may still be unsent; it cannot be taken
        // back, so ferry's response follows it.
        let config = std::rc::Rc::clone(&ctx.config);
        let settings = exchange.state.settings(&config);
        let buffers = &mut *exchange.buffers;
        let state = &mut *exchange.state;
        buffers.client_head.drain(..state.client_head_sent);
        state.client_head_sent = 0;
        let reply = Reply {
            keep_alive,
            head_only: state.request.method == Method::Head,
            date: ctx.date.as_bytes(),
            added: &buffers.extra_headers,
            always_end: state.always_headers_end as usize,
            charset: settings.charset.as_deref(),
            charset_types: &settings.charset_types,
            default_type: &settings.files.default_type,
        };
        state.log.body_bytes_sent = status.write_to(&mut buffers.client_head, &reply) as u64;
        state.log.status = status.status();
        state.response = ResponseState::Local;
        (Phase::WritingResponse { exchange }, true)
    }

    /// What an error line says about the request, as nginx's do:
    /// `, client: …, server: …, request: "…", upstream: "…", host: "…"`.
    pub(super) fn error_context<'a>(
        &'a self,
        exchange: &'a Exchange,
        ctx: &'a Context<'_>,
    ) -> ErrorContext<'a> {
        let server = ctx.config.server_name(exchange.route_server());
        let scheme = match exchange.route.upstream_tls(&ctx.config) {
            Some(_) => "https",
            None => "http",
        };
        ErrorContext {
            client: exchange.client.ip(),
            server,
            exchange,
            scheme,
        }
    }

    /// Gives up on the exchange and closes the client connection: the
    /// client is gone, or a response already under way cannot be completed
    /// (closing is how a truncated response is made visible).
    pub(super) fn abort(
        &mut self,
        exchange: Exchange,
        upstream: Option<UpstreamConn>,
        reason: Abort,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match &reason {
            Abort::ClientGone(what) => debug!("#{} client {} {what}", ctx.slot, self.peer),
            Abort::UpstreamBroken(what) => warn!(
                "#{} {what}; closing the client connection {}",
                ctx.slot, self.peer
            ),
        }
        if let Some(upstream) = upstream {
            ctx.upstreams.close(&ctx.config, upstream);
        }
        let mut exchange = exchange;
        if let Abort::ClientGone(_) = reason {
            if !exchange.response_committed() {
                // nginx's "client closed request".
                exchange.log.status = 499;
            }
        }
        self.log_access(&exchange, ctx);
        ctx.retire(exchange);
        (Phase::Closed, true)
    }

    /// The exchange is over: counted for the status pages, and one access
    /// log line in the route's format, from the values captured when the
    /// head arrived and what the exchange measured.
    pub(super) fn log_access(&mut self, exchange: &Exchange, ctx: &mut Context<'_>) {
        self.bytes_in = self.bytes_in.saturating_add(exchange.log.request_length);
        self.bytes_out = self.bytes_out.saturating_add(exchange.log.bytes_sent);
        ctx.stats.count_response(exchange.log.status);
        let settings = exchange.settings(&ctx.config);
        if settings.access_log == AccessLogTarget::Off {
            return;
        }
        let Some((_, format)) = ctx.config.log_formats.get(settings.log_format) else {
            return;
        };
        let log = &exchange.log;
        let connection = self.id;
        let connection_requests = self.requests;
        let request_time = ctx.now.saturating_duration_since(exchange.started);
        ctx.access_log
            .write_line(&settings.access_log, ctx.wall_clock, |times, line| {
                let vars = ExchangeVars {
                    status: log.status,
                    body_bytes_sent: log.body_bytes_sent,
                    bytes_sent: log.bytes_sent,
                    request_length: log.request_length,
                    limit_rate: exchange.limit_rate,
                    request_time,
                    time_local: times.local,
                    time_iso8601: times.iso8601,
                    msec: times.since_epoch,
                    earlier_attempts: &exchange.buffers.attempts,
                    upstream: exchange.peer.map(|peer| UpstreamAttempt {
                        addr: peer.addr,
                        status: (log.upstream_status != 0).then_some(log.upstream_status),
                        times: log.upstream_times(),
                    }),
                    connection,
                    connection_requests,
                };
                let captured = &exchange.buffers.log_fields[..];
                if let Some(condition) = &settings.access_log_if {
                    // Rendered where the line would go, judged, taken back.
                    let start = line.len();
                    let own = captured.get(format.captured_len(captured)..);
                    condition.render_log(own.unwrap_or_default(), &vars, line);
                    let value = line.get(start..line.len().saturating_sub(1));
                    let wanted = value.is_some_and(|v| !v.is_empty() && v != b"0");
                    line.truncate(start);
                    if !wanted {
                        return;
                    }
                }
                format.render_log(captured, &vars, line);
            });
    }
}

/// The context of an error line (see `Connection::error_context`).
pub(super) struct ErrorContext<'a> {
    client: std::net::IpAddr,
    server: &'a str,
    exchange: &'a Exchange,
    /// How ferry speaks to the upstream: `http` or `https`.
    scheme: &'static str,
}

impl std::fmt::Display for ErrorContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffers = &self.exchange.buffers;
        write!(
            f,
            ", client: {}, server: {}, request: \"{}\"",
            self.client,
            self.server,
            String::from_utf8_lossy(&buffers.request_line)
        )?;
        if let Some(peer) = self.exchange.peer {
            // The target ferry sent upstream: the second word of its head.
            let uri = buffers
                .upstream_head
                .split(|&b| b == b' ')
                .nth(1)
                .unwrap_or(b"/");
            // nginx: `http://unix:/run/app.sock:/uri` for a Unix socket.
            let separator = match peer.addr {
                crate::upstream::ServerAddr::Unix(_) => ":",
                crate::upstream::ServerAddr::Inet(_) => "",
            };
            write!(
                f,
                ", upstream: \"{}://{}{separator}{}\"",
                self.scheme,
                peer.addr,
                String::from_utf8_lossy(uri)
            )?;
        }
        if !buffers.host.is_empty() {
            write!(f, ", host: \"{}\"", String::from_utf8_lossy(&buffers.host))?;
        }
        Ok(())
    }
}

pub(super) use crate::http::error_page::add_header_applies;

/// `gzip` for a response of ferry's own, whole in `client_head`: decided
/// from its head as a proxied one is, and if it is to be compressed, the
/// head rewritten and the body compressed in one go (it is small and in
/// hand). Returns the body bytes the client will get.
fn gzip_own(exchange: &mut Exchange, body_len: usize, ctx: &mut Context<'_>) -> usize {
    use crate::http::gzip;
    let config = std::rc::Rc::clone(&ctx.config);
    let settings = &exchange.settings(&config).gzip;
    let head_only = exchange.state.request.method == Method::Head;
    let http10 = exchange.state.request.version == crate::http::Version::Http10;
    let buffers = &mut *exchange.buffers;
    let Some(head_end) = buffers
        .client_head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
    else {
        return body_len;
    };
    let (head, body) = buffers.client_head.split_at(head_end);
    let mut fields = crate::http::header_slots();
    let mut parsed = httparse::Response::new(&mut []);
    let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        head,
        &mut fields,
    );
    if !matches!(parsing, Ok(httparse::Status::Complete(_))) {
        return body_len;
    }
    let status = parsed.code.unwrap_or(0);
    // A HEAD's head declares its GET's length.
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
    let facts =
        gzip::ResponseFacts::of_head(status, parsed.headers, length, matches!(status, 204 | 304));
    let now = epoch_ms(ctx.wall_clock) as i64 / 1000;
    let decision = gzip::decide(settings, exchange.state.gzip_facts, &facts, now);
    if decision == gzip::Decision::default() {
        return body_len;
    }
    let chunked = !http10 && !head_only;
    let close = decision.compress && http10;
    let mut out = std::mem::take(&mut buffers.upstream_head);
    out.clear();
    gzip::rewrite_own_head(head, decision, chunked, close, &mut out);
    let mut sent = body_len;
    if decision.compress && !head_only {
        let head_len = out.len();
        let mut stream = ctx.gzip_streams.take(settings.level, chunked);
        let mut taken = 0;
        while !stream.is_done() {
            let rest = body.get(taken..).unwrap_or_default();
            let took = stream.compress(rest, gzip::InputEnd::BodyEnd);
            taken += took;
            let produced = stream.output().len();
            out.extend_from_slice(stream.output());
            stream.written(produced);
            if took == 0 && produced == 0 {
                break;
            }
        }
        sent = out.len() - head_len;
        ctx.stats.gzip_responses.add(1);
        ctx.stats.gzip_bytes_in.add(stream.taken);
        ctx.stats.gzip_bytes_out.add(stream.produced);
        ctx.gzip_streams.give_back(stream);
    } else {
        // `Vary` only: the body as it was.
        out.extend_from_slice(body);
    }
    if close {
        exchange.state.keep_alive = false;
    }
    let mut old = std::mem::replace(&mut buffers.client_head, out);
    old.clear();
    buffers.upstream_head = old;
    sent
}
