//! ngx_http_auth_basic_module (`auth_basic`, `auth_basic_user_file`) and
//! the core module's `satisfy`. What they decide is in `crate::auth`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::Config;
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "auth_basic",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(auth_basic),
    ),
    spec(
        "auth_basic_user_file",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(auth_basic_user_file),
    ),
    spec("satisfy", HSL, Arity::Exactly(1), Handler::Setting(satisfy)),
];

/// `auth_basic REALM | off` (the realm may hold variables; one that
/// renders `off` turns the check off, as in nginx).
fn auth_basic(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.auth_realm = Some(if d.args[0] == "off" {
        None
    } else {
        Some(
            Template::compile_with(&d.args[0], &config.map_names)
                .map_err(|e| ConfigError::at(e.to_string(), d.location()))?,
        )
    });
    Ok(())
}

/// `auth_basic_user_file FILE`, relative to the configuration's directory;
/// read on every request, as nginx reads it.
fn auth_basic_user_file(
    d: &Directive,
    config: &Config,
    s: &mut Inherited,
) -> Result<(), ConfigError> {
    s.auth_user_file = Some(super::static_files::config_path(d, config)?);
    Ok(())
}

fn satisfy(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.satisfy_any = Some(match d.args[0].as_str() {
        "all" => false,
        "any" => true,
        other => {
            return Err(ConfigError::at(
                format!(
                "invalid value \"{other}\" in \"satisfy\" directive, it must be \"all\" or \"any\""
            ),
                d.location(),
            ))
        }
    });
    Ok(())
}
