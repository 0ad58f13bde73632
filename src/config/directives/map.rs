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
    spec("geo", &[Http], Arity::Between(1, 2), Handler::Structure)
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

/// The http block's `map`s and `geo`s, in file order. A map's source and
/// values may use the variables of the maps before it (so no map can
/// depend on itself).
pub(super) fn maps(block: &[Directive], config: &mut Config) -> Result<(), ConfigError> {
    config.maps.clear();
    config.map_names.clear();
    for directive in block.iter().filter(|d| d.name == "map" || d.name == "geo") {
        let map = match directive.name.as_str() {
            "geo" => geo(directive, &config.map_names)?,
            _ => map(directive, &config.map_names)?,
        };
        config.map_names.push(map.name.clone());
        config.maps.push(map);
    }
    Ok(())
}

/// The variable a `map` or `geo` defines: `$NAME`, not yet known.
fn new_variable<'a>(
    directive: &Directive,
    target: &'a str,
    known: &[String],
) -> Result<&'a str, ConfigError> {
    let at = |message: String| ConfigError::at(message, directive.location());
    let Some(name) = target.strip_prefix('$').filter(|n| !n.is_empty()) else {
        return Err(at(format!("invalid variable name \"{target}\"")));
    };
    if known.iter().any(|k| k == name) || Variable::is_builtin(name) {
        return Err(at(format!("the duplicate \"{name}\" variable")));
    }
    Ok(name)
}

/// `geo [SOURCE] $NAME { default VALUE; NETWORK VALUE; … }`, nginx's
/// `ngx_http_geo_module` for networks (`10.0.0.0/8`, `2001:db8::/32`, an
/// address); the source is the client's address unless given. Values are
/// taken as written. `ranges`, `proxy` and `delete` are not supported yet.
fn geo(directive: &Directive, known: &[String]) -> Result<MapDef, ConfigError> {
    let (source, target) = match directive.args.as_slice() {
        [target] => ("$remote_addr", target),
        // The directive table admits one or two.
        [source, target, ..] => (source.as_str(), target),
        [] => {
            return Err(ConfigError::at(
                "invalid number of arguments in \"geo\" directive",
                directive.location(),
            ))
        }
    };
    let source = Template::compile_with(source, known)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
    let name = new_variable(directive, target, known)?;
    let mut table = crate::variables::GeoTable::default();
    let mut default = None;
    for line in directive.block.as_deref().unwrap_or_default() {
        let key = line.name.as_str();
        let [value] = line.args.as_slice() else {
            if matches!(key, "ranges" | "proxy_recursive") && line.args.is_empty() {
                return Err(ConfigError::at(
                    format!("\"{key}\" in \"geo\" is not supported yet"),
                    line.location(),
                ));
            }
            return Err(ConfigError::at(
                "invalid number of the geo parameters",
                line.location(),
            ));
        };
        let value = Template::literal(value);
        match key {
            "default" => default = Some(value),
            "proxy" | "delete" => {
                return Err(ConfigError::at(
                    format!("\"{key}\" in \"geo\" is not supported yet"),
                    line.location(),
                ))
            }
            network => {
                // nginx's parser takes 255.255.255.255 for "no address".
                let broadcast = std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
                let parsed = super::access::network(line, network)?
                    .filter(|(address, _)| *address != broadcast);
                let Some((address, prefix)) = parsed else {
                    return Err(ConfigError::at(
                        format!("invalid network \"{network}\""),
                        line.location(),
                    ));
                };
                // nginx replaces a network given twice, and says so.
                let same = |(known, length, _): &(std::net::IpAddr, u8, Template)| {
                    (*known, *length) == (address, prefix)
                };
                if table.networks.iter().any(same) {
                    log::warn!(
                        "duplicate network \"{network}\", value: \"{}\" in {}:{}",
                        line.args[0],
                        line.file.display(),
                        line.line
                    );
                }
                table.networks.retain(|entry| !same(entry));
                table.networks.push((address, prefix, value));
            }
        }
    }
    Ok(MapDef {
        name: name.to_string(),
        source,
        exact: Vec::new(),
        wildcards: Vec::new(),
        regexes: Vec::new(),
        default,
        hostnames: false,
        geo: Some(table),
    })
}

fn map(directive: &Directive, known: &[String]) -> Result<MapDef, ConfigError> {
    let compile = |text: &str, line: &Directive| {
        Template::compile_with(text, known)
            .map_err(|e| ConfigError::at(e.to_string(), line.location()))
    };
    let source = compile(&directive.args[0], directive)?;
    let name = new_variable(directive, &directive.args[1], known)?;
    let mut map = MapDef {
        name: name.to_string(),
        source,
        exact: Vec::new(),
        wildcards: Vec::new(),
        regexes: Vec::new(),
        default: None,
        hostnames: false,
        geo: None,
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
