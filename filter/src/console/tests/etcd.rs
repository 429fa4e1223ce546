//! The shim with the etcd store: an admission waits for the record, and
//! only a recorded one is applied; tokens, abandoned streams, failures.

use super::*;

fn etcd_config() -> Config {
    config_with(serde_json::json!({
        "replay_store": {"etcd": {"cluster": "mksgate_etcd", "authority": "etcd"}}
    }))
}

const CREATED: &[u8] = br#"{"header":{"revision":"2"},"succeeded":true}"#;
const EXISTED: &[u8] = br#"{"header":{"revision":"2"}}"#;

/// Runs the request headers with the etcd store; the claim it waits on.
fn wait_on_etcd(mock: &Mock, config: &Config) -> Box<Waiting> {
    mock.calls.borrow_mut().clear();
    match on_request_headers(mock, Some(config)) {
        Next::Wait(waiting) => waiting,
        other => panic!("expected to wait for etcd, got {}", kind(other)),
    }
}

#[test]
fn with_etcd_an_admission_waits_and_is_applied_only_once_recorded() {
    let config = etcd_config();
    let mock = Mock::upgrade(&link("j-etcd"), &[]);
    let waiting = wait_on_etcd(&mock, &config);
    // Nothing applied yet: the path for logs set, one transaction sent, no
    // rewrite, no reply.
    assert!(
        matches!(
            mock.calls()[..],
            [Call::Set(_, _), Call::Dispatch("/v3/kv/txn", _)]
        ),
        "{:?}",
        mock.calls()
    );
    assert!(mock.sets().is_empty());
    mock.calls.borrow_mut().clear();
    let answer = Answer::Response {
        status: 200,
        body: CREATED,
    };
    assert_eq!(
        kind(on_store_answer(&mock, &config, waiting, answer)),
        "continue"
    );
    let calls = mock.calls();
    assert_eq!(calls[0], Call::StoreOutcome(Outcome::Recorded));
    assert_eq!(
        mock.sets().len(),
        3,
        "path, authority and cluster rewritten"
    );
    assert!(calls.contains(&Call::Decision(Code::Admitted)));
    assert_eq!(calls.last(), Some(&Call::Resume));
}

/// A client gone while etcd is asked: counted and logged (no link, no
/// key), no decision, no reply, nothing applied.
#[test]
fn with_etcd_a_stream_gone_while_waiting_is_counted_as_abandoned() {
    let config = etcd_config();
    let path = link("j-gone");
    let mock = Mock::upgrade(&path, &[]);
    let waiting = wait_on_etcd(&mock, &config);
    mock.calls.borrow_mut().clear();
    on_stream_gone(&mock, waiting);
    let calls = mock.calls();
    assert_eq!(calls[0], Call::StoreAbandoned);
    let [_, Call::Info(line)] = &calls[..] else {
        panic!("{calls:?}")
    };
    assert!(line.contains(r#""outcome":"abandoned""#), "{line}");
    assert!(
        !line.contains("j-gone") && !line.contains(&path[15..]),
        "{line}"
    );
}

/// etcd's access control: claims carry the worker's token; without one a
/// claim is `replay_unavailable` at once (no call, no login); a token etcd
/// refuses is dropped so the root context logs in again.
#[test]
fn with_etcd_auth_claims_carry_the_workers_token_and_drop_a_refused_one() {
    const BAD_TOKEN: &[u8] = br#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#;
    let config = config_with(serde_json::json!({
        "replay_store": {"etcd": {"cluster": "mksgate_etcd", "authority": "etcd",
            "auth": {"user": "mksgate", "password_env": "ETCD_PASSWORD"}}}
    }));
    let answer = |status, body| Answer::Response { status, body };

    // Not logged in yet: refused at once, nothing sent to etcd.
    let mock = Mock::upgrade(&link("j-auth-0"), &[]);
    assert_eq!(kind(on_request_headers(&mock, Some(&config))), "stop");
    let calls = mock.calls();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Dispatch(..))),
        "{calls:?}"
    );
    assert!(calls.contains(&Call::Decision(Code::ReplayUnavailable)));
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::Error(l) if l.contains("not logged in to etcd"))));

    // Logged in: the transaction carries the token.
    let mock = Mock::upgrade(&link("j-auth-1"), &[]);
    *mock.etcd_token.borrow_mut() = Some("tok.1".into());
    let waiting = wait_on_etcd(&mock, &config);
    assert!(
        matches!(
            &mock.calls()[..],
            [Call::Set(..), Call::Dispatch("/v3/kv/txn", _), Call::Authorization(Some(t))] if t == "tok.1"
        ),
        "{:?}",
        mock.calls()
    );
    assert_eq!(
        kind(on_store_answer(
            &mock,
            &config,
            waiting,
            answer(200, CREATED)
        )),
        "continue"
    );
    assert_eq!(mock.etcd_token.borrow().as_deref(), Some("tok.1"));

    // etcd refuses the token: this link is replay_unavailable, and the
    // worker drops the token.
    let mock = Mock::upgrade(&link("j-auth-2"), &[]);
    *mock.etcd_token.borrow_mut() = Some("tok.1".into());
    let waiting = wait_on_etcd(&mock, &config);
    mock.calls.borrow_mut().clear();
    assert_eq!(
        kind(on_store_answer(
            &mock,
            &config,
            waiting,
            answer(401, BAD_TOKEN)
        )),
        "stop"
    );
    assert!(mock
        .calls()
        .contains(&Call::Decision(Code::ReplayUnavailable)));
    assert_eq!(
        *mock.etcd_token.borrow(),
        None,
        "the refused token is dropped"
    );
}

