//! The `Forwarding` phase: request bytes flow from the client's ring to the
//! upstream and response bytes back, the response head is parsed and
//! re-serialized, and the body relays frame what passes (`relay.rs`).
//! Connecting is in `upstream_side.rs`; what happens once the upstream's
//! part is over (`WritingResponse`, keeping or closing) is in `finishing.rs`.
//!
//! In the course (docs/learn): chapter 4 (bytes both ways through the rings)
//! and chapter 7, step 6.

use log::{debug, trace};

use super::io::{read_into, write_out, IoOutcome};
use super::phase::{Direction, Exchange, Phase, ResponseState, TunnelState};
use super::relay::{BodyOut, BodyRelay, RelayMode, FRAMING_SCRATCH};
use super::upstream_side::next_upstream_allowed;
use super::{Abort, Connection, Context};
use crate::buffer::BufferSet;
use crate::config::next_upstream;
use crate::error::ProxyError;
use crate::http::framing::BodyKind;
use crate::http::gzip::{self, InputEnd};
use crate::http::request::Method;
use crate::http::response::{self, ClientFraming};
use crate::http::Version;
use crate::upstream::UpstreamConn;

use super::answer::add_header_applies;

impl Connection {
    pub(super) fn step_forwarding(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        // Client -> ring, and ring -> client.
        let mut progress = match self.pump_client(&mut exchange, ctx) {
            Ok(progress) => progress,
            Err(abort) => return self.abort(exchange, Some(upstream), abort, ctx),
        };
        if let Err(error) = self.scan_request_body(&mut exchange, ctx) {
            ctx.upstreams.close(&ctx.config, upstream);
            return self.fail(exchange, error, ctx);
        }

        // Ring -> upstream: the request head, then the body as it is cleared.
        let head_left = exchange.buffers.upstream_head.len() - exchange.upstream_head_sent;
        if upstream.ready.writable
            && !exchange.upstream_write_failed
            && (head_left > 0 || exchange.request_body.has_output())
        {
            let at = exchange.offset_ms(ctx.now_ms);
            let buffers = &mut *exchange.buffers;
            let state = &mut *exchange.state;
            let mut scratch = [0u8; FRAMING_SCRATCH];
            let (outcome, from_head, from_body) = write_out(
                &mut upstream.stream,
                &mut upstream.ready,
                &buffers.upstream_head[state.upstream_head_sent..],
                &state.request_body.output(&buffers.request, &mut scratch),
                false,
            );
            match outcome {
                IoOutcome::Progress(n) => {
                    trace!("#{} * -> {n}B", ctx.slot);
                    state.waits.touch(Direction::UpstreamWrite, at);
                    state.upstream_head_sent += from_head;
                    let data = state.request_body.written(from_body, &mut buffers.request);
                    state.log.request_length += data as u64;
                    state.body_sent |= from_body > 0;
                    progress |= n > 0;
                }
                IoOutcome::Failed(e) => {
                    // The upstream may have answered and closed early; its
                    // response (or its absence) decides what happens next.
                    debug!("#{}/upstream write failed: {e}", ctx.slot);
                    state.upstream_write_failed = true;
                    upstream.ready.readable = true;
                    progress = true;
                }
                IoOutcome::WouldBlock | IoOutcome::Eof => {}
            }
        }

        // Upstream -> ring.
        if upstream.ready.readable && !exchange.buffers.response.is_full() {
            match read_into(
                &mut upstream.stream,
                &mut upstream.ready,
                &mut exchange.buffers.response,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} * <- {n}B", ctx.slot);
                    ctx.grow_if_bulk(&mut exchange.buffers.response, "response");
                    let at = exchange.offset_ms(ctx.now_ms);
                    exchange.waits.touch(Direction::UpstreamRead, at);
                    exchange.response_started = true;
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Eof => return self.upstream_ended(exchange, upstream, None, ctx),
                IoOutcome::Failed(e) => {
                    return self.upstream_ended(exchange, upstream, Some(e), ctx)
                }
            }
        }

