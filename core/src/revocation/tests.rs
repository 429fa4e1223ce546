use super::*;
use crate::etcd::Answer;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn source() -> RevocationSource {
    RevocationSource {
        cluster: "mksgate_etcd".into(),
        authority: "etcd".into(),
        key_prefix: DEFAULT_KEY_PREFIX.into(),
        poll_ms: 1000,
        timeout_ms: 1500,
        max_stale_ms: 30_000,
    }
}

/// etcd's answer to a range: `keys` as (key, create_revision).
fn answer(revision: i64, count: i64, more: bool, keys: &[(&str, i64)]) -> Vec<u8> {
    let kvs: Vec<String> = keys
        .iter()
        .map(|(k, c)| {
            format!(
                r#"{{"key":"{}","create_revision":"{c}","mod_revision":"{c}","version":"1"}}"#,
                STANDARD.encode(k)
            )
        })
        .collect();
    format!(
        r#"{{"header":{{"revision":"{revision}"}},"kvs":[{}],"more":{more},"count":"{count}"}}"#,
        kvs.join(",")
    )
    .into_bytes()
}

fn ok(body: &[u8]) -> Answer<'_> {
    Answer::Response { status: 200, body }
}

#[test]
fn the_key_holds_the_kind_and_a_hash_never_the_value() {
    let key = key(DEFAULT_KEY_PREFIX, Kind::Sub, "alice@example.com");
    let rest = key.strip_prefix("/mksgate/revoked/sub/").unwrap();
    assert_eq!(rest.len(), 32);
    assert!(!key.contains("alice"));
    // The format is fixed for other etcd clients: this vector must not move.
    assert_eq!(
        key,
        format!(
            "/mksgate/revoked/sub/{}",
            hex16(&id(Kind::Sub, "alice@example.com"))
        )
    );
    assert_ne!(id(Kind::Sub, "x"), id(Kind::Jti, "x"));
    assert_ne!(id(Kind::Sub, "ab"), id(Kind::Sub, "a"));
}

