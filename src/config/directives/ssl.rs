//! ngx_http_ssl_module: the `ssl_*` lines, read per server by
//! `crate::tls::config` (which gives them nginx's meaning).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{not_yet, on_off, spec, Arity, Handler, Spec, HS};

const fn ssl(name: &'static str, arity: Arity) -> Spec {
    spec(name, HS, arity, Handler::Elsewhere)
}

pub(super) const DIRECTIVES: &[Spec] = &[
    // Several certificate pairs per server (RSA and ECDSA, say).
    ssl("ssl_certificate", Arity::Exactly(1)).repeatable(),
    ssl("ssl_certificate_key", Arity::Exactly(1)).repeatable(),
    ssl("ssl_protocols", Arity::AtLeast(1)),
    ssl("ssl_ciphers", Arity::Exactly(1)),
    ssl("ssl_prefer_server_ciphers", Arity::Exactly(1)),
    ssl("ssl_session_cache", Arity::Between(1, 2)),
    ssl("ssl_session_timeout", Arity::Exactly(1)),
    ssl("ssl_session_tickets", Arity::Exactly(1)),
    ssl("ssl_dhparam", Arity::Exactly(1)),
    ssl("ssl_ecdh_curve", Arity::Exactly(1)),
    ssl("ssl_stapling", Arity::Exactly(1)),
    ssl("ssl_reject_handshake", Arity::Exactly(1)),
    ssl("ssl_buffer_size", Arity::Exactly(1)),
    ssl("ssl_stapling_file", Arity::Exactly(1)),
    ssl("ssl_stapling_responder", Arity::Exactly(1)),
    ssl("ssl_trusted_certificate", Arity::Exactly(1)),
    spec(
        "ssl_stapling_verify",
        HS,
        Arity::Exactly(1),
        Handler::NoEffect {
            check: on_off,
            why: "it checks responses fetched from the responder, and ferry fetches none (see `ssl_stapling`)",
        },
    ),
    not_yet("ssl_client_certificate"),
    not_yet("ssl_conf_command"),
    not_yet("ssl_crl"),
    not_yet("ssl_early_data"),
    not_yet("ssl_ocsp"),
    not_yet("ssl_password_file"),
    not_yet("ssl_session_ticket_key"),
    not_yet("ssl_verify_client"),
    not_yet("ssl_verify_depth"),
];
