//! A console's lifetime: the link's `console_exp` claim and the config's
//! `max_console_seconds`. The decision refuses a link whose console would
//! close at once (`console_expired`) and gives each admission its `Close`;
//! the filter ends the console then, from its root context's tick.

/// When and why the filter ends an admitted console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Seconds since the epoch.
    pub at: i64,
    pub reason: EndReason,
}

/// Why the filter ended a console: the access log's `mksgate_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The link's `console_exp`.
    ConsoleExp,
    /// `max_console_seconds` after the admission.
    MaxConsole,
    /// A revocation names its `sub`, `tenant` or `jti`.
    Revoked,
}

impl EndReason {
    pub const ALL: [EndReason; 3] = [
        EndReason::ConsoleExp,
        EndReason::MaxConsole,
        EndReason::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ConsoleExp => "console_exp",
            EndReason::MaxConsole => "max_console",
            EndReason::Revoked => "revoked",
        }
    }
}

/// Whether `console_exp` is at or before `now` minus the skew: the console
/// would close at once, so the link is refused before it is spent.
pub fn already_over(console_exp: Option<i64>, now: i64, skew: i64) -> bool {
    console_exp.is_some_and(|at| at <= now.saturating_sub(skew))
}

/// The close of a console admitted at `now`: the earlier of `console_exp`
/// and `now + max_console_seconds`; `None` when neither is set.
pub fn close_for(
    console_exp: Option<i64>,
    max_console_seconds: Option<i64>,
    now: i64,
) -> Option<Close> {
    let by_link = console_exp.map(|at| Close {
        at,
        reason: EndReason::ConsoleExp,
    });
    let by_config = max_console_seconds.map(|s| Close {
        at: now.saturating_add(s),
        reason: EndReason::MaxConsole,
    });
    match (by_link, by_config) {
        (Some(a), Some(b)) => Some(if a.at <= b.at { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_earlier_close_wins() {
        let now = 1_000;
        assert_eq!(close_for(None, None, now), None);
        let exp = |at| {
            Some(Close {
                at,
                reason: EndReason::ConsoleExp,
            })
        };
        let max = |at| {
            Some(Close {
                at,
                reason: EndReason::MaxConsole,
            })
        };
        assert_eq!(close_for(Some(1_003), None, now), exp(1_003));
        assert_eq!(close_for(None, Some(60), now), max(1_060));
        assert_eq!(close_for(Some(1_003), Some(60), now), exp(1_003));
        assert_eq!(close_for(Some(2_000), Some(60), now), max(1_060));
        assert_eq!(
            close_for(None, Some(i64::MAX), now).map(|c| c.at),
            Some(i64::MAX)
        );
    }

    #[test]
    fn a_console_exp_already_past_is_over() {
        assert!(already_over(Some(1_000), 1_000, 0));
        assert!(!already_over(Some(1_001), 1_000, 0));
        // The skew gives the portal's clock room, as for `exp`.
        assert!(!already_over(Some(990), 1_000, 30));
        assert!(already_over(Some(970), 1_000, 30));
        assert!(!already_over(None, 1_000, 30));
        assert!(already_over(Some(i64::MIN), i64::MIN, 30));
    }
}
