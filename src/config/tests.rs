//! Validation of the trunk, tenant and release settings used by identity and pseudonyms.

use super::*;

/// Returns the keys of every problem in a configuration text.
fn problem_keys(text: &str) -> Vec<String> {
    match Config::parse(text, "test") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
        Err(other) => panic!("expected validation problems, got {other}"),
    }
}

#[test]
fn trunk_numbering_accepted() {
    let text = "[[trunks]]\nid = \"de\"\nregion = \"de\"\n\n[[trunks]]\nid = \"us.1\"\ncountry_code = 1\nnational_prefix = \"1\"\ninternational_prefix = \"011\"\n";
    assert_eq!(problem_keys(text), Vec::<String>::new());
}

#[test]
fn trunk_numbering_problems_reported() {
    let cases = [
        ("region = \"XX\"", "trunks[0].region"),
        ("country_code = 999", "trunks[0].country_code"),
        (
            "region = \"DE\"\ncountry_code = 33",
            "trunks[0].country_code",
        ),
        (
            "region = \"DE\"\nnational_prefix = \"0a\"",
            "trunks[0].national_prefix",
        ),
        (
            "region = \"DE\"\ninternational_prefix = \"\"",
            "trunks[0].international_prefix",
        ),
        (
            "national_prefix = \"0\"\ninternational_prefix = \"00\"",
            "trunks[0].national_prefix",
        ),
        (
            "country_code = 49\nnational_prefix = \"0\"",
            "trunks[0].international_prefix",
        ),
        (
            "region = \"DE\"\nnational_prefix = \"00\"",
            "trunks[0].national_prefix",
        ),
        ("anonymous_users = [\"\"]", "trunks[0].anonymous_users[0]"),
    ];
    for (settings, key) in cases {
        let text = format!("[[trunks]]\nid = \"t\"\n{settings}\n");
        let keys = problem_keys(&text);
        assert!(keys.iter().any(|k| k == key), "{settings}: got {keys:?}");
    }
}

#[test]
fn trunk_ids_must_be_labels() {
    for id in ["", "a@b", "a b", "x/y"] {
        let keys = problem_keys(&format!("[[trunks]]\nid = \"{id}\"\n"));
        assert_eq!(keys, ["trunks[0].id"], "id {id:?}");
    }
    let twice = problem_keys("[[trunks]]\nid = \"t\"\n[[trunks]]\nid = \"t\"\n");
    assert_eq!(twice, ["trunks[1].id"]);
}

