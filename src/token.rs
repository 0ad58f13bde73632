//! How a `mio::Token` names the socket an event is for.
//!
//! A token is one `usize`; its two low bits say what kind of socket it is and
//! the rest is an index:
//!
//! | low bits | kind       | index                                   |
//! |----------|------------|-----------------------------------------|
//! | `00`     | client     | the connection's slot in the slab       |
//! | `01`     | upstream   | the upstream socket's *link*            |
//! | `10`     | listener   | position in the listener list           |
//! | `11`     | control    | 0: the signal pipe, 1: the command waker |
//!
//! Client tokens map straight to `(slot, Side::Client)`. Upstream sockets
//! keep one token for their whole life, even as they move between a client
//! connection and the idle pool, so that reusing a pooled connection costs no
//! `epoll_ctl`: the token names a link, and the link table
//! ([`crate::upstream::Upstreams`]) says who owns the socket now, giving
//! `(slot, Side::Upstream)` or "pooled".
//!
//! In the course (docs/learn): chapter 3 (a token per socket, a slab key in
//! it), with a kind in the low bits.

use std::fmt;

use mio::Token;

const KIND_BITS: u32 = 2;
const KIND_MASK: usize = (1 << KIND_BITS) - 1;
const CLIENT: usize = 0;
const UPSTREAM: usize = 1;
const LISTENER: usize = 2;
const CONTROL: usize = 3;

/// The largest index a token can carry.
pub const MAX_INDEX: usize = usize::MAX >> KIND_BITS;

/// Which socket of a connection an event concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}

/// A decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Client {
        slot: usize,
    },
    Upstream {
        link: usize,
    },
    Listener {
        index: usize,
    },
    /// A signal arrived (see `control`).
    Signals,
    /// The main thread sent this worker a command (see `control`).
    Commands,
    /// The password thread finished checks (see `auth::checker`).
    Passwords,
}

impl Target {
    pub fn token(self) -> Token {
        let (index, kind) = match self {
            Target::Client { slot } => (slot, CLIENT),
            Target::Upstream { link } => (link, UPSTREAM),
            Target::Listener { index } => (index, LISTENER),
            Target::Signals => (0, CONTROL),
            Target::Commands => (1, CONTROL),
            Target::Passwords => (2, CONTROL),
        };
        debug_assert!(index <= MAX_INDEX, "token index overflow");
        Token((index << KIND_BITS) | kind)
    }

    /// `None` for tokens ferry never hands out.
    pub fn from_token(token: Token) -> Option<Target> {
        let index = token.0 >> KIND_BITS;
        match token.0 & KIND_MASK {
            CLIENT => Some(Target::Client { slot: index }),
            UPSTREAM => Some(Target::Upstream { link: index }),
            LISTENER => Some(Target::Listener { index }),
            CONTROL if index == 0 => Some(Target::Signals),
            CONTROL if index == 1 => Some(Target::Commands),
            CONTROL if index == 2 => Some(Target::Passwords),
            _ => None,
        }
    }
}

/// `#12/client`: how logs name one socket of a connection.
pub struct SocketName(pub usize, pub Side);

impl fmt::Display for SocketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}/{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for index in [0, 1, 2, 3, 4, 1023, 65_536, MAX_INDEX] {
            for target in [
                Target::Client { slot: index },
                Target::Upstream { link: index },
                Target::Listener { index },
            ] {
                assert_eq!(Target::from_token(target.token()), Some(target));
            }
        }
    }

    #[test]
    fn kinds_never_collide() {
        let client = Target::Client { slot: 5 }.token();
        let upstream = Target::Upstream { link: 5 }.token();
        let listener = Target::Listener { index: 5 }.token();
        assert_ne!(client, upstream);
        assert_ne!(client, listener);
        assert_ne!(upstream, listener);
    }

    #[test]
    fn control_tokens_are_the_only_ones_of_their_kind() {
        assert_eq!(Target::from_token(Token(3)), Some(Target::Signals));
        assert_eq!(Target::from_token(Token(7)), Some(Target::Commands));
        assert_eq!(Target::from_token(Token(11)), Some(Target::Passwords));
        assert_eq!(Target::from_token(Token(15)), None);
        assert_eq!(Target::from_token(Token(usize::MAX)), None);
    }

    #[test]
    fn display() {
        assert_eq!(SocketName(12, Side::Client).to_string(), "#12/client");
    }
}
