//! One-time links across every worker of one Envoy, on proxy-wasm shared
//! data.
//!
//! Shared data is a process-wide map with compare-and-swap on keys that
//! exist, no insert-if-absent, and no delete. So the table is a fixed set of
//! `BUCKETS` keys, created once at configure time, each holding up to
//! `SLOTS_PER_BUCKET` entries of (8-byte tag of the link's record id: kid,
//! tenant and jti, hashed), remember-until.
//! A claim reads its bucket, drops expired entries, appends its own and
//! writes back with the CAS it read; a lost race retries. Memory therefore
//! never exceeds `BUCKETS * SLOTS_PER_BUCKET * 16` bytes of values, and a
//! bucket full of live links refuses new ones (`replay_table_full`) instead
//! of forgetting an old one, which would let it be replayed.

use crate::code::Code;
use crate::one_time::OneTime;

pub const BUCKETS: u32 = 1024;
pub const SLOTS_PER_BUCKET: usize = 64;
/// Live one-time links one Envoy can hold at most (fewer if links cluster
/// in a bucket; at half this load a full bucket is vanishingly rare).
pub const CAPACITY: usize = BUCKETS as usize * SLOTS_PER_BUCKET;
const ENTRY_LEN: usize = 16;
/// CAS retries before giving up with `replay_unavailable`.
const MAX_ATTEMPTS: usize = 64;

/// The host's store did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    CasMismatch,
    Failed,
}

/// The host's shared key-value store, with proxy-wasm's semantics: `get`
/// returns the value and its CAS token; `set` with `Some(cas)` fails with
/// `CasMismatch` if the key changed since; `set` with `None` overwrites.
pub trait SharedStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable>;
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

pub fn bucket_key(index: u32) -> String {
    format!("mksgate.replay.v1.{index}")
}

/// Creates every bucket that does not exist yet; existing ones (from another
/// worker, or from before a config reload) are left as they are. Returns how
/// many it created.
///
/// A bucket exists when it has a CAS token. Its value says nothing: Envoy
/// hands an empty value back as a null pointer, which the SDK (and our shim)
/// returns as `(None, Some(cas))`. Treating that as absent would overwrite,
/// without CAS, a bucket another worker has just written a link into.
pub fn init<S: SharedStore + ?Sized>(store: &S) -> Result<u32, StoreUnavailable> {
    let mut created = 0;
    for index in 0..BUCKETS {
        let key = bucket_key(index);
        if store.get(&key)?.1.is_none() {
            store.set(&key, &[], None).map_err(|_| StoreUnavailable)?;
            created += 1;
        }
    }
    Ok(created)
}

/// The bucket a link is recorded in (for tests and tools that look at the
/// table from outside).
pub fn bucket_of(kid: Option<&str>, tenant: Option<&str>, jti: &str) -> u32 {
    locate(&crate::one_time::record_id(kid, tenant, jti)).0
}

fn locate(digest: &[u8; 32]) -> (u32, [u8; 8]) {
    let mut head = [0u8; 4];
    let mut tag = [0u8; 8];
    head.copy_from_slice(&digest[..4]);
    tag.copy_from_slice(&digest[8..16]);
    (u32::from_le_bytes(head) % BUCKETS, tag)
}

