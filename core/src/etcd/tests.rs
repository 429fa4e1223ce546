//! The answers below are etcd 3.4.23's own, captured from its JSON gateway.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW_MS: i64 = 1_800_000_000_000;
const CREATED: &[u8] = br#"{"header":{"cluster_id":"10955309159033285570","member_id":"5411188850637535873","revision":"2","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
const EXISTED: &[u8] = br#"{"header":{"cluster_id":"10955309159033285570","member_id":"5411188850637535873","revision":"2","raft_term":"2"}}"#;
const NO_LEASE: &[u8] = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
const GRANTED: &[u8] = br#"{"header":{"cluster_id":"10955309159033285570","member_id":"5411188850637535873","revision":"1","raft_term":"2"},"ID":"4242","TTL":"30"}"#;
const LEASE_EXISTS: &[u8] = br#"{"error":"etcdserver: lease already exists","message":"etcdserver: lease already exists","code":9}"#;
const NO_LEADER: &[u8] =
    br#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#;

pub(crate) fn store() -> EtcdStore {
    EtcdStore::new(
        "mksgate_etcd".into(),
        "etcd".into(),
        DEFAULT_KEY_PREFIX.into(),
        1500,
        300,
        30,
    )
}

fn one_time() -> OneTime {
    OneTime::new(Some("k1"), None, "jti-1".into(), NOW_MS / 1000 + 90)
}

fn ok(body: &[u8]) -> Answer<'_> {
    Answer::Response { status: 200, body }
}

#[test]
fn first_call_is_the_create_if_absent_transaction() {
    let (_, Step::Send(call)) = store().claim(&one_time(), NOW_MS, None) else {
        panic!("no call")
    };
    assert_eq!(call.path, TXN_PATH);
    assert_eq!(call.timeout_ms, 1500);
    let body: Value = serde_json::from_str(&call.body).unwrap();
    let key = STANDARD.encode(store().key(&one_time().record));
    assert_eq!(body["compare"][0]["key"], key.as_str());
    assert_eq!(body["compare"][0]["target"], "CREATE");
    assert_eq!(body["compare"][0]["result"], "EQUAL");
    assert_eq!(body["compare"][0]["create_revision"], "0");
    let put = &body["success"][0]["request_put"];
    assert_eq!(put["key"], key.as_str());
    let lease = store().lease_for(one_time().remember_until, NOW_MS / 1000);
    assert_eq!(put["lease"], lease.id.to_string());
    assert!(body.get("failure").is_none());
}

#[test]
fn keys_are_the_prefix_and_a_hash_never_the_jti() {
    let key_of = |kid, tenant, jti| store().key(&crate::one_time::record_id(kid, tenant, jti));
    let key = key_of(Some("k1"), None, "jti-1");
    assert!(key.starts_with("/mksgate/links/"));
    assert_eq!(key.len(), "/mksgate/links/".len() + 32);
    assert!(!key.contains("jti-1"));
    assert_eq!(key, store().key(&one_time().record));
    assert_ne!(key, key_of(Some("k1"), None, "jti-2"));
    // One record per key and tenant: the same jti under another kid or
    // tenant is another link.
    assert_ne!(key, key_of(Some("k2"), None, "jti-1"));
    assert_ne!(key, key_of(Some("k1"), Some("tenant-a"), "jti-1"));
    assert_ne!(
        key_of(Some("k1"), Some("a"), "bc"),
        key_of(Some("k1"), Some("ab"), "c"),
        "parts are length-prefixed"
    );
}

#[test]
fn created_is_recorded_and_existed_is_replayed() {
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    assert_eq!(
        claim.on_answer(ok(CREATED), NOW_MS + 5),
        Step::Done(Outcome::Recorded)
    );
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    assert_eq!(
        claim.on_answer(ok(EXISTED), NOW_MS + 5),
        Step::Done(Outcome::Replayed)
    );
}

