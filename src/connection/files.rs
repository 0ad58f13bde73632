//! Static files on a connection: what a static location's lookup comes to
//! (`static_target`, called while the request head is still in the ring),
//! the response head (`answer_file`), and the body, read from the file into
//! the response ring as the client takes bytes (`fill_from_file`).
//!
//! The file is read with `pread` into the same ring a proxied body flows
//! through, not sent with sendfile(2): one path for plain and TLS clients,
//! the ring's back-pressure (a full ring reads nothing until the client
//! takes some), and a bulk transfer borrows the pool's large storage as a
//! proxied one does. A regular file's read comes from the page cache; a
//! read that must go to the disk blocks the loop for that read, as nginx's
//! does without `aio`.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use log::debug;

use super::phase::{Exchange, Phase, ResponseState};
use super::starting::Target;
use super::{Abort, Connection, Context};
use crate::files::{self, Conditions, Decision, FileSettings, Resolution, Validators};
use crate::http::error_page::{self, ErrorResponse, Reply};
use crate::http::gzip;
use crate::http::request::Method;

/// What a static location's lookup asks the router to do next.
pub(super) enum StaticStep {
    /// Answer with this.
    Done(Target),
    /// Route again: the new uri (and `?args`) is in `redirect`.
    Redirect,
    /// Go to `try_files`'s `@name` location.
    Named,
}

/// A file, and what the request's conditions made of it.
#[derive(Debug)]
pub(super) struct FileTarget {
    pub file: File,
    pub validators: Validators,
    pub decision: Decision,
}

/// The lookup for a static location (see `crate::files`), and the method
/// rules of nginx's static handler: GET and HEAD read files, POST gets 405
/// for a file that exists, and other methods get 405.
pub(super) fn static_target(
    settings: &FileSettings,
    lookup: &files::Lookup<'_>,
    method: Method,
    path: &mut Vec<u8>,
    redirect: &mut Vec<u8>,
) -> StaticStep {
    let reads = matches!(method, Method::Get | Method::Head);
    if !reads && method != Method::Post && settings.try_files.is_none() {
        return StaticStep::Done(Target::Page(ErrorResponse::MethodNotAllowed));
    }
    let scratch = files::Scratch { path, redirect };
    match files::resolve(settings, lookup, scratch) {
        Resolution::Redirect => StaticStep::Redirect,
        Resolution::Named => StaticStep::Named,
        Resolution::Status(code) => StaticStep::Done(Target::Code(code)),
        Resolution::AddSlash if reads || method == Method::Post => {
            StaticStep::Done(Target::AddSlash)
        }
        Resolution::Serve(opened) if reads => {
            let conditions = Conditions::from_headers(lookup.view.headers);
            let decision = files::conditional::decide(
                &conditions,
                &opened.validators,
                settings.if_modified_since,
                settings.max_ranges,
            );
            StaticStep::Done(Target::File(Box::new(FileTarget {
                file: opened.file,
                validators: opened.validators,
                decision,
            })))
        }
        Resolution::AddSlash | Resolution::Serve(_) => {
            StaticStep::Done(Target::Page(ErrorResponse::MethodNotAllowed))
        }
    }
}

