//! The answers below are etcd 3.4.23's own, with access control on,
//! captured from its JSON gateway.

use crate::etcd::*;
use crate::one_time::OneTime;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW_MS: i64 = 1_800_000_000_000;
const PASSWORD: &str = "s3cr3t\"pa\\ss";
const TOKEN: &[u8] = br#"{"header":{"cluster_id":"1609942691656618199","member_id":"299346533712158682","revision":"1","raft_term":"2"},"token":"DVUMxpUUTCGrkTPc.13"}"#;
const CREATED: &[u8] = br#"{"header":{"cluster_id":"1609942691656618199","member_id":"299346533712158682","revision":"2","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
const BAD_TOKEN: &[u8] = br#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#;
const NO_USER: &[u8] = br#"{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}"#;
const WRONG_PASSWORD: &[u8] = br#"{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}"#;
const DENIED: &[u8] = br#"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#;

fn store(auth: bool) -> EtcdStore {
    crate::etcd::tests::store().with_auth(auth.then(|| EtcdAuth::new("mksgate", PASSWORD)))
}

fn one_time() -> OneTime {
    OneTime::new(Some("k1"), None, "jti-1".into(), NOW_MS / 1000 + 90)
}

fn answer(status: u16, body: &[u8]) -> Answer<'_> {
    Answer::Response { status, body }
}

fn sent(step: Step) -> Call {
    match step {
        Step::Send(call) => call,
        Step::Done(outcome) => panic!("done early: {outcome:?}"),
    }
}

/// The worker's login: the body carries the user and password (escaped),
/// no token; the answer's token is read, anything else is none.
#[test]
fn the_login_call_and_its_answer() {
    let call = store(true).authenticate_call().unwrap();
    assert_eq!(call.path, AUTHENTICATE_PATH);
    assert_eq!(
        (call.timeout_ms, call.authorization.as_deref()),
        (1500, None)
    );
    let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "mksgate", "password": PASSWORD})
    );
    assert_eq!(
        token_in(answer(200, TOKEN)).as_deref(),
        Some("DVUMxpUUTCGrkTPc.13")
    );
    for (status, body) in [
        (400, WRONG_PASSWORD),
        (200, &br#"{"header":{}}"#[..]),
        (200, br#"{"token":""}"#),
        (200, br#"{"token":"has space"}"#),
        (503, b"upstream connect error"),
    ] {
        assert_eq!(token_in(answer(status, body)), None, "{status}");
    }
    assert_eq!(token_in(Answer::NoResponse { timed_out: true }), None);
    assert!(store(false).authenticate_call().is_none());
}

#[test]
fn a_claim_carries_the_workers_token_on_every_call() {
    let (mut claim, step) = store(true).claim(&one_time(), NOW_MS, Some("tok.1"));
    let txn = sent(step);
    assert_eq!(
        (txn.path, txn.authorization.as_deref()),
        (TXN_PATH, Some("tok.1"))
    );
    assert_eq!(claim.token(), Some("tok.1"));
    let no_lease = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
    let grant = sent(claim.on_answer(answer(404, no_lease), NOW_MS + 1));
    assert_eq!(
        (grant.path, grant.authorization.as_deref()),
        (GRANT_PATH, Some("tok.1"))
    );
    let granted = br#"{"header":{"revision":"1"},"ID":"1","TTL":"30"}"#;
    let again = sent(claim.on_answer(answer(200, granted), NOW_MS + 2));
    assert_eq!(again.authorization.as_deref(), Some("tok.1"));
    assert_eq!(
        claim.on_answer(answer(200, CREATED), NOW_MS + 3),
        Step::Done(Outcome::Recorded)
    );
}

/// No token yet (the worker has not logged in): `replay_unavailable` at
/// once, no call; a claim never logs in itself.
#[test]
fn without_a_token_a_claim_is_unavailable_without_a_call() {
    let (claim, step) = store(true).claim(&one_time(), NOW_MS, None);
    assert_eq!(step, Step::Done(Outcome::Unavailable(Failure::Error)));
    assert!(!claim.token_refused());
}

/// A refused token (ended, or from before a restart of simple tokens) is
/// final for the claim and says so, so the worker logs in again; other
/// refusals do not.
#[test]
fn a_refused_token_ends_the_claim_and_is_reported() {
    for refusal in [answer(401, BAD_TOKEN), answer(400, NO_USER)] {
        let (mut claim, _) = store(true).claim(&one_time(), NOW_MS, Some("old.1"));
        assert_eq!(
            claim.on_answer(refusal, NOW_MS + 1),
            Step::Done(Outcome::Unavailable(Failure::Error))
        );
        assert!(claim.token_refused());
    }
    let (mut claim, _) = store(true).claim(&one_time(), NOW_MS, Some("old.1"));
    assert_eq!(
        claim.on_answer(answer(403, DENIED), NOW_MS + 1),
        Step::Done(Outcome::Unavailable(Failure::Error))
    );
    assert!(!claim.token_refused());
}

/// Without `auth`, no token is ever sent, and etcd's access control
/// refusing every call is `replay_unavailable`.
#[test]
fn without_auth_configured_no_token_is_sent() {
    let (mut claim, step) = store(false).claim(&one_time(), NOW_MS, Some("ignored"));
    let call = sent(step);
    assert_eq!((call.path, call.authorization), (TXN_PATH, None));
    assert_eq!(
        claim.on_answer(answer(400, NO_USER), NOW_MS + 1),
        Step::Done(Outcome::Unavailable(Failure::Error))
    );
}

/// The password and the tokens never reach a log: not through `Debug`,
/// not through the failure detail.
#[test]
fn secrets_are_never_printed() {
    let store = store(true);
    let login = store.authenticate_call().unwrap();
    let (claim, step) = store.claim(&one_time(), NOW_MS, Some("DVUMxpUUTCGrkTPc.13"));
    let printed = format!("{store:?} {login:?} {claim:?} {step:?}");
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(!printed.contains("DVUMxpUUTCGrkTPc"), "{printed}");
    assert!(printed.contains("mksgate"), "the user is fine to print");
    let odd = br#"{"token":"DVUMxpUUTCGrkTPc.13","x":"#;
    let detail = failure_detail(&answer(200, odd));
    assert!(!detail.contains("DVUM"), "{detail}");
    assert_eq!(
        failure_detail(&answer(400, WRONG_PASSWORD)),
        "status 400: etcdserver: authentication failed, invalid user ID or password"
    );
}
