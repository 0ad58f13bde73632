//! Tokens -> a tree of directives, with `include` expanded in place.
//!
//! This stage knows nginx.conf's *syntax* only: `name args… ;` or
//! `name args… { … }`. Whether a directive exists, where it may appear and
//! what its arguments mean is decided by `config::directives`. Every
//! directive keeps the file and line it came from, for error messages that
//! read like nginx's: `unknown directive "gzip" in ferry.conf:12`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{tokenize, Token, TokenKind};

/// Includes nested deeper than this are a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Clone, Debug)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// `Some` for block directives (`http { … }`), even when empty.
    pub block: Option<Vec<Directive>>,
    pub file: Arc<Path>,
    pub line: u32,
}

impl Directive {
    /// `file:line`, as nginx prints locations.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            line: self.line,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: u32,
}

/// A configuration error: what, and where (nginx's `… in file:line`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
    pub location: Option<Location>,
}

impl ConfigError {
    pub fn at(message: impl Into<String>, location: Location) -> ConfigError {
        ConfigError {
            message: message.into(),
            location: Some(location),
        }
    }

    pub fn nowhere(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(
                f,
                "{} in {}:{}",
                self.message,
                location.file.display(),
                location.line
            ),
            None => f.write_str(&self.message),
        }
    }
}

/// Every file read, in order, for `ferry -T`.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Reads `path` and the files it includes.
pub fn parse_file(path: &Path) -> Result<(Vec<Directive>, Vec<SourceFile>), ConfigError> {
    let mut files = Vec::new();
    let directives = parse_included(path, path, &mut files, 0, None)?;
    Ok((directives, files))
}

/// Parses configuration text that has no file of its own (the embedded
/// default), naming it `name` in messages.
pub fn parse_text(
    name: &str,
    text: &str,
) -> Result<(Vec<Directive>, Vec<SourceFile>), ConfigError> {
    let mut files = vec![SourceFile {
        path: PathBuf::from(name),
        text: text.to_string(),
    }];
    let file: Arc<Path> = Arc::from(Path::new(name));
    let directives = parse_source(text, &file, Path::new(name), &mut files, 0)?;
    Ok((directives, files))
}

fn parse_included(
    path: &Path,
    root: &Path,
    files: &mut Vec<SourceFile>,
    depth: usize,
    included_from: Option<Location>,
) -> Result<Vec<Directive>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        message: format!("open() \"{}\" failed ({e})", path.display()),
        location: included_from.clone(),
    })?;
    files.push(SourceFile {
        path: path.to_path_buf(),
        text: text.clone(),
    });
    let file: Arc<Path> = Arc::from(path);
    parse_source(&text, &file, root, files, depth)
}

fn parse_source(
    text: &str,
    file: &Arc<Path>,
    root: &Path,
    files: &mut Vec<SourceFile>,
    depth: usize,
) -> Result<Vec<Directive>, ConfigError> {
    let tokens = tokenize(text).map_err(|e| {
        ConfigError::at(
            e.message,
            Location {
                file: file.clone(),
                line: e.line,
            },
        )
    })?;
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        file,
        root,
        files,
        depth,
    };
    let directives = parser.block(false)?;
    Ok(directives)
}

struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    file: &'a Arc<Path>,
    /// The main configuration file: includes are relative to its directory.
    root: &'a Path,
    files: &'a mut Vec<SourceFile>,
    depth: usize,
}

