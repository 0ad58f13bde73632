//! The `ReadingRequest` phase: from the first byte of a request head to
//! an exchange with a route and an upstream to go to.
//!
//! `step_reading` reads until the head is complete (or too large),
//! `parse_request` asks `http::request` what the bytes mean, routes the
//! request (server, location, the rewrite-module scripts, a static
//! location's lookup; routing again after an internal redirect, with the
//! head still in the ring: the loop's parts are in `route_parts.rs`) and
//! writes the head the upstream will see, and `start_exchange`
//! checks the body against `client_max_body_size`, answers
//! `Expect: 100-continue` and hands over to `upstream_side.rs`. Requests
//! ferry answers itself (`return`, `deny`, the status path) leave here for
//! `answer.rs`, and files for `files.rs`.
//!
//! In the course (docs/learn): chapter 7, step 4 (a request head in); chapter
//! 5 for where it ends.

use std::time::Instant;

use log::{debug, error, info, trace};

use super::authenticating::{access_phase, PendingCheck};
use super::files::static_target;
use super::io::{read_into, IoOutcome};
use super::limiting::preaccess;
use super::phase::Phase;
use super::route_parts::{
    capture_location, closes_for_browser, group_by_name, is_address, proxy_host, query_of,
    rendered_rates, route_static, run_script, split_redirect, write_expires, StaticRoute,
    MAX_INTERNAL_REDIRECTS,
};
use super::starting::{ParsedRequest, Target};
use super::{Connection, Context};
use crate::buffer::BufferSet;
use crate::config::{
    AccessLogTarget, Action, LocationConfig, LocationMatch, ScriptBuffers, ScriptOutcome,
};
use crate::error::ProxyError;
use crate::files;
use crate::http::error_page::ErrorResponse;
use crate::http::headers;
use crate::http::request::{self, RequestSummary};
use crate::http::{self as http, Version};
use crate::routing;
use crate::status::StatusPage;
use crate::variables::RequestView;

