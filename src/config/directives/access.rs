//! ngx_http_access_module: `allow` and `deny`, in order; the first rule
//! that matches the client decides.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::{AccessRule, Config, LimitExcept};

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
    let network = network(directive, text)?.ok_or_else(|| {
        ConfigError::at(
            format!("invalid parameter \"{text}\""),
            directive.location(),
        )
    })?;
    Ok(AccessRule {
        allow,
        network: Some(network),
    })
}

/// `ADDRESS` or `ADDRESS/PREFIX` (nginx's `ngx_parse_cidr`, with its
/// warning for host bits past the prefix); `None` if `text` is neither.
pub(super) fn network(
    directive: &Directive,
    text: &str,
) -> Result<Option<(std::net::IpAddr, u8)>, ConfigError> {
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
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return Ok(None);
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        Some(prefix) => prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    if host_bits_set(address, prefix) {
        // nginx's warning, word for word; the rule matches the network.
        log::warn!(
            "low address bits of {text} are meaningless in {}:{}",
            directive.file.display(),
            directive.line
        );
    }
    Ok(Some((address, prefix)))
}

/// Whether `address` has bits set past a `/prefix` (`10.1.1.0/16`).
fn host_bits_set(address: std::net::IpAddr, prefix: u8) -> bool {
    match address {
        std::net::IpAddr::V4(ip) => {
            let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask != 0
        }
        std::net::IpAddr::V6(ip) => {
            let mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask != 0
        }
    }
}

/// The methods nginx's `limit_except` knows.
const METHODS: [&str; 14] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "MKCOL",
    "COPY",
    "MOVE",
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
];

/// `limit_except METHOD… { allow …; deny …; }` (only the access rules
/// inside, so far).
pub(super) fn limit_except(directive: &Directive) -> Result<LimitExcept, ConfigError> {
    let mut methods = Vec::new();
    for method in &directive.args {
        let upper = method.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(ConfigError::at(
                format!("invalid method \"{method}\""),
                directive.location(),
            ));
        }
        methods.push(upper);
    }
    let mut rules = Vec::new();
    for line in directive.block.as_deref().unwrap_or_default() {
        match line.name.as_str() {
            "allow" | "deny" if line.args.len() == 1 && line.block.is_none() => {
                rules.push(access_rule(line)?)
            }
            "allow" | "deny" => {
                return Err(ConfigError::at(
                    format!("invalid number of arguments in \"{}\" directive", line.name),
                    line.location(),
                ))
            }
            other => {
                return Err(ConfigError::at(
                    format!(
                        "\"{other}\" inside \"limit_except\" is not supported yet (only \"allow\" and \"deny\" are)"
                    ),
                    line.location(),
                ))
            }
        }
    }
    Ok(LimitExcept { methods, rules })
}
