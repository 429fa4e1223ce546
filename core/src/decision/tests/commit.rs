//! Applying an admission: the one-time claim decides (`commit`, `defer`
//! and `settle`), and the rewrite carries what the host applies.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn row_replayed_is_decided_with_the_store() {
    // An admission is applied only through `commit`, which claims the jti:
    // the second use of the same link is refused there.
    let cfg = config();
    let store = crate::replay::tests_support::EnvoyLikeStore::default();
    let path = link(&claims());
    let Decision::Admit(first) = Req::ws(path.clone()).decide(&cfg, NOW) else {
        panic!()
    };
    let Commit::Apply(rewrite) = first.commit(&store, NOW) else {
        panic!("the first use was refused")
    };
    assert_eq!(
        (
            rewrite.cluster.as_ref(),
            rewrite.path.as_str(),
            rewrite.authority.as_str()
        ),
        ("esxi_vesxi01", "/ticket/52-ab.cd_ef~9", "vesxi01.sec.lab")
    );
    assert_eq!(rewrite.audit.jti.as_deref(), Some("j-1"));
    let Decision::Admit(again) = Req::ws(path).decide(&cfg, NOW) else {
        panic!()
    };
    let audit = again.audit().clone();
    let Commit::Refuse(refusal) = again.commit(&store, NOW) else {
        panic!("the second use was admitted")
    };
    assert_eq!((refusal.code, refusal.audit), (Code::Replayed, audit));
    assert_eq!(Code::Replayed.status(), 403);
    // With one-time links off, no jti is needed, none is handed out, and
    // commit touches no store.
    let off = config_with(json!({"one_time_links": false}));
    let Decision::Admit(a) = Req::ws(link(&with(json!({"jti": null})))).decide(&off, NOW) else {
        panic!()
    };
    assert_eq!(a.one_time(), None);
    struct NoStore;
    impl crate::replay::SharedStore for NoStore {
        fn get(
            &self,
            _: &str,
        ) -> Result<(Option<Vec<u8>>, Option<u32>), crate::replay::StoreUnavailable> {
            panic!("commit asked the store with one-time links off")
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), crate::replay::SetError> {
            panic!("commit wrote the store with one-time links off")
        }
    }
    assert!(matches!(a.commit(&NoStore, NOW), Commit::Apply(_)));
}

/// A client never steers routing: outside the prefix the decision says to
/// strip the client's cluster header whenever one was sent.
#[test]
fn a_deferred_admission_is_applied_only_when_the_store_recorded_it() {
    use crate::etcd::{Failure, Outcome};
    let c = config();
    let outcomes = [
        (Outcome::Recorded, None),
        (Outcome::Replayed, Some(Code::Replayed)),
        (
            Outcome::Unavailable(Failure::Timeout),
            Some(Code::ReplayUnavailable),
        ),
        (
            Outcome::Unavailable(Failure::Error),
            Some(Code::ReplayUnavailable),
        ),
    ];
    for (outcome, refused) in outcomes {
        let Decision::Admit(admission) = Req::ws(link(&claims())).decide(&c, NOW) else {
            panic!("not admitted");
        };
        let Deferred::Wait(pending) = admission.defer() else {
            panic!("one-time links are on");
        };
        assert_eq!(
            pending.one_time().remember_until,
            NOW + 60 + c.clock_skew_seconds
        );
        match (pending.settle(outcome), refused) {
            (Commit::Apply(rewrite), None) => {
                assert_eq!(rewrite.cluster, "esxi_vesxi01");
                assert!(rewrite.path.starts_with("/ticket/"));
            }
            (Commit::Refuse(refusal), Some(code)) => assert_eq!(refusal.code, code),
            (other, want) => panic!("{outcome:?}: {other:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn without_rewrite_authority_the_rewrite_says_so_and_keeps_the_host() {
    let mut upstreams = json!({"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}});
    upstreams["rewrite_authority"] = json!(false);
    let c = config_with(json!({ "upstreams": upstreams }));
    let Decision::Admit(admission) = Req::ws(link(&claims())).decide(&c, NOW) else {
        panic!("not admitted");
    };
    let store = crate::replay::tests_support::EnvoyLikeStore::default();
    let Commit::Apply(rewrite) = admission.commit(&store, NOW) else {
        panic!("refused");
    };
    assert!(!rewrite.set_authority);
    assert_eq!(rewrite.authority, "vesxi01.sec.lab");
    assert!(config().upstreams.rewrite_authority);
}
