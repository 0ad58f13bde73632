//! ngx_http_rewrite_module: `return`, at server or location level, and
//! `if (…) { return …; }` (conditions on variables).

use super::{not_yet, spec, Arity, Directive, Handler, Location, Server, Spec};
use crate::config::parse::ConfigError;
use crate::config::{Action, Condition, ConditionTest, IfReturn};
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
    not_yet("rewrite"),
    not_yet("rewrite_log"),
    not_yet("set"),
    not_yet("break"),
    not_yet("uninitialized_variable_warn"),
];

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

/// The `if (…) { return …; }` blocks of `block`, in order, up to its own
/// `return` (nginx stops at a `return`: any `if` after it is never
/// reached, and is only checked).
pub(super) fn if_returns(
    block: &[Directive],
    maps: &[String],
) -> Result<Vec<IfReturn>, ConfigError> {
    let mut ifs = Vec::new();
    let mut reachable = true;
    for directive in block {
        match directive.name.as_str() {
            "return" => reachable = false,
            "if" => {
                let parsed = if_return(directive, maps)?;
                if let (true, Some(parsed)) = (reachable, parsed) {
                    ifs.push(parsed);
                }
            }
            _ => {}
        }
    }
    Ok(ifs)
}

/// One `if`: its condition and the `return` inside (`None` for an empty
/// block, which does nothing).
fn if_return(directive: &Directive, maps: &[String]) -> Result<Option<IfReturn>, ConfigError> {
    let condition = condition(directive, maps)?;
    let inner = directive.block.as_deref().unwrap_or_default();
    for line in inner {
        if line.name != "return" {
            return Err(ConfigError::at(
                format!(
                    "\"{}\" inside \"if\" is not supported yet (only \"return\" is)",
                    line.name
                ),
                line.location(),
            ));
        }
        if line.block.is_some() || !(1..=2).contains(&line.args.len()) {
            return Err(ConfigError::at(
                "invalid number of arguments in \"return\" directive",
                line.location(),
            ));
        }
    }
    match inner.first() {
        None => Ok(None),
        Some(line) => Ok(Some(IfReturn {
            condition,
            action: return_action(line, maps)?,
        })),
    }
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
        [name] if name.starts_with('-') || name.starts_with("!-") => {
            return Err(file_test(directive))
        }
        [op, _] if op.starts_with('-') || op.starts_with("!-") => return Err(file_test(directive)),
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

fn file_test(directive: &Directive) -> ConfigError {
    ConfigError::at(
        "file tests in \"if\" (-f, -d, -e, -x) are not supported yet",
        directive.location(),
    )
}
