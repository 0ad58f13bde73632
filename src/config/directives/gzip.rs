//! ngx_http_gzip_module (`gzip`, `gzip_types`, `gzip_comp_level`,
//! `gzip_min_length`, `gzip_buffers`) and the `gzip_*` lines nginx keeps in
//! its core module (`gzip_proxied`, `gzip_vary`, `gzip_http_version`,
//! `gzip_disable`). What they decide is in `http/gzip.rs`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::Config;
use crate::http::gzip::{proxied, GzipSettings};

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("gzip", HSL, Arity::Exactly(1), Handler::Setting(gzip)),
    spec(
        "gzip_types",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(gzip_types),
    ),
    spec(
        "gzip_comp_level",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(gzip_comp_level),
    ),
    spec(
        "gzip_min_length",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(gzip_min_length),
    ),
    spec(
        "gzip_proxied",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(gzip_proxied),
    ),
    spec(
        "gzip_vary",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(gzip_vary),
    ),
    spec(
        "gzip_http_version",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(gzip_http_version),
    ),
    spec(
        "gzip_disable",
        HSL,
        Arity::AtLeast(1),
        Handler::Setting(gzip_disable),
    ),
    spec(
        "gzip_buffers",
        HSL,
        Arity::Exactly(2),
        Handler::NoEffect {
            check: gzip_buffers,
            why: "ferry compresses into one 16 KiB chunk per response as the client takes it, \
                  never holding a whole body",
        },
    ),
    super::not_yet("gzip_static"),
    super::not_yet("gunzip"),
    super::not_yet("gunzip_buffers"),
];

/// The `gzip*` lines of one level; unset ones are inherited.
#[derive(Clone, Debug, Default)]
pub(super) struct GzipLines {
    on: Option<bool>,
    level: Option<u32>,
    types: Option<Vec<String>>,
    min_length: Option<u64>,
    proxied: Option<u16>,
    vary: Option<bool>,
    http10: Option<bool>,
    disable: Option<(bool, Vec<regex_lite::Regex>)>,
}

impl GzipLines {
    pub(super) fn inherit(self, outer: &GzipLines) -> GzipLines {
        GzipLines {
            on: self.on.or(outer.on),
            level: self.level.or(outer.level),
            types: self.types.or_else(|| outer.types.clone()),
            min_length: self.min_length.or(outer.min_length),
            proxied: self.proxied.or(outer.proxied),
            vary: self.vary.or(outer.vary),
            http10: self.http10.or(outer.http10),
            disable: self.disable.or_else(|| outer.disable.clone()),
        }
    }

    pub(super) fn apply(&self, settings: &mut GzipSettings) {
        let defaults = GzipSettings::default();
        settings.on = self.on.unwrap_or(defaults.on);
        settings.level = self.level.unwrap_or(defaults.level);
        settings.types = self.types.clone().unwrap_or(defaults.types);
        settings.min_length = self.min_length.unwrap_or(defaults.min_length);
        settings.proxied = self.proxied.unwrap_or(defaults.proxied);
        settings.vary = self.vary.unwrap_or(defaults.vary);
        settings.http10 = self.http10.unwrap_or(defaults.http10);
        let (msie6, disable) = self.disable.clone().unwrap_or_default();
        settings.disable_msie6 = msie6;
        settings.disable = disable;
    }
}

fn gzip(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.gzip.on = Some(super::flag(d)?);
    Ok(())
}

/// `gzip_types TYPE…`: `text/html` is always among them, as in nginx.
fn gzip_types(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut types: Vec<String> = d.args.iter().map(|t| t.to_ascii_lowercase()).collect();
    if !types.iter().any(|t| t == "text/html") {
        types.push("text/html".to_string());
    }
    s.gzip.types = Some(types);
    Ok(())
}

fn gzip_comp_level(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let level: u32 = super::number(d, 0)?;
    if !(1..=9).contains(&level) {
        return Err(ConfigError::at(
            "value must be between 1 and 9",
            d.location(),
        ));
    }
    s.gzip.level = Some(level);
    Ok(())
}

fn gzip_min_length(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.gzip.min_length = Some(super::size(d, 0)?);
    Ok(())
}

fn gzip_proxied(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut flags = 0;
    for value in &d.args {
        flags |= match value.as_str() {
            "off" => proxied::OFF,
            "expired" => proxied::EXPIRED,
            "no-cache" => proxied::NO_CACHE,
            "no-store" => proxied::NO_STORE,
            "private" => proxied::PRIVATE,
            "no_last_modified" => proxied::NO_LAST_MODIFIED,
            "no_etag" => proxied::NO_ETAG,
            "auth" => proxied::AUTH,
            "any" => proxied::ANY,
            other => {
                return Err(ConfigError::at(
                    format!("invalid value \"{other}\""),
                    d.location(),
                ))
            }
        };
    }
    s.gzip.proxied = Some(flags);
    Ok(())
}

fn gzip_vary(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.gzip.vary = Some(super::flag(d)?);
    Ok(())
}

fn gzip_http_version(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.gzip.http10 = Some(match d.args[0].as_str() {
        "1.0" => true,
        "1.1" => false,
        other => {
            return Err(ConfigError::at(
                format!("invalid value \"{other}\" in \"gzip_http_version\" directive"),
                d.location(),
            ))
        }
    });
    Ok(())
}

/// `gzip_disable msie6 | degradation | REGEX…` (regexes ignore case, as
/// nginx compiles them; `degradation` is accepted: ferry never degrades).
fn gzip_disable(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut msie6 = false;
    let mut regexes = Vec::new();
    for value in &d.args {
        match value.as_str() {
            "msie6" => msie6 = true,
            "degradation" => {}
            pattern => regexes.push(
                regex_lite::RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        ConfigError::at(format!("invalid regular expression: {e}"), d.location())
                    })?,
            ),
        }
    }
    s.gzip.disable = Some((msie6, regexes));
    Ok(())
}

fn gzip_buffers(d: &Directive) -> Result<(), ConfigError> {
    super::number::<u32>(d, 0)?;
    super::size(d, 1)?;
    Ok(())
}
