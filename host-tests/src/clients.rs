//! Many client addresses from one machine. The shipped gateway limits
//! handshakes per client address, so a test that plays many users gives
//! each one its own address in 127.0.0.0/8 (Linux answers on all of it), and
//! a test that plays one abusive client keeps to one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpSocket, TcpStream};

/// The address of simulated user `i` of group `group` (`127.<group>.x.y`).
/// Groups keep populations apart (legitimate users, a flood). Group 0 is
/// taken by the gateway and the stand-ins (`127.0.0.n`).
pub fn user_address(group: u8, i: usize) -> IpAddr {
    // x and y from 1 to 254: never a .0 or a .255.
    let i = i % (254 * 254);
    let (hi, lo) = (1 + i / 254, 1 + i % 254);
    let byte = |n: usize| u8::try_from(n).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, group.max(1), byte(hi), byte(lo)))
}

/// A pool of `size` user addresses handed out in turn: for a test whose
/// load is many users' and not one client's.
pub struct UserPool {
    group: u8,
    size: usize,
    next: AtomicUsize,
}

impl UserPool {
    pub const fn new(group: u8, size: usize) -> UserPool {
        UserPool {
            group,
            size,
            next: AtomicUsize::new(0),
        }
    }

    /// The next user's address.
    pub fn next(&self) -> IpAddr {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        user_address(self.group, n % self.size.max(1))
    }
}

/// Many users: the pool the load tests (hostile bytes, fuzzing, load,
/// soak) draw from, so they stay under the per-client limit and measure what
/// they are about. 200 users at 20 handshakes/s each is more than the
/// gateway-wide 1000/s.
pub static MANY_USERS: UserPool = UserPool::new(3, 200);

/// A TCP connection to `addr` from `source` (any port), or from the
/// kernel's choice when `None`.
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_per_user_and_group_and_never_the_gateways() {
        let a: Vec<_> = (0..600).map(|i| user_address(4, i)).collect();
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 600);
        assert_ne!(user_address(4, 0), user_address(5, 0));
        assert_ne!(user_address(0, 0), "127.0.0.1".parse::<IpAddr>().unwrap());
        let pool = UserPool::new(6, 3);
        let got: Vec<_> = (0..4).map(|_| pool.next()).collect();
        assert_eq!(got[0], got[3]);
        assert_ne!(got[0], got[1]);
    }

    #[tokio::test]
    async fn connects_from_the_address_it_is_given() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let from = user_address(7, 5);
        let (client, accepted) = tokio::join!(tcp_connect(addr, Some(from)), listener.accept());
        let (_, peer) = accepted.unwrap();
        assert_eq!(peer.ip(), from);
        assert_eq!(client.unwrap().local_addr().unwrap().ip(), from);
    }
}