impl Connection {
    pub(super) fn step_reading(
        &mut self,
        mut buffers: Box<BufferSet>,
        searched: usize,
        since: Instant,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.adopt_latest_config(ctx);
        let mut searched = searched;
        if self.awaiting_proxy_header && !buffers.request.is_empty() {
            let parsed = match crate::proxy_protocol::parse(buffers.request.make_contiguous()) {
                // No room left for the rest of it.
                Ok(None) if buffers.request.is_full() => {
                    Err(crate::proxy_protocol::ProxyHeaderError::TooLong)
                }
                parsed => parsed,
            };
            match parsed {
                Ok(None) => {}
                Ok(Some((header, len))) => {
                    debug!(
                        "#{} PROXY protocol: client {:?}, via {}",
                        ctx.slot,
                        header.source(),
                        self.peer
                    );
                    buffers.request.consume(len);
                    self.proxy_header = Some(Box::new(header));
                    self.awaiting_proxy_header = false;
                    searched = 0;
                }
                Err(e) => {
                    // nginx's "broken header": closed without a response.
                    error!("#{} broken header from {}: {e}", ctx.slot, self.peer);
                    ctx.buffers.give_back(buffers);
                    return (Phase::Closed, true);
                }
            }
        }
        let held = buffers.request.len();
        if held > searched && !self.awaiting_proxy_header {
            let max_head = ctx.config.server_settings(self.server as usize).max_head;
            let bytes = buffers.request.make_contiguous();
            // The first look parses at once: a head usually arrives whole,
            // and httparse finds its end in the same pass. Only a head that
            // comes in pieces is scanned before each new parse, so a client
            // sending one byte at a time costs one pass, not one per byte.
            if searched == 0 || http::head_may_be_complete(bytes, searched) || held >= max_head {
                match self.parse_request(&mut buffers, ctx) {
                    Ok(Some(_)) if self.client.is_plain_http_on_tls() => {
                        // nginx's 497, answered 400 in plain HTTP, then closed.
                        let exchange = self.unparsed_exchange(buffers, ctx);
                        return self.fail(exchange, ProxyError::PlainHttpToHttps, ctx);
                    }
                    Ok(Some(ParsedRequest {
                        target: Target::Delayed(ms),
                        ..
                    })) => return self.start_delay(buffers, ms, ctx),
                    Ok(Some(mut parsed)) => {
                        self.limit_req_passed = false;
                        return match parsed.password_check.take() {
                            Some(check) => self.start_password_check(buffers, parsed, check, ctx),
                            None => self.start_exchange(buffers, parsed, ctx),
                        };
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let exchange = self.unparsed_exchange(buffers, ctx);
                        return self.fail(exchange, error, ctx);
                    }
                }
            }
            searched = held;
        }
        if !self.client_ready.readable {
            return (
                Phase::ReadingRequest {
                    buffers,
                    searched,
                    since,
                },
                false,
            );
        }
        match read_into(
            &mut self.client,
            &mut self.client_ready,
            &mut buffers.request,
        ) {
            IoOutcome::Progress(n) => {
                trace!("#{} -> * {n}B", ctx.slot);
                if held == 0 {
                    // nginx counts a request from its first byte.
                    ctx.stats.requests.add(1);
                }
                (
                    Phase::ReadingRequest {
                        buffers,
                        searched,
                        since,
                    },
                    true,
                )
            }
            IoOutcome::WouldBlock if buffers.request.is_empty() => {
                ctx.buffers.give_back(buffers);
                (Phase::Idle { since }, true)
            }
            IoOutcome::WouldBlock => (
                Phase::ReadingRequest {
                    buffers,
                    searched,
                    since,
                },
                false,
            ),
            IoOutcome::Eof => {
                if buffers.request.is_empty() {
                    debug!("#{} client closed the connection", ctx.slot);
                } else {
                    info!(
                        "#{} client {} closed the connection in the middle of a request head",
                        ctx.slot, self.peer
                    );
                }
                self.client_eof = true;
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
            IoOutcome::Failed(e) => {
                debug!("#{} client read failed: {e}", ctx.slot);
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
        }
    }

    /// Parses the head at the front of `buffers.request` and routes it; on
    /// success writes the upstream's head, the access log's captures and
    /// the `add_header` lines, and consumes the client's head.
    fn parse_request(
        &self,
        buffers: &mut BufferSet,
        ctx: &Context<'_>,
    ) -> Result<Option<ParsedRequest>, ProxyError> {
        let BufferSet {
            request: ring,
            upstream_head,
            log_fields,
            extra_headers,
            return_text,
            path: normalized,
            request_line,
            host,
            file_path,
            redirect,
            redirect_args,
            rewrite_args,
            set_values,
            set_spans,
            captured,
            capture_spans,
            held_limits,
            ..
        } = buffers;
        // `set` values and captures are the request's own.
        set_values.clear();
        set_spans.clear();
        capture_spans.clear();
        // What a server's or location's script writes into.
        macro_rules! script_buffers {
            ($args_set:expr) => {
                ScriptBuffers {
                    uri: redirect,
                    args: rewrite_args,
                    args_set: $args_set,
                    scratch: return_text,
                    set_values,
                    set_spans,
                    captured,
                    capture_spans,
                }
            };
        }
        let max_head = ctx.config.server_settings(self.server as usize).max_head;
        let mut headers = crate::http::header_slots();
        let head = match request::parse(ring.make_contiguous(), &mut headers, max_head) {
            Err(request::RequestError::HigherMinorVersion) => {
                // HTTP/1.2..1.9: fixed up in place, then parsed as HTTP/1.1.
                trace!(
                    "#{} HTTP/1.x request with x > 1: served as HTTP/1.1",
                    ctx.slot
                );
                request::accept_higher_minor_version(ring.make_contiguous_mut());
                headers = crate::http::header_slots();
                request::parse(ring.make_contiguous(), &mut headers, max_head)
            }
            parsed => parsed,
        };
        // Borrowed where it lies: the head is read across the routing loop.
        let head = match &head {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ProxyError::Request(*e)),
        };

        // For error log lines about this request (bounded: they are context).
        const CONTEXT_MAX: usize = 1024;
        request_line.clear();
        for part in [head.method, " ", head.target, " ", head.version.as_str()] {
            let room = CONTEXT_MAX.saturating_sub(request_line.len());
            request_line.extend_from_slice(&part.as_bytes()[..part.len().min(room)]);
        }
        host.clear();
        let host_bytes = head.host.unwrap_or_default();
        host.extend_from_slice(&host_bytes[..host_bytes.len().min(CONTEXT_MAX)]);

        // Route: server by listener and Host, then location by path.
        let config = &*ctx.config;
        let server = routing::select_server(config, self.listener as usize, head.host);
        // Locations match nginx's `$uri`: decoded, dots and `//` resolved, so no
        // spelling of a path slips past a `location` (and its access rules).
        let origin_form = head.origin_form;
        let path = if head.absolute && !origin_form.starts_with('/') {
            "/"
        } else {
            origin_form
        };
        if routing::normalize_path(path, normalized).is_err() {
            return Err(ProxyError::Request(request::RequestError::InvalidPath));
        }
        let server_config = config.servers.get(server);
        // The real client address (`set_real_ip_from`): the server's rules
        // first, then, if they did not apply, the location's — nginx's
        // POST_READ and PREACCESS phases. It holds across internal
        // redirects.
        let proxy_source = self.proxy_protocol_source();
        let mut client = self.peer;
        let mut real_ip_set = false;
        let server_real_ip = &config.server_settings(server).real_ip;
        let real = match server_real_ip.is_on() {
            true => crate::http::realip::real_address(
                server_real_ip,
                self.peer,
                head.headers,
                proxy_source,
            ),
            false => None,
        };
        if let Some(real) = real {
            debug!(
                "#{} real client address {real} (peer {})",
                ctx.slot, self.peer
            );
            client = real;
            real_ip_set = true;
        }
        // An index file or `try_files` routes the request again with another
        // uri, as nginx's internal redirects do, at most ten times; `named`
        // is `try_files … @name`'s location.
        let mut redirects = 0;
        let mut key_hash = 0;
        let mut named: Option<usize> = None;
        let mut redirected_args: Option<usize> = None;
        // The server's rewrites are applied (until an internal redirect);
        // `staying`: a location's `rewrite … break` keeps its location.
        let mut server_done = false;
        let mut staying = false;
        // The `add_header` lines of the `if` block the request is in (nginx
        // makes an `if` a location of its own): they replace the
        // location's until another location is chosen.
        let mut if_headers: Option<&[crate::config::AddHeader]> = None;
        let mut password_check: Option<Box<PendingCheck>>;
        let mut limits_done = false;
        let (location, target, always_headers_end, browsers, gzip_facts, rates) = loop {
            password_check = None;
            let reached_by_name = named.is_some();
            let mut location = named
                .take()
                .or_else(|| server_config.and_then(|s| routing::select_location(s, normalized)));
            let mut view = RequestView {
                method: head.method,
                target: head.target,
                uri: &normalized[..],
                args: redirected_args.map(|start| redirect_args.get(start..).unwrap_or_default()),
                root: server_config.map(|s| &s.settings.files.root),
                proxy_host: "",
                // Given once the scripts have run (they write the values).
                script: crate::variables::ScriptValues::NONE,
                host: head.host.unwrap_or_default(),
                version: head.version.as_str(),
                headers: head.headers,
                client,
                peer: self.peer,
                proxy_protocol: self.proxy_header(),
                server_name: config.server_name(server),
                server_port: config
                    .listen
                    .get(self.listener as usize)
                    .map_or(0, |l| l.addr.port()),
                tls: self.client.tls_facts(),
                request_id: crate::variables::RequestId::default(),
                maps: &config.maps,
            };
            // The rewrite module's lines (`if`, `rewrite`, `break`, `return`):
            // the server's before a location is chosen, then the location's,
            // as nginx's two rewrite phases run.
            let skip_location_script = std::mem::take(&mut staying);
            let mut scripted = ScriptOutcome::Done;
            let server_script =
                server_config.filter(|s| !s.script.is_empty() && !reached_by_name && !server_done);
            if let Some(server_config) = server_script {
                let mut args_set = false;
                let buffers = script_buffers!(&mut args_set);
                let log = server_config.settings.rewrite_log;
                // A server's `if` holds no `add_header` (nginx allows it in
                // a location's only).
                scripted = run_script(&server_config.script, &view, buffers, log, &mut None);
            }
            if !skip_location_script {
                if_headers = None;
            }
            if let ScriptOutcome::Stopped = scripted {
                // A server's `break` ends the server's lines only.
                scripted = ScriptOutcome::Done;
            }
            if let ScriptOutcome::Rewritten { .. } = scripted {
                // The location is found by the rewritten uri.
                server_done = true;
                std::mem::swap(normalized, redirect);
                std::mem::swap(redirect_args, rewrite_args);
                redirected_args = Some(0);
                continue;
            }
            if !matches!(scripted, ScriptOutcome::Done) {
                location = None;
            }
            let chosen = location.and_then(|l| config.location(server, l));
            // nginx answers a client's own request for an `internal`
            // location 404 as soon as it finds it, before its `if`s.
            let internal_only = redirects == 0 && chosen.is_some_and(|l| l.internal);
            let location_script =
                chosen.filter(|l| !l.script.is_empty() && !internal_only && !skip_location_script);
            if let Some(chosen) = chosen {
                // `$document_root`, `$request_filename`: the location's.
                view.root = Some(&chosen.settings.files.root);
                // `location ~ …(…)`: its groups are `$1`… for what follows.
                if let LocationMatch::Regex(regex) = &chosen.matcher {
                    capture_location(regex, view.uri, captured, capture_spans);
                }
            }
            if let (ScriptOutcome::Done, Some(chosen)) = (&scripted, location_script) {
                let mut args_set = false;
                let buffers = script_buffers!(&mut args_set);
                let log = chosen.settings.rewrite_log;
                scripted = run_script(&chosen.script, &view, buffers, log, &mut if_headers);
            }
            if let ScriptOutcome::Rewritten { again } = scripted {
                std::mem::swap(normalized, redirect);
                std::mem::swap(redirect_args, rewrite_args);
                redirected_args = Some(0);
                if !again {
                    // `break`: this location serves the rewritten uri.
                    named = location;
                    staying = true;
                    continue;
                }
                // `last`: nginx's internal redirect, counted.
                redirects += 1;
                server_done = false;
                if redirects <= MAX_INTERNAL_REDIRECTS {
                    continue;
                }
                error!(
                    "rewrite or internal redirection cycle while processing \"{}\"",
                    String::from_utf8_lossy(normalized)
                );
                log_fields.clear();
                extra_headers.clear();
                break (
                    None,
                    Target::Page(ErrorResponse::InternalServerError),
                    0,
                    0,
                    0,
                    None,
                );
            }
            // From here on, templates see what the scripts set and captured.
            view.script = crate::variables::ScriptValues {
                haystack: captured,
                captures: capture_spans,
                sets: crate::variables::SetValues {
                    bytes: set_values,
                    spans: set_spans,
                },
            };
            let script_broke = skip_location_script || matches!(scripted, ScriptOutcome::Stopped);
            let settings = match chosen {
                Some(chosen) => &chosen.settings,
                None => config.server_settings(server),
            };
            // A `return` (the location's own, or a script's), a rewrite
            // redirect and an `internal` location answer before nginx's
            // PREACCESS and ACCESS phases: neither the location's
            // `set_real_ip_from` nor allow/deny/limit_except apply to them.
            let location_returns = !script_broke
                && matches!(
                    chosen,
                    Some(LocationConfig {
                        action: Action::Return { .. },
                        ..
                    })
                );
            let answered_in_rewrite_phase = internal_only
                || location_returns
                || matches!(
                    scripted,
                    ScriptOutcome::Redirect(_) | ScriptOutcome::Return(_)
                );
            if !real_ip_set && !answered_in_rewrite_phase && settings.real_ip.is_on() {
                if let Some(real) = crate::http::realip::real_address(
                    &settings.real_ip,
                    self.peer,
                    head.headers,
                    proxy_source,
                ) {
                    debug!(
                        "#{} real client address {real} (peer {})",
                        ctx.slot, self.peer
                    );
                    client = real;
                    real_ip_set = true;
                    view.client = real;
                }
            }

            log_fields.clear();
            if settings.access_log != AccessLogTarget::Off {
                if let Some((_, format)) = config.log_formats.get(settings.log_format) {
                    format.capture(&view, log_fields);
                }
                // The `if=` condition's request values follow the format's.
                if let Some(condition) = &settings.access_log_if {
                    condition.capture(&view, log_fields);
                }
            }
            extra_headers.clear();
            let mut conditional = 0;
            for always in [true, false] {
                let adds = if_headers.unwrap_or(&settings.add_headers);
                for add in adds.iter().filter(|a| a.always == always) {
                    headers::write_rendered_field(extra_headers, &add.name, &add.value, &view);
                }
                if always {
                    conditional = extra_headers.len();
                }
            }

            let target = if config.status_path.as_deref() == Some(head.target) {
                Target::Status
            } else if internal_only {
                Target::NotFound
            } else if let ScriptOutcome::Redirect(status) = scripted {
                // `rewrite … redirect|permanent`: the URL is in `redirect`.
                return_text.clear();
                return_text.extend_from_slice(redirect);
                Target::ReturnText {
                    status,
                    has_text: true,
                }
            } else if let ScriptOutcome::Return(Action::Return {
                status,
                text,
                template,
            }) = scripted
            {
                // The rewrite phase comes before access checks, as in nginx.
                return_text.clear();
                match (template, text) {
                    (Some(template), _) => template.render(&view, return_text),
                    (None, Some(text)) => return_text.extend_from_slice(text.as_bytes()),
                    (None, None) => {}
                }
                Target::ReturnText {
                    status: *status,
                    has_text: template.is_some() || text.is_some(),
                }
            } else if let Some(refused) =
                (!location_returns && !limits_done && settings.limits.any())
                    .then(|| {
                        // nginx's PREACCESS phase, once per request.
                        limits_done = true;
                        preaccess(&settings.limits, &view, held_limits, self.limit_req_passed)
                    })
                    .flatten()
            {
                refused
            } else if let Some(refused) = (!location_returns && settings.has_access_phase())
                .then(|| {
                    access_phase(
                        settings,
                        &view,
                        ctx.passwords,
                        extra_headers,
                        &mut conditional,
                        &mut password_check,
                    )
                })
                .flatten()
            {
                refused
            } else {
                // `proxy_pass http://$name`: its group, found once; `None`
                // inside when none has that name (left in `return_text`).
                let by_name_group = match chosen {
                    Some(LocationConfig {
                        action:
                            Action::Proxy {
                                by_name: Some(name),
                                ..
                            },
                        ..
                    }) => Some(group_by_name(config, name, &view, return_text)),
                    _ => None,
                };
                match chosen {
                    Some(LocationConfig {
                        action: Action::Proxy { .. },
                        ..
                    }) if by_name_group == Some(None) => {
                        // Without a resolver, only a group can be found by
                        // name (nginx: 502 as well); an address nginx
                        // would connect to, ferry cannot yet.
                        if is_address(return_text) {
                            error!(
                                "proxy_pass to an address from variables ({}) is not supported yet, client: {}",
                                String::from_utf8_lossy(return_text),
                                client.ip()
                            );
                        } else {
                            error!(
                                "no resolver defined to resolve {}, client: {}",
                                String::from_utf8_lossy(return_text),
                                client.ip()
                            );
                        }
                        Target::Page(ErrorResponse::BadGateway)
                    }
                    Some(LocationConfig {
                        action: Action::Proxy { group, uri, .. },
                        matcher,
                        ..
                    }) => {
                        let group = &by_name_group.flatten().unwrap_or(*group);
                        // After an internal redirect the upstream gets the
                        // new uri, escaped, and its arguments.
                        let sent = match redirected_args {
                            None => origin_form,
                            Some(args_start) => {
                                file_path.clear();
                                routing::escape_path(normalized, file_path);
                                if let Some(args) = redirect_args.get(args_start..) {
                                    if !args.is_empty() {
                                        file_path.push(b'?');
                                        file_path.extend_from_slice(args);
                                    }
                                }
                                std::str::from_utf8(file_path).unwrap_or("/")
                            }
                        };
                        // Upstreams get origin-form: an absolute-form target's
                        // authority becomes the Host when the client sent none.
                        let rewritten =
                            routing::upstream_target(sent, normalized, matcher, uri.as_deref());
                        // `$proxy_host` (in `proxy_set_header` lines too).
                        view.proxy_host = proxy_host(config, *group);
                        let fallback_host = match (head.absolute, head.host) {
                            (true, Some(authority)) => std::str::from_utf8(authority).unwrap_or(""),
                            // nginx's `$proxy_host` for a Unix socket is
                            // `localhost`.
                            _ => view.proxy_host,
                        };
                        // nginx reads these two from the address's default
                        // server: fields are judged before the Host is known.
                        let field_names = config
                            .listen
                            .get(self.listener as usize)
                            .map(|l| config.server_settings(l.default_server).field_names)
                            .unwrap_or_default();
                        let upstream_head_args = request::UpstreamHead {
                            target: rewritten,
                            fallback_host,
                            set_headers: &settings.proxy_set_headers,
                            field_names,
                            pass_client_fields: settings.pass_request_headers,
                            body: &settings.upstream_body,
                            view: &view,
                        };
                        request::write_upstream_head(head, &upstream_head_args, upstream_head);
                        if let Some(crate::config::Balance::Hash { key, .. }) =
                            config.upstreams.get(*group).map(|g| &g.balance)
                        {
                            key_hash = key.hash(&view);
                        }
                        Target::Upstream(*group)
                    }
                    Some(LocationConfig {
                        action:
                            Action::Return {
                                status, template, ..
                            },
                        ..
                    }) if !script_broke => {
                        if let Some(template) = template {
                            return_text.clear();
                            template.render(&view, return_text);
                        }
                        Target::Return(*status)
                    }
                    Some(LocationConfig {
                        action: Action::StubStatus,
                        ..
                    }) => Target::StubStatus(StatusPage::from_target(head.target)),
                    // After `break` a location's own `return` is not
                    // reached (it is a rewrite-module line): its files are.
                    Some(LocationConfig {
                        action: Action::Static | Action::Return { .. },
                        ..
                    })
                    | None => {
                        let args = redirected_args
                            .map(|start| redirect_args.get(start..).unwrap_or_default());
                        let lookup = files::Lookup {
                            uri: normalized,
                            args: args.unwrap_or_else(|| query_of(origin_form)),
                            view: &view,
                        };
                        let step = static_target(
                            &settings.files,
                            &lookup,
                            head.summary.method,
                            file_path,
                            redirect,
                        );
                        match route_static(step, settings, server_config, &mut redirects, redirect)
                        {
                            StaticRoute::Answer(target) => target,
                            StaticRoute::Uri => {
                                split_redirect(normalized, redirect, redirect_args);
                                redirected_args = Some(0);
                                continue;
                            }
                            StaticRoute::Named(index) => {
                                named = Some(index);
                                continue;
                            }
                        }
                    }
                }
            };
            if settings.files.expires != files::Expires::Off && !matches!(target, Target::File(_)) {
                // On ferry's own answers and proxied ones; a file's are
                // written with the file (`expires modified` needs its time).
                write_expires(settings.files.expires, ctx.wall_clock, extra_headers);
            }
            // `gzip on`: what the request says, for the response's turn.
            let gzip_facts = match settings.gzip.on {
                true => crate::http::gzip::request_facts(
                    &settings.gzip,
                    head.headers,
                    head.version == Version::Http10,
                ),
                false => 0,
            };
            let rates = rendered_rates(&settings.limits, config.limit_rate_set, &view, ctx.slot);
            break (
                location,
                target,
                conditional,
                settings.keepalive_disable,
                gzip_facts,
                rates,
            );
        };
        let parsed = ParsedRequest {
            summary: RequestSummary {
                keep_alive: head.summary.keep_alive
                    && !closes_for_browser(browsers, head.summary.method, head.headers),
                ..head.summary
            },
            server,
            location,
            target,
            key_hash,
            always_headers_end: u32::try_from(always_headers_end).unwrap_or(0),
            head_len: head.head_len,
            client,
            password_check,
            gzip_facts,
            rates,
        };
        // A delayed request is read again after its wait (`limiting.rs`):
        // its bytes stay where they are.
        let head_len = head.head_len;
        if !matches!(parsed.target, Target::Delayed(_)) {
            ring.consume(head_len);
        }
        Ok(Some(parsed))
    }
}
