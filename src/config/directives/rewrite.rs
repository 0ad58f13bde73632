//! ngx_http_rewrite_module: `return`, at server or location level.

use super::{not_yet, spec, Arity, Directive, Handler, Location, Server, Spec};
use crate::config::parse::ConfigError;
use crate::config::Action;
use crate::variables::Template;

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "return",
        &[Server, Location],
        Arity::Between(1, 2),
        Handler::Structure,
    ),
    not_yet("rewrite"),
    not_yet("rewrite_log"),
    not_yet("set"),
    not_yet("if"),
    not_yet("break"),
    not_yet("uninitialized_variable_warn"),
];

/// `return CODE [TEXT]`, `return CODE URL` or `return URL` (302).
pub(super) fn return_action(directive: &Directive) -> Result<Action, ConfigError> {
    let args = &directive.args;
    let template = |text: &String| -> Result<Option<Template>, ConfigError> {
        if !text.contains('$') {
            return Ok(None);
        }
        Template::compile(text)
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
