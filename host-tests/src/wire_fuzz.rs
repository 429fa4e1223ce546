//! A generator of structurally plausible, often hostile, HTTP/1.1 request
//! heads for driving a real Envoy with the module: methods, paths under and
//! outside the prefix, query shapes, duplicated and oversized headers,
//! random bytes in values, and tokens that are valid, truncated or mutated.
//!
//! Deterministic from a seed (splitmix64), so a failing run replays with
//! `MKSGATE_WIRE_FUZZ_SEED=<seed>`.

/// splitmix64 (the stand-in's, `standin::splitmix`): small, fast, good
/// enough to pick shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        crate::standin::splitmix(&mut self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() & 0xff) as u8
    }
}

const METHODS: [&[u8]; 14] = [
    b"GET", b"GET", b"GET", b"GET", b"GET", b"GET", b"GET", b"GET", b"POST", b"HEAD", b"OPTIONS",
    b"CONNECT", b"get", b"G\xc9T",
];
const PATHS: [&[u8]; 12] = [
    b"/console",
    b"/console",
    b"/console/",
    b"/console/x/../",
    b"/consoles",
    b"//console",
    b"/%63onsole",
    b"/console%2f",
    b"/",
    b"/healthz",
    b"/ticket/abc",
    b"/console/../ticket/abc",
];
const NAMES: [&[u8]; 11] = [
    b"Origin",
    b"Upgrade",
    b"Connection",
    b"x-mksgate-cluster",
    b"Cookie",
    b"User-Agent",
    b"X-Forwarded-For",
    b"Sec-WebSocket-Protocol",
    b"x-envoy-original-path",
    b"X-A",
    b"x-request-id",
];
/// Framing and routing headers a smuggler repeats or garbles; Envoy refuses
/// most such requests itself, so they are drawn rarely.
const FRAMING: [&[u8]; 3] = [b"Host", b"Content-Length", b"Transfer-Encoding"];

/// Which token a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    Valid,
    Truncated,
    Mutated,
    Garbage,
    Oversized,
    None,
}

/// A header value (or a damaged token): mostly bytes Envoy passes to the
/// filter (printable ASCII, obs-text 0x80-0xFF, tab), sometimes one control
/// byte or fully random bytes (Envoy's codec refuses most of those, and
/// that path is worth driving too).
fn value_bytes(rng: &mut Rng, out: &mut Vec<u8>) {
    let len = match rng.below(10) {
        0 => 0,
        1 => 9000 + rng.below(9000), // oversized: 431 territory
        _ => 1 + rng.below(40),
    };
    let mode = rng.below(20);
    let start = out.len();
    for _ in 0..len {
        let b = match mode {
            0..=9 => 0x21 + rng.byte() % 94,
            10..=16 => match rng.below(4) {
                0 => 0x80 | rng.byte(),
                1 => b'\t',
                _ => 0x21 + rng.byte() % 94,
            },
            _ => rng.byte(),
        };
        out.push(b);
    }
    if mode == 17 && len > 0 {
        // Exactly one control byte (CR and LF included).
        let at = start + rng.below(len);
        out[at] = rng.byte() & 0x1f;
    }
}

/// Builds one request head. `valid_token` is a fresh, valid token the
/// request may carry (as is, or damaged).
pub fn generate(rng: &mut Rng, valid_token: &str) -> Vec<u8> {
    let mut head = Vec::new();
    let method: &[u8] = rng.pick::<&[u8]>(&METHODS);
    head.extend_from_slice(method);
    head.push(b' ');
    let path: &[u8] = rng.pick::<&[u8]>(&PATHS);
    head.extend_from_slice(path);
    let token = *rng.pick(&[
        TokenShape::Valid,
        TokenShape::Valid,
        TokenShape::Valid,
        TokenShape::Valid,
        TokenShape::Truncated,
        TokenShape::Mutated,
        TokenShape::Garbage,
        TokenShape::Oversized,
        TokenShape::None,
    ]);
    let mut t = valid_token.as_bytes().to_vec();
    match token {
        TokenShape::Valid | TokenShape::None => {}
        TokenShape::Truncated => t.truncate(rng.below(t.len().max(1))),
        TokenShape::Mutated => {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(t.len().max(1));
                if let Some(c) = t.get_mut(at) {
                    *c = if rng.chance(50) {
                        rng.byte()
                    } else {
                        b'A' + rng.byte() % 26
                    };
                }
            }
        }
        TokenShape::Garbage => {
            t.clear();
            value_bytes(rng, &mut t);
            if rng.chance(80) {
                // Mostly what a query can carry, so the filter sees it.
                t.retain(|b| b.is_ascii_graphic() && !b"#?&".contains(b));
            }
        }
        TokenShape::Oversized => t = vec![b'e'; 4097 + rng.below(4000)],
    }
    if token != TokenShape::None {
        match rng.below(6) {
            0 => head.extend_from_slice(b"?x=1&token="),
            1 => head.extend_from_slice(b"?token=&token="),
            2 => head.extend_from_slice(b"?token"),
            _ => head.extend_from_slice(b"?token="),
        }
        head.extend_from_slice(&t);
        if rng.chance(15) {
            head.extend_from_slice(b"&token=");
            head.extend_from_slice(&t);
        }
        if rng.chance(3) {
            head.push(b'#');
        }
    }
    if rng.chance(3) {
        head.push(0x80 | rng.byte());
    }
    head.extend_from_slice(if rng.chance(95) {
        b" HTTP/1.1\r\n"
    } else {
        b" HTTP/1.0\r\n"
    });
    if rng.chance(95) {
        head.extend_from_slice(b"Host: console.example.com\r\n");
    }
    if rng.chance(80) {
        head.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        head.extend_from_slice(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        head.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    if rng.chance(80) {
        head.extend_from_slice(b"Origin: https://portal.example.com\r\n");
    }
    let extra = match rng.below(20) {
        0 => 60 + rng.below(20), // over max_headers_count
        _ => rng.below(5),
    };
    for _ in 0..extra {
        let name: &[u8] = if rng.chance(5) {
            rng.pick::<&[u8]>(&FRAMING)
        } else {
            rng.pick::<&[u8]>(&NAMES)
        };
        if rng.chance(3) {
            // A damaged name: a hostile byte inside it.
            head.extend_from_slice(&name[..name.len() / 2]);
            head.push(rng.byte());
            head.extend_from_slice(&name[name.len() / 2..]);
        } else {
            head.extend_from_slice(name);
        }
        head.extend_from_slice(b": ");
        value_bytes(rng, &mut head);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_requests() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| generate(&mut rng, "a.b.c"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn covers_the_shapes() {
        let mut rng = Rng::new(1);
        let heads: Vec<Vec<u8>> = (0..2000)
            .map(|_| generate(&mut rng, "hdr.payload.sig"))
            .collect();
        let any = |f: &dyn Fn(&[u8]) -> bool| heads.iter().any(|h| f(h));
        assert!(any(
            &|h| h.starts_with(b"GET /console?token=hdr.payload.sig ")
        ));
        assert!(any(&|h| h.iter().any(|b| *b >= 0x80)));
        assert!(any(&|h| h.len() > 9000));
        assert!(any(&|h| h.windows(13).any(|w| w == b"&token=hdr.pa")));
        assert!(any(&|h| h.starts_with(b"GET /healthz")));
    }
}