        // Response head, then body framing.
        if let ResponseState::AwaitingHead = exchange.response {
            match self.parse_response(&mut exchange, ctx) {
                Ok(parsed) => progress |= parsed,
                Err((ProxyError::Intercepted(status), _)) => {
                    // The upstream's answer is replaced: its connection,
                    // with a body not read, cannot be reused.
                    debug!(
                        "#{} upstream answered {status}: its error_page instead",
                        ctx.slot
                    );
                    exchange.log.upstream_status = status;
                    exchange.log.head_received = exchange.mark(ctx.now_ms);
                    if let Some(peer) = exchange.peer {
                        ctx.upstreams.succeeded(&ctx.config, peer);
                    }
                    ctx.upstreams.close(&ctx.config, upstream);
                    exchange.buffers.response.clear();
                    return self.answer_intercepted(exchange, status, ctx);
                }
                Err((error, condition)) => {
                    return self.next_upstream(exchange, Some(upstream), error, condition, ctx);
                }
            }
        }
        if let ResponseState::Body { relay, .. } = &mut exchange.state.response {
            if let Err(e) = relay.scan(&mut exchange.buffers.response) {
                return self.upstream_body_invalid(exchange, Some(upstream), e, ctx);
            }
        }
        if exchange.gzip.is_some() {
            compress_body(&mut exchange);
        }
        // Ring -> client again, now that the head or more body is in.
        match self.write_client(&mut exchange, ctx) {
            Ok(wrote) => progress |= wrote,
            Err(abort) => return self.abort(exchange, Some(upstream), abort, ctx),
        }