#[test]
fn tenant_and_release_problems_reported() {
    let text = r#"
[[tenants]]
name = "../x"
key_id = "k1"
previous_keys = [{ key_id = "k1", key_file = "a" }, { key_id = "k0" }]

[[releases]]
instance_id = "a"
tenant = "../x"
request_uri_users = ["100", ""]

[[releases]]
instance_id = "b"
tenant = "../x"
request_uri_users = ["100"]
"#;
    let keys = problem_keys(text);
    for key in [
        "tenants[0].name",
        "tenants[0].previous_keys[0].key_id",
        "tenants[0].previous_keys[1].key_file",
        "releases[0].request_uri_users[1]",
        "releases[1].request_uri_users[0]",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn documented_trunk_example_parses() {
    let start = DEFAULT_CONFIG
        .find("# [[trunks]]")
        .expect("the default config documents a trunk");
    let example: String = DEFAULT_CONFIG[start..]
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::parse(&example, "trunk example").unwrap();
    assert_eq!(config.trunks.len(), 1);
    assert_eq!(config.trunks[0].country_code, Some(49));
}

#[test]
fn tcp_limits_defaults_and_validation() {
    let config = Config::parse("", "test").expect("empty config is valid");
    assert_eq!(config.limits.max_tcp_connections_per_source, 64);
    assert_eq!(config.limits.tcp_header_timeout_secs, 10);

    let text = "[limits]\nmax_tcp_connections_per_source = 0\ntcp_header_timeout_secs = 0\n";
    assert_eq!(
        problem_keys(text),
        vec![
            "limits.max_tcp_connections_per_source".to_owned(),
            "limits.tcp_header_timeout_secs".to_owned(),
        ]
    );
}

#[test]
fn stamped_names_must_not_be_sip_headers() {
    for name in [
        "Via",
        "i",
        "call-id",
        "Content-Length",
        "P-Asserted-Identity",
    ] {
        let text = format!("[headers]\ncallid = \"{name}\"\n");
        let problems = match Config::parse(&text, "test") {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("{name}: expected a validation error, got {other:?}"),
        };
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert_eq!(problems[0].key, "headers.callid", "{name}");
    }
}

#[test]
fn type_errors_in_several_sections_all_reported() {
    let text = "[sip]\nupstrem = \"127.0.0.1:5090\"\n[log]\nformat = \"xml\"\n[store]\nbackend = \"mongo\"\n";
    let problems = match Config::parse(text, "test") {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected every section reported, got {other:?}"),
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["log", "sip", "store"]);
    assert!(problems[1].message.contains("upstrem"), "{problems:?}");
}

#[test]
fn upstream_must_not_be_own_listener() {
    let text = "[sip]\nupstream = \"127.0.0.1:5060\"\n";
    let problems = match Config::parse(text, "test") {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "sip.upstream");
}

#[test]
fn flood_defaults_and_validation() {
    let config = Config::parse("", "test").expect("empty config is valid");
    assert_eq!(
        config.flood.requests_per_second, 0,
        "limit is off by default"
    );
    assert_eq!(config.flood.action, crate::config::FloodAction::Drop);
    assert!(config.flood.exempt_trusted);

    let config = Config::parse("[flood]\naction = \"reply-503\"\n", "test").expect("valid");
    assert_eq!(config.flood.action, crate::config::FloodAction::Reply503);

    let text = "[flood]\nrequests_per_second = 10\nburst = 0\nmax_sources = 0\n";
    assert_eq!(
        problem_keys(text),
        vec!["flood.burst".to_owned(), "flood.max_sources".to_owned()]
    );
    assert!(Config::parse("[flood]\naction = \"reject\"\n", "test").is_err());
}

#[test]
fn setup_timeout_bounded_by_max_age() {
    let config = Config::parse("", "test").expect("valid");
    assert_eq!(config.calls.setup_timeout_secs, 200);
    for text in [
        "[calls]\nsetup_timeout_secs = 0\n",
        "[calls]\nsetup_timeout_secs = 601\nmax_age_secs = 600\n",
    ] {
        assert_eq!(
            problem_keys(text),
            vec!["calls.setup_timeout_secs".to_owned()],
            "{text}"
        );
    }
    assert!(problem_keys("[calls]\nsetup_timeout_secs = 600\nmax_age_secs = 600\n").is_empty());
}

#[test]
fn type_error_keeps_other_problems() {
    let text = "[sip]\nworkers = \"four\"\n[headers]\ncallid = \"Via\"\n";
    let problems = match Config::parse(text, "test") {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected every problem reported, got {other:?}"),
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["sip", "headers.callid"]);
}

/// Returns the problems of a configuration text that must fail validation.
fn problems_of(text: &str) -> Vec<Problem> {
    match Config::parse(text, "test") {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn bad_trusted_cidrs_named_with_index_and_value() {
    let text = "[[trunks]]\nid = \"t\"\ntrusted_cidrs = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"garbage\", \"2001:db8::/129\", \"192.0.2.7\", \"nothing/24\"]\n";
    let problems = problems_of(text);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "trunks[0].trusted_cidrs[1]",
            "trunks[0].trusted_cidrs[2]",
            "trunks[0].trusted_cidrs[3]",
            "trunks[0].trusted_cidrs[4]",
            "trunks[0].trusted_cidrs[5]",
        ]
    );
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(messages[0].contains("\"10.0.0.0/33\""), "{messages:?}");
    assert!(messages[0].contains("prefix length 33 is out of range for an IPv4 address (0 to 32)"));
    assert!(messages[1].contains("\"garbage\" is not an IP address range"));
    assert!(messages[2].contains("out of range for an IPv6 address (0 to 128)"));
    assert!(messages[3].contains("has no prefix length"));
    assert!(messages[4].contains("before '/' is not an IP address"));
}

#[test]
fn trusted_cidrs_still_match_sources() {
    let config = Config::parse(
        "[[trunks]]\nid = \"t\"\ntrusted_cidrs = [\"192.0.2.9/24\", \"2001:db8::/32\"]\n",
        "test",
    )
    .unwrap();
    let networks: Vec<String> = config.trunks[0]
        .trusted_networks()
        .map(|n| n.trunc().to_string())
        .collect();
    assert_eq!(networks, ["192.0.2.0/24", "2001:db8::/32"]);
}

#[test]
fn workers_bounded() {
    for workers in [0, 1, MAX_WORKERS] {
        let text = format!("[sip]\nworkers = {workers}\n");
        assert_eq!(problem_keys(&text), Vec::<String>::new(), "{workers}");
    }
    for workers in [MAX_WORKERS + 1, 100_000] {
        let text = format!("[sip]\nworkers = {workers}\n");
        assert_eq!(problem_keys(&text), ["sip.workers"], "{workers}");
    }
}

#[test]
fn empty_data_dir_rejected() {
    assert_eq!(problem_keys("data_dir = \"\"\n"), ["data_dir"]);
    assert_eq!(problem_keys("data_dir = \"data\"\n"), Vec::<String>::new());
}

#[test]
fn admin_listen_must_not_overlap_sip_tcp() {
    let overlapping = [
        ("127.0.0.1:5060", "[\"127.0.0.1:5060\"]"),
        ("0.0.0.0:5060", "[\"127.0.0.1:5060\"]"),
        ("127.0.0.1:5060", "[\"0.0.0.0:5060\"]"),
        ("[::]:5060", "[\"127.0.0.1:5060\"]"),
        ("127.0.0.1:5070", "[\"127.0.0.1:5060\", \"[::]:5070\"]"),
    ];
    for (admin, tcp) in overlapping {
        let text = format!("[sip]\ntcp = {tcp}\n[admin]\nlisten = \"{admin}\"\n");
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{admin} {tcp}: {problems:?}");
        assert_eq!(problems[0].key, "admin.listen");
        assert!(
            problems[0].message.contains("SIP TCP listener"),
            "{problems:?}"
        );
    }
    let separate = [
        ("127.0.0.1:9090", "[\"127.0.0.1:5060\"]"),
        ("127.0.0.2:5060", "[\"127.0.0.1:5060\"]"),
        ("0.0.0.0:5060", "[\"[::1]:5060\"]"),
        ("127.0.0.1:0", "[\"127.0.0.1:0\"]"),
    ];
    for (admin, tcp) in separate {
        // A UDP listener on the admin port does not conflict with the admin TCP listener.
        let text =
            format!("[sip]\ntcp = {tcp}\nudp = [\"{admin}\"]\n[admin]\nlisten = \"{admin}\"\n");
        assert_eq!(problem_keys(&text), Vec::<String>::new(), "{admin} {tcp}");
    }
}

#[test]
fn upstream_needs_udp_listener_of_its_family() {
    let ipv6_only =
        "[sip]\nudp = [\"[::1]:5060\"]\ntcp = [\"[::1]:5060\"]\nupstream = \"127.0.0.1:5090\"\n";
    assert_eq!(problem_keys(ipv6_only), vec!["sip.upstream".to_owned()]);
    let error = Config::parse(ipv6_only, "test").unwrap_err().to_string();
    assert!(error.contains("no sip.udp listener is IPv4"), "{error}");

    // Over TCP the proxy connects out from any local address.
    let over_tcp = format!("{ipv6_only}upstream_transport = \"tcp\"\n");
    assert!(problem_keys(&over_tcp).is_empty());
    let tcp_only = "[sip]\nudp = []\ntcp = [\"[::1]:5060\"]\nupstream = \"127.0.0.1:5090\"\n";
    assert!(problem_keys(tcp_only).is_empty());
    let forced_udp = format!("{tcp_only}upstream_transport = \"udp\"\n");
    assert_eq!(problem_keys(&forced_udp), vec!["sip.upstream".to_owned()]);
    let ipv6_upstream = "[sip]\nudp = [\"[::1]:5060\"]\nupstream = \"[::1]:5090\"\n";
    assert!(problem_keys(ipv6_upstream).is_empty());
}
