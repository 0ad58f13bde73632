//! The rewrite module's scripts, as loaded: the `if`, `rewrite`, `break`
//! and `return` lines of a server or location in file order, their
//! conditions, and how a script runs against a request.
//!
//! A server's script runs before its location is chosen, a location's
//! after, as nginx's server-rewrite and rewrite phases do. Running one is
//! pure: it reads the request (and the uri rewritten so far) and says what
//! comes of it ([`ScriptOutcome`]); the router moves the request.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{Action, AddHeader};
use crate::variables::{RequestView, ScriptValues, SetValues, Template};

// Where each group of the last match lies (`$1`…`$9`): the variables'.
pub use crate::variables::{capture, CaptureSpans};

/// One line of a script.
#[derive(Clone, Debug)]
pub enum ScriptStep {
    /// `if (CONDITION) { … }`: its lines run when the condition holds.
    /// nginx makes the block a location of its own, which the request
    /// then stays in: its `add_header` lines, if it has any, replace the
    /// location's (see [`run`]).
    If {
        condition: Condition,
        steps: Vec<ScriptStep>,
        headers: Option<Vec<AddHeader>>,
    },
    /// `rewrite REGEX REPLACEMENT [FLAG]`.
    Rewrite(Rewrite),
    /// `return …` inside an `if` (a location's own `return` is its action).
    Return(Action),
    /// `break`: the script stops here.
    Break,
    /// `set $name VALUE`: variable `index` of those `set` defines.
    Set { index: usize, value: Template },
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]`.
#[derive(Clone, Debug)]
pub struct Rewrite {
    pub regex: regex_lite::Regex,
    /// As written, for `rewrite_log`.
    pub pattern: String,
    /// `$1`…`$9` are the regex's captures.
    pub replacement: Template,
    pub flag: RewriteFlag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: the script goes on with the new uri; a location's then
    /// searches for a location again, as `last` does.
    Continue,
    Last,
    Break,
    /// 302 (also without a flag when the replacement starts with
    /// `http://`, `https://` or `$scheme`).
    Redirect,
    /// 301.
    Permanent,
}

/// An `if` condition: a variable, tested.
#[derive(Clone, Debug)]
pub struct Condition {
    pub variable: Template,
    pub test: ConditionTest,
}

#[derive(Clone, Debug)]
pub enum ConditionTest {
    /// `($var)`: neither empty nor `0`.
    True,
    /// `($var = TEXT)`, `($var != TEXT)`.
    Equals(String, bool),
    /// `($var ~ RE)`, `~*` (case-insensitive), `!~`, `!~*`.
    Matches(regex_lite::Regex, bool),
    /// `(-f PATH)`, `-d`, `-e`, `-x`, and `!-f`… (`false`): the value is a
    /// path, tested on the filesystem (symlinks followed).
    File(FileTest, bool),
}

/// What `-f`, `-d`, `-e` and `-x` ask of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTest {
    /// A regular file.
    File,
    Directory,
    /// A file, a directory or a symlink.
    Exists,
    /// An executable file.
    Executable,
}

impl FileTest {
    fn holds(self, path: &[u8]) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let path = crate::files::as_path(path);
        match self {
            FileTest::Exists => std::fs::symlink_metadata(path).is_ok(),
            FileTest::File => std::fs::metadata(path).is_ok_and(|m| m.is_file()),
            FileTest::Directory => std::fs::metadata(path).is_ok_and(|m| m.is_dir()),
            FileTest::Executable => std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0),
        }
    }
}

impl ConditionTest {
    /// Whether the text side names a variable (not supported yet).
    pub fn has_variables(&self) -> bool {
        match self {
            ConditionTest::Equals(text, _) => text.contains('$'),
            _ => false,
        }
    }
}

impl Condition {
    /// Whether it holds for `request`; `scratch` receives the variable's
    /// value (a pooled buffer: no allocation).
    pub fn holds(
        &self,
        request: &RequestView<'_>,
        script: &ScriptValues<'_>,
        scratch: &mut Vec<u8>,
        captures: Option<(&mut Vec<u8>, &mut CaptureSpans)>,
    ) -> bool {
        scratch.clear();
        self.variable.render_in_script(request, script, scratch);
        let value = &scratch[..];
        match &self.test {
            ConditionTest::True => !value.is_empty() && value != b"0",
            ConditionTest::Equals(text, equal) => (value == text.as_bytes()) == *equal,
            ConditionTest::Matches(regex, matching) => {
                let text = std::str::from_utf8(value).unwrap_or("\u{fffd}");
                match captures {
                    // A match keeps its groups for the lines after it.
                    Some((captured, spans)) if *matching => capture(regex, text, captured, spans),
                    _ => regex.is_match(text) == *matching,
                }
            }
            ConditionTest::File(test, holding) => test.holds(value) == *holding,
        }
    }
}

