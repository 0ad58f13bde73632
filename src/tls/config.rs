//! The `ssl_*` directives, with nginx's meaning, turned into one rustls
//! `ServerConfig` per `server` block; and the choice of that block by the
//! name a client asks for (SNI).
//!
//! nginx reads these at `http` and `server` level, a server's own lines
//! replacing the inherited ones directive by directive. Certificates are
//! loaded when the configuration is (so `-t` and a reload fail on a file
//! that does not load, and running connections keep the configuration they
//! started with).
//!
//! In the course (docs/learn): chapter 7, "The order": TLS under the same
//! reads and writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use rustls::crypto::ring as provider;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

use crate::config::parse::{ConfigError, Directive};
use crate::config::Config;

/// The `server` to serve a TLS client of `listener` that asked for
/// `server_name`, as nginx chooses: by `server_name`, else the address's
/// default server. `None` if that server has no certificate.
pub fn choose_server(
    config: &Config,
    listener: usize,
    server_name: Option<&str>,
) -> Option<Arc<rustls::ServerConfig>> {
    let index = crate::routing::select_server(config, listener, server_name.map(str::as_bytes));
    let chosen = config.servers.get(index);
    if chosen.is_some_and(|server| server.reject_handshake) {
        return None;
    }
    if let Some(tls) = chosen.and_then(|server| server.tls.clone()) {
        return Some(tls);
    }
    // A server without certificates: the address's default serves.
    let default = config
        .servers
        .get(config.listen.get(listener)?.default_server)?;
    default.tls.clone().filter(|_| !default.reject_handshake)
}

/// The `ssl_*` lines in force for one server: its own, else the http
/// block's.
struct Lines<'a> {
    http: &'a [Directive],
    server: &'a [Directive],
}

impl<'a> Lines<'a> {
    /// Every line named `name` of the innermost level that has one.
    fn all(&self, name: &str) -> Vec<&'a Directive> {
        let own: Vec<_> = self.server.iter().filter(|d| d.name == name).collect();
        if own.is_empty() {
            self.http.iter().filter(|d| d.name == name).collect()
        } else {
            own
        }
    }

    fn last(&self, name: &str) -> Option<&'a Directive> {
        self.all(name).pop()
    }
}

/// `ssl_buffer_size SIZE`: how much data goes into one TLS record (nginx's
/// default, 16k, is TLS's largest; a small one lets a browser start on
/// the first bytes sooner). rustls's limit counts the record's 5-byte
/// header on top of the data (and takes 32 bytes at least).
fn record_size(line: Option<&Directive>) -> Result<Option<usize>, ConfigError> {
    let Some(line) = line else {
        return Ok(None);
    };
    let size = crate::config::parse_size(&line.args[0])
        .and_then(|size| usize::try_from(size).ok())
        .ok_or_else(|| {
            ConfigError::at(
                format!("invalid value \"{}\"", line.args[0]),
                line.location(),
            )
        })?;
    const LARGEST_RECORD: usize = 16 * 1024;
    const HEADER: usize = 5;
    Ok((size < LARGEST_RECORD).then(|| (size + HEADER).max(32)))
}

/// `ssl_reject_handshake on|off` in force for a server (nginx 1.19.4+):
/// the catch-all `default_server` of a TLS address that serves no name.
pub fn rejects_handshake(http: &[Directive], server: &[Directive]) -> Result<bool, ConfigError> {
    let Some(line) = (Lines { http, server }).last("ssl_reject_handshake") else {
        return Ok(false);
    };
    match line.args[0].as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError::at(
            format!(
                "invalid value \"{other}\" in \"ssl_reject_handshake\" directive, \
                 it must be \"on\" or \"off\""
            ),
            line.location(),
        )),
    }
}

