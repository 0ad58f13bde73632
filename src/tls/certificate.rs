//! What ferry reads from the certificates it serves, from their DER: when
//! each stops being valid, who issued it, and what it says about OCSP.
//!
//! Loading a configuration (and so `ferry -t` and a reload) warns about a
//! certificate that has expired, as `nginx -t` does, and `ssl_stapling`
//! takes nginx's decisions from the certificate's issuer and its OCSP
//! responder (`tls::stapling`). rustls checks certificates it *receives*;
//! the ones ferry serves it takes as they are, so this reads the few fields
//! it needs (RFC 5280):
//!
//! ```text
//! Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
//!     [0] version OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
//!     issuer Name, validity SEQUENCE { notBefore Time, notAfter Time },
//!     subject Name, subjectPublicKeyInfo SEQUENCE,
//!     [1] issuerUniqueID OPTIONAL, [2] subjectUniqueID OPTIONAL,
//!     [3] extensions SEQUENCE OF Extension OPTIONAL } … }
//! Time ::= UTCTime (YYMMDDHHMMSSZ) | GeneralizedTime (YYYYMMDDHHMMSSZ)
//! Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
//!     extnValue OCTET STRING }
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
const EXTENSIONS: u8 = 0xA3;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const INTEGER: u8 = 0x02;
/// `uniformResourceIdentifier [6] IA5String` in a GeneralName.
const URI: u8 = 0x86;

/// id-pe-authorityInfoAccess, 1.3.6.1.5.5.7.1.1, as DER contents.
const AUTHORITY_INFO_ACCESS: &[u8] = &[0x2B, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-ocsp, 1.3.6.1.5.5.7.48.1: an access description naming the OCSP
/// responder.
const OCSP_ACCESS: &[u8] = &[0x2B, 6, 1, 5, 5, 7, 0x30, 1];
/// id-pe-tlsfeature, 1.3.6.1.5.5.7.1.24 (RFC 7633).
const TLS_FEATURE: &[u8] = &[0x2B, 6, 1, 5, 5, 7, 1, 0x18];
/// The TLS feature `status_request` (5): "must staple".
const STATUS_REQUEST: u8 = 5;

/// The fields of one certificate this module reads.
#[derive(Clone, Copy, Debug)]
pub struct Certificate<'a> {
    /// The issuer's and the subject's Name, as encoded: a certificate is
    /// its issuer's when one's issuer is the other's subject.
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
    not_after: (u8, &'a [u8]),
    /// The contents of `[3] extensions`' SEQUENCE (empty without one).
    extensions: &'a [u8],
}

impl<'a> Certificate<'a> {
    /// Reads a DER certificate; `None` if it is malformed.
    pub fn read(der: &'a [u8]) -> Option<Certificate<'a>> {
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
        // serialNumber, signature.
        for _ in 0..2 {
            tbs = element(tbs)?.2;
        }
        let (_, issuer, rest) = element(tbs)?;
        let (tag, validity, rest) = element(rest)?;
        if tag != SEQUENCE {
            return None;
        }
        let (_, _, after_not_before) = element(validity)?;
        let (time_tag, time, _) = element(after_not_before)?;
        let (_, subject, rest) = element(rest)?;
        // subjectPublicKeyInfo, then the optional fields.
        let mut rest = element(rest)?.2;
        let mut extensions: &[u8] = &[];
        while !rest.is_empty() {
            let (tag, contents, after) = element(rest)?;
            if tag == EXTENSIONS {
                extensions = match element(contents)? {
                    (SEQUENCE, list, _) => list,
                    _ => return None,
                };
            }
            rest = after;
        }
        Some(Certificate {
            issuer,
            subject,
            not_after: (time_tag, time),
            extensions,
        })
    }

    /// `notAfter`, in seconds since the Unix epoch.
    pub fn not_after(&self) -> Option<i64> {
        parse_time(self.not_after.0, self.not_after.1)
    }

    /// The value of the extension `oid`, if the certificate has it.
    fn extension(&self, oid: &[u8]) -> Option<&'a [u8]> {
        let mut rest = self.extensions;
        while !rest.is_empty() {
            let (_, extension, after) = element(rest)?;
            rest = after;
            let (tag, id, mut fields) = element(extension)?;
            if tag != OID || id != oid {
                continue;
            }
            while !fields.is_empty() {
                let (tag, contents, after) = element(fields)?;
                if tag == OCTET_STRING {
                    return Some(contents);
                }
                fields = after;
            }
        }
        None
    }

    /// The first OCSP responder the certificate names (its Authority
    /// Information Access), as OpenSSL's `X509_get1_ocsp` lists them.
    pub fn ocsp_responder(&self) -> Option<&'a [u8]> {
        let (tag, mut descriptions, _) = element(self.extension(AUTHORITY_INFO_ACCESS)?)?;
        if tag != SEQUENCE {
            return None;
        }
        while !descriptions.is_empty() {
            let (_, description, after) = element(descriptions)?;
            descriptions = after;
            let (tag, method, location) = element(description)?;
            if tag == OID && method == OCSP_ACCESS {
                if let Some((URI, uri, _)) = element(location) {
                    return Some(uri);
                }
            }
        }
        None
    }

    /// The certificate demands a stapled OCSP response ("must staple",
    /// the TLS feature `status_request`): clients refuse a handshake
    /// without one.
    pub fn must_staple(&self) -> bool {
        let Some((SEQUENCE, mut features, _)) = self.extension(TLS_FEATURE).and_then(element)
        else {
            return false;
        };
        while let Some((tag, value, after)) = element(features) {
            if tag == INTEGER && value == [STATUS_REQUEST] {
                return true;
            }
            features = after;
        }
        false
    }
}

