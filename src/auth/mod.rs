//! HTTP Basic authentication (ngx_http_auth_basic_module): `auth_basic`
//! asks for a user name and password, `auth_basic_user_file` holds the
//! users in htpasswd form.
//!
//! A request to a protected location is checked in `parse_request`, after
//! allow/deny (`satisfy` says how the two combine): its `Authorization`
//! field is read ([`credentials`]), the user file is read as nginx reads it,
//! on every request ([`find_user`]), and the stored hash decides. Hashes
//! that are cheap to check (`{PLAIN}`, `{SHA}`, `{SSHA}`) are checked on the
//! spot. The crypt(3) ones (`$apr1$`, `$1$`, bcrypt `$2y$`, `$5$`, `$6$`,
//! DES) are slow on purpose, up to hundreds of milliseconds for bcrypt, so
//! they never run on the event loop: a small cache of recently verified
//! pairs answers repeats at once, and a miss goes to this worker's password
//! thread ([`checker`]), the connection waiting in the `Authenticating`
//! phase while other connections are served.
//!
//! Everything here but the thread is sans-IO: pure functions over bytes.
//!
//! In the course (docs/learn): chapter 7, "The order": auth_basic, and a
//! thread kept off the loop.

pub mod checker;

use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The user name and password of a `Basic` `Authorization` field, decoded
/// into `out` (`user:password`); returns where the colon is. `None` when
/// the field is absent, not `Basic`, not base64, or has no colon or no
/// user, as nginx's `ngx_http_auth_basic_user` decides.
pub fn credentials(field: Option<&[u8]>, out: &mut Vec<u8>) -> Option<usize> {
    let field = field?;
    let scheme = field.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"Basic ") {
        return None;
    }
    let encoded = field.get(6..)?;
    let start = encoded.iter().position(|b| *b != b' ')?;
    let encoded = encoded.get(start..)?;
    // nginx stops at the first `=` and does not require padding.
    let end = encoded
        .iter()
        .position(|b| *b == b'=')
        .unwrap_or(encoded.len());
    out.clear();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode_vec(encoded.get(..end)?, out).ok()?;
    let colon = out.iter().position(|b| *b == b':')?;
    (colon > 0).then_some(colon)
}

/// The stored hash of `user` in an htpasswd file, read as nginx reads it:
/// a line is `user:hash[:anything]`; a line starting with `#` or CR is
/// skipped; the hash ends at CR, LF or `:`.
pub fn find_user<'a>(file: &'a [u8], user: &[u8]) -> Option<&'a [u8]> {
    for line in file.split(|b| *b == b'\n') {
        if line.first().is_some_and(|b| *b == b'#' || *b == b'\r') {
            continue;
        }
        let Some(rest) = line.strip_prefix(user) else {
            continue;
        };
        let Some(hash) = rest.strip_prefix(b":") else {
            continue;
        };
        let end = hash
            .iter()
            .position(|b| matches!(b, b'\r' | b':'))
            .unwrap_or(hash.len());
        return hash.get(..end);
    }
    None
}

/// A stored hash's scheme could not be checked (nginx: 500).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownScheme;

/// Whether checking `stored` is slow enough to keep off the event loop:
/// every crypt(3) scheme (apr1 and MD5-crypt run 1,000 rounds, SHA-crypt
/// 5,000 by default, bcrypt 2^cost).
pub fn is_costly(stored: &[u8]) -> bool {
    !(stored.starts_with(b"{PLAIN}")
        || stored.starts_with(b"{SHA}")
        || stored.starts_with(b"{SSHA}"))
}