        match &exchange.response {
            ResponseState::Body {
                relay,
                upstream_reusable,
            } if relay.fully_received() => {
                let upstream_reusable = *upstream_reusable;
                self.upstream_done(&mut exchange, upstream, upstream_reusable, ctx);
                (Phase::WritingResponse { exchange }, true)
            }
            ResponseState::Switching => {
                debug!("#{} upstream switched protocols; tunnelling", ctx.slot);
                if let Some(peer) = exchange.peer {
                    ctx.upstreams.succeeded(&ctx.config, peer);
                }
                let tunnel = TunnelState {
                    last_activity: exchange.mark(ctx.now_ms),
                    ..TunnelState::default()
                };
                (
                    Phase::Tunnel {
                        exchange,
                        upstream,
                        tunnel,
                    },
                    true,
                )
            }
            _ => (Phase::Forwarding { exchange, upstream }, progress),
        }
    }

    /// Reads the client (body, or pipelined requests behind it) and writes
    /// what is queued for it. Shared by every phase that has an exchange.
    pub(super) fn pump_client(
        &mut self,
        exchange: &mut Exchange,
        ctx: &mut Context<'_>,
    ) -> Result<bool, Abort> {
        let mut progress = self.write_client(exchange, ctx)?;
        if self.client_ready.readable && !self.client_eof && !exchange.buffers.request.is_full() {
            match read_into(
                &mut self.client,
                &mut self.client_ready,
                &mut exchange.buffers.request,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} -> * {n}B", ctx.slot);
                    ctx.grow_if_bulk(&mut exchange.buffers.request, "request");
                    let at = exchange.offset_ms(ctx.now_ms);
                    exchange.waits.touch(Direction::ClientRead, at);
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Eof => {
                    self.client_eof = true;
                    progress = true;
                    if !exchange.request_body.fully_received() {
                        return Err(Abort::ClientGone(
                            "closed the connection in the middle of the request body",
                        ));
                    }
                    debug!(
                        "#{} client shut down its sending side; finishing the response",
                        ctx.slot
                    );
                }
                IoOutcome::Failed(e) => {
                    debug!("#{} client read failed: {e}", ctx.slot);
                    return Err(Abort::ClientGone("reset the connection"));
                }
            }
        }
        Ok(progress)
    }

    pub(super) fn scan_request_body(
        &self,
        exchange: &mut Exchange,
        ctx: &Context<'_>,
    ) -> Result<(), ProxyError> {
        exchange
            .state
            .request_body
            .scan(&mut exchange.buffers.request)
            .map_err(ProxyError::RequestBody)?;
        let limit = exchange.settings(&ctx.config).client_max_body_size;
        if limit != 0 && exchange.request_body.data_seen() > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        Ok(())
    }

    /// Writes the queued head (interim, final or ferry's own) and the body
    /// bytes cleared for the client, in one vectored write.
    pub(super) fn write_client(
        &mut self,
        exchange: &mut Exchange,
        ctx: &Context<'_>,
    ) -> Result<bool, Abort> {
        let Exchange { buffers, state } = exchange;
        let at = state.offset_ms(ctx.now_ms);
        // A file's bytes are all body: the whole ring goes out.
        let (relay, file_body) = match &mut state.response {
            ResponseState::Body { relay, .. } => (Some(relay), 0),
            ResponseState::File { .. } => (None, buffers.response.len()),
            _ => (None, 0),
        };
        let compressed = state.gzip.as_deref().map(|stream| stream.output());
        let body_ready = match (compressed, &relay) {
            (Some(output), _) => !output.is_empty(),
            (None, Some(relay)) => relay.has_output(),
            (None, None) => file_body > 0,
        };
        let head_left = buffers.client_head.len() - state.client_head_sent;
        if !self.client_ready.writable || (head_left == 0 && !body_ready) {
            return Ok(false);
        }
        // `limit_rate`: at most what the rate allows by now (nginx's
        // formula: RATE bytes per started second, after the first
        // `limit_rate_after`); none while a wait is running.
        let mut allowed = usize::MAX;
        if state.limit_rate != 0 {
            let pace = Pacing {
                rate: state.limit_rate,
                after: state.rate_after,
                sent: state.log.bytes_sent,
            };
            match pace.allowance(&mut state.paced_until, at) {
                Some(bytes) => allowed = bytes,
                None => return Ok(false),
            }
        }
        let mut scratch = [0u8; FRAMING_SCRATCH];
        let body = match (compressed, &relay) {
            (Some(output), _) => BodyOut {
                before: &[],
                data: (output, &[]),
                after: &[],
            },
            (None, Some(relay)) => relay.output(&buffers.response, &mut scratch),
            (None, None) => BodyOut::plain(&buffers.response, file_body),
        };
        // A head whose body is still on its way: let the kernel hold it for
        // the body (see `io::write_out`). Only with the head: once the body
        // flows, full segments leave anyway, and holding each write's tail
        // would cost a flush per write (measured: 1 MiB responses took twice
        // the CPU).
        let body = body.truncated(allowed.saturating_sub(head_left));
        let more = head_left > 0 && relay.as_ref().is_some_and(|relay| !relay.fully_received());
        let (outcome, from_head, from_body) = write_out(
            &mut self.client,
            &mut self.client_ready,
            &buffers.client_head[state.client_head_sent..],
            &body,
            more,
        );
        match outcome {
            IoOutcome::Progress(n) => {
                trace!("#{} <- * {n}B", ctx.slot);
                // A write without MSG_MORE sends whatever was held too.
                self.corked = more && n > 0;
                state.waits.touch(Direction::ClientWrite, at);
                state.client_head_sent += from_head;
                state.log.body_bytes_sent += from_body as u64;
                state.log.bytes_sent += n as u64;
                if let Some(stream) = state.gzip.as_deref_mut() {
                    stream.written(from_body);
                } else if let Some(relay) = relay {
                    relay.written(from_body, &mut buffers.response);
                } else if file_body > 0 {
                    buffers.response.consume(from_body);
                }
                Ok(n > 0)
            }
            IoOutcome::WouldBlock | IoOutcome::Eof => Ok(false),
            IoOutcome::Failed(e) => {
                debug!("#{} client write failed: {e}", ctx.slot);
                Err(Abort::ClientGone("stopped receiving the response"))
            }
        }
    }

    /// Where this request came to, for a rewritten `Location` that is a
    /// path: the scheme, the `Host` without its port (the local address
    /// without one) and the listening port, as nginx's header filter uses.
    pub(super) fn origin<'a>(
        &'a self,
        host: &'a [u8],
        config: &crate::config::Config,
    ) -> response::Origin<'a> {
        let host = match host.first() {
            // `[::1]:8080` keeps its brackets.
            Some(b'[') => host
                .iter()
                .position(|&b| b == b']')
                .and_then(|end| host.get(..=end))
                .unwrap_or(host),
            _ => host
                .iter()
                .position(|&b| b == b':')
                .and_then(|colon| host.get(..colon))
                .unwrap_or(host),
        };
        // A port chosen at start (`--listen …:0`) is the socket's to say,
        // asked only if a redirect is rewritten.
        let port = config
            .listen
            .get(self.listener as usize)
            .map_or(0, |l| l.addr.port());
        response::Origin {
            https: self.client.is_tls(),
            host,
            port,
            socket: self.client.socket(),
        }
    }

    /// Parses response heads at the front of the response ring: relays
    /// interim (1xx) heads, and on the final head sets up the body relay and
    /// queues the client's head.
    pub(super) fn parse_response(
        &self,
        exchange: &mut Exchange,
        ctx: &mut Context<'_>,
    ) -> Result<bool, (ProxyError, u16)> {
        let mut progress = false;
        let settings = exchange.route.settings(&ctx.config);
        // What a 5xx may do, decided before the head borrows the buffers.
        let retry_mask = if next_upstream_allowed(exchange, u16::MAX, &ctx.config, ctx.now)
            && ctx.upstreams.has_candidate(
                &ctx.config,
                exchange.group as usize,
                exchange.tried,
                ctx.now,
            ) {
            settings.next_upstream
        } else {
            0
        };
        // An interim head waits until the previous one is written out.
        while exchange.client_head_sent == exchange.buffers.client_head.len()
            && !exchange.buffers.response.is_empty()
        {
            let BufferSet {
                response: ring,
                client_head,
                extra_headers,
                host,
                ..
            } = &mut *exchange.buffers;
            let state = &mut *exchange.state;
            let mut headers = crate::http::header_slots();
            let bytes = ring.make_contiguous();
            let limit = settings.max_response_head.unwrap_or(settings.max_head);
            let head = match response::parse(bytes, &mut headers, &state.request, limit) {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(progress),
                Err(e) => {
                    return Err((
                        ProxyError::UpstreamResponse(e),
                        next_upstream::INVALID_HEADER,
                    ))
                }
            };
            client_head.clear();
            state.client_head_sent = 0;
            progress = true;
            if head.is_switch() {
                // The upstream agreed to the upgrade: relay its 101 and
                // become a tunnel. Nothing the client sent was forwarded
                // before this point.
                response::write_informational_head(&head, &state.request, client_head);
                state.log.status = 101;
                state.log.upstream_status = 101;
                state.log.head_received = state.mark(ctx.now_ms);
                state.response = ResponseState::Switching;
                let head_len = head.head_len;
                ring.consume(head_len);
                break;
            }
            if head.is_interim() {
                // HTTP/1.0 clients cannot take 1xx; a 100 after ferry's own
                // 100 would be a duplicate.
                let duplicate = head.status == 100 && state.sent_continue;
                if state.request.version == Version::Http11 && !duplicate {
                    response::write_informational_head(&head, &state.request, client_head);
                }
                trace!("#{} interim response {}", ctx.slot, head.status);
                let head_len = head.head_len;
                ring.consume(head_len);
                continue;
            }
            // `proxy_next_upstream http_503` and the like: another server may
            // answer better, if one is left and nothing went to the client.
            let status_condition = next_upstream::for_status(head.status);
            if status_condition & retry_mask != 0 {
                return Err((ProxyError::UpstreamStatus(head.status), status_condition));
            }
            // `proxy_intercept_errors on`: a status the location has an
            // error page for gets the page instead.
            if settings.intercept_errors
                && head.status >= 300
                && crate::config::ErrorPage::find(&settings.error_pages, head.status).is_some()
                && !state.error_page_sent
            {
                return Err((ProxyError::Intercepted(head.status), 0));
            }
            if let Some(peer) = state.peer {
                ctx.upstreams.succeeded(&ctx.config, peer);
            }
            // `gzip`: decided on the request's facts (noted when it came)
            // and this head's.
            let gzip = if state.gzip_facts == 0 {
                gzip::Decision::default()
            } else {
                // A HEAD gets the fields a GET would (nginx: Content-Encoding
                // and Vary, no length), and no body.
                let header_only = matches!(head.status, 204 | 304);
                let length = match head.body {
                    BodyKind::Length(n) => Some(n),
                    // A HEAD's: the length its GET would have.
                    BodyKind::Empty => head
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok()),
                    BodyKind::Chunked | BodyKind::UntilClose => None,
                };
                let facts =
                    gzip::ResponseFacts::of_head(head.status, head.headers, length, header_only);
                let now = ctx
                    .wall_clock
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                gzip::decide(&settings.gzip, state.gzip_facts, &facts, now)
            };
            let (framing, keep_alive) =
                response::client_framing(&head, &state.request, gzip.compress);
            let keep_alive = keep_alive && state.keep_alive && self.may_keep_alive(settings);
            state.keep_alive = keep_alive;
            let always_end = (state.always_headers_end as usize).min(extra_headers.len());
            let add = if add_header_applies(head.status) {
                &extra_headers[..]
            } else {
                &extra_headers[..always_end]
            };
            let extra = response::ExtraFields {
                hide: &settings.hide_headers,
                pass: &settings.pass_headers,
                add,
                date: ctx.date.as_bytes(),
                redirects: &settings.proxy_redirects,
                cookie_domains: &settings.cookie_domains,
                cookie_paths: &settings.cookie_paths,
                origin: self.origin(host, &ctx.config),
                replaces_cache_fields: settings.files.expires != crate::files::Expires::Off
                    && add_header_applies(head.status),
                charset: settings.charset.as_deref(),
                charset_types: &settings.charset_types,
                vary_accept_encoding: gzip.vary,
            };
            response::write_client_head(
                &head,
                &state.request,
                framing,
                keep_alive,
                &extra,
                client_head,
            );
            let mode = match framing {
                ClientFraming::AsReceived => RelayMode::Rechunk,
                // The compressor takes the data alone.
                ClientFraming::Dechunked | ClientFraming::Compressed => RelayMode::Dechunk,
            };
            if gzip.compress && state.request.method != Method::Head {
                let chunked = state.request.version == Version::Http11;
                state.gzip = Some(ctx.gzip_streams.take(settings.gzip.level, chunked));
                trace!("#{} compressing the response (gzip)", ctx.slot);
            }
            state.log.status = head.status;
            state.log.upstream_status = head.status;
            state.log.head_received = state.mark(ctx.now_ms);
            state.response = ResponseState::Body {
                relay: BodyRelay::new(head.body, mode),
                upstream_reusable: head.upstream_reusable,
            };
            let head_len = head.head_len;
            ring.consume(head_len);
            break;
        }
        Ok(progress)
    }
}

