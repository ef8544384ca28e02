//! Key ring, key files and the session-id command. Expected sessionids were computed
//! independently with Python's hmac, hashlib and base64 modules, the same way as in the
//! known-answer test of the sessionid construction.

use std::collections::HashMap;
use std::path::Path;

use zeroize::Zeroizing;

use super::*;
use crate::config::Config;

const TENANT_A: [u8; 32] = [0x11; 32];
const TENANT_A_RETIRED: [u8; 32] = [0x33; 32];
const TENANT_B: [u8; 32] = [0x22; 32];

/// Expected sessionids as (key id, instance id, callerid, sessionid).
const KNOWN_ANSWERS: [(&str, &str, &str, &str); 10] = [
    (
        "a1",
        "alpha",
        "+4930123456",
        "a1_uh4kp7bvr4gnhylburudih6bnd7hhxrfqpwdhi7rxeocws6akmdq",
    ),
    (
        "a1",
        "alpha",
        "sip:Alice@example.com",
        "a1_ud4iru5t6uob5myv2pjgicmotkhxj2yoawddcaeekkjd6e4mnjzq",
    ),
    (
        "a1",
        "beta",
        "+4930123456",
        "a1_aakgtdurfdadfjle2jghueiqmbme4r2c62bwrcmxnyyyi5byqaoq",
    ),
    (
        "a1",
        "beta",
        "sip:Alice@example.com",
        "a1_io4iyrz3gjyxzj4yzxupcmtu2ltlsyxzr7f4rik4jjdh24t45b7a",
    ),
    (
        "b1",
        "gamma",
        "+4930123456",
        "b1_btmqla7u37v7z24buuefx5k7pbqmebke5xcymu6i4ieft2zpowgq",
    ),
    (
        "b1",
        "gamma",
        "sip:Alice@example.com",
        "b1_uamqykafhz4nfw5pmrthb6z33d65d3gflu7zzkt66qxziwxrjrtq",
    ),
    (
        "a0",
        "alpha",
        "+4930123456",
        "a0_5whap6cl2uzs74sz2aoyuokbk567pqrbxlortbllr6g43u5q76nq",
    ),
    (
        "a0",
        "alpha",
        "sip:Alice@example.com",
        "a0_jorfbw76rqg557nx4da2l2td532jmooaixizhulydmmbbecjmfoq",
    ),
    (
        "a0",
        "beta",
        "+4930123456",
        "a0_r5kxnracuzhlihvvsc7yxq6ckjyjdnfn5z5hqvj4wkeu4vqglljq",
    ),
    (
        "a0",
        "beta",
        "sip:Alice@example.com",
        "a0_z75diydbo6ee2gjdknbjqt4yxrdvchysc6t56a4njokjoz54slva",
    ),
];

/// Two tenants, three releases; tenant a has one retired key (a0) stored in `dir`.
fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("a.key"), hex::encode(TENANT_A)).unwrap();
    std::fs::write(
        dir.join("a0.key"),
        format!("  {}\n", hex::encode(TENANT_A_RETIRED)),
    )
    .unwrap();
    std::fs::write(dir.join("b.key"), hex::encode_upper(TENANT_B)).unwrap();
    let d = dir.display();
    let text = format!(
        r#"
data_dir = "{d}/data"

[[tenants]]
name = "a"
key_id = "a1"
key_file = "{d}/a.key"
previous_keys = [{{ key_id = "a0", key_file = "{d}/a0.key" }}]

[[tenants]]
name = "b"
key_id = "b1"
key_file = "{d}/b.key"

[[releases]]
instance_id = "alpha"
tenant = "a"

[[releases]]
instance_id = "beta"
tenant = "a"
request_uri_users = ["+4980012345", "service"]

[[releases]]
instance_id = "gamma"
tenant = "b"
request_uri_users = ["4711"]

[[trunks]]
id = "de"
region = "DE"
trusted_cidrs = ["192.0.2.0/24"]
"#
    );
    Config::parse(&text, "test").unwrap()
}

#[test]
fn ring_matches_known_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::load(&config(dir.path())).unwrap();
    for (key_id, instance, callerid, expected) in KNOWN_ANSWERS {
        let release = ring.release_by_id(instance).unwrap();
        let all = release.sessionids_all_keys(callerid);
        let position = if key_id.ends_with('0') { 1 } else { 0 };
        assert_eq!(all[position], expected, "{key_id} {instance} {callerid}");
    }
}

#[test]
fn ring_from_explicit_tenant_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let keys = HashMap::from([
        (
            "a".to_owned(),
            TenantKeys {
                current: Zeroizing::new(TENANT_A.to_vec()),
                previous: Vec::new(),
            },
        ),
        (
            "b".to_owned(),
            TenantKeys {
                current: Zeroizing::new(TENANT_B.to_vec()),
                previous: Vec::new(),
            },
        ),
    ]);
    let ring = KeyRing::from_tenant_keys(&config, &keys).unwrap();
    let gamma = ring.release("gamma").unwrap();
    assert_eq!(gamma.sessionid("+4930123456"), KNOWN_ANSWERS[4].3);
    assert!(ring.release("delta").is_none());
    assert_eq!(
        sessionids_all_keys(ring.select(None), "+4930123456").len(),
        1
    );
}

