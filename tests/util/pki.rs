//! Certificates made at test time (rcgen) and a TLS origin server that
//! says what each handshake was: for the TLS tests, both directions.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;

use super::{pattern, IO_TIMEOUT};

/// A test CA and leaf certificates it signed, written as PEM files.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_der: Vec<u8>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            // Each CA its own name: a stranger's CA is an unknown issuer.
            .push(
                DnType::CommonName,
                format!("ferry test CA {}", dir.display()),
            );
        let ca = params.self_signed(&key).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca: ca_path,
            ca_der: ca.der().to_vec(),
            ca_cert: ca,
            ca_key: key,
        }
    }

    /// `NAME.pem` and `NAME.key`: a certificate for `names`, signed by
    /// the CA, with `names[0]` as its common name.
    pub fn leaf(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.leaf_with(name, names, Vec::new())
    }

    /// [`Pki::leaf`] with extensions of the test's own.
    pub fn leaf_with(
        &self,
        name: &str,
        names: &[&str],
        extensions: Vec<rcgen::CustomExtension>,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.custom_extensions = extensions;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// The CA's private key, written as `ca.key` (for `openssl ocsp`).
    pub fn ca_key(&self) -> PathBuf {
        let path = self.dir.join("ca.key");
        std::fs::write(&path, self.ca_key.serialize_pem()).unwrap();
        path
    }
}

/// What a TLS origin saw of one handshake.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub resumed: bool,
    /// The name the client sent (SNI), if any.
    pub server_name: Option<String>,
    /// The client presented a certificate the origin's CA signed.
    pub client_certificate: bool,
}

/// An HTTPS origin with a certificate from `Pki` for `localhost` and
/// 127.0.0.1, keep-alive, routed by path: `/bytes/N` answers N pattern
/// bytes, anything else `hello`. With `client_ca`, it asks for a client
/// certificate (and takes a connection without one).
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub handshakes: Arc<Mutex<Vec<Handshake>>>,
    stop: Arc<AtomicBool>,
}

impl TlsOrigin {
    pub fn start(pki: &Pki, name: &str, ask_client_certificate: bool) -> TlsOrigin {
        let (cert, key) = pki.leaf(name, &["localhost", "127.0.0.1"]);
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if ask_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone().into()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (handshakes.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (config, seen) = (config.clone(), seen.clone());
                thread::spawn(move || serve_tls(stream, config, seen));
            }
        });
        TlsOrigin {
            addr,
            handshakes,
            stop,
        }
    }

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn serve_tls(
    mut socket: TcpStream,
    config: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Vec<Handshake>>>,
) {
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut socket).is_err() {
            return;
        }
    }
    seen.lock().unwrap().push(Handshake {
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        server_name: conn.server_name().map(str::to_owned),
        client_certificate: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
    });
    let mut stream = BufReader::new(rustls::StreamOwned::new(conn, socket));
    loop {
        let mut target = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if target.is_empty() {
                target = line.split(' ').nth(1).unwrap_or("/").to_string();
            }
            if line == "\r\n" {
                break;
            }
        }
        let body: Vec<u8> = match target.strip_prefix("/bytes/") {
            Some(size) => {
                let mut body = vec![0u8; size.parse().unwrap_or(0)];
                pattern(0, &mut body);
                body
            }
            None => b"hello".to_vec(),
        };
        let out = stream.get_mut();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if out.write_all(head.as_bytes()).is_err()
            || out.write_all(&body).is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}
