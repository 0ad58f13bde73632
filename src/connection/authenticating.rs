//! `auth_basic` in the connection: the decision made while the request is
//! routed ([`basic_auth`]), and the `Authenticating` phase a request waits
//! in while the password thread checks a crypt(3) hash (`crate::auth`).
//!
//! ```text
//! ReadingRequest --(hash not cached)--> Authenticating --(match)--> start_exchange
//!                                             \--(mismatch)--> 401
//! ```
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use std::time::Instant;

use log::{debug, error, info};

use super::phase::Phase;
use super::starting::{ParsedRequest, Target};
use super::{Connection, Context};
use crate::auth::checker::{Job, PasswordChecks};
use crate::auth::{self, UnknownScheme};
use crate::buffer::BufferSet;
use crate::config::Settings;
use crate::http::error_page::ErrorResponse;
use crate::token::Target as TokenTarget;
use crate::variables::RequestView;

/// A crypt(3) check the request waits for.
pub(super) struct PendingCheck {
    user: Vec<u8>,
    password: Vec<u8>,
    stored: Vec<u8>,
    /// The `WWW-Authenticate` line, for a mismatch.
    challenge: Vec<u8>,
    fingerprint: u128,
}

/// What `auth_basic` says about a request.
pub(super) enum AuthDecision {
    /// No `auth_basic` here (or `off`).
    Off,
    /// The credentials are good.
    Pass,
    /// 401; the `WWW-Authenticate` line is at the end of the buffer given
    /// to [`basic_auth`].
    Unauthorized,
    /// The user file is missing (403, as nginx) or unreadable, or its hash
    /// unknown (500).
    Fail(ErrorResponse),
    /// A slow hash not verified lately: for the password thread.
    Check(Box<PendingCheck>),
}

/// Checks the request's credentials against the location's user file.
/// The `WWW-Authenticate` line is appended to `challenge` when the answer
/// may be 401 (and left there: the caller keeps or drops it).
pub(super) fn basic_auth(
    settings: &Settings,
    view: &RequestView<'_>,
    checks: &PasswordChecks,
    challenge: &mut Vec<u8>,
) -> AuthDecision {
    let (Some(realm), Some(path)) = (&settings.auth_realm, &settings.auth_user_file) else {
        return AuthDecision::Off;
    };
    let realm_start = challenge.len();
    challenge.extend_from_slice(b"WWW-Authenticate: Basic realm=\"");
    let value_start = challenge.len();
    realm.render(view, challenge);
    if challenge.get(value_start..) == Some(b"off") {
        challenge.truncate(realm_start);
        return AuthDecision::Off;
    }
    challenge.extend_from_slice(b"\"\r\n");
    let field = view
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| h.value);
    let mut decoded = Vec::new();
    let Some(colon) = auth::credentials(field, &mut decoded) else {
        info!(
            "no user/password was provided for basic authentication, client: {}",
            view.client.ip()
        );
        return AuthDecision::Unauthorized;
    };
    let (user, password) = decoded.split_at(colon);
    let password = password.get(1..).unwrap_or_default();
    let file = match std::fs::read(path) {
        Ok(file) => file,
        Err(e) => {
            error!("open() \"{}\" failed ({e})", path.display());
            return AuthDecision::Fail(if e.kind() == std::io::ErrorKind::NotFound {
                ErrorResponse::Forbidden
            } else {
                ErrorResponse::InternalServerError
            });
        }
    };
    let user_text = String::from_utf8_lossy(user);
    let Some(stored) = auth::find_user(&file, user) else {
        error!(
            "user \"{user_text}\" was not found in \"{}\", client: {}",
            path.display(),
            view.client.ip()
        );
        return AuthDecision::Unauthorized;
    };
    if auth::is_costly(stored) {
        let fingerprint = checks.fingerprint(stored, password);
        if checks.is_remembered(fingerprint) {
            return AuthDecision::Pass;
        }
        return AuthDecision::Check(Box::new(PendingCheck {
            user: user.to_vec(),
            password: password.to_vec(),
            stored: stored.to_vec(),
            challenge: challenge.get(realm_start..).unwrap_or_default().to_vec(),
            fingerprint,
        }));
    }
    match auth::verify(password, stored) {
        Ok(true) => AuthDecision::Pass,
        Ok(false) => {
            error!(
                "user \"{user_text}\": password mismatch, client: {}",
                view.client.ip()
            );
            AuthDecision::Unauthorized
        }
        Err(UnknownScheme) => {
            error!(
                "user \"{user_text}\": unknown password scheme in \"{}\"",
                path.display()
            );
            AuthDecision::Fail(ErrorResponse::InternalServerError)
        }
    }
}