/// What a script came to.
#[derive(Debug)]
pub enum ScriptOutcome<'c> {
    /// Nothing that changes the route.
    Done,
    /// A `return` (its text, if any, is rendered by the router).
    Return(&'c Action),
    /// `break` with the uri unchanged: the script ends, and so does the
    /// rewrite module (a location's own `return` is not reached).
    Stopped,
    /// `rewrite … redirect|permanent` (or to a URL): the status, the URL
    /// in `buffers.uri` with its arguments.
    Redirect(u16),
    /// The uri was rewritten (into `buffers.uri`, arguments apart in
    /// `buffers.args`): `again` to search for a location with it (`last`,
    /// or a location's rewrite without flag), else stay (`break`).
    Rewritten { again: bool },
}

/// Where a script writes.
pub struct ScriptBuffers<'b> {
    /// The uri rewritten so far (empty: not rewritten).
    pub uri: &'b mut Vec<u8>,
    /// The arguments after the rewrite (the request's, or new ones).
    pub args: &'b mut Vec<u8>,
    /// Whether `args` holds them yet (else the request's stand).
    pub args_set: &'b mut bool,
    /// For condition values and rendering.
    pub scratch: &'b mut Vec<u8>,
    /// The values of `set` variables, and where each lies.
    pub set_values: &'b mut Vec<u8>,
    pub set_spans: &'b mut Vec<(u32, u32)>,
    /// The text the last regex matched, and its groups (`$1`…`$9`).
    pub captured: &'b mut Vec<u8>,
    pub capture_spans: &'b mut CaptureSpans,
}

impl ScriptBuffers<'_> {
    /// What templates see inside the script: the last captures and the
    /// values set so far.
    fn values(&self) -> ScriptValues<'_> {
        ScriptValues {
            haystack: self.captured,
            captures: self.capture_spans,
            sets: SetValues {
                bytes: self.set_values,
                spans: self.set_spans,
            },
        }
    }

    /// `set`: variable `index` takes `value` (the latest bytes win; the
    /// buffer only grows within a request).
    fn set(&mut self, index: usize, value: &[u8]) {
        let start = u32::try_from(self.set_values.len()).unwrap_or(u32::MAX);
        self.set_values.extend_from_slice(value);
        let end = u32::try_from(self.set_values.len()).unwrap_or(u32::MAX);
        if self.set_spans.len() <= index {
            self.set_spans.resize(index + 1, (0, 0));
        }
        if let Some(span) = self.set_spans.get_mut(index) {
            *span = (start, end);
        }
    }
}

/// Runs `steps` for `request`; `log` for `rewrite_log on`.
///
/// `if_headers` becomes the `add_header` lines of the last `if` block that
/// held and has its own: the request is in that block from then on.
pub fn run<'c>(
    steps: &'c [ScriptStep],
    request: &RequestView<'_>,
    buffers: &mut ScriptBuffers<'_>,
    log: bool,
    if_headers: &mut Option<&'c [AddHeader]>,
) -> ScriptOutcome<'c> {
    let mut rewritten = false;
    match run_steps(steps, request, buffers, log, &mut rewritten, if_headers) {
        Flow::Stop(outcome) => outcome,
        // `break` after a rewrite keeps the location (nginx's break code
        // clears `uri_changed`).
        Flow::Break if rewritten => ScriptOutcome::Rewritten { again: false },
        Flow::Break => ScriptOutcome::Stopped,
        Flow::Next if rewritten => ScriptOutcome::Rewritten { again: true },
        Flow::Next => ScriptOutcome::Done,
    }
}

enum Flow<'c> {
    Next,
    Break,
    Stop(ScriptOutcome<'c>),
}

