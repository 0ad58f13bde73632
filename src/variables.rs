//! nginx variables (`$remote_addr`, `$http_user_agent`, …) compiled at load
//! time into a [`Template`] of literal and variable segments, so a request
//! never scans strings for `$` at run time.
//!
//! Rendering borrows everything from the request being handled
//! ([`RequestView`]) and appends to a caller's buffer: no allocation.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;

use crate::upstream::balancer::Crc32;

/// The request-time variables ferry knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variable {
    RemoteAddr,
    RemotePort,
    /// The request-target as sent (`$request_uri`).
    RequestUri,
    /// The path, without the query (`$uri`).
    Uri,
    /// The query, without `?` (`$args`, `$query_string`).
    Args,
    /// `Host` without port, lower-cased, else the server name (`$host`).
    Host,
    RequestMethod,
    Scheme,
    /// A request field by name (`$http_user_agent`: `User-Agent`).
    Http(String),
    /// A query argument by name (`$arg_id`).
    Arg(String),
}

impl Variable {
    fn from_name(name: &str) -> Option<Variable> {
        Some(match name {
            "remote_addr" | "binary_remote_addr" => Variable::RemoteAddr,
            "remote_port" => Variable::RemotePort,
            "request_uri" => Variable::RequestUri,
            "uri" | "document_uri" => Variable::Uri,
            "args" | "query_string" => Variable::Args,
            "host" => Variable::Host,
            "request_method" => Variable::RequestMethod,
            "scheme" => Variable::Scheme,
            _ => {
                if let Some(field) = name.strip_prefix("http_") {
                    Variable::Http(field.replace('_', "-"))
                } else if let Some(arg) = name.strip_prefix("arg_") {
                    Variable::Arg(arg.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(Variable),
}

/// A compiled value with variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a value could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What rendering needs from the request being handled.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub client: SocketAddr,
}

impl RequestView<'_> {
    fn field(&self, name: &str) -> &[u8] {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map_or(&b""[..], |h| h.value)
    }
}

impl Template {
    /// Compiles `text`: `$name` and `${name}` are variables, the rest is
    /// literal. An unknown variable is an error, as in nginx.
    pub fn compile(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or_else(|| {
                    TemplateError(format!(
                        "the closing bracket in \"{text}\" variable is missing"
                    ))
                })?;
                (&braced[..end], end + 2)
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                return Err(TemplateError(format!(
                    "invalid variable name in \"{text}\""
                )));
            }
            let variable = Variable::from_name(name)
                .ok_or_else(|| TemplateError(format!("unknown \"{name}\" variable")))?;
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Variable(variable));
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// Appends the value for `request` to `out`.
    pub fn render(&self, request: &RequestView<'_>, out: &mut Vec<u8>) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Variable(variable) => render_variable(variable, request, out),
            }
        }
    }

    /// CRC32 of the value, for `hash KEY`, computed without building it.
    pub fn hash(&self, request: &RequestView<'_>) -> u32 {
        let mut crc = Crc32::new();
        let mut scratch = [0u8; 64];
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => crc.update(text.as_bytes()),
                Segment::Variable(variable) => match variable {
                    Variable::RemoteAddr | Variable::RemotePort => {
                        let mut cursor = std::io::Cursor::new(&mut scratch[..]);
                        let _ = match variable {
                            Variable::RemoteAddr => write!(cursor, "{}", request.client.ip()),
                            _ => write!(cursor, "{}", request.client.port()),
                        };
                        let len = usize::try_from(cursor.position()).unwrap_or(0);
                        crc.update(scratch.get(..len).unwrap_or_default());
                    }
                    other => crc.update(borrowed_value(other, request)),
                },
            }
        }
        crc.finish()
    }
}

/// Variables whose value is a slice of the request.
fn borrowed_value<'a>(variable: &Variable, request: &'a RequestView<'_>) -> &'a [u8] {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (request.target, ""),
    };
    match variable {
        Variable::RequestUri => request.target.as_bytes(),
        Variable::Uri => path.as_bytes(),
        Variable::Args => query.as_bytes(),
        Variable::RequestMethod => request.method.as_bytes(),
        Variable::Scheme => b"http",
        Variable::Host => {
            let host = request.field("host");
            match host.iter().rposition(|&b| b == b':') {
                Some(colon) if host.first() != Some(&b'[') => &host[..colon],
                _ => host,
            }
        }
        Variable::Http(name) => request.field(name),
        Variable::Arg(name) => query
            .split('&')
            .find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == name).then_some(value.as_bytes())
            })
            .unwrap_or_default(),
        Variable::RemoteAddr | Variable::RemotePort => b"",
    }
}

fn render_variable(variable: &Variable, request: &RequestView<'_>, out: &mut Vec<u8>) {
    match variable {
        Variable::RemoteAddr => {
            let _ = write!(out, "{}", request.client.ip());
        }
        Variable::RemotePort => {
            let _ = write!(out, "{}", request.client.port());
        }
        Variable::Host => {
            let host = borrowed_value(variable, request);
            out.extend(host.iter().map(u8::to_ascii_lowercase));
        }
        other => out.extend_from_slice(borrowed_value(other, request)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(headers: &'a [httparse::Header<'a>]) -> RequestView<'a> {
        RequestView {
            method: "GET",
            target: "/p/a?id=7&x=y",
            headers,
            client: "192.0.2.9:5555".parse().unwrap(),
        }
    }

    #[test]
    fn compiles_and_renders() {
        let headers = [
            httparse::Header {
                name: "Host",
                value: b"Example.com:8080",
            },
            httparse::Header {
                name: "User-Agent",
                value: b"curl",
            },
        ];
        let template =
            Template::compile("$remote_addr:$remote_port $request_method ${uri}?$args $host $http_user_agent id=$arg_id")
                .unwrap();
        let mut out = Vec::new();
        template.render(&view(&headers), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.9:5555 GET /p/a?id=7&x=y example.com curl id=7"
        );
    }

    #[test]
    fn hash_matches_the_rendered_value() {
        let headers = [httparse::Header {
            name: "Host",
            value: b"h",
        }];
        let template = Template::compile("$remote_addr$request_uri").unwrap();
        let mut out = Vec::new();
        template.render(&view(&headers), &mut out);
        let mut crc = Crc32::new();
        crc.update(&out);
        assert_eq!(template.hash(&view(&headers)), crc.finish());
    }

    #[test]
    fn unknown_variables_are_errors() {
        assert_eq!(
            Template::compile("$nope").unwrap_err().0,
            "unknown \"nope\" variable"
        );
        assert!(Template::compile("${uri").is_err());
        assert!(Template::compile("a$").is_err());
    }
}