impl Parser<'_> {
    fn location(&self, line: u32) -> Location {
        Location {
            file: self.file.clone(),
            line,
        }
    }

    fn last_line(&self) -> u32 {
        self.tokens.last().map_or(1, |t| t.line)
    }

    /// Directives up to the end of the file (`inside_block` false) or the
    /// closing brace (`inside_block` true).
    fn block(&mut self, inside_block: bool) -> Result<Vec<Directive>, ConfigError> {
        let mut directives = Vec::new();
        loop {
            let Some(token) = self.tokens.get(self.position) else {
                if inside_block {
                    return Err(ConfigError::at(
                        "unexpected end of file, expecting \"}\"",
                        self.location(self.last_line()),
                    ));
                }
                return Ok(directives);
            };
            self.position += 1;
            let (name, line) = match &token.kind {
                TokenKind::Word { text, .. } => (text.clone(), token.line),
                TokenKind::CloseBrace if inside_block => return Ok(directives),
                TokenKind::CloseBrace => {
                    return Err(ConfigError::at(
                        "unexpected \"}\"",
                        self.location(token.line),
                    ))
                }
                TokenKind::Semicolon => {
                    return Err(ConfigError::at(
                        "unexpected \";\"",
                        self.location(token.line),
                    ))
                }
                TokenKind::OpenBrace => {
                    return Err(ConfigError::at(
                        "unexpected \"{\"",
                        self.location(token.line),
                    ))
                }
            };
            let mut args = Vec::new();
            let block = loop {
                let Some(token) = self.tokens.get(self.position) else {
                    return Err(ConfigError::at(
                        "unexpected end of file, expecting \";\" or \"}\"",
                        self.location(self.last_line()),
                    ));
                };
                self.position += 1;
                match &token.kind {
                    TokenKind::Word { text, .. } => args.push(text.clone()),
                    TokenKind::Semicolon => break None,
                    TokenKind::OpenBrace => break Some(self.block(true)?),
                    TokenKind::CloseBrace => {
                        return Err(ConfigError::at(
                            "unexpected \"}\"",
                            self.location(token.line),
                        ))
                    }
                }
            };
            let directive = Directive {
                name,
                args,
                block,
                file: self.file.clone(),
                line,
            };
            if directive.name == "include" && directive.block.is_none() {
                directives.extend(self.include(&directive)?);
            } else {
                directives.push(directive);
            }
        }
    }

    /// `include PATTERN;`: the files matching PATTERN, in sorted order,
    /// spliced in place. A relative PATTERN is relative to the main
    /// configuration file's directory, as nginx's conf prefix is.
    fn include(&mut self, directive: &Directive) -> Result<Vec<Directive>, ConfigError> {
        let [pattern] = directive.args.as_slice() else {
            return Err(ConfigError::at(
                "invalid number of arguments in \"include\" directive",
                directive.location(),
            ));
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::at(
                format!("\"include\" nested too deeply (a loop?) including \"{pattern}\""),
                directive.location(),
            ));
        }
        let base = self.root.parent().unwrap_or(Path::new("."));
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let paths = if pattern.contains(['*', '?', '[']) {
            glob(&full).map_err(|message| ConfigError::at(message, directive.location()))?
        } else {
            vec![full]
        };
        let mut included = Vec::new();
        for path in paths {
            included.extend(parse_included(
                &path,
                self.root,
                self.files,
                self.depth + 1,
                Some(directive.location()),
            )?);
        }
        Ok(included)
    }
}

/// Expands a glob in the last path component (`conf.d/*.conf`); sorted, as
/// nginx sorts its glob results. No match is not an error. Every name that
/// matches is included, as glob(3) gives it to nginx: a symbolic link (Debian's
/// `sites-enabled/*`) is followed when it is opened, and a dangling one or a
/// directory is an error there, as in nginx.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let directory = pattern.parent().unwrap_or(Path::new("."));
    let Some(file_pattern) = pattern.file_name().and_then(|name| name.to_str()) else {
        return Err(format!("invalid include pattern \"{}\"", pattern.display()));
    };
    if directory.to_string_lossy().contains(['*', '?', '[']) {
        return Err(format!(
            "wildcards are supported in the last path component only: \"{}\"",
            pattern.display()
        ));
    }
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(_) => return Ok(Vec::new()),
    };
    let mut matches: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Like glob(3), `*` does not match a leading dot.
            (!name.starts_with('.') || file_pattern.starts_with('.'))
                && wildcard_match(file_pattern, &name)
        })
        .map(|entry| entry.path())
        .collect();
    matches.sort();
    Ok(matches)
}