/// Builds the server's rustls configuration from its `ssl_*` lines, or
/// `None` if it has no certificate. `ssl` on a `listen` line demands one.
pub fn server_tls(
    http: &[Directive],
    server: &[Directive],
    listen_ssl: Option<&Directive>,
    base: &Path,
) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let lines = Lines { http, server };
    let certificates = lines.all("ssl_certificate");
    let keys = lines.all("ssl_certificate_key");
    let Some(listen) = listen_ssl else {
        // nginx checks certificates only where a listener uses them.
        return Ok(None);
    };
    if certificates.is_empty() {
        // A server that refuses every handshake needs no certificate.
        if rejects_handshake(http, server)? {
            return Ok(None);
        }
        return Err(ConfigError::at(
            "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
            listen.location(),
        ));
    }
    let mut provider = provider::default_provider();
    let versions = protocols(lines.last("ssl_protocols"))?;
    if let Some(ciphers) = lines.last("ssl_ciphers") {
        provider.cipher_suites = cipher_suites(ciphers, &provider.cipher_suites)?;
    }
    if let Some(curves) = lines.last("ssl_ecdh_curve") {
        provider.kx_groups = key_exchange_groups(curves, &provider.kx_groups)?;
    }
    if let Some(dhparam) = lines.last("ssl_dhparam") {
        // rustls offers no finite-field Diffie-Hellman suites: the file is
        // checked (nginx would load it) and otherwise has no effect.
        let path = resolve(base, &dhparam.args[0]);
        std::fs::metadata(&path).map_err(|e| {
            ConfigError::at(
                format!("cannot read \"{}\": {e}", path.display()),
                dhparam.location(),
            )
        })?;
    }
    let provider = Arc::new(provider);
    let stapling = super::stapling::Stapling::read(
        lines.last("ssl_stapling"),
        lines.last("ssl_stapling_file"),
        lines.last("ssl_stapling_responder"),
        lines.last("ssl_trusted_certificate"),
        base,
    )?;
    let mut pairs = Vec::new();
    for (index, certificate) in certificates.iter().enumerate() {
        let Some(key) = keys.get(index) else {
            return Err(ConfigError::at(
                format!(
                    "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                    certificate.args[0]
                ),
                certificate.location(),
            ));
        };
        let mut pair = load_pair(certificate, key, base, &provider)?;
        if let Some(stapling) = &stapling {
            let path = resolve(base, &certificate.args[0]);
            if let Some(response) = stapling.response_for(&pair.cert, &path, base)? {
                let mut stapled = (*pair).clone();
                stapled.ocsp = Some(response);
                pair = Arc::new(stapled);
            }
        }
        pairs.push(pair);
    }
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::at(format!("TLS: {e}"), listen.location()))?;
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certificates(pairs)));
    // HTTP/2 is not served yet: clients that offer it fall back by ALPN.
    // nginx also accepts HTTP/1.0 by ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    config.ignore_client_order = lines
        .last("ssl_prefer_server_ciphers")
        .is_some_and(|d| d.args.first().is_some_and(|a| a == "on"));
    config.session_storage = session_cache(lines.last("ssl_session_cache"))?;
    config.max_fragment_size = record_size(lines.last("ssl_buffer_size"))?;
    let tickets = lines
        .last("ssl_session_tickets")
        .is_none_or(|d| d.args.first().is_some_and(|a| a == "on"));
    if tickets {
        config.ticketer = provider::Ticketer::new()
            .map_err(|e| ConfigError::at(format!("TLS tickets: {e}"), listen.location()))?;
    }
    if let Some(timeout) = lines.last("ssl_session_timeout") {
        // rustls keeps sessions as long as the cache has room and tickets
        // for their own lifetime; nginx's timeout is checked for syntax.
        crate::config::parse_seconds(&timeout.args[0])
            .filter(|d| *d > Duration::ZERO)
            .ok_or_else(|| {
                ConfigError::at(
                    format!(
                        "invalid value \"{}\" in \"ssl_session_timeout\"",
                        timeout.args[0]
                    ),
                    timeout.location(),
                )
            })?;
    }
    Ok(Some(Arc::new(config)))
}

