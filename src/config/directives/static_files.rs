//! ngx_http_static_module, ngx_http_index_module, ngx_http_autoindex_module
//! and the core module's file directives (`root`, `alias`, `try_files`,
//! `types`, `etag`…): where a location's files are and how they are sent.
//! `expires` (ngx_http_headers_module) is read here too: it is mostly
//! about files. What a request does with them is `crate::files`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    check_nothing, flag, number, on_off, spec, Arity, Directive, Handler, Inherited, Spec, HSL,
};
use super::{Location, Server};
use crate::config::parse::ConfigError;
use crate::config::{parse_seconds, Config, LocationMatch};
use crate::files::{
    DocumentRoot, Expires, Fallback, FileSettings, MimeTypes, ModifiedSince, TryFiles, TryName,
};
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("root", HSL, Arity::Exactly(1), Handler::Setting(root)),
    // Needs its location's prefix: read where locations are built.
    spec("alias", &[Location], Arity::Exactly(1), Handler::Structure),
    spec("index", HSL, Arity::AtLeast(1), Handler::Setting(index)),
    spec(
        "try_files",
        &[Server, Location],
        Arity::AtLeast(2),
        Handler::Setting(try_files),
    ),
    spec(
        "autoindex",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(autoindex),
    ),
    spec("types", HSL, Arity::Exactly(0), Handler::Setting(types)).block(),
    spec(
        "default_type",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(default_type),
    ),
    spec("etag", HSL, Arity::Exactly(1), Handler::Setting(etag)),
    spec(
        "if_modified_since",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(if_modified_since),
    ),
    spec(
        "max_ranges",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(max_ranges),
    ),
    spec(
        "log_not_found",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(log_not_found),
    ),
    spec(
        "expires",
        HSL,
        Arity::Between(1, 2),
        Handler::Setting(expires),
    ),
    spec(
        "sendfile",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry reads a file into the connection's ring buffer as the client takes it \
                  (the same path plain and under TLS), never with sendfile(2)",
        },
    ),
    spec(
        "sendfile_max_chunk",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: super::check_size,
            why: "ferry reads at most one ring buffer of a file per write",
        },
    ),
    spec(
        "disable_symlinks",
        HSL,
        Arity::Between(1, 2),
        Handler::NoEffect {
            check: disable_symlinks,
            why: "`off`, nginx's default, is how ferry opens files: symlinks are followed",
        },
    ),
    spec(
        "open_file_cache",
        HSL,
        Arity::Between(1, 2),
        Handler::NoEffect {
            check: check_nothing,
            why: "ferry opens a file per request; the kernel caches what it looks up",
        },
    ),
    spec(
        "open_file_cache_valid",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_nothing,
            why: "ferry keeps no open file cache",
        },
    ),
    spec(
        "open_file_cache_min_uses",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_nothing,
            why: "ferry keeps no open file cache",
        },
    ),
    spec(
        "open_file_cache_errors",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "ferry keeps no open file cache",
        },
    ),
    super::not_yet("autoindex_exact_size"),
    super::not_yet("autoindex_format"),
    super::not_yet("autoindex_localtime"),
    super::not_yet("random_index"),
];

/// The file settings set at one level, inherited inward.
#[derive(Clone, Default)]
pub(super) struct FilesInherited {
    root: Option<DocumentRoot>,
    index: Option<Vec<String>>,
    try_files: Option<TryFiles>,
    expires: Option<Expires>,
    types: Option<Arc<MimeTypes>>,
    default_type: Option<String>,
    etag: Option<bool>,
    if_modified_since: Option<ModifiedSince>,
    max_ranges: Option<Option<u32>>,
    log_not_found: Option<bool>,
}

impl FilesInherited {
    pub(super) fn over(self, outer: &FilesInherited) -> FilesInherited {
        FilesInherited {
            root: self.root.or_else(|| outer.root.clone()),
            index: self.index.or_else(|| outer.index.clone()),
            try_files: self.try_files.or_else(|| outer.try_files.clone()),
            expires: self.expires.or(outer.expires),
            types: self.types.or_else(|| outer.types.clone()),
            default_type: self.default_type.or_else(|| outer.default_type.clone()),
            etag: self.etag.or(outer.etag),
            if_modified_since: self.if_modified_since.or(outer.if_modified_since),
            max_ranges: self.max_ranges.or(outer.max_ranges),
            log_not_found: self.log_not_found.or(outer.log_not_found),
        }
    }

