//! ngx_http_rewrite_module: `return`, `rewrite`, `break` and `if` (with
//! those three inside; conditions on variables), at server or location
//! level, read into a script (`crate::config::rewrite`) in file order.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{
    flag, on_off, spec, Arity, Directive, Handler, Inherited, Location, Server, Spec, HSL,
};
use crate::config::parse::ConfigError;
use crate::config::{
    Action, Condition, ConditionTest, Config, FileTest, Rewrite, RewriteFlag, ScriptStep,
};
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "if",
        &[Server, Location],
        Arity::AtLeast(1),
        Handler::Structure,
    )
    .block()
    .repeatable(),
    spec(
        "return",
        &[Server, Location],
        Arity::Between(1, 2),
        Handler::Structure,
    ),
    spec(
        "rewrite",
        &[Server, Location],
        Arity::Between(2, 3),
        Handler::Structure,
    )
    .repeatable(),
    spec(
        "break",
        &[Server, Location],
        Arity::Exactly(0),
        Handler::Structure,
    )
    .repeatable(),
    spec(
        "rewrite_log",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(rewrite_log),
    ),
    spec(
        "uninitialized_variable_warn",
        HSL,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "a variable no `set` reached is empty, and ferry logs no warning for it \
                  (nginx warns by default)",
        },
    ),
    spec(
        "set",
        &[Server, Location],
        Arity::Exactly(2),
        Handler::Structure,
    )
    .repeatable(),
];

fn rewrite_log(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.rewrite_log = Some(flag(d)?);
    Ok(())
}

/// `return CODE [TEXT]`, `return CODE URL` or `return URL` (302).
pub(super) fn return_action(directive: &Directive, maps: &[String]) -> Result<Action, ConfigError> {
    let args = &directive.args;
    let template = |text: &String| -> Result<Option<Template>, ConfigError> {
        if !text.contains('$') {
            return Ok(None);
        }
        Template::compile_with(text, maps)
            .map(Some)
            .map_err(|e| ConfigError::at(e.to_string(), directive.location()))
    };
    let is_url = |text: &str| text.starts_with("http://") || text.starts_with("https://");
    match args.as_slice() {
        [url] if is_url(url) => Ok(Action::Return {
            status: 302,
            text: Some(url.clone()),
            template: template(url)?,
        }),
        [code, rest @ ..] => {
            let status: u16 = code.parse().ok().filter(|s| *s <= 999).ok_or_else(|| {
                ConfigError::at(
                    format!("invalid return code \"{code}\""),
                    directive.location(),
                )
            })?;
            Ok(Action::Return {
                status,
                text: rest.first().cloned(),
                template: rest.first().map(template).transpose()?.flatten(),
            })
        }
        [] => Err(ConfigError::at(
            "invalid number of arguments in \"return\" directive",
            directive.location(),
        )),
    }
}

/// The rewrite-module lines of `block` (a server or location), in order,
/// up to its own `return` (nginx stops there: what follows is never
/// reached, and is only checked).
/// `in_location`: a location's lines (an `if` there may hold `add_header`,
/// as nginx's "if in location" context allows), else a server's.
pub(super) fn script(
    block: &[Directive],
    config: &Config,
    in_location: bool,
) -> Result<Vec<ScriptStep>, ConfigError> {
    let maps = &config.map_names;
    let mut steps = Vec::new();
    let mut reachable = true;
    for directive in block {
        let step = match directive.name.as_str() {
            "return" => {
                reachable = false;
                continue;
            }
            "if" => if_block(directive, config, in_location)?,
            "rewrite" => Some(rewrite(directive, maps)?),
            "set" => Some(set(directive, config)?),
            "break" => Some(ScriptStep::Break),
            _ => continue,
        };
        if let (true, Some(step)) = (reachable, step) {
            steps.push(step);
        }
    }
    Ok(steps)
}

