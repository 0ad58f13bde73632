//! From a routed request to an exchange: what `parse_request` hands over
//! ([`ParsedRequest`], its [`Target`]), the exchange's fresh state
//! (`new_exchange`: a recycled box written over), and `start_exchange`,
//! which sends each target to the part of the connection that answers it
//! (`answer.rs`, `files.rs`, `upstream_side.rs`) after checking the body
//! against `client_max_body_size` and answering `Expect: 100-continue`.
//!
//! In the course (docs/learn): chapter 7, step 4 (an exchange begins).

use std::net::SocketAddr;

use log::{debug, info};

use super::authenticating::PendingCheck;
use super::files::FileTarget;
use super::phase::{self, Exchange, ExchangeLog, ExchangeState, Phase, ResponseState, RouteRef};
use super::relay::{BodyRelay, RelayMode};
use super::{Connection, Context};
use crate::buffer::BufferSet;
use crate::config::UpstreamBody;
use crate::error::ProxyError;
use crate::http::error_page::ErrorResponse;
use crate::http::error_page::CONTINUE;
use crate::http::framing::BodyKind;
use crate::http::request::{Method, RequestSummary};
use crate::http::Version;
use crate::status::StatusPage;
use crate::upstream::Tried;

impl Connection {
    /// An exchange for a head that was refused or never completed: no
    /// location's `add_header` lines apply to its answer.
    pub(super) fn unparsed_exchange(
        &self,
        mut buffers: Box<BufferSet>,
        ctx: &mut Context<'_>,
    ) -> Exchange {
        buffers.extra_headers.clear();
        self.new_exchange(buffers, RequestSummary::unparsed(), ctx)
    }

    pub(super) fn new_exchange(
        &self,
        buffers: Box<BufferSet>,
        request: RequestSummary,
        ctx: &mut Context<'_>,
    ) -> Exchange {
        let fresh = ExchangeState {
            request,
            started: ctx.now,
            started_ms: ctx.now_ms,
            request_body: BodyRelay::new(request.body, RelayMode::Rechunk),
            upstream_head_sent: 0,
            client_head_sent: 0,
            response: ResponseState::AwaitingHead,
            keep_alive: request.keep_alive,
            sent_continue: false,
            reused_upstream: false,
            retried: false,
            response_started: false,
            upstream_write_failed: false,
            waits: phase::Waits::default(),
            route: RouteRef::default(),
            group: 0,
            peer: None,
            client: self.peer,
            tried: Tried::default(),
            key_hash: 0,
            body_sent: false,
            always_headers_end: 0,
            error_page_sent: false,
            log: ExchangeLog::default(),
            gzip_facts: 0,
            gzip: None,
            limit_rate: 0,
            rate_after: 0,
            paced_until: 0,
        };
        // A state box from an earlier exchange, written over: no allocation.
        let state = match ctx.spare_states.pop() {
            Some(mut state) => {
                *state = fresh;
                state
            }
            None => Box::new(fresh),
        };
        Exchange { buffers, state }
    }