#[test]
fn a_missing_lease_is_granted_then_the_transaction_sent_once_more() {
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let lease = store().lease_for(one_time().remember_until, NOW_MS / 1000);
    let missing = Answer::Response {
        status: 404,
        body: NO_LEASE,
    };
    let Step::Send(grant) = claim.on_answer(missing, NOW_MS + 10) else {
        panic!("expected a grant");
    };
    assert_eq!(grant.path, GRANT_PATH);
    assert_eq!(grant.timeout_ms, 1490);
    let body: Value = serde_json::from_str(&grant.body).unwrap();
    assert_eq!(body["ID"], lease.id.to_string());
    assert_eq!(body["TTL"], lease.ttl.to_string());
    // Granted by another gateway first is as good as granted.
    for granted in [
        ok(GRANTED),
        Answer::Response {
            status: 412,
            body: LEASE_EXISTS,
        },
    ] {
        let mut claim = claim.clone();
        let Step::Send(txn) = claim.on_answer(granted, NOW_MS + 20) else {
            panic!("expected the transaction again");
        };
        assert_eq!(txn.path, TXN_PATH);
        assert_eq!(txn.timeout_ms, 1480);
        // Still no lease after the grant: give up rather than loop.
        let mut again = claim.clone();
        assert_eq!(
            again.on_answer(missing, NOW_MS + 30),
            Step::Done(Outcome::Unavailable(Failure::Error))
        );
        assert_eq!(
            claim.on_answer(ok(CREATED), NOW_MS + 30),
            Step::Done(Outcome::Recorded)
        );
    }
}

