//! nginx's browser detection, for `keepalive_disable`: MSIE 6 (and 4, 5)
//! breaks on a kept-alive connection after a POST, old Safari on macOS on
//! any; nginx reads the `User-Agent` the same way (ngx_http_process_user_agent).
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

/// `keepalive_disable msie6`.
pub const MSIE6: u8 = 1;
/// `keepalive_disable safari`.
pub const SAFARI: u8 = 2;

/// Which of the browsers `keepalive_disable` names `user_agent` is, as
/// [`MSIE6`] / [`SAFARI`] flags.
pub fn detect(user_agent: &[u8]) -> u8 {
    let find = |needle: &[u8]| user_agent.windows(needle.len()).position(|w| w == needle);
    let mut msie = false;
    let mut msie6 = false;
    if let Some(at) = find(b"MSIE ") {
        if at + 7 < user_agent.len() {
            msie = true;
            if user_agent.get(at + 6) == Some(&b'.') {
                match user_agent.get(at + 5) {
                    Some(b'4' | b'5') => msie6 = true,
                    // MSIE 6 with SP2 ("SV1") has the fix.
                    Some(b'6') => {
                        let rest = user_agent.get(at + 8..).unwrap_or_default();
                        msie6 = !rest.windows(3).any(|w| w == b"SV1");
                    }
                    _ => {}
                }
            }
        }
    }
    if find(b"Opera").is_some() {
        return 0;
    }
    if msie6 {
        return MSIE6;
    }
    let safari = !msie
        && find(b"Gecko/").is_none()
        && find(b"Chrome/").is_none()
        && find(b"Safari/").is_some()
        && find(b"Mac OS X").is_some();
    if safari {
        SAFARI
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_as_nginx_tells_them() {
        assert_eq!(
            detect(b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"),
            MSIE6
        );
        assert_eq!(
            detect(b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"),
            0
        );
        assert_eq!(
            detect(b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"),
            MSIE6
        );
        assert_eq!(
            detect(b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"),
            0
        );
        assert_eq!(
            detect(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"),
            SAFARI
        );
        assert_eq!(
            detect(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            0
        );
        assert_eq!(detect(b"Opera/9.80 (MSIE 6.0; Windows)"), 0);
        assert_eq!(detect(b"curl/8.0"), 0);
        assert_eq!(detect(b"MSIE 6"), 0);
    }
}
