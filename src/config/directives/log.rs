//! ngx_http_log_module: `log_format` and `access_log`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::path::PathBuf;

use super::{spec, Arity, Directive, Handler, Http, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::{AccessLogTarget, Config};
use crate::variables::{LogEscape, Template};

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "access_log",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(set_access_log),
    )
    .repeatable(),
    spec("log_format", &[Http], Arity::AtLeast(2), Handler::Structure).repeatable(),
    spec(
        "open_log_file_cache",
        HSL,
        Arity::Between(1, 4),
        Handler::NoEffect {
            check: open_log_file_cache,
            why: "it caches the files of log paths with variables, which ferry does not take: \
                  each log file is opened once, at start and on reopen",
        },
    ),
];

/// `open_log_file_cache off | max=N [inactive=T] [min_uses=N] [valid=T]`,
/// checked as nginx checks it.
fn open_log_file_cache(directive: &Directive) -> Result<(), ConfigError> {
    let invalid = |what: &str| {
        ConfigError::at(
            format!("invalid \"open_log_file_cache\" parameter \"{what}\""),
            directive.location(),
        )
    };
    if directive.args == ["off"] {
        return Ok(());
    }
    let mut max = false;
    for arg in &directive.args {
        let (name, value) = arg.split_once('=').ok_or_else(|| invalid(arg))?;
        let valid = match name {
            "max" => {
                max = true;
                value.parse::<u32>().is_ok_and(|n| n > 0)
            }
            "min_uses" => value.parse::<u32>().is_ok(),
            "inactive" | "valid" => crate::config::parse_seconds(value).is_some(),
            _ => false,
        };
        if !valid {
            return Err(invalid(arg));
        }
    }
    if !max {
        return Err(ConfigError::at(
            "\"open_log_file_cache\" must have \"max\" parameter",
            directive.location(),
        ));
    }
    Ok(())
}

/// The `log_format` lines of the http block, after the built-in formats.
pub(super) fn log_formats(block: &[Directive], config: &mut Config) -> Result<(), ConfigError> {
    for directive in block.iter().filter(|d| d.name == "log_format") {
        let name = &directive.args[0];
        if config.log_formats.iter().any(|(known, _)| known == name) {
            return Err(ConfigError::at(
                format!("duplicate \"log_format\" name \"{name}\""),
                directive.location(),
            ));
        }
        let mut strings = &directive.args[1..];
        let mut escape = LogEscape::Default;
        if let Some(value) = strings.first().and_then(|s| s.strip_prefix("escape=")) {
            escape = match value {
                "default" => LogEscape::Default,
                "json" => LogEscape::Json,
                "none" => LogEscape::None,
                _ => {
                    return Err(ConfigError::at(
                        format!("unknown log format escaping \"{value}\""),
                        directive.location(),
                    ))
                }
            };
            strings = &strings[1..];
        }
        let template = Template::compile_log_format(&strings.concat(), escape, &config.map_names)
            .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
        config.log_formats.push((name.clone(), template));
    }
    Ok(())
}

fn set_access_log(
    directive: &Directive,
    config: &Config,
    settings: &mut Inherited,
) -> Result<(), ConfigError> {
    let (target, format, condition) = access_log(directive, config)?;
    settings.access_log = Some(target);
    settings.log_format = Some(format);
    settings.access_log_if = Some(condition);
    Ok(())
}

/// The target, the format and the `if=` condition of an `access_log` line.
fn access_log(
    directive: &Directive,
    config: &Config,
) -> Result<(AccessLogTarget, usize, Option<Template>), ConfigError> {
    let path = directive.args[0].as_str();
    if path == "off" {
        if directive.args.len() > 1 {
            return Err(ConfigError::at(
                "invalid parameter after \"off\" in \"access_log\" directive",
                directive.location(),
            ));
        }
        return Ok((AccessLogTarget::Off, crate::config::UPSTREAM_FORMAT, None));
    }
    // nginx's default format for an explicit access_log is `combined`.
    let format = match directive.args.get(1) {
        None => crate::config::COMBINED_FORMAT,
        Some(name) => config
            .log_formats
            .iter()
            .position(|(known, _)| known == name)
            .ok_or_else(|| {
                ConfigError::at(
                    format!("unknown log format \"{name}\""),
                    directive.location(),
                )
            })?,
    };
    let mut condition = None;
    for parameter in directive.args.iter().skip(2) {
        if let Some(text) = parameter.strip_prefix("if=") {
            // Any variable, as in a log format: the line is skipped when
            // the value is empty or `0`.
            let template = Template::compile_log_format(text, LogEscape::None, &config.map_names)
                .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
            condition = Some(template);
            continue;
        }
        // ferry already batches: a loop turn's lines leave in one write at
        // the end of the turn, never later; nginx's buffer= and flush= ask
        // for at most that much delay. Their values are checked.
        let valid = if let Some(size) = parameter.strip_prefix("buffer=") {
            crate::config::parse_size(size).is_some()
        } else if let Some(time) = parameter.strip_prefix("flush=") {
            crate::config::parse_duration(time).is_some()
        } else {
            return Err(ConfigError::at(
                format!("\"access_log\" parameter \"{parameter}\" is not supported yet"),
                directive.location(),
            ));
        };
        if !valid {
            return Err(ConfigError::at(
                format!("invalid parameter \"{parameter}\""),
                directive.location(),
            ));
        }
    }
    let target = match path {
        "/dev/stdout" => AccessLogTarget::Stdout,
        _ => AccessLogTarget::File(PathBuf::from(path)),
    };
    Ok((target, format, condition))
}