#[test]
fn everything_else_is_unavailable_never_recorded() {
    let answers: &[(u16, &[u8])] = &[
        (503, NO_LEADER),
        (500, b""),
        (200, b"not json"),
        (200, b"[]"),
        (200, br#"{"succeeded":true}"#),
        (200, br#"{"header":{},"succeeded":"yes"}"#),
        (
            404,
            br#"{"error":"etcdserver: requested lease not found","code":4}"#,
        ),
        (302, CREATED),
        (201, CREATED),
    ];
    for (status, body) in answers {
        let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
        let step = claim.on_answer(
            Answer::Response {
                status: *status,
                body,
            },
            NOW_MS + 1,
        );
        assert_eq!(
            step,
            Step::Done(Outcome::Unavailable(Failure::Error)),
            "{status} {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let mut oversized = br#"{"header":{},"succeeded":true,"x":""#.to_vec();
    oversized.resize(MAX_ANSWER_BYTES + 10, b'a');
    oversized.extend_from_slice(b"\"}");
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    assert_eq!(
        claim.on_answer(ok(&oversized), NOW_MS + 1),
        Step::Done(Outcome::Unavailable(Failure::Error))
    );
}

#[test]
fn no_answer_is_a_timeout_once_the_budget_is_spent_and_an_error_before() {
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let timed_out = Answer::NoResponse { timed_out: false };
    assert_eq!(
        claim.clone().on_answer(timed_out, NOW_MS + 3),
        Step::Done(Outcome::Unavailable(Failure::Error))
    );
    assert_eq!(
        claim.clone().on_answer(timed_out, NOW_MS + 1500),
        Step::Done(Outcome::Unavailable(Failure::Timeout))
    );
    assert_eq!(
        claim.on_answer(Answer::NoResponse { timed_out: true }, NOW_MS + 3),
        Step::Done(Outcome::Unavailable(Failure::Timeout))
    );
    // A grant that would start after the budget is not sent.
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let missing = Answer::Response {
        status: 404,
        body: NO_LEASE,
    };
    assert_eq!(
        claim.on_answer(missing, NOW_MS + 1600),
        Step::Done(Outcome::Unavailable(Failure::Timeout))
    );
}

#[test]
fn a_lease_outlives_every_record_on_it_by_the_skew() {
    let s = store();
    for now in [1_800_000_000i64, 1_800_000_299, 1_800_000_300] {
        for lifetime in [0i64, 1, 59, 299, 300, 330] {
            let until = now + lifetime;
            let lease = s.lease_for(until, now);
            // Expires at now + ttl: after `until`, by at least the skew.
            assert!(now + lease.ttl > until + 30, "{now} {until} {lease:?}");
            // And not much later: at most a window more.
            assert!(
                now + lease.ttl <= until + 300 + 30 + 1,
                "{now} {until} {lease:?}"
            );
            assert!(lease.id > 0);
            // Every record in the same window shares the lease.
            let window_start = until - until.rem_euclid(300);
            assert_eq!(s.lease_for(window_start, now).id, lease.id);
        }
    }
    // Another prefix or window length: other lease ids.
    let other = EtcdStore::new("c".into(), "c".into(), "/other/".into(), 1500, 300, 30);
    assert_ne!(
        other.lease_for(1_800_000_000, 1_800_000_000).id,
        s.lease_for(1_800_000_000, 1_800_000_000).id
    );
}

#[test]
fn key_prefixes() {
    assert!(valid_key_prefix("/mksgate/links/"));
    assert!(valid_key_prefix("/"));
    assert!(!valid_key_prefix(""));
    assert!(!valid_key_prefix("mksgate/"));
    assert!(!valid_key_prefix("/a\nb"));
    assert!(!valid_key_prefix("/é"));
    assert!(!valid_key_prefix(&format!("/{}", "a".repeat(128))));
    assert!(valid_key_prefix(&format!("/{}", "a".repeat(127))));
}

#[test]
fn a_504_is_a_timeout_and_failures_are_described_printably() {
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let envoy_timeout = Answer::Response {
        status: 504,
        body: b"upstream request timeout",
    };
    assert_eq!(
        claim.on_answer(envoy_timeout, NOW_MS + 1500),
        Step::Done(Outcome::Unavailable(Failure::Timeout))
    );
    assert_eq!(
        failure_detail(&envoy_timeout),
        "status 504: upstream request timeout"
    );
    let no_leader = Answer::Response {
        status: 503,
        body: NO_LEADER,
    };
    assert_eq!(
        failure_detail(&no_leader),
        "status 503: etcdserver: no leader"
    );
    let odd = Answer::Response {
        status: 500,
        body: "caf\u{e9}\n\"\\".as_bytes(),
    };
    assert_eq!(failure_detail(&odd), "status 500: caf????");
    assert_eq!(
        failure_detail(&Answer::NoResponse { timed_out: false }),
        "no answer"
    );
}

/// Envoy's local reply when a member's connection could not be made.
const REFUSED: &[u8] = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused";

#[test]
fn a_call_that_never_reached_etcd_is_sent_again_a_few_times_at_most() {
    let (mut claim, Step::Send(first)) = store().claim(&one_time(), NOW_MS, None) else {
        panic!("no call")
    };
    let refused = Answer::Response {
        status: 503,
        body: REFUSED,
    };
    for _ in 0..MAX_RESENDS {
        let Step::Send(again) = claim.on_answer(refused, NOW_MS + 5) else {
            panic!("sent again")
        };
        assert!(claim.last_was_resend());
        assert_eq!((again.path, &again.body), (first.path, &first.body));
        assert!(
            again.timeout_ms < first.timeout_ms,
            "within the same budget"
        );
    }
    assert_eq!(
        claim.on_answer(refused, NOW_MS + 10),
        Step::Done(Outcome::Unavailable(Failure::Error))
    );
    // Then it goes on as usual: a created record admits.
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let _ = claim.on_answer(refused, NOW_MS + 1);
    assert_eq!(
        claim.on_answer(ok(CREATED), NOW_MS + 2),
        Step::Done(Outcome::Recorded)
    );
    assert!(!claim.last_was_resend());
}

#[test]
fn a_call_that_may_have_reached_etcd_is_never_sent_again() {
    for (status, body) in [
        (503, &b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"[..]),
        (503, b"no healthy upstream"),
        (504, b"upstream request timeout"),
        (503, NO_LEADER),
        (200, b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
    ] {
        assert!(!never_sent(status, body), "{}", String::from_utf8_lossy(body));
        let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
        let step = claim.on_answer(Answer::Response { status, body }, NOW_MS + 1);
        assert!(matches!(step, Step::Done(Outcome::Unavailable(_))), "{step:?}");
    }
    assert!(!{
        let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
        let _ = claim.on_answer(Answer::NoResponse { timed_out: false }, NOW_MS + 1);
        claim.last_was_resend()
    });
    // Out of budget, a refused connection is not tried again either.
    let (mut claim, _) = store().claim(&one_time(), NOW_MS, None);
    let late = claim.on_answer(
        Answer::Response {
            status: 503,
            body: REFUSED,
        },
        NOW_MS + 2_000,
    );
    assert!(matches!(late, Step::Done(Outcome::Unavailable(_))));
}
