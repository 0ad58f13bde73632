//! Where a location's files are (`root`, `alias`) and how a uri maps into
//! them: what the static file handler and the variables that name files
//! (`$document_root`, `$request_filename`) both need, kept apart so that
//! neither depends on the other.
//!
//! In the course (docs/learn): chapter 7, "The order": static files, beside
//! proxying.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Where a location's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentRoot {
    /// `root PATH`: the file for `/a/b` is `PATH/a/b`.
    Root(PathBuf),
    /// `alias PATH` in `location /prefix/`: the file for `/prefix/a` is
    /// `PATH/a`; `strip` is the prefix's length.
    Alias { path: PathBuf, strip: usize },
}

/// [`super::map_path`], appended to what `out` holds (`$request_filename`).
pub fn append_path(root: &DocumentRoot, uri: &[u8], out: &mut Vec<u8>) {
    match root {
        DocumentRoot::Root(root) => {
            out.extend_from_slice(root.as_os_str().as_bytes());
            out.extend_from_slice(uri);
        }
        DocumentRoot::Alias { path, strip } => {
            out.extend_from_slice(path.as_os_str().as_bytes());
            out.extend_from_slice(uri.get(*strip..).unwrap_or_default());
        }
    }
}