/// One `if`: its condition and the lines inside (`None` for an empty
/// block, which does nothing).
fn if_block(
    directive: &Directive,
    config: &Config,
    in_location: bool,
) -> Result<Option<ScriptStep>, ConfigError> {
    let maps = &config.map_names;
    let condition = condition(directive, maps)?;
    let inner = directive.block.as_deref().unwrap_or_default();
    let mut steps = Vec::new();
    let mut headers = Vec::new();
    for line in inner {
        let step = match line.name.as_str() {
            "add_header" if !in_location => {
                return Err(ConfigError::at(
                    "\"add_header\" directive is not allowed here",
                    line.location(),
                ))
            }
            "add_header" if (2..=3).contains(&line.args.len()) => {
                headers.push(super::headers::add_header_line(line, config)?);
                continue;
            }
            "return" => {
                if line.block.is_some() || !(1..=2).contains(&line.args.len()) {
                    return Err(ConfigError::at(
                        "invalid number of arguments in \"return\" directive",
                        line.location(),
                    ));
                }
                ScriptStep::Return(return_action(line, maps)?)
            }
            "rewrite" if (2..=3).contains(&line.args.len()) => rewrite(line, maps)?,
            "break" if line.args.is_empty() => ScriptStep::Break,
            "set" if line.args.len() == 2 => set(line, config)?,
            "rewrite" | "break" | "set" | "add_header" => {
                return Err(ConfigError::at(
                    format!("invalid number of arguments in \"{}\" directive", line.name),
                    line.location(),
                ))
            }
            other => {
                return Err(ConfigError::at(
                    format!(
                        "\"{other}\" inside \"if\" is not supported yet \
                         (\"return\", \"rewrite\", \"break\", \"set\" and \"add_header\" are)"
                    ),
                    line.location(),
                ))
            }
        };
        steps.push(step);
    }
    if steps.is_empty() && headers.is_empty() {
        return Ok(None);
    }
    Ok(Some(ScriptStep::If {
        condition,
        steps,
        headers: (!headers.is_empty()).then_some(headers),
    }))
}

/// The variables `set` defines anywhere in the http block, appended to the
/// configuration's variable names after the maps' (so every template can
/// name them), each once, with nginx's checks.
pub(super) fn set_names(block: &[Directive], config: &mut Config) -> Result<(), ConfigError> {
    for directive in block {
        if directive.name == "set" && directive.args.len() == 2 {
            let name = variable_name(directive)?;
            let builtin = crate::variables::Variable::is_builtin(name)
                && !crate::variables::Variable::is_settable(name);
            if builtin || config.maps.iter().any(|map| map.name == name) {
                return Err(ConfigError::at(
                    format!("the duplicate \"{name}\" variable"),
                    directive.location(),
                ));
            }
            if !config.map_names.iter().any(|known| known == name) {
                config.map_names.push(name.to_string());
            }
        }
        if let Some(inner) = &directive.block {
            set_names(inner, config)?;
        }
    }
    Ok(())
}

/// `set $NAME VALUE`'s name, without `$`.
fn variable_name(directive: &Directive) -> Result<&str, ConfigError> {
    let text = &directive.args[0];
    let name = text.strip_prefix('$').unwrap_or_default();
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(ConfigError::at(
            format!("invalid variable name \"{text}\""),
            directive.location(),
        ));
    }
    Ok(name)
}

/// `set $NAME VALUE`.
fn set(directive: &Directive, config: &Config) -> Result<ScriptStep, ConfigError> {
    let name = variable_name(directive)?;
    let position = config
        .map_names
        .iter()
        .position(|known| known == name)
        .unwrap_or(config.maps.len());
    let value = Template::compile_with(&directive.args[1], &config.map_names)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
    Ok(ScriptStep::Set {
        index: position.saturating_sub(config.maps.len()),
        value,
    })
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]`.
fn rewrite(directive: &Directive, maps: &[String]) -> Result<ScriptStep, ConfigError> {
    let args = &directive.args;
    let pattern = &args[0];
    let regex = regex_lite::Regex::new(pattern).map_err(|e| {
        ConfigError::at(
            format!("invalid regular expression \"{pattern}\": {e}"),
            directive.location(),
        )
    })?;
    let flag = match args.get(2).map(String::as_str) {
        None => RewriteFlag::Continue,
        Some("last") => RewriteFlag::Last,
        Some("break") => RewriteFlag::Break,
        Some("redirect") => RewriteFlag::Redirect,
        Some("permanent") => RewriteFlag::Permanent,
        Some(other) => {
            return Err(ConfigError::at(
                format!("invalid parameter \"{other}\""),
                directive.location(),
            ))
        }
    };
    // `$scheme…` is a redirect, as `http://…` is (decided when rendered).
    let to_url = args[1].starts_with("$scheme");
    let replacement = Template::compile_with(&args[1], maps)
        .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
    let flag = match flag {
        RewriteFlag::Continue | RewriteFlag::Last | RewriteFlag::Break if to_url => {
            RewriteFlag::Redirect
        }
        flag => flag,
    };
    Ok(ScriptStep::Rewrite(Rewrite {
        regex,
        pattern: pattern.clone(),
        replacement,
        flag,
    }))
}

