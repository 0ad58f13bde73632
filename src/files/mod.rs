//! Static files, as nginx's static, index and try_files handlers serve
//! them: the content of a location with neither `proxy_pass` nor `return`.
//!
//! A request's `$uri` (decoded and normalized by `routing::normalize_path`,
//! so no spelling of `..` leaves the root) is mapped onto the filesystem by
//! `root` (root + uri) or `alias` (the location's prefix replaced). Then:
//!
//! 1. `try_files`: the first listed name that exists becomes the uri; if
//!    none does, the last argument decides (`=404`, `@named`, or another
//!    uri, routed again as nginx's internal redirect is);
//! 2. a uri ending in `/` looks for its `index` files: the first that
//!    exists is routed again as uri + name; none gives 403 (the directory
//!    exists, and ferry lists no directories: `autoindex off`) or 404;
//! 3. anything else is opened: a regular file is served, a directory is
//!    redirected to the uri with a slash (301), the rest is 404 or 403.
//!
//! [`resolve`] makes these decisions with the filesystem (open and fstat
//! only: no path is read twice, and symlinks are followed as nginx's default
//! `disable_symlinks off` does); [`conditional`] decides 200, 304, 412, 206
//! or 416 from the file's validators; the connection writes the head and
//! then reads the file into its response ring as the client takes bytes
//! (`connection::files`), so a large file never sits in memory and a slow
//! client only ever holds one ring of it.
//!
//! In the course (docs/learn): chapter 7, "The order": static files, beside
//! proxying.

pub mod conditional;
pub mod mime;
pub mod root;

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::error;

pub use conditional::{Conditions, Decision, ModifiedSince, Validators};
pub use mime::MimeTypes;
pub use root::{append_path, DocumentRoot};

use crate::variables::{RequestView, Template};

/// The static-file settings of a location, inherited http -> server ->
/// location as nginx's are.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSettings {
    pub root: DocumentRoot,
    /// `index`: names looked for in a directory, in order.
    pub index: Vec<String>,
    pub try_files: Option<TryFiles>,
    pub expires: Expires,
    /// `types`, shared by every location that inherits the same block.
    pub types: Arc<MimeTypes>,
    /// `default_type`: for names no type matches.
    pub default_type: String,
    /// `etag`: send and compare entity tags.
    pub etag: bool,
    pub if_modified_since: ModifiedSince,
    /// `max_ranges`; `None`: no limit.
    pub max_ranges: Option<u32>,
    /// `log_not_found`: a missing file is an error-log line.
    pub log_not_found: bool,
}

impl Default for FileSettings {
    fn default() -> FileSettings {
        FileSettings {
            root: DocumentRoot::Root(PathBuf::from("html")),
            index: vec!["index.html".to_string()],
            try_files: None,
            expires: Expires::Off,
            types: Arc::new(MimeTypes::default()),
            default_type: "text/plain".to_string(),
            etag: true,
            if_modified_since: ModifiedSince::Exact,
            max_ranges: None,
            log_not_found: true,
        }
    }
}

/// `try_files FILE … LAST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TryFiles {
    pub files: Vec<TryName>,
    pub fallback: Fallback,
}

/// One name `try_files` tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TryName {
    /// The name as written, without a trailing `/`.
    pub name: Template,
    /// Written with a trailing `/` (`$uri/`): it must be a directory, and
    /// anything else must not be one (nginx's `test_dir`).
    pub directory: bool,
}

/// `try_files`'s last argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// `=CODE`.
    Status(u16),
    /// `@name`.
    Named(String),
    /// A uri (with its own `?args`, or none), routed again.
    Uri(Template),
}

/// `expires`: `Expires` and `Cache-Control` on successful answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expires {
    #[default]
    Off,
    /// `expires TIME` (negative: in the past), seconds from now.
    After(i64),
    /// `expires modified TIME`: from the file's modification time.
    Modified(i64),
    /// `expires epoch`: `Expires` of 1 January 1970, `no-cache`.
    Epoch,
    /// `expires max`: the end of 2037, ten years of `max-age`.
    Max,
}

