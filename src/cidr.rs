//! nginx's networks, `ADDRESS/PREFIX`: whether one holds an address. Below
//! the configuration (`allow`/`deny`, `set_real_ip_from`) and the variables
//! (`geo`), which both ask.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::net::IpAddr;

/// Whether `network/prefix` holds `address`. An IPv4 network also holds an
/// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`), as nginx's do.
pub fn holds(network: IpAddr, prefix: u8, address: IpAddr) -> bool {
    let address = match (network, address) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        (_, address) => address,
    };
    match (network, address) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_their_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(holds(ip("10.0.0.0"), 8, ip("10.1.2.3")));
        assert!(!holds(ip("10.0.0.0"), 8, ip("11.0.0.1")));
        assert!(holds(ip("0.0.0.0"), 0, ip("192.0.2.1")));
        assert!(holds(ip("10.0.0.0"), 8, ip("::ffff:10.0.0.1")));
        assert!(holds(ip("2001:db8::"), 32, ip("2001:db8::1")));
        assert!(!holds(ip("2001:db8::"), 32, ip("10.0.0.1")));
        assert!(holds(ip("127.0.0.1"), 32, ip("127.0.0.1")));
    }
}