/// `($var)`, `($var = TEXT)`, `($var != TEXT)`, `($var ~ RE)` (and `~*`,
/// `!~`, `!~*`), with the parentheses as nginx reads them: on the first
/// and last words, or words of their own.
fn condition(directive: &Directive, maps: &[String]) -> Result<Condition, ConfigError> {
    let invalid = || {
        ConfigError::at(
            format!("invalid condition \"{}\"", directive.args.join(" ")),
            directive.location(),
        )
    };
    let mut words: Vec<&str> = directive.args.iter().map(String::as_str).collect();
    let first = words.first().copied().ok_or_else(invalid)?;
    let opened = first.strip_prefix('(').ok_or_else(invalid)?;
    if opened.is_empty() {
        words.remove(0);
    } else if let Some(word) = words.first_mut() {
        *word = opened;
    }
    let last = words.last().copied().ok_or_else(invalid)?;
    let closed = last.strip_suffix(')').ok_or_else(invalid)?;
    if closed.is_empty() {
        words.pop();
    } else if let Some(word) = words.last_mut() {
        *word = closed;
    }
    let variable = |name: &str| -> Result<Template, ConfigError> {
        let is_one_variable = name.starts_with('$')
            && name[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_one_variable || name.len() < 2 {
            return Err(invalid());
        }
        Template::compile_with(name, maps)
            .map_err(|e| ConfigError::at(e.to_string(), directive.location()))
    };
    let regex = |pattern: &str, caseless: bool| {
        let pattern = if caseless {
            format!("(?i){pattern}")
        } else {
            pattern.to_string()
        };
        regex_lite::Regex::new(&pattern).map_err(|e| {
            ConfigError::at(
                format!("invalid regular expression \"{pattern}\": {e}"),
                directive.location(),
            )
        })
    };
    let test = match words.as_slice() {
        [op, operand] if op.starts_with('-') || op.starts_with("!-") => {
            let (holding, test) = match op.strip_prefix('!') {
                Some(test) => (false, test),
                None => (true, *op),
            };
            let test = match test {
                "-f" => FileTest::File,
                "-d" => FileTest::Directory,
                "-e" => FileTest::Exists,
                "-x" => FileTest::Executable,
                _ => return Err(invalid()),
            };
            let path = Template::compile_with(operand, maps)
                .map_err(|e| ConfigError::at(e.to_string(), directive.location()))?;
            return Ok(Condition {
                variable: path,
                test: ConditionTest::File(test, holding),
            });
        }
        [name] if name.starts_with('-') || name.starts_with("!-") => return Err(invalid()),
        [name] => {
            return Ok(Condition {
                variable: variable(name)?,
                test: ConditionTest::True,
            })
        }
        [name, "=", value] => (name, ConditionTest::Equals(value.to_string(), true)),
        [name, "!=", value] => (name, ConditionTest::Equals(value.to_string(), false)),
        [name, "~", pattern] => (name, ConditionTest::Matches(regex(pattern, false)?, true)),
        [name, "~*", pattern] => (name, ConditionTest::Matches(regex(pattern, true)?, true)),
        [name, "!~", pattern] => (name, ConditionTest::Matches(regex(pattern, false)?, false)),
        [name, "!~*", pattern] => (name, ConditionTest::Matches(regex(pattern, true)?, false)),
        _ => return Err(invalid()),
    };
    if test.1.has_variables() {
        return Err(ConfigError::at(
            "variables on the right of an \"if\" condition are not supported yet",
            directive.location(),
        ));
    }
    Ok(Condition {
        variable: variable(test.0)?,
        test: test.1,
    })
}