impl Connection {
    /// Queues a file's head (200, 206, 304, 412 or 416) and, unless the
    /// request is HEAD or the answer has no body, sets the exchange up to
    /// read the file as the client takes it.
    pub(super) fn answer_file(
        &mut self,
        exchange: Exchange,
        target: FileTarget,
        status_override: Option<u16>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let FileTarget {
            file,
            validators,
            decision,
        } = target;
        let (status, range) = match decision {
            Decision::PreconditionFailed => {
                return self.answer_page(exchange, ErrorResponse::PreconditionFailed, ctx)
            }
            Decision::RangeNotSatisfiable => {
                let size = validators.size;
                return self.answer_locally(exchange, ctx, |out, reply| {
                    let mut field = Vec::with_capacity(40);
                    let _ = write!(field, "Content-Range: bytes */{size}\r\n");
                    let page = ErrorResponse::RangeNotSatisfiable;
                    (page.status(), page.write_with(out, reply, &field))
                });
            }
            Decision::NotModified => (304, None),
            Decision::Whole => (200, None),
            Decision::Partial { start, len } => (206, Some((start, len))),
        };
        // An error page's file is sent with the error's status.
        let status = status_override.unwrap_or(status);
        let config = std::rc::Rc::clone(&ctx.config);
        let location = exchange.settings(&config);
        let settings = &location.files;
        let content_type = settings
            .types
            .for_name(&exchange.buffers.file_path)
            .unwrap_or(&settings.default_type);
        // `gzip`: decided as for a proxied response; a compressed file is
        // whole (nginx's gzip filter takes the ranges away first).
        let mut exchange = exchange;
        let gzip = if exchange.gzip_facts == 0 {
            gzip::Decision::default()
        } else {
            let whole = match range {
                Some(_) => 200,
                None => status,
            };
            let facts = gzip::ResponseFacts {
                status: whole,
                content_type: Some(content_type.as_bytes()),
                content_length: Some(validators.size),
                header_only: whole == 304,
                last_modified: true,
                etag: validators.etag,
                ..gzip::ResponseFacts::default()
            };
            let now = ctx
                .wall_clock
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            gzip::decide(&location.gzip, exchange.gzip_facts, &facts, now)
        };
        let (status, range) = match (gzip.compress, range) {
            (true, Some(_)) => (200, None),
            _ => (status, range),
        };
        let http10 = exchange.request.version == crate::http::Version::Http10;
        if gzip.compress && http10 {
            // Close-delimited: no keep-alive after it.
            exchange.keep_alive = false;
        }
        let charset = location.charset_for(content_type.as_bytes());
        let now = ctx
            .wall_clock
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let expires = settings.expires;
        let ranges = settings.max_ranges != Some(0);
        let (start, len) = range.unwrap_or((0, validators.size));
        let mut sends_body = false;
        let (mut phase, progress) = self.queue_file_head(exchange, ctx, |out, reply| {
            let head = FileHead {
                status,
                content_type,
                charset,
                validators: &validators,
                range,
                expires,
                now,
                ranges,
                gzip,
                chunked: !http10 && !reply.head_only,
            };
            head.write_to(out, reply);
            sends_body = status != 304 && !reply.head_only;
            (status, 0)
        });
        if let Phase::WritingResponse { exchange } = &mut phase {
            if sends_body && len > 0 {
                debug!(
                    "#{} sending {len} bytes of {}",
                    ctx.slot,
                    String::from_utf8_lossy(&exchange.buffers.file_path)
                );
                exchange.buffers.file = Some(file);
                exchange.response = ResponseState::File {
                    offset: start,
                    remaining: len,
                };
                if gzip.compress {
                    let chunked = exchange.request.version == crate::http::Version::Http11;
                    let level = exchange.settings(&config).gzip.level;
                    exchange.gzip = Some(ctx.gzip_streams.take(level, chunked));
                }
            }
        }
        (phase, progress)
    }

    /// Reads the next part of the file into the free space of the response
    /// ring (at most what is left of the body). A file that ends early
    /// (truncated while sent) cannot be completed: the connection closes,
    /// as nginx's does.
    pub(super) fn fill_from_file(
        &mut self,
        exchange: &mut Exchange,
        ctx: &mut Context<'_>,
    ) -> Result<bool, Abort> {
        let Exchange { buffers, state } = exchange;
        let (ResponseState::File { offset, remaining }, Some(file)) =
            (&mut state.response, &buffers.file)
        else {
            return Ok(false);
        };
        let ring = &mut buffers.response;
        if *remaining == 0 || ring.free() == 0 {
            return Ok(false);
        }
        let want = *remaining;
        let at = *offset;
        let read = ring.fill_with(|regions| {
            let Some(region) = regions.first_mut() else {
                return Ok(0);
            };
            let cap = usize::try_from(want)
                .unwrap_or(usize::MAX)
                .min(region.len());
            let region = region.get_mut(..cap).unwrap_or_default();
            loop {
                match file.read_at(region, at) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            }
        });
        match read {
            Ok(0) => Err(Abort::UpstreamBroken(format!(
                "\"{}\" ended {want} bytes early (changed while sent)",
                String::from_utf8_lossy(&buffers.file_path)
            ))),
            Ok(n) => {
                *offset += n as u64;
                *remaining -= n as u64;
                ctx.grow_if_bulk(ring, "file");
                Ok(true)
            }
            Err(e) => Err(Abort::UpstreamBroken(format!(
                "read() \"{}\" failed ({e})",
                String::from_utf8_lossy(&buffers.file_path)
            ))),
        }
    }
}