/// `gzip`: moves the body data the relay has decoded through the
/// compressor, for as long as the compressor has room. The data leaves the
/// response ring as it is compressed, so the ring's back-pressure holds.
pub(super) fn compress_body(exchange: &mut Exchange) {
    let Exchange { buffers, state } = exchange;
    let state = &mut **state;
    let Some(stream) = &mut state.gzip else {
        return;
    };
    match &mut state.response {
        ResponseState::Body { relay, .. } => {
            let last = if relay.fully_received() {
                InputEnd::BodyEnd
            } else {
                InputEnd::Dry
            };
            let mut scratch = [0u8; FRAMING_SCRATCH];
            let (first, second) = relay.output(&buffers.response, &mut scratch).data;
            let taken = compress_parts(stream, first, second, last);
            if taken > 0 {
                relay.written(taken, &mut buffers.response);
            }
        }
        ResponseState::File { remaining, .. } => {
            // The file's bytes in the ring are all body.
            let last = if *remaining == 0 {
                InputEnd::BodyEnd
            } else {
                InputEnd::Dry
            };
            let (first, second) = buffers.response.readable_from(0, usize::MAX);
            let taken = compress_parts(stream, first, second, last);
            buffers.response.consume(taken);
        }
        _ => {}
    }
}

/// Compresses the two halves of a ring's data; returns the bytes taken.
fn compress_parts(
    stream: &mut gzip::GzipStream,
    first: &[u8],
    second: &[u8],
    last: InputEnd,
) -> usize {
    let first_end = if second.is_empty() {
        last
    } else {
        InputEnd::MoreNow
    };
    let mut taken = stream.compress(first, first_end);
    if taken == first.len() && !second.is_empty() {
        taken += stream.compress(second, last);
    }
    taken
}

