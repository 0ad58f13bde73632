//! TLS to upstream servers: `proxy_pass https://…` and the `proxy_ssl_*`
//! directives, with nginx's meaning, turned into one rustls `ClientConfig`
//! per distinct set of lines.
//!
//! nginx's defaults hold: the server's certificate is *not* verified unless
//! `proxy_ssl_verify on` (the handshake's signatures are, always), no SNI is
//! sent unless `proxy_ssl_server_name on`, sessions are reused
//! (`proxy_ssl_session_reuse on`), TLSv1.2 and TLSv1.3 are offered. The name
//! checked and sent is `proxy_ssl_name`, by default the host of `proxy_pass`
//! without its port; an IP address is checked against the certificate's IP
//! addresses and never sent as SNI (RFC 6066).
//!
//! The handshake itself runs in `ConnectingUpstream`, under
//! `proxy_connect_timeout` as in nginx (see `connection::upstream_side`);
//! once done, the phases read and write through the same `TlsStream` as a
//! TLS client's.
//!
//! In the course (docs/learn): chapter 7, "The order": TLS under the same
//! reads and writes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::ring as provider;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::{cipher_suites, load_pair, protocols, resolve};
use crate::config::parse::{ConfigError, Directive};

/// How one `proxy_pass https://…` location speaks TLS to its servers.
#[derive(Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// Checked against the certificate (when verifying) and sent as SNI
    /// (when `proxy_ssl_server_name on` and it is not an IP address).
    pub name: ServerName<'static>,
    /// Unique in the process (never 0, which means plain TCP): the idle
    /// pool gives a connection only to a location with the same settings,
    /// so a session verified for one name or made with one client
    /// certificate never carries another location's requests.
    pub id: u64,
    /// The lines it was built from and the default name: two locations
    /// with the same share one configuration and so one session cache.
    key: String,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl UpstreamTls {
    /// A new session for a connection to one of the servers.
    pub fn session(&self) -> Result<rustls::ClientConnection, rustls::Error> {
        rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
    }
}

