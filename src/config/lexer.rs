//! nginx.conf tokens with their line numbers.
//!
//! The rules are nginx's (`ngx_conf_read_token`): tokens are separated by
//! whitespace; `;`, `{` and `}` end a token and are tokens themselves; `#`
//! at the start of a token comments out the rest of the line; single or
//! double quotes make one token of what they enclose, with `\"`, `\'`, `\\`,
//! `\n`, `\r` and `\t` escapes; outside quotes a backslash keeps the next
//! character in the word, and is itself kept unless it escapes a quote, a
//! backslash or `t`, `r`, `n` (so `\.` and `\d` reach the regex engine). `$variables` are ordinary word characters here: they are
//! compiled later, by whoever reads the value.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A word or a quoted string, unescaped.
    Word {
        text: String,
        quoted: bool,
    },
    Semicolon,
    OpenBrace,
    CloseBrace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: u32,
}

/// A lexical error, with the line it was found on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub message: String,
    pub line: u32,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Vec::new();
    let mut chars = source.chars().peekable();
    let mut line = 1u32;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                chars.next();
                let kind = match c {
                    ';' => TokenKind::Semicolon,
                    '{' => TokenKind::OpenBrace,
                    _ => TokenKind::CloseBrace,
                };
                tokens.push(Token { kind, line });
            }
            '"' | '\'' => {
                let quote = c;
                let start_line = line;
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(LexError {
                                message: "unexpected end of file, expecting closing quote".into(),
                                line: start_line,
                            })
                        }
                        Some('\\') => match chars.next() {
                            Some('n') => text.push('\n'),
                            Some('r') => text.push('\r'),
                            Some('t') => text.push('\t'),
                            Some(c) if c == quote || c == '\\' => text.push(c),
                            Some(c) => {
                                // nginx keeps unknown escapes as written.
                                text.push('\\');
                                if c == '\n' {
                                    line += 1;
                                }
                                text.push(c);
                            }
                            None => {
                                return Err(LexError {
                                    message: "unexpected end of file, expecting closing quote"
                                        .into(),
                                    line: start_line,
                                })
                            }
                        },
                        Some(c) if c == quote => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            text.push(c);
                        }
                    }
                }
                // nginx requires a separator after a closing quote; `)`
                // ends an `if` condition (`if ($m = "POST")`) and starts a
                // word of its own.
                if let Some(&next) = chars.peek() {
                    if !(next.is_whitespace()
                        || next == ';'
                        || next == '{'
                        || next == '}'
                        || next == ')')
                    {
                        return Err(LexError {
                            message: format!("unexpected \"{next}\""),
                            line,
                        });
                    }
                }
                tokens.push(Token {
                    kind: TokenKind::Word { text, quoted: true },
                    line: start_line,
                });
            }
            _ => {
                let mut text = String::new();
                let mut in_variable_braces = false;
                while let Some(&c) = chars.peek() {
                    // `${name}` braces belong to the word, as in nginx.
                    if c == '{' && text.ends_with('$') {
                        in_variable_braces = true;
                    } else if c == '}' && in_variable_braces {
                        in_variable_braces = false;
                    } else if c.is_whitespace() || c == ';' || c == '{' || c == '}' {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        // nginx: the next character never ends the word;
                        // `\"`, `\'`, `\\` lose the backslash, `\t`, `\r`,
                        // `\n` are control characters, and any other keeps
                        // it (`\.` and `\d` stay regex escapes).
                        if let Some(escaped) = chars.next() {
                            match escaped {
                                '"' | '\'' | '\\' => text.push(escaped),
                                't' => text.push('\t'),
                                'r' => text.push('\r'),
                                'n' => text.push('\n'),
                                other => {
                                    if other == '\n' {
                                        line += 1;
                                    }
                                    text.push('\\');
                                    text.push(other);
                                }
                            }
                        }
                        continue;
                    }
                    text.push(c);
                }
                tokens.push(Token {
                    kind: TokenKind::Word {
                        text,
                        quoted: false,
                    },
                    line,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(source: &str) -> Vec<String> {
        tokenize(source)
            .unwrap()
            .into_iter()
            .map(|t| match t.kind {
                TokenKind::Word { text, .. } => text,
                TokenKind::Semicolon => ";".into(),
                TokenKind::OpenBrace => "{".into(),
                TokenKind::CloseBrace => "}".into(),
            })
            .collect()
    }

    #[test]
    fn directives_blocks_and_comments() {
        assert_eq!(
            words("http { # comment ; {\n  listen 80;}"),
            ["http", "{", "listen", "80", ";", "}"]
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            words(r#"a "b c" 'd\'e' "f\"g\\h\n";"#),
            ["a", "b c", "d'e", "f\"g\\h\n", ";"]
        );
        assert_eq!(words(r#"set "" x;"#), ["set", "", "x", ";"]);
        // As nginx's ngx_conf_read_token: the escaped space stays in the
        // word with its backslash; regex escapes are kept for the regex.
        assert_eq!(words(r"a b\ c;"), ["a", r"b\ c", ";"]);
        assert_eq!(
            words(r"location ~ \.php$ ^/b/(\d+)$ a\\b a\tb;"),
            [
                "location",
                "~",
                r"\.php$",
                r"^/b/(\d+)$",
                r"a\b",
                "a\tb",
                ";"
            ]
        );
        assert_eq!(
            words("log $remote_addr ${host}x;"),
            ["log", "$remote_addr", "${host}x", ";"]
        );
    }

    #[test]
    fn lines_are_counted() {
        let tokens = tokenize("a;\n\n\"multi\nline\" b;\nc;").unwrap();
        let lines: Vec<u32> = tokens.iter().map(|t| t.line).collect();
        assert_eq!(lines, [1, 1, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn errors() {
        assert_eq!(tokenize("a \"open;").unwrap_err().line, 1);
        assert!(tokenize("a \"x\"y;")
            .unwrap_err()
            .message
            .contains("unexpected \"y\""));
    }
}