pub(super) fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// One certificate chain and its key, checked to belong together.
pub(super) fn load_pair(
    certificate: &Directive,
    key: &Directive,
    base: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let certificate_path = resolve(base, &certificate.args[0]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certificate_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            ConfigError::at(
                format!(
                    "cannot load certificate \"{}\": {e}",
                    certificate_path.display()
                ),
                certificate.location(),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::at(
            format!(
                "cannot load certificate \"{}\": no certificate in the file",
                certificate_path.display()
            ),
            certificate.location(),
        ));
    }
    if let Some(leaf) = chain.first() {
        warn_if_expired(&certificate_path, leaf);
    }
    let key_path = resolve(base, &key.args[0]);
    // PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) and SEC1
    // (`EC PRIVATE KEY`) alike.
    let key_der = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        ConfigError::at(
            format!(
                "cannot load certificate key \"{}\": {e}",
                key_path.display()
            ),
            key.location(),
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| {
        ConfigError::at(
            format!(
                "certificate \"{}\" and key \"{}\" do not go together: {e}",
                certificate_path.display(),
                key_path.display()
            ),
            key.location(),
        )
    })?;
    Ok(Arc::new(certified))
}

/// An expired certificate still loads (clients will refuse it): a warning,
/// as `nginx -t` gives, at every load, so `-t` and a reload say it too.
fn warn_if_expired(path: &Path, leaf: &CertificateDer<'_>) {
    let Some(not_after) = super::certificate::not_after(leaf) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if not_after < now {
        let (year, month, day) = crate::http::date::civil_from_days(not_after.div_euclid(86_400));
        warn!(
            "certificate \"{}\" expired on {year:04}-{month:02}-{day:02}",
            path.display()
        );
    }
}

/// A server's certificates (RSA and ECDSA, say): the first whose key can
/// sign with a scheme the client offers.
#[derive(Debug)]
struct Certificates(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|pair| pair.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// `ssl_protocols`: TLSv1.2 and TLSv1.3; the older ones are refused.
pub(super) fn protocols(
    directive: Option<&Directive>,
) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let Some(directive) = directive else {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    };
    let mut versions = Vec::new();
    for name in &directive.args {
        match name.as_str() {
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                return Err(ConfigError::at(
                    format!(
                        "\"{}\": {name} is not supported (it is broken or \
                         deprecated, RFC 8996); use TLSv1.2 and TLSv1.3",
                        directive.name
                    ),
                    directive.location(),
                ))
            }
            _ => {
                return Err(ConfigError::at(
                    format!("invalid value \"{name}\" in \"{}\"", directive.name),
                    directive.location(),
                ))
            }
        }
    }
    Ok(versions)
}

/// `ssl_ciphers`: an OpenSSL cipher string, evaluated over the TLS 1.2
/// suites rustls offers (OpenSSL's list does not govern TLS 1.3 either).
/// A string that selects none of them is an error, as in nginx.
pub(super) fn cipher_suites(
    directive: &Directive,
    offered: &[SupportedCipherSuite],
) -> Result<Vec<SupportedCipherSuite>, ConfigError> {
    let text = &directive.args[0];
    let tls12: Vec<SupportedCipherSuite> = offered
        .iter()
        .copied()
        .filter(|s| s.tls13().is_none())
        .collect();
    let chosen = openssl_cipher_list(text, &tls12);
    if chosen.is_empty() {
        let names: Vec<&str> = tls12
            .iter()
            .map(|s| openssl_suite_name(s.suite()))
            .collect();
        return Err(ConfigError::at(
            format!(
                "\"{}\" \"{text}\" selects none of the TLS 1.2 cipher suites \
                 ferry offers ({})",
                directive.name,
                names.join(":")
            ),
            directive.location(),
        ));
    }
    let mut suites: Vec<SupportedCipherSuite> = offered
        .iter()
        .copied()
        .filter(|s| s.tls13().is_some())
        .collect();
    suites.extend(chosen);
    Ok(suites)
}

/// OpenSSL's name for each suite rustls's ring provider offers: what
/// people paste into `ssl_ciphers`, and what `$ssl_cipher` prints.
pub fn openssl_suite_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "",
    }
}