fn hex16(id: &[u8; 32]) -> String {
    id[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_key_reads_back_to_the_subjects_id() {
    let key = key("/p/", Kind::Tenant, "t1");
    let short = short_id_of_key(key.strip_prefix("/p/").unwrap().as_bytes()).unwrap();
    let subject = Subject::of(None, Some("t1"), None);
    assert!(subject.matches(&[short].into_iter().collect()));
    assert!(!Subject::of(Some("t1"), None, None).matches(&[short].into_iter().collect()));
    for stray in [
        "",
        "sub",
        "sub/",
        "who/00000000000000000000000000000000",
        "sub/0000",
        "sub/zz000000000000000000000000000000",
    ] {
        assert_eq!(short_id_of_key(stray.as_bytes()), None, "{stray}");
    }
    // An absent claim matches nothing, even a revoked id of 0.
    assert!(!Subject::of(None, None, None).matches(&[0, 1].into_iter().collect()));
}

#[test]
fn the_first_read_is_full_then_changes_only_and_a_gone_key_reads_all_again() {
    let source = source();
    let alice = key(&source.key_prefix, Kind::Sub, "alice");
    let bob = key(&source.key_prefix, Kind::Sub, "bob");
    let mut view = View::default();
    let subject = |s| Subject::of(Some(s), None, None);
    assert_eq!(
        view.verdict(&subject("alice"), 0, 30_000),
        Verdict::Unavailable
    );

    let call = view.poll(&source, 1_000, None).unwrap();
    assert!(!call.body.contains("min_mod_revision"), "{}", call.body);
    assert!(
        view.poll(&source, 1_100, None).is_none(),
        "one read at a time"
    );
    let body = answer(10, 1, false, &[(&alice, 9)]);
    assert_eq!(
        view.on_answer(&source, ok(&body)),
        ReadOutcome::Done { added: true }
    );
    assert_eq!(
        view.verdict(&subject("alice"), 1_500, 30_000),
        Verdict::Revoked
    );
    assert_eq!(view.verdict(&subject("bob"), 1_500, 30_000), Verdict::Clear);

    assert!(view.poll(&source, 1_900, None).is_none(), "poll_ms apart");
    let call = view.poll(&source, 2_000, None).unwrap();
    assert!(
        call.body.contains(r#""min_mod_revision":"11""#),
        "{}",
        call.body
    );
    let body = answer(12, 2, false, &[(&bob, 12)]);
    assert_eq!(
        view.on_answer(&source, ok(&body)),
        ReadOutcome::Done { added: true }
    );
    assert_eq!(
        view.verdict(&subject("bob"), 2_500, 30_000),
        Verdict::Revoked
    );

    // alice's lease ended: nothing changed since 12, but the count fell.
    let _ = view.poll(&source, 3_000, None).unwrap();
    let body = answer(13, 1, false, &[]);
    assert_eq!(
        view.on_answer(&source, ok(&body)),
        ReadOutcome::Done { added: false }
    );
    let call = view.poll(&source, 3_010, None).unwrap();
    assert!(!call.body.contains("min_mod_revision"), "at once, and full");
    let body = answer(13, 1, false, &[(&bob, 12)]);
    assert_eq!(
        view.on_answer(&source, ok(&body)),
        ReadOutcome::Done { added: false }
    );
    assert_eq!(
        view.verdict(&subject("alice"), 3_100, 30_000),
        Verdict::Clear
    );
    assert_eq!(view.len(), 1);
}

#[test]
fn a_long_answer_comes_in_pages_at_one_revision() {
    let source = source();
    let keys: Vec<String> = (0..3)
        .map(|i| key(&source.key_prefix, Kind::Jti, &format!("j{i}")))
        .collect();
    let mut view = View::default();
    let _ = view.poll(&source, 0, Some("tok")).unwrap();
    let first = answer(20, 3, true, &[(&keys[0], 5), (&keys[1], 6)]);
    let ReadOutcome::Send(next) = view.on_answer(&source, ok(&first)) else {
        panic!("a second page")
    };
    assert!(next.body.contains(r#""revision":"20""#), "{}", next.body);
    assert_eq!(next.authorization.as_deref(), Some("tok"));
    let mut after = keys[1].clone().into_bytes();
    after.push(0);
    assert!(
        next.body.contains(&STANDARD.encode(&after)),
        "from just after the last key"
    );
    let last = answer(20, 3, false, &[(&keys[2], 7)]);
    assert_eq!(
        view.on_answer(&source, ok(&last)),
        ReadOutcome::Done { added: true }
    );
    assert_eq!(view.len(), 3);
}

#[test]
fn a_failed_read_keeps_the_view_and_its_age_until_it_is_stale() {
    let source = source();
    let alice = key(&source.key_prefix, Kind::Sub, "alice");
    let mut view = View::default();
    let _ = view.poll(&source, 0, None);
    let body = answer(3, 1, false, &[(&alice, 2)]);
    assert_eq!(
        view.on_answer(&source, ok(&body)),
        ReadOutcome::Done { added: true }
    );
    let alice_subject = Subject::of(Some("alice"), None, None);
    for (i, bad) in [
        Answer::NoResponse { timed_out: true },
        Answer::Response {
            status: 503,
            body: b"no healthy upstream",
        },
        Answer::Response {
            status: 200,
            body:
                br#"{"error":"etcdserver: mvcc: required revision has been compacted","code":11}"#,
        },
        Answer::Response {
            status: 200,
            body: b"{}",
        },
        Answer::Response {
            status: 200,
            body: br#"{"header":{"revision":"4"},"kvs":[{"key":"%%"}]}"#,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let now = 1_000 * (i as i64 + 1);
        let _ = view.poll(&source, now, None).unwrap();
        assert!(matches!(
            view.on_answer(&source, bad),
            ReadOutcome::Failed {
                refused_token: None,
                ..
            }
        ));
        assert!(view.is_revoked(&alice_subject), "the view stays");
    }
    assert_eq!(
        view.verdict(&alice_subject, 30_000, 30_000),
        Verdict::Revoked
    );
    let bob = Subject::of(Some("bob"), None, None);
    assert_eq!(view.verdict(&bob, 30_000, 30_000), Verdict::Clear);
    assert_eq!(view.verdict(&bob, 30_001, 30_000), Verdict::Unavailable);
    let _ = view.poll(&source, 31_000, Some("old")).unwrap();
    let refused = br#"{"error":"etcdserver: invalid auth token","code":16}"#;
    let answer = Answer::Response {
        status: 401,
        body: refused,
    };
    let ReadOutcome::Failed { refused_token, .. } = view.on_answer(&source, answer) else {
        panic!("failed")
    };
    assert_eq!(
        refused_token.as_deref(),
        Some("old"),
        "the token it carried"
    );
    // An answer that never comes is given up after the timeout.
    let _ = view.poll(&source, 40_000, None).unwrap();
    assert!(view.poll(&source, 41_000, None).is_none());
    assert!(view.poll(&source, 42_600, None).is_some());
}
