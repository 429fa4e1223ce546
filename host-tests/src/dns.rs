//! A tiny authoritative DNS responder over UDP, for Envoy's c-ares resolver.
//!
//! Answers `A` queries from a name -> IPv4 map (names are case-insensitive,
//! a trailing dot is ignored). For a known name, other query types (e.g.
//! `AAAA`) get an empty NOERROR answer; unknown names get NXDOMAIN. Only
//! standard queries (opcode 0) with one question are answered; other
//! opcodes get NOTIMP, malformed packets FORMERR (or nothing if not even the
//! header is there). Every query is recorded ([`DnsServer::queries`]).
//!
//! Point Envoy at it with:
//!
//! ```yaml
//! typed_dns_resolver_config:
//!   name: envoy.network.dns_resolver.cares
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
//!     resolvers: [{socket_address: {address: 127.0.0.1, port_value: PORT}}]
//!     dns_resolver_options: {no_default_search_domain: true}
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Response code: no error.
pub const RCODE_NOERROR: u8 = 0;
/// Response code: format error.
pub const RCODE_FORMERR: u8 = 1;
/// Response code: no such name.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Response code: not implemented.
pub const RCODE_NOTIMP: u8 = 4;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One query the responder answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuery {
    /// Name asked for (lowercase, no trailing dot).
    pub name: String,
    /// Query type (1 = A, 28 = AAAA, ...).
    pub qtype: u16,
    /// Response code sent.
    pub rcode: u8,
    /// Addresses answered.
    pub answers: Vec<Ipv4Addr>,
}

type Records = Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>;

/// A running DNS responder; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    records: Records,
    queries: Arc<Mutex<Vec<DnsQuery>>>,
    ttl: u32,
    task: JoinHandle<()>,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Start on 127.0.0.1 (ephemeral port) with these records, TTL 5 s.
    pub async fn start<I, S>(records: I) -> Result<DnsServer>
    where
        I: IntoIterator<Item = (S, Ipv4Addr)>,
        S: AsRef<str>,
    {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), records, 5).await
    }

    /// Start on `addr` with these records and this TTL (seconds).
    pub async fn start_on<I, S>(addr: SocketAddr, records: I, ttl: u32) -> Result<DnsServer>
    where
        I: IntoIterator<Item = (S, Ipv4Addr)>,
        S: AsRef<str>,
    {
        let sock = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding DNS responder on {addr}"))?;
        let addr = sock.local_addr()?;
        let mut map: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        for (n, ip) in records {
            map.entry(normalize(n.as_ref())).or_default().push(ip);
        }
        let records: Records = Arc::new(Mutex::new(map));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (r2, q2) = (records.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let snapshot = lock(&r2).clone();
                if let Some((resp, q)) = answer(&buf[..n], &snapshot, ttl) {
                    if let Some(q) = q {
                        lock(&q2).push(q);
                    }
                    let _ = sock.send_to(&resp, peer).await;
                }
            }
        });
        Ok(DnsServer {
            addr,
            records,
            queries,
            ttl,
            task,
        })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TTL sent in answers.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Replace the addresses of `name`.
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        lock(&self.records).insert(normalize(name), ips.to_vec());
    }

    /// Add one address to `name`.
    pub fn insert(&self, name: &str, ip: Ipv4Addr) {
        lock(&self.records)
            .entry(normalize(name))
            .or_default()
            .push(ip);
    }

    /// Forget `name` (it will get NXDOMAIN).
    pub fn remove(&self, name: &str) {
        lock(&self.records).remove(&normalize(name));
    }

    /// Queries answered so far.
    pub fn queries(&self) -> Vec<DnsQuery> {
        lock(&self.queries).clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parse a name starting at `pos` (no compression pointers in questions).
/// Returns the name and the position after it.
fn parse_name(pkt: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *pkt.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            return Some((labels.join("."), pos));
        }
        if len & 0xC0 != 0 {
            return None; // compression or extended label: not in a question
        }
        let label = pkt.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
        if pos > 255 + 12 {
            return None;
        }
    }
}

fn u16_at(pkt: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*pkt.get(pos)?, *pkt.get(pos + 1)?]))
}