    pub(super) fn resolve(&self, prefix: &Path) -> FileSettings {
        let defaults = FileSettings::default();
        FileSettings {
            root: self
                .root
                .clone()
                .unwrap_or_else(|| DocumentRoot::Root(prefix.join("html"))),
            index: self.index.clone().unwrap_or(defaults.index),
            try_files: self.try_files.clone(),
            expires: self.expires.unwrap_or(defaults.expires),
            types: self.types.clone().unwrap_or(defaults.types),
            default_type: self.default_type.clone().unwrap_or(defaults.default_type),
            etag: self.etag.unwrap_or(defaults.etag),
            if_modified_since: self.if_modified_since.unwrap_or(defaults.if_modified_since),
            max_ranges: self.max_ranges.unwrap_or(defaults.max_ranges),
            log_not_found: self.log_not_found.unwrap_or(defaults.log_not_found),
        }
    }
}

/// `alias` replaces the inherited root (and is inherited by nested
/// locations, as nginx's is).
pub(super) fn set_root(settings: &mut Inherited, root: DocumentRoot) {
    settings.files.root = Some(root);
}

/// A path from the configuration: relative ones are relative to ferry's
/// prefix (the main configuration file's directory), as nginx's are to its.
pub(super) fn config_path(directive: &Directive, config: &Config) -> Result<PathBuf, ConfigError> {
    let text = &directive.args[0];
    if text.contains('$') {
        return Err(ConfigError::at(
            format!("variables in \"{}\" are not supported yet", directive.name),
            directive.location(),
        ));
    }
    let path = Path::new(text);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        config.prefix.join(path)
    })
}

fn root(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut path = config_path(d, config)?;
    // nginx drops a trailing slash from `root`: the uri brings its own.
    let text = path.to_string_lossy();
    if text.len() > 1 && text.ends_with('/') {
        path = PathBuf::from(text.trim_end_matches('/'));
    }
    s.files.root = Some(DocumentRoot::Root(path));
    Ok(())
}

/// `alias PATH` of a location (read by `http::build_location`).
pub(super) fn alias(
    directive: &Directive,
    block: &[Directive],
    matcher: &LocationMatch,
    config: &Config,
) -> Result<DocumentRoot, ConfigError> {
    if block.iter().any(|d| d.name == "root") {
        return Err(ConfigError::at(
            "\"alias\" directive is duplicate, \"root\" directive was specified earlier",
            directive.location(),
        ));
    }
    let strip = match matcher {
        LocationMatch::Prefix { path, .. } | LocationMatch::Exact(path) => path.len(),
        LocationMatch::Named(_) => {
            return Err(ConfigError::at(
                "\"alias\" directive cannot be used inside the named location",
                directive.location(),
            ))
        }
        LocationMatch::Regex(_) => {
            return Err(ConfigError::at(
                "\"alias\" in a regex location is not supported yet",
                directive.location(),
            ))
        }
    };
    Ok(DocumentRoot::Alias {
        path: config_path(directive, config)?,
        strip,
    })
}

fn index(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    for name in &d.args {
        if name.is_empty() {
            return Err(ConfigError::at(
                "index \"\" in \"index\" directive is invalid",
                d.location(),
            ));
        }
        if name.starts_with('/') || name.contains('$') {
            return Err(ConfigError::at(
                format!(
                    "index \"{name}\": absolute index files and variables are not supported yet"
                ),
                d.location(),
            ));
        }
    }
    s.files.index = Some(d.args.clone());
    Ok(())
}

