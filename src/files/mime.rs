//! MIME types: nginx's `types { type ext …; }` blocks and `default_type`.
//!
//! A file's `Content-Type` comes from its name's extension, compared
//! without regard to case as nginx does. Without a `types` block nginx
//! knows three types only (`text/html html`, `image/gif gif`, `image/jpeg
//! jpg`); real configs `include mime.types` for the rest.
//!
//! In the course (docs/learn): chapter 7, "The order": static files, beside
//! proxying.

/// The `types` in force at a level: extensions (lower case) and their
/// types, sorted by extension for a binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeTypes {
    by_extension: Vec<(String, String)>,
}

impl Default for MimeTypes {
    /// nginx's built-in table, used where no `types` block is in force.
    fn default() -> MimeTypes {
        MimeTypes::from_pairs(
            [
                ("text/html", "html"),
                ("image/gif", "gif"),
                ("image/jpeg", "jpg"),
            ]
            .map(|(t, e)| (t.to_string(), e.to_string())),
        )
    }
}

impl MimeTypes {
    /// A table from `(type, extension)` pairs in file order; a later
    /// line for an extension wins, as nginx's (with a warning) does.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> MimeTypes {
        let mut by_extension: Vec<(String, String)> = Vec::new();
        for (mime, extension) in pairs {
            let extension = extension.to_ascii_lowercase();
            match by_extension.iter_mut().find(|(e, _)| *e == extension) {
                Some(slot) => slot.1 = mime,
                None => by_extension.push((extension, mime)),
            }
        }
        by_extension.sort_by(|a, b| a.0.cmp(&b.0));
        MimeTypes { by_extension }
    }

    /// The type for a file name (or path), if its extension is listed.
    pub fn for_name(&self, name: &[u8]) -> Option<&str> {
        let file_name = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        let dot = file_name.iter().rposition(|&b| b == b'.')?;
        let extension = file_name.get(dot + 1..)?;
        if extension.is_empty() || extension.len() > 32 {
            return None;
        }
        let mut lower = [0u8; 32];
        let lower = lower.get_mut(..extension.len())?;
        lower.copy_from_slice(extension);
        lower.make_ascii_lowercase();
        self.by_extension
            .binary_search_by(|(e, _)| e.as_bytes().cmp(lower))
            .ok()
            .and_then(|i| self.by_extension.get(i))
            .map(|(_, mime)| mime.as_str())
    }

    pub fn len(&self) -> usize {
        self.by_extension.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_extension.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_s_built_in_types() {
        let types = MimeTypes::default();
        assert_eq!(types.for_name(b"/a/index.html"), Some("text/html"));
        assert_eq!(types.for_name(b"/a/INDEX.HTML"), Some("text/html"));
        assert_eq!(types.for_name(b"/a/b.jpg"), Some("image/jpeg"));
        assert_eq!(types.for_name(b"/a/b.css"), None);
        assert_eq!(types.for_name(b"/a.html/b"), None);
        assert_eq!(types.for_name(b"/a/b."), None);
        assert_eq!(types.for_name(b"/a/.html"), Some("text/html"));
    }

    #[test]
    fn a_later_line_wins() {
        let pairs = [("text/plain", "txt"), ("text/x-note", "TXT")]
            .map(|(t, e)| (t.to_string(), e.to_string()));
        let types = MimeTypes::from_pairs(pairs);
        assert_eq!(types.for_name(b"a.txt"), Some("text/x-note"));
        assert_eq!(types.len(), 1);
    }
}
