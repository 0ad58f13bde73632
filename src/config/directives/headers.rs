//! ngx_http_headers_module: `add_header`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{field_name, spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::{AddHeader, Config};
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[spec(
    "add_header",
    HSL,
    Arity::Between(2, 3),
    Handler::Setting(add_header),
)
.repeatable()];

/// `add_header NAME VALUE [always]`.
fn add_header(
    directive: &Directive,
    config: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let line = add_header_line(directive, config)?;
    settings.add_headers.get_or_insert_with(Vec::new).push(line);
    Ok(())
}

/// One `add_header` line, checked; also read inside `if` blocks.
pub(super) fn add_header_line(
    directive: &Directive,
    config: &Config,
) -> Result<AddHeader, ConfigError> {
    field_name(directive, &directive.args[0])?;
    let always = match directive.args.get(2).map(String::as_str) {
        None => false,
        Some("always") => true,
        Some(other) => {
            return Err(ConfigError::at(
                format!("invalid parameter \"{other}\""),
                directive.location(),
            ))
        }
    };
    let value = Template::compile_with(&directive.args[1], &config.map_names)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
    Ok(AddHeader {
        name: directive.args[0].clone(),
        value,
        always,
    })
}