/// The words of an OpenSSL cipher string that describe a suite.
fn suite_words(suite: CipherSuite) -> Vec<String> {
    let name = openssl_suite_name(suite).to_string();
    let mut words = vec![
        name.clone(),
        "ALL".into(),
        "DEFAULT".into(),
        "HIGH".into(),
        "TLSv1.2".into(),
        "ECDHE".into(),
        "EECDH".into(),
        "kECDHE".into(),
        "kEECDH".into(),
        "ECDH".into(),
    ];
    if name.contains("-ECDSA-") {
        words.extend(["ECDSA".into(), "aECDSA".into()]);
    }
    if name.contains("-RSA-") {
        words.push("aRSA".into());
    }
    if name.contains("AES") {
        words.extend(["AES".into(), "AESGCM".into()]);
    }
    if name.contains("AES128") {
        words.push("AES128".into());
    }
    if name.contains("AES256") {
        words.push("AES256".into());
    }
    if name.contains("CHACHA20") {
        words.extend(["CHACHA20".into(), "CHACHA20-POLY1305".into()]);
    }
    words.push(if name.ends_with("SHA384") {
        "SHA384".into()
    } else {
        "SHA256".into()
    });
    words
}

/// Evaluates `text` as OpenSSL does over `suites`: `A:B` adds, `!A` removes
/// for good, `-A` removes, `+A` moves to the end, `A+B` is both; names
/// rustls does not have (RC4, DHE, aNULL, MD5, …) match nothing.
fn openssl_cipher_list(text: &str, suites: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    let words: Vec<Vec<String>> = suites.iter().map(|s| suite_words(s.suite())).collect();
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned: Vec<usize> = Vec::new();
    for token in text.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if token.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: no bearing on these suites.
        }
        let (op, atom) = match token.as_bytes()[0] {
            b'!' | b'-' | b'+' => (token.as_bytes()[0], &token[1..]),
            _ => (b' ', token),
        };
        let matches = |i: &usize| {
            atom.split('+')
                .all(|part| words[*i].iter().any(|w| w.eq_ignore_ascii_case(part)))
        };
        let matching: Vec<usize> = (0..suites.len()).filter(matches).collect();
        match op {
            b'!' => {
                chosen.retain(|i| !matching.contains(i));
                banned.extend(matching);
            }
            b'-' => chosen.retain(|i| !matching.contains(i)),
            b'+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    chosen.iter().partition(|i| matching.contains(i));
                chosen = kept;
                chosen.extend(moved);
            }
            _ => {
                for i in matching {
                    if !chosen.contains(&i) && !banned.contains(&i) {
                        chosen.push(i);
                    }
                }
            }
        }
    }
    chosen
        .into_iter()
        .filter_map(|i| suites.get(i).copied())
        .collect()
}

