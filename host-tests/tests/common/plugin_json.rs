//! The plugin configuration inside a shipped Envoy file: read it, replace
//! it, and the static layout ready for `envoy --mode validate`.

use super::*;

/// The wasm filter's plugin configuration, found by parsing the YAML (the
/// `envoy.extensions.filters.http.wasm.v3.Wasm` typed config's
/// `config.configuration.value`), as JSON.
pub fn parsed_plugin_json(yaml: &str) -> Result<Value> {
    fn find(v: &serde_yaml_ng::Value) -> Option<&str> {
        const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                if m.get("@type").and_then(|t| t.as_str()) == Some(WASM) {
                    return m
                        .get("config")?
                        .get("configuration")?
                        .get("value")?
                        .as_str();
                }
                m.values().find_map(find)
            }
            serde_yaml_ng::Value::Sequence(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    // `@TMPDIR@` (Envoy's directory, filled in at start) cannot start a
    // YAML scalar; any path stands in for it here.
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&yaml.replace("@TMPDIR@", "/tmp")).context("parsing the YAML")?;
    let text = find(&doc).ok_or_else(|| anyhow!("no wasm filter plugin configuration"))?;
    serde_json::from_str(text).context("plugin configuration JSON")
}

/// The plugin configuration block of a shipped Envoy config: the literal
/// text (as indented in the YAML, for `with_plugin_json` to replace) and
/// its JSON, which must equal what parsing the YAML finds.
pub fn plugin_json(yaml: &str) -> Result<(String, Value)> {
    let marker = "\"@type\": type.googleapis.com/google.protobuf.StringValue";
    let start = yaml
        .find(marker)
        .ok_or_else(|| anyhow!("no StringValue plugin configuration in the config"))?;
    let after = &yaml[start..];
    let value_at = after
        .find("value: |\n")
        .ok_or_else(|| anyhow!("plugin configuration is not a `value: |` block"))?;
    let value_line_start = after[..value_at].rfind('\n').map_or(0, |i| i + 1);
    let indent = value_at - value_line_start;
    let body_start = value_at + "value: |\n".len();
    let mut end = body_start;
    for line in after[body_start..].split_inclusive('\n') {
        let spaces = line.len() - line.trim_start_matches(' ').len();
        if !line.trim().is_empty() && spaces <= indent {
            break;
        }
        end += line.len();
    }
    let block = after[body_start..end].to_string();
    let value: Value = serde_json::from_str(&block).context("plugin configuration JSON")?;
    if value != parsed_plugin_json(yaml)? {
        bail!("the `value: |` block found is not the wasm filter's plugin configuration");
    }
    Ok((block, value))
}

/// `yaml` with its plugin JSON replaced by `json` (pretty-printed, indented
/// like the original block), through `replace_exact`.
pub fn with_plugin_json(yaml: &str, json: &Value) -> Result<String> {
    let (block, _) = plugin_json(yaml)?;
    let indent = block.len() - block.trim_start_matches(' ').len();
    let pad = " ".repeat(indent);
    let pretty = serde_json::to_string_pretty(json)?;
    let mut new_block = String::new();
    for line in pretty.lines() {
        new_block.push_str(&pad);
        new_block.push_str(line);
        new_block.push('\n');
    }
    replace_exact(yaml, &[(block.as_str(), new_block.as_str())])
}

/// The shipped static-clusters config with placeholder upstreams (for
/// `envoy --mode validate`, which connects nowhere).
pub fn shipped_static_for_validation() -> Result<String> {
    let up = |n: u8| shipped::Upstream {
        addr: SocketAddr::new(loopback(n), 9),
        pin: "ab".repeat(32),
    };
    shipped::static_clusters(&[up(2), up(3)])
}
