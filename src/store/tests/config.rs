//! The `[store]` section: defaults, parsing and validation problems.

use crate::config::Config;
use crate::store::StoreBackend;

#[test]
fn store_section_defaults() {
    let config = Config::parse("", "test").unwrap();
    assert_eq!(config.store.backend, StoreBackend::Embedded);
    assert_eq!(config.store.session_variable_retention_days, 30);
    assert_eq!(config.store.conversation_retention_days, 90);
    assert_eq!(
        config.store.conversation_retention_ms(),
        Some(90 * crate::store::DAY_MS)
    );
    assert_eq!(config.store.op_budget_ms, 50);
    assert_eq!(config.store.redis_key_prefix, "sipstamp");
}

#[test]
fn store_section_parses_cluster() {
    let text = r#"
[store]
backend = "redis-cluster"
redis_urls = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
session_variable_retention_days = 7
op_budget_ms = 20
"#;
    let config = Config::parse(text, "test").unwrap();
    assert_eq!(config.store.backend, StoreBackend::RedisCluster);
    assert_eq!(config.store.redis_urls.len(), 2);
    assert_eq!(config.store.retention_ms(), 7 * crate::store::DAY_MS);
}

#[test]
fn store_section_problems() {
    let cases = [
        ("backend = \"redis\"", "store.redis_urls"),
        ("backend = \"redis-cluster\"", "store.redis_urls"),
        ("redis_urls = [\"http://x\"]", "store.redis_urls[0]"),
        ("redis_urls = [\"rediss://x\"]", "store.redis_urls[0]"),
        ("redis_key_prefix = \"a b\"", "store.redis_key_prefix"),
        (
            "session_variable_retention_days = 0",
            "store.session_variable_retention_days",
        ),
        (
            "conversation_retention_days = 3651",
            "store.conversation_retention_days",
        ),
        ("op_budget_ms = 0", "store.op_budget_ms"),
    ];
    for (line, key) in cases {
        let text = format!("[store]\n{line}\n");
        let error = Config::parse(&text, "test").unwrap_err().to_string();
        assert!(error.contains(key), "{line}: {error}");
    }
}

#[test]
fn conversation_retention_bounds() {
    for (days, expected) in [
        (0, None),
        (1, Some(crate::store::DAY_MS)),
        (3650, Some(3650 * crate::store::DAY_MS)),
    ] {
        let text = format!("[store]\nconversation_retention_days = {days}\n");
        let config = Config::parse(&text, "test").unwrap();
        assert_eq!(config.store.conversation_retention_ms(), expected, "{days}");
    }
    let error = Config::parse("[store]\nconversation_retention_days = 3651\n", "test")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("between 0 (keep forever) and 3650"),
        "{error}"
    );
}

#[test]
fn default_config_file_parses() {
    let config = Config::load(None).unwrap();
    assert_eq!(config.store.backend, StoreBackend::Embedded);
}
