//! ngx_http_access_module: `allow` and `deny`, in order; the first rule
//! that matches the client decides.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::{AccessRule, Config};

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("allow", HSL, Arity::Exactly(1), Handler::Setting(access)).repeatable(),
    spec("deny", HSL, Arity::Exactly(1), Handler::Setting(access)).repeatable(),
];

fn access(directive: &Directive, _: &Config, settings: &mut Inherited) -> Result<(), ConfigError> {
    let rule = access_rule(directive)?;
    settings
        .access_rules
        .get_or_insert_with(Vec::new)
        .push(rule);
    Ok(())
}

/// `allow|deny ADDRESS | CIDR | all`.
fn access_rule(directive: &Directive) -> Result<AccessRule, ConfigError> {
    let allow = directive.name == "allow";
    let text = directive.args[0].as_str();
    if text == "all" {
        return Ok(AccessRule {
            allow,
            network: None,
        });
    }
    let invalid = || {
        ConfigError::at(
            format!("invalid parameter \"{text}\""),
            directive.location(),
        )
    };
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| invalid())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        Some(prefix) => prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    Ok(AccessRule {
        allow,
        network: Some((address, prefix)),
    })
}
