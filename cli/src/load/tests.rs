use super::*;

#[test]
fn yaml_conversion() {
    let y: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("a: 1\nb: [x, 2.5, true, null]\n3: !tag v\n").unwrap();
    let j = yaml_to_json(y).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"a": 1, "b": ["x", 2.5, true, null], "3": "v"})
    );
}

#[test]
fn envoy_lookup() {
    let vm = VmEnv::Envoy {
        host_env_keys: vec!["MKSGATE_CLI_TEST_UNSET_VAR".into()],
        key_values: BTreeMap::from([("INLINE".to_string(), "abc".to_string())]),
    };
    assert_eq!(
        resolve(&vm, "INLINE", EnvMode::Strict),
        (Some("abc".into()), EnvStatus::Inline)
    );
    assert_eq!(
        resolve(&vm, "MKSGATE_CLI_TEST_UNSET_VAR", EnvMode::Strict),
        (None, EnvStatus::UnsetHere)
    );
    assert_eq!(
        resolve(&vm, "MKSGATE_CLI_TEST_UNSET_VAR", EnvMode::ShapeOnly).1,
        EnvStatus::UnsetHere
    );
    assert_eq!(
        resolve(&vm, "OTHER", EnvMode::ShapeOnly),
        (None, EnvStatus::NotPassed)
    );
}
