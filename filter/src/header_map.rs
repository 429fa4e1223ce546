//! proxy-wasm's serialized header map, read as bytes and bounds-checked.
//!
//! The SDK's own reader (`hostcalls::utils::deserialize_map*`) unwraps
//! `String::from_utf8` on every name and value and slices without checks, so
//! one byte 0x80-0xFF in any header value (Envoy lets obs-text through)
//! traps the VM. This one never panics: names and values stay bytes, and a
//! buffer that does not match its own length table is refused whole.
//!
//! Layout (proxy-wasm ABI): `u32 count`, then `count` pairs of
//! `u32 name_len, u32 value_len`, then for each pair the name, a NUL, the
//! value, a NUL; all integers little-endian.

/// A header map as the host serialized it, checked once at construction;
/// iteration borrows from the buffer and allocates nothing.
pub struct HeaderMap {
    bytes: Vec<u8>,
    count: usize,
}

impl HeaderMap {
    /// Checks the whole buffer; `None` if it is inconsistent (a host bug:
    /// the caller then fails closed). An empty buffer is an empty map.
    pub fn parse(bytes: Vec<u8>) -> Option<HeaderMap> {
        if bytes.is_empty() {
            return Some(HeaderMap { bytes, count: 0 });
        }
        let count = usize::try_from(read_u32(&bytes, 0)?).ok()?;
        let map = HeaderMap { bytes, count };
        if map.data_start()? > map.bytes.len() {
            return None;
        }
        // Walk it once; `pairs` then cannot meet a bad length.
        let mut walked = 0usize;
        let mut cursor = map.data_start()?;
        for index in 0..count {
            let (name_len, value_len) = map.lengths(index)?;
            cursor = skip(&map.bytes, cursor, name_len)?;
            cursor = skip(&map.bytes, cursor, value_len)?;
            walked += 1;
        }
        (walked == count).then_some(map)
    }

    /// The (name, value) pairs in the host's order.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut cursor = self.data_start().unwrap_or(usize::MAX);
        (0..self.count).map_while(move |index| {
            let (name_len, value_len) = self.lengths(index)?;
            let name = self.bytes.get(cursor..cursor.checked_add(name_len)?)?;
            cursor = skip(&self.bytes, cursor, name_len)?;
            let value = self.bytes.get(cursor..cursor.checked_add(value_len)?)?;
            cursor = skip(&self.bytes, cursor, value_len)?;
            Some((name, value))
        })
    }

    fn data_start(&self) -> Option<usize> {
        self.count.checked_mul(8)?.checked_add(4)
    }

    fn lengths(&self, index: usize) -> Option<(usize, usize)> {
        let at = index.checked_mul(8)?.checked_add(4)?;
        let name = usize::try_from(read_u32(&self.bytes, at)?).ok()?;
        let value = usize::try_from(read_u32(&self.bytes, at.checked_add(4)?)?).ok()?;
        Some((name, value))
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Past a field of `len` bytes at `at` and its NUL terminator.
fn skip(bytes: &[u8], at: usize, len: usize) -> Option<usize> {
    let nul = at.checked_add(len)?;
    (bytes.get(nul) == Some(&0)).then_some(nul + 1)
}

/// The same layout, for headers this filter sends (and for tests).
pub fn serialize<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&len_u32(name.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.as_ref().len()).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

/// Lengths here are of headers this filter builds: far below 4 GiB.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        serialize(pairs)
    }

    #[test]
    fn reads_every_byte_value_in_names_and_values() {
        let all: Vec<u8> = (0u8..=255).filter(|b| *b != 0).collect();
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/console?token=x"),
            (b"x-a", b"\xff"),
            (b"cookie", b"a=Espa\xf1a"),
            (b"x-\xe9", &all),
            (b"", b""),
        ];
        let map = HeaderMap::parse(raw(&pairs)).unwrap();
        assert_eq!(map.pairs().collect::<Vec<_>>(), pairs);
        assert_eq!(HeaderMap::parse(Vec::new()).unwrap().pairs().count(), 0);
    }

    #[test]
    fn round_trips_what_it_serializes() {
        let pairs = [
            ("content-type", "text/plain"),
            ("x-mksgate-decision", "expired"),
        ];
        let map = HeaderMap::parse(serialize(&pairs)).unwrap();
        let back: Vec<_> = map.pairs().collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], (&b"x-mksgate-decision"[..], &b"expired"[..]));
    }

    /// Every truncation and every single-byte corruption of a valid buffer
    /// is either refused or read without panicking.
    #[test]
    fn inconsistent_buffers_are_refused_never_panic() {
        let good = raw(&[(b":path", b"/console"), (b"origin", b"https://a\xe9")]);
        for cut in 0..good.len() {
            let _ = HeaderMap::parse(good[..cut].to_vec()).map(|m| m.pairs().count());
            if cut > 0 {
                assert!(
                    HeaderMap::parse(good[..cut].to_vec()).is_none(),
                    "cut {cut}"
                );
            }
        }
        for at in 0..good.len() {
            for byte in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                if let Some(map) = HeaderMap::parse(bad) {
                    let _ = map.pairs().count();
                }
            }
        }
        // A count far beyond the buffer, and lengths that overflow.
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::parse(huge).is_none());
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::parse(long).is_none());
    }
}