/// `limit_rate` for one exchange: the rate, the unpaced start and the
/// bytes sent so far (head included, as nginx counts them).
struct Pacing {
    rate: u64,
    after: u64,
    sent: u64,
}

impl Pacing {
    /// The bytes the client may get now (`now` in ms from the exchange's
    /// start), or `None` while a wait runs. nginx's budget: RATE bytes per
    /// started second, plus the first `after` bytes; nginx writes a budget
    /// at once and then waits what it takes at the rate, which comes to
    /// the same as waiting for the next second's budget, as ferry does
    /// (its writes are ring-sized, so per-write waits would pace finer
    /// than nginx does).
    fn allowance(&self, paced_until: &mut u32, now: u32) -> Option<usize> {
        if *paced_until != 0 {
            if now < *paced_until {
                return None;
            }
            *paced_until = 0;
        }
        let seconds = u64::from(now) / 1000 + 1;
        let budget = self.rate.saturating_mul(seconds).saturating_add(self.after);
        match budget.checked_sub(self.sent) {
            Some(left) if left > 0 => Some(usize::try_from(left).unwrap_or(usize::MAX)),
            _ => {
                // Enough more at the next whole second, or at the rate.
                let short = self.sent - budget + 1;
                let seconds_more = short.div_ceil(self.rate);
                let at = seconds
                    .saturating_add(seconds_more - 1)
                    .saturating_mul(1000);
                *paced_until = u32::try_from(at).unwrap_or(u32::MAX).max(1);
                None
            }
        }
    }
}
