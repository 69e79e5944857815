//! Source addresses for outgoing TCP connections (`load --local-address`), taken in turn,
//! so that one machine can hold more connections to one server than one address's
//! ephemeral port range allows.
//!
//! A socket can only connect to an address of its own family, so each connection takes
//! the next source address of the family of the address it dials; a server address of a
//! family no source address has is skipped (and if that leaves none, the connect fails).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// The source addresses to bind outgoing connections to, in round-robin order; empty (the
/// default) lets the system choose. Clones share the turn, so every connection made with
/// one [`ClientConfig`](super::ClientConfig) takes the next address.
#[derive(Clone, Debug, Default)]
pub struct LocalAddresses {
    /// As given, in order.
    addresses: Arc<[IpAddr]>,
    /// How many choices have been made so far (the turn).
    turn: Arc<AtomicUsize>,
}

/// Which source address a connection to one server address uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// No source address was given: the system chooses.
    Any,
    /// Bind to this address (port 0: the system chooses the port).
    Bind(IpAddr),
    /// Source addresses were given, none of the server address's family.
    NoneOfFamily,
}

impl LocalAddresses {
    /// Binds connections to `addresses`, taken in turn.
    pub fn new(addresses: Vec<IpAddr>) -> Self {
        Self {
            addresses: addresses.into(),
            turn: Arc::default(),
        }
    }

    /// The addresses, as given.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Whether some source address can connect to `target` (is of its family), or no
    /// source address was given.
    pub fn can_reach(&self, target: IpAddr) -> bool {
        self.addresses.is_empty()
            || self
                .addresses
                .iter()
                .any(|local| local.is_ipv4() == target.is_ipv4())
    }

    /// The source address for the next connection to `target`: the next one, in turn, of
    /// `target`'s family.
    pub(crate) fn next_for(&self, target: SocketAddr) -> Source {
        if self.addresses.is_empty() {
            return Source::Any;
        }
        let same_family = |local: &&IpAddr| local.is_ipv4() == target.is_ipv4();
        let count = self.addresses.iter().filter(same_family).count();
        if count == 0 {
            return Source::NoneOfFamily;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        self.addresses
            .iter()
            .filter(same_family)
            .nth(turn % count)
            .map_or(Source::NoneOfFamily, |local| Source::Bind(*local))
    }
}

/// Opens a TCP connection to `target` from `source` (any port), or from wherever the
/// system chooses. A failure to bind says which address could not be bound; the OS error
/// (`(os error N)`) stays in the message, for counting failures by cause.
pub(crate) async fn connect_from(
    source: Option<IpAddr>,
    target: SocketAddr,
) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target).await;
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind to {source}: {e}")))?;
    socket.connect(target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn target(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn no_address_lets_the_system_choose() {
        let none = LocalAddresses::default();
        assert_eq!(none.next_for(target("127.0.0.1:80")), Source::Any);
        assert!(none.can_reach(ip("::1")));
    }

    #[test]
    fn connections_take_the_addresses_in_turn_and_clones_share_the_turn() {
        let local = LocalAddresses::new(vec![ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4")]);
        let clone = local.clone();
        let server = target("127.0.0.1:8080");
        let chosen: Vec<Source> = (0..7)
            .map(|n| {
                if n % 2 == 0 {
                    local.next_for(server)
                } else {
                    clone.next_for(server)
                }
            })
            .collect();
        let expected: Vec<Source> = ["2", "3", "4", "2", "3", "4", "2"]
            .iter()
            .map(|last| Source::Bind(ip(&format!("127.0.0.{last}"))))
            .collect();
        assert_eq!(chosen, expected);
    }

    #[test]
    fn each_server_address_takes_a_source_of_its_own_family() {
        let local = LocalAddresses::new(vec![ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.2")]);
        let v4 = target("192.0.2.10:443");
        let v6 = target("[2001:db8::10]:443");
        assert_eq!(local.next_for(v6), Source::Bind(ip("fd00::1")));
        assert!(matches!(local.next_for(v4), Source::Bind(IpAddr::V4(_))));
        assert_eq!(local.next_for(v6), Source::Bind(ip("fd00::1")));
        let only_v4 = LocalAddresses::new(vec![ip("127.0.0.2")]);
        assert_eq!(only_v4.next_for(v6), Source::NoneOfFamily);
        assert!(!only_v4.can_reach(ip("::1")));
        assert!(only_v4.can_reach(ip("127.0.0.1")));
    }
}