/// Whether `password` matches `stored`, compared in constant time.
pub fn verify(password: &[u8], stored: &[u8]) -> Result<bool, UnknownScheme> {
    if let Some(plain) = stored.strip_prefix(b"{PLAIN}") {
        return Ok(bool::from(plain.ct_eq(password)));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(encoded) = stored.strip_prefix(b"{SHA}") {
        let digest = Sha1::digest(password);
        let stored = engine.decode(encoded).map_err(|_| UnknownScheme)?;
        return Ok(bool::from(stored.as_slice().ct_eq(digest.as_slice())));
    }
    if let Some(encoded) = stored.strip_prefix(b"{SSHA}") {
        // base64(SHA-1(password + salt) + salt).
        let decoded = engine.decode(encoded).map_err(|_| UnknownScheme)?;
        let (digest, salt) = decoded.split_at_checked(20).ok_or(UnknownScheme)?;
        let mut hasher = Sha1::new();
        hasher.update(password);
        hasher.update(salt);
        return Ok(bool::from(hasher.finalize().as_slice().ct_eq(digest)));
    }
    let stored = std::str::from_utf8(stored).map_err(|_| UnknownScheme)?;
    use crypt3_rs::crypt;
    // The crate compares in constant time.
    #[allow(deprecated)]
    let matched = if stored.starts_with("$apr1$") {
        crypt::apr1::verify(password, stored)
    } else if stored.starts_with("$1$") {
        crypt::md5::verify(password, stored)
    } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        crypt::bcrypt::verify(password, stored)
    } else if stored.starts_with("$5$") {
        crypt::sha256::verify(password, stored)
    } else if stored.starts_with("$6$") {
        crypt::sha512::verify(password, stored)
    } else if stored.starts_with("$sha1$") {
        crypt::sha1::verify(password, stored)
    } else if stored.starts_with('_') {
        crypt::bsdi::verify(password, stored)
    } else if stored.len() == 13 && !stored.starts_with('$') {
        crypt::unix::verify(password, stored)
    } else {
        return Err(UnknownScheme);
    };
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(field: &str) -> Option<(String, String)> {
        let mut out = Vec::new();
        let colon = credentials(Some(field.as_bytes()), &mut out)?;
        Some((
            String::from_utf8_lossy(&out[..colon]).into_owned(),
            String::from_utf8_lossy(&out[colon + 1..]).into_owned(),
        ))
    }

    #[test]
    fn authorization_fields_read_as_nginx_reads_them() {
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        // "alice:open sesame"
        assert_eq!(
            decode("Basic YWxpY2U6b3BlbiBzZXNhbWU="),
            pair("alice", "open sesame")
        );
        assert_eq!(
            decode("basic   YWxpY2U6b3BlbiBzZXNhbWU"),
            pair("alice", "open sesame")
        );
        // "a:" (empty password) is a user; ":p" has none.
        assert_eq!(decode("Basic YTo="), pair("a", ""));
        assert_eq!(decode("Basic OnA="), None);
        assert_eq!(decode("Basic bm9jb2xvbg=="), None);
        assert_eq!(decode("Bearer abc"), None);
        assert_eq!(decode("Basic !!!"), None);
        assert_eq!(decode("Basic "), None);
        assert_eq!(credentials(None, &mut Vec::new()), None);
    }

    #[test]
    fn users_are_found_line_by_line() {
        let file =
            b"# admins\nalice:{PLAIN}a:comment\r\nbob:{PLAIN}b\r\n\r\nal:{PLAIN}x\nlast:{PLAIN}l";
        assert_eq!(find_user(file, b"alice"), Some(&b"{PLAIN}a"[..]));
        assert_eq!(find_user(file, b"bob"), Some(&b"{PLAIN}b"[..]));
        assert_eq!(find_user(file, b"al"), Some(&b"{PLAIN}x"[..]));
        assert_eq!(find_user(file, b"last"), Some(&b"{PLAIN}l"[..]));
        assert_eq!(find_user(file, b"# admins"), None);
        assert_eq!(find_user(file, b"carol"), None);
    }

    #[test]
    fn every_scheme_checks_its_password() {
        // Made with `openssl passwd -apr1/-1/-5/-6` and libxcrypt's crypt(3)
        // (bcrypt, DES); password "secret".
        let hashes = [
            "{PLAIN}secret",
            "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
            "{SSHA}gVK8WC9YyFT1gMsQHTGCgT3sSv5zYWx0",
            "$apr1$SALTsalt$4HhuoIpo48AkoW2glxrUJ/",
            "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
            "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
            "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            "abNANd1rDfiNc",
        ];
        for stored in hashes {
            assert_eq!(verify(b"secret", stored.as_bytes()), Ok(true), "{stored}");
            assert_eq!(verify(b"Secret", stored.as_bytes()), Ok(false), "{stored}");
        }
        assert_eq!(verify(b"secret", b"$9$unknown"), Err(UnknownScheme));
        assert!(!is_costly(b"{SHA}x") && is_costly(b"$2y$05$x"));
    }
}
