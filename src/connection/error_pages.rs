//! `error_page`: an answer whose status the location lists is replaced by
//! the site's own page, as nginx's internal redirect to it does.
//!
//! Every answer of ferry's own passes here first (`answer_page`,
//! `answer_return` without text, `answer_error`, and with
//! `proxy_intercept_errors` an upstream's): if the location has an
//! `error_page` for the status, the page's target decides instead. A uri is
//! routed in the same server and served from its location's files (or its
//! `return`), with the error's status unless `=CODE` or `=` says otherwise;
//! a URL is a redirect. As with nginx's default `recursive_error_pages
//! off`, an error while answering an error page gets ferry's own page.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use log::debug;

use super::files::FileTarget;
use super::phase::{Exchange, Phase, RouteRef};
use super::{Connection, Context};
use crate::config::{Action, ErrorPage, ErrorPageStatus, ErrorPageTarget, LocationMatch};
use crate::files::{self, Decision, Resolution};
use crate::routing;

impl Connection {
    /// An upstream's answer `proxy_intercept_errors` replaces.
    pub(super) fn answer_intercepted(
        &mut self,
        exchange: Exchange,
        status: u16,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match self.error_page(exchange, status, ctx) {
            Ok(answered) => answered,
            Err(exchange) => self.answer_return_as_is(exchange, status, ctx),
        }
    }

    /// Answers with the location's error page for `status`, if it has one;
    /// gives the exchange back otherwise.
    pub(super) fn error_page(
        &mut self,
        mut exchange: Exchange,
        status: u16,
        ctx: &mut Context<'_>,
    ) -> Result<(Phase, bool), Exchange> {
        if exchange.error_page_sent {
            return Err(exchange);
        }
        let config = std::rc::Rc::clone(&ctx.config);
        let settings = exchange.settings(&config);
        let Some(page) = ErrorPage::find(&settings.error_pages, status) else {
            return Err(exchange);
        };
        exchange.error_page_sent = true;
        let server = exchange.route_server();
        let Some(server_config) = config.servers.get(server) else {
            return Err(exchange);
        };
        let sent_status = |target: u16| match page.status {
            ErrorPageStatus::Kept => status,
            ErrorPageStatus::Replaced(code) => code,
            ErrorPageStatus::Target => target,
        };
        let (location, uri) = match &page.target {
            ErrorPageTarget::Redirect(url) => {
                let code = match page.status {
                    ErrorPageStatus::Replaced(code @ (301 | 302 | 303 | 307 | 308)) => code,
                    _ => 302,
                };
                debug!("#{} error_page {status}: redirect to {url}", ctx.slot);
                let buffers = &mut *exchange.buffers;
                buffers.return_text.clear();
                buffers.return_text.extend_from_slice(url.as_bytes());
                return Ok(self.answer_return(exchange, code, Some(true), ctx));
            }
            ErrorPageTarget::Named(name) => {
                let found = server_config
                    .locations
                    .iter()
                    .position(|l| matches!(&l.matcher, LocationMatch::Named(n) if n == name));
                // The named location serves the request's own uri.
                (found, &exchange.buffers.path[..])
            }
            ErrorPageTarget::Uri(uri) => (
                routing::select_location(server_config, uri.as_bytes()),
                uri.as_bytes(),
            ),
        };
        debug!(
            "#{} error_page {status}: {}",
            ctx.slot,
            String::from_utf8_lossy(uri)
        );
        let route = RouteRef::new(server, location);
        let action = location
            .and_then(|l| config.location(server, l))
            .map_or(&Action::Static, |l| &l.action);
        match action {
            Action::Static => {
                let files = &route.settings(&config).files;
                let mut path = std::mem::take(&mut exchange.buffers.file_path);
                let mut redirect = std::mem::take(&mut exchange.buffers.redirect);
                let resolution = files::resolve_uri(files, uri, b"", &mut path, &mut redirect);
                exchange.buffers.file_path = path;
                exchange.buffers.redirect = redirect;
                match resolution {
                    Resolution::Serve(opened) => {
                        exchange.route = route;
                        let target = FileTarget {
                            file: opened.file,
                            validators: opened.validators,
                            decision: Decision::Whole,
                        };
                        Ok(self.answer_file(exchange, target, Some(sent_status(200)), ctx))
                    }
                    // No page after all: ferry's own for the status.
                    _ => Err(exchange),
                }
            }
            Action::Return {
                status: code,
                text,
                template: None,
            } => {
                let code = *code;
                let text = text.clone();
                exchange.route = route;
                let status = sent_status(code);
                let buffers = &mut *exchange.buffers;
                buffers.return_text.clear();
                let has_text = match text {
                    Some(text) => {
                        buffers.return_text.extend_from_slice(text.as_bytes());
                        true
                    }
                    None => false,
                };
                Ok(self.answer_return(exchange, status, Some(has_text), ctx))
            }
            // Refused when the configuration is loaded.
            _ => Err(exchange),
        }
    }
}