impl Expires {
    /// Appends the fields (nginx's exact values) for a response sent at
    /// `now` of a file modified at `modified`.
    pub fn write(self, now: i64, modified: Option<i64>, out: &mut Vec<u8>) {
        use std::io::Write;
        let (expires, cache_control) = match self {
            Expires::Off => return,
            Expires::Epoch => (1, None),
            Expires::Max => (2_145_916_555, Some(315_360_000)),
            Expires::After(seconds) => (now.saturating_add(seconds), Some(seconds)),
            Expires::Modified(seconds) => {
                let at = modified.unwrap_or(now).saturating_add(seconds);
                (at, Some(at.saturating_sub(now)))
            }
        };
        let date = crate::http::date::format_imf(u64::try_from(expires).unwrap_or(0));
        out.extend_from_slice(b"Expires: ");
        out.extend_from_slice(&date);
        match cache_control {
            Some(max_age) if max_age >= 0 => {
                let _ = write!(out, "\r\nCache-Control: max-age={max_age}\r\n");
            }
            _ => out.extend_from_slice(b"\r\nCache-Control: no-cache\r\n"),
        }
    }
}

/// An open file ready to be sent.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub validators: Validators,
}

/// What a request for a static location comes to.
#[derive(Debug)]
pub enum Resolution {
    /// This file; `path` holds its name (for its type).
    Serve(Opened),
    /// The uri names a directory: 301 to the uri with a slash (and the
    /// arguments), written into `redirect`.
    AddSlash,
    /// Route again with the uri (and args) now in `redirect`.
    Redirect,
    /// `try_files … @name`.
    Named,
    /// An answer with this status (404, 403, 500, or `=CODE`).
    Status(u16),
}

/// The request's side of a lookup.
pub struct Lookup<'a> {
    /// `$uri`, normalized (the view's `uri` too, for `try_files`).
    pub uri: &'a [u8],
    /// The query, without `?` (kept across an index redirect).
    pub args: &'a [u8],
    pub view: &'a RequestView<'a>,
}

/// Where the lookup writes: the file name tried last, and a uri to
/// route again (uri, then `?args` if any).
pub struct Scratch<'a> {
    pub path: &'a mut Vec<u8>,
    pub redirect: &'a mut Vec<u8>,
}

/// Resolves a request for a static location (see the module's steps).
/// `try_files` renders into `scratch.redirect`, which also carries the
/// result of [`Resolution::Redirect`].
pub fn resolve(settings: &FileSettings, lookup: &Lookup<'_>, scratch: Scratch<'_>) -> Resolution {
    let Scratch { path, redirect } = scratch;
    if let Some(try_files) = &settings.try_files {
        let mut found = false;
        for candidate in &try_files.files {
            redirect.clear();
            candidate.name.render(lookup.view, redirect);
            map_path(&settings.root, redirect, path);
            let exists = std::fs::metadata(as_path(path))
                .is_ok_and(|meta| meta.is_dir() == candidate.directory);
            if exists {
                found = true;
                break;
            }
        }
        if found {
            // The name found is the uri from here on; `redirect` may be
            // written again (an index file), so the uri moves out of it.
            // (`$uri/` found `/dir` a directory: the uri is `/dir`, which
            // is then redirected to `/dir/` as nginx does.)
            let found_uri = std::mem::take(redirect);
            let resolution = resolve_uri(settings, &found_uri, lookup.args, path, redirect);
            if !matches!(resolution, Resolution::Redirect | Resolution::AddSlash) {
                // Its capacity stays with the buffer set.
                *redirect = found_uri;
            }
            return resolution;
        }
        return match &try_files.fallback {
            Fallback::Status(code) => Resolution::Status(*code),
            Fallback::Named(_) => Resolution::Named,
            Fallback::Uri(template) => {
                redirect.clear();
                template.render(lookup.view, redirect);
                Resolution::Redirect
            }
        };
    }
    resolve_uri(settings, lookup.uri, lookup.args, path, redirect)
}