/// `*` (any run), `?` (one character) and `[abc]` / `[a-z]` sets.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    fn matches(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|skip| matches(&p[1..], &n[skip..])),
            Some('?') => !n.is_empty() && matches(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && matches(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let set = &p[1..close];
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit && matches(&p[close + 1..], &n[1..])
            }
            Some(&literal) => n.first() == Some(&literal) && matches(&p[1..], &n[1..]),
        }
    }
    matches(&pattern, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-parse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tree_with_blocks() {
        let (tree, _) =
            parse_text("t.conf", "events {}\nhttp {\n  server { listen 80; }\n}\n").unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "events");
        assert_eq!(tree[0].block.as_ref().map(Vec::len), Some(0));
        let server = &tree[1].block.as_ref().unwrap()[0];
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(
            (listen.name.as_str(), listen.args.as_slice(), listen.line),
            ("listen", &["80".to_string()][..], 3)
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            (
                "http {\n listen 80;\n",
                "unexpected end of file, expecting \"}\" in t.conf:2",
            ),
            (
                "listen 80\n",
                "unexpected end of file, expecting \";\" or \"}\" in t.conf:1",
            ),
            ("a;\n}\n", "unexpected \"}\" in t.conf:2"),
            ("a;\n;\n", "unexpected \";\" in t.conf:2"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_text("t.conf", text).unwrap_err().to_string(),
                expected
            );
        }
    }

    #[test]
    fn include_with_glob_is_relative_to_the_main_file() {
        let dir = temp_dir("glob");
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "b 2;\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "a 1;\n").unwrap();
        std::fs::write(dir.join("conf.d/skip.txt"), "nope;\n").unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "first;\ninclude conf.d/*.conf;\nlast;\n",
        )
        .unwrap();
        let (tree, files) = parse_file(&dir.join("main.conf")).unwrap();
        let names: Vec<&str> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["first", "a", "b", "last"]);
        assert_eq!(files.len(), 3);
        assert!(tree[1].file.ends_with("conf.d/a.conf"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn included_symbolic_links_are_followed() {
        // Debian's layout: sites-enabled/ links to sites-available/.
        let dir = temp_dir("symlink");
        std::fs::create_dir_all(dir.join("sites-available")).unwrap();
        std::fs::create_dir_all(dir.join("sites-enabled")).unwrap();
        std::fs::write(dir.join("sites-available/default"), "site 1;\n").unwrap();
        std::os::unix::fs::symlink(
            dir.join("sites-available/default"),
            dir.join("sites-enabled/default"),
        )
        .unwrap();
        std::fs::write(dir.join("main.conf"), "include sites-enabled/*;\n").unwrap();
        let (tree, _) = parse_file(&dir.join("main.conf")).unwrap();
        let names: Vec<&str> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["site"]);
        // A link to nothing is an error, as nginx's open() of it is.
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("sites-enabled/old")).unwrap();
        let error = parse_file(&dir.join("main.conf")).unwrap_err().to_string();
        assert!(error.contains("sites-enabled/old"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_include_and_loops_are_errors() {
        let dir = temp_dir("loop");
        std::fs::write(dir.join("main.conf"), "include missing.conf;\n").unwrap();
        let error = parse_file(&dir.join("main.conf")).unwrap_err().to_string();
        assert!(error.starts_with("open() \""), "{error}");
        assert!(error.ends_with("main.conf:1"), "{error}");
        std::fs::write(dir.join("loop.conf"), "include loop.conf;\n").unwrap();
        let error = parse_file(&dir.join("loop.conf")).unwrap_err().to_string();
        assert!(error.contains("nested too deeply"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(wildcard_match("site-?.conf", "site-1.conf"));
        assert!(wildcard_match("[a-c]*", "beta"));
        assert!(!wildcard_match("[a-c]*", "delta"));
    }
}