fn try_files(d: &Directive, config: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let compile = |text: &str| {
        Template::compile_with(text, &config.map_names)
            .map_err(|e| ConfigError::at(e.to_string(), d.location()))
    };
    let (last, files) = d.args.split_last().unwrap_or((&d.args[0], &[]));
    let fallback = if let Some(code) = last.strip_prefix('=') {
        match code.parse::<u16>() {
            Ok(code) if code <= 999 => Fallback::Status(code),
            _ => {
                return Err(ConfigError::at(
                    format!("invalid code \"{last}\""),
                    d.location(),
                ))
            }
        }
    } else if last.starts_with('@') {
        Fallback::Named(last.clone())
    } else {
        Fallback::Uri(compile(last)?)
    };
    // nginx: a name written with a trailing `/` is tested as a directory,
    // and the name goes on without it.
    let files = files
        .iter()
        .map(|file| {
            let directory = file.len() > 1 && file.ends_with('/');
            let name = if directory {
                &file[..file.len() - 1]
            } else {
                file
            };
            Ok(TryName {
                name: compile(name)?,
                directory,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    s.files.try_files = Some(TryFiles { files, fallback });
    Ok(())
}

fn autoindex(d: &Directive, _: &Config, _: &mut Inherited) -> Result<(), ConfigError> {
    if flag(d)? {
        return Err(ConfigError::at(
            "\"autoindex on\" is not supported yet",
            d.location(),
        ));
    }
    Ok(())
}

/// `types { TYPE EXTENSION…; … }`, usually through `include mime.types`.
fn types(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let mut pairs = Vec::new();
    for line in d.block.iter().flatten() {
        if line.block.is_some() || line.args.is_empty() {
            return Err(ConfigError::at(
                format!("invalid number of arguments in \"{}\" directive", line.name),
                line.location(),
            ));
        }
        for extension in &line.args {
            pairs.push((line.name.clone(), extension.clone()));
        }
    }
    s.files.types = Some(Arc::new(MimeTypes::from_pairs(pairs)));
    Ok(())
}

fn default_type(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let value = &d.args[0];
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(ConfigError::at(
            format!("invalid value \"{}\"", value.escape_debug()),
            d.location(),
        ));
    }
    s.files.default_type = Some(value.clone());
    Ok(())
}

fn etag(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.files.etag = Some(flag(d)?);
    Ok(())
}

fn log_not_found(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.files.log_not_found = Some(flag(d)?);
    Ok(())
}

fn if_modified_since(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.files.if_modified_since = Some(match d.args[0].as_str() {
        "off" => ModifiedSince::Off,
        "exact" => ModifiedSince::Exact,
        "before" => ModifiedSince::Before,
        other => {
            return Err(ConfigError::at(
                format!(
                    "invalid value \"{other}\" in \"if_modified_since\" directive, \
                     it must be \"off\", \"exact\" or \"before\""
                ),
                d.location(),
            ))
        }
    });
    Ok(())
}

fn max_ranges(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.files.max_ranges = Some(Some(number(d, 0)?));
    Ok(())
}

/// `expires [modified] TIME | epoch | max | off`; TIME may be negative.
fn expires(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let invalid = || {
        ConfigError::at(
            format!("invalid value \"{}\"", d.args.join(" ")),
            d.location(),
        )
    };
    let (modified, value) = match d.args.as_slice() {
        [modified, value] if modified == "modified" => (true, value.as_str()),
        [value] => (false, value.as_str()),
        _ => return Err(invalid()),
    };
    let expires = match value {
        "off" if !modified => Expires::Off,
        "epoch" if !modified => Expires::Epoch,
        "max" if !modified => Expires::Max,
        _ if value.starts_with('@') => {
            return Err(ConfigError::at(
                "\"expires @TIME\" is not supported yet",
                d.location(),
            ))
        }
        _ => {
            let (sign, text) = match value.strip_prefix('-') {
                Some(rest) => (-1, rest),
                None => (1, value.strip_prefix('+').unwrap_or(value)),
            };
            let seconds = parse_seconds(text).ok_or_else(invalid)?.as_secs();
            let seconds = sign * i64::try_from(seconds).map_err(|_| invalid())?;
            if modified {
                Expires::Modified(seconds)
            } else {
                Expires::After(seconds)
            }
        }
    };
    s.files.expires = Some(expires);
    Ok(())
}

fn disable_symlinks(d: &Directive) -> Result<(), ConfigError> {
    match d.args.as_slice() {
        [off] if off == "off" => Ok(()),
        _ => Err(ConfigError::at(
            format!(
                "\"disable_symlinks {}\" is not supported yet",
                d.args.join(" ")
            ),
            d.location(),
        )),
    }
}