#[test]
fn with_etcd_recorded_before_is_replayed_and_failures_are_unavailable() {
    let config = etcd_config();
    let cases: [(Answer<'_>, Outcome, Code); 3] = [
        (
            Answer::Response {
                status: 200,
                body: EXISTED,
            },
            Outcome::Replayed,
            Code::Replayed,
        ),
        (
            Answer::Response {
                status: 503,
                body: b"{}",
            },
            Outcome::Unavailable(Failure::Error),
            Code::ReplayUnavailable,
        ),
        (
            Answer::NoResponse { timed_out: true },
            Outcome::Unavailable(Failure::Timeout),
            Code::ReplayUnavailable,
        ),
    ];
    for (i, (answer, outcome, code)) in cases.into_iter().enumerate() {
        let mock = Mock::upgrade(&link(&format!("j-{i}")), &[]);
        let waiting = wait_on_etcd(&mock, &config);
        mock.calls.borrow_mut().clear();
        assert_eq!(
            kind(on_store_answer(&mock, &config, waiting, answer)),
            "stop"
        );
        assert!(mock.calls().contains(&Call::StoreOutcome(outcome)));
        assert_eq!(
            mock.replied(),
            Some((code.status(), Some(code.as_str().into())))
        );
        assert!(mock.sets().is_empty(), "nothing rewritten");
        // A failure is logged with what etcd said, never the link.
        let logged: Vec<String> = mock
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Error(line) => Some(line),
                _ => None,
            })
            .collect();
        if code == Code::ReplayUnavailable {
            assert_eq!(logged.len(), 1, "{logged:?}");
            let line: serde_json::Value = serde_json::from_str(&logged[0]).unwrap();
            assert_eq!(line["outcome"], outcome.as_str());
            assert!(!logged[0].contains("eyJ") && !logged[0].contains("tk-1"));
        } else {
            assert!(logged.is_empty(), "{logged:?}");
        }
        assert!(!mock.calls().contains(&Call::Resume), "never resumed");
    }
}

#[test]
fn with_etcd_a_refused_call_is_unavailable_and_refusals_never_ask_etcd() {
    let config = etcd_config();
    let mut mock = Mock::upgrade(&link("j-x"), &[]);
    mock.refuse_dispatch = true;
    mock.calls.borrow_mut().clear();
    assert_eq!(kind(on_request_headers(&mock, Some(&config))), "stop");
    assert_eq!(
        mock.replied(),
        Some((503, Some("replay_unavailable".into())))
    );
    // A forged link is refused before any call.
    let forged = Mock::upgrade("/console?token=a.b.c", &[]);
    forged.calls.borrow_mut().clear();
    assert_eq!(kind(on_request_headers(&forged, Some(&config))), "stop");
    assert!(!forged
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Dispatch(..))));
}