fn run_steps<'c>(
    steps: &'c [ScriptStep],
    request: &RequestView<'_>,
    buffers: &mut ScriptBuffers<'_>,
    log: bool,
    rewritten: &mut bool,
    if_headers: &mut Option<&'c [AddHeader]>,
) -> Flow<'c> {
    for step in steps {
        match step {
            ScriptStep::Set { index, value } => {
                let mut rendered = std::mem::take(buffers.scratch);
                rendered.clear();
                value.render_in_script(request, &buffers.values(), &mut rendered);
                buffers.set(*index, &rendered);
                *buffers.scratch = rendered;
            }
            ScriptStep::If {
                condition,
                steps,
                headers,
            } => {
                let mut scratch = std::mem::take(buffers.scratch);
                let mut captured = std::mem::take(buffers.captured);
                let mut spans = std::mem::take(buffers.capture_spans);
                let holds = condition.holds(
                    request,
                    &buffers.values(),
                    &mut scratch,
                    Some((&mut captured, &mut spans)),
                );
                *buffers.scratch = scratch;
                *buffers.captured = captured;
                *buffers.capture_spans = spans;
                if holds {
                    if let Some(headers) = headers {
                        *if_headers = Some(headers);
                    }
                    match run_steps(steps, request, buffers, log, rewritten, if_headers) {
                        Flow::Next => {}
                        other => return other,
                    }
                }
            }
            ScriptStep::Return(action) => return Flow::Stop(ScriptOutcome::Return(action)),
            ScriptStep::Break => return Flow::Break,
            ScriptStep::Rewrite(rule) => {
                if let Some(flow) = apply(rule, request, buffers, log, rewritten) {
                    return flow;
                }
            }
        }
    }
    Flow::Next
}

/// One `rewrite`: `None` if the script goes on.
fn apply<'c>(
    rule: &Rewrite,
    request: &RequestView<'_>,
    buffers: &mut ScriptBuffers<'_>,
    log: bool,
    rewritten: &mut bool,
) -> Option<Flow<'c>> {
    // The uri as rewritten so far, else the request's.
    let current: &[u8] = if *rewritten { buffers.uri } else { request.uri };
    let text = std::str::from_utf8(current).ok()?;
    let mut captured = std::mem::take(buffers.captured);
    let mut spans = std::mem::take(buffers.capture_spans);
    let matched = capture(&rule.regex, text, &mut captured, &mut spans);
    if log && matched {
        log::info!("\"{}\" matches \"{text}\"", rule.pattern);
    }
    *buffers.captured = captured;
    *buffers.capture_spans = spans;
    if !matched {
        return None;
    }
    let mut rendered = std::mem::take(buffers.scratch);
    rendered.clear();
    rule.replacement
        .render_in_script(request, &buffers.values(), &mut rendered);
    let scratch = &rendered;
    let redirect = matches!(rule.flag, RewriteFlag::Redirect | RewriteFlag::Permanent)
        || scratch.starts_with(b"http://")
        || scratch.starts_with(b"https://");
    // A replacement with `?` brings its own arguments; the request's follow
    // them unless it ends with `?`.
    let (uri_part, new_args, keep_old) = match scratch.iter().position(|&b| b == b'?') {
        Some(at) => (at, Some(at + 1), !scratch.ends_with(b"?")),
        None => (scratch.len(), None, true),
    };
    let old_args: &[u8] = if *buffers.args_set {
        buffers.args
    } else {
        request.args.unwrap_or_else(|| {
            request
                .target
                .split_once('?')
                .map_or(&b""[..], |(_, q)| q.as_bytes())
        })
    };
    let mut args = Vec::new();
    if let Some(start) = new_args {
        let own = scratch.get(start..).unwrap_or_default();
        args.extend_from_slice(own.strip_suffix(b"?").unwrap_or(own));
        if keep_old && !old_args.is_empty() {
            if !args.is_empty() {
                args.push(b'&');
            }
            args.extend_from_slice(old_args);
        }
    } else {
        args.extend_from_slice(old_args);
    }
    let uri = scratch.get(..uri_part).unwrap_or_default().to_vec();
    *buffers.scratch = rendered;
    if log {
        log::info!(
            "rewritten {}: \"{}\", args: \"{}\"",
            if redirect { "redirect" } else { "data" },
            String::from_utf8_lossy(&uri),
            String::from_utf8_lossy(&args)
        );
    }
    buffers.uri.clear();
    buffers.uri.extend_from_slice(&uri);
    if redirect {
        if !args.is_empty() {
            buffers.uri.push(b'?');
            buffers.uri.extend_from_slice(&args);
        }
        let status = match rule.flag {
            RewriteFlag::Permanent => 301,
            _ => 302,
        };
        return Some(Flow::Stop(ScriptOutcome::Redirect(status)));
    }
    buffers.args.clear();
    buffers.args.extend_from_slice(&args);
    *buffers.args_set = true;
    *rewritten = true;
    match rule.flag {
        RewriteFlag::Last => Some(Flow::Stop(ScriptOutcome::Rewritten { again: true })),
        RewriteFlag::Break => Some(Flow::Stop(ScriptOutcome::Rewritten { again: false })),
        _ => None,
    }
}