/// `ssl_ecdh_curve`: `auto`, or a `:`-separated list of curve names.
fn key_exchange_groups(
    directive: &Directive,
    offered: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, ConfigError> {
    let text = &directive.args[0];
    if text == "auto" {
        return Ok(offered.to_vec());
    }
    let mut groups = Vec::new();
    for name in text.split(':') {
        let wanted = match name {
            "X25519" | "x25519" => rustls::NamedGroup::X25519,
            "prime256v1" | "secp256r1" | "P-256" => rustls::NamedGroup::secp256r1,
            "secp384r1" | "P-384" => rustls::NamedGroup::secp384r1,
            _ => {
                return Err(ConfigError::at(
                    format!("\"ssl_ecdh_curve\": curve \"{name}\" is not supported (X25519, prime256v1, secp384r1)"),
                    directive.location(),
                ))
            }
        };
        if let Some(group) = offered.iter().find(|g| g.name() == wanted) {
            groups.push(*group);
        }
    }
    Ok(groups)
}

/// `ssl_session_cache`: nginx's `off`/`none`, `builtin[:size]` and
/// `shared:name:size` (one megabyte holds about 4,000 sessions) become one
/// in-memory cache per server, shared by every worker.
fn session_cache(
    directive: Option<&Directive>,
) -> Result<Arc<dyn rustls::server::StoresServerSessions + Send + Sync>, ConfigError> {
    let Some(directive) = directive else {
        // nginx's default is `none`: clients may resume, nothing is kept.
        return Ok(Arc::new(rustls::server::NoServerSessionStorage {}));
    };
    let mut sessions = 0usize;
    for value in &directive.args {
        let invalid = || {
            ConfigError::at(
                format!("invalid session cache \"{value}\""),
                directive.location(),
            )
        };
        if value == "off" || value == "none" {
            return Ok(Arc::new(rustls::server::NoServerSessionStorage {}));
        } else if value == "builtin" {
            sessions += 20_480;
        } else if let Some(size) = value.strip_prefix("builtin:") {
            sessions += size.parse::<usize>().map_err(|_| invalid())?;
        } else if let Some(rest) = value.strip_prefix("shared:") {
            let (_, size) = rest.rsplit_once(':').ok_or_else(invalid)?;
            let bytes = crate::config::parse_size(size).ok_or_else(invalid)?;
            sessions += usize::try_from(bytes / 256).unwrap_or(usize::MAX);
        } else {
            return Err(invalid());
        }
    }
    if sessions == 0 {
        warn!("ssl_session_cache holds no session");
    }
    Ok(ServerSessionMemoryCache::new(sessions.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls12() -> Vec<SupportedCipherSuite> {
        provider::default_provider()
            .cipher_suites
            .into_iter()
            .filter(|s| s.tls13().is_none())
            .collect()
    }

    fn names(text: &str) -> Vec<String> {
        openssl_cipher_list(text, &tls12())
            .iter()
            .map(|s| openssl_suite_name(s.suite()).to_string())
            .collect()
    }

    #[test]
    fn every_suite_has_its_openssl_name() {
        for suite in provider::default_provider().cipher_suites {
            let name = openssl_suite_name(suite.suite());
            assert!(!name.is_empty(), "{:?}", suite.suite());
            // TLS 1.3 suites keep their IANA names, TLS 1.2 ones OpenSSL's.
            assert_eq!(suite.tls13().is_some(), name.starts_with("TLS_"), "{name}");
        }
    }

    #[test]
    fn openssl_names_are_what_people_paste() {
        let all = names("ALL");
        assert!(
            all.contains(&"ECDHE-ECDSA-AES128-GCM-SHA256".to_string()),
            "{all:?}"
        );
        assert!(
            all.contains(&"ECDHE-RSA-CHACHA20-POLY1305".to_string()),
            "{all:?}"
        );
        assert!(
            all.contains(&"ECDHE-RSA-AES256-GCM-SHA384".to_string()),
            "{all:?}"
        );
    }

    #[test]
    fn cipher_strings_as_pasted_select_what_openssl_would() {
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 6);
        // Mozilla's intermediate list, in its order; the DHE suites are not
        // rustls's and select nothing.
        let mozilla = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
                       ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
                       ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                       DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        let chosen = names(mozilla);
        assert_eq!(chosen.len(), 6);
        assert_eq!(chosen[0], "ECDHE-ECDSA-AES128-GCM-SHA256");
        assert_eq!(chosen[5], "ECDHE-RSA-CHACHA20-POLY1305");
        assert_eq!(names("ECDHE+AESGCM:!aRSA").len(), 2);
        assert_eq!(names("HIGH:!CHACHA20").len(), 4);
        assert_eq!(
            names("HIGH:-AES128:AES128")
                .last()
                .map(|n| n.contains("AES128")),
            Some(true)
        );
        assert_eq!(
            names("CHACHA20:+ECDSA"),
            vec![
                "ECDHE-RSA-CHACHA20-POLY1305".to_string(),
                "ECDHE-ECDSA-CHACHA20-POLY1305".to_string()
            ]
        );
        assert!(names("RC4:3DES:DHE-RSA-AES128-SHA").is_empty());
        assert!(names("HIGH:!ECDHE").is_empty());
    }
}
