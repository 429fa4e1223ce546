use super::*;
use mksgate_core::revocation::{self, Kind, RevocationSource};

fn close(at: i64) -> Option<Close> {
    Some(Close {
        at,
        reason: EndReason::MaxConsole,
    })
}

#[test]
fn due_consoles_leave_the_table_and_ended_streams_are_forgotten() {
    let mut open = OpenConsoles::default();
    let nobody = Subject::default();
    assert!(open.watch(7, close(100), nobody));
    assert!(open.watch(8, close(200), nobody));
    assert!(open.watch(9, close(100), nobody));
    assert!(open.watch(10, None, nobody));
    assert!(open.forget(9)); // its stream ended first
    assert!(!open.forget(9));
    assert!(!open.any_due(99));
    assert!(open.take_ending(99, None).is_empty());
    assert_eq!(
        open.take_ending(150, None),
        vec![(7, EndReason::MaxConsole)]
    );
    assert!(open.take_ending(150, None).is_empty(), "taken once");
    assert!(open.forget(8));
    assert!(open.forget(10));
    assert_eq!(open.by_context.len(), 0);
}

fn view_revoking(kind: Kind, value: &str) -> View {
    let source = RevocationSource {
        cluster: "c".into(),
        authority: "c".into(),
        key_prefix: "/r/".into(),
        poll_ms: 1000,
        timeout_ms: 1000,
        max_stale_ms: 30_000,
    };
    revocation::tests_support::view_of(&source, &[(kind, value)], 0)
}

#[test]
fn a_revocation_takes_exactly_the_consoles_it_names() {
    let mut open = OpenConsoles::default();
    let alice = |jti| Subject::of(Some("alice"), Some("t1"), Some(jti));
    let bob = Subject::of(Some("bob"), Some("t1"), Some("j9"));
    open.watch(1, None, alice("j1"));
    open.watch(2, close(10_000), alice("j2"));
    open.watch(3, None, bob);
    let view = view_revoking(Kind::Sub, "alice");
    let mut ended = open.take_ending(100, Some(&view));
    ended.sort_by_key(|(id, _)| *id);
    assert_eq!(
        ended,
        vec![(1, EndReason::Revoked), (2, EndReason::Revoked)]
    );
    assert_eq!(open.by_context.len(), 1);
    let view = view_revoking(Kind::Tenant, "t1");
    assert_eq!(
        open.take_ending(100, Some(&view)),
        vec![(3, EndReason::Revoked)]
    );
}

/// The bound: at most 128 bytes per open console, the map's slack
/// included (its buckets are a power of two, at most 7/8 full).
#[test]
fn open_consoles_cost_at_most_128_bytes_each() {
    let entry = std::mem::size_of::<(u32, Entry)>();
    assert_eq!(entry, 48);
    let mut open = OpenConsoles::default();
    let mut worst: f64 = 0.0;
    for n in 1..=20_000u32 {
        open.watch(n, close(1), Subject::of(Some("s"), None, Some("j")));
        if n >= 64 {
            let buckets = (open.by_context.capacity() * 8 / 7).next_power_of_two();
            // Each bucket is an entry and one control byte.
            let per = (buckets * (entry + 1)) as f64 / f64::from(n);
            worst = worst.max(per);
        }
    }
    assert!(worst <= 128.0, "{worst:.1} bytes per console");
}