/// The TLS settings of a location whose `proxy_pass` is `https://`, from
/// the `proxy_ssl_*` lines in force there (`lines`, innermost first wins),
/// `proxy_host` (the host of `proxy_pass`, for the default name) and the
/// ones built so far (`built`, reused when the lines are the same).
pub fn upstream_tls(
    lines: &[Directive],
    proxy_host: &str,
    proxy_pass: &Directive,
    base: &Path,
    built: &mut Vec<Arc<UpstreamTls>>,
) -> Result<Arc<UpstreamTls>, ConfigError> {
    let last = |name: &str| lines.iter().find(|d| d.name == name);
    let flag = |name: &str, default: bool| -> Result<bool, ConfigError> {
        match last(name) {
            None => Ok(default),
            Some(d) => match d.args[0].as_str() {
                "on" => Ok(true),
                "off" => Ok(false),
                other => Err(ConfigError::at(
                    format!(
                        "invalid value \"{other}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                        d.name
                    ),
                    d.location(),
                )),
            },
        }
    };
    let verify = flag("proxy_ssl_verify", false)?;
    let send_sni = flag("proxy_ssl_server_name", false)?;
    let reuse = flag("proxy_ssl_session_reuse", true)?;
    let name_text = match last("proxy_ssl_name") {
        Some(d) if d.args[0] == "$proxy_host" => strip_port(proxy_host).to_string(),
        Some(d) if d.args[0].contains('$') => {
            return Err(ConfigError::at(
                "variables in \"proxy_ssl_name\" other than $proxy_host are not supported yet",
                d.location(),
            ))
        }
        Some(d) => strip_port(&d.args[0]).to_string(),
        None => strip_port(proxy_host).to_string(),
    };
    let mut key = format!("{name_text}\n");
    for directive in lines {
        key.push_str(&directive.name);
        for arg in &directive.args {
            key.push(' ');
            key.push_str(arg);
        }
        key.push('\n');
    }
    if let Some(same) = built.iter().find(|tls| tls.key == key) {
        return Ok(Arc::clone(same));
    }
    let name_line = last("proxy_ssl_name").unwrap_or(proxy_pass);
    let name = ServerName::try_from(name_text.clone()).map_err(|_| {
        ConfigError::at(
            format!("invalid name \"{name_text}\" for TLS to the upstream"),
            name_line.location(),
        )
    })?;
    if let Some(depth) = last("proxy_ssl_verify_depth") {
        // webpki builds the path to a trusted certificate itself and has
        // no depth limit; the value is checked for syntax (see
        // docs/nginx-differences.md).
        if depth.args[0].parse::<u32>().is_err() {
            return Err(ConfigError::at(
                format!(
                    "invalid value \"{}\" in \"proxy_ssl_verify_depth\"",
                    depth.args[0]
                ),
                depth.location(),
            ));
        }
    }

    let mut crypto = provider::default_provider();
    if let Some(ciphers) = last("proxy_ssl_ciphers") {
        crypto.cipher_suites = cipher_suites(ciphers, &crypto.cipher_suites)?;
    }
    let versions = protocols(last("proxy_ssl_protocols"))?;
    let crypto = Arc::new(crypto);
    let signatures = crypto.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&crypto))
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::at(format!("TLS: {e}"), proxy_pass.location()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let Some(trusted) = last("proxy_ssl_trusted_certificate") else {
            let line = last("proxy_ssl_verify").unwrap_or(proxy_pass);
            return Err(ConfigError::at(
                "no proxy_ssl_trusted_certificate for proxy_ssl_verify",
                line.location(),
            ));
        };
        let roots = trusted_roots(trusted, base)?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&crypto))
            .build()
            .map_err(|e| ConfigError::at(format!("TLS: {e}"), trusted.location()))?
    } else {
        if let Some(trusted) = last("proxy_ssl_trusted_certificate") {
            // nginx loads the file even when it does not verify.
            trusted_roots(trusted, base)?;
        }
        Arc::new(SignaturesOnly(signatures))
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (
        last("proxy_ssl_certificate"),
        last("proxy_ssl_certificate_key"),
    ) {
        (Some(certificate), Some(key)) => {
            let pair = load_pair(certificate, key, base, &crypto)?;
            builder.with_client_cert_resolver(Arc::new(ClientCertificate(pair)))
        }
        (Some(certificate), None) => {
            return Err(ConfigError::at(
                format!(
                    "no \"proxy_ssl_certificate_key\" is defined for certificate \"{}\"",
                    certificate.args[0]
                ),
                certificate.location(),
            ))
        }
        _ => builder.with_no_client_auth(),
    };
    config.enable_sni = send_sni;
    config.resumption = if reuse {
        Resumption::default()
    } else {
        Resumption::disabled()
    };
    let tls = Arc::new(UpstreamTls {
        config: Arc::new(config),
        name,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        key,
    });
    built.push(Arc::clone(&tls));
    Ok(tls)
}

/// `proxy_pass https://HOST:PORT` → `HOST` (brackets of an IPv6 address
/// dropped), as nginx strips the port from the name it checks.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The certificates of `proxy_ssl_trusted_certificate`.
fn trusted_roots(directive: &Directive, base: &Path) -> Result<RootCertStore, ConfigError> {
    let path = resolve(base, &directive.args[0]);
    let fail = |why: String| {
        ConfigError::at(
            format!(
                "cannot load trusted certificates \"{}\": {why}",
                path.display()
            ),
            directive.location(),
        )
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(fail("no usable certificate in the file".to_string()));
    }
    Ok(roots)
}

/// `proxy_ssl_verify off` (nginx's default): any certificate is accepted,
/// but the handshake's signatures are still checked against it, so the
/// session is with whoever holds that certificate's key.
#[derive(Debug)]
struct SignaturesOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `proxy_ssl_certificate`: presented whenever the server asks.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_loses_its_port() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("127.0.0.1:443"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
    }
}
