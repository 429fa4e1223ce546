//! The shipped JSON access log, read back: Envoy writes a line when a
//! console's tunnel is up (`DownstreamTunnelSuccessfullyEstablished`) and
//! one when each stream ends (`DownstreamEnd`), each with the filter's
//! audit from filter state. One home for telling them apart.

use serde_json::Value;

/// `%ACCESS_LOG_TYPE%` of the line written when a stream ends.
pub const END: &str = "DownstreamEnd";
/// `%ACCESS_LOG_TYPE%` of the line written when a tunnel (a 101) is up.
pub const TUNNEL_UP: &str = "DownstreamTunnelSuccessfullyEstablished";

/// Every JSON access-log line in `text` (Envoy's stdout, other lines
/// skipped).
pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some() && v.get("decision").is_some())
        .collect()
}

/// The lines of one `event`.
pub fn lines_of(text: &str, event: &str) -> Vec<Value> {
    lines(text)
        .into_iter()
        .filter(|l| l["event"] == event)
        .collect()
}

/// One record per console decision, oldest first: the tunnel line of an
/// upgrade that was answered 101, the end line of anything else (its end
/// line would repeat it). Requests the filter did not decide (Envoy's own
/// refusals) are left out. Each record also has `code` (the decision) and
/// the access log's fields.
pub fn decisions(text: &str) -> Vec<Value> {
    lines(text)
        .into_iter()
        .filter(|l| l["decision"].is_string())
        .filter(|l| l["event"] == TUNNEL_UP || (l["event"] == END && l["status"] != 101))
        .map(|mut l| {
            l["code"] = l["decision"].clone();
            l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_is_one_decision_and_envoys_own_refusals_none() {
        let text = r#"[info] not json
{"event":"DownstreamTunnelSuccessfullyEstablished","status":101,"decision":"admitted","jti":"j1"}
{"event":"DownstreamEnd","status":403,"decision":"bad_signature","jti":null}
{"event":"DownstreamEnd","status":101,"decision":"admitted","jti":"j1"}
{"event":"DownstreamEnd","status":400,"decision":null}
"#;
        let d = decisions(text);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (&d[0]["code"], &d[0]["jti"]),
            (&"admitted".into(), &"j1".into())
        );
        assert_eq!(d[1]["code"], "bad_signature");
        assert_eq!(lines_of(text, END).len(), 3);
        assert_eq!(lines_of(text, TUNNEL_UP).len(), 1);
    }
}