/// Build the answer to `query`. `None` if the packet is not even a DNS
/// header (or is itself a response).
pub fn answer(
    query: &[u8],
    records: &HashMap<String, Vec<Ipv4Addr>>,
    ttl: u32,
) -> Option<(Vec<u8>, Option<DnsQuery>)> {
    if query.len() < 12 {
        return None;
    }
    let flags = u16_at(query, 2)?;
    if flags & 0x8000 != 0 {
        return None; // a response, not a query
    }
    let opcode = (flags >> 11) & 0x0F;
    let rd = flags & 0x0100;
    let qdcount = u16_at(query, 4)?;
    let header = |rcode: u8, qd: u16, an: u16| {
        let mut h = Vec::with_capacity(512);
        h.extend_from_slice(&query[0..2]);
        let f: u16 = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | u16::from(rcode);
        h.extend_from_slice(&f.to_be_bytes());
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&an.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h
    };
    if opcode != 0 {
        return Some((header(RCODE_NOTIMP, 0, 0), None));
    }
    if qdcount != 1 {
        return Some((header(RCODE_FORMERR, 0, 0), None));
    }
    let Some((name, pos)) = parse_name(query, 12) else {
        return Some((header(RCODE_FORMERR, 0, 0), None));
    };
    let (Some(qtype), Some(qclass)) = (u16_at(query, pos), u16_at(query, pos + 2)) else {
        return Some((header(RCODE_FORMERR, 0, 0), None));
    };
    let question = &query[12..pos + 4];
    let name = normalize(&name);
    let known = records.get(&name);
    let (rcode, answers): (u8, Vec<Ipv4Addr>) = match known {
        None => (RCODE_NXDOMAIN, vec![]),
        Some(ips) if qtype == TYPE_A && qclass == 1 => (RCODE_NOERROR, ips.clone()),
        Some(_) => (RCODE_NOERROR, vec![]),
    };
    let mut out = header(rcode, 1, answers.len() as u16);
    out.extend_from_slice(question);
    for ip in &answers {
        out.extend_from_slice(&[0xC0, 0x0C]); // pointer to the question name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some((
        out,
        Some(DnsQuery {
            name,
            qtype,
            rcode,
            answers,
        }),
    ))
}

/// Build a standard query packet (recursion desired) for tests.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn ask(server: &DnsServer, id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&build_query(id, name, qtype), server.addr())
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("DNS answer timed out")
            .unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn answers_a_nxdomain_and_empty_aaaa() {
        let server = DnsServer::start([("vesxi01.sec.lab", Ipv4Addr::new(127, 0, 0, 2))])
            .await
            .unwrap();

        // A for a known name, asked in mixed case with a trailing dot.
        let r = ask(&server, 0x1234, "VESXI01.sec.lab.", TYPE_A).await;
        assert_eq!(&r[0..2], &[0x12, 0x34], "id echoed");
        let flags = u16_at(&r, 2).unwrap();
        assert_eq!(flags & 0x8000, 0x8000, "QR");
        assert_eq!(flags & 0x0400, 0x0400, "AA");
        assert_eq!(flags & 0x0100, 0x0100, "RD copied");
        assert_eq!(flags & 0x000F, 0, "NOERROR");
        assert_eq!(u16_at(&r, 4), Some(1), "qdcount");
        assert_eq!(u16_at(&r, 6), Some(1), "ancount");
        // The answer is the last 16 bytes: ptr, type, class, ttl, len, ip.
        let a = &r[r.len() - 16..];
        assert_eq!(&a[0..2], &[0xC0, 0x0C]);
        assert_eq!(u16_at(a, 2), Some(TYPE_A));
        assert_eq!(u16_at(a, 4), Some(1));
        assert_eq!(&a[6..10], &5u32.to_be_bytes());
        assert_eq!(u16_at(a, 10), Some(4));
        assert_eq!(&a[12..16], &[127, 0, 0, 2]);
        // Question echoed verbatim (case preserved, as resolvers expect).
        let q = build_query(0x1234, "VESXI01.sec.lab.", TYPE_A);
        assert_eq!(&r[12..q.len()], &q[12..]);

        // AAAA for a known name: NOERROR, no answers.
        let r = ask(&server, 7, "vesxi01.sec.lab", TYPE_AAAA).await;
        assert_eq!(u16_at(&r, 2).unwrap() & 0x000F, 0);
        assert_eq!(u16_at(&r, 6), Some(0));

        // Unknown name: NXDOMAIN.
        let r = ask(&server, 8, "nope.sec.lab", TYPE_A).await;
        assert_eq!(u16_at(&r, 2).unwrap() & 0x000F, u16::from(RCODE_NXDOMAIN));
        assert_eq!(u16_at(&r, 6), Some(0));

        // Records can change at run time.
        server.insert("vesxi02.sec.lab", Ipv4Addr::new(127, 0, 0, 3));
        let r = ask(&server, 9, "vesxi02.sec.lab", TYPE_A).await;
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 3]);
        server.remove("vesxi02.sec.lab");
        let r = ask(&server, 10, "vesxi02.sec.lab", TYPE_A).await;
        assert_eq!(u16_at(&r, 2).unwrap() & 0x000F, u16::from(RCODE_NXDOMAIN));

        let qs = server.queries();
        assert_eq!(qs.len(), 5);
        assert_eq!(qs[0].name, "vesxi01.sec.lab");
        assert_eq!(qs[0].answers, vec![Ipv4Addr::new(127, 0, 0, 2)]);
    }

    #[test]
    fn malformed_packets() {
        let map = HashMap::new();
        assert!(answer(&[0u8; 5], &map, 5).is_none());
        // Header claims one question but there is none.
        let mut q = build_query(1, "a.b", TYPE_A);
        q.truncate(12);
        let (r, _) = answer(&q, &map, 5).unwrap();
        assert_eq!(u16_at(&r, 2).unwrap() & 0x000F, u16::from(RCODE_FORMERR));
        // Opcode 2 (status): NOTIMP.
        let mut q = build_query(1, "a.b", TYPE_A);
        q[2] |= 2 << 3;
        let (r, _) = answer(&q, &map, 5).unwrap();
        assert_eq!(u16_at(&r, 2).unwrap() & 0x000F, u16::from(RCODE_NOTIMP));
    }
}