    /// A valid head arrived: check its body against the limit, answer
    /// `Expect: 100-continue`, and get an upstream connection.
    pub(super) fn start_exchange(
        &mut self,
        buffers: Box<BufferSet>,
        parsed: ParsedRequest,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.requests += 1;
        self.server = u32::try_from(parsed.server).unwrap_or(u32::MAX);
        let summary = parsed.summary;
        let mut exchange = self.new_exchange(buffers, summary, ctx);
        exchange.always_headers_end = parsed.always_headers_end;
        exchange.log.request_length = parsed.head_len as u64;
        exchange.route = RouteRef::new(parsed.server, parsed.location);
        exchange.client = parsed.client;
        exchange.gzip_facts = parsed.gzip_facts;
        let limits = &exchange.settings(&ctx.config).limits;
        let (rate, after) = parsed.rates.unwrap_or((limits.rate, limits.rate_after));
        if rate != 0 {
            exchange.limit_rate = rate;
            exchange.rate_after = after;
        }
        let group = match parsed.target {
            Target::Upstream(group) => group,
            Target::Status => return self.answer_status(exchange, ctx),
            Target::StubStatus(page) => return self.answer_stub_status(exchange, page, ctx),
            Target::Return(status) => return self.answer_return(exchange, status, None, ctx),
            Target::ReturnText { status, has_text } => {
                return self.answer_return(exchange, status, Some(has_text), ctx)
            }
            Target::NotFound => return self.answer_page(exchange, ErrorResponse::NotFound, ctx),
            Target::File(file) => return self.answer_file(exchange, *file, None, ctx),
            Target::AddSlash => return self.answer_add_slash(exchange, ctx),
            Target::Page(page) => return self.answer_page(exchange, page, ctx),
            // Taken by `step_reading` before an exchange exists.
            Target::Delayed(_) => {
                return self.answer_page(exchange, ErrorResponse::InternalServerError, ctx)
            }
            Target::Unauthorized => {
                ctx.stats.auth_failures.add(1);
                return self.answer_page(exchange, ErrorResponse::Unauthorized, ctx);
            }
            Target::Code(code) => return self.answer_return(exchange, code, Some(false), ctx),
            Target::Forbidden => {
                info!(
                    "#{} access forbidden by rule, client: {}",
                    ctx.slot, self.peer
                );
                return self.answer_page(exchange, ErrorResponse::Forbidden, ctx);
            }
        };
        exchange.group = u32::try_from(group).unwrap_or(u32::MAX);
        if !matches!(
            exchange.settings(&ctx.config).upstream_body,
            UpstreamBody::Client
        ) {
            // The client's body is still read (the connection goes on after
            // it), but none of it goes upstream.
            exchange.request_body = BodyRelay::new(summary.body, RelayMode::Discard);
        }
        debug!("#{} request {} from {}", ctx.slot, self.requests, self.peer);
        let limit = exchange.settings(&ctx.config).client_max_body_size;
        if let BodyKind::Length(length) = summary.body {
            if limit != 0 && length > limit {
                return self.fail(exchange, ProxyError::BodyTooLarge { limit }, ctx);
            }
        }
        if summary.expect_continue && exchange.buffers.request.is_empty() {
            exchange.buffers.client_head.extend_from_slice(CONTINUE);
            exchange.sent_continue = true;
        }
        exchange.key_hash = parsed.key_hash;
        self.choose_upstream(exchange, None, ctx)
    }
}

/// A request head accepted by `parse_request`, routed.
pub(super) struct ParsedRequest {
    pub(super) summary: RequestSummary,
    pub(super) server: usize,
    pub(super) location: Option<usize>,
    pub(super) target: Target,
    /// The `hash` key's hash, for groups that balance by one.
    pub(super) key_hash: u32,
    /// `add_header … always` lines end here in `extra_headers`; the rest
    /// apply to 2xx and 3xx only.
    pub(super) always_headers_end: u32,
    /// The client's head, in bytes (`$request_length` starts with it).
    pub(super) head_len: usize,
    /// The client's address: the peer's, or the real one a trusted proxy
    /// named.
    pub(super) client: SocketAddr,
    /// `auth_basic` with a hash for the password thread: checked before the
    /// request goes on (`authenticating.rs`).
    pub(super) password_check: Option<Box<PendingCheck>>,
    /// `gzip`: what the request says (`http::gzip::facts`).
    pub(super) gzip_facts: u8,
    /// `limit_rate` and `limit_rate_after` rendered from variables, when
    /// they have any (`route_parts::rendered_rates`).
    pub(super) rates: Option<(u64, u64)>,
}

/// Where a routed request goes.
#[derive(Debug)]
pub(super) enum Target {
    /// The upstream group with this index (head already written).
    Upstream(usize),
    /// `return CODE …` of the location.
    Return(u16),
    /// A `return` whose text (if it has one) is in `return_text` already:
    /// an `if`'s.
    ReturnText { status: u16, has_text: bool },
    /// No location, or one with nothing to do.
    NotFound,
    /// `deny` matched the client.
    Forbidden,
    /// The configured status path.
    Status,
    /// A location with `stub_status`, and the page the query asks for.
    StubStatus(StatusPage),
    /// A file of a static location, opened.
    File(Box<FileTarget>),
    /// A static location's directory asked for without its slash: 301 to
    /// the uri with one (in `return_text`).
    AddSlash,
    /// One of ferry's pages (405 for a method files do not take, 500).
    Page(ErrorResponse),
    /// A status from a file lookup (404, 403) or `try_files … =CODE`.
    Code(u16),
    /// `auth_basic` refused the credentials (`WWW-Authenticate` is among
    /// the `always` fields).
    Unauthorized,
    /// `limit_req`: wait this many milliseconds, then route it again.
    Delayed(u64),
}

impl RequestSummary {
    /// Stands in for a request whose head could not be parsed.
    pub(super) fn unparsed() -> RequestSummary {
        RequestSummary {
            method: Method::Other,
            version: Version::Http11,
            body: BodyKind::Empty,
            keep_alive: false,
            expect_continue: false,
            upgrade: false,
        }
    }
}