/// The certificate's `notAfter`, in seconds since the Unix epoch.
pub fn not_after(der: &[u8]) -> Option<i64> {
    Certificate::read(der)?.not_after()
}

/// One DER element: its tag, its contents and what follows it.
pub(super) fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

    /// A short DER element (contents under 128 bytes).
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, u8::try_from(contents.len()).unwrap()];
        out.extend_from_slice(contents);
        out
    }

    fn certificate_with(extensions: Vec<rcgen::CustomExtension>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.custom_extensions = extensions;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_its_ocsp_responder() {
        let ca_issuers = [0x2B, 6, 1, 5, 5, 7, 0x30, 2];
        let access = [
            der(
                SEQUENCE,
                &[der(OID, &ca_issuers), der(URI, b"http://ca.example/")].concat(),
            ),
            der(
                SEQUENCE,
                &[der(OID, OCSP_ACCESS), der(URI, b"http://ocsp.example/")].concat(),
            ),
        ]
        .concat();
        let aia = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            der(SEQUENCE, &access),
        );
        let with = certificate_with(vec![aia]);
        let read = Certificate::read(&with).unwrap();
        assert_eq!(read.ocsp_responder(), Some(&b"http://ocsp.example/"[..]));
        assert!(!read.must_staple());
        let without = certificate_with(Vec::new());
        assert_eq!(Certificate::read(&without).unwrap().ocsp_responder(), None);
    }

    #[test]
    fn a_certificate_may_demand_stapling() {
        let feature = |value: u8| {
            rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 24],
                der(SEQUENCE, &der(INTEGER, &[value])),
            )
        };
        let must = certificate_with(vec![feature(STATUS_REQUEST)]);
        assert!(Certificate::read(&must).unwrap().must_staple());
        // status_request_v2 (17) is another feature.
        let other = certificate_with(vec![feature(17)]);
        assert!(!Certificate::read(&other).unwrap().must_staple());
    }

    #[test]
    fn a_self_signed_certificate_is_its_own_issuer() {
        let der = certificate_with(Vec::new());
        let read = Certificate::read(&der).unwrap();
        assert!(!read.issuer.is_empty());
        assert_eq!(read.issuer, read.subject);
    }

    #[test]
    fn malformed_certificates_yield_nothing() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        for len in 0..der.len() {
            let _ = not_after(&der[..len]);
            if let Some(read) = Certificate::read(&der[..len]) {
                let _ = (read.ocsp_responder(), read.must_staple());
            }
        }
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x31, 0x00]), None);
    }
}
