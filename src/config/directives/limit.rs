//! ngx_http_limit_req_module and ngx_http_limit_conn_module: zones
//! (`limit_req_zone`, `limit_conn_zone`, read when the http block is built)
//! and the lines that use them. What they decide is in `crate::limits`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Context, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::settings::SizeValue;
use crate::config::Config;
use crate::limits::{LimitConn, LimitReq};
use crate::variables::Template;

const H: &[Context] = &[Context::Http];

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "limit_req_zone",
        H,
        Arity::Between(3, 4),
        Handler::Structure,
    )
    .repeatable(),
    spec(
        "limit_req",
        HSL,
        Arity::Between(1, 3),
        Handler::Setting(limit_req),
    )
    .repeatable(),
    spec(
        "limit_req_status",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_req_status),
    ),
    spec(
        "limit_req_log_level",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_req_log_level),
    ),
    spec(
        "limit_req_dry_run",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_req_dry_run),
    ),
    spec(
        "limit_rate",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_rate),
    ),
    spec(
        "limit_rate_after",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_rate_after),
    ),
    spec("limit_conn_zone", H, Arity::Exactly(2), Handler::Structure).repeatable(),
    spec(
        "limit_conn",
        HSL,
        Arity::Exactly(2),
        Handler::Setting(limit_conn),
    )
    .repeatable(),
    spec(
        "limit_conn_status",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_conn_status),
    ),
    spec(
        "limit_conn_log_level",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_conn_log_level),
    ),
    spec(
        "limit_conn_dry_run",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(limit_conn_dry_run),
    ),
];

/// The `limit_*_zone` lines of an http block, made into zones (those of
/// the same name, kind and size a previous configuration made keep their
/// state).
pub(super) fn zones(block: &[Directive], config: &mut Config) -> Result<(), ConfigError> {
    config.limit_zones.clear();
    for d in block
        .iter()
        .filter(|d| d.name == "limit_req_zone" || d.name == "limit_conn_zone")
    {
        let invalid = |what: &str| ConfigError::at(format!("invalid {what}"), d.location());
        let key = Template::compile_with(&d.args[0], &config.map_names)
            .map_err(|e| ConfigError::at(e.to_string(), d.location()))?;
        let mut zone = None;
        let mut rate = None;
        for arg in &d.args[1..] {
            if let Some(spec) = arg.strip_prefix("zone=") {
                let (name, size) = spec
                    .split_once(':')
                    .ok_or_else(|| invalid(&format!("zone size \"{arg}\"")))?;
                let size = crate::config::parse_size(size)
                    .filter(|s| *s >= 8 * 4096)
                    .ok_or_else(|| {
                        ConfigError::at(format!("zone \"{name}\" is too small"), d.location())
                    })?;
                if name.is_empty() {
                    return Err(invalid(&format!("zone name \"{arg}\"")));
                }
                zone = Some((name.to_string(), size));
            } else if let Some(text) = arg
                .strip_prefix("rate=")
                .filter(|_| d.name == "limit_req_zone")
            {
                let (number, per) = text
                    .strip_suffix("r/s")
                    .map(|n| (n, 1))
                    .or_else(|| text.strip_suffix("r/m").map(|n| (n, 60)))
                    .ok_or_else(|| invalid(&format!("rate \"{arg}\"")))?;
                let number: u64 = number
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(&format!("rate \"{arg}\"")))?;
                rate = Some(number * 1000 / per);
            } else if arg == "sync" && d.name == "limit_req_zone" {
                // nginx Plus's zone synchronisation: every ferry worker
                // shares the zone already.
            } else {
                return Err(ConfigError::at(
                    format!("invalid parameter \"{arg}\""),
                    d.location(),
                ));
            }
        }
        let (name, size) = zone.ok_or_else(|| {
            ConfigError::at(
                format!("\"{}\" must have \"zone\" parameter", d.name),
                d.location(),
            )
        })?;
        if d.name == "limit_req_zone" && rate.is_none() {
            return Err(invalid("rate"));
        }
        if config.limit_zones.iter().any(|z| z.name == name) {
            return Err(ConfigError::at(
                format!("duplicate zone \"{name}\""),
                d.location(),
            ));
        }
        config
            .limit_zones
            .push(crate::limits::zone(&name, key, size, rate));
    }
    Ok(())
}