/// nginx's ACCESS phase: allow/deny (`limit_except` too) and `auth_basic`,
/// combined as `satisfy` says; `None` lets the request go on. A 401's
/// `WWW-Authenticate` line is put in front of `extra_headers` (with the
/// `always` fields, which end at `always_end`); a slow hash to check is
/// left in `pending`.
pub(super) fn access_phase(
    settings: &Settings,
    view: &RequestView<'_>,
    passwords: &PasswordChecks,
    extra_headers: &mut Vec<u8>,
    always_end: &mut usize,
    pending: &mut Option<Box<PendingCheck>>,
) -> Option<Target> {
    let ip = view.client.ip();
    let verdict = crate::config::access_verdict(&settings.access_rules, ip);
    let limited = settings
        .limit_except
        .as_ref()
        .is_some_and(|limit| !limit.allows(view.method, ip));
    let denied = verdict == Some(false) || limited;
    if denied && !settings.satisfy_any {
        return Some(Target::Forbidden);
    }
    if settings.satisfy_any && verdict == Some(true) && !limited {
        return None;
    }
    let before = extra_headers.len();
    let decision = basic_auth(settings, view, passwords, extra_headers);
    if !matches!(decision, AuthDecision::Unauthorized) {
        extra_headers.truncate(before);
    }
    match decision {
        AuthDecision::Off if denied => Some(Target::Forbidden),
        AuthDecision::Off | AuthDecision::Pass => None,
        AuthDecision::Unauthorized => {
            let len = extra_headers.len() - before;
            extra_headers.rotate_right(len);
            *always_end += len;
            Some(Target::Unauthorized)
        }
        AuthDecision::Fail(page) => Some(Target::Page(page)),
        AuthDecision::Check(check) => {
            *pending = Some(check);
            None
        }
    }
}

/// A request waiting for the password thread.
pub struct Authenticating {
    buffers: Box<BufferSet>,
    parsed: ParsedRequest,
    check: Box<PendingCheck>,
    pub(super) since: Instant,
    outcome: Option<Result<bool, UnknownScheme>>,
}

impl Connection {
    /// Hands the request's password to the thread and waits; a full queue
    /// is answered 503.
    pub(super) fn start_password_check(
        &mut self,
        buffers: Box<BufferSet>,
        mut parsed: ParsedRequest,
        mut check: Box<PendingCheck>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let job = Job {
            slot: ctx.slot,
            connection: self.id,
            password: std::mem::take(&mut check.password),
            stored: std::mem::take(&mut check.stored),
            fingerprint: check.fingerprint,
        };
        if ctx
            .passwords
            .submit(ctx.registry, TokenTarget::Passwords.token(), job)
            .is_err()
        {
            error!(
                "#{} too many password checks waiting; answering 503",
                ctx.slot
            );
            parsed.target = Target::Page(ErrorResponse::ServiceUnavailable);
            return self.start_exchange(buffers, parsed, ctx);
        }
        debug!("#{} checking a password off the loop", ctx.slot);
        (
            Phase::Authenticating(Box::new(Authenticating {
                buffers,
                parsed,
                check,
                since: ctx.now,
                outcome: None,
            })),
            true,
        )
    }

    /// The password thread's answer for this connection's request.
    pub fn password_checked(&mut self, outcome: Result<bool, UnknownScheme>) {
        if let Phase::Authenticating(waiting) = &mut self.phase {
            waiting.outcome = Some(outcome);
        }
    }

    pub(super) fn step_authenticating(
        &mut self,
        waiting: Box<Authenticating>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some(outcome) = waiting.outcome else {
            return (Phase::Authenticating(waiting), false);
        };
        let Authenticating {
            mut buffers,
            mut parsed,
            check,
            ..
        } = *waiting;
        let user = String::from_utf8_lossy(&check.user);
        match outcome {
            Ok(true) => debug!("#{} user \"{user}\" authenticated", ctx.slot),
            Ok(false) => {
                error!(
                    "user \"{user}\": password mismatch, client: {}",
                    parsed.client.ip()
                );
                // The challenge goes with the `always` fields.
                let extra = &mut buffers.extra_headers;
                let len = check.challenge.len();
                extra.extend_from_slice(&check.challenge);
                extra.rotate_right(len);
                parsed.always_headers_end = parsed
                    .always_headers_end
                    .saturating_add(u32::try_from(len).unwrap_or(0));
                parsed.target = Target::Unauthorized;
            }
            Err(UnknownScheme) => {
                error!("user \"{user}\": unknown password scheme");
                parsed.target = Target::Page(ErrorResponse::InternalServerError);
            }
        }
        self.start_exchange(buffers, parsed, ctx)
    }
}

/// Gives up a waiting request (its deadline passed, or the worker stops).
pub(super) fn abandon(waiting: Authenticating, ctx: &mut Context<'_>) {
    ctx.buffers.give_back(waiting.buffers);
}
