//! ngx_http_map_module: `map SOURCE $NAME { KEY VALUE; … }` blocks, which
//! define variables from other variables (nginx's WebSocket recipe:
//! `map $http_upgrade $connection_upgrade { default upgrade; '' close; }`).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{check_number, check_size, spec, Arity, Directive, Handler, Http, Spec};
use crate::config::parse::ConfigError;
use crate::config::{Config, MapDef};
use crate::variables::{Template, Variable};

const HASH_TABLE: &str = "sizes of nginx's map hash tables; ferry's maps need no sizing";

pub(super) const DIRECTIVES: &[Spec] = &[
    spec("map", &[Http], Arity::Exactly(2), Handler::Structure)
        .block()
        .repeatable(),
    spec(
        "map_hash_max_size",
        &[Http],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_number,
            why: HASH_TABLE,
        },
    ),
    spec(
        "map_hash_bucket_size",
        &[Http],
        Arity::Exactly(1),
        Handler::NoEffect {
            check: check_size,
            why: HASH_TABLE,
        },
    ),
];

/// The http block's `map`s, in file order. A map's source and values may
/// use the variables of the maps before it (so no map can depend on
/// itself).
pub(super) fn maps(block: &[Directive], config: &mut Config) -> Result<(), ConfigError> {
    config.maps.clear();
    config.map_names.clear();
    for directive in block.iter().filter(|d| d.name == "map") {
        let map = map(directive, &config.map_names)?;
        config.map_names.push(map.name.clone());
        config.maps.push(map);
    }
    Ok(())
}

fn map(directive: &Directive, known: &[String]) -> Result<MapDef, ConfigError> {
    let at = |message: String| ConfigError::at(message, directive.location());
    let compile = |text: &str, line: &Directive| {
        Template::compile_with(text, known)
            .map_err(|e| ConfigError::at(e.to_string(), line.location()))
    };
    let source = compile(&directive.args[0], directive)?;
    let target = &directive.args[1];
    let Some(name) = target.strip_prefix('$').filter(|n| !n.is_empty()) else {
        return Err(at(format!("invalid variable name \"{target}\"")));
    };
    if known.iter().any(|k| k == name) || Variable::is_builtin(name) {
        return Err(at(format!("the duplicate \"{name}\" variable")));
    }
    let mut map = MapDef {
        name: name.to_string(),
        source,
        exact: Vec::new(),
        wildcards: Vec::new(),
        regexes: Vec::new(),
        default: None,
        hostnames: false,
    };
    let lines = directive.block.as_deref().unwrap_or_default();
    // `hostnames` changes how every key reads, wherever it is written.
    map.hostnames = lines
        .iter()
        .any(|l| l.name == "hostnames" && l.args.is_empty());
    for line in lines {
        let key = line.name.as_str();
        match (key, line.args.as_slice()) {
            ("hostnames" | "volatile", []) => continue,
            (_, [value]) => {
                let value = compile(value, line)?;
                if key == "default" {
                    if map.default.is_some() {
                        return Err(ConfigError::at(
                            "duplicate default map parameter",
                            line.location(),
                        ));
                    }
                    map.default = Some(value);
                } else if let Some(pattern) = key.strip_prefix("~*") {
                    map.regexes
                        .push((regex(&format!("(?i){pattern}"), line)?, value));
                } else if let Some(pattern) = key.strip_prefix('~') {
                    map.regexes.push((regex(pattern, line)?, value));
                } else {
                    // `\~` (or `\default`) is the literal key.
                    let key = key.strip_prefix('\\').unwrap_or(key);
                    let is_pattern =
                        key.starts_with("*.") || key.starts_with('.') || key.ends_with(".*");
                    if map.hostnames && is_pattern {
                        map.wildcards.push((key.to_ascii_lowercase(), value));
                    } else if map.exact.iter().any(|(known, _)| known == key) {
                        return Err(ConfigError::at(
                            format!("duplicate entry \"{key}\""),
                            line.location(),
                        ));
                    } else {
                        map.exact.push((key.to_string(), value));
                    }
                }
            }
            _ => {
                return Err(ConfigError::at(
                    "invalid number of the map parameters",
                    line.location(),
                ))
            }
        }
    }
    Ok(map)
}

fn regex(pattern: &str, line: &Directive) -> Result<regex_lite::Regex, ConfigError> {
    regex_lite::Regex::new(pattern).map_err(|e| {
        ConfigError::at(
            format!("invalid regular expression \"{pattern}\": {e}"),
            line.location(),
        )
    })
}
