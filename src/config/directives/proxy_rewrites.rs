//! What the proxy module rewrites in an upstream's response head:
//! `proxy_redirect` (`Location`, `Refresh`) and `proxy_cookie_domain` /
//! `proxy_cookie_path` (`Set-Cookie`); the rewriting itself is
//! `http::response`'s.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{Directive, Inherited};
use crate::config::parse::ConfigError;
use crate::config::Config;

/// `proxy_cookie_domain|proxy_cookie_path off | PATTERN REPLACEMENT`: the
/// rules of one level, `off` being none (and alone, as in nginx).
pub(super) fn proxy_cookie(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let rules = if directive.name == "proxy_cookie_domain" {
        &mut settings.cookie_domains
    } else {
        &mut settings.cookie_paths
    };
    let duplicate = || {
        ConfigError::at(
            format!("\"{}\" directive is duplicate", directive.name),
            directive.location(),
        )
    };
    match directive.args.as_slice() {
        [off] if off == "off" => {
            if rules.is_some() {
                return Err(duplicate());
            }
            *rules = Some(Vec::new());
        }
        [pattern, replacement] => {
            if pattern.starts_with('~') || pattern.contains('$') || replacement.contains('$') {
                return Err(ConfigError::at(
                    format!(
                        "\"{}\" with a regular expression or variables is not supported yet",
                        directive.name
                    ),
                    directive.location(),
                ));
            }
            // A `;` in the replacement adds attributes, as nginx writes
            // it out (`"/; Secure; HttpOnly"`); in the pattern it could
            // never match a value.
            if pattern.contains(';')
                || [pattern, replacement]
                    .iter()
                    .any(|text| text.contains(['\r', '\n', '\0']))
            {
                return Err(ConfigError::at(
                    format!("invalid value in \"{}\"", directive.name),
                    directive.location(),
                ));
            }
            // nginx compares domains without their leading dot.
            let pattern = match directive.name.as_str() {
                "proxy_cookie_domain" => pattern.trim_start_matches('.').to_string(),
                _ => pattern.clone(),
            };
            // Only `off` leaves the list there and empty.
            if rules.as_ref().is_some_and(Vec::is_empty) {
                return Err(duplicate());
            }
            rules
                .get_or_insert_with(Vec::new)
                .push((pattern, replacement.clone()));
        }
        other => {
            return Err(ConfigError::at(
                format!("invalid parameter \"{}\"", other.join(" ")),
                directive.location(),
            ))
        }
    }
    Ok(())
}

/// The `proxy_redirect` lines of one level: `off`, or rules tried in
/// order.
#[derive(Clone, Debug)]
pub(super) enum Redirects {
    Off,
    Rules(Vec<Redirect>),
}

#[derive(Clone, Debug)]
pub(super) enum Redirect {
    /// `default`: the location's `proxy_pass` URL becomes its name.
    Default,
    Replace {
        pattern: String,
        replacement: String,
    },
}

/// `proxy_redirect off | default | REDIRECT REPLACEMENT`.
pub(super) fn proxy_redirect(
    directive: &Directive,
    _: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let duplicate = || {
        ConfigError::at(
            "\"proxy_redirect\" directive is duplicate",
            directive.location(),
        )
    };
    let rule = match directive.args.as_slice() {
        [off] if off == "off" => {
            if settings.proxy_redirect.is_some() {
                return Err(duplicate());
            }
            settings.proxy_redirect = Some(Redirects::Off);
            return Ok(());
        }
        [default] if default == "default" => Redirect::Default,
        [pattern, replacement] => {
            if [pattern, replacement]
                .iter()
                .any(|text| text.contains(['\r', '\n', '\0']))
            {
                return Err(ConfigError::at(
                    "\"proxy_redirect\" values cannot contain line breaks",
                    directive.location(),
                ));
            }
            if pattern.starts_with('~') || pattern.contains('$') || replacement.contains('$') {
                return Err(ConfigError::at(
                    "\"proxy_redirect\" with a regular expression or variables is not supported yet",
                    directive.location(),
                ));
            }
            Redirect::Replace {
                pattern: pattern.clone(),
                replacement: replacement.clone(),
            }
        }
        other => {
            return Err(ConfigError::at(
                format!("invalid parameter \"{}\"", other.join(" ")),
                directive.location(),
            ))
        }
    };
    match &mut settings.proxy_redirect {
        None => settings.proxy_redirect = Some(Redirects::Rules(vec![rule])),
        Some(Redirects::Rules(rules)) => rules.push(rule),
        Some(Redirects::Off) => return Err(duplicate()),
    }
    Ok(())
}

/// The `proxy_redirect` rules in force for a location that proxies with
/// `proxy_pass` (the directive, as written) and is named `name`: nginx's
/// default unless `off` or explicit lines say otherwise. The default
/// replaces the `proxy_pass` URL with the location's name (`/one/` for
/// `location /one/ { proxy_pass http://b/two/; }`), or, without a URI
/// part, the URL and a slash with `/`. A `default` must follow
/// `proxy_pass` in the location's own block, as nginx requires.
pub(super) fn redirect_rules(
    redirects: Option<&Redirects>,
    proxy_pass: &Directive,
    has_uri: bool,
    name: &str,
    own_block: &[Directive],
) -> Result<Vec<(String, String)>, ConfigError> {
    let url = &proxy_pass.args[0];
    let default = || {
        if has_uri {
            (url.clone(), name.to_string())
        } else {
            (format!("{url}/"), "/".to_string())
        }
    };
    let rules = match redirects {
        Some(Redirects::Off) => return Ok(Vec::new()),
        None => return Ok(vec![default()]),
        Some(Redirects::Rules(rules)) => rules,
    };
    let proxy_pass_at = own_block.iter().position(|d| std::ptr::eq(d, proxy_pass));
    let mut resolved = Vec::with_capacity(rules.len());
    for rule in rules {
        match rule {
            Redirect::Default => resolved.push(default()),
            Redirect::Replace {
                pattern,
                replacement,
            } => resolved.push((pattern.clone(), replacement.clone())),
        }
    }
    for (index, line) in own_block.iter().enumerate() {
        let is_default = line.name == "proxy_redirect" && line.args == ["default"];
        if is_default && proxy_pass_at.is_none_or(|at| index < at) {
            return Err(ConfigError::at(
                "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
                line.location(),
            ));
        }
    }
    Ok(resolved)
}
