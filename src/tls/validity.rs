//! When a certificate stops being valid: its `notAfter`, read from the DER.
//!
//! Loading a configuration (and so `ferry -t` and a reload) warns about a
//! certificate that has expired, as `nginx -t` does: the file loads, clients
//! will refuse it. rustls checks certificates it *receives*; the ones ferry
//! serves it takes as they are, so this reads the one field it needs:
//!
//! ```text
//! Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
//!     [0] version OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
//!     issuer SEQUENCE, validity SEQUENCE { notBefore Time, notAfter Time },
//!     … } … }
//! Time ::= UTCTime (YYMMDDHHMMSSZ) | GeneralizedTime (YYYYMMDDHHMMSSZ)
//! ```
//!
//! Pure and bounds-checked: a malformed certificate yields `None` (rustls
//! has already refused one it cannot use).
//!
//! In the course (docs/learn): chapter 7, "The order": TLS under the same
//! reads and writes.

use crate::http::date::days_from_civil;

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter`, in seconds since the Unix epoch.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (tag, validity, _) = element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    parse_time(tag, time)
}

/// One DER element: its tag, its contents and what follows it.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let len = bytes
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, 2 + count)
    };
    let contents = bytes.get(header..header.checked_add(len)?)?;
    let rest = bytes.get(header + len..)?;
    Some((tag, contents, rest))
}

fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, rest) = match tag {
        // RFC 5280: two-digit years 50-99 are 19xx.
        UTC_TIME => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        GENERALIZED_TIME => (digits(0..4)?, 4),
        _ => return None,
    };
    let field = |at: usize| digits(rest + at..rest + at + 2);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20000301000000Z"),
            Some(951_868_800)
        );
        assert_eq!(parse_time(UTC_TIME, b"5001010000Z"), None);
        assert_eq!(parse_time(UTC_TIME, b"991301000000Z"), None);
    }

    #[test]
    fn a_certificate_says_when_it_expires() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let cert = params.self_signed(&key).unwrap();
        let expected = days_from_civil(2031, 7, 15) * 86_400;
        assert_eq!(not_after(cert.der()), Some(expected));
    }

    #[test]
    fn malformed_certificates_yield_nothing() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        for len in 0..der.len() {
            let _ = not_after(&der[..len]);
        }
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x31, 0x00]), None);
    }
}