/// Records `one.record`, or refuses: `Replayed` if it is already recorded and
/// live, `ReplayTableFull` if its bucket has no free slot,
/// `ReplayUnavailable` if the store fails or stays contended.
pub fn claim<S: SharedStore + ?Sized>(store: &S, one: &OneTime, now: i64) -> Result<(), Code> {
    let (index, tag) = locate(&one.record);
    let key = bucket_key(index);
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = store
            .get(&key)
            .map_err(|StoreUnavailable| Code::ReplayUnavailable)?;
        let current = value.unwrap_or_default();
        let mut next = Vec::with_capacity(current.len() + ENTRY_LEN);
        for entry in current.chunks_exact(ENTRY_LEN) {
            let (entry_tag, until) = entry.split_at(8);
            let mut until_bytes = [0u8; 8];
            until_bytes.copy_from_slice(until);
            let until = i64::from_le_bytes(until_bytes);
            if until <= now {
                continue; // expired: any link it guarded is refused as expired
            }
            if entry_tag == tag {
                return Err(Code::Replayed);
            }
            next.extend_from_slice(entry);
        }
        if next.len() / ENTRY_LEN >= SLOTS_PER_BUCKET {
            return Err(Code::ReplayTableFull);
        }
        next.extend_from_slice(&tag);
        next.extend_from_slice(&one.remember_until.to_le_bytes());
        match store.set(&key, &next, cas) {
            Ok(()) if cas.is_some() => return Ok(()),
            Ok(()) => {
                // The bucket did not exist (init failed or raced): the write
                // was unconditional, so confirm it stuck before admitting.
                let (after, _) = store
                    .get(&key)
                    .map_err(|StoreUnavailable| Code::ReplayUnavailable)?;
                if after.is_some_and(|v| {
                    v.chunks_exact(ENTRY_LEN)
                        .any(|e| e.get(..8) == Some(&tag[..]))
                }) {
                    return Ok(());
                }
            }
            Err(SetError::CasMismatch) => {}
            Err(SetError::Failed) => return Err(Code::ReplayUnavailable),
        }
    }
    Err(Code::ReplayUnavailable)
}