#[test]
fn rotation_keeps_old_sessionids_findable() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::load(&config(dir.path())).unwrap();
    let alpha = ring.release_by_id("alpha").unwrap();
    let all = sessionids_all_keys(alpha, "+4930123456");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], alpha.sessionid("+4930123456"));
    assert_ne!(all[0], all[1]);
    assert_eq!(
        ring.release_by_id("gamma")
            .unwrap()
            .sessionids_all_keys("x")
            .len(),
        1
    );
}

#[test]
fn select_by_request_uri_user() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::load(&config(dir.path())).unwrap();
    assert_eq!(ring.select(None).instance_id(), "alpha");
    assert_eq!(ring.select(Some(b"+4980012345")).instance_id(), "beta");
    assert_eq!(ring.select(Some(b"service")).instance_id(), "beta");
    assert_eq!(ring.select(Some(b"4711;npdi")).instance_id(), "gamma");
    assert_eq!(ring.select(Some(b"0815")).instance_id(), "alpha");
    assert_eq!(ring.select(Some(b"SERVICE")).instance_id(), "alpha");
}

#[test]
fn generated_key_created_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        &format!("data_dir = \"{}/data\"\n", dir.path().display()),
        "test",
    )
    .unwrap();
    let tenant = &config.tenants[0];

    assert!(matches!(
        load_key(tenant, &config.data_dir),
        Err(KeyLoadError::Missing { .. })
    ));
    let (first, created) = load_or_create_key(tenant, &config.data_dir).unwrap();
    assert!(created);
    assert_eq!(first.len(), 32);
    let (second, created_again) = load_or_create_key(tenant, &config.data_dir).unwrap();
    assert!(!created_again);
    assert_eq!(first, second);

    let path = generated_key_path(tenant, &config.data_dir);
    assert!(path.ends_with("secret-default.key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let folder_mode = std::fs::metadata(&config.data_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(folder_mode & 0o077, 0);
    }

    let (ring, created) = KeyRing::load_or_create(&config).unwrap();
    assert!(created.is_empty());
    assert_eq!(ring.releases().len(), 1);
}

#[test]
fn key_errors_do_not_show_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "zz".repeat(32);
    std::fs::write(dir.path().join("bad.key"), &secret).unwrap();
    std::fs::write(dir.path().join("short.key"), "abcdef0123").unwrap();
    for (file, fragment) in [("bad.key", "zz"), ("short.key", "abcdef")] {
        let text = format!(
            "[[tenants]]\nname = \"default\"\nkey_id = \"k1\"\nkey_file = \"{}/{file}\"\n",
            dir.path().display()
        );
        let config = Config::parse(&text, "test").unwrap();
        let error = KeyRing::load(&config).unwrap_err().to_string();
        assert!(
            !error.contains(fragment),
            "error for {file} shows key material"
        );
        assert!(error.contains("tenant default"), "{error}");
    }
}

#[test]
fn session_id_command_normalises_number() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let expected = KNOWN_ANSWERS[0].3;
    for (number, trunk) in [
        ("+4930123456", None),
        ("+49 30 123456", None),
        ("tel:+49-30-123456", None),
        ("030123456", Some("de")),
        ("0049 30 123456", Some("de")),
    ] {
        let id = session_id_command(&config, "alpha", number, trunk).unwrap();
        assert_eq!(id, expected, "form {number} on trunk {trunk:?}");
    }
}

#[test]
fn session_id_command_needs_only_its_tenant_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    std::fs::remove_file(dir.path().join("b.key")).unwrap();
    let id = session_id_command(&config, "beta", "+4930123456", None).unwrap();
    assert_eq!(id, KNOWN_ANSWERS[2].3);
    assert!(session_id_command(&config, "gamma", "+4930123456", None).is_err());
}

#[test]
fn session_id_command_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let unknown_release = session_id_command(&config, "delta", "+4930123456", None);
    assert!(matches!(
        unknown_release,
        Err(SessionIdError::UnknownRelease(_))
    ));
    let unknown_trunk = session_id_command(&config, "alpha", "+4930123456", Some("fr"));
    assert!(matches!(
        unknown_trunk,
        Err(SessionIdError::UnknownTrunk(_))
    ));
    for number in [
        "+49 30 12x",
        "anonymous",
        "sip:anonymous@anonymous.invalid",
        "0000",
    ] {
        let invalid = session_id_command(&config, "alpha", number, Some("de"));
        assert!(
            matches!(invalid, Err(SessionIdError::InvalidNumber)),
            "input #{}",
            number.len()
        );
    }
}
