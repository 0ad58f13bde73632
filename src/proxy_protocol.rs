//! The PROXY protocol header (HAProxy's, versions 1 and 2): a load
//! balancer in front of ferry opens each connection with one line (v1) or
//! one binary block (v2) naming the client it accepted, then the client's
//! bytes follow. `listen … proxy_protocol` makes ferry require it.
//!
//! Sans-IO: [`parse`] reads the front of what a connection sent and returns
//! the header and its length, asks for more bytes, or refuses. It is
//! strict: the signature must match from the first byte, a v1 line must be
//! one of the spec's three forms within 107 bytes, a v2 block must have
//! version 2, a known command and an address block long enough for its
//! family. Anything else closes the connection (nginx: "broken header").
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the spec's figure).
const V1_MAX: usize = 107;
/// The longest v2 block ferry reads: 16 bytes of header and up to 4 KiB of
/// addresses and TLVs (the TLVs are skipped).
const V2_MAX: usize = 16 + 4096;

/// What a PROXY header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client's address and the address it connected to; `None` for
    /// `UNKNOWN` (v1) and `LOCAL` or unspecified families (v2): the
    /// balancer's own connection, such as a health check.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

impl ProxyHeader {
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(source, _)| source)
    }

    pub fn destination(&self) -> Option<SocketAddr> {
        self.addresses.map(|(_, destination)| destination)
    }
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// Neither `PROXY ` nor the v2 signature.
    Signature,
    /// A v1 line without CRLF within 107 bytes.
    TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6 SRC DST SPORT DPORT` or
    /// `PROXY UNKNOWN…`.
    V1Syntax,
    /// A v2 block with another version, an unknown command or family, or
    /// addresses shorter than its family needs.
    V2Invalid,
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyHeaderError::Signature => "no PROXY protocol signature",
            ProxyHeaderError::TooLong => "PROXY protocol v1 line too long",
            ProxyHeaderError::V1Syntax => "malformed PROXY protocol v1 line",
            ProxyHeaderError::V2Invalid => "invalid PROXY protocol v2 header",
        })
    }
}

/// Reads a header at the front of `bytes`: `Ok(None)` while it may still
/// be incomplete, else the header and its length in bytes.
pub fn parse(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let v1_prefix = b"PROXY ";
    let signature_so_far = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes.get(..n) == signature.get(..n)
    };
    if signature_so_far(V2_SIGNATURE) {
        return if bytes.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(bytes)
        };
    }
    if !signature_so_far(v1_prefix) {
        return Err(ProxyHeaderError::Signature);
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        // A bare LF, or no end in sight, is refused as soon as it is seen.
        if bytes.len() >= V1_MAX || bytes.contains(&b'\n') {
            return Err(if bytes.contains(&b'\n') {
                ProxyHeaderError::V1Syntax
            } else {
                ProxyHeaderError::TooLong
            });
        }
        return Ok(None);
    };
    if end + 2 > V1_MAX {
        return Err(ProxyHeaderError::TooLong);
    }
    let line = bytes.get(v1_prefix.len()..end).unwrap_or_default();
    let header = parse_v1(line).ok_or(ProxyHeaderError::V1Syntax)?;
    Ok(Some((header, end + 2)))
}

/// `TCP4 SRC DST SPORT DPORT`, `TCP6 …` or `UNKNOWN[ anything]`, single
/// spaces, decimal ports without leading zeros.
fn parse_v1(line: &[u8]) -> Option<ProxyHeader> {
    let line = std::str::from_utf8(line).ok()?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Some(ProxyHeader { addresses: None });
    }
    let mut parts = line.split(' ');
    let family = parts.next()?;
    let (source, destination) = (parts.next()?, parts.next()?);
    let (source_port, destination_port) = (port(parts.next()?)?, port(parts.next()?)?);
    if parts.next().is_some() {
        return None;
    }
    let (source, destination): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            IpAddr::V4(source.parse::<Ipv4Addr>().ok()?),
            IpAddr::V4(destination.parse::<Ipv4Addr>().ok()?),
        ),
        "TCP6" => (
            IpAddr::V6(source.parse::<Ipv6Addr>().ok()?),
            IpAddr::V6(destination.parse::<Ipv6Addr>().ok()?),
        ),
        _ => return None,
    };
    Some(ProxyHeader {
        addresses: Some((
            SocketAddr::new(source, source_port),
            SocketAddr::new(destination, destination_port),
        )),
    })
}

fn port(text: &str) -> Option<u16> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    (digits_only && !leading_zero)
        .then(|| text.parse().ok())
        .flatten()
}

fn parse_v2(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let Some(fixed) = bytes.get(12..16) else {
        return Ok(None);
    };
    let (version_command, family) = (fixed[0], fixed[1]);
    let length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if version_command >> 4 != 2 || 16 + length > V2_MAX {
        return Err(ProxyHeaderError::V2Invalid);
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyHeaderError::V2Invalid),
    };
    let Some(block) = bytes.get(16..16 + length) else {
        return Ok(None);
    };
    let at = |range: std::ops::Range<usize>| block.get(range).ok_or(ProxyHeaderError::V2Invalid);
    // Family (high nibble) and transport (low): 1 = STREAM, 2 = DGRAM.
    let addresses = match family {
        0x11 => {
            let source = Ipv4Addr::from(<[u8; 4]>::try_from(at(0..4)?).unwrap_or_default());
            let destination = Ipv4Addr::from(<[u8; 4]>::try_from(at(4..8)?).unwrap_or_default());
            let ports = at(8..12)?;
            Some((
                SocketAddr::new(source.into(), u16::from_be_bytes([ports[0], ports[1]])),
                SocketAddr::new(destination.into(), u16::from_be_bytes([ports[2], ports[3]])),
            ))
        }
        0x21 => {
            let source = Ipv6Addr::from(<[u8; 16]>::try_from(at(0..16)?).unwrap_or_default());
            let destination = Ipv6Addr::from(<[u8; 16]>::try_from(at(16..32)?).unwrap_or_default());
            let ports = at(32..36)?;
            Some((
                SocketAddr::new(source.into(), u16::from_be_bytes([ports[0], ports[1]])),
                SocketAddr::new(destination.into(), u16::from_be_bytes([ports[2], ports[3]])),
            ))
        }
        // UNSPEC, UDP and Unix sockets carry no TCP client for ferry.
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => None,
        _ => return Err(ProxyHeaderError::V2Invalid),
    };
    let addresses = if local { None } else { addresses };
    Ok(Some((ProxyHeader { addresses }, 16 + length)))
}

/// The v1 line nginx's stream proxy sends upstream with `proxy_protocol on`
/// (`ngx_proxy_protocol_write`): the client's address and the address it
/// connected to, `TCP4` or `TCP6` by the client's family, at most 107
/// bytes; `UNKNOWN` when the destination is not known. Appended to `out`.
pub fn write_v1(source: SocketAddr, destination: Option<SocketAddr>, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some(destination) = destination else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    );
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_line_ferry_writes_is_one_ferry_reads() {
        for (source, destination) in [
            ("192.0.2.1:56324", "127.0.0.1:9000"),
            ("[2001:db8::1]:65535", "[::1]:443"),
        ] {
            let (source, destination) = (source.parse().unwrap(), destination.parse().unwrap());
            let mut line = Vec::new();
            write_v1(source, Some(destination), &mut line);
            assert!(line.len() <= 107);
            let (header, used) = parse(&line).unwrap().unwrap();
            assert_eq!(used, line.len());
            assert_eq!(header.addresses, Some((source, destination)));
        }
        let mut line = Vec::new();
        write_v1("127.0.0.1:1".parse().unwrap(), None, &mut line);
        assert_eq!(line, b"PROXY UNKNOWN\r\n");
    }
    use super::*;

    fn source(bytes: &[u8]) -> Result<Option<(String, usize)>, ProxyHeaderError> {
        parse(bytes).map(|parsed| {
            parsed.map(|(header, len)| {
                let text = match header.addresses {
                    Some((s, d)) => format!("{s} -> {d}"),
                    None => "unknown".to_string(),
                };
                (text, len)
            })
        })
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn v1_lines_are_read_strictly() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            source(line),
            Ok(Some(("192.0.2.1:51000 -> 198.51.100.2:443".into(), 45)))
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            source(six),
            Ok(Some((
                "[2001:db8::1]:1 -> [2001:db8::2]:2".into(),
                six.len()
            )))
        );
        assert_eq!(
            source(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Ok(Some(("unknown".into(), 35)))
        );
        // Every prefix of a good line asks for more.
        for n in 0..line.len().min(44) {
            assert_eq!(source(&line[..n]), Ok(None), "{n}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 51000\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443 x\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 70000 2\r\n",
            b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
            b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        ] {
            assert!(source(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100], b"\r\n"].concat();
        assert_eq!(source(&long), Err(ProxyHeaderError::TooLong));
        assert_eq!(source(&long[..107]), Err(ProxyHeaderError::TooLong));
    }

    #[test]
    fn v2_blocks_are_read_strictly() {
        let four = [192, 0, 2, 1, 198, 51, 100, 2, 0xc7, 0x38, 0x01, 0xbb];
        let header = v2(1, 0x11, &four);
        assert_eq!(
            source(&header),
            Ok(Some(("192.0.2.1:51000 -> 198.51.100.2:443".into(), 28)))
        );
        for n in 0..header.len() {
            assert_eq!(source(&header[..n]), Ok(None), "{n}");
        }
        // TLVs after the addresses are skipped.
        let with_tlv = v2(1, 0x11, &[&four[..], &[0x04, 0x00, 0x01, 0x00]].concat());
        assert_eq!(source(&with_tlv).unwrap().unwrap().1, 32);
        let mut six = vec![0u8; 36];
        six[15] = 1;
        six[31] = 2;
        six[33] = 80;
        six[35] = 81;
        assert_eq!(
            source(&v2(1, 0x21, &six)),
            Ok(Some(("[::1]:80 -> [::2]:81".into(), 52)))
        );
        assert_eq!(
            source(&v2(0, 0x11, &four)),
            Ok(Some(("unknown".into(), 28)))
        );
        assert_eq!(source(&v2(1, 0x00, &[])), Ok(Some(("unknown".into(), 16))));
        for bad in [
            v2(1, 0x11, &four[..8]),
            v2(2, 0x11, &four),
            v2(1, 0x41, &four),
            [&V2_SIGNATURE[..], &[0x11, 0x11, 0, 12], &four[..]].concat(),
            [&V2_SIGNATURE[..11], b"X".as_slice()].concat(),
            [&V2_SIGNATURE[..], &[0x21, 0x11, 0xff, 0xff]].concat(),
        ] {
            assert!(source(&bad).is_err(), "{bad:?}");
        }
    }
}