/// A store with Envoy's semantics, for tests in this crate and others (the
/// filter's mock host uses it through the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod tests_support {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Envoy's shared data semantics (proxy-wasm-cpp-host `SharedData`):
    /// CAS tokens start at 1 and change on every write; a CAS of 0/None
    /// always writes; an empty value comes back as no value at all, with its
    /// CAS (Envoy returns a null pointer for it).
    #[derive(Default)]
    pub struct EnvoyLikeStore {
        map: Mutex<Entries>,
    }

    /// (key -> (value, cas), last cas handed out)
    type Entries = (HashMap<String, (Vec<u8>, u32)>, u32);

    impl SharedStore for EnvoyLikeStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable> {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            Ok(match map.0.get(key) {
                Some((v, cas)) if v.is_empty() => (None, Some(*cas)),
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            })
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.1 += 1;
            let next = map.1;
            if let Some((_, current)) = map.0.get(key) {
                if matches!(cas, Some(c) if c != 0 && c != *current) {
                    return Err(SetError::CasMismatch);
                }
            }
            map.0.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::EnvoyLikeStore;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn once(jti: &str, until: i64) -> OneTime {
        OneTime::new(Some("k"), None, jti.into(), until)
    }

    #[test]
    fn second_use_is_replayed_until_expiry() {
        let store = EnvoyLikeStore::default();
        assert_eq!(init(&store), Ok(BUCKETS));
        assert_eq!(init(&store), Ok(0), "existing buckets are kept");
        assert_eq!(claim(&store, &once("a", 100), 10), Ok(()));
        assert_eq!(claim(&store, &once("a", 100), 50), Err(Code::Replayed));
        assert_eq!(claim(&store, &once("b", 100), 50), Ok(()));
        // The same jti under another key, or for a tenant, is another link.
        let other_key = OneTime::new(Some("k2"), None, "a".into(), 100);
        let tenant = OneTime::new(Some("k"), Some("tenant-b"), "a".into(), 100);
        assert_eq!(claim(&store, &other_key, 50), Ok(()));
        assert_eq!(claim(&store, &tenant, 50), Ok(()));
        assert_eq!(claim(&store, &tenant, 51), Err(Code::Replayed));
        // After remember_until the entry is dropped (the token itself would
        // be refused as expired by then).
        assert_eq!(claim(&store, &once("a", 300), 100), Ok(()));
    }

    /// A worker configuring (every key rotation) while another serves: the
    /// bucket the server wrote into must survive the configuring worker's
    /// `init`, even when its value read back empty a moment before.
    #[test]
    fn init_keeps_a_bucket_that_reads_back_empty() {
        let store = EnvoyLikeStore::default();
        assert_eq!(init(&store), Ok(BUCKETS));
        // Every bucket now exists with an empty value: Envoy returns it as
        // (None, Some(cas)).
        let (value, cas) = store.get(&bucket_key(0)).unwrap();
        assert_eq!((value, cas.is_some()), (None, true));
        assert_eq!(claim(&store, &once("a", 100), 10), Ok(()));
        assert_eq!(init(&store), Ok(0), "no bucket was recreated");
        assert_eq!(claim(&store, &once("a", 100), 10), Err(Code::Replayed));
    }

    /// Interleaved: init reads a bucket empty, a claim writes it, init
    /// carries on. With the CAS rule init never writes an existing bucket,
    /// so the claim stands.
    #[test]
    fn init_racing_a_claim_never_erases_it() {
        struct Interleaved<'a> {
            inner: &'a EnvoyLikeStore,
            jti: &'a str,
        }
        impl SharedStore for Interleaved<'_> {
            fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable> {
                let seen = self.inner.get(key)?;
                if key == bucket_key(bucket_of(Some("k"), None, self.jti)) {
                    // Another worker records the link right after this read.
                    claim(self.inner, &once(self.jti, 100), 10).unwrap();
                }
                Ok(seen)
            }
            fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
                self.inner.set(key, value, cas)
            }
        }
        let store = EnvoyLikeStore::default();
        init(&store).unwrap();
        let racing = Interleaved {
            inner: &store,
            jti: "raced",
        };
        assert_eq!(init(&racing), Ok(0));
        assert_eq!(claim(&store, &once("raced", 100), 10), Err(Code::Replayed));
    }

    #[test]
    fn works_without_init() {
        let store = EnvoyLikeStore::default();
        assert_eq!(claim(&store, &once("a", 100), 10), Ok(()));
        assert_eq!(claim(&store, &once("a", 100), 10), Err(Code::Replayed));
    }

    #[test]
    fn full_bucket_refuses_instead_of_forgetting() {
        let store = EnvoyLikeStore::default();
        init(&store).unwrap();
        let target = bucket_of(Some("k"), None, "victim");
        let mut same_bucket = (0..)
            .map(|i| format!("j{i}"))
            .filter(|j| bucket_of(Some("k"), None, j) == target);
        for _ in 0..SLOTS_PER_BUCKET {
            let jti = same_bucket.next().unwrap();
            assert_eq!(claim(&store, &once(&jti, 1000), 0), Ok(()));
        }
        assert_eq!(
            claim(&store, &once("victim", 1000), 0),
            Err(Code::ReplayTableFull)
        );
        // Once those expire, the slot is reusable.
        assert_eq!(claim(&store, &once("victim", 2000), 1000), Ok(()));
        let (value, _) = store.get(&bucket_key(target)).unwrap();
        assert_eq!(
            value.unwrap().len(),
            ENTRY_LEN,
            "expired entries were pruned"
        );
    }

    // Threads do not exist on wasm32-unknown-unknown; Envoy's workers are
    // separate VMs there, which the host-tests prove in real Envoy.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn concurrent_claims_admit_exactly_one() {
        use std::sync::{Arc, Barrier};
        for round in 0..20 {
            let store = Arc::new(EnvoyLikeStore::default());
            init(&*store).unwrap();
            let threads = 8;
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        claim(&*store, &once(&format!("link-{round}"), 100), 1)
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                1,
                "{results:?}"
            );
            assert!(results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(Code::Replayed))));
        }
    }

    struct BrokenStore;
    impl SharedStore for BrokenStore {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreUnavailable> {
            Ok((Some(vec![]), Some(1)))
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), SetError> {
            Err(SetError::CasMismatch)
        }
    }

    #[test]
    fn endless_contention_is_unavailable_not_admitted() {
        assert_eq!(
            claim(&BrokenStore, &once("a", 100), 1),
            Err(Code::ReplayUnavailable)
        );
    }
}
