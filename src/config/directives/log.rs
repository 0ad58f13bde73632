//! ngx_http_log_module: `log_format` and `access_log`.

use std::path::PathBuf;

use super::{not_yet, spec, Arity, Directive, Handler, Http, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::{AccessLogTarget, Config};
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "access_log",
        HSL,
        Arity::Between(1, 3),
        Handler::Setting(set_access_log),
    )
    .repeatable(),
    spec("log_format", &[Http], Arity::AtLeast(2), Handler::Structure).repeatable(),
    not_yet("open_log_file_cache"),
];

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
        if strings.first().is_some_and(|s| s.starts_with("escape=")) {
            if strings[0] != "escape=default" {
                return Err(ConfigError::at(
                    format!("\"{}\" is not supported yet", strings[0]),
                    directive.location(),
                ));
            }
            strings = &strings[1..];
        }
        let template = Template::compile_log_format(&strings.concat())
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
    let (target, format) = access_log(directive, config)?;
    settings.access_log = Some(target);
    settings.log_format = Some(format);
    Ok(())
}

fn access_log(
    directive: &Directive,
    config: &Config,
) -> Result<(AccessLogTarget, usize), ConfigError> {
    let path = directive.args[0].as_str();
    if path == "off" {
        if directive.args.len() > 1 {
            return Err(ConfigError::at(
                "invalid parameter after \"off\" in \"access_log\" directive",
                directive.location(),
            ));
        }
        return Ok((AccessLogTarget::Off, crate::config::UPSTREAM_FORMAT));
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
    if directive.args.len() > 2 {
        return Err(ConfigError::at(
            format!(
                "\"access_log\" parameter \"{}\" is not supported yet",
                directive.args[2]
            ),
            directive.location(),
        ));
    }
    let target = match path {
        "/dev/stdout" => AccessLogTarget::Stdout,
        _ => AccessLogTarget::File(PathBuf::from(path)),
    };
    Ok((target, format))
}