/// Steps 2 and 3 for a uri held in `redirect` (after `try_files`) or in
/// the request; on their own, for an error page's uri.
pub fn resolve_uri(
    settings: &FileSettings,
    uri: &[u8],
    args: &[u8],
    path: &mut Vec<u8>,
    redirect: &mut Vec<u8>,
) -> Resolution {
    map_path(&settings.root, uri, path);
    if uri.ends_with(b"/") {
        let directory_len = path.len();
        for name in &settings.index {
            path.truncate(directory_len);
            path.extend_from_slice(name.as_bytes());
            match std::fs::metadata(as_path(path)) {
                Ok(_) => {
                    redirect.clear();
                    redirect.extend_from_slice(uri);
                    redirect.extend_from_slice(name.as_bytes());
                    if !args.is_empty() {
                        redirect.push(b'?');
                        redirect.extend_from_slice(args);
                    }
                    return Resolution::Redirect;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return failed(settings, path, &e),
            }
        }
        path.truncate(directory_len);
        return match std::fs::metadata(as_path(path)) {
            Ok(meta) if meta.is_dir() => {
                error!(
                    "directory index of \"{}\" is forbidden",
                    String::from_utf8_lossy(path)
                );
                Resolution::Status(403)
            }
            Ok(_) => Resolution::Status(404),
            Err(e) => failed(settings, path, &e),
        };
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO or device must not block the loop at open.
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(as_path(path));
    let file = match opened {
        Ok(file) => file,
        Err(e) => return failed(settings, path, &e),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return failed(settings, path, &e),
    };
    if meta.is_dir() {
        redirect.clear();
        redirect.extend_from_slice(uri);
        redirect.push(b'/');
        if !args.is_empty() {
            redirect.push(b'?');
            redirect.extend_from_slice(args);
        }
        return Resolution::AddSlash;
    }
    if !meta.is_file() {
        error!(
            "\"{}\" is not a regular file",
            String::from_utf8_lossy(path)
        );
        return Resolution::Status(404);
    }
    Resolution::Serve(Opened {
        file,
        validators: Validators {
            modified: meta.mtime(),
            size: meta.size(),
            etag: settings.etag,
        },
    })
}

/// A failed open or stat, as nginx answers and logs it.
fn failed(settings: &FileSettings, path: &[u8], e: &io::Error) -> Resolution {
    let path = String::from_utf8_lossy(path);
    let code = e.raw_os_error().unwrap_or(0);
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            if settings.log_not_found {
                error!("open() \"{path}\" failed ({code}: {e})");
            }
            Resolution::Status(404)
        }
        io::ErrorKind::PermissionDenied => {
            error!("open() \"{path}\" failed ({code}: {e})");
            Resolution::Status(403)
        }
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => {
            // A NUL byte or a name too long for the filesystem.
            Resolution::Status(404)
        }
        _ => {
            error!("open() \"{path}\" failed ({code}: {e})");
            Resolution::Status(500)
        }
    }
}

/// The filesystem name for `uri` under `root`.
pub fn map_path(root: &DocumentRoot, uri: &[u8], out: &mut Vec<u8>) {
    out.clear();
    append_path(root, uri, out);
}

pub fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_alias_map_uris() {
        let mut out = Vec::new();
        map_path(
            &DocumentRoot::Root("/srv/www".into()),
            b"/a/b.html",
            &mut out,
        );
        assert_eq!(out, b"/srv/www/a/b.html");
        let alias = DocumentRoot::Alias {
            path: "/data/images/".into(),
            strip: "/img/".len(),
        };
        map_path(&alias, b"/img/x/y.png", &mut out);
        assert_eq!(out, b"/data/images/x/y.png");
        map_path(&alias, b"/img", &mut out);
        assert_eq!(out, b"/data/images/");
    }

    #[test]
    fn expires_fields_are_nginx_s() {
        let mut out = Vec::new();
        Expires::After(3600).write(0, None, &mut out);
        assert_eq!(
            out,
            b"Expires: Thu, 01 Jan 1970 01:00:00 GMT\r\nCache-Control: max-age=3600\r\n"
        );
        out.clear();
        Expires::Epoch.write(1000, None, &mut out);
        assert_eq!(
            out,
            b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\nCache-Control: no-cache\r\n"
        );
        out.clear();
        Expires::Max.write(1000, None, &mut out);
        assert_eq!(
            out,
            b"Expires: Thu, 31 Dec 2037 23:55:55 GMT\r\nCache-Control: max-age=315360000\r\n"
        );
        out.clear();
        Expires::After(-1).write(1000, None, &mut out);
        assert!(out.ends_with(b"Cache-Control: no-cache\r\n"));
    }
}