/// A file response's head, with nginx's fields in nginx's order.
struct FileHead<'a> {
    status: u16,
    content_type: &'a str,
    /// `charset`, when it applies to the type.
    charset: Option<&'a str>,
    validators: &'a Validators,
    range: Option<(u64, u64)>,
    expires: files::Expires,
    now: i64,
    /// Byte ranges are served (`max_ranges` is not 0).
    ranges: bool,
    /// `gzip`: compressed (no length, no ranges, a weak ETag) and `Vary`.
    gzip: gzip::Decision,
    /// A compressed body goes chunked (HTTP/1.1, not HEAD).
    chunked: bool,
}

impl FileHead<'_> {
    fn write_to(&self, out: &mut Vec<u8>, reply: &Reply<'_>) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: ferry\r\nDate: ",
            self.status,
            error_page::reason(self.status)
        );
        out.extend_from_slice(reply.date);
        out.extend_from_slice(b"\r\n");
        if self.status != 304 {
            let length = self.range.map_or(self.validators.size, |(_, len)| len);
            let _ = write!(out, "Content-Type: {}", self.content_type);
            if let Some(charset) = self.charset {
                let _ = write!(out, "; charset={charset}");
            }
            if self.gzip.compress {
                out.extend_from_slice(b"\r\nContent-Encoding: gzip\r\n");
                if self.chunked {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                }
            } else {
                let _ = write!(out, "\r\nContent-Length: {length}\r\n");
            }
        }
        let modified =
            crate::http::date::format_imf(u64::try_from(self.validators.modified).unwrap_or(0));
        if matches!(self.status, 200 | 206 | 304) {
            out.extend_from_slice(b"Last-Modified: ");
            out.extend_from_slice(&modified);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if reply.keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        if self.validators.etag {
            out.extend_from_slice(b"ETag: ");
            if self.gzip.compress {
                out.extend_from_slice(b"W/");
            }
            out.extend_from_slice(self.validators.etag().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.gzip.vary {
            out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        self.expires
            .write(self.now, Some(self.validators.modified), out);
        match (self.status, self.range) {
            (206, Some((start, len))) => {
                let _ = write!(
                    out,
                    "Content-Range: bytes {start}-{}/{}\r\n",
                    start + len - 1,
                    self.validators.size
                );
            }
            // nginx's `max_ranges 0` turns ranges off, and says nothing.
            (200, _) if self.ranges && !self.gzip.compress => {
                out.extend_from_slice(b"Accept-Ranges: bytes\r\n")
            }
            _ => {}
        }
        // `add_header` lines: the file's codes are all nginx's success ones.
        out.extend_from_slice(reply.added);
        out.extend_from_slice(b"\r\n");
    }
}

impl Connection {
    /// A directory asked for without its slash: 301 to the uri with one
    /// (rendered into `buffers.redirect` by `static_target`; made absolute
    /// by `answer_return`).
    pub(super) fn answer_add_slash(
        &mut self,
        mut exchange: Exchange,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let buffers = &mut *exchange.buffers;
        buffers.return_text.clear();
        buffers.return_text.extend_from_slice(&buffers.redirect);
        self.answer_return(exchange, 301, Some(true), ctx)
    }
}
