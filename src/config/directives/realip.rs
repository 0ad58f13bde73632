//! ngx_http_realip_module: `set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive`. What they decide is in `http/realip.rs`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Directive, Handler, Inherited, Spec, HSL};
use crate::config::parse::ConfigError;
use crate::config::Config;
use crate::http::realip::{RealIpHeader, TrustedSource};

pub(super) const DIRECTIVES: &[Spec] = &[
    spec(
        "set_real_ip_from",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(set_real_ip_from),
    )
    .repeatable(),
    spec(
        "real_ip_header",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(real_ip_header),
    ),
    spec(
        "real_ip_recursive",
        HSL,
        Arity::Exactly(1),
        Handler::Setting(real_ip_recursive),
    ),
];

/// `set_real_ip_from ADDRESS | CIDR | unix: | HOST` (a host name trusts
/// each of its addresses, as nginx resolves it at load).
fn set_real_ip_from(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let text = d.args[0].as_str();
    let sources = s.real_ip_from.get_or_insert_with(Vec::new);
    if text == "unix:" {
        sources.push(TrustedSource::Unix);
        return Ok(());
    }
    if let Some((address, prefix)) = super::access::network(d, text)? {
        sources.push(TrustedSource::Network(address, prefix));
        return Ok(());
    }
    let resolved: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&(text, 0))
        .map(|addrs| addrs.collect())
        .unwrap_or_default();
    if resolved.is_empty() {
        return Err(ConfigError::at(
            format!("host not found in set_real_ip_from \"{text}\""),
            d.location(),
        ));
    }
    for address in resolved {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        sources.push(TrustedSource::Network(address.ip(), prefix));
    }
    Ok(())
}

fn real_ip_header(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    let name = d.args[0].as_str();
    s.real_ip_header = Some(if name.eq_ignore_ascii_case("x-real-ip") {
        RealIpHeader::XRealIp
    } else if name.eq_ignore_ascii_case("x-forwarded-for") {
        RealIpHeader::XForwardedFor
    } else if name == "proxy_protocol" {
        RealIpHeader::ProxyProtocol
    } else {
        RealIpHeader::Field(name.to_string())
    });
    Ok(())
}

fn real_ip_recursive(d: &Directive, _: &Config, s: &mut Inherited) -> Result<(), ConfigError> {
    s.real_ip_recursive = Some(super::flag(d)?);
    Ok(())
}
