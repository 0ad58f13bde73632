//! `ssl_stapling`: an OCSP response sent with the certificate, so clients
//! need not ask the CA whether it was revoked. Decided per certificate at
//! load, as nginx's `ngx_ssl_stapling_certificate` decides:
//!
//! 1. `ssl_stapling_file FILE`: that DER response is stapled to every
//!    handshake that asks for one (rustls's `CertifiedKey::ocsp`).
//! 2. Otherwise nginx needs the issuer (in the chain, or among
//!    `ssl_trusted_certificate`) and a responder (`ssl_stapling_responder`
//!    or the certificate's own, `http://` only); without either it logs a
//!    warning and staples nothing. Certificates from Let's Encrypt have
//!    named no responder since 2025: this is where most sites end.
//! 3. With both, nginx fetches responses from the responder as it runs.
//!    ferry does not: it says so at load and staples nothing, which
//!    clients take as they take a certificate without a responder; a
//!    certificate that *must* be stapled (RFC 7633) is refused instead,
//!    since clients would refuse every handshake.
//!
//! `ssl_stapling_verify` checks fetched responses, so it has nothing to
//! check here.
//!
//! In the course (docs/learn): chapter 7, "The order": TLS under the same
//! reads and writes.

use std::path::Path;

use log::warn;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::certificate::Certificate;
use crate::config::parse::{ConfigError, Directive};

/// The stapling lines of one server, read once for all its certificates.
pub(super) struct Stapling<'a> {
    /// `ssl_stapling on`, where a refusal points.
    line: &'a Directive,
    file: Option<&'a Directive>,
    responder: Option<&'a Directive>,
    /// `ssl_trusted_certificate`: where an issuer may be found besides the
    /// chain.
    trusted: Vec<CertificateDer<'static>>,
}

impl<'a> Stapling<'a> {
    /// `None` unless `ssl_stapling on`. `ssl_trusted_certificate` is loaded
    /// either way, as nginx loads it.
    pub(super) fn read(
        stapling: Option<&'a Directive>,
        file: Option<&'a Directive>,
        responder: Option<&'a Directive>,
        trusted: Option<&'a Directive>,
        base: &Path,
    ) -> Result<Option<Stapling<'a>>, ConfigError> {
        let trusted = match trusted {
            Some(line) => load_trusted(line, base)?,
            None => Vec::new(),
        };
        let on = stapling.filter(|line| line.args.first().is_some_and(|a| a == "on"));
        Ok(on.map(|line| Stapling {
            line,
            file,
            responder,
            trusted,
        }))
    }

    /// The response to staple to `chain` (loaded from `certificate_path`),
    /// if any; nginx's warning logged where it staples nothing.
    pub(super) fn response_for(
        &self,
        chain: &[CertificateDer<'_>],
        certificate_path: &Path,
        base: &Path,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        if let Some(line) = self.file {
            return load_response(line, base).map(Some);
        }
        let name = certificate_path.display();
        let Some(leaf) = chain.first().and_then(|der| Certificate::read(der)) else {
            return Ok(None);
        };
        let candidates = chain.iter().skip(1).chain(&self.trusted);
        let issued_by = |der: &CertificateDer<'_>| {
            Certificate::read(der).is_some_and(|issuer| issuer.subject == leaf.issuer)
        };
        if !candidates.into_iter().any(issued_by) {
            warn!(
                "\"ssl_stapling\" ignored, issuer certificate not found for certificate \"{name}\""
            );
            return Ok(None);
        }
        let own = leaf.ocsp_responder().map(String::from_utf8_lossy);
        let Some(url) = self
            .responder
            .map(|line| line.args[0].as_str().into())
            .or(own)
        else {
            warn!("\"ssl_stapling\" ignored, no OCSP responder URL in the certificate \"{name}\"");
            return Ok(None);
        };
        if !has_http_prefix(&url) {
            warn!(
                "\"ssl_stapling\" ignored, invalid URL prefix in OCSP responder \"{url}\" \
                 in the certificate \"{name}\""
            );
            return Ok(None);
        }
        if leaf.must_staple() {
            return Err(ConfigError::at(
                format!(
                    "certificate \"{name}\" must be stapled (TLS feature status_request), \
                     and ferry does not fetch OCSP responses from \"{url}\": \
                     give one with \"ssl_stapling_file\""
                ),
                self.line.location(),
            ));
        }
        warn!(
            "\"ssl_stapling\" ignored for certificate \"{name}\": ferry does not fetch OCSP \
             responses from \"{url}\" (give one with \"ssl_stapling_file\")"
        );
        Ok(None)
    }
}

/// nginx fetches over plain HTTP only (`http://`, any case).
fn has_http_prefix(url: &str) -> bool {
    url.len() > 7
        && url
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
}

fn load_trusted(
    line: &Directive,
    base: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let path = super::config::resolve(base, &line.args[0]);
    let loaded: Result<Vec<_>, _> =
        CertificateDer::pem_file_iter(&path).and_then(|certs| certs.collect());
    match loaded {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(ConfigError::at(
            format!(
                "cannot load trusted certificates \"{}\": no certificate in the file",
                path.display()
            ),
            line.location(),
        )),
        Err(e) => Err(ConfigError::at(
            format!(
                "cannot load trusted certificates \"{}\": {e}",
                path.display()
            ),
            line.location(),
        )),
    }
}

/// `ssl_stapling_file`: a DER OCSPResponse, checked for its outer shape
/// (`SEQUENCE { responseStatus ENUMERATED, … }` filling the file) as
/// nginx's `d2i_OCSP_RESPONSE` refuses what is not one.
fn load_response(line: &Directive, base: &Path) -> Result<Vec<u8>, ConfigError> {
    let path = super::config::resolve(base, &line.args[0]);
    let bytes = std::fs::read(&path).map_err(|e| {
        ConfigError::at(
            format!("cannot read OCSP response \"{}\": {e}", path.display()),
            line.location(),
        )
    })?;
    if !is_ocsp_response(&bytes) {
        return Err(ConfigError::at(
            format!("\"{}\" is not a DER-encoded OCSP response", path.display()),
            line.location(),
        ));
    }
    Ok(bytes)
}

const ENUMERATED: u8 = 0x0A;

fn is_ocsp_response(bytes: &[u8]) -> bool {
    match super::certificate::element(bytes) {
        Some((0x30, contents, [])) => matches!(
            super::certificate::element(contents),
            Some((ENUMERATED, [_], _))
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_have_an_ocsp_shape() {
        // SEQUENCE { ENUMERATED 0, [0] { … } }
        assert!(is_ocsp_response(&[
            0x30, 0x07, 0x0A, 0x01, 0x00, 0xA0, 0x02, 0x05, 0x00
        ]));
        // tryLater (3), no body.
        assert!(is_ocsp_response(&[0x30, 0x03, 0x0A, 0x01, 0x03]));
        for bad in [
            &b"-----BEGIN CERTIFICATE-----"[..],
            &[],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0x30, 0x03, 0x0A, 0x01, 0x00, 0x00],
            &[0x30, 0x05, 0x0A, 0x01],
        ] {
            assert!(!is_ocsp_response(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_plain_http_responders() {
        assert!(has_http_prefix("http://r3.o.lencr.org"));
        assert!(has_http_prefix("HTTP://ocsp.example/"));
        assert!(!has_http_prefix("https://ocsp.example/"));
        assert!(!has_http_prefix("http://"));
    }
}