fn find_zone(
    d: &Directive,
    config: &Config,
    name: &str,
    requests: bool,
) -> Result<std::sync::Arc<crate::limits::LimitZone>, ConfigError> {
    config
        .limit_zones
        .iter()
        .find(|z| {
            z.name == name && matches!(z.kind, crate::limits::ZoneKind::Requests { .. }) == requests
        })
        .cloned()
        .ok_or_else(|| {
            ConfigError::at(
                format!("zero size shared memory zone \"{name}\""),
                d.location(),
            )
        })
}

/// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`.
fn limit_req(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut zone = None;
    let mut burst = 0;
    let mut delay = 0;
    for arg in &d.args {
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| ConfigError::at(format!("invalid {arg}"), d.location()))
        };
        if let Some(name) = arg.strip_prefix("zone=") {
            zone = Some(find_zone(d, config, name, true)?);
        } else if let Some(n) = arg.strip_prefix("burst=") {
            burst = number(n)? * 1000;
        } else if let Some(n) = arg.strip_prefix("delay=") {
            delay = number(n)? * 1000;
        } else if arg == "nodelay" {
            delay = u64::MAX;
        } else {
            return Err(ConfigError::at(
                format!("invalid parameter \"{arg}\""),
                d.location(),
            ));
        }
    }
    let zone = zone.ok_or_else(|| {
        ConfigError::at("\"limit_req\" must have \"zone\" parameter", d.location())
    })?;
    s.limit_reqs
        .get_or_insert_with(Vec::new)
        .push(LimitReq { zone, burst, delay });
    Ok(())
}

/// `limit_conn ZONE NUMBER`.
fn limit_conn(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let zone = find_zone(d, config, &d.args[0], false)?;
    let max: u32 = d.args[1].parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ConfigError::at(
            format!("invalid number of connections \"{}\"", d.args[1]),
            d.location(),
        )
    })?;
    s.limit_conns
        .get_or_insert_with(Vec::new)
        .push(LimitConn { zone, max });
    Ok(())
}

fn status(d: &Directive) -> Result<u16, ConfigError> {
    d.args[0]
        .parse::<u16>()
        .ok()
        .filter(|code| (400..=599).contains(code))
        .ok_or_else(|| ConfigError::at("value must be between 400 and 599", d.location()))
}

fn log_level(d: &Directive) -> Result<log::Level, ConfigError> {
    match d.args[0].as_str() {
        "info" | "notice" => Ok(log::Level::Info),
        "warn" => Ok(log::Level::Warn),
        "error" => Ok(log::Level::Error),
        other => Err(ConfigError::at(
            format!("invalid value \"{other}\""),
            d.location(),
        )),
    }
}

fn limit_req_status(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_req_status = Some(status(d)?);
    Ok(())
}

fn limit_conn_status(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_conn_status = Some(status(d)?);
    Ok(())
}

fn limit_req_log_level(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_req_log_level = Some(log_level(d)?);
    Ok(())
}

fn limit_conn_log_level(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_conn_log_level = Some(log_level(d)?);
    Ok(())
}

fn limit_req_dry_run(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_req_dry_run = Some(super::flag(d)?);
    Ok(())
}

fn limit_conn_dry_run(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_conn_dry_run = Some(super::flag(d)?);
    Ok(())
}

/// `limit_rate RATE` (bytes per second to each client request; 0: none).
fn limit_rate(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_rate = Some(size_value(d, config)?);
    Ok(())
}

/// `limit_rate_after SIZE`: that many bytes go unpaced.
fn limit_rate_after(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.limit_rate_after = Some(size_value(d, config)?);
    Ok(())
}

/// A size, or with variables a template rendered per request (nginx's
/// `ngx_http_set_complex_value_size_slot`).
fn size_value(d: &Directive, config: &Config) -> Result<SizeValue, ConfigError> {
    if !d.args[0].contains('$') {
        return Ok(SizeValue::Fixed(super::size(d, 0)?));
    }
    crate::variables::Template::compile_with(&d.args[0], &config.map_names)
        .map(SizeValue::Rendered)
        .map_err(|e| ConfigError::at(e.to_string(), d.location()))
}
