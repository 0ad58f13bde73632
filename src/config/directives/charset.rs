//! ngx_http_charset_module: `charset` names the character set of text
//! answers in their `Content-Type` (`text/html; charset=utf-8`). ferry adds
//! the name; it recodes nothing (`source_charset` is not supported yet).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::Config;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("charset", HSL, Arity::Exactly(1), Handler::Setting(charset)),
    spec(
        "charset_types",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(charset_types),
    ),
    super::not_yet("source_charset"),
    super::not_yet("override_charset"),
    super::not_yet("charset_map"),
];

fn charset(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let name = &d.args[0];
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if name.is_empty() || !valid {
        return Err(ConfigError::at(
            format!("invalid value \"{name}\""),
            d.location(),
        ));
    }
    s.charset = Some((name != "off").then(|| name.clone()));
    Ok(())
}

fn charset_types(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.charset_types = Some(d.args.iter().map(|t| t.to_ascii_lowercase()).collect());
    Ok(())
}
