//! `error_page` (ngx_http_core_module) and `proxy_intercept_errors`: which
//! answers are replaced by a page of the site's own. What an answer does
//! with them is `connection::error_pages`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{flag, Directive, Inherited};
use crate::config::parse::ConfigError;
use crate::config::settings::{ErrorPage, ErrorPageStatus, ErrorPageTarget};
use crate::config::Config;

/// `error_page CODE… [=[RESPONSE]] URI | @NAME | URL`, with nginx's checks.
pub(super) fn error_page(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let at = directive.location();
    let (target, rest) = directive
        .args
        .split_last()
        .ok_or_else(|| ConfigError::at("invalid number of arguments", at.clone()))?;
    let (status, codes) = match rest.split_last() {
        Some((last, codes)) if last.starts_with('=') => {
            let status = match &last[1..] {
                "" => ErrorPageStatus::Target,
                code => match code.parse::<u16>() {
                    Ok(code) if (100..=999).contains(&code) => ErrorPageStatus::Replaced(code),
                    _ => return Err(ConfigError::at(format!("invalid value \"{last}\""), at)),
                },
            };
            (status, codes)
        }
        _ => (ErrorPageStatus::Kept, rest),
    };
    if codes.is_empty() {
        return Err(ConfigError::at(
            "invalid number of arguments in \"error_page\" directive",
            at,
        ));
    }
    let mut parsed = Vec::with_capacity(codes.len());
    for code in codes {
        let value: u16 = code
            .parse()
            .map_err(|_| ConfigError::at(format!("invalid value \"{code}\""), at.clone()))?;
        if !(300..=599).contains(&value) {
            return Err(ConfigError::at(
                format!("value \"{code}\" must be between 300 and 599"),
                at,
            ));
        }
        if value == 499 {
            return Err(ConfigError::at("invalid value \"499\"", at));
        }
        parsed.push(value);
    }
    if target.contains('$') {
        return Err(ConfigError::at(
            "variables in \"error_page\" are not supported yet",
            at,
        ));
    }
    let target = if target.starts_with('@') {
        ErrorPageTarget::Named(target.clone())
    } else if target.starts_with('/') {
        ErrorPageTarget::Uri(target.clone())
    } else {
        ErrorPageTarget::Redirect(target.clone())
    };
    settings
        .error_pages
        .get_or_insert_with(Vec::new)
        .push(ErrorPage {
            codes: parsed,
            status,
            target,
        });
    Ok(())
}

pub(super) fn proxy_intercept_errors(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    settings.intercept_errors = Some(flag(directive)?);
    Ok(())
}

/// Error pages ferry can serve: a uri's location (or a named one) must
/// serve files or `return`; proxying an error page is not supported yet.
pub(super) fn check_targets(
    server: &crate::config::ServerConfig,
    server_directive: &Directive,
) -> Result<(), ConfigError> {
    let levels =
        std::iter::once(&server.settings).chain(server.locations.iter().map(|l| &l.settings));
    for settings in levels {
        for page in &settings.error_pages {
            let location = match &page.target {
                ErrorPageTarget::Redirect(_) => continue,
                ErrorPageTarget::Uri(uri) => {
                    crate::routing::select_location(server, uri.as_bytes())
                }
                ErrorPageTarget::Named(name) => server.locations.iter().position(
                    |l| matches!(&l.matcher, crate::config::LocationMatch::Named(n) if n == name),
                ),
            };
            let action = location
                .and_then(|index| server.locations.get(index))
                .map(|l| &l.action);
            if let Some(crate::config::Action::Proxy { .. } | crate::config::Action::StubStatus) =
                action
            {
                let target = match &page.target {
                    ErrorPageTarget::Uri(text)
                    | ErrorPageTarget::Named(text)
                    | ErrorPageTarget::Redirect(text) => text,
                };
                return Err(ConfigError::at(
                    format!("error_page \"{target}\": pages from a proxied location are not supported yet"),
                    server_directive.location(),
                ));
            }
        }
    }
    Ok(())
}
